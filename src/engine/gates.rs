//! Gates (docs/reference.md): QA approval, staging and production thresholds, human approval.
//!
//! A gate is a list of [`Check`]s; each says what it looked at and why it failed. A missing
//! figure fails the check that needs it, naming the figure and the file. Nothing here writes.

use serde::Serialize;
use serde_json::Value;

use super::artifacts::{self, Artifact};
use crate::config::Config;
use crate::environment::record::Deployment;
use crate::integrations::bmad::{self, GateFile, Verdict};
use crate::release::{self, Lookup, Release, same_version};
use crate::rollout::journal::Journal;
use crate::schema::SchemaName;
use crate::sha256;
use crate::validate::{load_json, load_markdown};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub gate: &'static str,
    pub name: String,
    pub passed: bool,
    pub detail: String,
    /// A failed check that only warns (coverage with `coverage_action: warn`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    /// A failed check that a person may let through on purpose in the approval
    /// (`allow_revert: true`): a release that does not contain what is live.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overridable: bool,
    /// Which check this is, for the code that treats some checks apart; never its wording.
    #[serde(skip)]
    pub id: CheckId,
}

/// The checks the engine treats apart from the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckId {
    /// The human approval of a release: a task held only by it waits for a person.
    HumanApproval,
    /// The release contains what production runs: an approval may let it through.
    ContainsLive,
    /// When a deploy may start: the environment's lock, deploy window and wait timer. Only
    /// time or an unlock clears them, so they ask no person for anything.
    Schedule,
    /// A command or override that git sync brought in and no person trusted yet.
    Untrusted,
    #[default]
    Other,
}

/// The name of the check that a release contains the releases shipped to production.
pub const CONTAINS_LIVE: &str = "release contains what is live";

impl Check {
    pub fn new(gate: &'static str, name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            gate,
            name: name.to_owned(),
            passed,
            detail: detail.into(),
            warning: false,
            overridable: false,
            id: CheckId::Other,
        }
    }

    /// The same check, known by its identity.
    pub fn with_id(mut self, id: CheckId) -> Check {
        self.id = id;
        self
    }

    pub fn blocks(&self) -> bool {
        !self.passed && !self.warning
    }
}

/// The QA evidence for one unit.
#[derive(Debug, Default)]
pub struct QaEvidence {
    pub markdown: Option<Artifact>,
    /// `qa-test-report.json` when it is for this unit (or names no unit).
    pub report: Option<(String, Value, String)>,
    /// The BMAD QA gate file whose `story` is this unit.
    pub gate: Option<GateFile>,
}

impl QaEvidence {
    /// Inputs read, with their sha256, for the audit log.
    pub fn inputs(&self) -> Vec<(String, String)> {
        let mut inputs = Vec::new();
        if let Some(md) = &self.markdown {
            inputs.push((md.file.clone(), md.sha256.clone()));
        }
        if let Some((file, _, sha)) = &self.report {
            inputs.push((file.clone(), sha.clone()));
        }
        if let Some(gate) = &self.gate {
            inputs.push((gate.file.clone(), gate.sha256.clone()));
        }
        inputs
    }
}

/// Reads the QA report markdown and JSON of `release`. QA may write one per release
/// (`QA-Report-<UNIT_ID>-<version>.md`, `qa-test-report-<UNIT_ID>-<version>.json`), one per
/// unit (`qa-test-report-<UNIT_ID>.json`) or the plain seed names; the most specific one that
/// is for this unit counts. A BMAD gate file in `paths.qa_gates` whose `story` is the unit is
/// read too. Invalid files are errors.
pub fn load_qa(ws: &Workspace, release: &Release) -> Result<QaEvidence, Vec<Diagnostic>> {
    let unit = release.unit.as_str();
    let bare = release.version.bare();
    let mut evidence = QaEvidence::default();
    let dir = ws.config.paths.qa_reports.trim_end_matches('/');
    let mut md_files = Vec::new();
    if !bare.is_empty() {
        md_files.push(format!("{dir}/QA-Report-{unit}-{bare}.md"));
    }
    md_files.push(format!("{dir}/QA-Report-{unit}.md"));
    for md_file in md_files {
        let md = load_markdown(ws, &md_file, Some(SchemaName::QaReport));
        if !md.diagnostics.is_empty() {
            return Err(md.diagnostics);
        }
        if let Some(doc) = md.doc {
            let text = ws.read_text(&md_file).ok().flatten().unwrap_or_default();
            evidence.markdown = Some(Artifact {
                file: md_file,
                front_matter: doc.front_matter.unwrap_or(Value::Null),
                body: doc.body,
                sha256: sha256::hex(text.as_bytes()),
            });
            break;
        }
    }
    let plain = ws.config.paths.qa_test_report.clone();
    let stem = plain.strip_suffix(".json").unwrap_or(&plain).to_owned();
    let mut json_files = Vec::new();
    if !bare.is_empty() {
        json_files.push(format!("{stem}-{unit}-{bare}.json"));
    }
    json_files.push(format!("{stem}-{unit}.json"));
    json_files.push(plain);
    // The verdict QA gave this release stays its verdict when the plain file now holds
    // another unit's report: the copy kept with the release when it was deployed.
    json_files.extend(release.history_dir(ws).map(|dir| format!("{dir}/{QA_REPORT_COPY}")));
    for json_file in json_files {
        let loaded = load_json(ws, &json_file, SchemaName::QaTestReport);
        if !loaded.diagnostics.is_empty() {
            return Err(loaded.diagnostics);
        }
        if let (Some(value), Some(text)) = (loaded.value, loaded.text) {
            let for_unit = value.get("unit_id").and_then(Value::as_str).is_none_or(|u| u == unit);
            if for_unit {
                evidence.report = Some((json_file, value, sha256::hex(text.as_bytes())));
                break;
            }
        }
    }
    evidence.gate = bmad::load_for(ws, unit)?;
    Ok(evidence)
}

/// The name of the copy of a release's QA test report kept in its history folder.
pub const QA_REPORT_COPY: &str = "qa-test-report.json";

/// The outcome of the QA approval gate.
pub struct QaVerdict {
    pub checks: Vec<Check>,
    /// Set when QA rejected the unit: the work goes back to QA, not to a fix task.
    pub rejected: Option<String>,
}

