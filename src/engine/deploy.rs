//! Deploying a release to an environment, verifying it, and rolling it back.
//!
//! `local` environments keep releases on disk and switch symlinks (see `exec::local`);
//! `command` environments run the configured commands. Either way: health checks before the
//! switch where the strategy allows it (blue-green), smoke tests after, and a failed release
//! is marked bad and the previous one restored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::analysis::{Analysis, AnalysisSpec, Baseline, Health, Measurement, Plan, Thresholds, Verdict};
use crate::config::{Config, Devops};
use crate::exec::checks::{CheckResult, CheckSpec, run_check};
use crate::exec::command::{Runner, StepResult};
use crate::exec::local::{Deployment, LocalEnv, Strategy};
use crate::exec::metrics::{self, MetricsSpec};

/// One environment from the config.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvConfig {
    #[serde(skip)]
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub requires_approval: bool,
    #[serde(default)]
    pub commands: Map<String, Value>,
    #[serde(default)]
    pub health_checks: Vec<CheckSpec>,
    #[serde(default)]
    pub smoke_tests: Vec<CheckSpec>,
    #[serde(default)]
    pub metrics: Option<Value>,
}

impl EnvConfig {
    pub fn load(config: &Config, name: &str) -> Result<EnvConfig, String> {
        let raw = config.environments.get(name).ok_or_else(|| format!("the config has no `environments.{name}`"))?;
        let mut env: EnvConfig =
            serde_json::from_value(raw.clone()).map_err(|e| format!("`environments.{name}`: {e}"))?;
        env.name = name.to_owned();
        Ok(env)
    }

    pub fn strategy(&self) -> &str {
        self.strategy.as_deref().unwrap_or(if self.provider == "local" { "recreate" } else { "direct" })
    }

    /// A command from `commands`, as (command line, timeout).
    pub fn command(&self, name: &str) -> Option<(String, Option<Duration>)> {
        match self.commands.get(name)? {
            Value::String(run) => Some((run.clone(), None)),
            Value::Object(spec) => {
                let run = spec.get("run")?.as_str()?.to_owned();
                let timeout =
                    spec.get("timeout").and_then(Value::as_str).and_then(|t| crate::config::parse_duration(t).ok());
                Some((run, timeout))
            }
            _ => None,
        }
    }

    pub fn local(&self, workspace: &Path) -> Option<LocalEnv> {
        if self.provider != "local" {
            return None;
        }
        let root = workspace.join(self.path.clone().unwrap_or_else(|| format!(".opsflow/envs/{}", self.name)));
        let strategy = if self.strategy() == "blue-green" { Strategy::BlueGreen } else { Strategy::Recreate };
        Some(LocalEnv::new(root, strategy))
    }

    /// Where checks run: the live release for `local`, else the environment's path or the workspace.
    pub fn check_dir(&self, workspace: &Path) -> PathBuf {
        match self.local(workspace) {
            Some(local) if local.strategy == Strategy::BlueGreen => local.live_link(),
            Some(local) => local.root,
            None => self.path.as_ref().map_or_else(|| workspace.to_owned(), |p| workspace.join(p)),
        }
    }
}

/// What a deployment did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployReport {
    pub environment: String,
    pub provider: String,
    pub strategy: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// Where the release went (relative to the environment for `local`).
    pub target: String,
    pub success: bool,
    pub failed_step: Option<String>,
    pub reason: String,
    pub restored_previous: bool,
    pub steps: Vec<StepResult>,
    pub health: Vec<CheckResult>,
    pub smoke: Vec<CheckResult>,
    pub migrated: bool,
}

impl DeployReport {
    fn fail(&mut self, step: &str, reason: String) {
        self.success = false;
        self.failed_step = Some(step.to_owned());
        self.reason = reason;
    }

    /// The log of the failed step, if it ran a command.
    pub fn failed_log(&self) -> String {
        let check = self.health.iter().chain(&self.smoke).find(|c| !c.passed).map(|c| c.log.clone());
        let step = self.steps.iter().rev().find(|s| !s.success).map(|s| s.log.clone());
        check.or(step).unwrap_or_default()
    }
}

