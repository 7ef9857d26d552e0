//! Deploying a release to an environment, watching it, and rolling it back.
//!
//! Two providers:
//! - `local` keeps releases on disk and switches symlinks (see `exec::local`): `recreate`
//!   (`releases/<version>/`, `current`) or `blue-green` (slots, `active`, the idle slot is
//!   health-checked before the switch). `keep_releases` old releases are kept.
//! - `command` runs the configured commands with a strategy: `direct` (one `deploy`),
//!   `rolling` (`deploy` once per batch, each batch verified before the next), `canary`
//!   (`deploy`, then `set_weight` through `canary_steps` with an analysis after each step,
//!   then `promote`) and `blue-green` (`deploy` to the idle side, check it, `switch`, keep
//!   the old side for an instant switch back).
//!
//! Every step is written to the rollout [`Journal`] before it runs, so a pause (an
//! inconclusive analysis) can resume exactly where it stopped and an interrupted run can be
//! undone. A failed step undoes what the rollout did: traffic back (`set_weight 0`, a switch
//! back, or `rollback`), then `migrate_down` when the deploy ran `migrate` (code first, so the
//! new code never runs on the old schema).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::analysis::{Analysis, AnalysisSpec, Baseline, Health, Measurement, Plan, Thresholds, Verdict};
use super::journal::Journal;
use crate::config::Config;
use crate::environment::record::{
    self, CheckNote, Deployment, Event, EventKind, Provenance, Record, RecordError, ReleaseRef, Status, label,
};
use crate::exec::checks::{CheckResult, CheckSpec, run_check};
use crate::exec::command::{Runner, StepResult};
use crate::exec::metrics::{self, MetricsSpec};
use crate::rollout::local::{LocalEnv, Strategy};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};

/// One environment from the config.
/// An environment the config does not define or defines wrongly, or a command of it that
/// is not set or failed. Each names the config file or the step's log.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{config} has no `environments.{name}`")]
    Missing { config: String, name: String },
    #[error("`environments.{name}` in {config}: {source}")]
    Invalid { config: String, name: String, source: serde_json::Error },
    /// A setting the schema lets through but the provider cannot carry out.
    #[error("`environments.{name}` in {config}: {why}")]
    Unsupported { config: String, name: String, why: String },
    #[error("`environments.{env}.commands.{command}` is not set in {config}")]
    NoCommand { config: String, env: String, command: String },
    /// The command ran and failed: its step's summary, which names the log.
    #[error("{summary}")]
    Failed { summary: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnvConfig {
    #[serde(skip)]
    pub name: String,
    /// The config file that defines it, as messages name it.
    #[serde(skip)]
    pub config: String,
    /// The runtime directory (`paths.runtime`), relative to the workspace.
    #[serde(skip)]
    pub runtime: String,
    pub provider: Provider,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub requires_approval: bool,
    #[serde(default)]
    pub keep_releases: Option<usize>,
    #[serde(default)]
    pub batches: Option<u32>,
    #[serde(default)]
    pub canary_steps: Vec<u32>,
    #[serde(default)]
    pub commands: BTreeMap<String, CommandSpec>,
    #[serde(default)]
    pub health_checks: Vec<CheckSpec>,
    /// Blue-green (`command`): checks of the idle side before the switch; default the
    /// health checks. Both run with `OPSFLOW_SLOT` naming the idle side.
    #[serde(default)]
    pub preview_checks: Vec<CheckSpec>,
    /// Blue-green: the address of each slot (`blue`, `green`), which `{slot_url}` in a
    /// check's URL stands for, so that a check reaches the idle slot before the switch.
    #[serde(default)]
    pub slot_urls: BTreeMap<String, String>,
    #[serde(default)]
    pub smoke_tests: Vec<CheckSpec>,
    /// `metrics`: where the figures come from, read with the environment.
    #[serde(skip)]
    pub metrics: Option<MetricsSpec>,
    /// `analysis`: how the analysis after a canary step or rolling batch runs, read with the
    /// environment.
    #[serde(skip)]
    pub analysis: Option<AnalysisSpec>,
    /// When deploys may start (`deploy_window`); none: at any time.
    #[serde(default)]
    pub deploy_window: Option<crate::environment::window::DeployWindows>,
    /// How long a deploy waits after its approval (`wait_timer`).
    #[serde(default, with = "crate::duration::duration_text::option")]
    pub wait_timer: Option<Duration>,
    /// `ssh`: the hosts, in order (`user@host:port` or an object), read and checked at load.
    #[serde(default)]
    pub hosts: Vec<super::ssh::HostSpec>,
    /// `ssh`: how the `ssh` client connects.
    #[serde(default)]
    pub ssh_options: super::ssh::SshOptions,
    /// `ssh`: directories and files under `<path>/shared/` linked into every release.
    #[serde(default)]
    pub shared_dirs: Vec<String>,
    #[serde(default)]
    pub shared_files: Vec<String>,
    /// `ssh`: run on each host (in its live release) after its `current` link switched,
    /// unless the host has its own.
    #[serde(default)]
    pub restart: Option<CommandSpec>,
    /// `ssh`: the `project` of the config, for the default path `/srv/<project>`.
    #[serde(skip)]
    pub project: String,
}

/// How an environment is deployed to: a closed set, so that a new provider is a variant whose
/// every missing case the compiler names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Releases in directories on this machine, switched by symlinks (`rollout::local`).
    Local,
    /// The environment's own `commands`.
    Command,
    /// Release directories and a `current` link on remote hosts, driven through the OpenSSH
    /// client (`rollout::ssh`).
    Ssh,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Command => "command",
            Provider::Ssh => "ssh",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of an environment's `commands`: a command line, or `{run, timeout, cwd}`. The timeout
/// is read with the config; a value that is not a duration is an error, not "no timeout".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub run: String,
    pub timeout: Option<Duration>,
    pub cwd: Option<String>,
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CommandSpec, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            run: String,
            #[serde(default, deserialize_with = "crate::duration::duration_text::option::deserialize")]
            timeout: Option<Duration>,
            #[serde(default)]
            cwd: Option<String>,
        }
        match Value::deserialize(deserializer)? {
            Value::String(run) => Ok(CommandSpec { run, timeout: None, cwd: None }),
            Value::Object(spec) => {
                let Full { run, timeout, cwd } =
                    serde_json::from_value(Value::Object(spec)).map_err(serde::de::Error::custom)?;
                Ok(CommandSpec { run, timeout, cwd })
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a command line or {{\"run\": ..., \"timeout\": ...}}, found {other}"
            ))),
        }
    }
}

/// Releases a `local` environment keeps when `keep_releases` is not set.
pub const DEFAULT_KEEP_RELEASES: usize = 5;

/// Every environment of the config, each read once, when the workspace loads the config
/// (`Workspace::open`): every user asks here (`Workspace::environment`), so all of them see the
/// same typed value, and an environment that cannot be read is one problem, at its key, that
/// makes the config invalid.
#[derive(Debug, Clone, Default)]
pub struct Environments {
    /// The config file, as messages name it.
    config: String,
    /// In the file's order.
    read: Vec<EnvConfig>,
}

impl Environments {
    /// Reads each environment of `config` (whose text is `text`) as a deployment reads it, so
    /// that what a deployment would refuse (a metrics block without a source, an analysis of 0
    /// measurements) is a problem of the config now, at its key, instead of an inconclusive
    /// analysis later. The problems go into `problems`; the environments read are returned.
    pub fn read(config: &Config, text: &str, problems: &mut Vec<Diagnostic>) -> Environments {
        let label = config.label.as_str();
        let mut read = Vec::new();
        for (name, env) in &config.environments {
            let pointer = format!("/environments/{}", name.replace('~', "~0").replace('/', "~1"));
            let mut refuse = |pointer: String, why: String| {
                problems.push(Diagnostic::new(label, Kind::Config, why).pointer(pointer).locate_in(text));
            };
            // A deploy window is read here first, so that one it cannot read is refused at its own
            // key, saying what is wrong with it, once.
            let window = env.get("deploy_window").map(crate::environment::window::DeployWindows::from_value);
            if let Some(Err(why)) = &window {
                refuse(format!("{pointer}/deploy_window"), format!("`environments.{name}.deploy_window`: {why}"));
            }
            let typed = match EnvConfig::load(config, name) {
                Err(_) if matches!(window, Some(Err(_))) => None,
                // The diagnostic names the file already.
                Err(EnvError::Invalid { name, source, .. }) => {
                    refuse(pointer.clone(), format!("`environments.{name}`: {source}"));
                    None
                }
                Err(why) => {
                    refuse(pointer.clone(), why.to_string());
                    None
                }
                Ok(typed) => Some(typed),
            };
            let metrics = env.get("metrics").map(MetricsSpec::from_value).transpose();
            if let Err(why) = &metrics {
                refuse(format!("{pointer}/metrics"), why.to_string());
            }
            let analysis = env.get("analysis").map(AnalysisSpec::from_value).transpose();
            if let Err(why) = &analysis {
                refuse(format!("{pointer}/analysis"), why.to_string());
            }
            if let (Some(mut typed), Ok(metrics), Ok(analysis)) = (typed, metrics, analysis) {
                typed.metrics = metrics;
                typed.analysis = analysis;
                read.push(typed);
            }
        }
        Environments { config: config_file(config), read }
    }

    /// The environment `name`, as read when the config loaded.
    pub fn get(&self, name: &str) -> Result<&EnvConfig, EnvError> {
        self.read.iter().find(|env| env.name == name).ok_or_else(|| EnvError::Missing {
            config: if self.config.is_empty() { "the config".to_owned() } else { self.config.clone() },
            name: name.to_owned(),
        })
    }

    /// Every environment, in the config file's order.
    pub fn iter(&self) -> impl Iterator<Item = &EnvConfig> {
        self.read.iter()
    }
}

/// The config file as an environment's messages name it.
fn config_file(config: &Config) -> String {
    if config.label.is_empty() { "the config".to_owned() } else { config.label.clone() }
}