/// The QA gate for `release`: the reports and the BMAD gate approve, name no blocking bug,
/// agree, and, when they name a version, name this one (seed 000: artifact version matches
/// approved code). A pure function of the config and what [`load_qa`] read.
pub fn qa_gate(config: &Config, release: &Release, evidence: &QaEvidence) -> QaVerdict {
    const GATE: &str = "qa";
    let (unit, version) = (release.unit.as_str(), release.version.as_str());
    let mut checks = Vec::new();
    let mut rejected = None;
    if evidence.markdown.is_none() && evidence.report.is_none() && evidence.gate.is_none() {
        checks.push(Check::new(
            GATE,
            "QA report",
            false,
            format!(
                "no QA report for unit {unit}: looked for {}/QA-Report-{unit}.md, {} and a gate file with `story: \"{unit}\"` in {}",
                config.paths.qa_reports, config.paths.qa_test_report, config.paths.qa_gates
            ),
        ));
    }
    if let Some(md) = &evidence.markdown {
        let status = md.field("status").unwrap_or("missing");
        let passed = status == "approved";
        if matches!(status, "rejected" | "changes_requested") {
            rejected = Some(format!("{} says `status: {status}`", md.file));
        }
        checks.push(Check::new(GATE, "QA report approved", passed, format!("{}: status {status}", md.file)));
        if let Some(bugs) = md.front_matter.get("blocking_bugs").and_then(Value::as_array).filter(|b| !b.is_empty()) {
            checks.push(Check::new(
                GATE,
                "no blocking bugs",
                false,
                format!("{}: {} blocking bugs", md.file, bugs.len()),
            ));
        }
    }
    let mut approved_versions: Vec<(String, String)> = Vec::new();
    if let Some(md) = &evidence.markdown
        && let Some(v) = md.field("version").filter(|v| !v.trim().is_empty())
    {
        approved_versions.push((md.file.clone(), v.to_owned()));
    }
    if let Some((file, report, _)) = &evidence.report
        && let Some(v) = report.get("version").and_then(Value::as_str).filter(|v| !v.trim().is_empty())
    {
        approved_versions.push((file.clone(), v.to_owned()));
    }
    for (file, approved) in approved_versions {
        if version.is_empty() {
            continue;
        }
        let same = same_version(&approved, version);
        checks.push(Check::new(
            GATE,
            "QA approved this version",
            same,
            if same {
                format!("{file}: version {approved}")
            } else {
                format!("{file} is for version {approved}, not {version}: QA has not approved {version}")
            },
        ));
    }
    if let Some((file, report, _)) = &evidence.report {
        let recommendation = report.get("recommendation").and_then(Value::as_str).unwrap_or("missing");
        if matches!(recommendation, "reject" | "needs_fixes") {
            rejected.get_or_insert_with(|| format!("{file} recommends `{recommendation}`"));
        }
        checks.push(Check::new(
            GATE,
            "QA recommends deployment",
            recommendation == "approve_for_deployment",
            format!("{file}: recommendation {recommendation}"),
        ));
        let bugs = report.get("blocking_bugs").and_then(Value::as_array).map_or(0, Vec::len);
        checks.push(Check::new(GATE, "no blocking bugs", bugs == 0, format!("{file}: {bugs} blocking bugs")));
    }
    if let Some(gate) = &evidence.gate {
        let verdict = bmad_gate(config, gate);
        if let Some(why) = verdict.rejected {
            rejected.get_or_insert(why);
        }
        checks.extend(verdict.checks);
    }
    checks.extend(verdicts_disagree(config, evidence));
    QaVerdict { checks, rejected }
}

/// Whether `gates.bmad_concerns` lets a `CONCERNS` through.
fn concerns_allowed(config: &Config) -> bool {
    config.gates.bmad_concerns == "allow"
}

/// What a BMAD gate file says about its story: `PASS` approves; `WAIVED` approves only with
/// `waiver.active: true` and a `waiver.approved_by`, and says who waived it; `CONCERNS`
/// blocks unless `gates.bmad_concerns` is `allow` (then it warns); `FAIL` is QA's rejection.
/// Every `top_issues` item of severity `high` is a blocking bug, whatever the gate says.
pub fn bmad_gate(config: &Config, gate: &GateFile) -> QaVerdict {
    const GATE: &str = "qa";
    const NAME: &str = "BMAD QA gate";
    let file = &gate.file;
    let reason =
        if gate.status_reason.trim().is_empty() { String::new() } else { format!(" ({})", gate.status_reason.trim()) };
    let mut rejected = None;
    let mut check = match gate.gate {
        Verdict::Pass => Check::new(GATE, NAME, true, format!("{file}: gate PASS{reason}")),
        Verdict::Waived if gate.waiver.active && !gate.waiver.approved_by.is_empty() => {
            let why = if gate.waiver.reason.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", gate.waiver.reason.trim())
            };
            Check::new(GATE, NAME, true, format!("{file}: gate WAIVED by {}{why}", gate.waiver.approved_by))
        }
        Verdict::Waived if gate.waiver.active => Check::new(
            GATE,
            NAME,
            false,
            format!(
                "{file}: gate WAIVED, but `waiver.approved_by` names nobody; a waiver counts only with who approved it"
            ),
        ),
        Verdict::Waived => Check::new(
            GATE,
            NAME,
            false,
            format!("{file}: gate WAIVED, but `waiver.active` is not true; a waiver counts only when active"),
        ),
        Verdict::Concerns => Check::new(
            GATE,
            NAME,
            false,
            if concerns_allowed(config) {
                format!("{file}: gate CONCERNS{reason}; let through by gates.bmad_concerns: allow")
            } else {
                format!("{file}: gate CONCERNS{reason}; set gates.bmad_concerns to \"allow\" to let CONCERNS through")
            },
        ),
        Verdict::Fail => {
            rejected = Some(format!("{file} says `gate: FAIL`{reason}"));
            Check::new(GATE, NAME, false, format!("{file}: gate FAIL{reason}"))
        }
    };
    check.warning = gate.gate == Verdict::Concerns && concerns_allowed(config);
    let mut checks = vec![check];
    let high: Vec<String> = gate.high_issues().map(|issue| format!("{}: {}", issue.id, issue.finding)).collect();
    if !high.is_empty() {
        checks.push(Check::new(
            GATE,
            "no blocking bugs",
            false,
            format!("{file}: {} top_issues of severity high ({})", high.len(), high.join("; ")),
        ));
    }
    QaVerdict { checks, rejected }
}

/// Whether each QA verdict for the unit approves, by file: the QA report's `status`, the
/// JSON report's `recommendation`, the BMAD gate's `gate`.
fn verdicts(config: &Config, evidence: &QaEvidence) -> Vec<(String, bool, String)> {
    let mut verdicts = Vec::new();
    if let Some(md) = &evidence.markdown {
        let status = md.field("status").unwrap_or("missing");
        verdicts.push((md.file.clone(), status == "approved", format!("status {status}")));
    }
    if let Some((file, report, _)) = &evidence.report {
        let recommendation = report.get("recommendation").and_then(Value::as_str).unwrap_or("missing");
        verdicts.push((
            file.clone(),
            recommendation == "approve_for_deployment",
            format!("recommendation {recommendation}"),
        ));
    }
    if let Some(gate) = &evidence.gate {
        let approves = bmad_gate(config, gate).checks.first().is_some_and(|check| !check.blocks());
        verdicts.push((gate.file.clone(), approves, format!("gate {}", gate.gate)));
    }
    verdicts
}

