//! Outcomes: a node's end recorded on its task (only while the entry carries the run's
//! claim), in `state.json`, as fix tasks, human requests, the completion signal and the
//! audit log, and on the tasks of releases a rollback undid.

#[allow(unused_imports)]
use super::*;
use crate::validate::KnownTasks;

impl<'w> Engine<'w> {
    /// Records the end of a node: task, state, fix task, human request, signal, audit.
    pub(super) fn finish(&self, subject: &Subject<'_>, run: &mut NodeRun<'_>, outcome: &Outcome, state: &Value) {
        let (task, node) = (subject.task, subject.node);
        // What the node could not record is the run's failure to write, never only a log line.
        for error in std::mem::take(&mut run.record_errors) {
            self.write_failed(error);
        }
        if let Outcome::Blocked { reason, escalate } = outcome {
            self.blocked_by_run.borrow_mut().insert(task.id.clone());
            return self.finish_blocked(subject, run, reason, *escalate);
        }
        let id = task.id.clone();
        let now = crate::time::now_rfc3339();
        let kind = outcome.kind();
        let task_status = kind.task_status();
        let node_status = if kind.is_failure() { "failed" } else { "completed" };
        let mut summary = run.summary.clone();
        let mut appends = Vec::new();
        let mut outcome_value =
            json!({"status": task_status, "run_id": run.run_id, "finished_at": now, "artifacts": run.artifacts});
        // An agent node's failure is not a code bug to fix: the person who runs the workflow
        // reads the attempts and answers it.
        let agent = node.action == Action::Agent;
        match outcome {
            Outcome::Failed { step, reason, log } if agent => {
                summary = format!("{} failed at `{step}`: {reason}", node.name);
                outcome_value["failed_step"] = json!(step);
                outcome_value["log"] = json!(log);
            }
            Outcome::Failed { step, reason, log } => {
                summary = format!("{} failed at `{step}`: {reason}", node.name);
                outcome_value["failed_step"] = json!(step);
                outcome_value["log"] = json!(log);
                appends.push(self.with_context(
                    record::fix_task(&task.raw, &node.name, step, reason, log),
                    subject,
                    run,
                ));
            }
            Outcome::RolledBack { reason } => {
                outcome_value["rollback_reason"] = json!(reason);
                appends.push(self.with_context(
                    record::fix_task(&task.raw, &node.name, "verification", reason, ""),
                    subject,
                    run,
                ));
            }
            _ => {}
        }
        let summary = self.secrets.mask(&summary);
        run.summary = summary.clone();
        outcome_value["summary"] = json!(summary);
        if !run.attempts.is_empty() {
            outcome_value["attempts"] = json!(run.attempts);
        }
        self.secrets.mask_json(&mut outcome_value);
        let mut ops = vec![
            FieldOp::Set("status".into(), task_status.as_str().into()),
            FieldOp::Set("outcome".into(), outcome_value.clone()),
            FieldOp::Set("updated_at".into(), now.clone().into()),
        ];
        // `resolved_by` answered an earlier failure; a new one needs its own answer.
        if kind.is_failure() && task.resolved_by.is_some() {
            ops.push(FieldOp::Remove("resolved_by".into()));
        }
        let task_id = (!task.from_state).then_some(id.as_str());
        // A plain success waits to be written with the next claim (see `Deferred`).
        let defer = task_status == TaskStatus::Done && !node.action.deploys() && self.options.sync.is_none();
        self.record_outcome(task_id, &id, node, run, ops, appends, &outcome_value, defer);
        // A deployment whose end the rollout could not record (a full disk) gets it now.
        if node.action.deploys() {
            self.settle_record(&run.run_id, task_status.clone());
        }
        // state.json: this node (and any it completed on the way) and the current position.
        let mut completed = vec![node.name.clone()];
        for action in &run.also_completed {
            completed.extend(self.graph.nodes.iter().filter(|n| n.action == *action).map(|n| n.name.clone()));
        }
        let mut current = state.clone();
        for (i, name) in completed.iter().enumerate() {
            let last = i + 1 == completed.len();
            let next = self.graph.node(name).map(|n| n.next.clone()).unwrap_or_default();
            let current_nodes = (node_status == "completed").then(|| record::next_current_nodes(&current, name, &next));
            if let Some(list) = &current_nodes {
                current["current_nodes"] = json!(list);
                current["nodes"][name.as_str()]["status"] = json!("completed");
            }
            let mut fields = vec![FieldOp::Set(
                "status".into(),
                if last || node_status == "completed" { node_status.into() } else { "completed".into() },
            )];
            fields.push(FieldOp::Set(
                if node_status == "completed" { "completed_at".into() } else { "failed_at".into() },
                now.clone().into(),
            ));
            fields.push(FieldOp::Set("run_id".into(), run.run_id.clone().into()));
            if name == &node.name {
                fields.push(FieldOp::Set("outputs".into(), json!(run.artifacts)));
            }
            self.edit_state(StateEdit { node: name.clone(), fields, current_nodes });
        }
        // A node this one made current works on the same release: it carries the release,
        // so that it runs for this unit and version even when no task stands for it.
        if node_status == "completed" && !run.release.unit.is_empty() {
            let before: Vec<&str> = state
                .get("current_nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let now: Vec<String> = current
                .get("current_nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|name| !before.contains(name))
                .map(str::to_owned)
                .collect();
            for name in now {
                let mut fields = vec![FieldOp::Set("unit_id".into(), run.release.unit.clone().into())];
                if !run.release.version.is_empty() {
                    fields.push(FieldOp::Set("version".into(), run.release.version.as_str().into()));
                }
                self.edit_state(StateEdit { node: name, fields, current_nodes: None });
            }
        }
        let unit = subject.release.unit.clone();
        let failed = matches!(outcome, Outcome::Failed { .. } | Outcome::RolledBack { .. });
        let event = match outcome {
            Outcome::Failed { .. } => Some(crate::notify::Event::Failed),
            Outcome::RolledBack { .. } => Some(crate::notify::Event::RolledBack),
            _ if kind == OutcomeKind::Deployed => Some(crate::notify::Event::Deployed),
            _ => None,
        };
        if let Some(event) = event {
            let retry = (failed && !node.action.deploys() && !task.from_state).then(|| format!("opsflow retry {id}"));
            self.raise(
                event,
                &run.run_id,
                crate::notify::Raised {
                    unit_id: run.release.unit.clone(),
                    version: run.release.version.to_string(),
                    environment: subject.environment.clone().unwrap_or_default(),
                    task_id: id.clone(),
                    run_id: run.run_id.clone(),
                    message: run.summary.clone(),
                    file: failed.then(|| self.ws.config.paths.human_requests.clone()),
                    command: retry,
                    request_key: None,
                },
            );
        }
        if failed {
            let (step, reason, log) = match outcome {
                Outcome::Failed { step, reason, log } => (step.clone(), reason.clone(), log.clone()),
                Outcome::RolledBack { reason } => ("verification".to_owned(), reason.clone(), String::new()),
                _ => unreachable!("only failures get here"),
            };
            let request = HumanRequest {
                agent: self.ws.config.agent.name.clone(),
                task_id: id.clone(),
                node: node.name.clone(),
                unit_id: unit.clone(),
                // Seed 000's escalation rules: a production outage or a rollback that fails.
                severity: if node.action == Action::DeployToProduction || step == "rollback" {
                    "CRITICAL"
                } else {
                    "HIGH"
                },
                issue: self.secrets.mask(&format!("{} failed at `{step}`: {reason}", node.name)),
                impact: if matches!(outcome, Outcome::RolledBack { .. }) {
                    "the release was rolled back; the previous release serves users".to_owned()
                } else {
                    format!("{} did not complete; later nodes wait", node.name)
                },
                actions: vec![
                    format!("ran {} (run {})", node.name, run.run_id),
                    if log.is_empty() {
                        "see the artifacts listed in the task's outcome".to_owned()
                    } else {
                        format!("log: {log}")
                    },
                    if agent {
                        "kept every attempt's prompt, output and diagnostics in the task's `outcome.attempts`"
                            .to_owned()
                    } else {
                        format!("filed fix task {} for Task-Coder", record::fix_task_id(&id))
                    },
                ],
                status: if matches!(outcome, Outcome::RolledBack { .. }) {
                    "rolled back".into()
                } else {
                    "failed".into()
                },
                help_needed: if node.action.deploys() {
                    // A built release cannot change (its files are checksummed): retrying it
                    // fails the same way.
                    format!(
                        "fix the failure in a new version and ship that (the release {} cannot change); set `resolved_by` on `{id}` once it is handled",
                        run.release.label()
                    )
                } else if agent {
                    format!(
                        "read the attempts in `{id}`'s `outcome.attempts` (diagnostics and logs); fix the prompt, the inputs or the node's `agent` in workflow.json, then `opsflow retry {id}`"
                    )
                } else {
                    "fix the failure, then set the task back to `pending` to retry".into()
                },
                contacts: if agent {
                    format!(
                        "the workflow's maintainers{}",
                        node.owner.as_ref().map(|o| format!(", {o}")).unwrap_or_default()
                    )
                } else {
                    "Task-Coder, Product-Manager".into()
                },
                notified: String::new(),
                raised_at: now.clone(),
                run_id: run.run_id.clone(),
            };
            // Each failed run is its own entry, answered only by what answers that run.
            self.request_human(&request, &format!("failed run {}", run.run_id), &format!("{step}: {reason}"));
        }
        for undone in std::mem::take(&mut run.rolled_back) {
            self.mark_rolled_back(&undone, run);
        }
        // The completion signal is the DevOps stage's: another agent's node does not write it.
        let signal_status = if agent {
            None
        } else if failed {
            Some("failed")
        } else if node.action == Action::DeployToProduction
            || node.next.is_empty() && node.action == Action::DeploymentAndContinuousFeedback
        {
            Some("completed")
        } else {
            None
        };
        if let Some(signal_status) = signal_status
            && let Some(file) = self.signal(&unit, signal_status, &run.artifacts, &run.summary)
        {
            run.artifacts.push(file);
        }
        let inputs: Vec<(String, String)> = run.inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        self.audit.record(&run.run_id, task_status.as_str(), &id, &run.summary, &inputs);
    }

    /// The deployment context of a failure in its fix task (seed 000: a bug report with
    /// deployment context): environment, version, unit, run, and the figures the node saw.
    pub(super) fn with_context(&self, mut fix: Value, subject: &Subject<'_>, run: &NodeRun<'_>) -> Value {
        let mut context = json!({
            "environment": subject.environment,
            "unit_id": run.release.unit,
            "version": run.release.version.as_str(),
            "run_id": run.run_id,
            // Only a folder that exists: a run whose checks were all HTTP wrote no step log.
            "run_log_dir": nodes::run_dir(self.ws, &run.run_id).is_dir().then(|| self.ws.label(&nodes::run_dir(self.ws, &run.run_id))),
        });
        if let Some(deploy) = &run.deploy {
            context["strategy"] = json!(deploy.strategy);
            context["previous_version"] = json!(deploy.previous_version);
            context["failed_step"] = json!(deploy.failed_step);
            context["analyses"] = json!(
                deploy
                    .analyses
                    .iter()
                    .map(|a| format!("{}: {} ({})", a.stage, a.verdict, a.reason))
                    .collect::<Vec<_>>()
            );
        }
        fix["details"]["deployment"] = context;
        self.secrets.mask_json(&mut fix);
        fix
    }

    /// Sets the production task of a release that a later rollback undid to `rolled_back`
    /// (it said `deployed`), and says in the completion signal that the release was rolled back.
    pub(super) fn mark_rolled_back(&self, undone: &Release, run: &mut NodeRun<'_>) {
        let Ok(Some(text)) = self.ws.read_text(&self.ws.config.paths.tasks) else { return };
        let Ok((_, heads)) = crate::store::tasks::scan_in(&text, &self.ws.task_selection(), |head| {
            head.status.as_deref().map(TaskStatus::parse) == Some(TaskStatus::Deployed)
                && head.kind.as_deref() == Some("deployment_production")
                && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
        }) else {
            return;
        };
        let now = crate::time::now_rfc3339();
        for head in heads {
            let release = Task::from_value(head.value(&text)).release();
            if release.unit != undone.unit || release.version != undone.version {
                continue;
            }
            let Some(id) = head.id.as_deref() else { continue };
            let ops = vec![
                FieldOp::Set("status".into(), TaskStatus::RolledBack.as_str().into()),
                FieldOp::Set(
                    "rolled_back".into(),
                    json!({"by_task": run.task_id(), "run_id": run.run_id, "at": now, "summary": self.secrets.mask(&run.summary)}),
                ),
                FieldOp::Set("updated_at".into(), now.clone().into()),
            ];
            match record::edit_task(self.ws, Some(id), &[TaskStatus::Deployed.as_str()], ops, Vec::new()) {
                Ok(true) => self.audit.record(&run.run_id, "rolled_back", id, &run.summary, &[]),
                Ok(false) => {}
                Err(e) => self.write_failed(format!("cannot record that {id} was rolled back: {e}")),
            }
        }
        let message = format!("{} was rolled back: {}", undone.label(), run.summary);
        self.raise(
            crate::notify::Event::RolledBack,
            &format!("{} {}", run.run_id, undone.label()),
            crate::notify::Raised {
                unit_id: undone.unit.clone(),
                version: undone.version.to_string(),
                environment: "production".to_owned(),
                task_id: run.task_id().to_owned(),
                run_id: run.run_id.clone(),
                message: self.secrets.mask(&message),
                ..Default::default()
            },
        );
        if let Some(file) = self.signal(&undone.unit, "failed", &run.artifacts, &message)
            && !run.artifacts.contains(&file)
        {
            run.artifacts.push(file);
        }
    }

    /// Writes a node's outcome onto its task, only while the task's entry carries this run's
    /// claim. The outcome is kept beside the run first (`engine::kept`), so that a crash
    /// before `tasks.json` changes leaves it for recovery to apply; when the entry does not
    /// carry the claim (another branch's task of the same id, the entry from before the
    /// claim, a task that is gone, a file that cannot be written), it stays kept and pending,
    /// is logged as an error and put in front of a human, and the first pass that finds the
    /// claim again applies it. Never lost, never on another task.
    ///
    /// With `defer`, the write waits for the next claim of this `run` and goes into the same
    /// rewrite of `tasks.json` ([`Deferred`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_outcome(
        &self,
        task_id: Option<&str>,
        id: &str,
        node: &Node,
        run: &NodeRun<'_>,
        ops: Vec<FieldOp>,
        appends: Vec<Value>,
        outcome: &Value,
        defer: bool,
    ) {
        // A current node of state.json that no task stood for has no entry to write to.
        let Some(task_id) = task_id else { return };
        let mut kept = KeptOutcome::new(id, &node.name, &run.run_id, &ops, &appends, outcome);
        kept.claim = run.claim.clone();
        if let Err(e) = kept.save(self.ws) {
            tracing::error!("cannot keep the outcome of {id} beside its run: {e}");
        }
        let claim = run.claim.clone().unwrap_or_else(|| run.run_id.clone());
        let deferred = Deferred {
            task: task_id.to_owned(),
            claim,
            ops,
            status: outcome["status"].as_str().unwrap_or_default().to_owned(),
            kept,
            node: node.name.clone(),
            unit: run.release.unit.clone(),
        };
        // Only one outcome waits at a time; an earlier one (none in practice) goes first.
        self.flush_deferred(None);
        if defer && appends.is_empty() {
            *self.deferred.borrow_mut() = Some(deferred);
            return;
        }
        self.write_outcome(deferred, appends, None);
    }

    /// Writes an outcome, with the tasks it files, onto its task now (from `known`, the
    /// pass's read of `tasks.json`, while the file is at that version: neither read again nor
    /// held twice).
    fn write_outcome(&self, deferred: Deferred, appends: Vec<Value>, known: Option<&KnownTasks>) {
        let index = Some(&*self.options.task_index);
        let ops = deferred.ops.clone();
        let written = record::edit_claimed_task(self.ws, known, index, &deferred.task, &deferred.claim, ops, appends);
        self.outcome_written(deferred, written);
    }

    /// Writes the outcome that waits for a claim ([`Deferred`]) on its own, if there is one,
    /// starting from `known` as [`Self::write_outcome`] does.
    pub(super) fn flush_deferred(&self, known: Option<&KnownTasks>) {
        let Some(deferred) = self.deferred.borrow_mut().take() else { return };
        self.write_outcome(deferred, Vec::new(), known);
    }

    /// A pass's view of the tasks with the outcome that waits for a claim on its task: the
    /// task is finished (its dependents may run, and their claims carry the outcome), it is
    /// not an open task. When the file no longer shows the run's claim on that entry (another
    /// writer changed it), the outcome is written now and says what became of it.
    pub(super) fn overlay_deferred(
        &self,
        owned: &mut Vec<(usize, Task)>,
        statuses: &mut std::collections::HashMap<String, String>,
        known: &mut Option<KnownTasks>,
    ) {
        let still_claimed = self.deferred.borrow().as_ref().map(|d| {
            owned.iter().any(|(_, t)| {
                t.id == d.task && t.status == TaskStatus::InProgress && t.run_id.as_deref() == Some(d.claim.as_str())
            })
        });
        match still_claimed {
            None => {}
            Some(false) => {
                // The pass's read is out of date once the outcome is written: it goes with it.
                let known = known.take();
                self.flush_deferred(known.as_ref());
            }
            Some(true) => {
                let deferred = self.deferred.borrow();
                let deferred = deferred.as_ref().expect("checked above");
                owned.retain(|(_, t)| t.id != deferred.task);
                statuses.insert(deferred.task.clone(), deferred.status.clone());
            }
        }
    }

    /// What became of the write of an outcome onto its task: noted beside the run when it
    /// landed, else kept pending and put in front of a human.
    pub(super) fn outcome_written(&self, deferred: Deferred, written: Result<Claimed, StoreError>) {
        let Deferred { task: id, mut kept, node, unit, .. } = deferred;
        let why = match written {
            Ok(Claimed::Applied) => {
                kept.applied_at = Some(crate::time::now_rfc3339());
                if let Err(e) = kept.save(self.ws) {
                    tracing::error!("cannot note beside run {} that its outcome is recorded: {e}", kept.run_id);
                }
                return;
            }
            Ok(Claimed::NotOurs { found }) => format!(
                "the entry with id {id} does not carry this run's claim ({}): it changed while the run ran (another branch checked out, `git stash`, another writer)",
                match found {
                    Some(other) => format!("its `run_id` is {other}"),
                    None => "it has no `run_id`".to_owned(),
                }
            ),
            Ok(Claimed::Gone) => format!("no task has the id {id} any more"),
            Err(e) => e.to_string(),
        };
        kept.why = why.clone();
        let saved = kept.save(self.ws);
        self.keep_lost_outcome(&id, &node, &unit, &kept, &why, saved.is_ok());
    }

    /// Puts an outcome that could not be written onto its task in front of a human.
    pub(super) fn keep_lost_outcome(
        &self,
        id: &str,
        node: &str,
        unit: &str,
        kept: &KeptOutcome,
        why: &str,
        saved: bool,
    ) {
        let run_id = kept.run_id.as_str();
        let file = self.ws.label(&KeptOutcome::path(self.ws, run_id));
        self.write_failed(format!(
            "cannot record the outcome of {id} ({why}); it is kept in {file}{}",
            if saved { "" } else { " (which could not be written either)" }
        ));
        self.audit.record(run_id, "outcome_kept", id, &kept.explain(self.ws), &[]);
        let request = HumanRequest {
            agent: self.ws.config.agent.name.clone(),
            task_id: id.to_owned(),
            node: node.to_owned(),
            unit_id: unit.to_owned(),
            severity: "HIGH",
            issue: format!("the outcome of {node} for {id} could not be recorded on its task: {why}"),
            impact: "tasks.json does not say what happened in the environment".to_owned(),
            actions: vec![format!("ran {node} (run {run_id})"), format!("outcome kept in {file}")],
            status: "needs attention".into(),
            help_needed: format!(
                "bring back the entry of {id} that carries `run_id: {}` (check out the branch again, `git stash pop`) and opsflow records it; or record the outcome from {file} by hand and delete that file",
                kept.claim()
            ),
            contacts: "Product-Manager".into(),
            notified: String::new(),
            raised_at: crate::time::now_rfc3339(),
            run_id: run_id.to_owned(),
        };
        self.request_human(&request, &format!("kept outcome of run {run_id}"), why);
    }

    /// Records a node that stopped to wait after it was claimed: the task goes back to
    /// `blocked` (by opsflow, so every pass checks it again), the node too; a paused rollout
    /// also gets one human request and a `blocked` completion signal.
    pub(super) fn finish_blocked(&self, subject: &Subject<'_>, run: &mut NodeRun<'_>, reason: &str, escalate: bool) {
        let (task, node) = (subject.task, subject.node);
        let id = task.id.clone();
        let now = crate::time::now_rfc3339();
        let reason = self.secrets.mask(reason);
        if run.summary.is_empty() {
            run.summary = reason.clone();
        }
        let summary = self.secrets.mask(&run.summary);
        run.summary = summary.clone();
        let outcome = json!({"status": TaskStatus::Blocked, "run_id": run.run_id, "finished_at": now, "artifacts": run.artifacts, "summary": summary});
        let ops = vec![
            FieldOp::Set("status".into(), TaskStatus::Blocked.as_str().into()),
            FieldOp::Set("blocked_reason".into(), reason.clone().into()),
            FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()),
            FieldOp::Set("outcome".into(), outcome),
            FieldOp::Set("updated_at".into(), now.clone().into()),
        ];
        let task_id = (!task.from_state).then_some(id.as_str());
        if let Err(e) = record::edit_task(self.ws, task_id, &[TaskStatus::InProgress.as_str()], ops, Vec::new()) {
            self.write_failed(format!("cannot record that {id} waits: {e}"));
        }
        let mut fields = vec![
            FieldOp::Set("status".into(), "blocked".into()),
            FieldOp::Set("run_id".into(), run.run_id.clone().into()),
        ];
        if task.from_state {
            fields.push(FieldOp::Set("blocked_reason".into(), reason.clone().into()));
            fields.push(FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()));
        }
        self.edit_state(StateEdit { node: node.name.clone(), fields, current_nodes: None });
        let (unit, version) = (run.release.unit.clone(), run.release.version.as_str().to_owned());
        if escalate {
            let request = HumanRequest {
                agent: self.ws.config.agent.name.clone(),
                task_id: id.clone(),
                node: node.name.clone(),
                unit_id: unit.clone(),
                severity: "CRITICAL",
                issue: format!("the rollout of {unit} version {version} is paused: {reason}"),
                impact: "the new release serves part or all of the traffic until a human decides".to_owned(),
                actions: vec![
                    format!("ran {} (run {})", node.name, run.run_id),
                    "paused the rollout where it stood; nothing was rolled back or promoted".to_owned(),
                    format!("artifacts: {}", run.artifacts.join(", ")),
                ],
                status: "paused".into(),
                help_needed: "set `decision: rollback` or `decision: proceed` (with `decided_by` and `reason`) in the R17 file named above".into(),
                contacts: "devops.approvers".into(),
                notified: String::new(),
                raised_at: now.clone(),
                run_id: run.run_id.clone(),
            };
            let environment = subject.environment.clone().unwrap_or_else(|| "production".to_owned());
            let decision = run.artifacts.iter().find(|a| a.contains("R17-rollback-decision")).cloned();
            self.raise(
                crate::notify::Event::Paused,
                &run.run_id,
                crate::notify::Raised {
                    unit_id: unit.clone(),
                    version: version.clone(),
                    environment: environment.clone(),
                    task_id: id.clone(),
                    run_id: run.run_id.clone(),
                    message: request.issue.clone(),
                    file: decision,
                    command: Some(format!(
                        "opsflow promote {environment} (or opsflow abort {environment} --reason WHY)"
                    )),
                    request_key: None,
                },
            );
            self.request_human(&request, "paused rollout", &reason);
            if let Some(file) = self.signal(&unit, "blocked", &run.artifacts, &run.summary) {
                run.artifacts.push(file);
            }
        }
        let inputs: Vec<(String, String)> = run.inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        self.audit.record(&run.run_id, if escalate { "paused" } else { "blocked" }, &id, &reason, &inputs);
    }
}

/// A finished run's outcome whose write onto its task waits for the next claim of the same
/// `run`, so that both land in one rewrite of `tasks.json` under one wait for its lock
/// (`Engine::execute`). Kept beside the run before it waits (a crash leaves it to recovery),
/// and written on its own when the `run` ends, when the next pass finds the entry changed,
/// or before any other outcome. Only a success that files nothing and deploys nothing waits,
/// and never with git sync, which commits each outcome as it is recorded.
#[derive(Debug)]
pub(super) struct Deferred {
    /// The task's id.
    pub task: String,
    /// The run whose claim the entry must carry.
    pub claim: String,
    pub ops: Vec<FieldOp>,
    /// The task's status once the outcome is written.
    pub status: String,
    pub kept: KeptOutcome,
    pub node: String,
    pub unit: String,
}
