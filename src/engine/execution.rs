//! Execution: claiming a task (and, with git sync, publishing the claim), running its node
//! and handing its end to `outcome.rs`.

#[allow(unused_imports)]
use super::*;

impl<'w> Engine<'w> {
    /// Claims, runs and records one task. `None` when another writer moved the task first.
    pub(super) fn execute(
        &self,
        facts: &mut Pass,
        subject: &Subject<'_>,
        inputs: Vec<artifacts::Artifact>,
        checks: Vec<Check>,
        version: String,
        state: &Value,
    ) -> Option<Ran> {
        if !facts.claims_allowed {
            // An unpushed claim is not a claim: none is made while the remote is out of reach.
            return None;
        }
        let (task, node) = (subject.task, subject.node);
        let started = Instant::now();
        let id = task.id.clone();
        let run_id = new_run_id();
        let now = crate::time::now_rfc3339();
        let claim = vec![
            FieldOp::Set("status".into(), TaskStatus::InProgress.as_str().into()),
            FieldOp::Set("claimed_by".into(), self.ws.config.agent.name.clone().into()),
            // The host, so that a claim left by a runner that is gone says where it ran.
            FieldOp::Set("claimed_on".into(), crate::instance::host_name().into()),
            FieldOp::Set("claimed_at".into(), now.clone().into()),
            FieldOp::Set("run_id".into(), run_id.clone().into()),
            FieldOp::Set("updated_at".into(), now.clone().into()),
            FieldOp::Remove("blocked_reason".into()),
            FieldOp::Remove("blocked_by".into()),
        ];
        // The claim starts from the file as this pass read it, unless it changed since; the
        // text is dropped once the claim is written, before the node runs.
        let known = facts.known.take();
        if task.from_state {
            // No entry to claim: the outcome that waits for a claim goes now.
            self.flush_deferred(known.as_ref());
            drop(known);
        } else {
            let expect = [task.status.as_str()];
            let edited = self.claim_with_deferred(known.as_ref(), &id, &expect, &claim, &mut facts.claims_allowed);
            drop(known);
            match edited {
                Ok(true) => {}
                Ok(false) => return None,
                // A file broken since it was read is reported by the next pass; a write that
                // failed is the run's failure.
                Err(e @ (StoreError::Io { .. } | StoreError::Contended { .. })) => {
                    self.claim_refused(subject, &run_id, &e.to_string());
                    return None;
                }
                Err(e) => {
                    tracing::error!("cannot claim {id}: {e}");
                    self.audit.record(&run_id, "claim_refused", &id, &e.to_string(), &[]);
                    return None;
                }
            }
        }
        let input_hashes: Vec<(String, String)> = inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        // Who let the release through: recorded in R13, the reports and the audit log.
        let approved_by = inputs.iter().find(|a| a.file.contains("-approval")).map(|a| {
            a.field("approved_by").map(str::trim).filter(|b| !b.is_empty()).unwrap_or("a ticked box").to_owned()
        });
        let gate_summary = checks
            .iter()
            .map(|c| format!("{}: {}", c.name, if c.passed { "pass" } else { "warn" }))
            .collect::<Vec<_>>()
            .join(", ");
        // With approval_identity git, the approval check names the commit and its author.
        let approval = checks
            .iter()
            .find(|c| c.id == CheckId::HumanApproval && c.passed)
            .map(|c| format!("; approval: {}", c.detail))
            .unwrap_or_default();
        self.audit.record(
            &run_id,
            "claimed",
            &id,
            &match &approved_by {
                Some(by) => format!("{} runs; gates: {gate_summary}; approved_by: {by}{approval}", node.name),
                None => format!("{} runs; gates: {gate_summary}{approval}", node.name),
            },
            &input_hashes,
        );
        // A check that only warns lets the task run; the console says so (stderr, warn level).
        for check in checks.iter().filter(|c| c.warning) {
            tracing::warn!("{id} runs with a warning: {}: {}", check.name, check.detail);
        }
        self.edit_state(StateEdit {
            node: node.name.clone(),
            fields: vec![
                FieldOp::Set("status".into(), "in_progress".into()),
                FieldOp::Set("started_at".into(), now.into()),
                FieldOp::Set("run_id".into(), run_id.clone().into()),
                FieldOp::Set("task".into(), id.clone().into()),
                FieldOp::Remove("blocked_reason".into()),
                FieldOp::Remove("blocked_by".into()),
            ],
            current_nodes: None,
        });
        if let Some(sync) = &self.options.sync
            && let Err(why) = sync.publish_claim(&id, &node.name, &run_id, task.from_state)
        {
            tracing::info!("{id}: the claim was dropped ({why}); {} does not run", node.name);
            self.audit.record(&run_id, "claim_dropped", &id, &why.to_string(), &[]);
            // A remote that refused this claim refuses the next: no more tries this pass.
            facts.claims_allowed = sync.reachable_now();
            return None;
        }
        // The version readiness settled on (a paused rollout's own) with the task's unit.
        let release = Release::new(subject.release.unit.clone(), version);
        if node.action.deploys() {
            self.raise(
                crate::notify::Event::DeployStarted,
                &run_id,
                crate::notify::Raised {
                    unit_id: release.unit.clone(),
                    version: release.version.to_string(),
                    environment: subject.environment.clone().unwrap_or_default(),
                    task_id: id.clone(),
                    run_id: run_id.clone(),
                    message: format!("{} started for {}", node.name, release.label()),
                    ..Default::default()
                },
            );
        }
        let mut run = self.node_run(task, node, &run_id, release);
        run.inputs = inputs;
        run.approved_by = approved_by;
        run.warnings =
            checks.iter().filter(|c| c.warning).map(|c| json!({"name": c.name, "detail": c.detail})).collect();
        let outcome = nodes::run(&mut run).unwrap_or_else(|e| Outcome::Failed {
            step: e.step().to_owned(),
            reason: e.reason(),
            log: e.log().to_owned(),
        });
        self.finish(subject, &mut run, &outcome, state);
        if let Some(sync) = &self.options.sync {
            sync.publish_results(&id, &node.name, &outcome.kind().to_string(), &run_id);
        }
        Some(Ran {
            task: id,
            node: node.name.clone(),
            outcome: outcome.kind(),
            run_id,
            duration_ms: started.elapsed().as_millis() as u64,
            summary: self.secrets.mask(&run.summary),
            artifacts: run.artifacts.clone(),
            deployed_to: node.action.deploys().then(|| node.changes_environment()).flatten(),
            warnings: checks.iter().filter(|c| c.warning).map(|c| format!("{}: {}", c.name, c.detail)).collect(),
            agent: (!run.attempts.is_empty()).then(|| AgentFigures {
                verdicts: run.attempts.iter().map(|a| a["verdict"].as_str().unwrap_or_default().to_owned()).collect(),
                tokens: run.agent_usage.map_or(0, |(usage, _)| usage.tokens()),
                cost_usd: run.agent_usage.filter(|(_, known)| *known).and_then(|(usage, _)| usage.cost_usd),
            }),
            switched_back: run
                .deploy
                .as_ref()
                .is_some_and(|d| d.restored_previous || d.rollback.as_ref().is_some_and(|r| r.success)),
        })
    }