/// When some QA verdicts for the unit approve and others do not, one check that names them
/// all: every one must approve.
fn verdicts_disagree(config: &Config, evidence: &QaEvidence) -> Option<Check> {
    let verdicts = verdicts(config, evidence);
    let approving = verdicts.iter().filter(|(_, approves, _)| *approves).count();
    if approving == 0 || approving == verdicts.len() {
        return None;
    }
    let side = |approves: bool| {
        verdicts
            .iter()
            .filter(|(_, a, _)| *a == approves)
            .map(|(file, _, said)| format!("{file} ({said})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(Check::new(
        "qa",
        "QA verdicts agree",
        false,
        format!("{} approve, {} does not: every QA verdict for the unit must approve", side(true), side(false)),
    ))
}

/// Why a figure of the QA JSON report cannot be judged: the text is the failed check's
/// detail, naming the figure and the report file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FigureError {
    #[error("figure `{figure}` is missing: there is no qa-test-report.json for this unit")]
    NoReport { figure: String },
    #[error("figure `{figure}` is missing in {file}")]
    Missing { figure: String, file: String },
    #[error("figure `{figure}` in {file} is not a number")]
    NotANumber { figure: String, file: String },
    #[error("no {suite} tests ran (test_results.{suite} in {file} has 0 passed and 0 failed)")]
    NoTests { suite: String, file: String },
}

/// A figure from the QA JSON report, or why it is missing.
fn figure(report: Option<&(String, Value, String)>, pointer: &str, name: &str) -> Result<f64, FigureError> {
    let Some((file, value, _)) = report else {
        return Err(FigureError::NoReport { figure: name.to_owned() });
    };
    match value.pointer(pointer) {
        Some(Value::Number(n)) => {
            n.as_f64().ok_or_else(|| FigureError::NotANumber { figure: name.to_owned(), file: file.clone() })
        }
        Some(Value::Bool(b)) => Ok(if *b { 1.0 } else { 0.0 }),
        _ => Err(FigureError::Missing { figure: name.to_owned(), file: file.clone() }),
    }
}

fn pass_rate(report: Option<&(String, Value, String)>, suite: &str) -> Result<(f64, f64, f64), FigureError> {
    let passed = figure(report, &format!("/test_results/{suite}/passed"), &format!("test_results.{suite}.passed"))?;
    let failed = figure(report, &format!("/test_results/{suite}/failed"), &format!("test_results.{suite}.failed"))?;
    if passed + failed == 0.0 {
        let file = report.map(|(file, _, _)| file.clone()).unwrap_or_default();
        return Err(FigureError::NoTests { suite: suite.to_owned(), file });
    }
    Ok((passed * 100.0 / (passed + failed), passed, failed))
}

fn threshold_check(gate: &'static str, name: &str, result: Result<(bool, String), FigureError>) -> Check {
    match result {
        Ok((passed, detail)) => Check::new(gate, name, passed, detail),
        Err(missing) => Check::new(gate, name, false, missing.to_string()),
    }
}

/// The BMAD gate's `nfr_validation` entry that stands in for a security or performance figure.
#[derive(Clone, Copy)]
enum Nfr {
    Security,
    Performance,
}

/// A security or performance check: from `qa-test-report.json`, or, when that has no such
/// figure (or there is none), from `nfr_validation.security` or `.performance` of the unit's
/// BMAD gate: `PASS` passes, `FAIL` fails, `CONCERNS` as `gates.bmad_concerns` says.
fn nfr_check(
    config: &Config,
    evidence: &QaEvidence,
    gate: &'static str,
    name: &str,
    nfr: Nfr,
    result: Result<(bool, String), FigureError>,
) -> Check {
    let missing = matches!(result, Err(FigureError::NoReport { .. } | FigureError::Missing { .. }));
    let (key, entry) = match (nfr, &evidence.gate) {
        (Nfr::Security, Some(bmad)) => ("security", bmad.security.as_ref().map(|e| (bmad, e))),
        (Nfr::Performance, Some(bmad)) => ("performance", bmad.performance.as_ref().map(|e| (bmad, e))),
        (_, None) => ("", None),
    };
    match entry {
        Some((bmad, entry)) if missing => {
            let notes =
                if entry.notes.trim().is_empty() { String::new() } else { format!(" ({})", entry.notes.trim()) };
            let mut check = Check::new(
                gate,
                name,
                entry.status == Verdict::Pass,
                format!("{}: nfr_validation.{key} {}{notes}", bmad.file, entry.status),
            );
            check.warning = entry.status == Verdict::Concerns && concerns_allowed(config);
            check
        }
        _ => threshold_check(gate, name, result),
    }
}

/// The staging thresholds (seed 000's quality-gate table).
pub fn staging_gate(config: &Config, evidence: &QaEvidence) -> Vec<Check> {
    const GATE: &str = "staging";
    let gates = &config.gates;
    let report = evidence.report.as_ref();
    let mut checks = vec![
        threshold_check(
            GATE,
            "unit tests pass",
            pass_rate(report, "unit").map(|(rate, passed, failed)| {
                (
                    rate >= gates.unit_pass_rate,
                    format!("{rate:.1}% ({passed} passed, {failed} failed), need {}%", gates.unit_pass_rate),
                )
            }),
        ),
        threshold_check(
            GATE,
            "smoke tests pass",
            figure(report, "/test_results/smoke/failed", "test_results.smoke.failed")
                .map(|f| (f == 0.0, format!("{f} failed"))),
        ),
        threshold_check(
            GATE,
            "sanity tests pass",
            figure(report, "/test_results/sanity/failed", "test_results.sanity.failed")
                .map(|f| (f == 0.0, format!("{f} failed"))),
        ),
        threshold_check(
            GATE,
            "code review approved",
            figure(report, "/code_review/approved", "code_review.approved")
                .map(|a| (a == 1.0, format!("approved: {}", a == 1.0))),
        ),
        nfr_check(
            config,
            evidence,
            GATE,
            "no critical security findings",
            Nfr::Security,
            figure(report, "/security/critical", "security.critical").map(|c| {
                (c <= gates.max_critical as f64, format!("{c} critical, at most {} allowed", gates.max_critical))
            }),
        ),
        threshold_check(
            GATE,
            "lint clean",
            figure(report, "/static_analysis/lint_errors", "static_analysis.lint_errors")
                .map(|n| (n == 0.0, format!("{n} lint errors"))),
        ),
        threshold_check(
            GATE,
            "type check clean",
            figure(report, "/static_analysis/type_errors", "static_analysis.type_errors")
                .map(|n| (n == 0.0, format!("{n} type errors"))),
        ),
    ];
    let mut coverage = threshold_check(
        GATE,
        "coverage",
        figure(report, "/coverage/line_percent", "coverage.line_percent")
            .map(|c| (c >= gates.coverage_min, format!("{c}% line coverage, need {}%", gates.coverage_min))),
    );
    coverage.warning = !coverage.passed && gates.coverage_action != "block";
    checks.push(coverage);
    checks
}

