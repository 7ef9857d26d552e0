//! The ten node actions, and the agent node's dispatch to `crate::agent`. Each reads its inputs, does its work through `exec`, and writes its
//! artifacts through `render`; the engine around it handles claims, gates and transitions.

mod build;
mod deployment;
mod feedback;
mod infra;
mod views;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::artifacts::{self, Artifact};
use crate::engine::gates::{self, Decision};
use crate::environment::record::{Event, EventKind, Provenance, ReleaseRef};
use crate::environment::view;
use crate::exec::command::{Runner, StepResult};
use crate::release::{self, Lookup, Release, ReleaseError, Scope};
use crate::render::Renderer;
use crate::rollout::analysis::Baseline;
use crate::rollout::deploy::{self, DeployReport, EnvConfig, Monitoring, RollbackReport, Rollout};
use crate::rollout::deploy_lock::{self, DeployLock, DeployLockError, Holder};
use crate::rollout::journal::{Journal, Pause, Phase};
use crate::schema::SchemaName;
use crate::sha256;
use crate::task::{Task, TaskStatus};
use crate::workflow::graph::{Action, Environment, Node};
use crate::workspace::{Workspace, write};

pub(crate) use build::*;
pub(crate) use deployment::*;
pub(crate) use feedback::*;
pub(crate) use infra::*;
pub(crate) use views::*;

/// How a node ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Design, setup and build nodes.
    Done,
    Deployed,
    RolledBack {
        reason: String,
    },
    Failed {
        step: String,
        reason: String,
        log: String,
    },
    /// The node could not go on and waits: a rollout paused for a human's decision
    /// (`escalate`: a human request is filed), or the environment is busy.
    Blocked {
        reason: String,
        escalate: bool,
    },
}

impl Outcome {
    /// The outcome without its details, as `run` reports it.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Done => OutcomeKind::Done,
            Outcome::Deployed => OutcomeKind::Deployed,
            Outcome::RolledBack { .. } => OutcomeKind::RolledBack,
            Outcome::Failed { .. } => OutcomeKind::Failed,
            Outcome::Blocked { .. } => OutcomeKind::Blocked,
        }
    }
}

/// How a node ended, without the details: what `run --json`, the audit log and the metrics
/// call it (`done`, `deployed`, `rolled_back`, `failed`, `blocked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Done,
    Deployed,
    RolledBack,
    Failed,
    Blocked,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Done => "done",
            OutcomeKind::Deployed => "deployed",
            OutcomeKind::RolledBack => "rolled_back",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Blocked => "blocked",
        }
    }

    /// The status the node's task gets.
    pub fn task_status(self) -> TaskStatus {
        match self {
            OutcomeKind::Done => TaskStatus::Done,
            OutcomeKind::Deployed => TaskStatus::Deployed,
            OutcomeKind::RolledBack => TaskStatus::RolledBack,
            OutcomeKind::Failed => TaskStatus::Failed,
            OutcomeKind::Blocked => TaskStatus::Blocked,
        }
    }

    /// `failed` or `rolled_back`.
    pub fn is_failure(self) -> bool {
        matches!(self, OutcomeKind::Failed | OutcomeKind::RolledBack)
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so column widths in `run`'s table apply.
        f.pad(self.as_str())
    }
}