fn run_checks(
    runner: &Runner,
    prefix: &str,
    specs: &[CheckSpec],
    cwd: &Path,
    env: &[(String, String)],
) -> (Vec<CheckResult>, Option<String>) {
    let results: Vec<CheckResult> = specs.iter().map(|spec| run_check(runner, prefix, spec, cwd, env)).collect();
    let failure = results.iter().find(|r| !r.passed).map(|r| format!("{} `{}` failed: {}", prefix, r.name, r.detail));
    (results, failure)
}

/// Deploys `release_dir` as `version` to `env`.
pub fn deploy(
    runner: &Runner,
    workspace: &Path,
    env: &EnvConfig,
    version: &str,
    release_dir: &Path,
    extra_env: &[(String, String)],
) -> DeployReport {
    let mut report = DeployReport {
        environment: env.name.clone(),
        provider: env.provider.clone(),
        strategy: env.strategy().to_owned(),
        version: version.to_owned(),
        success: true,
        ..DeployReport::default()
    };
    let mut vars = extra_env.to_vec();
    vars.push(("OPSFLOW_RELEASE_DIR".into(), release_dir.to_string_lossy().into_owned()));
    if let Some(local) = env.local(workspace) {
        deploy_local(runner, env, &local, version, release_dir, &mut vars, &mut report);
    } else {
        deploy_command(runner, workspace, env, &mut vars, &mut report);
    }
    report
}

fn deploy_local(
    runner: &Runner,
    env: &EnvConfig,
    local: &LocalEnv,
    version: &str,
    release_dir: &Path,
    vars: &mut Vec<(String, String)>,
    report: &mut DeployReport,
) {
    let previous_dir = local.live_dir();
    report.previous_version = local.live_version();
    if let Some(previous) = &report.previous_version {
        vars.push(("OPSFLOW_PREVIOUS_VERSION".into(), previous.clone()));
    }
    let dir = match local.stage(version, release_dir) {
        Ok(dir) => dir,
        Err(e) => return report.fail("stage", format!("cannot copy the release into {}: {e}", local.root.display())),
    };
    report.target = dir.clone();
    let record = |status: &str| {
        let _ = local.record(Deployment {
            version: version.to_owned(),
            dir: dir.clone(),
            status: status.to_owned(),
            deployed_at: crate::time::now_rfc3339(),
            run_id: runner.run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        });
    };
    if local.strategy == Strategy::BlueGreen {
        // Health-check the idle side before any traffic moves to it.
        let (health, failure) = run_checks(runner, "health", &env.health_checks, &local.root.join(&dir), vars);
        report.health = health;
        if let Some(failure) = failure {
            record("bad");
            return report.fail("health", format!("{failure}; the new side was not switched in"));
        }
    }
    if let Err(e) = local.switch(&dir) {
        record("bad");
        return report.fail("switch", format!("cannot switch to {dir}: {e}"));
    }
    let check_dir = env.check_dir(&runner.workspace);
    if local.strategy == Strategy::Recreate {
        let (health, failure) = run_checks(runner, "health", &env.health_checks, &check_dir, vars);
        report.health = health;
        if let Some(failure) = failure {
            record("bad");
            restore(local, previous_dir.as_deref(), report);
            return report.fail("health", failure);
        }
    }
    let (smoke, failure) = run_checks(runner, "smoke", &env.smoke_tests, &check_dir, vars);
    report.smoke = smoke;
    if let Some(failure) = failure {
        record("bad");
        restore(local, previous_dir.as_deref(), report);
        return report.fail("smoke", failure);
    }
    record("good");
}

fn restore(local: &LocalEnv, previous: Option<&str>, report: &mut DeployReport) {
    if let Some(previous) = previous
        && local.switch(previous).is_ok()
    {
        report.restored_previous = true;
    }
}

