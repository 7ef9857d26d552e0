//! `project-config.json`: opsflow's configuration, validated by its schema, with defaults.
//!
//! The file is optional. It is checked against `project-config.schema.json` first (so every
//! typo and every bare number where a duration belongs is reported with its key), then read
//! into typed structs. An invalid config is reported and the defaults stand in, so `validate`
//! can go on checking the rest; commands that act refuse to run on it.
//!
//! The config sits below the rollout and the runner, which read their settings from it: it
//! names nothing of `rollout` or `exec`. The workspace loads it (`Workspace::open`), reading
//! each environment as a deployment reads it on top (`rollout::deploy::Environments`).

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::duration::{defaults, duration_text, parse_duration};
use crate::schema::{SchemaName, Schemas};
use crate::workspace::diagnostic::{Diagnostic, Kind, excerpt_value};
use crate::workspace::read;

pub const DEFAULT_CONFIG_FILE: &str = "project-config.json";
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub project: Option<String>,
    pub agent: AgentConfig,
    pub paths: Paths,
    pub limits: Limits,
    pub devops: Devops,
    pub gates: Gates,
    pub release: Release,
    pub dev: Dev,
    pub ci: Ci,
    /// Environments by name (`staging`, `production`, ...), in the file's order.
    pub environments: serde_json::Map<String, Value>,
    pub feedback: Value,
    pub secrets: Vec<String>,
    /// `git`: sync through a git remote (PRODUCT.md section 9, docs/sync.md).
    pub git: Git,
    /// `taskmaster`: how a Task Master task list is read (docs/integrations.md).
    pub taskmaster: TaskMaster,
    /// `notifications`: the channels that receive events (docs/notifications.md).
    pub notifications: Vec<crate::notify::Channel>,
    /// The agent nodes of the workflow (`"action": "agent"` in `workflow.json`), whose
    /// `owner`'s tasks of their types this runner also owns. Filled by `Workspace::open`.
    #[serde(skip)]
    pub agent_nodes: Vec<NodeOwner>,
    /// The whole file as written.
    #[serde(skip)]
    pub raw: Value,
    /// The file as messages name it (empty for the built-in defaults).
    #[serde(skip)]
    pub label: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            project: None,
            agent: AgentConfig::default(),
            paths: Paths::default(),
            limits: Limits::default(),
            devops: Devops::default(),
            gates: Gates::default(),
            release: Release::default(),
            dev: Dev::default(),
            ci: Ci::default(),
            environments: serde_json::Map::new(),
            feedback: Value::Null,
            secrets: Vec::new(),
            git: Git::default(),
            taskmaster: TaskMaster::default(),
            notifications: Vec::new(),
            agent_nodes: Vec::new(),
            raw: Value::Object(Default::default()),
            label: String::new(),
        }
    }
}

/// An agent node of the workflow: the agent whose tasks it runs and their types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOwner {
    pub node: String,
    pub owner: String,
    pub task_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    pub name: String,
    pub aliases: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: "DevOps-Engineer".to_owned(),
            aliases: vec!["devops".to_owned(), "DEVOPS_ENGINEER_AGENT".to_owned()],
        }
    }
}

/// Where each workflow file lives, relative to the workspace.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Paths {
    pub tasks: String,
    pub state: String,
    pub workflow: String,
    pub artifacts: String,
    pub human_requests: String,
    pub deployments: String,
    /// Every release's outputs, kept per unit and version.
    pub releases: String,
    pub qa_reports: String,
    pub qa_test_report: String,
    /// BMAD's QA gate files (`<epic>.<story>-<slug>.yml`), docs/integrations.md.
    pub qa_gates: String,
    /// beads' issues (`issues.jsonl`), read only, when the file is there.
    pub beads: String,
    pub deployment_report: String,
    pub completion_signal: String,
    pub schemas: String,
    pub templates: String,
    pub runtime: String,
    /// The tag of a Task Master tagged task list opsflow works in; by default Task Master's
    /// current tag (`currentTag` of `.taskmaster/state.json`), else `master`.
    pub tasks_tag: Option<String>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            tasks: "docs/workflow/tasks.json".into(),
            state: "docs/workflow/state.json".into(),
            workflow: "docs/workflow/workflow.json".into(),
            artifacts: "docs/workflow/artifacts".into(),
            human_requests: "docs/workflow/human-requests.md".into(),
            deployments: "docs/workflow/deployments".into(),
            releases: "docs/workflow/releases".into(),
            qa_reports: "QA".into(),
            qa_test_report: "ARTIFACTS/qa-engineer/qa-test-report.json".into(),
            qa_gates: "docs/qa/gates".into(),
            beads: ".beads/issues.jsonl".into(),
            deployment_report: "ARTIFACTS/devops-engineer/deployment-report.json".into(),
            completion_signal: "ARTIFACTS/system/stage-completion-signal.json".into(),
            schemas: "schemas".into(),
            templates: "templates".into(),
            runtime: ".opsflow".into(),
            tasks_tag: None,
        }
    }
}