impl EnvConfig {
    /// Reads the environment `name` of `config`; only [`Environments::read`] does, once per load.
    fn load(config: &Config, name: &str) -> Result<EnvConfig, EnvError> {
        let file = config_file(config);
        let raw = config
            .environments
            .get(name)
            .ok_or_else(|| EnvError::Missing { config: file.clone(), name: name.to_owned() })?;
        let mut env: EnvConfig = serde_json::from_value(raw.clone()).map_err(|source| EnvError::Invalid {
            config: file.clone(),
            name: name.to_owned(),
            source,
        })?;
        env.name = name.to_owned();
        env.config = file;
        env.runtime = config.paths.runtime.clone();
        env.project = config.project.clone().unwrap_or_default();
        if env.provider == Provider::Ssh {
            super::ssh::check_config(&env).map_err(|why| EnvError::Unsupported {
                config: env.config.clone(),
                name: name.to_owned(),
                why,
            })?;
        }
        Ok(env)
    }

    /// The strategy by the names of seed 003's `deployment_method`, one name for every report:
    /// the local provider's `recreate` replaces the release at once, which is `direct`.
    pub fn method(&self) -> &'static str {
        match self.strategy() {
            "blue-green" => "blue-green",
            "canary" => "canary",
            "rolling" => "rolling",
            _ => "direct",
        }
    }

    pub fn strategy(&self) -> &str {
        self.strategy.as_deref().unwrap_or(match self.provider {
            Provider::Local | Provider::Ssh => "recreate",
            Provider::Command => "direct",
        })
    }

    /// A command from `commands`, as (command line, timeout).
    pub fn command(&self, name: &str) -> Option<(String, Option<Duration>)> {
        self.commands.get(name).map(|spec| (spec.run.clone(), spec.timeout))
    }

    /// A `local` environment's directory, relative to the workspace: `path`, else
    /// `.opsflow/envs/<name>`.
    pub fn local_dir(&self) -> Option<String> {
        (self.provider == Provider::Local)
            .then(|| self.path.clone().unwrap_or_else(|| format!(".opsflow/envs/{}", self.name)))
    }

    pub fn local(&self, workspace: &Path) -> Option<LocalEnv> {
        let root = workspace.join(self.local_dir()?);
        let strategy = if self.strategy() == "blue-green" { Strategy::BlueGreen } else { Strategy::Recreate };
        Some(LocalEnv::new(workspace.to_owned(), root, strategy))
    }

    /// Where checks run: for `local`, the live release's directory (through `current` for
    /// `recreate`, `active` for `blue-green`, so a check reads the same files whatever the
    /// strategy); else the environment's path or the workspace.
    pub fn check_dir(&self, workspace: &Path) -> PathBuf {
        match self.provider {
            Provider::Local => self.local(workspace).map_or_else(|| workspace.to_owned(), |local| local.live_link()),
            // An `ssh` environment's path is on its hosts; its local checks run in the workspace.
            Provider::Ssh => workspace.to_owned(),
            Provider::Command => self.path.as_ref().map_or_else(|| workspace.to_owned(), |p| workspace.join(p)),
        }
    }

    /// The file of the deploy lock of this environment.
    pub fn lock_path(&self, ws: &Workspace) -> PathBuf {
        let local = self.local(&ws.root).map(|l| l.root);
        crate::rollout::deploy_lock::lock_path(&ws.path(&ws.config.paths.runtime), &self.name, local.as_deref())
    }

    /// The record of this environment (`environment::record`): in a `local` environment's
    /// directory, else `<runtime>/envs/<name>/releases.json`.
    pub fn record_path(&self, ws: &Workspace) -> PathBuf {
        match self.local(&ws.root) {
            Some(local) => local.record_path(),
            None => ws.path(&ws.config.paths.runtime).join("envs").join(&self.name).join("releases.json"),
        }
    }

    /// Every deployment recorded for this environment, oldest first.
    pub fn history(&self, ws: &Workspace) -> Result<Record, RecordError> {
        Record::load(&self.record_path(ws))
    }

    /// The deployment live now: for `local`, the good release the live link points at; for
    /// `command`, the newest good one.
    pub fn live(&self, ws: &Workspace, record: &Record) -> Option<Deployment> {
        match self.local(&ws.root) {
            Some(local) => local.live_dir().and_then(|dir| record.good_in(&dir).cloned()),
            None => record.newest_good().cloned(),
        }
    }

    /// Changes the record under one read and one atomic write, first moving to its archive
    /// what nothing but `opsflow history` needs any more ([`Record::compact`]). When the
    /// archive cannot be written the change is still saved, with the record left whole.
    pub fn change_record<T>(&self, ws: &Workspace, change: impl FnOnce(&mut Record) -> T) -> Result<T, RecordError> {
        let path = self.record_path(ws);
        let mut record = Record::load(&path)?;
        let out = change(&mut record);
        let before = (record.deployments.len() > record::RECENT + record::SLACK).then(|| record.clone());
        let local = self.local(&ws.root);
        let exists = |d: &Deployment| local.as_ref().is_none_or(|local| local.root.join(&d.dir).is_dir());
        if let Some(archived) = record.compact(exists)
            && let Err(e) = record::append_archive(&ws.root, &path, &archived)
        {
            tracing::warn!(
                "cannot append to {}: {e}; the record keeps its old deployments",
                record::archive_path(&path).display()
            );
            record = before.expect("a record that was compacted was large");
        }
        record.save(&ws.root, &path)?;
        Ok(out)
    }

    /// The whole history for `opsflow history`: the record and its archive, and the archive's
    /// problem when it cannot be read whole.
    pub fn full_history(&self, ws: &Workspace) -> Result<(Record, Option<String>), RecordError> {
        record::load_all(&self.record_path(ws))
    }

    /// Records a deployment that starts now (`deploying` until it is marked good or bad),
    /// with the release it replaces. It must be written before anything changes.
    pub(super) fn record_deploying(
        &self,
        ws: &Workspace,
        journal: &Journal,
        dir: &str,
        provenance: &Provenance,
    ) -> Result<(), RecordError> {
        let local = self.local(&ws.root);
        self.change_record(ws, |record| {
            let replaced = match &local {
                Some(local) => local.live_dir().and_then(|live| record.good_in(&live)).map(Deployment::release),
                None => record.newest_good().map(Deployment::release),
            };
            let deployment = Deployment {
                version: journal.version.clone(),
                unit_id: journal.unit_id.clone(),
                dir: dir.to_owned(),
                status: Status::Deploying,
                deployed_at: crate::time::now_rfc3339(),
                ended_at: None,
                run_id: journal.run_id.clone(),
                migrated: false,
                provenance: provenance.clone(),
                replaced,
                reason: None,
                last_check: None,
                hosts: Default::default(),
                pruned: false,
            };
            let release = deployment.release();
            match &local {
                Some(local) => local.record(record, deployment),
                // An `ssh` release uploaded again into its directory replaces the one there.
                None if self.provider == Provider::Ssh => record.push_replacing(deployment),
                None => record.deployments.push(deployment),
            }
            let by = provenance.approved_by.clone().unwrap_or_default();
            record.events.push(Event::new(EventKind::DeployStarted, &release, &journal.run_id, "").by(by));
        })
    }

    /// Marks the deployment of `run_id` good or bad and records the event. A record that
    /// cannot be written is logged and returned: the caller names it in its outcome.
    pub fn mark(&self, ws: &Workspace, run_id: &str, status: Status, reason: &str) -> Result<(), RecordError> {
        let result = self.change_record(ws, |record| {
            let now = crate::time::now_rfc3339();
            let Some(d) = record.deployments.iter_mut().rev().find(|d| d.run_id == run_id) else { return };
            let was = d.status;
            d.status = status;
            d.ended_at.get_or_insert(now);
            if status == Status::Bad && !reason.is_empty() {
                d.reason = Some(reason.to_owned());
            }
            let release = d.release();
            let event = match (was, status) {
                (Status::Deploying, Status::Good) => Some(EventKind::Deployed),
                (Status::Deploying, Status::Bad) => Some(EventKind::Failed),
                _ => None,
            };
            if let Some(event) = event {
                record.events.push(Event::new(event, &release, run_id, reason));
            }
        });
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        result
    }

    /// Notes what the last checks of the deployment of `run_id` found.
    pub fn note_check(&self, ws: &Workspace, run_id: &str, passed: bool, summary: &str) -> Result<(), RecordError> {
        let result = self.change_record(ws, |record| {
            if let Some(d) = record.deployments.iter_mut().rev().find(|d| d.run_id == run_id) {
                d.last_check = Some(CheckNote { at: crate::time::now_rfc3339(), passed, summary: summary.to_owned() });
            }
        });
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        result
    }

    /// Records an event of the environment (a pause, a decision, a rollback).
    pub fn log_event(&self, ws: &Workspace, event: Event) -> Result<(), RecordError> {
        let result = self.change_record(ws, |record| record.events.push(event));
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        result
    }

    /// Records in the history that the deployment of `run_id` ran `migrate`, so that a later
    /// rollback (from a human's R17, without the rollout's journal) runs `migrate_down`.
    fn note_migrated(&self, ws: &Workspace, run_id: &str) -> Result<(), RecordError> {
        self.change_record(ws, |record| {
            if let Some(d) = record.deployments.iter_mut().rev().find(|d| d.run_id == run_id) {
                d.migrated = true;
            }
        })
    }
}

/// The analysis after one canary step, rolling batch or the monitoring period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageAnalysis {
    /// `canary step 2 of 3 (50%)`, `batch 1 of 4`.
    pub stage: String,
    /// `passed`, `failed`, `inconclusive` or `interrupted`.
    pub verdict: String,
    pub reason: String,
    pub samples: Vec<Row>,
}

