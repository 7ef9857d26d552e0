//! A production release's reports as views of two things: the facts its deploy run measured
//! (kept in the release's history folder as `report-facts.json`: the deploy report, the
//! monitoring, who approved and who decided) and what the environment's record says became of
//! the release since. A later change of the record (a rollback, automatic or asked by a
//! person) renders every report of the release again from the same facts: R13 to R16,
//! `deployment-report.json` and `Deploy-<UNIT_ID>.md`, their history copies always, the plain
//! files while they are still that release's. Releases whose history has no facts (their
//! reports were written before the file existed) have their reports patched in place instead.

#[allow(unused_imports)]
use super::*;

use crate::environment::record::Record;
use serde::Deserialize;

/// The file in a release's history folder that its reports are rendered from again.
pub const FACTS_FILE: &str = "report-facts.json";

/// What a production deploy run measured, as its reports were first rendered from it. While a
/// later run renders them again (`NodeRun::rerender`), the times and the deploy run's node and
/// inputs here stand, and a plain file is replaced only while it is still that release's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportFacts {
    pub environment: String,
    /// The deploy run and its node.
    pub run_id: String,
    #[serde(default)]
    pub node: String,
    /// What the deploy run read (`{file, sha256}`), as its reports' front matter names it.
    #[serde(default)]
    pub inputs: Vec<Value>,
    pub deployed_at: String,
    /// How long the deploy took, as `Deploy-<UNIT_ID>.md` said it.
    #[serde(default)]
    pub duration: String,
    pub deploy: DeployReport,
    #[serde(default)]
    pub monitoring: Option<Monitoring>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub decided: Option<Decided>,
}

/// What the environment's record says of a release's rollback: its newest `rolled_back` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RolledBack {
    pub run_id: String,
    pub at: String,
    pub by: String,
    /// The reason the record gives.
    pub why: String,
    /// The release it restored, or what became of the environment.
    pub restored: String,
    /// A person's rollback (anyone but opsflow's own agent): it files no escalation.
    pub requested: bool,
}

impl RolledBack {
    /// The sentence every report gives of it: who rolled it back and why.
    pub fn sentence(&self) -> String {
        format!("rolled back by {}: {}", self.by, self.why)
    }
}

/// The newest rollback of `release` in `record`; `agent` is opsflow's own agent's name.
pub(crate) fn rolled_back(record: &Record, release: &Release, agent: &str) -> Option<RolledBack> {
    let event = record.events.iter().rev().find(|e| {
        e.event == EventKind::RolledBack
            && e.unit_id == release.unit
            && release::same_version(&e.version, release.version.as_str())
    })?;
    let by = event.by.clone().unwrap_or_else(|| agent.to_owned());
    Some(RolledBack {
        run_id: event.run_id.clone(),
        at: event.at.clone(),
        requested: by != agent,
        by,
        why: event.detail.clone(),
        restored: event
            .restored
            .as_ref()
            .map_or_else(|| "nothing (the environment was taken down)".to_owned(), ReleaseRef::label),
    })
}

/// [`rolled_back`] as `env`'s record says it now; `None` when the record cannot be read.
pub(crate) fn rolled_back_in(ws: &Workspace, env: &EnvConfig, release: &Release) -> Option<RolledBack> {
    env.history(ws).ok().and_then(|record| rolled_back(&record, release, &ws.config.agent.name))
}

/// Keeps the facts the run's release's reports were rendered from in its history folder.
pub(crate) fn keep_facts(run: &mut NodeRun<'_>, facts: &ReportFacts) {
    let text = format!("{}\n", serde_json::to_string_pretty(facts).expect("report facts serialize"));
    let masked = run.runner.secrets.mask(&text);
    if let Err(e) = release::keep_in_history(run.ws, &run.release(), FACTS_FILE, &masked) {
        run.record_errors.push(format!("cannot keep the facts of {}'s reports: {e}", run.release.label()));
    }
}

/// The facts `release`'s reports were rendered from, when its history keeps them.
pub(crate) fn load_facts(ws: &Workspace, release: &Release) -> Option<ReportFacts> {
    let file = format!("{}/{FACTS_FILE}", release.history_dir(ws)?);
    let text = ws.read_text(&file).ok().flatten()?;
    match serde_json::from_str(&text) {
        Ok(facts) => Some(facts),
        Err(e) => {
            tracing::warn!("{file} cannot be read ({e}); the release's reports are patched instead");
            None
        }
    }
}

/// Whether the report at `file` is `release`'s (its `unit_id` and `version`, in its front
/// matter or JSON): a report another release has replaced since is left alone.
pub(crate) fn names_release(ws: &Workspace, file: &str, release: &Release) -> bool {
    release::bound_release(ws, file).as_ref() == Some(release)
}