/// The production thresholds that come from the QA report.
pub fn production_quality(config: &Config, evidence: &QaEvidence) -> Vec<Check> {
    const GATE: &str = "production";
    let gates = &config.gates;
    let report = evidence.report.as_ref();
    vec![
        threshold_check(
            GATE,
            "regression tests pass",
            pass_rate(report, "regression").map(|(rate, passed, failed)| {
                (
                    rate >= gates.regression_pass_rate,
                    format!("{rate:.1}% ({passed} passed, {failed} failed), need {}%", gates.regression_pass_rate),
                )
            }),
        ),
        nfr_check(
            config,
            evidence,
            GATE,
            "performance benchmarks met",
            Nfr::Performance,
            figure(report, "/performance/benchmarks_met", "performance.benchmarks_met")
                .map(|m| (m == 1.0, format!("benchmarks_met: {}", m == 1.0))),
        ),
        nfr_check(
            config,
            evidence,
            GATE,
            "no critical security findings",
            Nfr::Security,
            figure(report, "/security/critical", "security.critical").map(|c| {
                (c <= gates.max_critical as f64, format!("{c} critical, at most {} allowed", gates.max_critical))
            }),
        ),
        nfr_check(
            config,
            evidence,
            GATE,
            "no high security findings",
            Nfr::Security,
            figure(report, "/security/high", "security.high")
                .map(|h| (h <= gates.max_high as f64, format!("{h} high, at most {} allowed", gates.max_high))),
        ),
    ]
}

/// The earlier production failures of the unit (`Pass::unresolved`, all units) must be
/// resolved: each one that is not is named with its fix task and the fix's status.
pub(super) fn failures_resolved(unit: &str, unresolved: &[super::Unresolved]) -> Check {
    let open: Vec<String> = unresolved
        .iter()
        .filter(|open| open.unit == unit)
        .map(|super::Unresolved { task: failed, fix, fix_status, .. }| {
            format!(
                "the production deployment {failed} of {unit} failed or was rolled back and is not resolved: {fix} is `{fix_status}` (opsflow waits for `done`, or for `resolved_by` on {failed})"
            )
        })
        .collect();
    Check::new(
        "production",
        "earlier failures of this unit resolved",
        open.is_empty(),
        if open.is_empty() { "no unresolved failure".to_owned() } else { open.join("; ") },
    )
}

/// Staging succeeded for this version, by the R08 `release::find` found for the release; what
/// only warned on the way to staging is shown again before production.
pub fn staging_succeeded(release: &Release, r08: &Lookup) -> Vec<Check> {
    const NAME: &str = "staging deployment of this version succeeded";
    let (unit, version) = (release.unit.as_str(), release.version.as_str());
    let r08 = match r08 {
        Lookup::Found(r08) => r08,
        Lookup::Elsewhere { file, release: theirs } => {
            let detail = format!(
                "{file} is for {}; no staging deployment of {unit} {version} yet: deploy it to staging first",
                theirs.label()
            );
            return vec![Check::new("production", NAME, false, detail)];
        }
        Lookup::Missing => {
            let detail = format!("no R08-staging-deploy.md for unit {unit}: deploy {version} to staging first");
            return vec![Check::new("production", NAME, false, detail)];
        }
    };
    let ok = r08.field("status") == Some("success") && r08.field("version").is_some_and(|v| same_version(v, version));
    let detail = format!(
        "{}: status {}, version {}",
        r08.file,
        r08.field("status").unwrap_or("?"),
        r08.field("version").unwrap_or("?")
    );
    let mut checks = vec![Check::new("production", NAME, ok, detail)];
    for warning in r08.front_matter.get("warnings").and_then(Value::as_array).into_iter().flatten() {
        let Some(text) = warning.as_str() else { continue };
        let mut check = Check::new("production", "warned at staging", false, format!("{text} ({})", r08.file));
        check.warning = true;
        checks.push(check);
    }
    checks
}

/// What a rollback of production could go back to, as read from its record and provider.
#[derive(Debug, Clone, Copy)]
pub enum RollbackPath<'a> {
    /// `local`: the directory the live link points at, the good release live there, and what
    /// a rollback restores (`LocalEnv::rollback_target_in`).
    Local { live_dir: Option<&'a str>, live: Option<&'a Deployment>, target: Option<&'a Deployment> },
    /// `ssh`: the newest good release of the record.
    Ssh { live: Option<&'a Deployment> },
    /// `command`: whether `commands.rollback` is set.
    Command { rollback_set: bool },
}

/// A rollback path exists: after the switch, what is live now is what a rollback restores.
pub fn rollback_path(path: RollbackPath<'_>) -> Check {
    let (has_path, detail) = match path {
        RollbackPath::Local { live: Some(live), .. } => {
            (true, format!("the live good release {} stays on disk", live.label()))
        }
        RollbackPath::Local { live: None, target: Some(target), .. } => {
            (true, format!("the previous good release {} stays on disk", target.label()))
        }
        RollbackPath::Local { live_dir: None, live: None, target: None } => {
            (true, "first deployment: rolling back takes the environment down".to_owned())
        }
        // What is live is not a good release (a failed first deploy of an older opsflow, a
        // link set by hand): nothing better can be lost.
        RollbackPath::Local { live_dir: Some(live), live: None, target: None } => {
            (true, format!("{live} is live but is not a good release; rolling back takes the environment down"))
        }
        RollbackPath::Ssh { live: Some(live) } => {
            (true, format!("the live good release {} stays on every host until it is pruned", live.label()))
        }
        RollbackPath::Ssh { live: None } => (true, "first deployment: rolling back takes every host down".to_owned()),
        RollbackPath::Command { rollback_set: true } => (true, "`commands.rollback` is configured".to_owned()),
        RollbackPath::Command { rollback_set: false } => {
            (false, "`environments.production.commands.rollback` is not set".to_owned())
        }
    };
    Check::new("production", "rollback path exists", has_path, detail)
}

/// Production is watched after a deploy: it has health checks.
pub fn monitoring_configured(health_checks: usize) -> Check {
    let monitored = health_checks > 0;
    Check::new(
        "production",
        "monitoring configured",
        monitored,
        if monitored {
            format!("{health_checks} health checks")
        } else {
            "`environments.production.health_checks` is empty".to_owned()
        },
    )
}

/// Where a human's approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Missing,
    Pending,
    Approved,
    Hold,
    Rejected,
}