fn deploy_command(
    runner: &Runner,
    workspace: &Path,
    env: &EnvConfig,
    vars: &mut [(String, String)],
    report: &mut DeployReport,
) {
    let cwd = env.path.as_ref().map(|p| workspace.join(p));
    let Some((deploy, timeout)) = env.command("deploy") else {
        return report.fail("deploy", format!("`environments.{}.commands.deploy` is not set", env.name));
    };
    if let Some((migrate, timeout)) = env.command("migrate") {
        let step = runner.run("migrate", &migrate, cwd.as_deref(), timeout, vars);
        let ok = step.success;
        report.steps.push(step);
        if !ok {
            return report.fail("migrate", "the migration failed".to_owned());
        }
        report.migrated = true;
    }
    let step = runner.run("deploy", &deploy, cwd.as_deref(), timeout, vars);
    let ok = step.success;
    let summary = step.summary();
    report.steps.push(step);
    if !ok {
        rollback_command(runner, env, cwd.as_deref(), vars, report);
        return report.fail("deploy", summary);
    }
    let check_dir = env.check_dir(workspace);
    for (prefix, specs) in [("health", &env.health_checks), ("smoke", &env.smoke_tests)] {
        let (results, failure) = run_checks(runner, prefix, specs, &check_dir, vars);
        if prefix == "health" {
            report.health = results;
        } else {
            report.smoke = results;
        }
        if let Some(failure) = failure {
            rollback_command(runner, env, cwd.as_deref(), vars, report);
            return report.fail(prefix, failure);
        }
    }
}

fn rollback_command(
    runner: &Runner,
    env: &EnvConfig,
    cwd: Option<&Path>,
    vars: &[(String, String)],
    report: &mut DeployReport,
) {
    if report.migrated
        && let Some((down, timeout)) = env.command("migrate_down")
    {
        report.steps.push(runner.run("migrate-down", &down, cwd, timeout, vars));
    }
    if let Some((rollback, timeout)) = env.command("rollback") {
        let step = runner.run("rollback", &rollback, cwd, timeout, vars);
        report.restored_previous = step.success;
        report.steps.push(step);
    }
}

/// One measurement of the monitoring period, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub at_ms: u64,
    /// `ok`, `breached`, `unhealthy` or `no_data`.
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Monitoring {
    pub period_ms: u64,
    pub interval_ms: u64,
    pub samples: Vec<Row>,
    /// `passed`, `failed`, `inconclusive` or `interrupted`.
    pub verdict: String,
    pub healthy: bool,
    pub reason: String,
    /// Cut short by a shutdown: neither healthy nor a reason to roll back.
    pub interrupted: bool,
}

