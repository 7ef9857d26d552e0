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
    /// The whole file as written, for the sections the engine reads.
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
    fn entries(&self) -> [(&'static str, &str); 13] {
        [
            ("tasks", &self.tasks),
            ("state", &self.state),
            ("workflow", &self.workflow),
            ("artifacts", &self.artifacts),
            ("human_requests", &self.human_requests),
            ("deployments", &self.deployments),
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
        config.raw = value;
        for (key, path) in config.paths.entries() {
            if let Err(why) = relative_inside(path) {
                problems.push(
                    Diagnostic::new(label, Kind::OutsideWorkspace, format!("`paths.{key}` {why}"))
                        .pointer(format!("/paths/{key}"))
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
    Ok(Duration::from_secs_f64(seconds))
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
    fn configured_paths_stay_inside() {
        assert!(relative_inside("docs/tasks.json").is_ok());
        assert!(relative_inside("../tasks.json").is_err());
        assert!(relative_inside("/etc/passwd").is_err());
    }
}
