//! Recovery: what a runner that died left (a claimed task, a rollout journal), the kept
//! outcomes of finished runs, and the rollbacks people ask for in R17.

#[allow(unused_imports)]
use super::*;

impl<'w> Engine<'w> {
    /// Finds this agent's runs that were cut off (`kill -9`, a crash) and records each as
    /// `failed` with reason `interrupted`: an unfinished rollout journal that no live runner
    /// holds (the environment is rolled back when `auto_rollback_enabled` and the rollout had
    /// changed it), and an owned task still `in_progress` under this agent's name. The
    /// instance lock guarantees that no other runner of this agent is alive, so such a task
    /// has no run behind it. A step's process group left running is ended first.
    pub(super) fn recover(&self, summary: &mut Summary) {
        let agent = self.ws.config.agent.name.clone();
        let mut recovered = Vec::new();
        for journal in journal::Journal::all(self.ws) {
            if journal.agent != agent || journal.phase == journal::Phase::Paused {
                continue;
            }
            let Ok(env) = self.ws.environment(&journal.environment) else { continue };
            let holder = crate::rollout::deploy_lock::Holder {
                agent: agent.clone(),
                run_id: journal.run_id.clone(),
                task: journal.task.clone(),
            };
            // A live runner holds the lock while its rollout runs.
            let Ok(_lock) =
                crate::rollout::deploy_lock::acquire(&self.ws.root, &env.lock_path(self.ws), &env.name, &holder)
            else {
                continue;
            };
            // A run that kept its outcome had finished its rollout.
            if let Ok(Some(mut kept)) = KeptOutcome::load(self.ws, &journal.run_id) {
                self.apply_kept(&mut kept);
            } else if let Some(ran) = self.recover_run(&journal.task, Some((&journal, env))) {
                summary.ran.push(ran);
            }
            journal::Journal::remove(self.ws, &env.name);
            recovered.push(journal.task.clone());
        }
        // Only owned tasks in progress are decoded; the scan skips the rest of the list.
        let Ok(Some(text)) = self.ws.read_text(&self.ws.config.paths.tasks) else { return };
        let Ok((_, heads)) = crate::store::tasks::scan_in(&text, &self.ws.task_selection(), |head| {
            head.status.as_deref().map(TaskStatus::parse) == Some(TaskStatus::InProgress)
                && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
        }) else {
            return;
        };
        for head in heads {
            let task = Task::from_value(head.value(&text));
            let id = head.id.as_deref().unwrap_or_default();
            if task.claimed_by.as_deref() != Some(agent.as_str()) || recovered.iter().any(|r| r == id) {
                continue;
            }
            // With git sync, runners of this agent on other clones hold their own claims: only
            // a run this clone started (its run directory is here) is this runner's to recover.
            let run_id = task.run_id.as_deref().unwrap_or_default();
            if self.options.sync.is_some() && (run_id.is_empty() || !nodes::run_dir(self.ws, run_id).exists()) {
                continue;
            }
            // A run that finished has an outcome: it is recorded, never called interrupted.
            match KeptOutcome::load(self.ws, run_id) {
                Ok(Some(mut kept)) if kept.task == id => {
                    self.apply_kept(&mut kept);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    self.write_failed(e);
                    continue;
                }
            }
            if let Some(ran) = self.recover_run(id, None) {
                summary.ran.push(ran);
            }
        }
    }

