//! The `agent` object of an agent node in `workflow.json`: the command that runs another agent
//! of the workflow, the prompt it gets, the outputs it must write (each with its schema), the
//! commands that must pass after them, and its attempts, timeout and budget. Data only: the
//! runner is `crate::agent`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::duration_text;

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
