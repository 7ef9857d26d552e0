//! Admission: what a task's node needs before it may run. The release it works on, the
//! environment it changes and whether that environment is free, the inputs, the gates and
//! the production checks (the commit check among them), and the approval, from files read
//! in this pass. What a task waits on is decided in `readiness.rs`; the checks are here.

#[allow(unused_imports)]
use super::*;

impl<'w> Engine<'w> {
    /// Resolves what a run of `node` for `task` works on, once: its release and the
    /// environment it changes (see [`Subject`]).
    pub(super) fn subject<'a>(&self, task: &'a Task, node: &'a Node) -> Subject<'a> {
        Subject { task, node, release: self.release_of(task), environment: self.environment_of(task, node) }
    }

    /// The release a task works on: its `unit_id` and `version`, the version otherwise taken
    /// from the newest R07 of its unit.
    fn release_of(&self, task: &Task) -> Release {
        let mut release = task.release();
        if release.version.is_empty() {
            let newest = release::find(self.ws, "R07-version-tag.md", &release)
                .ok()
                .and_then(Lookup::found)
                .and_then(|a| a.field("version").map(str::to_owned))
                .unwrap_or_default();
            release.version = release::Version::new(newest);
        }
        release
    }

    /// The environment a node of `task` changes, if it changes one.
    fn environment_of(&self, task: &Task, node: &Node) -> Option<String> {
        match node.action {
            Action::RollbackDeployment => {
                let decision = nodes::requested_rollback(task)
                    .then(|| release::find(self.ws, "R17-rollback-decision.md", &task.release()).ok())
                    .flatten()
                    .and_then(Lookup::found);
                Some(nodes::rollback_environment(task, decision.as_ref()))
            }
            _ => node.changes_environment().map(|environment| environment.name().to_owned()),
        }
    }

    /// What the environment of `task` says before any gate: busy (its deploy lock is held,
    /// another task's rollout is unfinished), or this task's own rollout is paused and waits
    /// for, or has, a human's decision. `None`: nothing in the way, check the gates.
    pub(super) fn environment_readiness(&self, subject: &Subject<'_>) -> Option<Result<Readiness, (Check, Artifact)>> {
        let task = subject.task;
        let name = subject.environment.clone()?;
        let env = self.ws.environment(&name).ok()?;
        let blocked = |reason: String| {
            let check = Check::new("environment", &name, false, reason.clone());
            Some(Ok(Readiness::Blocked { checks: vec![check], reason, qa_rejected: None, request_approval: false }))
        };
        let lock = env.lock_path(self.ws);
        if let Some(holder) = crate::rollout::deploy_lock::holder(&lock) {
            let held =
                crate::rollout::deploy_lock::DeployLockError::Held { environment: name.clone(), holder, path: lock };
            return blocked(held.to_string());
        }
        let journal = match journal::Journal::load(self.ws, &name) {
            Ok(Some(journal)) => journal,
            Ok(None) => return None,
            Err(why) => return blocked(why.to_string()),
        };
        if journal.task != task.id || journal.phase != journal::Phase::Paused {
            return blocked(nodes::other_rollout(env, &journal));
        }
        let waiting = nodes::pause_reason(&journal);
        match gates::rollout_decision(self.ws, &journal) {
            Err(problems) => Some(Ok(Readiness::Invalid(problems))),
            Ok((gates::Decision::Pending(why), _)) => {
                blocked(if why.is_empty() { waiting } else { format!("{waiting}; {why}") })
            }
            Ok((gates::Decision::Rollback { by, .. }, artifact)) => {
                // Rolling back needs no gate: it only returns to what ran before.
                let check = Check::new("decision", "rollout decision", true, format!("{by} decided to roll back"));
                Some(Ok(Readiness::Ready {
                    inputs: artifact.into_iter().collect(),
                    checks: vec![check],
                    version: journal.version.clone(),
                }))
            }
            Ok((gates::Decision::Proceed { by, .. }, Some(artifact))) => {
                let check = Check::new("decision", "rollout decision", true, format!("{by} decided to proceed"));
                Some(Err((check, artifact)))
            }
            Ok((gates::Decision::Proceed { .. }, None)) => blocked(waiting),
        }
    }