impl Paths {
    pub fn entries(&self) -> [(&'static str, &str); 16] {
        [
            ("tasks", &self.tasks),
            ("state", &self.state),
            ("workflow", &self.workflow),
            ("artifacts", &self.artifacts),
            ("human_requests", &self.human_requests),
            ("deployments", &self.deployments),
            ("releases", &self.releases),
            ("qa_reports", &self.qa_reports),
            ("qa_test_report", &self.qa_test_report),
            ("qa_gates", &self.qa_gates),
            ("beads", &self.beads),
            ("deployment_report", &self.deployment_report),
            ("completion_signal", &self.completion_signal),
            ("schemas", &self.schemas),
            ("templates", &self.templates),
            ("runtime", &self.runtime),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: DEFAULT_MAX_FILE_BYTES }
    }
}

/// `devops.approval_identity`: what proves who approved a release (docs/reference.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum ApprovalIdentity {
    /// `approved_by` as written: free text.
    #[default]
    #[serde(rename = "none")]
    None,
    /// The newest commit of the approval file, authored by an approver (by email).
    #[serde(rename = "git")]
    Git,
    /// As `git`, and that commit signed by the approver's SSH key.
    #[serde(rename = "git-signed")]
    GitSigned,
}

impl ApprovalIdentity {
    /// Whether an approval is proven by git (`git` or `git-signed`).
    pub fn by_git(self) -> bool {
        self != ApprovalIdentity::None
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalIdentity::None => "none",
            ApprovalIdentity::Git => "git",
            ApprovalIdentity::GitSigned => "git-signed",
        }
    }
}

/// One entry of `devops.approvers`: a plain name, or `{name, email, ssh_key}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Approver {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// An SSH public key (`ssh-ed25519 AAAA...`) the approver signs commits with.
    #[serde(default)]
    pub ssh_key: Option<String>,
}

impl Approver {
    /// `name <email>`, or the name alone.
    pub fn label(&self) -> String {
        match &self.email {
            Some(email) => format!("{} <{email}>", self.name),
            None => self.name.clone(),
        }
    }
}

/// Reads `devops.approvers` entries as written: a string, or an object with a `name`.
fn approver_entries(value: &Value) -> Vec<Approver> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|entry| match entry {
                    Value::String(name) => Some(Approver { name: name.clone(), email: None, ssh_key: None }),
                    other => serde_json::from_value(other.clone()).ok(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn approver_names<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(approver_entries(&value).into_iter().map(|a| a.name).collect())
}

/// `devops`: how the runner behaves. Durations are read once, when the config is loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Devops {
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub poll_interval: Duration,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub debounce: Duration,
    pub require_human_approval: bool,
    /// The approvers' names, from `approvers` as written: a plain name, or an object's `name`.
    #[serde(deserialize_with = "approver_names")]
    pub approvers: Vec<String>,
    /// The approvers as written, each with its `email` and `ssh_key` when given.
    #[serde(skip)]
    pub people: Vec<Approver>,
    /// What proves who approved (`none`, `git`, `git-signed`).
    pub approval_identity: ApprovalIdentity,
    /// The author of the release's commit may not approve it.
    pub prevent_self_approval: bool,
    /// An allowed-signers file (`ssh-keygen` format) for `git-signed`, relative to the
    /// workspace; without it opsflow writes one from the approvers' `ssh_key`s.
    pub allowed_signers: Option<String>,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub monitoring_period: Duration,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub monitoring_interval: Duration,
    pub auto_rollback_enabled: bool,
    pub rollback_triggers: RollbackTriggers,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub verification_timeout: Duration,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub shutdown_grace: Duration,
}