/// Renders every report of `undone`, a release a person's rollback took away, again from its
/// facts and the record. Returns false when its history keeps no facts (nothing was rendered).
pub(crate) fn render_undone(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    undone: &Release,
    rollback: &RollbackReport,
) -> bool {
    let Some(facts) = load_facts(run.ws, undone).filter(|f| f.environment == env.name) else { return false };
    let mut report = facts.deploy.clone();
    report.rollback = Some(rollback.clone());
    let release = std::mem::replace(&mut run.release, undone.clone());
    let decided = std::mem::replace(&mut run.decided, facts.decided.clone());
    let approved_by = std::mem::replace(&mut run.approved_by, facts.approved_by.clone());
    let monitoring = facts.monitoring.clone();
    let mut facts = facts;
    if facts.node.is_empty() {
        facts.node = run.node.name.clone();
    }
    run.rerender = Some(Box::new(facts));
    let rendered = write_reports(run, env, &report, monitoring.as_ref(), "rolled_back");
    run.rerender = None;
    run.release = release;
    run.decided = decided;
    run.approved_by = approved_by;
    if let Err(e) = rendered {
        run.record_errors.push(format!("cannot render the reports of {} again: {}", undone.label(), e.reason()));
    }
    true
}

/// R13 to R16 of a release rolled back, rendered again with what the record says of it.
pub(crate) fn render_production_reports(
    run: &mut NodeRun<'_>,
    env: &EnvConfig,
    report: &DeployReport,
    monitoring: Option<&Monitoring>,
    rolled_back: &RolledBack,
) -> Result<(), NodeError> {
    let relative = release_dir(run.ws, &run.release());
    let extra = json!({"deploy": report, "method": env.method(), "environment": env_context(env),
        "release_dir": relative, "rolled_back": rolled_back});
    let mut front = Map::new();
    front.insert("approved_by".into(), run.approved_by.clone().map_or(Value::Null, Value::String));
    run.write_markdown_with("R13-prod-deploy.md", None, "rolled_back", extra.clone(), front)?;
    run.write_markdown("R14-monitoring-active.md", None, "rolled_back", extra)?;
    if let Some(monitoring) = monitoring {
        let extra = json!({"monitoring": monitoring, "environment": env_context(env), "rolled_back": rolled_back});
        run.write_markdown("R15-verification-result.md", None, "rolled_back", extra.clone())?;
        run.write_markdown("R16-health-check.md", None, "rolled_back", extra)?;
    }
    Ok(())
}

/// Records in `deployment-report.json` what became of the release after the report was
/// written, when the report is this unit's and version's.
pub(crate) fn patch_report(run: &mut NodeRun<'_>, status: &str, why: &str) {
    let release = run.release();
    patch_report_of(run, &release, status, why);
}