/// The approval file of an environment: R12 for production.
pub fn approval_file_name(environment: &str) -> String {
    if environment == "production" {
        "R12-prod-approval.md".to_owned()
    } else {
        format!("R12-{environment}-approval.md")
    }
}

/// Reads the approval of `release` for `environment`. An approval counts only for the release
/// its front matter names; one without `version` counts only while `single` (a single release
/// of that unit waits). The request as opsflow wrote it never counts: a human must change it.
pub fn human_approval(
    ws: &Workspace,
    environment: &str,
    release: &Release,
    single: bool,
) -> Result<(Check, Approval, Option<Artifact>), Vec<Diagnostic>> {
    const GATE: &str = "approval";
    let name = approval_file_name(environment);
    let mut lookup = release::find(ws, &name, release)?;
    // A decision file that changed a moment ago may be half written: read once it settled.
    if let Lookup::Found(artifact) = &lookup
        && !untouched_request(ws, release, &name, artifact)
        && ws.settle_decision(&artifact.file)
    {
        lookup = release::find(ws, &name, release)?;
    }
    let artifact = match lookup {
        Lookup::Found(artifact) => artifact,
        other => {
            let detail = format!(
                "waiting for a human: no approval for {} ({}; opsflow writes the request {} once every other gate passes)",
                release.label(),
                other.why_not(ws, &name, release),
                release::output_path(ws, &name, release)
            );
            return Ok((
                Check::new(GATE, "human approval", false, detail).with_id(CheckId::HumanApproval),
                Approval::Missing,
                None,
            ));
        }
    };
    let untouched = untouched_request(ws, release, &name, &artifact);
    let (check, approval) =
        approval_of(release, single, &artifact, untouched, &ws.config.devops.approvers, |approved_by| {
            // Who approved, as git proves it, and that it is not the release's own author.
            let release_commit = release::find(ws, "R07-version-tag.md", release)
                .ok()
                .and_then(Lookup::found)
                .and_then(|r07| r07.field("commit").map(str::to_owned));
            crate::identity::confirm(ws, &artifact.file, &artifact.sha256, approved_by, release_commit.as_deref())
        });
    Ok((check, approval, Some(artifact)))
}

/// What an approval file says about `release`, decided from what was read: the file, whether
/// it is still the request as opsflow wrote it (`untouched`), the approvers, and who git says
/// approved (`confirm`, asked only of an approval by a listed approver, with its
/// `approved_by`). `single`: a single release of the unit waits, so a file without `version`
/// may approve it.
pub fn approval_of(
    release: &Release,
    single: bool,
    artifact: &Artifact,
    untouched: bool,
    approvers: &[String],
    confirm: impl FnOnce(&str) -> crate::identity::Verdict,
) -> (Check, Approval) {
    const GATE: &str = "approval";
    let file = artifact.file.clone();
    let fail = |approval: Approval, detail: String| {
        Check::new(GATE, "human approval", approval == Approval::Approved, detail).with_id(CheckId::HumanApproval)
    };
    if artifact.field("version").is_none_or(|v| v.trim().is_empty()) && !single {
        let detail = format!(
            "{file} names no `version` and several releases of {} wait: add `version: {}` to approve this one",
            release.unit, release.version
        );
        return (fail(Approval::Pending, detail), Approval::Pending);
    }
    if untouched {
        let detail = format!(
            "waiting for a human: {file} is the request as opsflow wrote it; edit it to approve (`status: approved`, `approved_by`) or tick `Approved`"
        );
        return (fail(Approval::Pending, detail), Approval::Pending);
    }
    let ticks = artifacts::ticks(&artifact.body);
    let status = artifact.field("status").unwrap_or("pending");
    let approval = if ticks.hold || status == "hold" {
        Approval::Hold
    } else if status == "rejected" {
        Approval::Rejected
    } else if status == "approved" || ticks.approved {
        Approval::Approved
    } else {
        Approval::Pending
    };
    let approved_by = artifact.field("approved_by").unwrap_or("").trim().to_owned();
    let ignored: String =
        ticks.ignored.iter().map(|label| format!("; ticked \"{label}\" is not an approval")).collect();
    let (approval, detail) = match approval {
        Approval::Approved if !approvers.is_empty() && approved_by.is_empty() => (
            Approval::Pending,
            format!(
                "{file} is marked approved but `approved_by` is empty; it must name one of devops.approvers ({})",
                approvers.join(", ")
            ),
        ),
        Approval::Approved if !approvers.is_empty() && !approvers.contains(&approved_by) => (
            Approval::Pending,
            format!("{file} is approved by `{approved_by}`, who is not in devops.approvers ({})", approvers.join(", ")),
        ),
        Approval::Approved => match confirm(&approved_by) {
            crate::identity::Verdict::Refused(why) => (Approval::Pending, why),
            crate::identity::Verdict::Approved(proven) if !proven.is_empty() => (Approval::Approved, proven),
            crate::identity::Verdict::Approved(_) => {
                let by = if approved_by.is_empty() { "a ticked box".to_owned() } else { approved_by };
                (Approval::Approved, format!("{file}: approved by {by}"))
            }
        },
        // Who held or rejected it: `held_by`, else the name filled in `approved_by`.
        Approval::Hold | Approval::Rejected => {
            let by = artifact
                .field("held_by")
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .or_else(|| (!approved_by.is_empty()).then(|| approved_by.clone()));
            let what = if approval == Approval::Hold { "on hold" } else { "rejected" };
            let by = by.map(|by| format!(" by {by}")).unwrap_or_else(|| " (no `held_by` names who)".to_owned());
            (approval, format!("{file}: {what}{by}"))
        }
        other => (
            other,
            format!("waiting for a human: {file} is not approved yet (status {status}, no ticked `Approved`){ignored}"),
        ),
    };
    (fail(approval, detail), approval)
}

/// Whether `artifact` is still byte for byte the approval request opsflow wrote for `release`
/// (kept in the release's history when it was written).
fn untouched_request(ws: &Workspace, release: &Release, name: &str, artifact: &Artifact) -> bool {
    let Some(dir) = release.history_dir(ws) else { return false };
    let Ok(Some(request)) = ws.read_text(&format!("{dir}/{name}")) else { return false };
    sha256::hex(request.as_bytes()) == artifact.sha256
}

/// What a human decided about a paused rollout, in R17.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No usable decision yet; the text says why (empty while R17 still says `pending`).
    Pending(String),
    Rollback {
        by: String,
        reason: String,
    },
    Proceed {
        by: String,
        reason: String,
    },
}