/// Watches a fresh deployment for `monitoring_period`: metrics (against `baseline`) and
/// health checks every `monitoring_interval`, judged by [`Analysis`] with the triggers of
/// `devops.rollback_triggers`. Never passes without data.
pub fn monitor(
    runner: &Runner,
    env: &EnvConfig,
    config: &Config,
    baseline: Option<&Baseline>,
    vars: &[(String, String)],
) -> Monitoring {
    let devops = &config.devops;
    let plan = Plan::monitoring(devops);
    let period_ms = Devops::duration(&devops.monitoring_period, Duration::from_secs(3600)).as_millis() as u64;
    let interval_ms = plan.interval.as_millis() as u64;
    let done = |verdict: &str, reason: String, samples: Vec<Row>| Monitoring {
        period_ms,
        interval_ms,
        samples,
        verdict: verdict.to_owned(),
        healthy: verdict == "passed",
        reason,
        interrupted: verdict == "interrupted",
    };
    let spec = match env.metrics.as_ref().map(MetricsSpec::from_value).transpose() {
        Ok(spec) => spec,
        Err(e) => {
            return done("inconclusive", format!("`environments.{}.metrics` cannot be used: {e}", env.name), Vec::new());
        }
    };
    let analysis_spec = match AnalysisSpec::for_environment(config, &env.name) {
        Ok(spec) => spec,
        Err(e) => return done("inconclusive", e, Vec::new()),
    };
    let thresholds = Thresholds::new(&devops.rollback_triggers, analysis_spec.as_ref());
    let mut analysis = Analysis::new(plan, thresholds, spec.as_ref(), baseline);
    let started = Instant::now();
    let check_dir = env.check_dir(&runner.workspace);
    let mut interrupted = false;
    let verdict = analysis.run(
        |_| Measurement {
            metrics: spec.as_ref().map(|spec| metrics::sample(runner, spec, vars)),
            health: (!env.health_checks.is_empty()).then(|| {
                let (results, failure) = run_checks(runner, "monitor", &env.health_checks, &check_dir, vars);
                Health {
                    passed: failure.is_none(),
                    detail: failure.unwrap_or_else(|| format!("{} health checks passed", results.len())),
                }
            }),
        },
        |due| {
            while started.elapsed() < due {
                if runner.abort.load(std::sync::atomic::Ordering::SeqCst) {
                    interrupted = true;
                    return false;
                }
                std::thread::sleep((due - started.elapsed().min(due)).min(Duration::from_millis(100)));
            }
            true
        },
    );
    let rows = analysis
        .records()
        .iter()
        .map(|record| Row {
            at_ms: plan.due(record.index).as_millis() as u64,
            outcome: serde_json::to_value(record.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            detail: runner.secrets.mask(&record.detail),
        })
        .collect();
    let reason = runner.secrets.mask(verdict.text());
    match verdict {
        _ if interrupted => done("interrupted", format!("monitoring interrupted by shutdown: {reason}"), rows),
        Verdict::Passed { .. } => done("passed", reason, rows),
        Verdict::Failed { .. } => done("failed", reason, rows),
        Verdict::Inconclusive { .. } | Verdict::Continue => done("inconclusive", reason, rows),
    }
}

/// A baseline for the analysis: one metrics sample taken before the deploy.
pub fn baseline(runner: &Runner, env: &EnvConfig, vars: &[(String, String)]) -> Option<Baseline> {
    let spec = MetricsSpec::from_value(env.metrics.as_ref()?).ok()?;
    Some(Baseline::new(metrics::sample(runner, &spec, vars)))
}

/// What a rollback did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    pub environment: String,
    pub from: Option<String>,
    pub restored: Option<String>,
    pub success: bool,
    pub detail: String,
    pub health: Vec<CheckResult>,
    pub steps: Vec<StepResult>,
}

/// Restores the last good release (skipping bad ones) and verifies it.
pub fn rollback(runner: &Runner, env: &EnvConfig, vars: &[(String, String)], migrated: bool) -> RollbackReport {
    let mut report = RollbackReport { environment: env.name.clone(), ..RollbackReport::default() };
    if let Some(local) = env.local(&runner.workspace) {
        report.from = local.live_dir();
        if let Some(live) = &report.from {
            let _ = local.mark_bad(live);
        }
        match local.rollback_target() {
            Some(target) => {
                if let Err(e) = local.switch(&target.dir) {
                    report.detail = format!("cannot switch back to {}: {e}", target.dir);
                    return report;
                }
                report.restored = Some(target.version.clone());
            }
            None => {
                // The first release of an environment: rolling back takes it down.
                let _ = std::fs::remove_file(local.live_link());
                report.success = true;
                report.detail = "no earlier good release: the environment was taken back to its empty state".to_owned();
                return report;
            }
        }
    } else {
        let cwd = env.path.as_ref().map(|p| runner.workspace.join(p));
        if migrated && let Some((down, timeout)) = env.command("migrate_down") {
            report.steps.push(runner.run("migrate-down", &down, cwd.as_deref(), timeout, vars));
        }
        let Some((command, timeout)) = env.command("rollback") else {
            report.detail = format!("`environments.{}.commands.rollback` is not set", env.name);
            return report;
        };
        let step = runner.run("rollback", &command, cwd.as_deref(), timeout, vars);
        let ok = step.success;
        report.detail = step.summary();
        report.steps.push(step);
        if !ok {
            return report;
        }
        report.restored = Some("previous release".to_owned());
    }
    let (health, failure) =
        run_checks(runner, "rollback-health", &env.health_checks, &env.check_dir(&runner.workspace), vars);
    report.health = health;
    report.success = failure.is_none();
    report.detail = failure.unwrap_or_else(|| {
        format!("restored {} and its health checks pass", report.restored.clone().unwrap_or_default())
    });
    report
}
