//! Deploying, verifying and rolling back together: a production deploy goes straight on to
//! its verification, and verification can roll back, so they share one room. Also the
//! reports of a deployment (R13 to R18, `deployment-report.json`, `Deploy-<UNIT_ID>.md`) in the
//! seeds' shapes.

#[allow(unused_imports)]
use super::*;

pub(crate) fn deploy_to(run: &mut NodeRun<'_>, environment: &str) -> Result<Outcome, NodeError> {
    let env = run.ws.environment(environment).map_err(NodeError::Environment)?;
    let lock = match lock_environment(run, env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held.to_string(), escalate: false }),
    };
    keep_qa_verdict(run);
    let mut vars = run.env_vars(environment);
    vars.push(("OPSFLOW_VERSION".into(), run.release.version.to_string()));
    let (journal, resumed) = match Journal::load(run.ws, &env.name).map_err(NodeError::Journal)? {
        Some(journal) if journal.task == run.task_id() && journal.phase == Phase::Paused => {
            match resume_paused(run, env, journal, &vars)? {
                Resumed::Finished(outcome) => return Ok(outcome),
                Resumed::Continue(journal) => (*journal, true),
            }
        }
        Some(journal) => return Ok(Outcome::Blocked { reason: other_rollout(env, &journal), escalate: false }),
        None => (new_journal(run, env, Phase::Deploying), false),
    };
    let relative = release_dir(run.ws, &run.release());
    // The release is deployed from a copy without SHA256SUMS, checked again just before.
    let payload = run.ws.root.join(format!(".opsflow/payload-{}", run.run_id));
    let staged = run.ws.inside(&relative).map_err(NodeError::input("stage"));
    let staged = staged.and_then(|release| {
        check_built_digest(run, &release)?;
        Ok(release)
    });
    let failed_staging = match staged.and_then(|release| stage_release(&run.ws.root, &release, &payload)) {
        Ok(()) => None,
        Err(error) if resumed => Some(error),
        Err(error) => return Err(error),
    };
    let mut journal = journal;
    if failed_staging.is_none() && journal.next_step == 0 && !journal.changed {
        // The baseline the analyses compare against is read before anything changes.
        journal.baseline = deploy::baseline(&run.runner, env, &vars).map(|b| b.sample);
    }
    journal.save(run.ws).map_err(NodeError::Journal)?;
    let provenance = provenance(run, env);
    // The approval is read again right before traffic moves: a decision file a person was
    // still writing, or changed since, is decided again.
    let approval = run.inputs.iter().find(|a| a.file.contains("-approval")).map(|a| (a.file.clone(), a.sha256.clone()));
    let (ws, release, env_name) = (run.ws, run.release(), env.name.clone());
    let recheck = move || -> Result<(), String> {
        let Some((file, sha)) = &approval else { return Ok(()) };
        ws.settle_decision(file);
        let now = ws.read_text(file).ok().flatten().map(|text| sha256::hex(text.as_bytes())).unwrap_or_default();
        if &now == sha {
            return Ok(());
        }
        match gates::human_approval(ws, &env_name, &release, true) {
            Ok((check, _, _)) if check.passed => Ok(()),
            Ok((check, _, _)) => Err(format!(
                "{file} changed before the switch and no longer lets the release through: {}",
                check.detail
            )),
            Err(problems) => Err(format!(
                "{file} changed before the switch and cannot be read: {}",
                problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            )),
        }
    };
    let mut rollout = Rollout {
        ws: run.ws,
        runner: &run.runner,
        env,
        vars: vars.clone(),
        journal,
        provenance,
        recheck: Some(&recheck),
    };
    let mut report = match failed_staging {
        None => deploy::deploy(&mut rollout, &payload),
        // A paused rollout told to proceed cannot go on with a release that changed: it is
        // undone, and its journal removed below, so the environment is neither left half
        // rolled out nor held by a journal that no run will resume.
        Some(error) => deploy::abandon(&mut rollout, error.step(), error.reason()),
    };
    let mut journal = rollout.journal;
    // From here on the environment may run the new release: records that cannot be written
    // are named, and the run goes on to verify, roll back and record what is live.
    run.after_switch = journal.changed;
    write::remove_tree(&run.ws.root, &payload).ok();
    report.stale_lock = lock.previous_holders();
    run.record_errors.extend(report.record_errors.iter().cloned());
    run.deploy = Some(report.clone());
    if report.failed_step.as_deref() == Some(deploy::APPROVAL_STEP) {
        // Nothing moved: the task waits for the decision to be taken again.
        Journal::remove(run.ws, &env.name);
        run.summary = format!("stopped {} before the switch: {}", run.release.label(), report.reason);
        return Ok(Outcome::Blocked { reason: report.reason.clone(), escalate: false });
    }
    let status = if report.paused.is_some() {
        "paused"
    } else if report.success {
        "success"
    } else {
        "failed"
    };
    let extra =
        json!({"deploy": report, "method": env.method(), "environment": env_context(env), "release_dir": relative});
    if environment == "staging" {
        let mut front = Map::new();
        let warnings: Vec<Value> = run
            .warnings
            .iter()
            .map(|w| {
                format!("{}: {}", w["name"].as_str().unwrap_or_default(), w["detail"].as_str().unwrap_or_default())
            })
            .map(Value::String)
            .collect();
        if !warnings.is_empty() {
            front.insert("warnings".into(), warnings.into());
        }
        run.write_markdown_with("R08-staging-deploy.md", None, status, extra.clone(), front)?;
        run.write_markdown("R09-smoke-tests.md", None, status, extra)?;
    } else {
        let mut front = Map::new();
        front.insert("approved_by".into(), run.approved_by.clone().map_or(Value::Null, Value::String));
        run.write_markdown_with("R13-prod-deploy.md", None, status, extra.clone(), front)?;
        run.write_markdown("R14-monitoring-active.md", None, status, extra)?;
        // The approval that let this release through is kept with the release's history.
        if let Some(approval) = run.inputs.iter().find(|a| a.file.contains("-approval")).cloned()
            && let Ok(Some(text)) = run.ws.read_text(&approval.file)
        {
            let name = approval.file.rsplit('/').next().unwrap_or_default().to_owned();
            if let Err(e) = release::keep_in_history(run.ws, &run.release(), &format!("approved-{name}"), &text) {
                run.record_errors
                    .push(format!("cannot keep the approval {} in the release's history: {e}", approval.file));
            }
        }
    }
    if let Some((stage, reason)) = report.paused.clone() {
        return pause(run, env, journal, &stage, &reason);
    }
    if !report.success {
        Journal::remove(run.ws, &env.name);
        let step = report.failed_step.clone().unwrap_or_else(|| "deploy".to_owned());
        // An analysis that fails is a rollback decision, recorded as such (R17, R18).
        if step == "analysis"
            && let Some(rollback) = report.rollback.clone()
        {
            let mut front = Map::new();
            front.insert("environment".into(), env.name.clone().into());
            front.insert("decided_by".into(), run.ws.config.agent.name.clone().into());
            write_rollback_decision(run, "rollback", &report.reason, front)?;
            write_rollback_result(run, &rollback, &report.reason, "")?;
            if environment == "production" {
                write_reports(run, env, &report, None, "rolled_back")?;
            }
            if rollback.success {
                run.summary = format!("rolled back {} in {environment}: {}", run.release.version, report.reason);
                return Ok(Outcome::RolledBack { reason: report.reason.clone() });
            }
            return Ok(Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: report.failed_log() });
        }
        if environment == "production" {
            write_reports(run, env, &report, None, "failed")?;
        }
        // Undoing the failed deploy failed too: the environment may be half changed.
        if let Some(rollback) = report.rollback.as_ref().filter(|r| !r.success) {
            return Ok(Outcome::Failed {
                step: "rollback".into(),
                reason: format!("{}; rolling back failed too: {}", report.reason, rollback.detail),
                log: report.failed_log(),
            });
        }
        return Ok(Outcome::Failed { step, reason: report.reason.clone(), log: report.failed_log() });
    }
    if environment != "production" {
        Journal::remove(run.ws, &env.name);
        run.summary = format!("deployed {} to {environment} ({})", run.release.version, report.strategy);
        return Ok(Outcome::Deployed);
    }
    // Production goes straight on to verification in the same run.
    journal.phase = Phase::Verifying;
    // The release is live: a journal that cannot be written is named, and verification goes
    // on (without it, a crash from here on is recovered as an interrupted run).
    let saved = journal.save(run.ws).map_err(NodeError::Journal);
    run.unless_switched(saved)?;
    let verified = verify(run, env, &mut journal, &vars)?;
    run.also_completed.push(Action::PostDeployVerification);
    let outcome = match verified {
        Verified::Passed(monitoring) => {
            write_reports(run, env, &report, Some(&monitoring), "success")?;
            run.summary =
                format!("deployed {} to production ({}) and verified it", run.release.version, report.strategy);
            Outcome::Deployed
        }
        Verified::Paused(monitoring) => {
            run.also_completed.clear();
            let reason = monitoring.reason.clone();
            // The report's statuses have no "paused": it says failed, and why it waits.
            run.waits_for_decision =
                Some(format!("the monitoring period paused for a human decision in R17: {reason}"));
            write_reports(run, env, &report, Some(&monitoring), "failed")?;
            // The decision renders every report again from these facts.
            journal.reports = Some(json!({"deploy": report, "monitoring": monitoring}));
            return pause(run, env, journal, "monitoring period", &reason);
        }
        Verified::Interrupted(monitoring) => {
            write_reports(run, env, &report, Some(&monitoring), "failed")?;
            Outcome::Failed { step: "verification".into(), reason: monitoring.reason, log: String::new() }
        }
        Verified::RolledBack(monitoring, rollback) => {
            let mut report = report.clone();
            report.rollback = Some((*rollback).clone());
            write_reports(run, env, &report, Some(&monitoring), "rolled_back")?;
            if rollback.success {
                run.summary = format!("rolled back {} in production: {}", run.release.version, monitoring.reason);
                Outcome::RolledBack { reason: monitoring.reason }
            } else {
                Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
            }
        }
    };
    Journal::remove(run.ws, &env.name);
    Ok(outcome)
}