    /// Records one interrupted run as failed, after ending what it left running and, with
    /// its journal and `auto_rollback_enabled`, rolling back what it changed.
    pub(super) fn recover_run(
        &self,
        id: &str,
        rollout: Option<(&journal::Journal, &deploy::EnvConfig)>,
    ) -> Option<Ran> {
        let started = Instant::now();
        let text = self.ws.read_text(&self.ws.config.paths.tasks).ok().flatten()?;
        let (_, heads) = crate::store::tasks::scan_ids_in(&text, &self.ws.task_selection(), &[id]).ok()?;
        let task = crate::store::tasks::find(&heads, id).ok().map(|head| Task::from_value(head.value(&text)));
        let Some(task) = task.filter(|t| t.status == TaskStatus::InProgress) else {
            // The run had recorded its end; only its journal was left.
            return None;
        };
        let node = self.graph.node_for_task(&task.raw).ok()?;
        let old_run = task.run_id.clone().unwrap_or_default();
        let mut notes = Vec::new();
        if !old_run.is_empty()
            && let Some(group) =
                crate::exec::command::kill_leftover_group(&self.ws.root, &nodes::run_dir(self.ws, &old_run), &old_run)
        {
            notes.push(format!("ended its process group {group}, still running"));
        }
        // An agent node's attempt cut off: what it changed of the protected files is undone.
        let undone = crate::agent::guard::restore_left(self.ws, &nodes::run_dir(self.ws, &old_run));
        if !undone.is_empty() {
            let named: Vec<String> = undone.iter().map(|c| format!("{} ({})", c.file, c.what)).collect();
            notes.push(format!(
                "put back what its agent changed of files that decide the workflow: {}",
                named.join(", ")
            ));
        }
        let subject = self.subject(&task, node);
        let run_id = new_run_id();
        let mut run = self.node_run(&task, node, &run_id, subject.release.clone());
        // The entry carries the dead runner's claim: the interruption is recorded on it.
        run.claim = Some(old_run.clone());
        // The hosts of an `ssh` environment are locked before they are rolled back, and stay
        // locked until this recovery ends.
        let host_locks = match rollout {
            Some((journal, env)) if journal.changed && self.ws.config.devops.auto_rollback_enabled => {
                Some(self.lock_hosts_for_recovery(&run.runner, env, &run_id, &journal.task, &mut notes))
            }
            _ => None,
        };
        if let Some((journal, env)) = rollout {
            if !journal.changed {
                // Its release was staged but never went live: not `deploying` for ever.
                let why = "the run was interrupted before anything changed";
                if let Err(e) = env.mark(self.ws, &journal.run_id, crate::environment::Status::Bad, why) {
                    self.write_failed(e.to_string());
                }
                notes.push(format!("{} had not been changed yet", env.name));
            } else if let Some(Err(why)) = &host_locks {
                notes.push(format!(
                    "{} was not rolled back: {why}; roll it back (`opsflow rollback {}`) once every host can be locked",
                    env.name, env.name
                ));
            } else if self.ws.config.devops.auto_rollback_enabled {
                let vars = vec![
                    ("OPSFLOW_ENV".to_owned(), env.name.clone()),
                    ("OPSFLOW_VERSION".to_owned(), journal.version.clone()),
                ];
                let asked = deploy::Asked {
                    by: self.ws.config.agent.name.clone(),
                    reason: "the run was interrupted".to_owned(),
                    run_id: run_id.clone(),
                    undo_named: true,
                };
                let rollback = deploy::rollback(self.ws, &run.runner, env, &vars, Some(journal), &asked);
                notes.push(format!(
                    "{} rolled back: {}",
                    env.name,
                    if rollback.success {
                        rollback.detail.clone()
                    } else {
                        format!("the rollback failed: {}", rollback.detail)
                    }
                ));
                if let Err(e) = nodes::write_rollback_result(&mut run, &rollback, "the run was interrupted", "") {
                    tracing::error!("cannot write R18: {e:?}");
                }
            } else {
                notes.push(format!(
                    "{} may be half changed (auto_rollback_enabled is off): check it, then roll back or redeploy",
                    env.name
                ));
            }
        }
        let reason = format!(
            "interrupted: run {old_run} was cut off before it finished (its runner is gone){}",
            if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
        );
        tracing::warn!("{id}: {reason}");
        let outcome = Outcome::Failed { step: "interrupted".into(), reason, log: String::new() };
        let state = load_json(self.ws, &self.ws.config.paths.state, crate::schema::SchemaName::State)
            .value
            .unwrap_or(Value::Null);
        self.finish(&subject, &mut run, &outcome, &state);
        Some(Ran {
            task: id.to_owned(),
            node: node.name.clone(),
            outcome: OutcomeKind::Failed,
            run_id,
            duration_ms: started.elapsed().as_millis() as u64,
            summary: self.secrets.mask(&run.summary),
            artifacts: run.artifacts.clone(),
            deployed_to: node.action.deploys().then(|| node.changes_environment()).flatten(),
            warnings: Vec::new(),
            switched_back: false,
            agent: None,
        })
    }