/// What a deployment did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployReport {
    pub environment: String,
    pub provider: String,
    pub strategy: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// The release that was live before, with its unit: `UNIT-003 1.0.1`.
    pub previous_release: Option<String>,
    /// Where the release went (relative to the environment for `local`, the side for
    /// blue-green).
    pub target: String,
    pub success: bool,
    pub failed_step: Option<String>,
    pub reason: String,
    pub restored_previous: bool,
    pub steps: Vec<StepResult>,
    pub health: Vec<CheckResult>,
    pub smoke: Vec<CheckResult>,
    pub migrated: bool,
    /// One entry per canary step or rolling batch that was analysed.
    pub analyses: Vec<StageAnalysis>,
    /// The traffic weight at the end, in percent (canary, rolling).
    pub weight: u32,
    /// Set when the rollout paused for a human: (stage, reason).
    pub paused: Option<(String, String)>,
    /// Releases removed by `keep_releases`.
    pub pruned: Vec<String>,
    /// Set when the deploy lock was taken over from a holder that had died.
    pub stale_lock: Option<String>,
    /// Changes of the environment's record that could not be written, each naming the file.
    pub record_errors: Vec<String>,
    /// What undoing a failed rollout did, when it had changed the environment.
    pub rollback: Option<RollbackReport>,
    /// Every step as it happened (UTC time, action, status), for the deployment report.
    pub timeline: Vec<TimelineEvent>,
    /// The metrics sample taken before anything changed.
    pub baseline: Option<metrics::Sample>,
}

impl DeployReport {
    /// Whether the new release took traffic and still does: it was switched in (or its
    /// commands ran) and nothing switched the previous release back.
    pub fn switched_in(&self) -> bool {
        (self.success || self.paused.is_some()) && !self.restored_previous
    }
}

/// One row of a deployment's timeline (seed 000's "Deployment Timeline").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub time: String,
    pub action: String,
    pub status: String,
}

/// The time of day now, `HH:MM:SS` UTC.
pub fn clock() -> String {
    let now = crate::time::now_rfc3339();
    now.get(11..19).unwrap_or(&now).to_owned()
}

impl DeployReport {
    /// The report of a rollout as its journal has it so far.
    fn start(rollout: &Rollout<'_>) -> DeployReport {
        let env = rollout.env;
        DeployReport {
            environment: env.name.clone(),
            provider: env.provider.to_string(),
            strategy: env.strategy().to_owned(),
            version: rollout.journal.version.clone(),
            previous_version: rollout.journal.previous_version.clone(),
            previous_release: rollout
                .journal
                .previous_version
                .as_deref()
                .map(|v| label(&rollout.journal.previous_unit, v)),
            baseline: rollout.journal.baseline.clone(),
            migrated: rollout.journal.migrated,
            weight: rollout.journal.weight,
            success: true,
            timeline: vec![TimelineEvent {
                time: clock(),
                action: format!("Started deployment of {} to {}", rollout.journal.version, env.name),
                status: "-".to_owned(),
            }],
            ..DeployReport::default()
        }
    }

    /// Notes a step in the timeline, now.
    pub fn note(&mut self, action: impl Into<String>, status: &str) {
        self.timeline.push(TimelineEvent { time: clock(), action: action.into(), status: status.to_owned() });
    }

    fn checked(&mut self, kind: &str, results: &[CheckResult]) {
        for result in results {
            self.note(format!("{kind} `{}`", result.name), if result.passed { "PASS" } else { "FAIL" });
        }
    }

    pub(super) fn set_health(&mut self, health: Vec<CheckResult>) {
        self.checked("Health check", &health);
        self.health = health;
    }

    pub(super) fn extend_health(&mut self, health: Vec<CheckResult>) {
        self.checked("Health check", &health);
        self.health.extend(health);
    }

    pub(super) fn set_smoke(&mut self, smoke: Vec<CheckResult>) {
        self.checked("Smoke test", &smoke);
        self.smoke = smoke;
    }

    pub(super) fn fail(&mut self, step: &str, reason: String) {
        self.success = false;
        self.failed_step = Some(step.to_owned());
        self.note(format!("{step} failed"), "FAILED");
        self.reason = reason;
    }

    /// The log of the failed step, if it ran a command.
    pub fn failed_log(&self) -> String {
        let check = self.health.iter().chain(&self.smoke).find(|c| !c.passed).map(|c| c.log.clone());
        let step = self.steps.iter().rev().find(|s| !s.success).map(|s| s.log.clone());
        check.or(step).unwrap_or_default()
    }
}

pub(super) fn run_checks(
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

/// The checks of what an environment runs now: on every host over ssh for `ssh`, else here
/// in `cwd`.
fn live_checks_run(
    runner: &Runner,
    env: &EnvConfig,
    prefix: &str,
    specs: &[CheckSpec],
    cwd: &Path,
    vars: &[(String, String)],
) -> (Vec<CheckResult>, Option<String>) {
    match env.provider {
        Provider::Ssh => super::ssh::live_health(runner, env, prefix, specs, vars),
        Provider::Local | Provider::Command => run_checks(runner, prefix, specs, cwd, vars),
    }
}

/// A rollout in progress: what it deploys, where, and its journal.
pub struct Rollout<'a> {
    pub ws: &'a Workspace,
    pub runner: &'a Runner,
    pub env: &'a EnvConfig,
    /// `OPSFLOW_ENV`, `OPSFLOW_VERSION` and the like.
    pub vars: Vec<(String, String)>,
    pub journal: Journal,
    /// Where the release comes from, for the environment's record.
    pub provenance: Provenance,
    /// Asked right before traffic moves to the new release (the switch, the deploy command
    /// that replaces what serves, the promotion): whether the decision that let it through
    /// still holds. `Err` says why not, and nothing moves.
    pub recheck: Option<&'a dyn Fn() -> Result<(), String>>,
}

/// The failed step of a rollout stopped because its approval no longer holds.
pub const APPROVAL_STEP: &str = "approval";

impl Rollout<'_> {
    /// Whether the decision that let the release through still holds, right before traffic
    /// moves.
    pub(super) fn still_let_through(&self) -> Result<(), String> {
        self.recheck.map_or(Ok(()), |recheck| recheck())
    }

    /// Marks this rollout's deployment in the record; a failed write is named in the report.
    /// A good one also notes the checks it passed.
    pub(super) fn mark(&self, report: &mut DeployReport, status: Status, reason: &str) {
        if let Err(e) = self.env.mark(self.ws, &self.journal.run_id, status, reason) {
            report.record_errors.push(e.to_string());
        }
        if status == Status::Good {
            let count = |results: &[CheckResult], what: &str| format!("{} {what}", results.len());
            let summary = format!(
                "{} and {} passed when it was deployed",
                count(&report.health, "health checks"),
                count(&report.smoke, "smoke tests")
            );
            if let Err(e) = self.env.note_check(self.ws, &self.journal.run_id, true, &summary) {
                report.record_errors.push(e.to_string());
            }
        }
    }

    /// Sets what was live before this rollout, from the record.
    pub(super) fn set_previous(&mut self, report: &mut DeployReport, previous: Option<&Deployment>) {
        report.previous_version = previous.map(|d| d.version.clone());
        report.previous_release = previous.map(Deployment::label);
        self.journal.previous_version = report.previous_version.clone();
        self.journal.previous_unit = previous.map(|d| d.unit_id.clone()).unwrap_or_default();
        if let Some(previous) = &report.previous_version {
            self.vars.push(("OPSFLOW_PREVIOUS_VERSION".into(), previous.clone()));
        }
    }

    pub(super) fn save(&mut self) {
        if let Err(e) = self.journal.save(self.ws) {
            tracing::error!("{e}");
        }
    }

    fn cwd(&self) -> Option<PathBuf> {
        self.env.path.as_ref().map(|p| self.ws.root.join(p))
    }

    fn baseline(&self) -> Option<Baseline> {
        self.journal.baseline.clone().map(Baseline::new)
    }

    /// Runs `commands.<name>` as step `step`; the journal notes first that the environment
    /// may change. `Err` carries the reason.
    fn command(
        &mut self,
        report: &mut DeployReport,
        name: &str,
        step: &str,
        extra: &[(String, String)],
    ) -> Result<(), EnvError> {
        let Some((command, timeout)) = self.env.command(name) else {
            return Err(EnvError::NoCommand {
                config: self.env.config.clone(),
                env: self.env.name.clone(),
                command: name.to_owned(),
            });
        };
        self.journal.changed = true;
        self.save();
        let mut vars = self.vars.clone();
        vars.extend(extra.iter().cloned());
        let cwd = self.cwd();
        let result = self.runner.run(step, &command, cwd.as_deref(), timeout, &vars);
        let ok = result.success;
        let summary = result.summary();
        report.note(format!("Ran `{name}`"), if ok { "SUCCESS" } else { "FAILED" });
        report.steps.push(result);
        if ok { Ok(()) } else { Err(EnvError::Failed { summary }) }
    }
}

/// Deploys `release_dir` with the environment's provider and strategy, from the step the
/// journal says is next (0 for a new rollout).
pub fn deploy(rollout: &mut Rollout<'_>, release_dir: &Path) -> DeployReport {
    let env = rollout.env;
    let mut report = DeployReport::start(rollout);
    rollout.vars.push(("OPSFLOW_RELEASE_DIR".into(), release_dir.to_string_lossy().into_owned()));
    let record = match env.history(rollout.ws) {
        Ok(record) => record,
        Err(e) => {
            report.fail("record", e.to_string());
            return report;
        }
    };
    if let Some(local) = env.local(&rollout.ws.root) {
        deploy_local(rollout, &local, &record, release_dir, &mut report);
    } else if env.provider == Provider::Ssh {
        super::ssh::deploy(rollout, &record, release_dir, &mut report);
    } else {
        if report.previous_version.is_none() {
            rollout.set_previous(&mut report, record.newest_good());
        } else if let Some(previous) = &report.previous_version {
            rollout.vars.push(("OPSFLOW_PREVIOUS_VERSION".into(), previous.clone()));
        }
        deploy_command(rollout, &mut report);
    }
    report
}