/// Reads the decision about the paused rollout `journal` from R17 of its unit.
///
/// A decision counts when the front matter says `decision: rollback` or `decision: proceed`,
/// its `unit_id`/`version` (when present) are the rollout's, and its `pause_id` (when
/// present) is this pause's, so a decision about an earlier pause never counts twice.
/// `proceed` sends more traffic to a release the data could not judge, so like an approval
/// it must be `decided_by` one of `devops.approvers` when that list is set; `rollback` is
/// always allowed.
pub fn rollout_decision(ws: &Workspace, journal: &Journal) -> Result<(Decision, Option<Artifact>), Vec<Diagnostic>> {
    let release = Release::new(journal.unit_id.clone(), journal.version.clone());
    let mut found = release::find(ws, "R17-rollback-decision.md", &release)?;
    if let Lookup::Found(artifact) = &found
        && ws.settle_decision(&artifact.file)
    {
        found = release::find(ws, "R17-rollback-decision.md", &release)?;
    }
    let Some(artifact) = found.found() else {
        let why = format!("no R17-rollback-decision.md for unit {}", journal.unit_id);
        return Ok((Decision::Pending(why), None));
    };
    let file = artifact.file.clone();
    let field = |key: &str| artifact.field(key).unwrap_or("").trim().to_owned();
    let pause_id = journal.pause.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
    let pending = |why: String| Ok((Decision::Pending(why), Some(artifact.clone())));
    if let Some(version) = artifact.field("version")
        && !same_version(version, &journal.version)
    {
        return pending(format!("{file} decides about version {version}, not {}", journal.version));
    }
    if let Some(id) = artifact.field("pause_id")
        && id != pause_id
    {
        return pending(format!("{file} answers an earlier pause ({id}), not this one ({pause_id})"));
    }
    let by = field("decided_by");
    let reason = field("reason");
    let decision = match field("decision").as_str() {
        "rollback" => Decision::Rollback { by: if by.is_empty() { "a human".into() } else { by }, reason },
        "proceed" => {
            let approvers = &ws.config.devops.approvers;
            if !approvers.is_empty() && !approvers.contains(&by) {
                return pending(format!(
                    "{file} says proceed, but `decided_by` ({}) is not one of devops.approvers ({})",
                    if by.is_empty() { "empty" } else { &by },
                    approvers.join(", ")
                ));
            }
            Decision::Proceed { by: if by.is_empty() { "a human".into() } else { by }, reason }
        }
        // Untouched: the request opsflow wrote still waits.
        "pending" | "" => return pending(String::new()),
        other => return pending(format!("{file} says `decision: {other}`; waiting for rollback or proceed")),
    };
    Ok((decision, Some(artifact)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GATES: &str = "docs/qa/gates/1.3-user-auth-login.yml";

    fn gate(text: &str) -> GateFile {
        bmad::decode(GATES, text).expect("a valid gate file")
    }

    fn qa_report(status: &str) -> Artifact {
        Artifact {
            file: "QA/QA-Report-1.3.md".into(),
            front_matter: json!({"unit_id": "1.3", "status": status}),
            body: String::new(),
            sha256: String::new(),
        }
    }

    fn json_report(recommendation: &str) -> (String, Value, String) {
        let file = "ARTIFACTS/qa-engineer/qa-test-report.json".to_owned();
        (file, json!({"unit_id": "1.3", "recommendation": recommendation, "blocking_bugs": []}), String::new())
    }

    fn release() -> Release {
        Release::new("1.3", "1.0.0")
    }

    fn blocking(verdict: &QaVerdict) -> Vec<String> {
        verdict.checks.iter().filter(|c| c.blocks()).map(|c| format!("{}: {}", c.name, c.detail)).collect()
    }

    const PASS: &str = "story: '1.3'\ngate: PASS\nstatus_reason: 'All good.'\n";

    /// Defect: a BMAD gate saying FAIL was not read, and a hand-written `status: approved`
    /// QA report beside it let staging go ahead.
    #[test]
    fn a_failing_bmad_gate_beside_an_approved_qa_report_blocks_and_goes_back_to_qa() {
        let evidence = QaEvidence {
            markdown: Some(qa_report("approved")),
            gate: Some(gate("story: '1.3'\ngate: FAIL\nstatus_reason: 'Login accepts any password.'\n")),
            ..QaEvidence::default()
        };
        let verdict = qa_gate(&Config::default(), &release(), &evidence);
        assert_eq!(
            blocking(&verdict),
            [
                format!("BMAD QA gate: {GATES}: gate FAIL (Login accepts any password.)"),
                format!(
                    "QA verdicts agree: QA/QA-Report-1.3.md (status approved) approve, {GATES} (gate FAIL) does not: every QA verdict for the unit must approve"
                ),
            ]
        );
        assert_eq!(verdict.rejected, Some(format!("{GATES} says `gate: FAIL` (Login accepts any password.)")));
    }

    #[test]
    fn a_passing_gate_alone_approves() {
        let evidence = QaEvidence { gate: Some(gate(PASS)), ..QaEvidence::default() };
        let verdict = qa_gate(&Config::default(), &release(), &evidence);
        assert!(blocking(&verdict).is_empty(), "{:?}", blocking(&verdict));
        assert_eq!(verdict.checks[0].detail, format!("{GATES}: gate PASS (All good.)"));
        assert_eq!(verdict.rejected, None);
    }

    #[test]
    fn a_waiver_approves_only_when_active_and_says_who_waived() {
        let waived = gate(include_str!("../../tests/fixtures/bmad/1.3-user-auth-login-waived.yml"));
        let verdict = bmad_gate(&Config::default(), &waived);
        assert!(blocking(&verdict).is_empty(), "{:?}", blocking(&verdict));
        assert_eq!(
            verdict.checks[0].detail,
            format!("{GATES}: gate WAIVED by Product Owner: MVP release - performance optimization deferred")
        );
        let inactive = gate("story: '1.3'\ngate: WAIVED\nwaiver: { active: false }\n");
        assert_eq!(
            blocking(&bmad_gate(&Config::default(), &inactive)),
            [format!(
                "BMAD QA gate: {GATES}: gate WAIVED, but `waiver.active` is not true; a waiver counts only when active"
            )]
        );
        let nobody = gate("story: '1.3'\ngate: WAIVED\nwaiver: { active: true, reason: 'later' }\n");
        assert!(blocking(&bmad_gate(&Config::default(), &nobody))[0].contains("`waiver.approved_by` names nobody"));
    }

    #[test]
    fn concerns_block_unless_the_config_allows_them_and_high_issues_always_block() {
        let concerns = gate(include_str!("../../tests/fixtures/bmad/1.3-user-auth-login.yml"));
        let blocked = blocking(&bmad_gate(&Config::default(), &concerns));
        assert_eq!(
            blocked,
            [
                format!(
                    "BMAD QA gate: {GATES}: gate CONCERNS (Missing rate limiting on auth endpoints poses security risk.); set gates.bmad_concerns to \"allow\" to let CONCERNS through"
                ),
                format!(
                    "no blocking bugs: {GATES}: 1 top_issues of severity high (SEC-001: No rate limiting on login endpoint)"
                ),
            ]
        );
        let mut config = Config::default();
        config.gates.bmad_concerns = "allow".into();
        let without_high =
            gate("story: '1.3'\ngate: CONCERNS\ntop_issues:\n  - { id: T-1, severity: medium, finding: f }\n");
        let verdict = bmad_gate(&config, &without_high);
        assert!(blocking(&verdict).is_empty(), "{:?}", blocking(&verdict));
        assert!(verdict.checks[0].warning, "an allowed CONCERNS is shown as a warning");
        assert!(!blocking(&bmad_gate(&config, &concerns)).is_empty(), "a high issue blocks even so");
    }

    #[test]
    fn all_verdicts_of_a_unit_must_approve_and_a_disagreement_names_the_files() {
        let evidence = QaEvidence {
            markdown: Some(qa_report("approved")),
            report: Some(json_report("needs_fixes")),
            gate: Some(gate(PASS)),
        };
        let verdict = qa_gate(&Config::default(), &release(), &evidence);
        let blocked = blocking(&verdict);
        assert_eq!(blocked.len(), 2, "{blocked:#?}");
        assert_eq!(
            blocked[1],
            format!(
                "QA verdicts agree: QA/QA-Report-1.3.md (status approved), {GATES} (gate PASS) approve, ARTIFACTS/qa-engineer/qa-test-report.json (recommendation needs_fixes) does not: every QA verdict for the unit must approve"
            )
        );
        let agreeing = QaEvidence {
            markdown: Some(qa_report("approved")),
            report: Some(json_report("approve_for_deployment")),
            gate: Some(gate(PASS)),
        };
        assert!(blocking(&qa_gate(&Config::default(), &release(), &agreeing)).is_empty());
    }

    #[test]
    fn nfr_validation_stands_in_for_security_and_performance_figures_without_a_json_report() {
        let text = "story: '1.3'\ngate: PASS\nnfr_validation:\n  security: { status: FAIL, notes: 'SQL injection' }\n  performance: { status: PASS, notes: '' }\n";
        let evidence = QaEvidence { gate: Some(gate(text)), ..QaEvidence::default() };
        let production = production_quality(&Config::default(), &evidence);
        let shown = |name: &str| {
            let check = production.iter().find(|c| c.name == name).expect(name);
            (check.passed, check.detail.clone())
        };
        assert_eq!(shown("performance benchmarks met"), (true, format!("{GATES}: nfr_validation.performance PASS")));
        assert_eq!(
            shown("no high security findings"),
            (false, format!("{GATES}: nfr_validation.security FAIL (SQL injection)"))
        );
        assert_eq!(
            shown("regression tests pass").1,
            "figure `test_results.regression.passed` is missing: there is no qa-test-report.json for this unit"
        );
        let staging = staging_gate(&Config::default(), &evidence);
        let security = staging.iter().find(|c| c.name == "no critical security findings").unwrap();
        assert!(!security.passed && security.detail.contains("nfr_validation.security FAIL"), "{security:?}");

        // A report with the figure decides; the gate's entry only stands in for a missing one.
        let with_report = QaEvidence {
            report: Some((
                "r.json".into(),
                json!({"security": {"critical": 0, "high": 0}, "performance": {"benchmarks_met": false}}),
                String::new(),
            )),
            ..evidence
        };
        let production = production_quality(&Config::default(), &with_report);
        let high = production.iter().find(|c| c.name == "no high security findings").unwrap();
        assert_eq!((high.passed, high.detail.as_str()), (true, "0 high, at most 0 allowed"));
        let performance = production.iter().find(|c| c.name == "performance benchmarks met").unwrap();
        assert_eq!((performance.passed, performance.detail.as_str()), (false, "benchmarks_met: false"));
    }

    fn r08(status: &str, version: &str, warnings: Value) -> Artifact {
        Artifact {
            file: "docs/workflow/artifacts/R08-staging-deploy.md".into(),
            front_matter: json!({"unit_id": "1.3", "status": status, "version": version, "warnings": warnings}),
            body: String::new(),
            sha256: String::new(),
        }
    }

    fn deployment(unit: &str, version: &str) -> Deployment {
        serde_json::from_value(json!({"version": version, "unit_id": unit, "dir": format!("releases/{unit}/{version}"),
            "status": "good", "deployed_at": "2026-01-01T00:00:00Z", "run_id": "r1", "migrated": false}))
        .unwrap()
    }

    fn said(check: &Check) -> (bool, &str) {
        (check.passed, check.detail.as_str())
    }

    #[test]
    fn earlier_production_failures_of_the_unit_must_be_resolved_and_are_named() {
        let open = |unit: &str, task: &str, fix: &str| super::super::Unresolved {
            unit: unit.into(),
            task: task.into(),
            fix: fix.into(),
            fix_status: crate::task::TaskStatus::InProgress,
        };
        let unresolved = [open("1.3", "DEVOPS-009", "FIX-1"), open("2.1", "DEVOPS-010", "FIX-2")];
        let check = failures_resolved("1.3", &unresolved);
        assert_eq!(
            said(&check),
            (
                false,
                "the production deployment DEVOPS-009 of 1.3 failed or was rolled back and is not resolved: FIX-1 is `in_progress` (opsflow waits for `done`, or for `resolved_by` on DEVOPS-009)"
            )
        );
        assert_eq!(said(&failures_resolved("4.2", &unresolved)), (true, "no unresolved failure"));
    }

    #[test]
    fn staging_must_have_succeeded_for_this_version_and_its_warnings_are_shown_again() {
        let passed = staging_succeeded(&release(), &Lookup::Found(r08("success", "v1.0.0", json!(["coverage 70%"]))));
        let shown: Vec<(bool, bool, &str)> = passed.iter().map(|c| (c.passed, c.warning, c.detail.as_str())).collect();
        assert_eq!(
            shown,
            [
                (true, false, "docs/workflow/artifacts/R08-staging-deploy.md: status success, version v1.0.0"),
                (false, true, "coverage 70% (docs/workflow/artifacts/R08-staging-deploy.md)"),
            ]
        );
        assert!(passed.iter().all(|c| !c.blocks()));
        let failed = staging_succeeded(&release(), &Lookup::Found(r08("failed", "1.0.0", Value::Null)));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].blocks());
        let older = staging_succeeded(&release(), &Lookup::Found(r08("success", "0.9.0", Value::Null)));
        assert!(older[0].blocks(), "{older:?}");
        let elsewhere =
            Lookup::Elsewhere { file: "R08-staging-deploy.md".into(), release: Release::new("2.1", "3.0.0") };
        assert_eq!(
            said(&staging_succeeded(&release(), &elsewhere)[0]),
            (
                false,
                "R08-staging-deploy.md is for 2.1 3.0.0; no staging deployment of 1.3 1.0.0 yet: deploy it to staging first"
            )
        );
        assert_eq!(
            said(&staging_succeeded(&release(), &Lookup::Missing)[0]),
            (false, "no R08-staging-deploy.md for unit 1.3: deploy 1.0.0 to staging first")
        );
    }

    #[test]
    fn a_rollback_path_is_what_a_rollback_would_go_back_to_by_provider() {
        let (live, before) = (deployment("1.3", "1.0.0"), deployment("1.3", "0.9.0"));
        let cases = [
            (
                RollbackPath::Local { live_dir: Some("releases/1.3/1.0.0"), live: Some(&live), target: Some(&before) },
                (true, "the live good release 1.3 1.0.0 stays on disk"),
            ),
            (
                RollbackPath::Local { live_dir: Some("releases/x"), live: None, target: Some(&before) },
                (true, "the previous good release 1.3 0.9.0 stays on disk"),
            ),
            (
                RollbackPath::Local { live_dir: None, live: None, target: None },
                (true, "first deployment: rolling back takes the environment down"),
            ),
            (
                RollbackPath::Local { live_dir: Some("releases/x"), live: None, target: None },
                (true, "releases/x is live but is not a good release; rolling back takes the environment down"),
            ),
            (
                RollbackPath::Ssh { live: Some(&live) },
                (true, "the live good release 1.3 1.0.0 stays on every host until it is pruned"),
            ),
            (RollbackPath::Ssh { live: None }, (true, "first deployment: rolling back takes every host down")),
            (RollbackPath::Command { rollback_set: true }, (true, "`commands.rollback` is configured")),
            (
                RollbackPath::Command { rollback_set: false },
                (false, "`environments.production.commands.rollback` is not set"),
            ),
        ];
        for (path, expected) in cases {
            let check = rollback_path(path);
            assert_eq!((check.name.as_str(), said(&check)), ("rollback path exists", expected), "{path:?}");
        }
    }

    #[test]
    fn production_is_monitored_only_with_health_checks() {
        assert_eq!(said(&monitoring_configured(2)), (true, "2 health checks"));
        assert_eq!(said(&monitoring_configured(0)), (false, "`environments.production.health_checks` is empty"));
    }

    /// An approval decided from the file as read: the version rule, the request as written,
    /// the approvers, who git says approved (asked only of an approval by an approver), hold
    /// and rejection with who, each in the words the task's block reason shows.
    #[test]
    fn an_approval_is_decided_from_the_file_the_approvers_and_what_git_says() {
        use crate::identity::Verdict;
        const FILE: &str = "docs/workflow/artifacts/R12-prod-approval.md";
        let approval = |front: Value, body: &str| Artifact {
            file: FILE.into(),
            front_matter: front,
            body: body.into(),
            sha256: String::new(),
        };
        let never = |_: &str| -> Verdict { panic!("git is asked only of an approval by an approver") };
        let alice = ["alice".to_owned()];
        let decide = |artifact: &Artifact, single: bool, untouched: bool, approvers: &[String]| {
            let (check, approval) = approval_of(&release(), single, artifact, untouched, approvers, never);
            (approval, check.passed, check.detail)
        };
        let unversioned = approval(json!({"status": "approved", "approved_by": "alice"}), "");
        assert_eq!(
            decide(&unversioned, false, false, &alice),
            (
                Approval::Pending,
                false,
                format!(
                    "{FILE} names no `version` and several releases of 1.3 wait: add `version: 1.0.0` to approve this one"
                )
            )
        );
        let request = approval(json!({"version": "1.0.0", "status": "pending"}), "- [ ] Approved\n");
        assert!(decide(&request, true, true, &alice).2.contains("is the request as opsflow wrote it"));
        let nobody = approval(json!({"version": "1.0.0", "status": "approved"}), "");
        assert_eq!(
            decide(&nobody, true, false, &alice).2,
            format!(
                "{FILE} is marked approved but `approved_by` is empty; it must name one of devops.approvers (alice)"
            )
        );
        let mallory = approval(json!({"version": "1.0.0", "status": "approved", "approved_by": "mallory"}), "");
        assert_eq!(
            decide(&mallory, true, false, &alice).2,
            format!("{FILE} is approved by `mallory`, who is not in devops.approvers (alice)")
        );
        let held = approval(json!({"version": "1.0.0", "status": "hold", "held_by": "bob"}), "");
        assert_eq!(decide(&held, true, false, &alice), (Approval::Hold, false, format!("{FILE}: on hold by bob")));
        let rejected = approval(json!({"version": "1.0.0", "status": "rejected"}), "");
        assert_eq!(
            decide(&rejected, true, false, &alice),
            (Approval::Rejected, false, format!("{FILE}: rejected (no `held_by` names who)"))
        );
        let pending = approval(json!({"version": "1.0.0"}), "");
        assert_eq!(
            decide(&pending, true, false, &alice).2,
            format!("waiting for a human: {FILE} is not approved yet (status pending, no ticked `Approved`)")
        );
        // An approval by an approver counts as git says.
        let by_alice = approval(json!({"version": "1.0.0", "status": "approved", "approved_by": "alice"}), "");
        let asked = std::cell::RefCell::new(Vec::new());
        let git = |said: Verdict| {
            let asked = &asked;
            move |by: &str| {
                asked.borrow_mut().push(by.to_owned());
                said
            }
        };
        let (check, decided) =
            approval_of(&release(), true, &by_alice, false, &alice, git(Verdict::Approved(String::new())));
        assert_eq!(
            (decided, check.passed, check.detail),
            (Approval::Approved, true, format!("{FILE}: approved by alice"))
        );
        let (check, decided) =
            approval_of(&release(), true, &by_alice, false, &alice, git(Verdict::Refused("not alice's commit".into())));
        assert_eq!((decided, check.passed, check.detail.as_str()), (Approval::Pending, false, "not alice's commit"));
        let ticked = approval(json!({"version": "1.0.0"}), "- [x] Approved\n");
        let (check, decided) =
            approval_of(&release(), true, &ticked, false, &[], git(Verdict::Approved(String::new())));
        assert_eq!((decided, check.detail), (Approval::Approved, format!("{FILE}: approved by a ticked box")));
        assert_eq!(asked.into_inner(), ["alice", "alice", ""]);
    }
}