    /// Takes the deploy lock of every host of an `ssh` environment before recovery rolls it
    /// back, as a deploy does: the dead runner's own locks (a holder on this machine whose
    /// process is gone) are taken over; a lock a live holder has, or a host that cannot be
    /// reached, is `Err` and nothing is rolled back. The locks are released when the value is
    /// dropped (`None`: other providers have only the environment's lock).
    fn lock_hosts_for_recovery(
        &self,
        runner: &crate::exec::command::Runner,
        env: &deploy::EnvConfig,
        run_id: &str,
        task: &str,
        notes: &mut Vec<String>,
    ) -> Result<Option<crate::rollout::ssh::HostLocks>, String> {
        if env.provider != deploy::Provider::Ssh {
            return Ok(None);
        }
        let holder = crate::rollout::deploy_lock::Holder {
            agent: self.ws.config.agent.name.clone(),
            run_id: run_id.to_owned(),
            task: task.to_owned(),
        };
        let locks = crate::rollout::ssh::lock_hosts(runner, env, &holder).map_err(|e| e.to_string())?;
        if !locks.taken_over.is_empty() {
            notes.push(format!("took over the host locks left by {}", locks.taken_over.join("; ")));
        }
        Ok(Some(locks))
    }

    /// Files a Rollback_Deployment task for every R17 in which a human asked for a rollback
    /// (`decision: rollback`) that nothing has carried out: not opsflow's own record of an
    /// automatic rollback (`decided_by` is this agent), not a paused rollout's decision (its
    /// task acts on it), not one an R18 names by its `decision_sha256`. The task id carries
    /// the file's hash, so one request files one task. Returns whether it filed one.
    pub(super) fn file_requested_rollbacks(&self, exists: &dyn Fn(&str) -> bool) -> bool {
        let dir = self.ws.config.paths.artifacts.trim_end_matches('/').to_owned();
        let Ok(entries) = std::fs::read_dir(self.ws.path(&dir)) else { return false };
        let mut names: Vec<String> =
            entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.retain(|name| !crate::workspace::editor_dropping(name));
        names.sort();
        let front = |name: &str| -> Option<(Value, String)> {
            let file = format!("{dir}/{name}");
            let text = self.ws.read_text(&file).ok().flatten()?;
            let doc = crate::workspace::read::parse_markdown(&file, &text).ok()?;
            Some((doc.front_matter?, sha256::hex(text.as_bytes())))
        };
        let carried_out: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with("R18-rollback-result") && n.ends_with(".md"))
            .filter_map(|n| front(n))
            .filter_map(|(fm, _)| fm.get("decision_sha256").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let journals = journal::Journal::all(self.ws);
        let mut appends = Vec::new();
        for name in names.iter().filter(|n| n.starts_with("R17-rollback-decision") && n.ends_with(".md")) {
            let Some((fm, sha)) = front(name) else { continue };
            let field = |key: &str| fm.get(key).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_owned();
            let unit = field("unit_id");
            if field("decision") != "rollback"
                || field("decided_by") == self.ws.config.agent.name
                || unit.is_empty()
                || crate::workspace::check_path_component(&unit).is_err()
                || carried_out.contains(&sha)
                || journals.iter().any(|j| j.unit_id == unit)
            {
                continue;
            }
            let id = format!("{ROLLBACK_PREFIX}{unit}-{}", &sha[..8]);
            if exists(&id) {
                continue;
            }
            let now = crate::time::now_rfc3339();
            let mut task = json!({
                "id": id,
                "title": format!("Roll back unit {unit} as {dir}/{name} asks"),
                "agent": self.ws.config.agent.name,
                "type": "deployment_rollback",
                "status": "pending",
                "priority": "critical",
                "unit_id": unit,
                "node": "Rollback_Deployment",
                "source": format!("{dir}/{name}"),
                "created_at": now,
                "updated_at": now,
            });
            for key in ["version", "environment"] {
                let value = field(key);
                if !value.is_empty() {
                    task[key] = json!(value);
                }
            }
            self.audit.record(
                &new_run_id(),
                "rollback_requested",
                &id,
                &format!("{dir}/{name} says decision: rollback"),
                &[(format!("{dir}/{name}"), sha.clone())],
            );
            appends.push(task);
        }
        if appends.is_empty() {
            return false;
        }
        match record::edit_task(self.ws, None, &[], Vec::new(), appends) {
            Ok(_) => true,
            Err(e) => {
                self.write_failed(format!("cannot file the requested rollback: {e}"));
                false
            }
        }
    }

