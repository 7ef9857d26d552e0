//! Blocking: recording that a task waits (`blocked`, its reason, one human request per
//! cause, the hand-off signal) and writing a release's approval request once.

#[allow(unused_imports)]
use super::*;

impl<'w> Engine<'w> {
    /// Records a block: task `blocked` with the reason, one human request, the approval
    /// request when only a human is missing. Writes nothing if it was already recorded.
    pub(super) fn block(
        &self,
        subject: &Subject<'_>,
        reason: &str,
        qa_rejected: Option<&str>,
        request_approval: bool,
        checks: &[Check],
    ) {
        let (task, node, release) = (subject.task, subject.node, &subject.release);
        let id = task.id.as_str();
        let (unit, version) = (release.unit.clone(), release.version.as_str());
        let same = task.status == TaskStatus::Blocked && task.blocked_reason.as_deref() == Some(reason);
        let run_id = new_run_id();
        if same {
            return;
        }
        let ops = vec![
            FieldOp::Set("status".into(), TaskStatus::Blocked.as_str().into()),
            FieldOp::Set("blocked_reason".into(), reason.into()),
            FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()),
            FieldOp::Set("updated_at".into(), crate::time::now_rfc3339().into()),
        ];
        let current = task.status.as_str();
        if !task.from_state {
            match record::edit_task(self.ws, Some(id), &[current], ops, Vec::new()) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.write_failed(format!("cannot record that {id} is blocked: {e}"));
                    return;
                }
            }
        }
        self.audit.record(&run_id, "blocked", id, reason, &[]);
        let mut fields = vec![FieldOp::Set("status".into(), "blocked".into())];
        if task.from_state {
            // The node stands for itself: its entry carries what a task would.
            fields.push(FieldOp::Set("blocked_reason".into(), reason.into()));
            fields.push(FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()));
        }
        self.edit_state(StateEdit { node: node.name.clone(), fields, current_nodes: None });
        if let Some(environment) = &subject.environment {
            self.record_wait(environment, release, checks);
        }
        // Only time or an unlock clears a wait for the lock, window or timer: nobody is asked.
        if only_scheduled(checks) {
            return;
        }
        // "for unit X" only when there is a unit; environment work has none.
        let for_unit = if unit.is_empty() { String::new() } else { format!(" for unit `{unit}`") };
        let approval_file = (request_approval || only_an_approval_missing(checks)).then(|| {
            self.approval_request_file(release)
                .unwrap_or_else(|| release::output_path(self.ws, &gates::approval_file_name("production"), release))
        });
        let (severity, issue, help, contacts) = match (qa_rejected, &approval_file) {
            (Some(why), _) => (
                "HIGH",
                format!("QA rejected unit `{unit}`: {why}"),
                "QA to re-test and approve the unit, or close the task".to_owned(),
                "QA-Engineer",
            ),
            (None, Some(file)) => (
                "HIGH",
                format!("`{}`{for_unit} version `{version}` waits for a human approval", node.name),
                if self.ws.config.devops.approval_identity.by_git() {
                    format!(
                        "tick `- [x] Approved` in `{file}` and fill in `approved_by` (or set `status: approved` there), then commit it as yourself (devops.approval_identity: the commit's author is the approver); tick `- [x] Hold` to hold"
                    )
                } else {
                    format!(
                        "tick `- [x] Approved` in `{file}` and fill in `approved_by` (or set `status: approved` there); tick `- [x] Hold` to hold"
                    )
                },
                "devops.approvers",
            ),
            (None, None) if checks.iter().any(|c| c.id == CheckId::Untrusted && c.blocks()) => (
                "HIGH",
                format!("`{}`{for_unit} would run a command that git sync brought in and nobody trusted yet", node.name),
                "review the change listed under Actions Taken (old → new, the commit and its author), then run `opsflow trust`"
                    .to_owned(),
                "the workspace's maintainers",
            ),
            (None, None) => (
                "HIGH",
                format!("`{}`{for_unit} is blocked by its gates", node.name),
                "resolve the failed checks listed under Actions Taken".to_owned(),
                "Product-Manager",
            ),
        };
        let mut actions: Vec<String> =
            checks.iter().filter(|c| c.blocks()).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        actions.insert(
            0,
            if node.action.deploys() {
                "Deployment blocked; nothing was deployed"
            } else {
                "Blocked before it ran; nothing was changed"
            }
            .to_owned(),
        );
        let request = HumanRequest {
            agent: self.ws.config.agent.name.clone(),
            task_id: id.to_owned(),
            node: node.name.clone(),
            unit_id: unit.clone(),
            severity,
            issue,
            impact: format!("`{}` cannot run until this is resolved", node.name),
            actions,
            status: "blocked".into(),
            help_needed: help,
            contacts: contacts.into(),
            notified: String::new(),
            raised_at: crate::time::now_rfc3339(),
            run_id: run_id.clone(),
        };
        // One entry per cause, whatever the wording of its reason: the approval a person owes,
        // QA's rejection, or the failed checks by name.
        let cause = match (qa_rejected, &approval_file) {
            (Some(_), _) => "qa rejected".to_owned(),
            (None, Some(_)) => "approval".to_owned(),
            (None, None) => {
                let mut names: Vec<&str> = checks.iter().filter(|c| c.blocks()).map(|c| c.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                format!("gates: {}", names.join(", "))
            }
        };
        let environment = subject.environment.clone().unwrap_or_default();
        match &approval_file {
            Some(file) => self.raise(
                crate::notify::Event::ApprovalWaiting,
                &format!("approval {unit} {version} {file}"),
                crate::notify::Raised {
                    unit_id: unit.clone(),
                    version: version.to_owned(),
                    environment,
                    task_id: id.to_owned(),
                    run_id: run_id.clone(),
                    message: request.issue.clone(),
                    file: Some(file.clone()),
                    command: Some(if unit.is_empty() {
                        "opsflow approve".to_owned()
                    } else {
                        format!("opsflow approve {unit} {version}")
                    }),
                    request_key: None,
                },
            ),
            None => self.raise(
                crate::notify::Event::Blocked,
                &format!("blocked {id} {} {cause} {}", node.name, sha256::hex(reason.as_bytes())),
                crate::notify::Raised {
                    unit_id: unit.clone(),
                    version: version.to_owned(),
                    environment,
                    task_id: id.to_owned(),
                    run_id: run_id.clone(),
                    message: format!("{}: {reason}", request.issue),
                    file: Some(self.ws.config.paths.human_requests.clone()),
                    command: Some(format!("opsflow retry {id}")),
                    request_key: None,
                },
            ),
        }
        self.escalate(&request, &cause, reason, approval_file.as_deref());
        if node.action.deploys() {
            // The signal hands over to whom the escalation goes: QA for its own rejection.
            let next = qa_rejected.map(|_| "QA-Engineer");
            self.signal_to(&unit, "blocked", &[], &request.issue, next);
        }
    }

    /// The approval file of `release` that exists now, if any.
    pub(super) fn approval_request_file(&self, release: &Release) -> Option<String> {
        release::find(self.ws, &gates::approval_file_name("production"), release)
            .ok()
            .and_then(Lookup::found)
            .map(|artifact| artifact.file)
    }

    /// Writes the approval request of the task's release once: from then on the file is the
    /// human's and is never overwritten. Each release gets its own request: the plain name
    /// when it is free, else `R12-prod-approval-<UNIT_ID>-<version>.md` beside another
    /// release's file. A copy of the request as written goes to the release's history, so
    /// that the request itself never counts as an approval. Returns whether it wrote the file.
    pub(super) fn write_approval_request(&self, subject: &Subject<'_>, checks: &[Check]) -> bool {
        let (task, node, release) = (subject.task, subject.node, &subject.release);
        let (unit, version) = (release.unit.clone(), release.version.as_str().to_owned());
        let run_id = new_run_id();
        let name = gates::approval_file_name("production");
        if self.approval_request_file(release).is_some() {
            return false;
        }
        let relative = release::output_path(self.ws, &name, release);
        let Ok(path) = self.ws.inside(&relative) else { return false };
        if path.exists() || path.symlink_metadata().is_ok() {
            return false;
        }
        let mut front = serde_json::Map::new();
        front.insert("status".into(), "pending".into());
        front.insert("approved_by".into(), Value::Null);
        front.insert("unit_id".into(), unit.clone().into());
        front.insert("version".into(), version.clone().into());
        front.insert("node".into(), node.name.clone().into());
        front.insert("run_id".into(), run_id.clone().into());
        front.insert("generated_at".into(), crate::time::now_rfc3339().into());
        let context = json!({
            "unit_id": unit,
            "version": version,
            "approval_file": relative,
            "task": {"id": task.id, "title": task.title},
            "checks": checks.iter().filter(|c| c.passed && c.id != CheckId::Schedule).collect::<Vec<_>>(),
            "schedule": checks.iter().filter(|c| c.id == CheckId::Schedule).collect::<Vec<_>>(),
            "warnings": checks.iter().filter(|c| c.warning).collect::<Vec<_>>(),
            "overridable": checks.iter().filter(|c| c.overridable && !c.passed).collect::<Vec<_>>(),
            "approvers": self.ws.config.devops.approvers,
        });
        let text = match self.renderer.markdown("R12-prod-approval.md", &front, &context) {
            Ok(text) => self.secrets.mask(&text),
            Err(e) => {
                tracing::error!("cannot render the approval request: {e}");
                return false;
            }
        };
        if let Err(e) = release::keep_in_history(self.ws, release, &name, &text) {
            tracing::error!("cannot keep the approval request in the release history: {e}");
            return false;
        }
        // create_new: a human's file that appeared meanwhile is never replaced.
        let created = crate::workspace::write::create_new(&self.ws.root, &path).and_then(|mut f| {
            use std::io::Write;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        match created {
            Ok(()) => {
                self.audit.record(&run_id, "approval_requested", &relative, "every other gate passed", &[]);
                true
            }
            Err(e) => {
                tracing::warn!("cannot write the approval request {relative}: {e}");
                false
            }
        }
    }
}