/// [`patch_report`] for `release`, which may be another than the run's (a human's rollback
/// undoes the release that was live). The plain report is patched when it is that release's;
/// the release's history copy always is.
pub(crate) fn patch_report_of(run: &mut NodeRun<'_>, release: &Release, status: &str, why: &str) {
    let plain = run.ws.config.paths.deployment_report.clone();
    let mut targets = vec![plain.clone()];
    targets.extend(release.history_dir(run.ws).map(|dir| format!("{dir}/deployment-report.json")));
    for file in targets {
        let Ok(Some(text)) = run.ws.read_text(&file) else { continue };
        let Ok(mut report) = crate::workspace::read::parse_json(&file, &text) else { continue };
        let field = |key: &str| report.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        if !(field("unit_id") == release.unit && release::same_version(&field("version"), release.version.as_str())) {
            continue;
        }
        report["deployment_summary"]["status"] = json!(status);
        if let Some(issues) = report.get_mut("known_issues").and_then(Value::as_array_mut)
            && !issues.iter().any(|i| i.as_str() == Some(why))
        {
            issues.push(json!(why));
        }
        report["next_steps"] = json!(next_steps(status, run.decided.as_ref(), None));
        if status != "success" {
            report["services_deployed"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .for_each(|service| service["status"] = json!("unhealthy"));
        }
        report["run_id"] = json!(run.run_id);
        if run.ws.schemas.validate(SchemaName::OwnDeploymentReport, &file, &report).is_empty() {
            let text = format!("{}\n", serde_json::to_string_pretty(&report).expect("a Value serializes"));
            let written = if file == plain {
                run.write(&file, &text).map_err(|e| e.reason())
            } else {
                run.ws.inside(&file).map_err(|d| d.to_string()).and_then(|path| {
                    write::write_file(&run.ws.root, &path, run.runner.secrets.mask(&text).as_bytes())
                        .map_err(|e| e.to_string())
                })
            };
            if let Err(e) = written {
                run.record_errors.push(format!("cannot record in {file} that {} is {status}: {e}", release.label()));
            }
        }
    }
}

/// The production reports of a release that a later rollback undid, patched in its history
/// folder when it keeps no facts to render them again from.
const PRODUCTION_REPORTS: [&str; 4] =
    ["R13-prod-deploy.md", "R14-monitoring-active.md", "R15-verification-result.md", "R16-health-check.md"];

/// Says in `Deploy-<UNIT_ID>.md` (and its history copy) and in the history copies of the
/// release's production reports (R13 to R16) that `release` was rolled back: the front matter
/// `status` becomes `rolled_back`, a section says by whom, when, why and what was restored, and
/// the deploy report's own lines on what is live follow.
pub(crate) fn mark_deploy_report_rolled_back(run: &mut NodeRun<'_>, release: &Release, why: &str, restored: &str) {
    let name = format!("Deploy-{}.md", release.unit);
    let mut files = vec![format!("{}/{name}", run.ws.config.paths.deployments.trim_end_matches('/'))];
    if let Some(dir) = release.history_dir(run.ws) {
        files.push(format!("{dir}/{name}"));
        files.extend(PRODUCTION_REPORTS.iter().map(|report| format!("{dir}/{report}")));
    }
    for file in files {
        let Ok(Some(text)) = run.ws.read_text(&file) else { continue };
        let Ok(doc) = crate::workspace::read::parse_markdown(&file, &text) else { continue };
        let Some(fm) = doc.front_matter else { continue };
        let field = |key: &str| fm.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        if field("unit_id") != release.unit || !release::same_version(&field("version"), release.version.as_str()) {
            continue;
        }
        if text.contains(&format!("- Rolled back by run `{}`", run.run_id)) {
            continue;
        }
        // Front matter is written by code, one `key: JSON value` a line.
        let Some(end) = text.get(4..).and_then(|rest| rest.find("\n---\n")).map(|i| i + 4) else { continue };
        let (front, body) = text.split_at(end);
        let front: String = front
            .lines()
            .map(
                |line| {
                    if line.starts_with("status: ") { "status: \"rolled_back\"".to_owned() } else { line.to_owned() }
                },
            )
            .collect::<Vec<_>>()
            .join("\n");
        let note = crate::render::markdown_escape(&run.runner.secrets.mask(why));
        // The body's own statements of what is live and whether a rollback happened follow
        // the front matter: the release is no longer live.
        let body: String = body
            .split_inclusive('\n')
            .map(|line| match line.trim_end() {
                l if l.starts_with("- **Status:** ") => "- **Status:** ROLLED_BACK\n".to_owned(),
                l if l.starts_with("- Current version: ") => {
                    format!("- Current version: {}\n", crate::render::markdown_escape(restored))
                }
                "- Rollback required: No" => format!("- Rollback required: Yes\n- Why: {note}\n"),
                _ => line.to_owned(),
            })
            .collect();
        let section = format!(
            "\n## Rolled back\n\n- Rolled back by run `{}` at {}: {note}\n- Restored: {}\n",
            run.run_id,
            crate::time::now_rfc3339(),
            crate::render::markdown_escape(restored)
        );
        let patched = format!("{front}{body}{section}");
        let written = run.ws.inside(&file).map_err(|d| d.to_string()).and_then(|path| {
            write::write_file(&run.ws.root, &path, run.runner.secrets.mask(&patched).as_bytes())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            run.record_errors.push(format!("cannot record in {file} that {} was rolled back: {e}", release.label()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollback(release: (&str, &str), by: Option<&str>, restored: Option<(&str, &str)>, why: &str) -> Event {
        let mut event = Event::new(EventKind::RolledBack, &ReleaseRef::new(release.0, release.1), "run-2", why);
        event.by = by.map(str::to_owned);
        event.restored = restored.map(|(unit, version)| ReleaseRef::new(unit, version));
        event
    }

    #[test]
    fn a_rollback_is_read_from_the_record_newest_first_and_names_the_release_restored() {
        let mut record = Record::default();
        record.events.push(rollback(("UNIT-001", "1.0.0"), None, None, "health checks failed"));
        record.events.push(Event::new(EventKind::Deployed, &ReleaseRef::new("UNIT-001", "1.1.0"), "run-3", ""));
        record.events.push(rollback(
            ("UNIT-001", "1.1.0"),
            Some("carol"),
            Some(("UNIT-002", "1.0.0")),
            "checkout is slow",
        ));
        let agent = "DevOps-Engineer";
        let newest = rolled_back(&record, &Release::new("UNIT-001", "1.1.0"), agent).unwrap();
        assert_eq!((newest.by.as_str(), newest.restored.as_str()), ("carol", "UNIT-002 1.0.0"));
        assert!(newest.requested);
        assert_eq!(newest.sentence(), "rolled back by carol: checkout is slow");
        // opsflow's own rollback of a first release: nothing was restored, nobody asked.
        let first = rolled_back(&record, &Release::new("UNIT-001", "v1.0.0"), agent).unwrap();
        assert_eq!(first.by, agent);
        assert!(!first.requested);
        assert_eq!(first.restored, "nothing (the environment was taken down)");
        // Another unit's release of the same version was never rolled back.
        assert_eq!(rolled_back(&record, &Release::new("UNIT-002", "1.0.0"), agent), None);
    }
}