/// The checks of one blue-green slot: `{slot_url}` in an `http` check's URL becomes the
/// slot's address from `slot_urls`, so a check can reach the idle slot before the switch.
fn for_slot(env: &EnvConfig, specs: &[CheckSpec], slot: &str) -> Result<Vec<CheckSpec>, String> {
    specs
        .iter()
        .map(|spec| {
            let mut spec = spec.clone();
            if let Some(url) = spec.http.as_mut().filter(|url| url.contains(SLOT_URL)) {
                let Some(address) = env.slot_urls.get(slot) else {
                    return Err(format!(
                        "check `{}` uses `{SLOT_URL}` but `environments.{}.slot_urls.{slot}` is not set in {}",
                        spec.name, env.name, env.config
                    ));
                };
                *url = url.replace(SLOT_URL, address.trim_end_matches('/'));
            }
            Ok(spec)
        })
        .collect()
}

/// `specs` as they check what is live now: `{slot_url}` becomes the live blue-green slot's
/// address (the side the live link points at, or the record's newest good side).
pub fn live_checks(env: &EnvConfig, workspace: &Path, specs: &[CheckSpec]) -> Vec<CheckSpec> {
    if !specs.iter().any(|s| s.http.as_deref().is_some_and(|url| url.contains(SLOT_URL))) {
        return specs.to_vec();
    }
    let side = match env.local(workspace) {
        Some(local) => local.live_dir().map(|dir| side_of(&dir).to_owned()),
        None => Record::load(&workspace.join(&env.runtime).join("envs").join(&env.name).join("releases.json"))
            .ok()
            .and_then(|record| record.newest_good().map(|d| d.dir.clone()))
            .filter(|dir| !dir.is_empty()),
    };
    match side {
        Some(side) => for_slot(env, specs, &side).unwrap_or_else(|_| specs.to_vec()),
        None => specs.to_vec(),
    }
}

/// The placeholder of a blue-green slot's address in a check's URL.
pub const SLOT_URL: &str = "{slot_url}";