    /// Writes the claim of task `id` (while its status is one of `expect`), and in the same
    /// rewrite of `tasks.json` the outcome that waits for it ([`outcome::Deferred`]). Returns
    /// whether the claim was written. The claim lands only with the outcome: the pass counted
    /// that task finished when it chose this one. When the outcome does not land (its entry no
    /// longer carries the run's claim), neither does the claim, and `claims_allowed` turns
    /// false for the rest of the pass, whose view of the file is no longer true. When the
    /// write fails, the outcome is written on its own before the claim's error is returned.
    fn claim_with_deferred(
        &self,
        known: Option<&crate::validate::KnownTasks>,
        id: &str,
        expect: &[&str],
        claim: &[FieldOp],
        claims_allowed: &mut bool,
    ) -> Result<bool, StoreError> {
        let index = Some(&*self.options.task_index);
        let Some(deferred) = self.deferred.borrow_mut().take() else {
            return record::edit_known_task(self.ws, known, index, id, expect, claim.to_vec());
        };
        let edits = [
            record::EntryEdit {
                id: &deferred.task,
                expect: &[],
                claim: Some(&deferred.claim),
                ops: &deferred.ops,
                needs: None,
            },
            record::EntryEdit { id, expect, claim: None, ops: claim, needs: Some(0) },
        ];
        match record::edit_known_tasks(self.ws, known, index, &edits) {
            Ok(mut edited) => {
                let claimed = edited.pop().is_some_and(|e| e.applied);
                let outcome = edited.pop().map(|e| e.claimed).unwrap_or(record::Claimed::Applied);
                if outcome != record::Claimed::Applied {
                    *claims_allowed = false;
                }
                self.outcome_written(deferred, Ok(outcome));
                Ok(claimed)
            }
            Err(e) => {
                *self.deferred.borrow_mut() = Some(deferred);
                self.flush_deferred(known);
                Err(e)
            }
        }
    }