    /// Writes the kept outcome of a finished run onto its task, whose entry carries the run's
    /// claim again (or still, after a crash between keeping and writing it). Returns whether
    /// it wrote it.
    /// Brings an environment's record in line with a run's recorded end when the run could
    /// not write it itself (a full disk): its deployment still `deploying`, while no rollout
    /// of that run is under way, becomes `good` for a deployed task and `bad` for a failed or
    /// rolled-back one. Idempotent: only that run's `deploying` entry changes.
    pub(super) fn settle_record(&self, run_id: &str, status: TaskStatus) {
        let settled = match status {
            TaskStatus::Deployed => crate::environment::Status::Good,
            TaskStatus::Failed | TaskStatus::RolledBack => crate::environment::Status::Bad,
            _ => return,
        };
        for env in self.ws.environments.iter() {
            let name = &env.name;
            if journal::Journal::load(self.ws, name).ok().flatten().is_some_and(|j| j.run_id == run_id) {
                continue;
            }
            let Ok(record) = crate::environment::Record::load(&env.record_path(self.ws)) else { continue };
            let deploying = record.deployments.iter().rev().find(|d| d.run_id == run_id);
            if deploying.is_none_or(|d| d.status != crate::environment::Status::Deploying) {
                continue;
            }
            let why = "recorded from the run's outcome: the run could not write it";
            match env.mark(self.ws, run_id, settled, why) {
                Ok(()) => {
                    tracing::warn!("{name}: the deployment of run {run_id} is recorded {settled:?} from its outcome")
                }
                Err(e) => self.write_failed(e.to_string()),
            }
        }
    }

    pub(super) fn apply_kept(&self, kept: &mut KeptOutcome) -> bool {
        let again = kept.applied_at.is_some();
        match record::edit_claimed_task(
            self.ws,
            None,
            Some(&*self.options.task_index),
            &kept.task,
            kept.claim(),
            kept.ops(),
            kept.appends.clone(),
        ) {
            Ok(Claimed::Applied) => {
                kept.applied_at = Some(crate::time::now_rfc3339());
                kept.why.clear();
                if let Err(e) = kept.save(self.ws) {
                    tracing::error!("cannot note beside run {} that its outcome is recorded: {e}", kept.run_id);
                }
                let what = if again {
                    "its entry showed the run's claim again (a writer put it back): the outcome was recorded again"
                } else {
                    "the entry with the run's claim is back: the kept outcome was recorded"
                };
                tracing::warn!("{}: {what} (run {})", kept.task, kept.run_id);
                self.audit.record(&kept.run_id, "outcome_applied", &kept.task, what, &[]);
                let status = kept.outcome.get("status").and_then(Value::as_str).map(TaskStatus::parse);
                if let Some(status) = status {
                    self.settle_record(&kept.run_id, status);
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.write_failed(format!(
                    "cannot record the kept outcome of {} (run {}): {e}",
                    kept.task, kept.run_id
                ));
                false
            }
        }
    }
}