/// Where the run's release comes from, for the environment's record: its R07 (commit, whether
/// the tree was dirty, the digest of `SHA256SUMS`), the task, who approved it, and the releases
/// a person let it remove (`allow_revert` in the approval).
fn provenance(run: &NodeRun<'_>, env: &EnvConfig) -> Provenance {
    let r07 = release::find(run.ws, "R07-version-tag.md", &run.release()).ok().and_then(Lookup::found);
    let commit = r07.as_ref().and_then(|r| r.field("commit").map(str::to_owned));
    let approval = run.inputs.iter().find(|a| a.file.contains("-approval"));
    let allowed_revert = match approval.filter(|a| a.flag("allow_revert")) {
        Some(_) => env
            .history(run.ws)
            .ok()
            .map(|record| {
                let live = env.live(run.ws, &record);
                match view::containment(&run.release.label(), commit.as_deref(), &record, live.as_ref(), |c, a| {
                    view::contains_each(&run.ws.root, c, a)
                }) {
                    view::Containment::Removes { releases, .. } => releases,
                    _ => Vec::new(),
                }
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    Provenance {
        task: run.task_id(),
        commit,
        dirty: r07.as_ref().and_then(|r| r.front_matter.get("dirty")).and_then(Value::as_bool),
        digest: r07.as_ref().and_then(|r| r.field("sha256sums").map(str::to_owned)),
        approved_by: run.approved_by.clone(),
        allowed_revert,
    }
}

/// Keeps the QA test report that let this release through in its history folder, so that the
/// verdict stays the release's when another unit's report later takes the plain file.
fn keep_qa_verdict(run: &mut NodeRun<'_>) {
    let Ok(evidence) = gates::load_qa(run.ws, &run.release()) else { return };
    let Some((file, _, _)) = evidence.report else { return };
    if run.release().history_dir(run.ws).is_some_and(|dir| file == format!("{dir}/{}", gates::QA_REPORT_COPY)) {
        return;
    }
    if let Ok(Some(text)) = run.ws.read_text(&file)
        && let Err(e) = release::keep_in_history(run.ws, &run.release(), gates::QA_REPORT_COPY, &text)
    {
        run.record_errors.push(format!("cannot keep {file} with {}: {e}", run.release.label()));
    }
}

/// The deploy locks an environment changes under: its own, and for `ssh` each host's.
pub(crate) struct EnvLock {
    pub local: DeployLock,
    pub hosts: Option<crate::rollout::ssh::HostLocks>,
}

impl EnvLock {
    /// The holders that died holding a lock this one took over, for the report.
    pub fn previous_holders(&self) -> Option<String> {
        let mut holders: Vec<String> = self.local.previous_holder.iter().cloned().collect();
        holders.extend(self.hosts.iter().flat_map(|h| h.taken_over.iter().cloned()));
        (!holders.is_empty()).then(|| holders.join("; "))
    }
}

/// Takes the deploy lock of `env` (and of each of its hosts, for `ssh`); `Ok(Err(..))` is a
/// lock another holder has, named with the lock file or the host.
pub(crate) fn lock_environment(run: &NodeRun<'_>, env: &EnvConfig) -> Result<Result<EnvLock, String>, NodeError> {
    let holder = Holder { agent: run.ws.config.agent.name.clone(), run_id: run.run_id.clone(), task: run.task_id() };
    let local = match deploy_lock::acquire(&run.ws.root, &env.lock_path(run.ws), &env.name, &holder) {
        Ok(lock) => {
            if let Some(previous) = &lock.previous_holder {
                tracing::warn!("took over the deploy lock of {} left by a holder that died ({previous})", env.name);
            }
            lock
        }
        Err(held @ DeployLockError::Held { .. }) => return Ok(Err(held.to_string())),
        Err(e) => return Err(NodeError::Lock(e)),
    };
    if env.provider != deploy::Provider::Ssh {
        return Ok(Ok(EnvLock { local, hosts: None }));
    }
    match crate::rollout::ssh::lock_hosts(&run.runner, env, &holder) {
        Ok(hosts) => Ok(Ok(EnvLock { local, hosts: Some(hosts) })),
        Err(held @ crate::rollout::ssh::HostLockError::Held { .. }) => Ok(Err(held.to_string())),
        Err(e) => Err(NodeError::HostLock(e)),
    }
}

/// Why a deploy to `env` waits for another task's unfinished rollout.
pub fn other_rollout(env: &EnvConfig, journal: &Journal) -> String {
    match &journal.pause {
        Some(pause) => format!(
            "{} has a paused rollout of task {} (version {}) waiting for a decision in {}",
            env.name, journal.task, journal.version, pause.decision_file
        ),
        None => format!(
            "{} has an unfinished rollout of task {} (version {}, run {})",
            env.name, journal.task, journal.version, journal.run_id
        ),
    }
}

/// The `blocked_reason` of a task whose rollout paused: the same text on every pass, so that
/// waiting writes nothing.
pub fn pause_reason(journal: &Journal) -> String {
    match &journal.pause {
        Some(pause) => format!(
            "rollout paused at {}: {}; decide in {} (`decision: rollback` or `decision: proceed`)",
            pause.stage, pause.reason, pause.decision_file
        ),
        None => format!("rollout of {} to {} paused", journal.version, journal.environment),
    }
}

pub(crate) fn new_journal(run: &NodeRun<'_>, env: &EnvConfig, phase: Phase) -> Journal {
    let now = crate::time::now_rfc3339();
    Journal {
        environment: env.name.clone(),
        task: run.task_id(),
        node: run.node.name.clone(),
        unit_id: run.release.unit.clone(),
        version: run.release.version.to_string(),
        run_id: run.run_id.clone(),
        agent: run.ws.config.agent.name.clone(),
        pid: std::process::id(),
        provider: env.provider.to_string(),
        strategy: env.strategy().to_owned(),
        phase,
        changed: phase != Phase::Deploying,
        started_at: now.clone(),
        updated_at: now,
        ..Journal::default()
    }
}

/// Pauses a rollout for a human: the journal keeps where it stopped, R17 asks for the
/// decision (`decision: pending`), and the task waits (`blocked`, re-checked every pass).
pub(crate) fn pause(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    mut journal: Journal,
    stage: &str,
    reason: &str,
) -> Result<Outcome, NodeError> {
    let decision_file = run.artifact_path("R17-rollback-decision.md");
    let id = format!("{}-{}", run.run_id, journal.next_step);
    journal.phase = Phase::Paused;
    journal.pause = Some(Pause {
        id: id.clone(),
        stage: stage.to_owned(),
        reason: run.runner.secrets.mask(reason),
        at: crate::time::now_rfc3339(),
        decision_file: decision_file.clone(),
    });
    journal.save(run.ws).map_err(NodeError::Journal)?;
    let release = ReleaseRef::new(journal.unit_id.clone(), journal.version.clone());
    let event = Event::new(
        EventKind::Paused,
        &release,
        &run.run_id,
        format!("at {stage}: {}", run.runner.secrets.mask(reason)),
    );
    if let Err(e) = env.log_event(run.ws, event) {
        tracing::error!("{e}");
    }
    let mut front = Map::new();
    front.insert("pause_id".into(), id.into());
    front.insert("environment".into(), env.name.clone().into());
    front.insert("stage".into(), stage.into());
    front.insert("decided_by".into(), Value::Null);
    write_rollback_decision(run, "pending", reason, front)?;
    run.summary =
        format!("paused {} in {} at {stage}: waiting for a decision in {decision_file}", run.release.version, env.name);
    Ok(Outcome::Blocked { reason: pause_reason(&journal), escalate: true })
}

/// How a paused rollout goes on.
pub(crate) enum Resumed {
    /// The decision ended it (rolled back, or accepted after the monitoring period), or it
    /// still waits.
    Finished(Outcome),
    /// `proceed` at a canary step or rolling batch: deploy on from the journal.
    Continue(Box<Journal>),
}

/// Checks a release against its SHA256SUMS and copies it, without that file, to `payload`,
/// the directory it is deployed from. Nothing is left at `payload` on error.
pub(crate) fn stage_release(root: &Path, dir: &Path, payload: &Path) -> Result<(), NodeError> {
    verify_release(dir).map_err(|source| NodeError::Release { step: "checksums", source })?;
    write::remove_tree(root, payload).map_err(NodeError::io("stage"))?;
    if let Err(e) = write::copy_tree(root, dir, payload) {
        write::remove_tree(root, payload).ok();
        return Err(NodeError::Io { step: "stage", source: e });
    }
    write::remove_file(root, &payload.join("SHA256SUMS")).map_err(NodeError::io("stage"))?;
    Ok(())
}

/// Acts on the human's decision about a paused rollout.
pub(crate) fn resume_paused(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    mut journal: Journal,
    vars: &[(String, String)],
) -> Result<Resumed, NodeError> {
    // A paused rollout had changed the environment already.
    run.after_switch = journal.changed;
    let (decision, artifact) = gates::rollout_decision(run.ws, &journal).map_err(NodeError::Decision)?;
    let decision_sha = artifact.as_ref().map(|a| a.sha256.clone()).unwrap_or_default();
    if let Some(artifact) = artifact
        && !run.inputs.iter().any(|a| a.file == artifact.file)
    {
        run.inputs.push(artifact);
    }
    let stage = journal.pause.as_ref().map(|p| p.stage.clone()).unwrap_or_default();
    match decision {
        Decision::Pending(_) => {
            Ok(Resumed::Finished(Outcome::Blocked { reason: pause_reason(&journal), escalate: false }))
        }
        Decision::Rollback { by, reason } => {
            let why = format!("{by} decided to roll back at {stage}: {reason}");
            run.decided = Some(Decided {
                decision: "rollback".into(),
                by: by.clone(),
                why: why.clone(),
                at: crate::time::now_rfc3339(),
            });
            let asked =
                deploy::Asked { by: by.clone(), reason: reason.clone(), run_id: run.run_id.clone(), undo_named: true };
            let rollback = deploy::rollback(run.ws, &run.runner, env, vars, Some(&journal), &asked);
            write_rollback_result(run, &rollback, &why, &decision_sha)?;
            let status = if rollback.success { "rolled_back" } else { "failed" };
            match saved_reports(&journal) {
                Some((mut report, monitoring)) => {
                    report.rollback = Some(rollback.clone());
                    write_reports(run, env, &report, monitoring.as_ref(), status)?;
                }
                None => patch_report(run, "rolled_back", &why),
            }
            Journal::remove(run.ws, &env.name);
            Ok(Resumed::Finished(if rollback.success {
                run.summary = format!("rolled back {} in {}: {why}", journal.version, env.name);
                Outcome::RolledBack { reason: why }
            } else {
                Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
            }))
        }
        Decision::Proceed { by, reason } if journal.phase == Phase::Paused && stage == "monitoring period" => {
            let why = format!("{by} decided to proceed after the monitoring period: {reason}");
            run.decided = Some(Decided {
                decision: "proceed".into(),
                by: by.clone(),
                why: why.clone(),
                at: crate::time::now_rfc3339(),
            });
            // The release stays: every report of it says so, and who decided and why.
            match saved_reports(&journal) {
                Some((report, monitoring)) => write_reports(run, env, &report, monitoring.as_ref(), "success")?,
                None => patch_report(run, "success", &why),
            }
            let release = ReleaseRef::new(journal.unit_id.clone(), journal.version.clone());
            let event = Event::new(EventKind::Proceeded, &release, &journal.run_id, why.clone()).by(by.clone());
            if let Err(e) = env.log_event(run.ws, event) {
                tracing::error!("{e}");
            }
            Journal::remove(run.ws, &env.name);
            run.also_completed.push(Action::PostDeployVerification);
            run.summary = format!("{} stays in {}: {why}", journal.version, env.name);
            Ok(Resumed::Finished(Outcome::Deployed))
        }
        Decision::Proceed { by, reason } => {
            tracing::info!("{by} decided to proceed with {} in {} after {stage}: {reason}", journal.version, env.name);
            journal.phase = Phase::Deploying;
            journal.pause = None;
            Ok(Resumed::Continue(Box::new(journal)))
        }
    }
}

/// The reports of a paused rollout as its journal kept them.
fn saved_reports(journal: &Journal) -> Option<(DeployReport, Option<Monitoring>)> {
    #[derive(serde::Deserialize)]
    struct Saved {
        deploy: DeployReport,
        monitoring: Option<Monitoring>,
    }
    let saved: Saved = serde_json::from_value(journal.reports.clone()?).ok()?;
    Some((saved.deploy, saved.monitoring))
}

/// What the monitoring of a production release came to.
pub(crate) enum Verified {
    Passed(Monitoring),
    /// Inconclusive, or failed with `auto_rollback_enabled` off: a human decides.
    Paused(Monitoring),
    /// Cut short by a shutdown: neither a pass nor a reason to roll back.
    Interrupted(Monitoring),
    RolledBack(Monitoring, Box<RollbackReport>),
}

/// Monitors production; on failure writes R17 and, with `auto_rollback_enabled`, rolls back
/// and writes R18.
pub(crate) fn verify(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    journal: &mut Journal,
    vars: &[(String, String)],
) -> Result<Verified, NodeError> {
    let baseline = journal.baseline.clone().map(Baseline::new);
    let monitoring = deploy::monitor(&run.runner, env, &run.ws.config, baseline.as_ref(), vars);
    if !monitoring.interrupted {
        let summary = format!("monitoring period {}: {}", monitoring.verdict, monitoring.reason);
        if let Err(e) = env.note_check(run.ws, &journal.run_id, monitoring.healthy, &summary) {
            run.record_errors.push(e.to_string());
        }
    }
    let status = if monitoring.healthy { "success" } else { "failed" };
    let extra = json!({"monitoring": monitoring, "environment": env_context(env)});
    run.write_markdown("R15-verification-result.md", None, status, extra.clone())?;
    run.write_markdown("R16-health-check.md", None, status, extra)?;
    if monitoring.healthy {
        return Ok(Verified::Passed(monitoring));
    }
    if monitoring.interrupted {
        return Ok(Verified::Interrupted(monitoring));
    }
    if monitoring.verdict == "inconclusive" || !run.ws.config.devops.auto_rollback_enabled {
        return Ok(Verified::Paused(monitoring));
    }
    let mut front = Map::new();
    front.insert("environment".into(), env.name.clone().into());
    front.insert("decided_by".into(), run.ws.config.agent.name.clone().into());
    write_rollback_decision(run, "rollback", &monitoring.reason, front)?;
    let asked = deploy::Asked {
        by: run.ws.config.agent.name.clone(),
        reason: monitoring.reason.clone(),
        run_id: run.run_id.clone(),
        undo_named: true,
    };
    let rollback = deploy::rollback(run.ws, &run.runner, env, vars, Some(journal), &asked);
    write_rollback_result(run, &rollback, &monitoring.reason, "")?;
    Ok(Verified::RolledBack(monitoring, Box::new(rollback)))
}

pub fn write_rollback_result(
    run: &mut NodeRun<'_>,
    rollback: &RollbackReport,
    reason: &str,
    decision_sha256: &str,
) -> Result<(), NodeError> {
    run.record_errors.extend(rollback.record_errors.iter().cloned());
    let status = if rollback.success { "success" } else { "failed" };
    let mut front = Map::new();
    front.insert("environment".into(), rollback.environment.clone().into());
    if !decision_sha256.is_empty() {
        front.insert("decision_sha256".into(), decision_sha256.into());
    }
    // Only what exists is claimed: the run's log folder when a step wrote to it, an
    // escalation when the outcome files one (a rollback a person asked for that succeeds does
    // not), the artifacts left in the release directory.
    let logs = run_dir(run.ws, &run.run_id).is_dir().then(|| run.ws.label(&run_dir(run.ws, &run.run_id)));
    let requested = run.node.action == Action::RollbackDeployment;
    let escalated = !(requested && rollback.success);
    run.write_markdown_with(
        "R18-rollback-result.md",
        None,
        status,
        json!({"rollback": rollback, "reason": reason, "logs": logs, "escalated": escalated, "requested": requested}),
        front,
    )?;
    Ok(())
}

pub(crate) fn write_rollback_decision(
    run: &mut NodeRun<'_>,
    decision: &str,
    reason: &str,
    fields: Map<String, Value>,
) -> Result<(), NodeError> {
    // R17's front matter is the contract humans answer in, so it carries the decision fields.
    let mut front = Map::new();
    front.insert("decision".into(), decision.into());
    front.insert("reason".into(), run.runner.secrets.mask(reason).into());
    front.insert("unit_id".into(), run.release.unit.clone().into());
    front.insert("version".into(), run.release.version.to_string().into());
    front.extend(fields);
    front.insert("node".into(), run.node.name.clone().into());
    front.insert("run_id".into(), run.run_id.clone().into());
    front.insert("generated_at".into(), crate::time::now_rfc3339().into());
    let mut context = run.base_context();
    merge(&mut context, json!({"decision": decision, "reason": reason}));
    let text =
        run.renderer.markdown("R17-rollback-decision.md", &front, &context).map_err(NodeError::render("render"))?;
    let relative = run.artifact_path("R17-rollback-decision.md");
    run.write(&relative, &text)
}

pub(crate) fn write_reports(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    report: &DeployReport,
    monitoring: Option<&Monitoring>,
    status: &str,
) -> Result<(), NodeError> {
    let method = env.method();
    // Only what ran is reported as passed: no smoke test run is `not_run`, no migration `skipped`.
    let smoke_status = if report.smoke.iter().any(|s| !s.passed) || report.failed_step.as_deref() == Some("smoke") {
        "failed"
    } else if report.smoke.is_empty() {
        "not_run"
    } else {
        "passed"
    };
    let migration_status = if report.failed_step.as_deref() == Some("migrate") {
        "failed"
    } else if report.migrated {
        "success"
    } else {
        "skipped"
    };
    let service_status = match (status, monitoring.map(|m| m.healthy)) {
        ("success", _) => "healthy",
        (_, Some(true)) => "degraded",
        _ => "unhealthy",
    };
    let health_url = env.health_checks.iter().find_map(|c| c.http.clone()).unwrap_or_default();
    let resources = match (env.local(&run.ws.root), env.provider) {
        (Some(local), _) => vec![format!(
            "{}/{}",
            local.root.strip_prefix(&run.ws.root).unwrap_or(&local.root).display(),
            report.target
        )],
        (None, deploy::Provider::Ssh) => crate::rollout::ssh::Fleet::new(&run.ws.root, env)
            .hosts
            .iter()
            .map(|host| format!("{}:{}/current", host.name, host.root))
            .collect(),
        (None, _) => vec![format!("{} via `commands.deploy`", env.name)],
    };
    let mut known_issues = match (status, report.reason.is_empty(), monitoring) {
        ("success", _, Some(monitoring)) if run.decided.is_some() && !monitoring.healthy => {
            vec![monitoring.reason.clone()]
        }
        ("success", _, _) => Vec::<String>::new(),
        (_, false, _) => vec![report.reason.clone()],
        (_, true, Some(monitoring)) if !monitoring.healthy => vec![monitoring.reason.clone()],
        _ => Vec::new(),
    };
    known_issues.extend(run.decided.as_ref().map(|d| d.why.clone()));
    known_issues.extend(run.waits_for_decision.clone());
    // What the environment's record says became of a release rolled back: every report of it
    // names the same rollback.
    let rolled_back = (status == "rolled_back").then(|| rolled_back_in(run.ws, env, &run.release)).flatten();
    if let Some(rolled_back) = &rolled_back {
        let sentence = rolled_back.sentence();
        if !known_issues.iter().any(|i| i.contains(&rolled_back.why)) {
            known_issues.push(sentence);
        }
    }
    let deployed_at = run.rerender.as_ref().map_or_else(crate::time::now_rfc3339, |r| r.deployed_at.clone());
    let extra = json!({
        "report_status": status,
        "environment_name": if matches!(env.name.as_str(), "production" | "staging" | "dev") { env.name.clone() } else { "production".into() },
        "deployment_method": method,
        "deployed_at": deployed_at,
        "region": match env.provider {
            deploy::Provider::Local => "local",
            deploy::Provider::Command => "configured by command",
            deploy::Provider::Ssh => "ssh hosts",
        },
        "resources": resources,
        "service_status": service_status,
        "health_check_url": health_url,
        // A feedback channel of kind `dashboard` is where the metrics are watched.
        "dashboard_url": feedback_list(&run.ws.config.feedback)
            .iter()
            .zip(feedback_kinds(&run.ws.config.feedback))
            .find(|(_, kind)| kind == "dashboard")
            .map(|(channel, _)| channel["target"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default(),
        "migrated": report.migrated,
        "migration_status": migration_status,
        "approved_by": run.approved_by,
        "metrics_enabled": if env.metrics.is_some() { "enabled" } else { "disabled" },
        "alerting_enabled": if env.health_checks.is_empty() { "disabled" } else { "enabled" },
        "smoke_status": smoke_status,
        "smoke_tests_run": report.smoke.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "secrets_management": if run.ws.config.secrets.is_empty() { "environment variables, masked in every output" } else { "named environment variables, masked in every output" },
        "rollback_plan": match env.local(&run.ws.root) {
            None if env.provider == deploy::Provider::Ssh => format!("switch `current` back on every host to the last good release ({}); releases marked bad are skipped", report.previous_version.clone().unwrap_or_else(|| "none: take every host down".into())),
            Some(_) => format!("switch back to the last good release ({}); releases marked bad are skipped", report.previous_version.clone().unwrap_or_else(|| "none: take the environment down".into())),
            None => "run `commands.rollback` (and `commands.migrate_down` when the deploy migrated)".to_owned(),
        },
        "known_issues": known_issues,
        "next_steps": next_steps(status, run.decided.as_ref(), rolled_back.as_ref()),
        "rolled_back": rolled_back,
        "decision": run.decided,
        "deploy": report,
        "monitoring": monitoring,
    });
    let mut context = run.base_context();
    merge(&mut context, extra.clone());
    let value = run
        .renderer
        .json("deployment-report.json", &context, run.ws, SchemaName::OwnDeploymentReport)
        .map_err(NodeError::render("report"))?;
    let mut value = value;
    run.runner.secrets.mask_json(&mut value);
    let report_file = run.ws.config.paths.deployment_report.clone();
    run.write(&report_file, &format!("{}\n", serde_json::to_string_pretty(&value).expect("a Value serializes")))?;
    let report_text = format!("{}\n", serde_json::to_string_pretty(&value).expect("a Value serializes"));
    run.keep("deployment-report.json", &report_text)?;
    let deploy_md = format!("{}/Deploy-{}.md", run.ws.config.paths.deployments.trim_end_matches('/'), run.release.unit);
    let name = format!("Deploy-{}.md", run.release.unit);
    let (front, seed) = seed_deploy_report(run, env, report, monitoring, status, rolled_back.as_ref());
    let duration = seed["seed"]["duration"].as_str().unwrap_or_default().to_owned();
    let mut extra = extra;
    merge(&mut extra, seed);
    run.write_markdown_with(&name, Some(deploy_md), status, extra, front)?;
    if let Some(rolled_back) = &rolled_back {
        render_production_reports(run, env, report, monitoring, rolled_back)?;
    }
    let facts = ReportFacts {
        environment: env.name.clone(),
        run_id: run.rerender.as_ref().map_or_else(|| run.run_id.clone(), |r| r.run_id.clone()),
        node: run.rerender.as_ref().map_or_else(|| run.node.name.clone(), |r| r.node.clone()),
        inputs: run.report_inputs(),
        deployed_at,
        duration,
        deploy: report.clone(),
        monitoring: monitoring.cloned(),
        approved_by: run.approved_by.clone(),
        decided: run.decided.clone(),
    };
    keep_facts(run, &facts);
    Ok(())
}

/// The front matter and body figures of `Deploy-<UNIT_ID>.md` in seed 000's own shape
/// (Phase 5: tags, project, deployed, links; Summary, Pre-Deployment State, Deployment
/// Timeline, Verification Results, Post-Deployment State, Issues Encountered, Rollback Status),
/// beside opsflow's provenance fields.
pub(crate) fn seed_deploy_report(
    run: &NodeRun<'_>,
    env: &EnvConfig,
    report: &DeployReport,
    monitoring: Option<&Monitoring>,
    status: &str,
    rolled_back: Option<&RolledBack>,
) -> (Map<String, Value>, Value) {
    let config = &run.ws.config;
    let now = run.rerender.as_ref().map_or_else(crate::time::now_rfc3339, |r| r.deployed_at.clone());
    let mut front = Map::new();
    front.insert("tags".into(), json!(["deployment", "release", "agent/devops"]));
    let project = config.project.clone().unwrap_or_else(|| "project".to_owned());
    front.insert("project".into(), json!(format!("[[01-Projects/{project}]]")));
    front
        .insert("deployed".into(), json!(format!("{} {}", now.get(..10).unwrap_or(""), now.get(11..16).unwrap_or(""))));
    front.insert(
        "links".into(),
        json!({
            "qa_report": format!("[[{}/QA-Report-{}]]", config.paths.qa_reports.trim_end_matches('/'), run.release.unit),
            "artifacts": release_dir(run.ws, &run.release()),
        }),
    );
    front.insert("approved_by".into(), run.approved_by.clone().map_or(Value::Null, Value::String));

    let mut timeline = report.timeline.clone();
    if let Some(monitoring) = monitoring {
        timeline.push(deploy::TimelineEvent {
            time: deploy::clock(),
            action: format!("Monitoring period ({} samples): {}", monitoring.samples.len(), monitoring.verdict),
            status: match (monitoring.healthy, monitoring.verdict.as_str()) {
                (true, _) => "PASS",
                (false, "inconclusive") => "INCONCLUSIVE",
                _ => "FAIL",
            }
            .to_owned(),
        });
    }
    if let Some(decided) = &run.decided {
        timeline.push(deploy::TimelineEvent {
            time: decided.at.get(11..19).unwrap_or(&decided.at).to_owned(),
            action: format!("Decision `{}` by {}", decided.decision, decided.by),
            status: "DECIDED".to_owned(),
        });
    }
    let end = match (status, &run.decided) {
        ("success", Some(_)) => ("Kept in production by a person's decision", "SUCCESS"),
        ("success", None) => ("Deployment complete", "SUCCESS"),
        ("rolled_back", _) if rolled_back.is_some_and(|r| r.requested) => {
            ("Rolled back by a person's request", "ROLLED_BACK")
        }
        ("rolled_back", _) => ("Rolled back to the previous release", "ROLLED_BACK"),
        _ if report.restored_previous => ("Deployment failed; the previous release was switched back in", "FAILED"),
        _ => ("Deployment failed", "FAILED"),
    };
    timeline.push(deploy::TimelineEvent { time: deploy::clock(), action: end.0.to_owned(), status: end.1.to_owned() });
    let seconds = |t: &str| -> Option<i64> {
        let mut parts = t.split(':').map(|p| p.parse::<i64>().ok());
        Some(parts.next()?? * 3600 + parts.next()?? * 60 + parts.next()??)
    };
    let duration = match (timeline.first().and_then(|e| seconds(&e.time)), seconds(&deploy::clock())) {
        (Some(start), Some(end)) => format!("{}s", (end - start).rem_euclid(86_400)),
        _ => "unknown".to_owned(),
    };

    let triggers = &config.devops.rollback_triggers;
    // The baseline taken before the deploy, whether or not monitoring ran after it.
    let baseline = monitoring.and_then(|m| m.baseline.clone()).or_else(|| report.baseline.clone());
    let last = monitoring.and_then(|m| m.last_sample.clone());
    let mut rows = Vec::new();
    for (kind, results) in [("Health", &report.health), ("Smoke test", &report.smoke)] {
        for result in results.iter() {
            let spec = env.health_checks.iter().chain(&env.smoke_tests).find(|c| c.name == result.name);
            let expected = match spec {
                Some(c) if c.http.is_some() => format!("HTTP {}", c.expect_status.unwrap_or(200)),
                _ => "exit 0".to_owned(),
            };
            rows.push(json!({"check": format!("{kind} `{}`", result.name), "expected": expected,
                "actual": result.detail, "status": if result.passed { "PASS" } else { "FAIL" }}));
        }
    }
    let figure = |value: Option<f64>, unit: &str| value.map_or("not measured".to_owned(), |v| format!("{v}{unit}"));
    if env.metrics.is_some() {
        let rate = last.as_ref().and_then(|s| s.error_rate);
        rows.push(json!({"check": "Error rate", "expected": format!("< {}%", triggers.error_rate),
            "actual": figure(rate, "%"),
            "status": match rate { Some(r) if r <= triggers.error_rate => "PASS", Some(_) => "FAIL", None => "-" }}));
        let p95 = last.as_ref().and_then(|s| s.latency_p95_ms);
        let limit = baseline.as_ref().and_then(|b| b.latency_p95_ms).map(|b| b * triggers.latency_p95_ratio);
        rows.push(json!({"check": "P95 latency",
            "expected": limit.map_or(format!("< {}x baseline", triggers.latency_p95_ratio), |l| format!("< {l} ms ({}x baseline)", triggers.latency_p95_ratio)),
            "actual": figure(p95, " ms"),
            "status": match (p95, limit) { (Some(p), Some(l)) if p <= l => "PASS", (Some(_), Some(_)) => "FAIL", _ => "-" }}));
    }
    let sample_text = |sample: Option<&crate::exec::metrics::Sample>| match sample {
        Some(s) => format!("error rate {}, p95 latency {}", figure(s.error_rate, "%"), figure(s.latency_p95_ms, " ms")),
        None => "not measured (no metrics configured)".to_owned(),
    };
    let previous = report.previous_release.clone().or_else(|| report.previous_version.clone());
    let rollback_reason = match (status, &report.rollback) {
        ("rolled_back", _) if rolled_back.is_some() => rolled_back.map(RolledBack::sentence).unwrap_or_default(),
        ("rolled_back", _) if run.decided.is_some() => run.decided.as_ref().map(|d| d.why.clone()).unwrap_or_default(),
        ("rolled_back", _) => {
            monitoring.map(|m| m.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| report.reason.clone())
        }
        (_, Some(rollback)) => rollback.detail.clone(),
        // A failure after the switch that switched the previous release back in.
        _ if report.restored_previous => format!(
            "{}; {} was switched back in",
            report.reason,
            previous.clone().unwrap_or_else(|| "the previous release".to_owned())
        ),
        _ => String::new(),
    };
    let current = if status == "success" {
        run.release.label()
    } else if let Some(rolled_back) = rolled_back {
        rolled_back.restored.clone()
    } else {
        previous.clone().filter(|_| report.restored_previous || status == "rolled_back").unwrap_or_else(|| {
            if report.switched_in() {
                run.release.label()
            } else {
                previous.clone().unwrap_or_else(|| "none".to_owned())
            }
        })
    };
    let body = json!({
        "seed": {
            "status": status.to_uppercase(),
            "duration": run.rerender.as_ref().filter(|r| !r.duration.is_empty()).map_or(duration, |r| r.duration.clone()),
            "deployer": format!("{} (DevOps agent)", config.agent.name),
            "previous_version": previous.clone().unwrap_or_else(|| "none (first deployment)".to_owned()),
            "pre_health": match (&baseline, env.metrics.is_some()) {
                (Some(_), _) => format!("baseline before the deploy: {}", sample_text(baseline.as_ref())),
                (None, true) => "no baseline was read before the deploy".to_owned(),
                (None, false) => "no baseline (no metrics configured)".to_owned(),
            },
            "timeline": timeline,
            "verification": rows,
            "current_version": current,
            "key_metrics": sample_text(last.as_ref()),
            // What serves after the deploy, and what is known of its health.
            "post_health": if status == "rolled_back" {
                match report.rollback.as_ref().and_then(|r| r.restored.clone()) {
                    Some(restored) => format!("{restored} serves again after the rollback (see the rollback's checks)"),
                    None => "nothing serves: the rollback took the environment down".to_owned(),
                }
            } else if report.restored_previous {
                format!("{} was switched back in after the failure (its health was checked when it was deployed)", previous.clone().unwrap_or_else(|| "the previous release".to_owned()))
            } else if status == "success" {
                "healthy: every check passed".to_owned()
            } else if report.switched_in() {
                "unhealthy: the new release serves and failed its checks".to_owned()
            } else {
                "unchanged: the new release never took traffic".to_owned()
            },
            "rollback_required": !rollback_reason.is_empty(),
            "rollback_reason": rollback_reason,
        }
    });
    (front, body)
}

/// The report's next steps for a release whose deployment ended `status`, after a person's
/// decision when there was one.
pub(crate) fn next_steps(status: &str, decided: Option<&Decided>, rolled_back: Option<&RolledBack>) -> Vec<String> {
    match (status, decided) {
        // A rollback a person asked for files no escalation.
        ("rolled_back", _) if rolled_back.is_some_and(|r| r.requested) => vec![
            format!(
                "The release was rolled back by {}; {} serves users",
                rolled_back.map_or("", |r| r.by.as_str()),
                rolled_back.map_or("", |r| r.restored.as_str())
            ),
            "Ship a new version once the reason for the rollback is dealt with".to_owned(),
        ],
        ("success", Some(decided)) => vec![
            format!("The monitoring period could not confirm the release; {}", decided.why),
            "Watch the release's error rate and latency closely; record the deployed product and feedback channels"
                .to_owned(),
        ],
        ("success", None) => {
            vec!["Post-deploy monitoring passed; record the deployed product and feedback channels".to_owned()]
        }
        ("rolled_back", _) => vec![
            "The release was rolled back; the previous release serves users".to_owned(),
            "Fix the failure named in the escalation, then ship a new version".to_owned(),
        ],
        // A release cannot change once built: a failed deployment is fixed by a new version.
        _ => vec!["Fix the failure named in the escalation, then ship a new version".to_owned()],
    }
}

pub(crate) fn verification(run: &mut NodeRun<'_>, environment: &str) -> Result<Outcome, NodeError> {
    let env = run.ws.environment(environment).map_err(NodeError::Environment)?;
    // A production deploy verifies its release in the same run; a verification task for the
    // same version then has nothing left to watch.
    if let Ok(Lookup::Found(r15)) = release::find(run.ws, "R15-verification-result.md", &run.release())
        && r15.field("version").is_some_and(|v| release::same_version(v, run.release.version.as_str()))
        && r15.field("status") == Some("success")
    {
        run.summary = format!(
            "{} was verified in {environment} by run {} ({})",
            run.release.version,
            r15.field("run_id").unwrap_or("?"),
            r15.file
        );
        run.inputs.push(r15);
        return Ok(Outcome::Done);
    }
    // A person who let the release proceed after its monitoring period decided about exactly
    // this: the verification is theirs, as the environment's record keeps it.
    if let Ok(record) = env.history(run.ws)
        && let Some(live) = env.live(run.ws, &record)
        && live.unit_id == run.release.unit
        && release::same_version(&live.version, run.release.version.as_str())
        && let Some(decided) =
            record.events.iter().rev().find(|e| e.event == EventKind::Proceeded && e.run_id == live.run_id)
    {
        run.summary = format!(
            "{} was accepted in {environment} by {} after its monitoring period: {}",
            run.release.label(),
            decided.by.as_deref().unwrap_or("a person"),
            decided.detail
        );
        return Ok(Outcome::Done);
    }
    let _lock = match lock_environment(run, env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held.to_string(), escalate: false }),
    };
    let mut vars = run.env_vars(environment);
    vars.push(("OPSFLOW_VERSION".into(), run.release.version.to_string()));
    let mut journal = match Journal::load(run.ws, &env.name).map_err(NodeError::Journal)? {
        Some(journal) if journal.task == run.task_id() && journal.phase == Phase::Paused => {
            return match resume_paused(run, env, journal, &vars)? {
                Resumed::Finished(Outcome::Deployed) => Ok(Outcome::Done),
                Resumed::Finished(outcome) => Ok(outcome),
                // Only the monitoring period pauses a verification.
                Resumed::Continue(_) => Ok(Outcome::Done),
            };
        }
        Some(journal) => return Ok(Outcome::Blocked { reason: other_rollout(env, &journal), escalate: false }),
        None => {
            let mut journal = new_journal(run, env, Phase::Verifying);
            let record = env.history(run.ws).map_err(NodeError::Record)?;
            if let Some(live) = env.live(run.ws, &record) {
                journal.run_id = live.run_id.clone();
                journal.migrated = live.migrated;
                journal.slot = Some(live.dir.clone()).filter(|d| !d.is_empty());
            }
            journal.save(run.ws).map_err(NodeError::Journal)?;
            journal
        }
    };
    // Verification watches what is live.
    run.after_switch = true;
    let outcome = match verify(run, env, &mut journal, &vars)? {
        Verified::Passed(monitoring) => {
            run.summary = monitoring.reason;
            Outcome::Done
        }
        Verified::Paused(monitoring) => {
            let reason = monitoring.reason.clone();
            return pause(run, env, journal, "monitoring period", &reason);
        }
        Verified::Interrupted(monitoring) => {
            Outcome::Failed { step: "verification".into(), reason: monitoring.reason, log: String::new() }
        }
        Verified::RolledBack(monitoring, rollback) if rollback.success => {
            Outcome::RolledBack { reason: monitoring.reason }
        }
        Verified::RolledBack(_, rollback) => {
            Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() }
        }
    };
    Journal::remove(run.ws, &env.name);
    Ok(outcome)
}

/// The environment a Rollback_Deployment task rolls back: the task's `environment`, else its
/// R17's, else production.
pub fn rollback_environment(task: &Task, decision: Option<&Artifact>) -> String {
    task.environment
        .as_deref()
        .or_else(|| decision.and_then(|d| d.field("environment")))
        .unwrap_or("production")
        .to_owned()
}

/// Whether a Rollback_Deployment task acts on a human's R17 (it was filed from one: its
/// `source` names the file) rather than on its own request (`opsflow rollback`, a hand-written
/// task).
pub fn requested_rollback(task: &Task) -> bool {
    task.source.as_deref().is_some_and(|source| source.contains("R17-rollback-decision"))
}

/// The version a Rollback_Deployment task rolls back to, when it names one: its
/// `target_version`, or its `version` when that is not the live one.
pub(crate) fn rollback_target(task: &Task, live: Option<&str>) -> Option<String> {
    if let Some(target) = task.target_version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        return Some(target.to_owned());
    }
    if requested_rollback(task) {
        // An R17's `version` is the release it decides about, the one to undo.
        return None;
    }
    let version = task.version.as_ref().map(|v| v.as_str());
    version.filter(|v| live.is_none_or(|live| !release::same_version(v, live))).map(str::to_owned)
}

/// Why the rollback a Rollback_Deployment task asks for cannot be carried out now, read the
/// way the node reads it: for the gate, so that such a task waits without being claimed.
pub fn rollback_refused(ws: &Workspace, task: &Task, decision: Option<&Artifact>) -> Option<String> {
    let env = ws.environment(&rollback_environment(task, decision)).ok()?;
    let record = match env.history(ws) {
        Ok(record) => record,
        Err(e) => return Some(e.to_string()),
    };
    let live = env.live(ws, &record);
    let target = rollback_target(task, live.as_ref().map(|d| d.version.as_str()));
    let restorable = deploy::restorable(ws, env, &record);
    deploy::refusal_of(env, &restorable, live.as_ref(), requested_rollback(task), target.as_deref())
}

/// Rollback_Deployment: a human asked for it, in R17 (`decision: rollback`) or with
/// `opsflow rollback ENV [--to VERSION]`, outside any paused rollout. Afterwards every record
/// of the release that was undone says so: its production task is `rolled_back`, and
/// `deployment-report.json`, `Deploy-<UNIT_ID>.md` and the completion signal no longer claim
/// success.
pub(crate) fn rollback_deployment(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let decision = if requested_rollback(run.task) {
        run.inputs.iter().find(|a| a.file.contains("R17-rollback-decision")).cloned()
    } else {
        None
    };
    let environment = rollback_environment(run.task, decision.as_ref());
    let env = run.ws.environment(&environment).map_err(NodeError::Environment)?;
    let _lock = match lock_environment(run, env)? {
        Ok(lock) => lock,
        Err(held) => return Ok(Outcome::Blocked { reason: held.to_string(), escalate: false }),
    };
    if let Some(journal) = Journal::load(run.ws, &env.name).map_err(NodeError::Journal)? {
        return Ok(Outcome::Blocked { reason: other_rollout(env, &journal), escalate: false });
    }
    let field = |key: &str| run.task.text(key);
    let by = decision
        .as_ref()
        .and_then(|d| d.field("decided_by"))
        .filter(|b| !b.trim().is_empty())
        .or_else(|| field("requested_by"))
        .unwrap_or("a human")
        .to_owned();
    let reason = decision
        .as_ref()
        .and_then(|d| d.field("reason").map(str::to_owned))
        .or_else(|| field("reason").map(str::to_owned))
        .unwrap_or_else(|| format!("requested by task {}", run.task_id()));
    let why = format!("{by} asked for a rollback: {reason}");
    let record = env.history(run.ws).map_err(NodeError::Record)?;
    let live = env.live(run.ws, &record).map(|d| d.version);
    let target = rollback_target(run.task, live.as_deref());
    let mut vars = run.env_vars(&environment);
    vars.push(("OPSFLOW_VERSION".into(), run.release.version.to_string()));
    let asked = deploy::Asked {
        by: by.clone(),
        reason: reason.clone(),
        run_id: run.run_id.clone(),
        undo_named: requested_rollback(run.task),
    };
    let rollback = deploy::rollback_to(run.ws, &run.runner, env, &vars, None, target.as_deref(), &asked);
    run.after_switch = !rollback.refused;
    if rollback.refused {
        // A request that cannot be carried out changed nothing: no report is rewritten and
        // nothing failed in the environment; the task waits for a request that can be.
        run.summary = format!("the rollback of {environment} was refused: {}", rollback.detail);
        return Ok(Outcome::Blocked { reason: rollback.detail, escalate: false });
    }
    let sha = decision.as_ref().map(|d| d.sha256.clone()).unwrap_or_default();
    // R18 is the undone release's record: named by its unit and version, and kept in its
    // history folder.
    if let Some((unit, version)) = rollback.undone.clone().filter(|(_, v)| !v.is_empty()) {
        run.release = Release::new(unit, version);
    }
    write_rollback_result(run, &rollback, &why, &sha)?;
    if !rollback.success {
        return Ok(Outcome::Failed { step: "rollback".into(), reason: rollback.detail, log: String::new() });
    }
    if let Some((unit, version)) = rollback.undone.clone().filter(|(_, v)| !v.is_empty()) {
        let undone = Release::new(unit, version);
        // Every report of the undone release is rendered again from its facts and the record.
        if !render_undone(run, env, &undone, &rollback) {
            patch_report_of(run, &undone, "rolled_back", &why);
            let restored =
                rollback.restored.clone().unwrap_or_else(|| "nothing (the environment was taken down)".into());
            mark_deploy_report_rolled_back(run, &undone, &why, &restored);
        }
        run.rolled_back.push(undone);
    }
    run.summary = format!("rolled back {environment}: {}", rollback.detail);
    Ok(Outcome::Done)
}