    /// Inputs, gates and approvals of `node` for `task`.
    pub(super) fn readiness(&self, facts: &mut Pass, subject: &Subject<'_>) -> Readiness {
        let decided = match self.environment_readiness(subject) {
            Some(Ok(readiness)) => return readiness,
            Some(Err(decided)) => Some(decided),
            None => None,
        };
        let mut readiness = self.gate_readiness(facts, subject);
        if let (Some((check, artifact)), Readiness::Ready { inputs, checks, .. }) = (decided, &mut readiness) {
            checks.push(check);
            inputs.push(artifact);
        }
        readiness
    }

    /// A change git sync brought in to what `node` runs or renders, not trusted yet.
    pub(super) fn trust_check(&self, subject: &Subject<'_>) -> Option<Check> {
        if !self.ws.config.git.sync {
            return None;
        }
        let changes = crate::trust::untrusted(self.ws);
        if changes.is_empty() {
            return None;
        }
        let renders = |output: &str| self.graph.nodes.iter().any(|n| n.outputs.iter().any(|o| o == output));
        let holding = crate::trust::holding(self.ws, &changes, subject.node, subject.environment.as_deref(), renders);
        if holding.is_empty() {
            return None;
        }
        let described: Vec<String> = holding.iter().map(|c| crate::trust::describe(c)).collect();
        let detail = format!("{}; review it and run `opsflow trust` to let it run", described.join("; "));
        Some(Check::new("trust", "trusted commands", false, detail).with_id(CheckId::Untrusted))
    }