/// A node's failure before it could finish, by kind. Each kind names the step it failed at
/// (`step()`), says why in words (`reason()`: as the task's outcome and the reports say it), and
/// keeps the error that caused it as its typed source; a failed command keeps its log (`log()`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A command the node ran failed or timed out: its summary (the exit status, or that it
    /// timed out, naming the log) and its log.
    #[error("{step}: {reason}")]
    Command { step: String, reason: String, log: String },
    /// A check of the environment failed (a staging health check).
    #[error("{step}: {reason}")]
    Check { step: &'static str, reason: String },
    /// Something the node needs is missing (a release artifact after the build).
    #[error("{step}: {reason}")]
    Missing { step: &'static str, reason: String },
    /// What the node was given does not let it go on: a setting, a file in its way, a release
    /// that is not what was built. The words say what.
    #[error("{step}: {reason}")]
    Refused { step: String, reason: String },
    /// A workflow file or path it cannot read or resolve in the workspace.
    #[error("{step}: {source}")]
    Input {
        step: &'static str,
        #[source]
        source: Box<crate::workspace::diagnostic::Diagnostic>,
    },
    /// The decision file it acts on cannot be read.
    #[error("decision: {}", joined(.0))]
    Decision(Vec<crate::workspace::diagnostic::Diagnostic>),
    /// The environment, missing or invalid in the config.
    #[error("environment: {0}")]
    Environment(#[source] deploy::EnvError),
    /// The environment's record could not be read or written.
    #[error("record: {0}")]
    Record(#[source] crate::environment::record::RecordError),
    /// The rollout journal could not be read or written.
    #[error("journal: {0}")]
    Journal(#[source] crate::rollout::journal::JournalError),
    /// The environment's deploy lock could not be taken.
    #[error("lock: {0}")]
    Lock(#[source] DeployLockError),
    /// A host's lock could not be taken (`ssh`).
    #[error("lock: {0}")]
    HostLock(#[source] crate::rollout::ssh::HostLockError),
    /// A template would not render, or what it rendered is not what its schema says.
    #[error("{step}: {source}")]
    Render {
        step: &'static str,
        #[source]
        source: crate::render::RenderError,
    },
    /// A release against its `SHA256SUMS`, or its copy in the history.
    #[error("{step}: {source}")]
    Release {
        step: &'static str,
        #[source]
        source: ReleaseError,
    },
    /// A file could not be read, hashed, written, copied or removed.
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The same, said with what it was doing (`cannot copy `dist/``).
    #[error("{step}: {doing}: {source}")]
    Write {
        step: &'static str,
        doing: String,
        #[source]
        source: std::io::Error,
    },
    /// An agent node whose attempts did not pass opsflow's checks (each attempt's verdict in
    /// the words), with the last attempt's log.
    #[error("agent: {reason}")]
    Agent { reason: String, log: String },
}

fn joined(problems: &[crate::workspace::diagnostic::Diagnostic]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl NodeError {
    /// A failure the node states in words ([`NodeError::Refused`]).
    pub fn new(step: &str, reason: impl Into<String>) -> NodeError {
        NodeError::Refused { step: step.to_owned(), reason: reason.into() }
    }

    /// The failed command of `step`, with its summary and log.
    fn command(step: &StepResult) -> NodeError {
        NodeError::Command { step: step.name.clone(), reason: step.summary(), log: step.log.clone() }
    }

    /// A file operation of `step` that failed, for `map_err`.
    fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
        move |source| NodeError::Io { step, source }
    }

    /// A workflow file or path of `step` that cannot be used, for `map_err`.
    fn input(step: &'static str) -> impl FnOnce(crate::workspace::diagnostic::Diagnostic) -> NodeError {
        move |source| NodeError::Input { step, source: Box::new(source) }
    }

    /// A template of `step` that would not render, for `map_err`.
    fn render(step: &'static str) -> impl FnOnce(crate::render::RenderError) -> NodeError {
        move |source| NodeError::Render { step, source }
    }

    /// The step it failed at, as the outcome names it (`deploy`, `journal`, `collect`).
    pub fn step(&self) -> &str {
        match self {
            NodeError::Command { step, .. } | NodeError::Refused { step, .. } => step,
            NodeError::Check { step, .. }
            | NodeError::Missing { step, .. }
            | NodeError::Input { step, .. }
            | NodeError::Render { step, .. }
            | NodeError::Release { step, .. }
            | NodeError::Io { step, .. }
            | NodeError::Write { step, .. } => step,
            NodeError::Decision(_) => "decision",
            NodeError::Agent { .. } => "agent",
            NodeError::Environment(_) => "environment",
            NodeError::Record(_) => "record",
            NodeError::Journal(_) => "journal",
            NodeError::Lock(_) | NodeError::HostLock(_) => "lock",
        }
    }

    /// Why, in the words the task's outcome and the reports give: the message after the step.
    pub fn reason(&self) -> String {
        match self {
            NodeError::Command { reason, .. }
            | NodeError::Agent { reason, .. }
            | NodeError::Check { reason, .. }
            | NodeError::Missing { reason, .. }
            | NodeError::Refused { reason, .. } => reason.clone(),
            NodeError::Input { source, .. } => source.to_string(),
            NodeError::Decision(problems) => joined(problems),
            NodeError::Environment(source) => source.to_string(),
            NodeError::Record(source) => source.to_string(),
            NodeError::Journal(source) => source.to_string(),
            NodeError::Lock(source) => source.to_string(),
            NodeError::HostLock(source) => source.to_string(),
            NodeError::Render { source, .. } => source.to_string(),
            NodeError::Release { source, .. } => source.to_string(),
            NodeError::Io { source, .. } => source.to_string(),
            NodeError::Write { doing, source, .. } => format!("{doing}: {source}"),
        }
    }

    /// The failed command's log; empty for every other kind.
    pub fn log(&self) -> &str {
        match self {
            NodeError::Command { log, .. } | NodeError::Agent { log, .. } => log,
            _ => "",
        }
    }
}

/// Everything one node execution needs and produces.
pub struct NodeRun<'a> {
    pub ws: &'a Workspace,
    pub renderer: &'a Renderer,
    pub runner: Runner,
    pub node: &'a Node,
    pub task: &'a Task,
    pub run_id: String,
    /// The unit and version this run works on (either may be unknown, empty).
    pub release: Release,
    pub inputs: Vec<Artifact>,
    pub artifacts: Vec<String>,
    /// What else the run completed, by action (verification after a production deploy): the
    /// engine marks the graph's nodes of those actions complete, whatever they are named.
    pub also_completed: Vec<Action>,
    pub summary: String,
    pub deploy: Option<DeployReport>,
    /// `approved_by` of the approval that let this release through, when one did.
    pub approved_by: Option<String>,
    /// Releases this run rolled back whose own tasks must now say `rolled_back`.
    pub rolled_back: Vec<Release>,
    /// Checks that only warned when the node was let through (`{"name", "detail"}`), shown in
    /// its artifacts (R08).
    pub warnings: Vec<Value>,
    /// A person's decision about a paused rollout that this run carries out, for its reports.
    pub decided: Option<Decided>,
    /// Why the rollout this run paused waits for a person's decision: a known issue in its
    /// reports until the decision renders them again.
    pub waits_for_decision: Option<String>,
    /// Records this run could not write (a report's later patch, a history copy, a change of
    /// the environment's record), each naming its file: the engine fails the run with them.
    pub record_errors: Vec<String>,
    /// The run whose claim the task entry carries, when it is not this run's own: recovery
    /// records an interrupted run on the claim the dead runner left.
    pub claim: Option<String>,
    /// The environment has changed (the switch, a deploy command, a rollback): from now on a
    /// report or history copy that cannot be written is named in `record_errors` and the run
    /// goes on, so that a live release is verified (or rolled back) and recorded as what it
    /// is, never called failed because a record could not be written.
    pub after_switch: bool,
    /// An agent node's attempts, as the task's `outcome.attempts` lists them.
    pub attempts: Vec<Value>,
    /// What an agent node's attempts spent (tokens, cost) and whether any reported a cost.
    pub agent_usage: Option<(crate::agent::usage::Usage, bool)>,
    /// Set while this run renders another release's reports again (see `views.rs`): the plain
    /// files are replaced only while they are still that release's.
    pub(crate) rerender: Option<Box<ReportFacts>>,
}

/// A person's decision about a paused rollout: `proceed` or `rollback`, and the sentence that
/// says who decided what and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Decided {
    pub decision: String,
    pub by: String,
    pub why: String,
    pub at: String,
}

impl NodeRun<'_> {
    pub fn task_id(&self) -> String {
        self.task.id.clone()
    }

    fn env_vars(&self, environment: &str) -> Vec<(String, String)> {
        vec![("OPSFLOW_ENV".into(), environment.to_owned())]
    }

    /// The fields every template can use.
    fn base_context(&self) -> Value {
        let config = &self.ws.config;
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|a| {
                let outline = artifacts::outline(&a.body);
                json!({"file": a.file, "sha256": a.sha256, "headings": outline.headings, "items": outline.items})
            })
            .collect();
        let environments: Vec<Value> = config
            .environments
            .iter()
            .map(|(name, env)| {
                let mut env = env.clone();
                if let Some(map) = env.as_object_mut() {
                    map.insert("name".into(), name.clone().into());
                    map.entry("strategy").or_insert_with(|| Value::String(String::new()));
                    map.entry("path").or_insert_with(|| Value::String(String::new()));
                    map.entry("health_checks").or_insert_with(|| json!([]));
                    map.entry("smoke_tests").or_insert_with(|| json!([]));
                }
                env
            })
            .collect();
        json!({
            "project": config.project.clone().unwrap_or_default(),
            "agent": config.agent.name,
            "node": self.report_node(),
            "run_id": self.run_id,
            "generated_at": crate::time::now_rfc3339(),
            // What the environment's record says of the release's rollback, when it was
            // rolled back (see `views.rs`).
            "rolled_back": null,
            "unit_id": self.release.unit,
            "version": self.release.version.as_str(),
            "task": {"id": self.task.id, "title": self.task.title, "type": self.task.kind, "priority": self.task.priority.as_deref().unwrap_or("")},
            "inputs": inputs,
            "environments": environments,
            "gates": config.gates,
            "devops": {
                "require_human_approval": config.devops.require_human_approval,
                "approvers": config.devops.approvers,
                "monitoring_period": crate::duration::format_duration(config.devops.monitoring_period),
                "monitoring_interval": crate::duration::format_duration(config.devops.monitoring_interval),
                "auto_rollback_enabled": config.devops.auto_rollback_enabled,
                "rollback_triggers": config.devops.rollback_triggers,
            },
            "release": config.release,
            "dev": config.dev,
            "ci": config.ci,
            "feedback": feedback_list(&config.feedback),
            "warnings": self.warnings,
        })
    }

    /// The node a report of this run is of: the run's own, or the deploy node whose reports
    /// it renders again.
    fn report_node(&self) -> &str {
        self.rerender.as_ref().map_or(self.node.name.as_str(), |r| r.node.as_str())
    }

    /// The inputs (`{file, sha256}`) a report of this run names: the run's own, or those of the
    /// deploy run whose reports it renders again.
    pub(crate) fn report_inputs(&self) -> Vec<Value> {
        match &self.rerender {
            Some(rerender) => rerender.inputs.clone(),
            None => self.inputs.iter().map(|a| json!({"file": a.file, "sha256": a.sha256})).collect(),
        }
    }

    /// The release this run works on.
    pub fn release(&self) -> Release {
        self.release.clone()
    }

    /// Where an artifact goes (see `release::output_path`).
    fn artifact_path(&self, name: &str) -> String {
        release::output_path(self.ws, name, &self.release())
    }

    /// Renders and writes a markdown artifact; returns its path.
    pub fn write_markdown(
        &mut self,
        name: &str,
        relative: Option<String>,
        status: &str,
        extra: Value,
    ) -> Result<String, NodeError> {
        self.write_markdown_with(name, relative, status, extra, Map::new())
    }

    /// [`NodeRun::write_markdown`] with more front matter fields.
    pub fn write_markdown_with(
        &mut self,
        name: &str,
        relative: Option<String>,
        status: &str,
        extra: Value,
        fields: Map<String, Value>,
    ) -> Result<String, NodeError> {
        let template = if name.starts_with("Deploy-") { "Deploy-report.md" } else { name };
        let mut context = self.base_context();
        merge(&mut context, extra);
        let mut front = Map::new();
        front.insert("node".into(), self.report_node().into());
        // Environment artifacts belong to no release: they name none, so any release uses them.
        let of_release = release::scope(name) == Scope::Release;
        if of_release && !self.release.unit.is_empty() {
            front.insert("unit_id".into(), self.release.unit.clone().into());
        }
        if of_release && !self.release.version.is_empty() {
            front.insert("version".into(), self.release.version.to_string().into());
        }
        front.insert("status".into(), status.into());
        front.extend(fields);
        front.insert("run_id".into(), self.run_id.clone().into());
        front.insert("generated_at".into(), crate::time::now_rfc3339().into());
        front.insert("generated_by".into(), self.ws.config.agent.name.clone().into());
        front.insert("inputs".into(), self.report_inputs().into());
        let tags: Vec<Value> = [Some("opsflow"), name.split('-').next(), Some(self.report_node())]
            .into_iter()
            .flatten()
            .map(|t| Value::String(t.to_owned()))
            .collect();
        front.entry("tags").or_insert(tags.into());
        let text = self.renderer.markdown(template, &front, &context).map_err(NodeError::render("render"))?;
        let relative = relative.unwrap_or_else(|| self.artifact_path(name));
        self.write(&relative, &text)?;
        if of_release {
            self.keep(name, &text)?;
        }
        Ok(relative)
    }

    /// Keeps this release's copy of an output in its history folder.
    fn keep(&mut self, name: &str, text: &str) -> Result<(), NodeError> {
        let masked = self.runner.secrets.mask(text);
        let kept = release::keep_in_history(self.ws, &self.release(), name, &masked)
            .map(|_| ())
            .map_err(|source| NodeError::Release { step: "history", source });
        self.unless_switched(kept)
    }

    fn write(&mut self, relative: &str, text: &str) -> Result<(), NodeError> {
        if self.rerender.is_some() && !names_release(self.ws, relative, &self.release) {
            // Another release's report by now: the rendering goes to the history copy only.
            return Ok(());
        }
        let written = self.ws.inside(relative).map_err(NodeError::input("write")).and_then(|path| {
            let masked = self.runner.secrets.mask(text);
            write::write_file(&self.ws.root, &path, masked.as_bytes()).map_err(NodeError::io("write"))
        });
        if written.is_ok() && !self.artifacts.iter().any(|a| a == relative) {
            self.artifacts.push(relative.to_owned());
        }
        self.unless_switched(written)
    }

    /// A record that failed: the node's failure before the environment changed; after it, a
    /// failed write named in `record_errors` while the run goes on.
    pub(crate) fn unless_switched(&mut self, result: Result<(), NodeError>) -> Result<(), NodeError> {
        match result {
            Err(error) if self.after_switch => {
                self.record_errors.push(format!("{} (a record of {})", error.reason(), self.release.label()));
                Ok(())
            }
            other => other,
        }
    }

    fn run_step(&self, step: &str, command: &str, env: &[(String, String)]) -> Result<StepResult, NodeError> {
        let result = self.runner.run(step, command, None, None, env);
        if result.success { Ok(result) } else { Err(NodeError::command(&result)) }
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

/// The environment a deploy or verification node works on, from the workflow definition.
fn environment(node: &Node) -> &'static str {
    node.changes_environment().map_or("production", Environment::name)
}

/// Runs the node's action.
pub fn run(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    match run.node.action {
        Action::EnvironmentDesign => environment_design(run),
        Action::DevEnvironmentSetup => dev_environment_setup(run),
        Action::CiPipelineSetup => ci_pipeline_setup(run),
        Action::StagingEnvironmentSetup => staging_environment_setup(run),
        Action::BuildRelease => build_release(run),
        Action::DeployToStaging | Action::DeployToProduction => deploy_to(run, environment(run.node)),
        Action::PostDeployVerification => verification(run, environment(run.node)),
        Action::RollbackDeployment => rollback_deployment(run),
        Action::DeploymentAndContinuousFeedback => feedback(run),
        Action::Agent => crate::agent::run(run),
    }
}

/// Makes a run directory path for a run id.
pub fn run_dir(ws: &Workspace, run_id: &str) -> PathBuf {
    ws.path(&ws.config.paths.runtime).join("runs").join(run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_named_as_run_json_and_the_task_status_say_it() {
        let outcomes = [
            (Outcome::Done, "done"),
            (Outcome::Deployed, "deployed"),
            (Outcome::RolledBack { reason: "r".into() }, "rolled_back"),
            (Outcome::Failed { step: "s".into(), reason: "r".into(), log: String::new() }, "failed"),
            (Outcome::Blocked { reason: "r".into(), escalate: false }, "blocked"),
        ];
        for (outcome, name) in outcomes {
            let kind = outcome.kind();
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
            assert_eq!(kind.task_status().as_str(), name);
            assert_eq!(format!("[{kind:<12}]"), format!("[{name:<12}]"));
            assert_eq!(kind.is_failure(), matches!(name, "failed" | "rolled_back"));
        }
    }

    /// Each kind of node failure says its step and reason as the outcome did before it was
    /// typed (`step: reason`), keeps a command's log, and keeps the error that caused it as
    /// its source, of its own type.
    #[test]
    fn a_node_error_keeps_its_step_its_words_and_its_typed_source() {
        use std::error::Error as _;
        let disk = || std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let missing = deploy::EnvError::Missing { config: "project-config.json".into(), name: "staging".into() };
        let cases: Vec<(NodeError, &str, &str)> = vec![
            (
                NodeError::Command { step: "deploy".into(), reason: "exit 3 (log: d.log)".into(), log: "boom".into() },
                "deploy",
                "exit 3 (log: d.log)",
            ),
            (NodeError::new("pipeline", "ci.yml exists"), "pipeline", "ci.yml exists"),
            (NodeError::Environment(missing), "environment", "project-config.json has no `environments.staging`"),
            (NodeError::io("checksum")(disk()), "checksum", "No space left on device"),
            (
                NodeError::Write { step: "collect", doing: "cannot copy `dist/`".into(), source: disk() },
                "collect",
                "cannot copy `dist/`: No space left on device",
            ),
        ];
        for (error, step, reason) in cases {
            assert_eq!((error.step(), error.reason().as_str()), (step, reason));
            assert_eq!(error.to_string(), format!("{step}: {reason}"));
            match &error {
                NodeError::Command { .. } => assert_eq!(error.log(), "boom"),
                _ => assert_eq!(error.log(), ""),
            }
            match &error {
                NodeError::Command { .. } | NodeError::Refused { .. } => assert!(error.source().is_none()),
                NodeError::Environment(_) => {
                    assert!(error.source().unwrap().downcast_ref::<deploy::EnvError>().is_some())
                }
                _ => assert!(error.source().unwrap().downcast_ref::<std::io::Error>().is_some()),
            }
        }
    }
}