/// The side (`blue`, `green`) of a local blue-green slot directory.
fn side_of(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

fn deploy_local(
    rollout: &mut Rollout<'_>,
    local: &LocalEnv,
    record: &Record,
    release_dir: &Path,
    report: &mut DeployReport,
) {
    let env = rollout.env;
    let runner = rollout.runner;
    let version = rollout.journal.version.clone();
    let previous_dir = local.live_dir();
    let previous = previous_dir.as_deref().and_then(|dir| record.good_in(dir));
    rollout.set_previous(report, previous);
    // A live link to a release that is not good (left by an older version of opsflow, or by
    // hand) is not restored when this deploy fails.
    let previous_dir = previous.map(|d| d.dir.clone());
    let vars = rollout.vars.clone();
    let name = match rollout.journal.unit_id.as_str() {
        "" => crate::release::Version::new(version.clone()).bare().to_owned(),
        unit => format!("{unit}/{}", crate::release::Version::new(version.clone()).bare()),
    };
    let dir = match local.stage(&name, release_dir) {
        Ok(dir) => dir,
        Err(e) => return report.fail("stage", format!("cannot copy the release into {}: {e}", local.root.display())),
    };
    report.target = dir.clone();
    report.note(format!("Artifacts deployed to {dir}"), "SUCCESS");
    rollout.journal.slot = Some(dir.clone());
    rollout.journal.previous_slot = previous_dir.clone();
    // The record says a deployment started before anything live changes.
    if let Err(e) = env.record_deploying(rollout.ws, &rollout.journal, &dir, &rollout.provenance) {
        return report.fail("record", format!("{e}; nothing was switched"));
    }
    if local.strategy == Strategy::BlueGreen {
        // Check the idle side before any traffic moves to it.
        let side = side_of(&dir).to_owned();
        let mut vars = vars.clone();
        vars.push(("OPSFLOW_SLOT".into(), side.clone()));
        let preview = if env.preview_checks.is_empty() { &env.health_checks } else { &env.preview_checks };
        let checks = match for_slot(env, preview, &side) {
            Ok(checks) => checks,
            Err(why) => {
                rollout.mark(report, Status::Bad, &why);
                return report.fail("health", why);
            }
        };
        let (health, failure) = run_checks(runner, "health", &checks, &local.root.join(&dir), &vars);
        report.set_health(health);
        if let Some(failure) = failure {
            let why = format!("{failure}; the new side was not switched in");
            rollout.mark(report, Status::Bad, &why);
            return report.fail("health", why);
        }
    }
    if let Err(why) = rollout.still_let_through() {
        let why = format!("{why}; nothing was switched");
        rollout.mark(report, Status::Bad, &why);
        return report.fail(APPROVAL_STEP, why);
    }
    rollout.journal.changed = true;
    rollout.journal.switched = true;
    rollout.save();
    if let Err(e) = local.switch(&dir) {
        let why = format!("cannot switch to {dir}: {e}");
        rollout.mark(report, Status::Bad, &why);
        return report.fail("switch", why);
    }
    report.note(format!("Traffic switched to {dir}"), "SUCCESS");
    let check_dir = env.check_dir(&runner.workspace);
    // Blue-green with preview checks: the health checks run once more on the side now live.
    let health_after_switch = local.strategy == Strategy::Recreate || !env.preview_checks.is_empty();
    if health_after_switch {
        let checks = match local.strategy {
            Strategy::BlueGreen => for_slot(env, &env.health_checks, side_of(&dir)).unwrap_or_default(),
            Strategy::Recreate => env.health_checks.clone(),
        };
        let (health, failure) = run_checks(runner, "health", &checks, &check_dir, &vars);
        report.extend_health(health);
        if let Some(failure) = failure {
            rollout.mark(report, Status::Bad, &failure);
            restore(local, previous_dir.as_deref(), report);
            return report.fail("health", failure);
        }
    }
    let smoke_tests = match local.strategy {
        Strategy::BlueGreen => for_slot(env, &env.smoke_tests, side_of(&dir)),
        Strategy::Recreate => Ok(env.smoke_tests.clone()),
    };
    let (smoke, failure) = match smoke_tests {
        Ok(tests) => run_checks(runner, "smoke", &tests, &check_dir, &vars),
        Err(why) => (Vec::new(), Some(why)),
    };
    report.set_smoke(smoke);
    if let Some(failure) = failure {
        rollout.mark(report, Status::Bad, &failure);
        restore(local, previous_dir.as_deref(), report);
        return report.fail("smoke", failure);
    }
    rollout.mark(report, Status::Good, "");
    let keep = env.keep_releases.unwrap_or(DEFAULT_KEEP_RELEASES);
    let pruned = env.history(rollout.ws).map_err(|e| e.to_string()).and_then(|record| {
        local.prune(&record, keep).map_err(|e| format!("cannot remove old releases of {}: {e}", env.name))
    });
    match pruned {
        Ok(pruned) => report.pruned = pruned,
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Switches back to what was live before a failed deploy; a first deploy takes the live link
/// away, so the environment is as it was and the failed release is never left live.
fn restore(local: &LocalEnv, previous: Option<&str>, report: &mut DeployReport) {
    let restored = match previous {
        Some(previous) => local.switch(previous),
        None => local.take_down(),
    };
    match restored {
        Ok(()) => report.restored_previous = previous.is_some(),
        Err(e) => report.record_errors.push(format!("cannot switch {} back: {e}", local.live_link().display())),
    }
}

/// One canary step or rolling batch: its label, the traffic weight it reaches, and the
/// variables its command gets.
type Stage = (String, u32, Vec<(String, String)>);

/// The stages of a staged strategy.
fn stages(env: &EnvConfig) -> Vec<Stage> {
    match env.strategy() {
        "canary" => {
            let steps = &env.canary_steps;
            steps
                .iter()
                .enumerate()
                .map(|(i, weight)| {
                    (
                        format!("canary step {} of {} ({weight}%)", i + 1, steps.len()),
                        *weight,
                        vec![("OPSFLOW_WEIGHT".to_owned(), weight.to_string())],
                    )
                })
                .collect()
        }
        "rolling" => {
            let batches = env.batches.unwrap_or(1).max(1);
            (1..=batches)
                .map(|batch| {
                    let weight = (100 * batch).div_ceil(batches);
                    (
                        format!("batch {batch} of {batches}"),
                        weight,
                        vec![
                            ("OPSFLOW_BATCH".to_owned(), batch.to_string()),
                            ("OPSFLOW_BATCHES".to_owned(), batches.to_string()),
                            ("OPSFLOW_WEIGHT".to_owned(), weight.to_string()),
                        ],
                    )
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

fn deploy_command(rollout: &mut Rollout<'_>, report: &mut DeployReport) {
    let env = rollout.env;
    let strategy = env.strategy().to_owned();
    let run_id = rollout.journal.run_id.clone();
    if rollout.journal.next_step == 0
        && !rollout.journal.changed
        && let Err(e) = env.record_deploying(rollout.ws, &rollout.journal, "", &rollout.provenance)
    {
        return report.fail("record", format!("{e}; nothing was deployed"));
    }
    if strategy == "blue-green" {
        return deploy_blue_green(rollout, report);
    }
    if strategy == "canary" && env.canary_steps.is_empty() {
        return report.fail("canary", format!("`environments.{}.canary_steps` is empty", env.name));
    }
    let fresh = rollout.journal.next_step == 0 && !rollout.journal.changed;
    if fresh && let Err(why) = rollout.still_let_through() {
        let why = format!("{why}; nothing was deployed");
        rollout.mark(report, Status::Bad, &why);
        return report.fail(APPROVAL_STEP, why);
    }
    if fresh {
        if env.command("migrate").is_some() {
            rollout.journal.migrated = true;
            report.migrated = true;
            if let Err(why) = rollout.command(report, "migrate", "migrate", &[]) {
                return give_up(rollout, report, "migrate", format!("the migration failed: {why}"));
            }
            if let Err(e) = env.note_migrated(rollout.ws, &run_id) {
                report.record_errors.push(e.to_string());
            }
        }
        // Canary: the new version starts with no traffic; each step then moves traffic.
        let first = if strategy == "canary" { vec![("OPSFLOW_WEIGHT".to_owned(), "0".to_owned())] } else { vec![] };
        if strategy != "rolling"
            && let Err(why) = rollout.command(report, "deploy", "deploy", &first)
        {
            return give_up(rollout, report, "deploy", why.to_string());
        }
    }
    let stages = stages(env);
    let check_dir = env.check_dir(&rollout.ws.root);
    for (index, (label, weight, extra)) in stages.iter().enumerate().skip(rollout.journal.next_step) {
        let (command, step) = if strategy == "canary" { ("set_weight", "set-weight") } else { ("deploy", "deploy") };
        if let Err(why) = rollout.command(report, command, step, extra) {
            return give_up(rollout, report, step, format!("{label}: {why}"));
        }
        rollout.journal.weight = *weight;
        report.weight = *weight;
        rollout.save();
        let mut vars = rollout.vars.clone();
        vars.extend(extra.iter().cloned());
        let (health, failure) = run_checks(rollout.runner, "health", &env.health_checks, &check_dir, &vars);
        report.set_health(health);
        if let Some(failure) = failure {
            return give_up(rollout, report, "health", format!("{label}: {failure}"));
        }
        let baseline = rollout.baseline();
        let plan = Plan::step(env.analysis.as_ref(), &rollout.ws.config.devops);
        let judged = analyse(rollout.runner, env, &rollout.ws.config, baseline.as_ref(), &vars, plan, "analysis");
        note_analysis(rollout, report, label, index, &judged);
        match judged.verdict.as_str() {
            "passed" => {}
            "failed" => {
                return give_up(rollout, report, "analysis", format!("{label}: {}", judged.reason));
            }
            // Inconclusive or interrupted: the rollout stays where it is and a human decides.
            _ => {
                report.paused = Some((label.clone(), judged.reason.clone()));
                report.success = false;
                return;
            }
        }
    }
    if strategy == "canary" && env.command("promote").is_some() {
        if let Err(why) = rollout.still_let_through() {
            return give_up(rollout, report, APPROVAL_STEP, format!("{why}; the canary was not promoted"));
        }
        let full = [("OPSFLOW_WEIGHT".to_owned(), "100".to_owned())];
        if let Err(why) = rollout.command(report, "promote", "promote", &full) {
            return give_up(rollout, report, "promote", why.to_string());
        }
        rollout.journal.weight = 100;
        report.weight = 100;
    }
    if strategy == "direct" {
        let (health, failure) = run_checks(rollout.runner, "health", &env.health_checks, &check_dir, &rollout.vars);
        report.set_health(health);
        if let Some(failure) = failure {
            return give_up(rollout, report, "health", failure);
        }
    }
    let (smoke, failure) = run_checks(rollout.runner, "smoke", &env.smoke_tests, &check_dir, &rollout.vars);
    report.set_smoke(smoke);
    if let Some(failure) = failure {
        return give_up(rollout, report, "smoke", failure);
    }
    rollout.mark(report, Status::Good, "");
}

fn other_side(side: &str) -> &'static str {
    if side == "blue" { "green" } else { "blue" }
}

fn deploy_blue_green(rollout: &mut Rollout<'_>, report: &mut DeployReport) {
    let env = rollout.env;
    let run_id = rollout.journal.run_id.clone();
    let live = match env.history(rollout.ws) {
        Ok(record) => record
            .deployments
            .iter()
            .rev()
            .find(|d| d.status == Status::Good && !d.dir.is_empty())
            .map(|d| d.dir.clone()),
        Err(e) => return report.fail("record", e.to_string()),
    };
    let idle = other_side(live.as_deref().unwrap_or("green")).to_owned();
    rollout.journal.slot = Some(idle.clone());
    rollout.journal.previous_slot = live.clone();
    report.target = idle.clone();
    let mut sides = vec![("OPSFLOW_SLOT".to_owned(), idle.clone())];
    if let Some(live) = &live {
        sides.push(("OPSFLOW_PREVIOUS_SLOT".to_owned(), live.clone()));
    }
    let slot = env.change_record(rollout.ws, |record| {
        if let Some(d) = record.deployments.iter_mut().rev().find(|d| d.run_id == run_id) {
            d.dir = idle.clone();
        }
    });
    if let Err(e) = slot {
        report.record_errors.push(e.to_string());
    }
    if env.command("migrate").is_some() {
        rollout.journal.migrated = true;
        report.migrated = true;
        if let Err(why) = rollout.command(report, "migrate", "migrate", &sides) {
            return give_up(rollout, report, "migrate", format!("the migration failed: {why}"));
        }
        if let Err(e) = env.note_migrated(rollout.ws, &run_id) {
            report.record_errors.push(e.to_string());
        }
    }
    if let Err(why) = rollout.command(report, "deploy", "deploy", &sides) {
        return give_up(rollout, report, "deploy", format!("{why}; the {idle} side was not switched in"));
    }
    let mut vars = rollout.vars.clone();
    vars.extend(sides.iter().cloned());
    let check_dir = env.check_dir(&rollout.ws.root);
    let preview = if env.preview_checks.is_empty() { &env.health_checks } else { &env.preview_checks };
    let preview = match for_slot(env, preview, &idle) {
        Ok(checks) => checks,
        Err(why) => return give_up(rollout, report, "health", why),
    };
    let (health, failure) = run_checks(rollout.runner, "preview", &preview, &check_dir, &vars);
    report.set_health(health);
    if let Some(failure) = failure {
        // Nothing was switched: the live side never saw the new release.
        return give_up(rollout, report, "health", format!("{failure}; the {idle} side was not switched in"));
    }
    if let Err(why) = rollout.still_let_through() {
        // The idle side was deployed and checked; the live side never saw it.
        return give_up(rollout, report, APPROVAL_STEP, format!("{why}; the {idle} side was not switched in"));
    }
    rollout.journal.switched = true;
    if let Err(why) = rollout.command(report, "switch", "switch", &sides) {
        return give_up(rollout, report, "switch", why.to_string());
    }
    let (health, smoke) = match (for_slot(env, &env.health_checks, &idle), for_slot(env, &env.smoke_tests, &idle)) {
        (Ok(health), Ok(smoke)) => (health, smoke),
        (Err(why), _) | (_, Err(why)) => return give_up(rollout, report, "health", why),
    };
    let (health, failure) = run_checks(rollout.runner, "health", &health, &check_dir, &vars);
    report.extend_health(health);
    if let Some(failure) = failure {
        return give_up(rollout, report, "health", failure);
    }
    let (smoke, failure) = run_checks(rollout.runner, "smoke", &smoke, &check_dir, &vars);
    report.set_smoke(smoke);
    if let Some(failure) = failure {
        return give_up(rollout, report, "smoke", failure);
    }
    rollout.mark(report, Status::Good, "");
}

/// Ends a paused rollout that was told to proceed but cannot (its release no longer matches
/// its checksums): what it changed is undone as after a failed step, the release is marked
/// bad, and `step` and `reason` say why. Only `command` rollouts pause before they finish.
pub fn abandon(rollout: &mut Rollout<'_>, step: &str, reason: String) -> DeployReport {
    let mut report = DeployReport::start(rollout);
    if let Some(previous) = &report.previous_version {
        rollout.vars.push(("OPSFLOW_PREVIOUS_VERSION".into(), previous.clone()));
    }
    give_up(rollout, &mut report, step, reason);
    report
}

/// Ends a failed `command` rollout: undoes it, marks the release bad, and records the failed
/// step and why.
fn give_up(rollout: &mut Rollout<'_>, report: &mut DeployReport, step: &str, reason: String) {
    undo(rollout, report);
    rollout.mark(report, Status::Bad, &reason);
    report.fail(step, reason);
}

/// Undoes what a `command` rollout did, as its journal records it: traffic back first, then
/// `migrate_down`. Sets `restored_previous` when the traffic went back.
fn undo(rollout: &mut Rollout<'_>, report: &mut DeployReport) {
    let journal = &rollout.journal;
    let undone = undo_steps(rollout.runner, rollout.env, journal, &rollout.vars);
    report.restored_previous = undone.restored;
    report.steps.extend(undone.steps.iter().cloned());
    if !journal.changed {
        return;
    }
    // Verified the way every rollback is: the health checks of what serves now.
    let mut rollback = RollbackReport {
        environment: rollout.env.name.clone(),
        from: Some(journal.version.clone()),
        undone: Some((journal.unit_id.clone(), journal.version.clone())),
        undone_release: Some(label(&journal.unit_id, &journal.version)),
        restored: undone.restored.then(|| match &journal.previous_version {
            Some(version) => label(&journal.previous_unit, version),
            None => "the previous release".to_owned(),
        }),
        success: false,
        detail: undone.detail,
        migrated_down: journal.migrated && undone.restored,
        health: Vec::new(),
        steps: undone.steps,
        ..RollbackReport::default()
    };
    verify_rollback(
        rollout.runner,
        rollout.env,
        &rollout.vars,
        &mut rollback,
        undone.restored,
        journal.baseline.as_ref(),
        &rollout.ws.config.devops.rollback_triggers,
    );
    report.rollback = Some(rollback);
}

/// Runs the health checks after a rollback and says how it ended; with metrics configured,
/// also reads the figures and compares them with the baseline taken before the deploy.
fn verify_rollback(
    runner: &Runner,
    env: &EnvConfig,
    vars: &[(String, String)],
    report: &mut RollbackReport,
    restored: bool,
    baseline: Option<&metrics::Sample>,
    triggers: &crate::config::RollbackTriggers,
) {
    if !restored {
        return;
    }
    if let Some(spec) = &env.metrics {
        let after = metrics::sample(runner, spec, vars);
        report.metrics_check = Some(metrics_check(&after, baseline, triggers));
        report.metrics_after = Some(after);
        report.baseline = baseline.cloned();
    }
    let checks = live_checks(env, &runner.workspace, &env.health_checks);
    let (health, failure) =
        live_checks_run(runner, env, "rollback-health", &checks, &env.check_dir(&runner.workspace), vars);
    report.health = health;
    report.success = failure.is_none();
    let what = report.restored.clone().unwrap_or_default();
    let done = if report.detail.is_empty() { String::new() } else { format!(" ({})", report.detail) };
    report.detail = match failure {
        Some(failure) => format!("restored {what}{done}, but {failure}"),
        None if report.health.is_empty() => {
            format!("restored {what}{done}; no health check is configured to verify it")
        }
        None => format!("restored {what}{done} and its health checks pass"),
    };
}

struct Undone {
    restored: bool,
    steps: Vec<StepResult>,
    detail: String,
}

fn undo_steps(runner: &Runner, env: &EnvConfig, journal: &Journal, vars: &[(String, String)]) -> Undone {
    let runner = &runner.detached();
    let cwd = env.path.as_ref().map(|p| runner.workspace.join(p));
    let mut steps = Vec::new();
    let mut run = |name: &str, step: &str, extra: Vec<(String, String)>| -> Option<bool> {
        let (command, timeout) = env.command(name)?;
        let mut all = vars.to_vec();
        all.extend(extra);
        let result = runner.run(step, &command, cwd.as_deref(), timeout, &all);
        let ok = result.success;
        steps.push(result);
        Some(ok)
    };
    let mut detail = Vec::new();
    let restored = match env.strategy() {
        "blue-green" if !journal.switched => {
            detail.push("traffic never left the old side".to_owned());
            true
        }
        "blue-green" if journal.previous_slot.is_some() && env.command("switch").is_some() => {
            let back = journal.previous_slot.clone().unwrap_or_default();
            let ok = run("switch", "switch-back", vec![("OPSFLOW_SLOT".to_owned(), back.clone())]).unwrap_or(false);
            detail.push(if ok {
                format!("switched back to the {back} side")
            } else {
                format!("switching back to the {back} side failed")
            });
            ok
        }
        strategy => {
            if strategy == "canary" && journal.weight > 0 && env.command("set_weight").is_some() {
                let ok = run("set_weight", "set-weight-0", vec![("OPSFLOW_WEIGHT".to_owned(), "0".to_owned())])
                    .unwrap_or(false);
                detail.push(if ok {
                    "canary weight set back to 0%".to_owned()
                } else {
                    "setting the canary weight back to 0% failed".to_owned()
                });
            }
            match run("rollback", "rollback", Vec::new()) {
                Some(true) => {
                    detail.push("`rollback` restored the previous release".to_owned());
                    true
                }
                Some(false) => {
                    detail.push("`rollback` failed".to_owned());
                    false
                }
                None if !journal.changed => true,
                None => {
                    detail.push(format!("`environments.{}.commands.rollback` is not set", env.name));
                    false
                }
            }
        }
    };
    let mut migrated_back = true;
    if journal.migrated {
        match run("migrate_down", "migrate-down", Vec::new()) {
            Some(ok) => {
                migrated_back = ok;
                detail.push(if ok {
                    "`migrate_down` reverted the migration".to_owned()
                } else {
                    "`migrate_down` failed".to_owned()
                });
            }
            None => detail.push("the deploy migrated but `commands.migrate_down` is not set".to_owned()),
        }
    }
    Undone { restored: restored && migrated_back, steps, detail: detail.join("; ") }
}

/// One measurement of an analysis, for reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// When the measurement started, measured from the start of the analysis (not when it was
    /// planned: a slow metrics command or check pushes the next one later).
    pub at_ms: u64,
    /// How long the measurement took.
    #[serde(default)]
    pub took_ms: u64,
    /// `ok`, `breached`, `unhealthy` or `no_data`.
    pub outcome: String,
    pub detail: String,
}

/// The end of one analysis, for reports.
pub(super) struct Judged {
    /// `passed`, `failed`, `inconclusive` or `interrupted`.
    pub(super) verdict: String,
    pub(super) reason: String,
    pub(super) rows: Vec<Row>,
    /// The last metrics sample read, for the reports' figures.
    last: Option<metrics::Sample>,
    /// How long the analysis really ran.
    ran_ms: u64,
}

/// Runs one analysis of `env` to its verdict: metrics (against `baseline`) and health checks
/// every `plan.interval`, judged with the triggers of `devops.rollback_triggers`. A shutdown
/// ends it `interrupted`; a metrics config that cannot be used is `inconclusive`.
/// Records the analysis of one step of a rollout (canary step, batch): in the report, its
/// timeline, and the journal, which from now on resumes after that step.
pub(super) fn note_analysis(
    rollout: &mut Rollout<'_>,
    report: &mut DeployReport,
    label: &str,
    index: usize,
    judged: &Judged,
) {
    report.analyses.push(StageAnalysis {
        stage: label.to_owned(),
        verdict: judged.verdict.clone(),
        reason: judged.reason.clone(),
        samples: judged.rows.clone(),
    });
    let status = match judged.verdict.as_str() {
        "passed" => "PASS",
        "failed" => "FAIL",
        _ => "PAUSED",
    };
    report.note(format!("Analysis at {label}"), status);
    rollout.journal.next_step = index + 1;
    rollout.save();
}

pub(super) fn analyse(
    runner: &Runner,
    env: &EnvConfig,
    config: &Config,
    baseline: Option<&Baseline>,
    vars: &[(String, String)],
    plan: Plan,
    prefix: &str,
) -> Judged {
    let last = std::cell::RefCell::new(None);
    let judged = |verdict: &str, reason: String, rows: Vec<Row>, ran: Duration| Judged {
        verdict: verdict.to_owned(),
        reason,
        rows,
        last: last.borrow().clone(),
        ran_ms: ran.as_millis() as u64,
    };
    let thresholds = Thresholds::new(&config.devops.rollback_triggers, env.analysis.as_ref());
    let mut analysis = Analysis::new(plan, thresholds, env.metrics.as_ref(), baseline);
    let started = Instant::now();
    let check_dir = env.check_dir(&runner.workspace);
    let health_checks = live_checks(env, &runner.workspace, &env.health_checks);
    let mut interrupted = false;
    // When each measurement really started and how long it took.
    let timings = std::cell::RefCell::new(Vec::new());
    let verdict = analysis.run(
        |_| {
            let at = started.elapsed();
            let measurement = Measurement {
                metrics: env.metrics.as_ref().map(|spec| {
                    let sample = metrics::sample(runner, spec, vars);
                    *last.borrow_mut() = Some(sample.clone());
                    sample
                }),
                health: (!env.health_checks.is_empty()).then(|| {
                    let (results, failure) = live_checks_run(runner, env, prefix, &health_checks, &check_dir, vars);
                    Health {
                        passed: failure.is_none(),
                        detail: failure.unwrap_or_else(|| format!("{} health checks passed", results.len())),
                    }
                }),
            };
            timings.borrow_mut().push((at, started.elapsed() - at));
            measurement
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
    let ran = started.elapsed();
    let timings = timings.into_inner();
    let rows = analysis
        .records()
        .iter()
        .map(|record| Row {
            at_ms: timings.get(record.index as usize).map_or_else(|| plan.due(record.index), |(at, _)| *at).as_millis()
                as u64,
            took_ms: timings.get(record.index as usize).map_or(0, |(_, took)| took.as_millis() as u64),
            outcome: serde_json::to_value(record.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            detail: runner.secrets.mask(&record.detail),
        })
        .collect();
    let reason = runner.secrets.mask(verdict.text());
    match verdict {
        _ if interrupted => judged("interrupted", format!("interrupted by shutdown: {reason}"), rows, ran),
        Verdict::Passed { .. } => judged("passed", reason, rows, ran),
        Verdict::Failed { .. } => judged("failed", reason, rows, ran),
        Verdict::Inconclusive { .. } | Verdict::Continue => judged("inconclusive", reason, rows, ran),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Monitoring {
    /// The planned period and interval.
    pub period_ms: u64,
    pub interval_ms: u64,
    /// How long it really ran, and whether that was longer than planned (measurements that
    /// take longer than the interval push the later ones back).
    #[serde(default)]
    pub ran_ms: u64,
    #[serde(default)]
    pub overran: bool,
    pub samples: Vec<Row>,
    /// `passed`, `failed`, `inconclusive` or `interrupted`.
    pub verdict: String,
    pub healthy: bool,
    pub reason: String,
    /// Cut short by a shutdown: neither healthy nor a reason to roll back.
    pub interrupted: bool,
    /// The last metrics sample of the period, and the baseline it was judged against.
    pub last_sample: Option<metrics::Sample>,
    pub baseline: Option<metrics::Sample>,
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
    let judged = analyse(runner, env, config, baseline, vars, plan, "monitor");
    let period_ms = devops.monitoring_period.as_millis().min(u64::MAX as u128) as u64;
    // The last measurement starts at the period's end at the latest when on time.
    let planned_end = judged.rows.len().saturating_sub(1) as u64 * plan.interval.as_millis() as u64;
    let last_start = judged.rows.last().map_or(0, |r| r.at_ms);
    Monitoring {
        period_ms,
        interval_ms: plan.interval.as_millis() as u64,
        ran_ms: judged.ran_ms,
        overran: last_start > planned_end + plan.interval.as_millis() as u64 / 2,
        samples: judged.rows,
        healthy: judged.verdict == "passed",
        interrupted: judged.verdict == "interrupted",
        verdict: judged.verdict,
        reason: judged.reason,
        last_sample: judged.last,
        baseline: baseline.map(|b| b.sample.clone()),
    }
}

/// A baseline for the analysis: one metrics sample taken before the deploy.
pub fn baseline(runner: &Runner, env: &EnvConfig, vars: &[(String, String)]) -> Option<Baseline> {
    let spec = env.metrics.as_ref()?;
    Some(Baseline::new(metrics::sample(runner, spec, vars)))
}

/// What a rollback did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackReport {
    pub environment: String,
    pub from: Option<String>,
    /// The release that was live and was undone, as (unit, version), when known.
    pub undone: Option<(String, String)>,
    /// The same, as every report names it: `UNIT-003 1.0.1`.
    pub undone_release: Option<String>,
    pub restored: Option<String>,
    pub success: bool,
    pub detail: String,
    pub migrated_down: bool,
    pub health: Vec<CheckResult>,
    pub steps: Vec<StepResult>,
    /// After the rollback, when metrics are configured: a sample, the baseline taken before
    /// the failed deploy, and whether the figures are back within the rollback triggers of it.
    pub metrics_after: Option<metrics::Sample>,
    pub baseline: Option<metrics::Sample>,
    pub metrics_check: Option<MetricsCheck>,
    /// The rollback could not be carried out as asked and changed nothing.
    pub refused: bool,
    /// What a rollback could restore (newest first), when it was asked.
    pub restorable: Vec<String>,
    /// Changes of the environment's record that could not be written.
    pub record_errors: Vec<String>,
}

/// Whether error rate and latency returned to the baseline after a rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsCheck {
    pub back_to_baseline: bool,
    pub detail: String,
}

/// Compares a sample after a rollback with the baseline before the deploy, by the rollback
/// triggers: the error rate under `error_rate` percent, p95 latency under
/// `latency_p95_ratio` times the baseline's.
fn metrics_check(
    after: &metrics::Sample,
    baseline: Option<&metrics::Sample>,
    triggers: &crate::config::RollbackTriggers,
) -> MetricsCheck {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    match after.error_rate {
        Some(rate) => {
            figures.push(format!("error rate {rate}% (limit {}%)", triggers.error_rate));
            if rate > triggers.error_rate {
                problems.push(format!("error rate {rate}% is above {}%", triggers.error_rate));
            }
        }
        None => problems.push("no error rate could be read".to_owned()),
    }
    if let (Some(p95), Some(base)) = (after.latency_p95_ms, baseline.and_then(|b| b.latency_p95_ms)) {
        let limit = base * triggers.latency_p95_ratio;
        figures.push(format!("p95 latency {p95} ms (baseline {base} ms, limit {limit} ms)"));
        if p95 > limit {
            problems.push(format!("p95 latency {p95} ms is above {limit} ms"));
        }
    }
    MetricsCheck {
        back_to_baseline: problems.is_empty(),
        detail: if problems.is_empty() {
            format!("back to baseline: {}", figures.join(", "))
        } else {
            format!("not back to baseline yet: {}", problems.join("; "))
        },
    }
}

/// Who asks for a rollback and why, for the environment's record.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub by: String,
    pub reason: String,
    pub run_id: String,
    /// The person named the release to undo (an R17 deciding about it): a first release with
    /// nothing before it may then be taken down.
    pub undo_named: bool,
}

/// The `--to` value that takes an environment down on purpose: nothing stays live.
pub const TAKE_DOWN: &str = "none";

/// Restores the last good release (skipping bad ones) and verifies it. `journal` is the
/// rollout being undone when there is one (a monitoring failure, a paused or interrupted
/// rollout); without it (a human's later R17), the environment's record says what is live
/// and whether its deploy migrated.
pub fn rollback(
    ws: &Workspace,
    runner: &Runner,
    env: &EnvConfig,
    vars: &[(String, String)],
    journal: Option<&Journal>,
    asked: &Asked,
) -> RollbackReport {
    rollback_to(ws, runner, env, vars, journal, None, asked)
}

/// What a rollback of `env` can restore now, newest first, as the record has it: good
/// releases other than the live one, whose directory is still kept (`local`).
pub fn restorable(ws: &Workspace, env: &EnvConfig, record: &Record) -> Vec<Deployment> {
    let choices = match env.local(&ws.root) {
        // The directories are the provider's own: it says which are kept.
        Some(local) => local.restorable_in(record),
        None => record.restorable(env.live(ws, record).map(|d| d.run_id).as_deref(), |_| true),
    };
    choices.into_iter().cloned().collect()
}

/// Why a rollback of `env` to `target` cannot be carried out, with what it could restore
/// instead; `None` when it can. `undo_is_explicit`: the release to undo is named (a rollout's
/// journal, a person's R17 deciding about that release), so a first release with nothing
/// before it is taken down, as the production gate said before it shipped. A `command`
/// environment's own `rollback` command knows what it restores, so only a `--to` version
/// its record does not have is refused there.
pub fn refusal_of(
    env: &EnvConfig,
    restorable: &[Deployment],
    live: Option<&Deployment>,
    undo_is_explicit: bool,
    target: Option<&str>,
) -> Option<String> {
    if target == Some(TAKE_DOWN) {
        return None;
    }
    let chosen = restorable.iter().find(|d| target.is_none_or(|t| crate::release::same_version(&d.version, t)));
    if chosen.is_some() {
        return None;
    }
    if let Some(version) = target {
        return Some(refusal(env, &format!("no good release {version} is kept to roll back to"), restorable));
    }
    match env.provider {
        // A `command` environment's `rollback` knows what it restores.
        Provider::Command => return None,
        _ if undo_is_explicit => return None,
        Provider::Local | Provider::Ssh => {}
    }
    Some(match live {
        Some(_) => refusal(env, "no earlier good release is kept to roll back to", restorable),
        None => refusal(env, "no good release is live, so there is nothing to roll back", restorable),
    })
}

/// Why a rollback cannot be carried out as asked, with what it could restore instead.
fn refusal(env: &EnvConfig, asked_for: &str, restorable: &[Deployment]) -> String {
    let choices = if restorable.is_empty() {
        format!("no release can be restored; `--to {TAKE_DOWN}` takes the environment down on purpose")
    } else {
        format!(
            "it can restore {}",
            restorable.iter().map(|d| format!("{} (`--to {}`)", d.label(), d.version)).collect::<Vec<_>>().join(", ")
        )
    };
    format!("{asked_for} in {}: {choices}", env.name)
}

/// [`rollback`] to the good release of version `target` when one is named (`opsflow rollback
/// ENV --to VERSION`; [`TAKE_DOWN`] takes the environment down), else to the last good
/// release. A rollback that cannot be carried out (no such release is kept, nothing to
/// restore without a journal) is `refused` and changes nothing.
pub fn rollback_to(
    ws: &Workspace,
    runner: &Runner,
    env: &EnvConfig,
    vars: &[(String, String)],
    journal: Option<&Journal>,
    target: Option<&str>,
    asked: &Asked,
) -> RollbackReport {
    let mut report = RollbackReport { environment: env.name.clone(), ..RollbackReport::default() };
    let record = match env.history(ws) {
        Ok(record) => record,
        Err(e) => {
            report.refused = true;
            report.detail = e.to_string();
            return report;
        }
    };
    let choices = restorable(ws, env, &record);
    report.restorable = choices.iter().map(Deployment::label).collect();
    let take_down = target == Some(TAKE_DOWN);
    let live = env.live(ws, &record);
    if let Some(why) = refusal_of(env, &choices, live.as_ref(), journal.is_some() || asked.undo_named, target) {
        report.refused = true;
        report.detail = why;
        return report;
    }
    let chosen = if take_down {
        None
    } else {
        choices.iter().find(|d| target.is_none_or(|t| crate::release::same_version(&d.version, t))).cloned()
    };
    let undone = match journal {
        Some(j) => Some(ReleaseRef::new(j.unit_id.clone(), j.version.clone())),
        None => live.as_ref().map(Deployment::release),
    };
    let undone_run = journal.map(|j| j.run_id.clone()).or_else(|| live.as_ref().map(|d| d.run_id.clone()));
    report.undone = undone.as_ref().map(|r| (r.unit_id.clone(), r.version.clone()));
    report.undone_release = undone.as_ref().map(ReleaseRef::label);
    if env.provider == Provider::Ssh {
        report.from = live.as_ref().map(|d| d.dir.clone());
        let switched = super::ssh::switch_all(
            ws,
            runner,
            env,
            chosen.as_ref(),
            undone_run.as_deref(),
            vars,
            &mut report.record_errors,
        );
        if let Err(why) = switched {
            report.detail = match &chosen {
                Some(target) => format!("cannot switch every host back to {}: {why}", target.label()),
                None => format!("cannot take every host down: {why}"),
            };
            mark_undone(
                ws,
                env,
                undone_run.as_deref(),
                undone.as_ref(),
                chosen.as_ref().map(Deployment::release),
                asked,
                &mut report,
            );
            return report;
        }
        match &chosen {
            Some(target) => report.restored = Some(target.label()),
            None => {
                report.success = true;
                report.detail = if take_down {
                    format!("{} took the environment down on purpose: no host runs a release", describe(asked))
                } else {
                    "no earlier good release: every host was taken back to its empty state".to_owned()
                };
            }
        }
    } else if let Some(local) = env.local(&runner.workspace) {
        report.from = local.live_dir();
        match &chosen {
            Some(target) => {
                if let Err(e) = local.switch(&target.dir) {
                    report.detail = format!("cannot switch back to {}: {e}", target.dir);
                    return report;
                }
                report.restored = Some(target.label());
            }
            None => {
                // The first release of an environment, or a person's `--to none`: nothing
                // stays live (the production gate says so before a first release ships).
                if let Err(e) = local.take_down() {
                    report.detail = format!("cannot take {} down: {e}", local.live_link().display());
                    return report;
                }
                report.success = true;
                report.detail = if take_down {
                    format!("{} took the environment down on purpose: nothing is live", describe(asked))
                } else {
                    "no earlier good release: the environment was taken back to its empty state".to_owned()
                };
            }
        }
    } else {
        let fallback;
        let journal = match journal {
            Some(journal) => journal,
            None => {
                let live = live.as_ref();
                let previous = chosen.as_ref();
                fallback = Journal {
                    environment: env.name.clone(),
                    version: live.map(|l| l.version.clone()).unwrap_or_default(),
                    unit_id: live.map(|l| l.unit_id.clone()).unwrap_or_default(),
                    run_id: live.map(|l| l.run_id.clone()).unwrap_or_default(),
                    provider: env.provider.to_string(),
                    strategy: env.strategy().to_owned(),
                    phase: super::journal::Phase::Verifying,
                    changed: true,
                    migrated: live.is_some_and(|l| l.migrated),
                    weight: 100,
                    slot: live.map(|l| l.dir.clone()).filter(|d| !d.is_empty()),
                    previous_slot: previous.map(|p| p.dir.clone()).filter(|d| !d.is_empty()),
                    previous_version: previous.map(|p| p.version.clone()),
                    previous_unit: previous.map(|p| p.unit_id.clone()).unwrap_or_default(),
                    switched: true,
                    ..Journal::default()
                };
                &fallback
            }
        };
        report.from = Some(journal.version.clone());
        let undone_steps = undo_steps(runner, env, journal, vars);
        report.steps = undone_steps.steps;
        report.migrated_down = journal.migrated && undone_steps.restored;
        report.detail = undone_steps.detail;
        if !undone_steps.restored {
            mark_undone(ws, env, undone_run.as_deref(), undone.as_ref(), None, asked, &mut report);
            return report;
        }
        report.restored = Some(match &journal.previous_version {
            Some(version) => label(&journal.previous_unit, version),
            None => "the previous release".to_owned(),
        });
    }
    let restored = chosen.as_ref().map(Deployment::release);
    mark_undone(ws, env, undone_run.as_deref(), undone.as_ref(), restored, asked, &mut report);
    if report.success && report.restored.is_none() {
        return report;
    }
    let baseline = journal.and_then(|j| j.baseline.as_ref());
    verify_rollback(runner, env, vars, &mut report, true, baseline, &ws.config.devops.rollback_triggers);
    report
}

/// `alice (reason)` or `opsflow`, for a record's detail.
fn describe(asked: &Asked) -> String {
    if asked.by.trim().is_empty() { "a person".to_owned() } else { asked.by.clone() }
}

/// Records in the environment's record that a rollback undid `undone` (its deployment is
/// `bad` from now on) and what it restored.
fn mark_undone(
    ws: &Workspace,
    env: &EnvConfig,
    undone_run: Option<&str>,
    undone: Option<&ReleaseRef>,
    restored: Option<ReleaseRef>,
    asked: &Asked,
    report: &mut RollbackReport,
) {
    let reason = if asked.reason.is_empty() { report.detail.clone() } else { asked.reason.clone() };
    let result = env.change_record(ws, |record| {
        let now = crate::time::now_rfc3339();
        if let Some(d) = undone_run.and_then(|run| record.deployments.iter_mut().rev().find(|d| d.run_id == run)) {
            d.status = Status::Bad;
            d.ended_at.get_or_insert(now);
            d.reason = Some(format!("rolled back: {reason}"));
        }
        // The releases this rollback takes away besides the one it undoes: every good
        // deployment newer than the one restored (a person may go back further than one).
        let mut event =
            Event::new(EventKind::RolledBack, undone.unwrap_or(&ReleaseRef::default()), &asked.run_id, reason.clone())
                .by(asked.by.clone());
        event.restored = restored;
        record.events.push(event);
    });
    if let Err(e) = result {
        report.record_errors.push(e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_the_config_lacks_or_gets_wrong_is_named_with_the_file() {
        let mut config = Config { label: "ops/project-config.json".into(), ..Config::default() };
        let missing = EnvConfig::load(&config, "staging").unwrap_err();
        assert_eq!(missing.to_string(), "ops/project-config.json has no `environments.staging`");
        config.environments.insert("staging".into(), serde_json::json!({"provider": 3}));
        let invalid = EnvConfig::load(&config, "staging").unwrap_err().to_string();
        assert!(invalid.starts_with("`environments.staging` in ops/project-config.json: invalid type"), "{invalid}");
        config.environments.insert("staging".into(), serde_json::json!({"provider": "command"}));
        let env = EnvConfig::load(&config, "staging").unwrap();
        assert_eq!(env.config, "ops/project-config.json");
        // The built-in defaults have no file.
        let unnamed = EnvConfig::load(&Config::default(), "production").unwrap_err();
        assert_eq!(unnamed.to_string(), "the config has no `environments.production`");
        let unnamed = Environments::default().get("production").unwrap_err();
        assert_eq!(unnamed.to_string(), "the config has no `environments.production`");
    }

    /// The config and its environments read from `text` as the workspace loads them, or every
    /// problem found.
    fn parse(
        label: &str,
        text: &str,
        schemas: &crate::schema::Schemas,
    ) -> Result<(Config, Environments), Vec<Diagnostic>> {
        let (config, mut problems) = Config::read(label, text, schemas)?;
        let environments = Environments::read(&config, text, &mut problems);
        if problems.is_empty() { Ok((config, environments)) } else { Err(problems) }
    }

    // A workspace may override the config's schema with one that lets anything through; the
    // durations and environments are still read at load time, and refused at their key.
    #[test]
    fn with_a_permissive_schema_bad_values_are_still_refused_at_their_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("project-config.schema.json"), "{}").unwrap();
        let schemas =
            crate::schema::Schemas::new(dir.path().to_owned(), "schemas", crate::config::DEFAULT_MAX_FILE_BYTES);
        let text = r#"{
  "devops": {"debounce": 50, "shutdown_grace": "soon"},
  "environments": {
    "prod": {
      "provider": "command",
      "commands": {"deploy": {"run": "true", "timeout": "10 minutes"}},
      "metrics": {"command": "true", "http": "http://x", "error_rate": "/e"},
      "analysis": {"count": 0}
    }
  }
}"#;
        let problems: Vec<String> =
            parse("project-config.json", text, &schemas).unwrap_err().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            problems,
            [
                r#"project-config.json:2:26: at /devops/debounce: expected a duration such as "30s" or "5m", found 50"#,
                r#"project-config.json:2:48: at /devops/shutdown_grace: `soon` is not a duration such as "500ms", "30s" or "5m""#,
                r#"project-config.json:6:57: at /environments/prod/commands/deploy/timeout: `10 minutes` has an unknown unit ` minutes`; use ms, s, m, h or d"#,
            ]
        );
        // Once the durations are right, the environment itself is read as a deployment reads it.
        let text = text.replace("50", "\"50ms\"").replace("soon", "1s").replace("10 minutes", "10m");
        let problems: Vec<String> =
            parse("project-config.json", &text, &schemas).unwrap_err().iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("at /environments/prod/metrics: expected exactly one of"), "{}", problems[0]);
        assert!(
            problems[1].contains("at /environments/prod/analysis: expected `analysis.count` of at least 1"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn a_deploy_window_or_wait_timer_it_cannot_read_is_refused_at_its_key() {
        let schemas = crate::schema::Schemas::new(
            std::path::PathBuf::from("/nonexistent"),
            "schemas",
            crate::config::DEFAULT_MAX_FILE_BYTES,
        );
        let text = "{\"environments\": {\"production\": {\"provider\": \"command\", \"commands\": {\"deploy\": \"true\"},\n  \"deploy_window\": [\"Mon-Fri 09:00-16:00 Europe/Berlin\", \"Sat 25:00-26:00 UTC\"]}}}";
        let problems: Vec<String> =
            parse("project-config.json", text, &schemas).unwrap_err().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            problems,
            [
                "project-config.json:2:20: at /environments/production/deploy_window: `environments.production.deploy_window`: `25:00-26:00` are not hours such as 09:00-16:00 (24-hour clock; 24:00 ends at midnight)"
            ]
        );
        let text = text
            .replace("Sat 25:00-26:00 UTC", "Sat 10:00-12:00 UTC")
            .replace("\n", "\"wait_timer\": \"10 minutes\",\n");
        let problems: Vec<String> =
            parse("project-config.json", &text, &schemas).unwrap_err().iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("at /environments/production/wait_timer: "), "{}", problems[0]);
        let text = text.replace("10 minutes", "10m");
        let (_, environments) = parse("project-config.json", &text, &schemas).unwrap();
        let env = environments.get("production").unwrap();
        assert_eq!(env.wait_timer, Some(Duration::from_secs(600)));
        assert_eq!(
            env.deploy_window.as_ref().unwrap().text(),
            "Mon-Fri 09:00-16:00 Europe/Berlin, Sat 10:00-12:00 UTC"
        );
    }

    /// An environment is read once, with its `metrics` and `analysis` typed, and every user
    /// gets that value; the names keep the file's order.
    #[test]
    fn environments_are_read_once_with_their_metrics_and_analysis() {
        let schemas = crate::schema::Schemas::new(
            std::path::PathBuf::from("/nonexistent"),
            "schemas",
            crate::config::DEFAULT_MAX_FILE_BYTES,
        );
        let text = r#"{"environments": {
  "staging": {"provider": "command", "commands": {"deploy": "true"}},
  "production": {"provider": "command", "commands": {"deploy": "true"},
    "metrics": {"command": "echo '{}'", "error_rate": "/e"}, "analysis": {"count": 3, "interval": "2s"}}
}}"#;
        let (_, environments) = parse("project-config.json", text, &schemas).unwrap();
        let names: Vec<&str> = environments.iter().map(|env| env.name.as_str()).collect();
        assert_eq!(names, ["staging", "production"]);
        let production = environments.get("production").unwrap();
        assert_eq!(production.metrics.as_ref().unwrap().error_rate.as_deref(), Some("/e"));
        let analysis = production.analysis.as_ref().unwrap();
        assert_eq!((analysis.count, analysis.interval), (Some(3), Some(Duration::from_secs(2))));
        let staging = environments.get("staging").unwrap();
        assert!(staging.metrics.is_none() && staging.analysis.is_none());
        assert!(std::ptr::eq(environments.get("staging").unwrap(), staging));
    }
}