    /// The inputs and gates of `node` for `task`.
    pub(super) fn gate_readiness(&self, facts: &mut Pass, subject: &Subject<'_>) -> Readiness {
        let (task, node, release) = (subject.task, subject.node, &subject.release);
        let (unit, version) = (release.unit.clone(), release.version.as_str().to_owned());
        let mut checks = Vec::new();
        let mut inputs = Vec::new();
        let mut problems = Vec::new();
        let needs_version = matches!(
            node.action,
            Action::BuildRelease
                | Action::DeployToStaging
                | Action::DeployToProduction
                | Action::PostDeployVerification
        );
        if needs_version && version.is_empty() {
            checks.push(Check::new(
                "inputs",
                "version",
                false,
                "the task has no `version` and there is no R07-version-tag.md to take it from",
            ));
        }
        if (node.action.deploys() || node.action == Action::PostDeployVerification) && unit.is_empty() {
            checks.push(Check::new(
                "inputs",
                "unit",
                false,
                "the task has no `unit_id`, so no QA report can approve it",
            ));
        }
        checks.extend(config_checks(self.ws, node));
        checks.extend(self.trust_check(subject));
        for input in &node.inputs {
            if input.starts_with("R06-release-artifacts") {
                if !version.is_empty() {
                    let dir = nodes::release_dir(self.ws, release);
                    let present = self.ws.path(&dir).join("SHA256SUMS").is_file();
                    checks.push(Check::new(
                        "inputs",
                        input,
                        present,
                        if present {
                            format!("{dir}/ present")
                        } else {
                            format!("{dir}/SHA256SUMS is missing: build the release first")
                        },
                    ));
                }
                continue;
            }
            if (input.starts_with("R12-") || input.starts_with("R08-")) && node.action != Action::Agent {
                continue; // Read by the production gate below.
            }
            if input.starts_with("R17-") && !nodes::requested_rollback(task) {
                // A rollback task of its own (`opsflow rollback`) needs no R17.
                continue;
            }
            match release::find(self.ws, input, release) {
                Ok(Lookup::Found(artifact)) => {
                    if input.starts_with("R17-") && artifact.field("decision") != Some("rollback") {
                        checks.push(Check::new(
                            "inputs",
                            input,
                            false,
                            format!("{} does not say `decision: rollback`", artifact.file),
                        ));
                    }
                    inputs.push(artifact);
                }
                Ok(other) if optional_input(input) => checks.push(Check::new(
                    "inputs",
                    input,
                    true,
                    format!("{}; the node runs without it", other.why_not(self.ws, input, release)),
                )),
                Ok(other) => checks.push(Check::new("inputs", input, false, {
                    let why = other.why_not(self.ws, input, release);
                    match self.graph.producer_of(input) {
                        Some(producer) if matches!(other, Lookup::Missing) => format!("{why} (written by {producer})"),
                        _ => why,
                    }
                })),
                Err(diagnostics) => problems.extend(diagnostics),
            }
        }
        if node.action == Action::RollbackDeployment {
            let decision = inputs.iter().find(|a| a.file.contains("R17-rollback-decision"));
            if let Some(why) = nodes::rollback_refused(self.ws, task, decision) {
                checks.push(Check::new("rollback", "a release to restore", false, why));
            }
        }
        let mut qa_rejected = None;
        let mut request_approval = false;
        if node.action.deploys() && !unit.is_empty() {
            match gates::load_qa(self.ws, release) {
                Err(diagnostics) => problems.extend(diagnostics),
                Ok(evidence) => {
                    let verdict = gates::qa_gate(&self.ws.config, release, &evidence);
                    qa_rejected = verdict.rejected;
                    checks.extend(verdict.checks);
                    inputs.extend(evidence.markdown.clone());
                    // A node that deploys always changes an environment.
                    let environment = node.changes_environment().unwrap_or(Environment::Production);
                    if environment == Environment::Staging {
                        checks.extend(gates::staging_gate(&self.ws.config, &evidence));
                    } else {
                        checks.extend(gates::production_quality(&self.ws.config, &evidence));
                        checks.extend(self.production_readiness(facts, release, &mut inputs, &mut problems));
                    }
                    match self.ws.environment(environment.name()) {
                        Ok(env) => {
                            let mut approved = schedule::Approved::Not;
                            let needs_approval = env.requires_approval
                                || (environment == Environment::Production
                                    && self.ws.config.devops.require_human_approval);
                            if needs_approval {
                                let single = facts
                                    .open_production
                                    .iter()
                                    .filter(|open| open.unit == unit && !open.version.is_empty())
                                    .map(|open| open.version.bare().to_owned())
                                    .collect::<std::collections::BTreeSet<_>>()
                                    .len()
                                    <= 1;
                                match gates::human_approval(self.ws, environment.name(), release, single) {
                                    Ok((check, approval, artifact)) => {
                                        if approval == Approval::Approved {
                                            let by = artifact
                                                .as_ref()
                                                .and_then(|a| a.field("approved_by"))
                                                .map(str::trim)
                                                .filter(|by| !by.is_empty())
                                                .map(str::to_owned);
                                            approved = schedule::Approved::By(by);
                                        }
                                        // A check a person may let through does not keep the
                                        // request from being written: it is what they decide on.
                                        request_approval = approval == Approval::Missing
                                            && checks.iter().all(|c| !c.blocks() || c.overridable);
                                        if approval == Approval::Approved
                                            && let Some(artifact) = &artifact
                                            && artifact.flag("allow_revert")
                                        {
                                            let by = artifact.field("approved_by").unwrap_or("the approver");
                                            let letter = format!("`allow_revert: true` in {} by {by}", artifact.file);
                                            allow_overridable(&mut checks, &letter);
                                        }
                                        checks.push(check);
                                        inputs.extend(artifact);
                                    }
                                    Err(diagnostics) => problems.extend(diagnostics),
                                }
                            } else {
                                approved = schedule::Approved::NotNeeded;
                                if task.raw.get("allow_revert") == Some(&Value::Bool(true)) {
                                    allow_overridable(
                                        &mut checks,
                                        &format!("`allow_revert: true` on task {}", task.id),
                                    );
                                }
                            }
                            let others_pass = checks.iter().all(|c| !c.blocks());
                            checks.extend(self.schedule_checks(facts, env, release, approved, others_pass));
                        }
                        Err(why) => checks.push(Check::new(
                            "config",
                            &format!("environments.{environment}"),
                            false,
                            why.to_string(),
                        )),
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Readiness::Invalid(problems);
        }
        let failed: Vec<&Check> = checks.iter().filter(|c| c.blocks()).collect();
        if failed.is_empty() {
            Readiness::Ready { inputs, checks, version }
        } else {
            let reason = failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ");
            Readiness::Blocked { checks, reason, qa_rejected, request_approval }
        }
    }

    /// The production checks that are not QA figures: staging succeeded for this version, a
    /// rollback path exists, monitoring is configured.
    pub(super) fn production_readiness(
        &self,
        facts: &Pass,
        release: &Release,
        inputs: &mut Vec<artifacts::Artifact>,
        problems: &mut Vec<Diagnostic>,
    ) -> Vec<Check> {
        let mut checks = vec![gates::failures_resolved(&release.unit, &facts.unresolved)];
        match release::find(self.ws, "R08-staging-deploy.md", release) {
            Ok(lookup) => {
                checks.extend(gates::staging_succeeded(release, &lookup));
                if let Lookup::Found(r08) = lookup {
                    inputs.push(r08);
                }
            }
            Err(diagnostics) => problems.extend(diagnostics),
        }
        match self.ws.environment("production") {
            Ok(env) => match env.history(self.ws) {
                // Nothing deploys to an environment whose record cannot be read.
                Err(e) => checks.push(Check::new("production", "environment record readable", false, e.to_string())),
                Ok(record) => {
                    let live = env.live(self.ws, &record);
                    let local = env.local(&self.ws.root);
                    let live_dir = local.as_ref().and_then(|local| local.live_dir());
                    let path = match &local {
                        Some(local) => gates::RollbackPath::Local {
                            live_dir: live_dir.as_deref(),
                            live: live.as_ref(),
                            target: local.rollback_target_in(&record),
                        },
                        None if env.provider == deploy::Provider::Ssh => {
                            gates::RollbackPath::Ssh { live: record.newest_good() }
                        }
                        None => gates::RollbackPath::Command { rollback_set: env.command("rollback").is_some() },
                    };
                    checks.push(gates::rollback_path(path));
                    checks.push(gates::monitoring_configured(env.health_checks.len()));
                    checks.push(self.containment_check(release, &record, live.as_ref()));
                }
            },
            Err(why) => checks.push(Check::new("production", "environment", false, why.to_string())),
        }
        checks
    }

    /// Whether the release contains what production runs and every release shipped there
    /// before (`git merge-base --is-ancestor`), so that shipping it undoes nobody's release
    /// without a person saying so.
    pub(super) fn containment_check(&self, release: &Release, record: &Record, live: Option<&Deployment>) -> Check {
        let commit = release::find(self.ws, "R07-version-tag.md", release)
            .ok()
            .and_then(Lookup::found)
            .and_then(|r07| r07.field("commit").map(str::to_owned));
        let found = view::containment(&release.label(), commit.as_deref(), record, live, |commit, ancestors| {
            view::contains_each(&self.ws.root, commit, ancestors)
        });
        match found {
            Containment::Contains(detail) => {
                Check::new("production", gates::CONTAINS_LIVE, true, detail).with_id(CheckId::ContainsLive)
            }
            Containment::Unchecked(why) => {
                Check::new("production", gates::CONTAINS_LIVE, true, format!("not checked: {why}"))
                    .with_id(CheckId::ContainsLive)
            }
            Containment::Removes { detail, .. } => {
                let mut check = Check::new(
                    "production",
                    gates::CONTAINS_LIVE,
                    false,
                    format!(
                        "{detail}; to ship it on purpose, approve it with `allow_revert: true` in the approval's front matter"
                    ),
                );
                check.overridable = true;
                check.with_id(CheckId::ContainsLive)
            }
        }
    }
}