    /// Everything a node execution of `task` needs, for run `run_id`.
    pub(super) fn node_run<'a>(
        &'a self,
        task: &'a Task,
        node: &'a Node,
        run_id: &str,
        release: Release,
    ) -> NodeRun<'a> {
        let id = task.id.clone();
        let runner = Runner {
            run_dir: nodes::run_dir(self.ws, run_id),
            workspace: self.ws.root.clone(),
            env: vec![
                ("OPSFLOW_VERSION".into(), release.version.to_string()),
                ("OPSFLOW_UNIT_ID".into(), release.unit.clone()),
                ("OPSFLOW_TASK_ID".into(), id),
                ("OPSFLOW_RUN_ID".into(), run_id.to_owned()),
                ("OPSFLOW_WORKSPACE".into(), self.ws.root.to_string_lossy().into_owned()),
            ],
            secrets: self.secrets.clone(),
            default_timeout: self.ws.config.devops.verification_timeout,
            abort: Arc::clone(&self.options.cancel.abort),
        };
        NodeRun {
            ws: self.ws,
            renderer: &self.renderer,
            runner,
            node,
            task,
            run_id: run_id.to_owned(),
            release,
            inputs: Vec::new(),
            artifacts: Vec::new(),
            also_completed: Vec::new(),
            summary: String::new(),
            deploy: None,
            approved_by: None,
            rolled_back: Vec::new(),
            warnings: Vec::new(),
            decided: None,
            waits_for_decision: None,
            record_errors: Vec::new(),
            claim: None,
            after_switch: false,
            attempts: Vec::new(),
            agent_usage: None,
            rerender: None,
        }
    }

    /// A claim `tasks.json` refused (read-only, immutable, a full disk): the run's failure to
    /// write, a line in the audit log, and one human request while it lasts, so nobody waits
    /// on a daemon that says nothing.
    pub(super) fn claim_refused(&self, subject: &Subject<'_>, run_id: &str, why: &str) {
        let (task, node) = (subject.task, subject.node);
        let id = task.id.as_str();
        let file = self.ws.config.paths.tasks.clone();
        self.write_failed(format!("cannot claim {id}: {why}"));
        self.audit.record(run_id, "claim_refused", id, why, &[]);
        let request = HumanRequest {
            agent: self.ws.config.agent.name.clone(),
            task_id: id.to_owned(),
            node: node.name.clone(),
            unit_id: subject.release.unit.clone(),
            severity: "HIGH",
            issue: format!("`{file}` refused the claim of `{id}`: {why}"),
            impact: format!("`{}` cannot start; no work of this runner can be recorded", node.name),
            actions: vec!["nothing was run or changed".to_owned()],
            // Not answered by any later state of the task: a person closes it.
            status: "needs attention".into(),
            help_needed: format!("make `{file}` writable again (permissions, `chattr -i`, free disk space)"),
            contacts: "the workspace's maintainers".into(),
            notified: String::new(),
            raised_at: crate::time::now_rfc3339(),
            run_id: run_id.to_owned(),
        };
        self.request_human(&request, &format!("claim refused by {file}"), why);
    }
}
