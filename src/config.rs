//! `project-config.json`: opsflow's configuration, validated by its schema, with defaults.
//!
//! The file is optional. It is checked against `project-config.schema.json` first (so every
//! typo and every bare number where a duration belongs is reported with its key), then read
//! into typed structs. An invalid config is reported and the defaults stand in, so `validate`
//! can go on checking the rest; commands that act refuse to run on it.

use std::path::{Component, Path};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::schema::{SchemaName, Schemas};
use crate::workspace::diagnostic::{Diagnostic, Kind};
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
    /// The whole file as written.
    #[serde(skip)]
    pub raw: Value,
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
            raw: Value::Object(Default::default()),
        }
    }
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
    pub deployment_report: String,
    pub completion_signal: String,
    pub schemas: String,
    pub templates: String,
    pub runtime: String,
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
            deployment_report: "ARTIFACTS/devops-engineer/deployment-report.json".into(),
            completion_signal: "ARTIFACTS/system/stage-completion-signal.json".into(),
            schemas: "schemas".into(),
            templates: "templates".into(),
            runtime: ".opsflow".into(),
        }
    }
}

impl Paths {
    pub fn entries(&self) -> [(&'static str, &str); 14] {
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

/// `devops`: how the runner behaves. Durations stay strings until used (the schema checked them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Devops {
    pub poll_interval: String,
    pub debounce: String,
    pub require_human_approval: bool,
    pub approvers: Vec<String>,
    pub monitoring_period: String,
    pub monitoring_interval: String,
    pub auto_rollback_enabled: bool,
    pub rollback_triggers: RollbackTriggers,
    pub verification_timeout: String,
    pub shutdown_grace: String,
}

impl Default for Devops {
    fn default() -> Self {
        Devops {
            poll_interval: "5m".into(),
            debounce: "50ms".into(),
            require_human_approval: true,
            approvers: Vec::new(),
            monitoring_period: "60m".into(),
            monitoring_interval: "60s".into(),
            auto_rollback_enabled: true,
            rollback_triggers: RollbackTriggers::default(),
            verification_timeout: "5m".into(),
            shutdown_grace: "30s".into(),
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

/// `git`: whether `run` and `watch` sync the workspace through a git remote, and which.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Git {
    pub sync: bool,
    pub remote: String,
    pub branch: String,
    pub fetch_interval: String,
}

impl Default for Git {
    fn default() -> Self {
        Git { sync: false, remote: "origin".into(), branch: "main".into(), fetch_interval: "5s".into() }
    }
}

impl Git {
    /// How often `watch` fetches when nothing changed locally.
    pub fn fetch_every(&self) -> Duration {
        parse_duration(&self.fetch_interval).unwrap_or(Duration::from_secs(5)).max(Duration::from_millis(100))
    }
}

impl Devops {
    /// A configured duration; the schema already checked the syntax, so this only falls back
    /// on a value it let through that cannot be a duration.
    pub fn duration(value: &str, default: Duration) -> Duration {
        parse_duration(value).unwrap_or(default)
    }
}

impl Config {
    /// Loads the config at `path` (`label` as shown to users). Returns the config to use and
    /// the problems found; with problems, the config is the defaults.
    pub fn load(path: &Path, label: &str, schemas: &Schemas, required: bool) -> (Config, Vec<Diagnostic>) {
        let text = match read::read_text(path, label, DEFAULT_MAX_FILE_BYTES) {
            Ok(Some(text)) => text,
            Ok(None) if !required => return (Config::default(), Vec::new()),
            Ok(None) => {
                return (Config::default(), vec![Diagnostic::new(label, Kind::Io, "config file does not exist")]);
            }
            Err(diagnostic) => return (Config::default(), vec![diagnostic]),
        };
        match Config::parse(label, &text, schemas) {
            Ok(config) => (config, Vec::new()),
            Err(diagnostics) => (Config::default(), diagnostics),
        }
    }

    pub fn parse(label: &str, text: &str, schemas: &Schemas) -> Result<Config, Vec<Diagnostic>> {
        let value = read::parse_json(label, text).map_err(|d| vec![d])?;
        let mut problems: Vec<Diagnostic> =
            schemas.validate(SchemaName::Config, label, &value).into_iter().map(|d| d.locate_in(text)).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut config: Config = serde_json::from_value(value.clone())
            .map_err(|e| vec![Diagnostic::new(label, Kind::Config, format!("cannot read config: {e}"))])?;
        duration_problems(label, text, &value, &mut String::new(), &mut problems);
        config.raw = value;
        // Every configured path opsflow writes to or reads from must stay in the workspace.
        let mut configured: Vec<(String, String, &str)> = config
            .paths
            .entries()
            .into_iter()
            .map(|(key, path)| (format!("paths.{key}"), format!("/paths/{key}"), path))
            .collect();
        configured.push(("ci.output".into(), "/ci/output".into(), config.ci.output.as_str()));
        for (i, entry) in config.release.artifacts.iter().enumerate() {
            configured.push((format!("release.artifacts[{i}]"), format!("/release/artifacts/{i}"), entry.as_str()));
        }
        for (name, env) in &config.environments {
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
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// True when `agent` names this runner: its name or one of its aliases.
    pub fn is_own_agent(&self, agent: &str) -> bool {
        agent == self.agent.name || self.agent.aliases.iter().any(|alias| alias == agent)
    }
}

/// Every string in the config shaped like a duration (digits and a unit) that is not one
/// `parse_duration` can hold, such as `"99999999999999999999h"`, which the schema's pattern
/// lets through: an error naming its key, instead of a fallback or a panic at use.
fn duration_problems(label: &str, text: &str, value: &Value, pointer: &mut String, problems: &mut Vec<Diagnostic>) {
    match value {
        Value::String(s) if looks_like_duration(s) => {
            if let Err(why) = parse_duration(s) {
                problems.push(Diagnostic::new(label, Kind::Config, why).pointer(pointer.clone()).locate_in(text));
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
        _ => {}
    }
}

/// Digits, an optional fraction, and one of the units `parse_duration` knows.
fn looks_like_duration(text: &str) -> bool {
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[number.len()..];
    matches!(unit, "ms" | "s" | "m" | "h" | "d")
        && number.starts_with(|c: char| c.is_ascii_digit())
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Checks that a configured path is relative and stays inside the workspace.
pub fn relative_inside(path: &str) -> Result<(), String> {
    let path = Path::new(path);
    if path.as_os_str().is_empty() {
        return Err("is empty".to_owned());
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("`{}` climbs out of the workspace with `..`", path.display())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{}` is absolute; paths are relative to the workspace", path.display()));
            }
        }
    }
    Ok(())
}

/// Parses a duration with a unit: `500ms`, `30s`, `5m`, `1h`, `1d`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration such as \"500ms\", \"30s\" or \"5m\""))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        "" => return Err(format!("`{text}` has no unit; write \"{text}s\", \"{text}ms\" or \"{text}m\"")),
        _ => return Err(format!("`{text}` has an unknown unit `{unit}`; use ms, s, m, h or d")),
    };
    // A duration past what `Duration` holds (about 584 billion years) is a mistake, not a
    // reason to panic.
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("300").unwrap_err().contains("no unit"));
        assert!(parse_duration("3y").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn overflowing_durations_are_errors_not_panics() {
        for text in ["99999999999999999999h", "99999999999999999999999d", &format!("{}s", "9".repeat(400))] {
            assert!(parse_duration(text).unwrap_err().contains("too long"), "{text}");
        }
        assert_eq!(parse_duration("36500d").unwrap(), Duration::from_secs(36500 * 86400));
    }

    #[test]
    fn an_overflowing_duration_in_the_config_names_its_key() {
        let schemas = Schemas::new(std::path::PathBuf::from("/nonexistent"), "schemas", DEFAULT_MAX_FILE_BYTES);
        let text = "{\n  \"devops\": {\"poll_interval\": \"99999999999999999999h\"}\n}\n";
        let problems = Config::parse("project-config.json", text, &schemas).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            "project-config.json:2:31: at /devops/poll_interval: `99999999999999999999h` is too long a duration"
        );
    }

    #[test]
    fn configured_paths_stay_inside() {
        assert!(relative_inside("docs/tasks.json").is_ok());
        assert!(relative_inside("../tasks.json").is_err());
        assert!(relative_inside("/etc/passwd").is_err());
    }
}