impl Default for Devops {
    fn default() -> Self {
        Devops {
            poll_interval: defaults::POLL_INTERVAL,
            debounce: defaults::DEBOUNCE,
            require_human_approval: true,
            approvers: Vec::new(),
            people: Vec::new(),
            approval_identity: ApprovalIdentity::None,
            prevent_self_approval: false,
            allowed_signers: None,
            monitoring_period: defaults::MONITORING_PERIOD,
            monitoring_interval: defaults::MONITORING_INTERVAL,
            auto_rollback_enabled: true,
            rollback_triggers: RollbackTriggers::default(),
            verification_timeout: defaults::VERIFICATION_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct RollbackTriggers {
    pub error_rate: f64,
    pub latency_p95_ratio: f64,
    pub response_time_p99: Option<f64>,
    pub health_check_failures: u32,
    pub failure_limit: u32,
}

impl Default for RollbackTriggers {
    fn default() -> Self {
        RollbackTriggers {
            error_rate: 5.0,
            latency_p95_ratio: 2.0,
            response_time_p99: None,
            health_check_failures: 3,
            failure_limit: 0,
        }
    }
}

/// `gates`: the gate thresholds (docs/reference.md).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Gates {
    pub unit_pass_rate: f64,
    pub regression_pass_rate: f64,
    pub coverage_min: f64,
    pub coverage_action: String,
    pub max_critical: u64,
    pub max_high: u64,
    /// What a BMAD gate that says `CONCERNS` does: `block` (the default) or `allow`.
    pub bmad_concerns: String,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            unit_pass_rate: 100.0,
            regression_pass_rate: 95.0,
            coverage_min: 80.0,
            coverage_action: "warn".into(),
            max_critical: 0,
            max_high: 0,
            bmad_concerns: "block".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Release {
    pub build: Option<String>,
    pub artifacts: Vec<String>,
    pub git_tag: bool,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Dev {
    pub tools: Vec<DevTool>,
    pub setup: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct DevTool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Ci {
    pub output: String,
    pub provider: String,
    /// The branch the pipeline runs `opsflow run` on (pushes to it; pull requests into it).
    pub branch: String,
    /// The git URL the pipeline installs opsflow from; without it, the repository variable
    /// `OPSFLOW_GIT_URL`.
    pub opsflow_git: Option<String>,
}

impl Default for Ci {
    fn default() -> Self {
        Ci {
            output: ".github/workflows/opsflow.yml".into(),
            provider: "github".into(),
            branch: "main".into(),
            opsflow_git: None,
        }
    }
}

/// A config that commands that act refuse to run on. Its problems were printed where they
/// were found (each with its file, line, column and key); this is the headline.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file} is invalid ({count} {noun}); fix it first", noun = if *.count == 1 { "problem" } else { "problems" })]
    Invalid { file: String, count: usize },
}

/// `taskmaster`: reading a Task Master task list (docs/integrations.md, "Task Master").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TaskMaster {
    /// The agent of the tag's tasks that have no `agent` field: with a tag of the DevOps
    /// agent's own, its tasks need only their `type`.
    pub default_agent: Option<String>,
}

/// `git`: whether `run` and `watch` sync the workspace through a git remote, and which.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Git {
    pub sync: bool,
    pub remote: String,
    pub branch: String,
    #[serde(with = "duration_text")]
    pub fetch_interval: Duration,
}

impl Default for Git {
    fn default() -> Self {
        Git {
            sync: false,
            remote: "origin".into(),
            branch: "main".into(),
            fetch_interval: defaults::GIT_FETCH_INTERVAL,
        }
    }
}

impl Git {
    /// How often `watch` fetches when nothing changed locally.
    pub fn fetch_every(&self) -> Duration {
        self.fetch_interval.max(Duration::from_millis(100))
    }
}

impl Config {
    /// Reads the config from `text`. An error is a config that could not be read into its
    /// types at all; else the config as read and the problems found in it afterwards, to
    /// which the layer that loads it adds its own (each environment, read as a deployment
    /// reads it) before it refuses the config on any.
    pub fn read(label: &str, text: &str, schemas: &Schemas) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
        let value = read::parse_json(label, text).map_err(|d| vec![d])?;
        let mut problems: Vec<Diagnostic> =
            schemas.validate(SchemaName::Config, label, &value).into_iter().map(|d| d.locate_in(text)).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        // Durations are checked before they are read, so one that cannot be held is reported
        // at its key (the typed read below would only say that some value is wrong).
        duration_problems(label, text, &value, &mut String::new(), &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut config: Config = serde_json::from_value(value.clone())
            .map_err(|e| vec![Diagnostic::new(label, Kind::Config, format!("cannot read config: {e}"))])?;
        config.devops.people = value.pointer("/devops/approvers").map(approver_entries).unwrap_or_default();
        approver_problems(label, text, &value, &config.devops, &mut problems);
        config.raw = value;
        config.label = label.to_owned();
        // The values a channel sends from the environment (a token, a webhook's URL) are
        // secrets: every log, report, outbox entry and status masks them.
        for name in config.notifications.iter().flat_map(crate::notify::Channel::secret_names) {
            if !config.secrets.contains(&name) {
                config.secrets.push(name);
            }
        }
        // A channel is named in status, /metrics, escalations and its outbox entries' ids.
        for (i, channel) in config.notifications.iter().enumerate() {
            if config.notifications[..i].iter().any(|earlier| earlier.name == channel.name) {
                problems.push(
                    Diagnostic::new(
                        label,
                        Kind::Config,
                        format!("`notifications[{i}].name` is {:?}, which an earlier channel has: each channel needs its own name", channel.name),
                    )
                    .pointer(format!("/notifications/{i}/name"))
                    .locate_in(text),
                );
            }
            if let crate::notify::Target::Webhook(crate::notify::Webhook { ca_file: Some(file), .. }) = &channel.target
                && let Err(why) = relative_inside(file)
            {
                problems.push(
                    Diagnostic::new(
                        label,
                        Kind::OutsideWorkspace,
                        format!("`notifications[{i}].webhook.ca_file` {why}"),
                    )
                    .pointer(format!("/notifications/{i}/webhook/ca_file"))
                    .locate_in(text),
                );
            }
        }
        // Every configured path opsflow writes to or reads from must stay in the workspace.
        let mut configured: Vec<(String, String, &str)> = config
            .paths
            .entries()
            .into_iter()
            .map(|(key, path)| (format!("paths.{key}"), format!("/paths/{key}"), path))
            .collect();
        configured.push(("ci.output".into(), "/ci/output".into(), config.ci.output.as_str()));
        if let Some(signers) = &config.devops.allowed_signers {
            configured.push(("devops.allowed_signers".into(), "/devops/allowed_signers".into(), signers.as_str()));
        }
        for (i, entry) in config.release.artifacts.iter().enumerate() {
            configured.push((format!("release.artifacts[{i}]"), format!("/release/artifacts/{i}"), entry.as_str()));
        }
        for (name, env) in &config.environments {
            // An `ssh` environment's path is on its hosts, not in the workspace.
            if env.get("provider").and_then(Value::as_str) == Some("ssh") {
                continue;
            }
            if let Some(path) = env.get("path").and_then(Value::as_str) {
                let pointer_name = name.replace('~', "~0").replace('/', "~1");
                configured.push((
                    format!("environments.{name}.path"),
                    format!("/environments/{pointer_name}/path"),
                    path,
                ));
            }
        }
        // The remote and branch reach git as arguments: one that starts with `-` would be read
        // as an option, and whitespace or a control character as no name git accepts.
        for (key, value) in [("remote", &config.git.remote), ("branch", &config.git.branch)] {
            if value.starts_with('-') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(
                    Diagnostic::new(
                        label,
                        Kind::Config,
                        format!("`git.{key}` is {value:?}: a git {key} name cannot start with `-` or hold whitespace"),
                    )
                    .pointer(format!("/git/{key}"))
                    .locate_in(text),
                );
            }
        }
        for (key, pointer, path) in configured {
            if let Err(why) = relative_inside(path) {
                problems.push(
                    Diagnostic::new(label, Kind::OutsideWorkspace, format!("`{key}` {why}"))
                        .pointer(pointer)
                        .locate_in(text),
                );
            }
        }
        Ok((config, problems))
    }

    /// True when `agent` names this runner: its name or one of its aliases.
    pub fn is_own_agent(&self, agent: &str) -> bool {
        agent == self.agent.name || self.agent.aliases.iter().any(|alias| alias == agent)
    }
}

/// With `devops.approval_identity` `git` or `git-signed`, each approver must be an object
/// with the `email` git records as the author (a plain name proves nothing), and with
/// `git-signed` an `ssh_key` unless `devops.allowed_signers` names the keys.
fn approver_problems(label: &str, text: &str, value: &Value, devops: &Devops, problems: &mut Vec<Diagnostic>) {
    let identity = devops.approval_identity;
    if !identity.by_git() {
        return;
    }
    let entries = value.pointer("/devops/approvers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut refuse = |pointer: String, why: String| {
        problems.push(Diagnostic::new(label, Kind::Config, why).pointer(pointer).locate_in(text));
    };
    if entries.is_empty() {
        refuse(
            "/devops/approval_identity".into(),
            format!(
                "`devops.approval_identity` is \"{}\" but `devops.approvers` is empty: list who may approve, as {{\"name\", \"email\"}}",
                identity.as_str()
            ),
        );
    }
    for (i, entry) in entries.iter().enumerate() {
        let pointer = format!("/devops/approvers/{i}");
        match entry {
            Value::String(name) => refuse(
                pointer,
                format!(
                    "`devops.approvers[{i}]` is the plain name {name:?}: with `devops.approval_identity` \"{}\" each approver is {{\"name\": ..., \"email\": ...}}, the email git records as a commit's author",
                    identity.as_str()
                ),
            ),
            Value::Object(fields) => {
                let email = fields.get("email").and_then(Value::as_str).unwrap_or("");
                if email.trim().is_empty() {
                    refuse(
                        pointer.clone(),
                        format!("`devops.approvers[{i}]` has no `email`: git identifies an author by it"),
                    );
                }
                if identity == ApprovalIdentity::GitSigned
                    && devops.allowed_signers.is_none()
                    && fields.get("ssh_key").and_then(Value::as_str).is_none_or(|k| k.trim().is_empty())
                {
                    refuse(
                        pointer,
                        format!(
                            "`devops.approvers[{i}]` has no `ssh_key`: with `devops.approval_identity` \"git-signed\" each approver needs the public key they sign with, or `devops.allowed_signers` names a file of them"
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Every duration of the config that `parse_duration` cannot hold, such as
/// `"99999999999999999999h"`, which the schema's pattern lets through: an error naming its
/// key, instead of a fallback or a panic at use. A string shaped like a duration anywhere is
/// checked, and so is any value of a duration key under `devops` or `environments` (a
/// workspace may override the schema that would have refused it).
fn duration_problems(label: &str, text: &str, value: &Value, pointer: &mut String, problems: &mut Vec<Diagnostic>) {
    let duration_key = is_duration_key(pointer);
    match value {
        Value::String(s) if duration_key || looks_like_duration(s) => {
            if let Err(why) = parse_duration(s) {
                problems.push(
                    Diagnostic::new(label, Kind::Config, why.to_string()).pointer(pointer.clone()).locate_in(text),
                );
            }
        }
        Value::Object(map) => {
            for (key, inner) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                duration_problems(label, text, inner, pointer, problems);
                pointer.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{index}"));
                duration_problems(label, text, inner, pointer, problems);
                pointer.truncate(len);
            }
        }
        Value::Null => {}
        other if duration_key => problems.push(
            Diagnostic::new(
                label,
                Kind::Config,
                format!("expected a duration such as \"30s\" or \"5m\", found {}", excerpt_value(other)),
            )
            .pointer(pointer.clone())
            .locate_in(text),
        ),
        _ => {}
    }
}

/// The keys that hold a duration: `devops.<name>`, `git.fetch_interval` and, at any depth of
/// an environment, `timeout`, `interval` and `wait_timer`.
fn is_duration_key(pointer: &str) -> bool {
    const DEVOPS: [&str; 6] = [
        "poll_interval",
        "debounce",
        "monitoring_period",
        "monitoring_interval",
        "verification_timeout",
        "shutdown_grace",
    ];
    if let Some(key) = pointer.strip_prefix("/devops/") {
        return DEVOPS.contains(&key);
    }
    if pointer == "/git/fetch_interval" {
        return true;
    }
    pointer.starts_with("/environments/")
        && matches!(pointer.rsplit('/').next(), Some("timeout" | "interval" | "wait_timer"))
}

/// Digits, an optional fraction, and one of the units `parse_duration` knows.
fn looks_like_duration(text: &str) -> bool {
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[number.len()..];
    matches!(unit, "ms" | "s" | "m" | "h" | "d")
        && number.starts_with(|c: char| c.is_ascii_digit())
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Why a configured path does not stay inside the workspace; the message follows the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutsidePath {
    #[error("is empty")]
    Empty,
    #[error("`{}` climbs out of the workspace with `..`", .0.display())]
    Climbs(PathBuf),
    #[error("`{}` is absolute; paths are relative to the workspace", .0.display())]
    Absolute(PathBuf),
}

/// Checks that a configured path is relative and stays inside the workspace.
pub fn relative_inside(path: &str) -> Result<(), OutsidePath> {
    let path = Path::new(path);
    if path.as_os_str().is_empty() {
        return Err(OutsidePath::Empty);
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(OutsidePath::Climbs(path.to_owned())),
            Component::RootDir | Component::Prefix(_) => return Err(OutsidePath::Absolute(path.to_owned())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config read from `text`, or every problem found in it (environments aside: the
    /// workspace reads those, `rollout::deploy::Environments`).
    fn parse(label: &str, text: &str, schemas: &Schemas) -> Result<Config, Vec<Diagnostic>> {
        let (config, problems) = Config::read(label, text, schemas)?;
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    #[test]
    fn an_overflowing_duration_in_the_config_names_its_key() {
        let schemas = Schemas::new(std::path::PathBuf::from("/nonexistent"), "schemas", DEFAULT_MAX_FILE_BYTES);
        let text = "{\n  \"devops\": {\"poll_interval\": \"99999999999999999999h\"}\n}\n";
        let problems = parse("project-config.json", text, &schemas).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            "project-config.json:2:31: at /devops/poll_interval: `99999999999999999999h` is too long a duration; the longest is 36500d (100 years)"
        );
    }

    #[test]
    fn notification_channels_are_read_and_their_problems_named_at_their_place() {
        let schemas = Schemas::new(std::path::PathBuf::from("/nonexistent"), "schemas", DEFAULT_MAX_FILE_BYTES);
        let good = r#"{"notifications": [
            {"name": "ops", "events": ["failed"], "webhook": {"url": "http://127.0.0.1:1/h", "headers": {"Authorization": {"env": "HOOK_AUTH"}}}},
            {"name": "pager", "command": {"run": "true", "timeout": "3s"}, "retry": {"initial": "1s", "max": "1m"}}
        ]}"#;
        let config = parse("project-config.json", good, &schemas).unwrap();
        assert_eq!(config.notifications.len(), 2);
        assert_eq!(config.notifications[0].events, [crate::notify::Event::Failed]);
        assert_eq!(config.notifications[1].retry.max, Duration::from_secs(60));
        // A header's variable is a secret from the load on.
        assert!(config.secrets.contains(&"HOOK_AUTH".to_owned()), "{:?}", config.secrets);
        let cases = [
            (
                r#"{"notifications": [{"name": "a", "command": "true"}, {"name": "a", "command": "true"}]}"#,
                "/notifications/1/name",
            ),
            (
                r#"{"notifications": [{"name": "a", "events": ["deployd"], "command": "true"}]}"#,
                "/notifications/0/events/0",
            ),
            (r#"{"notifications": [{"name": "a"}]}"#, "/notifications/0"),
            (
                r#"{"notifications": [{"name": "a", "webhook": {"url": "http://x", "headers": {"X": "plain"}}}]}"#,
                "/notifications/0/webhook/headers/X",
            ),
            (
                r#"{"notifications": [{"name": "a", "command": "true", "retry": {"initial": "10"}}]}"#,
                "/notifications/0/retry/initial",
            ),
        ];
        for (text, pointer) in cases {
            let problems = parse("project-config.json", text, &schemas).unwrap_err();
            assert!(
                problems.iter().any(|p| p.file == "project-config.json" && p.pointer.as_deref() == Some(pointer)),
                "{text}: {problems:?}"
            );
        }
    }

    #[test]
    fn every_kind_of_duration_key_refuses_a_value_it_cannot_hold_at_its_key() {
        let schemas = Schemas::new(std::path::PathBuf::from("/nonexistent"), "schemas", DEFAULT_MAX_FILE_BYTES);
        let huge = "99999999999999999999999d";
        let cases = [
            (r#"{"devops": {"shutdown_grace": "HUGE"}}"#, "/devops/shutdown_grace"),
            (r#"{"devops": {"verification_timeout": "HUGE"}}"#, "/devops/verification_timeout"),
            (r#"{"git": {"fetch_interval": "HUGE"}}"#, "/git/fetch_interval"),
            (
                r#"{"environments": {"staging": {"provider": "command", "commands": {"deploy": {"run": "true", "timeout": "HUGE"}}}}}"#,
                "/environments/staging/commands/deploy/timeout",
            ),
            (
                r#"{"environments": {"staging": {"provider": "command", "commands": {"deploy": "true"}, "health_checks": [{"name": "up", "command": "true", "interval": "HUGE"}]}}}"#,
                "/environments/staging/health_checks/0/interval",
            ),
            (
                r#"{"environments": {"staging": {"provider": "command", "commands": {"deploy": "true"}, "metrics": {"command": "true", "error_rate": "/e", "timeout": "HUGE"}}}}"#,
                "/environments/staging/metrics/timeout",
            ),
            (
                r#"{"environments": {"staging": {"provider": "command", "commands": {"deploy": "true"}, "analysis": {"interval": "HUGE"}}}}"#,
                "/environments/staging/analysis/interval",
            ),
        ];
        for (text, pointer) in cases {
            let text = text.replace("HUGE", huge);
            let problems = parse("project-config.json", &text, &schemas).unwrap_err();
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            let message = problems[0].to_string();
            assert!(message.contains(&format!("at {pointer}: `{huge}` is too long a duration")), "{message}");
        }
    }

    #[test]
    fn durations_are_read_once_into_the_typed_config_with_defaults_from_one_place() {
        let schemas = Schemas::new(std::path::PathBuf::from("/nonexistent"), "schemas", DEFAULT_MAX_FILE_BYTES);
        let config = parse("project-config.json", r#"{"devops": {"shutdown_grace": "1.5s"}}"#, &schemas).unwrap();
        assert_eq!(config.devops.shutdown_grace, Duration::from_millis(1500));
        assert_eq!(config.devops.poll_interval, defaults::POLL_INTERVAL);
        assert_eq!(Config::default().devops.verification_timeout, Duration::from_secs(300));
        assert_eq!(Config::default().git.fetch_interval, defaults::GIT_FETCH_INTERVAL);
    }

    #[test]
    fn configured_paths_stay_inside() {
        assert!(relative_inside("docs/tasks.json").is_ok());
        assert_eq!(relative_inside("../tasks.json"), Err(OutsidePath::Climbs(PathBuf::from("../tasks.json"))));
        assert_eq!(
            relative_inside("/etc/passwd").unwrap_err().to_string(),
            "`/etc/passwd` is absolute; paths are relative to the workspace"
        );
    }
}
