//! The `agent` object of an agent node in `workflow.json`: the command that runs another agent
//! of the workflow, the prompt it gets, the outputs it must write (each with its schema), the
//! commands that must pass after them, and its attempts, timeout and budget. Data only: the
//! runner is `crate::agent`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::duration_text;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};

/// How many attempts an agent node makes by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// How long one attempt may run by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The built-in prompt template.
pub const DEFAULT_PROMPT: &str = "agent-prompt.md";
/// How many times an attempt that failed for a transient reason (the command could not start,
/// a signal it did not ask for, a non-zero exit that touched no output) is tried again, apart
/// from `max_attempts`.
pub const DEFAULT_TRANSIENT_RETRIES: u32 = 2;
/// The first wait before a transient failure is tried again; it doubles each time.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Run with `sh -c` in the workspace, in its own process group; the prompt on its stdin.
    pub command: String,
    /// The prompt's template: `templates/<prompt>.hbs` of the workspace, else the built-in one.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// What the agent must write, each path a template over the task (`{{unit_id}}`).
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// Commands that must pass once the outputs are valid (`cargo test`, a linter).
    #[serde(default)]
    pub verify: Vec<String>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default = "default_transient_retries")]
    pub transient_retries: u32,
    #[serde(default = "default_backoff", with = "duration_text")]
    pub backoff: Duration,
}

/// One declared output: a workspace-relative path (a template) and the schema it must pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub path: String,
    /// A schema file name: built-in (`qa-report.schema.json`) or the workspace's `schemas/`.
    /// For a markdown file it applies to the front matter, for JSON to the whole document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// What the task may spend across all its attempts; a figure left out is not limited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default, with = "duration_text::option", skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// `stop` (the default): a budget that runs out fails the task; `warn`: it is said and the
    /// attempts go on.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    #[default]
    Stop,
    Warn,
}

fn default_prompt() -> String {
    DEFAULT_PROMPT.to_owned()
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_transient_retries() -> u32 {
    DEFAULT_TRANSIENT_RETRIES
}

fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}

/// What `workflow.json`'s schema cannot say about its agent nodes: each output's schema exists
/// (built-in or in the workspace's schemas folder), its path renders and stays in the
/// workspace and is not a file that decides the workflow, and a prompt template other than
/// the built-in one exists. Each problem points at its key.
pub fn problems(ws: &Workspace, graph: &super::graph::Graph) -> Vec<Diagnostic> {
    let file = ws.config.paths.workflow.as_str();
    let paths = &ws.config.paths;
    let forbidden =
        [paths.tasks.as_str(), paths.state.as_str(), paths.workflow.as_str(), crate::config::DEFAULT_CONFIG_FILE];
    let mut engine = handlebars::Handlebars::new();
    engine.set_strict_mode(true);
    engine.register_escape_fn(handlebars::no_escape);
    let mut problems = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(spec) = &node.agent else { continue };
        let at = |key: &str| format!("/nodes/{index}/agent/{key}");
        if spec.prompt != DEFAULT_PROMPT {
            let template = format!("{}/{}.hbs", paths.templates.trim_end_matches('/'), spec.prompt);
            if !ws.path(&template).is_file() {
                problems.push(
                    Diagnostic::new(file, Kind::Schema, format!("the prompt template {template} does not exist"))
                        .pointer(at("prompt")),
                );
            }
        }
        for (o, output) in spec.outputs.iter().enumerate() {
            let sample = serde_json::json!({
                "unit_id": "UNIT-001", "version": "1.0.0", "task_id": "TASK-1", "run_id": "RUN", "node": node.name,
            });
            match engine.render_template(&output.path, &sample) {
                Err(e) => problems.push(
                    Diagnostic::new(file, Kind::Schema, format!("the output path does not render: {e}"))
                        .pointer(at(&format!("outputs/{o}/path"))),
                ),
                Ok(path) => {
                    if let Err(why) = crate::config::relative_inside(&path) {
                        problems.push(
                            Diagnostic::new(file, Kind::Schema, format!("the output path `{path}` {why}"))
                                .pointer(at(&format!("outputs/{o}/path"))),
                        );
                    } else if forbidden.contains(&path.as_str()) {
                        problems.push(
                            Diagnostic::new(
                                file,
                                Kind::Schema,
                                format!("`{path}` decides the workflow: an agent node may not declare it as an output"),
                            )
                            .pointer(at(&format!("outputs/{o}/path"))),
                        );
                    }
                }
            }
            if let Some(schema) = &output.schema {
                let built_in = crate::schema::EMBEDDED.iter().any(|(name, _)| name == schema);
                let local = format!("{}/{schema}", paths.schemas.trim_end_matches('/'));
                if !built_in && !ws.path(&local).is_file() {
                    problems.push(
                        Diagnostic::new(
                            file,
                            Kind::Schema,
                            format!("the schema `{schema}` is neither built in nor in {local}"),
                        )
                        .pointer(at(&format!("outputs/{o}/schema"))),
                    );
                }
            }
        }
    }
    problems
}
