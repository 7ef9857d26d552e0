//! The engine: find owned work, check gates, run nodes, record everything.
//!
//! `run` reconciles until a pass changes nothing: it reads `tasks.json` afresh on every pass
//! (state is truth, nothing is cached between passes), picks the first owned task that may
//! run, claims it, runs its node and records the result; a blocked task is recorded once and
//! re-checked on every later pass. A pass with nothing new writes no file.

pub mod artifacts;
pub mod gates;
pub mod readiness;
pub mod record;
pub mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::Exit;
use crate::audit::Audit;
use crate::environment::record::{Deployment, Record};
use crate::environment::view::{self, Containment};
use crate::exec::command::Runner;
use crate::exec::secrets::Secrets;
use crate::nodes::{self, NodeRun, Outcome, OutcomeKind};
use crate::release::{self, Lookup, Release};
use crate::render::Renderer;
use crate::rollout::{deploy, journal};
use crate::sha256;
use crate::store::StoreError;
use crate::store::edit::FieldOp;
use crate::store::state::StateEdit;
use crate::task::{Task, TaskStatus};
use crate::validate::{load_json, load_task_list};
use crate::workflow::graph::{Action, Environment, Graph, Node};
use crate::workflow::owns;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;
use artifacts::Artifact;
use gates::{Approval, Check};
use record::{BLOCKED_BY, HumanRequest};

/// Marks a task made up for a current node of `state.json` that no task stands for (see
/// [`Task::from_state`]).
const FROM_STATE: &str = "from_state";

/// The most passes one `run` makes; each pass that acts finishes a task, so this is only a
/// guard against a workflow that keeps creating work for itself.
const MAX_PASSES: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub cancel: Cancel,
    /// Skip looking for runs a dead runner left (see `Engine::recover`): a daemon does it
    /// once at its start; after that every run of its agent is its own.
    pub skip_recovery: bool,
    /// Sync through a git remote (`git.sync`): each pass starts in sync with the remote, and
    /// a claim counts only once pushed. `None`: the workspace is used as it is.
    pub sync: Option<Arc<crate::sync::GitSync>>,
}

/// How a daemon stops the engine: `stop` lets the running node finish and starts no other;
/// `abort` (after the grace period) also kills the running commands.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    pub stop: Arc<AtomicBool>,
    pub abort: Arc<AtomicBool>,
}

impl Cancel {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What one `run` did, for the command line.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub ran: Vec<Ran>,
    pub blocked: Vec<Blocked>,
    pub waiting: Vec<Waiting>,
    pub problems: Vec<Diagnostic>,
    /// `--dry-run` only: what would run.
    pub plan: Vec<Planned>,
    /// Writes of the workflow's records that failed (`state.json`, an outcome, block or
    /// rollback on `tasks.json`, the completion signal, `human-requests.md`), each naming the
    /// file and why: the files no longer say what happened, so the run fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ran {
    pub task: String,
    pub node: String,
    pub outcome: OutcomeKind,
    pub run_id: String,
    pub duration_ms: u64,
    pub summary: String,
    pub artifacts: Vec<String>,
    /// The environment a deploy node deployed to (by its action, whatever its name); `None`
    /// for the nodes that do not deploy.
    #[serde(skip)]
    pub deployed_to: Option<Environment>,
    /// Checks that only warned when the node was let through (`name: detail`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    pub task: String,
    pub node: String,
    pub reason: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub task: String,
    /// The ids of the unfinished `depends_on` entries.
    pub on: Vec<String>,
    /// Each of them with why it holds the task (see [`readiness::Wait::describe`]), the text
    /// `status` shows too.
    pub why: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub task: String,
    pub node: String,
    pub checks: Vec<Check>,
}

impl Summary {
    /// The exit code (docs/reference.md): failures first, then invalid input, then waiting on a gate.
    pub fn exit(&self) -> Exit {
        if !self.write_errors.is_empty() || self.ran.iter().any(|r| r.outcome.is_failure()) {
            Exit::Failed
        } else if !self.problems.is_empty() {
            Exit::Invalid
        } else if !self.blocked.is_empty() || self.ran.iter().any(|r| r.outcome == OutcomeKind::Blocked) {
            Exit::Waiting
        } else {
            Exit::Ok
        }
    }
}

/// Whether a task may run now.
enum Readiness {
    Ready { inputs: Vec<artifacts::Artifact>, checks: Vec<Check>, version: String },
    Blocked { checks: Vec<Check>, reason: String, qa_rejected: Option<String>, request_approval: bool },
    Invalid(Vec<Diagnostic>),
}

pub struct Engine<'w> {
    ws: &'w Workspace,
    graph: Graph,
    renderer: Arc<Renderer>,
    audit: Audit,
    secrets: Secrets,
    options: Options,
    /// The releases whose production deployment is open (pending, blocked or running) in the
    /// current pass: an approval without `version` counts only while a single release of its
    /// unit waits.
    open_production: std::cell::RefCell<Vec<Release>>,
    /// Production deployments that failed or were rolled back and are not resolved yet (their
    /// fix task is open and no human set `resolved_by`): later production deployments of that
    /// unit wait (seed 000, "Handling Deployment Failures": block subsequent deployments until
    /// resolved).
    unresolved: std::cell::RefCell<Vec<Unresolved>>,
    /// False while the git remote is unreachable or the sync stopped: no new claims.
    claims_allowed: std::cell::Cell<bool>,
    /// Failed writes of the workflow's records, for the summary (see [`Summary::write_errors`]).
    write_errors: std::cell::RefCell<Vec<String>>,
}

/// A production deployment that failed or was rolled back, and its open fix task.
struct Unresolved {
    unit: String,
    task: String,
    fix: String,
    fix_status: TaskStatus,
}

impl<'w> Engine<'w> {
    pub fn new(ws: &'w Workspace, options: Options) -> Result<Engine<'w>, Vec<Diagnostic>> {
        let renderer = Arc::new(Renderer::new(ws)?);
        Engine::with_renderer(ws, options, renderer)
    }

    /// An engine that uses templates compiled earlier (a daemon keeps them while the
    /// template files stay the same; see `render::Fingerprint`).
    pub fn with_renderer(
        ws: &'w Workspace,
        options: Options,
        renderer: Arc<Renderer>,
    ) -> Result<Engine<'w>, Vec<Diagnostic>> {
        let graph = Graph::load(ws)?;
        let secrets = Secrets::from_env(&ws.config.secrets);
        let runtime = ws.path(&ws.config.paths.runtime);
        let audit =
            Audit { path: runtime.join("audit.jsonl"), agent: ws.config.agent.name.clone(), secrets: secrets.clone() };
        Ok(Engine {
            ws,
            graph,
            renderer,
            audit,
            secrets,
            options,
            open_production: Default::default(),
            unresolved: Default::default(),
            claims_allowed: std::cell::Cell::new(true),
            write_errors: Default::default(),
        })
    }

    /// Reconciles until nothing more is runnable.
    pub fn run(&self) -> Summary {
        let mut summary = Summary::default();
        if !self.options.dry_run && !self.options.skip_recovery {
            self.recover(&mut summary);
        }
        for _ in 0..MAX_PASSES {
            if self.options.cancel.stopping() {
                break;
            }
            self.sync_before_pass();
            let acted = self.pass(&mut summary);
            if !self.options.dry_run
                && let Err(e) = requests::resolve(self.ws, &crate::time::now_rfc3339())
            {
                tracing::error!("cannot mark resolved requests in {}: {e}", self.ws.config.paths.human_requests);
            }
            // After a failed write of state.json the next pass would read the old position
            // and run the same node again: the run stops and reports it.
            if !acted || self.options.dry_run || !self.write_errors.borrow().is_empty() {
                break;
            }
        }
        if let Some(sync) = &self.options.sync {
            sync.after_run();
        }
        summary.write_errors = self.write_errors.take();
        summary
    }

    /// Edits one node of `state.json`. A write that fails is logged and kept for the summary,
    /// whose exit code it makes a failure: it is never swallowed.
    fn edit_state(&self, change: StateEdit) {
        if let Err(e) = record::edit_state(self.ws, &self.graph.name, &change) {
            self.write_failed(format!("cannot update {}: {e}", self.ws.config.paths.state));
        }
    }

    /// A record that could not be written: logged, and kept for the summary, whose exit code
    /// it makes a failure.
    fn write_failed(&self, message: String) {
        tracing::error!("{message}");
        self.write_errors.borrow_mut().push(message);
    }

    /// Appends `request` to `human-requests.md`; a failure is a failed write.
    /// Appends one request to `human-requests.md` per task and `cause` (see `requests::append`).
    fn request_human(&self, request: &HumanRequest, cause: &str, reason: &str) {
        if let Err(e) = record::append_human_request(self.ws, &self.renderer, request, cause, reason) {
            self.write_failed(format!("cannot append to {}: {e}", self.ws.config.paths.human_requests));
        }
    }

    /// Writes the completion signal of `unit`; returns its path, or records the failed write.
    fn signal(&self, unit: &str, status: &str, artifacts: &[String], message: &str) -> Option<String> {
        self.signal_to(unit, status, artifacts, message, None)
    }

    /// [`Engine::signal`] naming the agent that takes over.
    fn signal_to(
        &self,
        unit: &str,
        status: &str,
        artifacts: &[String],
        message: &str,
        next_agent: Option<&str>,
    ) -> Option<String> {
        record::write_signal(self.ws, &self.renderer, unit, status, artifacts, message, next_agent)
            .map_err(|e| self.write_failed(format!("cannot write the completion signal: {e}")))
            .ok()
    }

    /// With `git.sync`: fetch, rebase and push before a pass; claims only while in sync.
    fn sync_before_pass(&self) {
        let Some(sync) = &self.options.sync else { return };
        if let Some(warning) = sync.restart_needed(&self.ws.config.git) {
            tracing::warn!("{warning}");
        }
        let pass = sync.before_pass();
        self.claims_allowed.set(pass == crate::sync::Pass::Ready);
        if let crate::sync::Pass::Stopped(reason) = pass
            && sync.new_stop(&reason)
        {
            let request = HumanRequest {
                agent: self.ws.config.agent.name.clone(),
                task_id: "-".into(),
                node: "git sync".into(),
                unit_id: "-".into(),
                severity: "HIGH",
                issue: reason.clone(),
                impact: "no new claims are made and local commits are not pushed until it is resolved".into(),
                actions: vec!["aborted the rebase; the local commits are kept".into()],
                status: "sync stopped".into(),
                help_needed: "resolve the conflict by hand and push".into(),
                contacts: "the workspace's maintainers".into(),
                raised_at: crate::time::now_rfc3339(),
                run_id: new_run_id(),
            };
            self.request_human(&request, &reason, &reason);
        }
    }

    /// One pass; returns whether it ran a node (and so another pass may find more to do).
    fn pass(&self, summary: &mut Summary) -> bool {
        summary.blocked.clear();
        summary.waiting.clear();
        summary.plan.clear();
        summary.problems.clear();
        // Only owned entries that may still act are decoded and checked: a pass costs the
        // agent's open work, not the size of the file (finished tasks count by their status).
        let mut loaded = load_task_list(self.ws, |head| {
            let status = TaskStatus::parse(head.status.as_deref().unwrap_or_default());
            let failed_production = head.kind.as_deref() == Some("deployment_production") && status.is_failure();
            (status.is_open() || failed_production)
                && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
        });
        if !loaded.readable {
            summary.problems.extend(loaded.diagnostics);
            return false;
        }
        let prefix = std::mem::take(&mut loaded.prefix);
        let prefix = prefix.as_str();
        // Each owned entry that may act is decoded into a typed task once per pass.
        let owned: Vec<(usize, Task)> = std::mem::take(&mut loaded.kept)
            .into_iter()
            .map(|(index, value)| (index, Task::from_value(value)))
            .collect();
        let state = load_json(self.ws, &self.ws.config.paths.state, crate::schema::SchemaName::State);
        if !state.diagnostics.is_empty() {
            // Nothing runs on an invalid state.json: every node transition would edit it.
            summary.problems.extend(state.diagnostics);
            return false;
        }
        let state = state.value.unwrap_or(Value::Null);
        if !self.options.dry_run && self.file_requested_rollbacks(&|id| loaded.statuses.contains_key(id)) {
            return true;
        }
        let status_of = |id: &str| loaded.statuses.get(id).map(String::as_str);
        let production = |t: &&(usize, Task)| t.1.kind == "deployment_production";
        *self.open_production.borrow_mut() =
            owned.iter().filter(production).filter(|(_, t)| t.status.is_open()).map(|(_, t)| t.release()).collect();
        *self.unresolved.borrow_mut() = owned
            .iter()
            .filter(production)
            .filter(|(_, t)| t.status.is_failure())
            .filter(|(_, t)| t.resolved_by.as_deref().is_none_or(|b| b.trim().is_empty()))
            .filter_map(|(_, t)| {
                let fix = record::fix_task_id(if t.id.is_empty() { "task" } else { &t.id });
                let fix_status = TaskStatus::parse(status_of(&fix)?);
                let resolved = matches!(fix_status, TaskStatus::Done | TaskStatus::Deployed | TaskStatus::Cancelled);
                (!resolved).then(|| Unresolved { unit: t.release().unit, task: t.id.clone(), fix, fix_status })
            })
            .collect();
        // With git sync, runners of this agent on other clones read the same list: each pass
        // starts at a random entry so that they spread over the work instead of all racing
        // for the first task (the loser of a race drops its claim, which costs a round trip).
        let start = match (&self.options.sync, owned.len()) {
            (Some(_), len) if len > 1 => {
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new().build_hasher().finish() as usize % len
            }
            _ => 0,
        };
        for (index, task) in owned.iter().cycle().skip(start).take(owned.len()) {
            let ours_blocked = task.status == TaskStatus::Blocked && task.blocked_by.as_deref() == Some(BLOCKED_BY);
            if task.status != TaskStatus::Pending && !ours_blocked {
                continue;
            }
            let entry_problems: Vec<Diagnostic> =
                loaded.diagnostics.iter().filter(|d| readiness::is_problem_of(d, prefix, *index)).cloned().collect();
            if !entry_problems.is_empty() {
                summary.problems.extend(entry_problems);
                continue;
            }
            let waits = readiness::waiting_on(task, status_of);
            if !waits.is_empty() {
                summary.waiting.push(Waiting {
                    task: task.id.clone(),
                    on: waits.iter().map(|w| w.id.clone()).collect(),
                    why: waits.iter().map(readiness::Wait::describe).collect(),
                });
                continue;
            }
            let node = match self.graph.node_for_task(&task.raw) {
                Ok(node) => node,
                Err(why) => {
                    let file = &self.ws.config.paths.tasks;
                    summary.problems.push(
                        Diagnostic::new(file, crate::workspace::diagnostic::Kind::Schema, why.to_string())
                            .pointer(format!("{prefix}/{index}")),
                    );
                    continue;
                }
            };
            if self.consider(task, node, &state, summary) {
                return true;
            }
        }
        // Current nodes of state.json that no owned task stands for run on their own.
        for name in state.get("current_nodes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
        {
            let Some(node) = self.graph.node(name) else { continue };
            if node.owner.as_deref().is_some_and(|owner| !self.ws.config.is_own_agent(owner)) {
                continue;
            }
            let entry = state.pointer(&format!("/nodes/{name}")).cloned().unwrap_or(json!({}));
            let status = entry.get("status").and_then(Value::as_str).unwrap_or("pending");
            let ours_blocked =
                status == "blocked" && entry.get("blocked_by").and_then(Value::as_str) == Some(BLOCKED_BY);
            if status != "pending" && !ours_blocked {
                continue;
            }
            let covered = owned
                .iter()
                .any(|(_, t)| self.graph.node_for_task(&t.raw).is_ok_and(|n| n.name == name) && t.status.is_open());
            if covered {
                continue;
            }
            let mut task = json!({
                "id": format!("state-{name}"),
                "title": format!("{name} (a current node of state.json)"),
                "agent": self.ws.config.agent.name,
                "type": node.task_types.first().cloned().unwrap_or_default(),
                "status": status,
                FROM_STATE: true,
            });
            for key in ["unit_id", "version", "environment", "blocked_reason"] {
                if let Some(value) = entry.get(key) {
                    task[key] = value.clone();
                }
            }
            if self.consider(&Task::from_value(task), node, &state, summary) {
                return true;
            }
        }
        // Problems inside entries were reported with their task above, or are other agents';
        // file-level ones hold everyone.
        summary.problems.extend(loaded.diagnostics.into_iter().filter(|d| readiness::entry_of(d, prefix).is_none()));
        false
    }

    /// Decides about one task (or a current node standing in for one): blocks it, or runs it.
    /// Returns whether it ran a node.
    fn consider(&self, task: &Task, node: &Node, state: &Value, summary: &mut Summary) -> bool {
        let id = task.id.clone();
        match self.readiness(task, node) {
            Readiness::Invalid(problems) => summary.problems.extend(problems),
            Readiness::Blocked { mut checks, mut reason, qa_rejected, request_approval } => {
                if !self.options.dry_run {
                    if request_approval && self.write_approval_request(task, node, &checks) {
                        // The request exists now: record the reason every later pass will see.
                        if let Readiness::Blocked { checks: now, reason: why, .. } = self.readiness(task, node) {
                            (checks, reason) = (now, why);
                        }
                    }
                    self.block(task, node, &reason, qa_rejected.as_deref(), request_approval, &checks);
                }
                summary.blocked.push(Blocked { task: id, node: node.name.clone(), reason, checks });
            }
            Readiness::Ready { inputs, checks, version } => {
                if self.options.dry_run {
                    summary.plan.push(Planned { task: id, node: node.name.clone(), checks });
                    return false;
                }
                if self.options.cancel.stopping() {
                    return false;
                }
                if let Some(ran) = self.execute(task, node, inputs, checks, version, state) {
                    summary.ran.push(ran);
                    return true;
                }
            }
        }
        false
    }

    /// The release a task works on: its `unit_id` and `version`, the version otherwise taken
    /// from the newest R07 of its unit.
    fn release_of(&self, task: &Task) -> Release {
        let mut release = task.release();
        if release.version.is_empty() {
            let newest = release::find(self.ws, "R07-version-tag.md", &release)
                .ok()
                .and_then(Lookup::found)
                .and_then(|a| a.field("version").map(str::to_owned))
                .unwrap_or_default();
            release.version = release::Version::new(newest);
        }
        release
    }

    /// The environment a node of `task` changes, if it changes one.
    fn environment_of(&self, task: &Task, node: &Node) -> Option<String> {
        match node.action {
            Action::RollbackDeployment => {
                let decision = nodes::requested_rollback(task)
                    .then(|| release::find(self.ws, "R17-rollback-decision.md", &task.release()).ok())
                    .flatten()
                    .and_then(Lookup::found);
                Some(nodes::rollback_environment(task, decision.as_ref()))
            }
            _ => node.changes_environment().map(|environment| environment.name().to_owned()),
        }
    }

    /// What the environment of `task` says before any gate: busy (its deploy lock is held,
    /// another task's rollout is unfinished), or this task's own rollout is paused and waits
    /// for, or has, a human's decision. `None`: nothing in the way, check the gates.
    fn environment_readiness(&self, task: &Task, node: &Node) -> Option<Result<Readiness, (Check, Artifact)>> {
        let name = self.environment_of(task, node)?;
        let env = deploy::EnvConfig::load(&self.ws.config, &name).ok()?;
        let blocked = |reason: String| {
            let check = Check::new("environment", &name, false, reason.clone());
            Some(Ok(Readiness::Blocked { checks: vec![check], reason, qa_rejected: None, request_approval: false }))
        };
        let lock = env.lock_path(self.ws);
        if let Some(holder) = crate::rollout::deploy_lock::holder(&lock) {
            let held =
                crate::rollout::deploy_lock::DeployLockError::Held { environment: name.clone(), holder, path: lock };
            return blocked(held.to_string());
        }
        let journal = match journal::Journal::load(self.ws, &name) {
            Ok(Some(journal)) => journal,
            Ok(None) => return None,
            Err(why) => return blocked(why.to_string()),
        };
        if journal.task != task.id || journal.phase != journal::Phase::Paused {
            return blocked(nodes::other_rollout(&env, &journal));
        }
        let waiting = nodes::pause_reason(&journal);
        match gates::rollout_decision(self.ws, &journal) {
            Err(problems) => Some(Ok(Readiness::Invalid(problems))),
            Ok((gates::Decision::Pending(why), _)) => {
                blocked(if why.is_empty() { waiting } else { format!("{waiting}; {why}") })
            }
            Ok((gates::Decision::Rollback { by, .. }, artifact)) => {
                // Rolling back needs no gate: it only returns to what ran before.
                let check = Check::new("decision", "rollout decision", true, format!("{by} decided to roll back"));
                Some(Ok(Readiness::Ready {
                    inputs: artifact.into_iter().collect(),
                    checks: vec![check],
                    version: journal.version.clone(),
                }))
            }
            Ok((gates::Decision::Proceed { by, .. }, Some(artifact))) => {
                let check = Check::new("decision", "rollout decision", true, format!("{by} decided to proceed"));
                Some(Err((check, artifact)))
            }
            Ok((gates::Decision::Proceed { .. }, None)) => blocked(waiting),
        }
    }

    /// Inputs, gates and approvals of `node` for `task`.
    fn readiness(&self, task: &Task, node: &Node) -> Readiness {
        let decided = match self.environment_readiness(task, node) {
            Some(Ok(readiness)) => return readiness,
            Some(Err(decided)) => Some(decided),
            None => None,
        };
        let mut readiness = self.gate_readiness(task, node);
        if let (Some((check, artifact)), Readiness::Ready { inputs, checks, .. }) = (decided, &mut readiness) {
            checks.push(check);
            inputs.push(artifact);
        }
        readiness
    }

    /// The inputs and gates of `node` for `task`.
    fn gate_readiness(&self, task: &Task, node: &Node) -> Readiness {
        let release = self.release_of(task);
        let (unit, version) = (release.unit.clone(), release.version.as_str().to_owned());
        let mut checks = Vec::new();
        let mut inputs = Vec::new();
        let mut problems = Vec::new();
        let needs_version = matches!(
            node.action,
            Action::BuildRelease
                | Action::DeployToStaging
                | Action::DeployToProduction
                | Action::PostDeployVerification
        );
        if needs_version && version.is_empty() {
            checks.push(Check::new(
                "inputs",
                "version",
                false,
                "the task has no `version` and there is no R07-version-tag.md to take it from",
            ));
        }
        if (node.action.deploys() || node.action == Action::PostDeployVerification) && unit.is_empty() {
            checks.push(Check::new(
                "inputs",
                "unit",
                false,
                "the task has no `unit_id`, so no QA report can approve it",
            ));
        }
        checks.extend(config_checks(self.ws, node));
        for input in &node.inputs {
            if input.starts_with("R06-release-artifacts") {
                if !version.is_empty() {
                    let dir = nodes::release_dir(self.ws, &release);
                    let present = self.ws.path(&dir).join("SHA256SUMS").is_file();
                    checks.push(Check::new(
                        "inputs",
                        input,
                        present,
                        if present {
                            format!("{dir}/ present")
                        } else {
                            format!("{dir}/SHA256SUMS is missing: build the release first")
                        },
                    ));
                }
                continue;
            }
            if input.starts_with("R12-") || input.starts_with("R08-") {
                continue; // Read by the production gate below.
            }
            if input.starts_with("R17-") && !nodes::requested_rollback(task) {
                // A rollback task of its own (`opsflow rollback`) needs no R17.
                continue;
            }
            match release::find(self.ws, input, &release) {
                Ok(Lookup::Found(artifact)) => {
                    if input.starts_with("R17-") && artifact.field("decision") != Some("rollback") {
                        checks.push(Check::new(
                            "inputs",
                            input,
                            false,
                            format!("{} does not say `decision: rollback`", artifact.file),
                        ));
                    }
                    inputs.push(artifact);
                }
                Ok(other) if optional_input(input) => checks.push(Check::new(
                    "inputs",
                    input,
                    true,
                    format!("{}; the node runs without it", other.why_not(self.ws, input, &release)),
                )),
                Ok(other) => checks.push(Check::new("inputs", input, false, {
                    let why = other.why_not(self.ws, input, &release);
                    match self.graph.producer_of(input) {
                        Some(producer) if matches!(other, Lookup::Missing) => format!("{why} (written by {producer})"),
                        _ => why,
                    }
                })),
                Err(diagnostics) => problems.extend(diagnostics),
            }
        }
        if node.action == Action::RollbackDeployment {
            let decision = inputs.iter().find(|a| a.file.contains("R17-rollback-decision"));
            if let Some(why) = nodes::rollback_refused(self.ws, task, decision) {
                checks.push(Check::new("rollback", "a release to restore", false, why));
            }
        }
        let mut qa_rejected = None;
        let mut request_approval = false;
        if node.action.deploys() && !unit.is_empty() {
            match gates::load_qa(self.ws, &release) {
                Err(diagnostics) => problems.extend(diagnostics),
                Ok(evidence) => {
                    let verdict = gates::qa_gate(self.ws, &release, &evidence);
                    qa_rejected = verdict.rejected;
                    checks.extend(verdict.checks);
                    inputs.extend(evidence.markdown.clone());
                    // A node that deploys always changes an environment.
                    let environment = node.changes_environment().unwrap_or(Environment::Production);
                    if environment == Environment::Staging {
                        checks.extend(gates::staging_gate(&self.ws.config, &evidence));
                    } else {
                        checks.extend(gates::production_quality(&self.ws.config, &evidence));
                        checks.extend(self.production_readiness(&release, &mut inputs, &mut problems));
                    }
                    match deploy::EnvConfig::load(&self.ws.config, environment.name()) {
                        Ok(env) => {
                            let needs_approval = env.requires_approval
                                || (environment == Environment::Production
                                    && self.ws.config.devops.require_human_approval);
                            if needs_approval {
                                let single = self
                                    .open_production
                                    .borrow()
                                    .iter()
                                    .filter(|open| open.unit == unit && !open.version.is_empty())
                                    .map(|open| open.version.bare().to_owned())
                                    .collect::<std::collections::BTreeSet<_>>()
                                    .len()
                                    <= 1;
                                match gates::human_approval(self.ws, environment.name(), &release, single) {
                                    Ok((check, approval, artifact)) => {
                                        // A check a person may let through does not keep the
                                        // request from being written: it is what they decide on.
                                        request_approval = approval == Approval::Missing
                                            && checks.iter().all(|c| !c.blocks() || c.overridable);
                                        if approval == Approval::Approved
                                            && let Some(artifact) = &artifact
                                            && artifact.flag("allow_revert")
                                        {
                                            let by = artifact.field("approved_by").unwrap_or("the approver");
                                            let letter = format!("`allow_revert: true` in {} by {by}", artifact.file);
                                            allow_overridable(&mut checks, &letter);
                                        }
                                        checks.push(check);
                                        inputs.extend(artifact);
                                    }
                                    Err(diagnostics) => problems.extend(diagnostics),
                                }
                            } else if task.raw.get("allow_revert") == Some(&Value::Bool(true)) {
                                allow_overridable(&mut checks, &format!("`allow_revert: true` on task {}", task.id));
                            }
                        }
                        Err(why) => checks.push(Check::new(
                            "config",
                            &format!("environments.{environment}"),
                            false,
                            why.to_string(),
                        )),
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Readiness::Invalid(problems);
        }
        let failed: Vec<&Check> = checks.iter().filter(|c| c.blocks()).collect();
        if failed.is_empty() {
            Readiness::Ready { inputs, checks, version }
        } else {
            let reason = failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ");
            Readiness::Blocked { checks, reason, qa_rejected, request_approval }
        }
    }

    /// The production checks that are not QA figures: staging succeeded for this version, a
    /// rollback path exists, monitoring is configured.
    fn production_readiness(
        &self,
        release: &Release,
        inputs: &mut Vec<artifacts::Artifact>,
        problems: &mut Vec<Diagnostic>,
    ) -> Vec<Check> {
        let (unit, version) = (release.unit.as_str(), release.version.as_str());
        let mut checks = Vec::new();
        let unresolved: Vec<String> = self
            .unresolved
            .borrow()
            .iter()
            .filter(|open| open.unit == unit)
            .map(|Unresolved { task: failed, fix, fix_status, .. }| {
                format!(
                    "the production deployment {failed} of {unit} failed or was rolled back and is not resolved: {fix} is `{fix_status}` (opsflow waits for `done`, or for `resolved_by` on {failed})"
                )
            })
            .collect();
        checks.push(Check::new(
            "production",
            "earlier failures of this unit resolved",
            unresolved.is_empty(),
            if unresolved.is_empty() { "no unresolved failure".to_owned() } else { unresolved.join("; ") },
        ));
        match release::find(self.ws, "R08-staging-deploy.md", release) {
            Ok(Lookup::Found(r08)) => {
                let ok = r08.field("status") == Some("success")
                    && r08.field("version").is_some_and(|v| release::same_version(v, version));
                let detail = format!(
                    "{}: status {}, version {}",
                    r08.file,
                    r08.field("status").unwrap_or("?"),
                    r08.field("version").unwrap_or("?")
                );
                checks.push(Check::new("production", "staging deployment of this version succeeded", ok, detail));
                // What only warned on the way to staging is shown again before production.
                for warning in r08.front_matter.get("warnings").and_then(Value::as_array).into_iter().flatten() {
                    let Some(text) = warning.as_str() else { continue };
                    let mut check =
                        Check::new("production", "warned at staging", false, format!("{text} ({})", r08.file));
                    check.warning = true;
                    checks.push(check);
                }
                inputs.push(r08);
            }
            Ok(other) => checks.push(Check::new(
                "production",
                "staging deployment of this version succeeded",
                false,
                match other {
                    Lookup::Elsewhere { file, release: theirs } => format!(
                        "{file} is for {}; no staging deployment of {unit} {version} yet: deploy it to staging first",
                        theirs.label()
                    ),
                    _ => format!("no R08-staging-deploy.md for unit {unit}: deploy {version} to staging first"),
                },
            )),
            Err(diagnostics) => problems.extend(diagnostics),
        }
        match deploy::EnvConfig::load(&self.ws.config, "production") {
            Ok(env) => match env.history(self.ws) {
                // Nothing deploys to an environment whose record cannot be read.
                Err(e) => checks.push(Check::new("production", "environment record readable", false, e.to_string())),
                Ok(record) => {
                    let live = env.live(self.ws, &record);
                    let (has_path, detail) = match env.local(&self.ws.root) {
                        // After the switch, what is live now is what a rollback restores.
                        Some(local) => match (local.live_dir(), &live, local.rollback_target_in(&record)) {
                            (_, Some(live), _) => {
                                (true, format!("the live good release {} stays on disk", live.label()))
                            }
                            (_, None, Some(target)) => {
                                (true, format!("the previous good release {} stays on disk", target.label()))
                            }
                            (None, None, None) => {
                                (true, "first deployment: rolling back takes the environment down".to_owned())
                            }
                            // What is live is not a good release (a failed first deploy of an
                            // older opsflow, a link set by hand): nothing better can be lost.
                            (Some(live), None, None) => (
                                true,
                                format!(
                                    "{live} is live but is not a good release; rolling back takes the environment down"
                                ),
                            ),
                        },
                        None => match env.command("rollback") {
                            Some(_) => (true, "`commands.rollback` is configured".to_owned()),
                            None => (false, "`environments.production.commands.rollback` is not set".to_owned()),
                        },
                    };
                    checks.push(Check::new("production", "rollback path exists", has_path, detail));
                    let monitored = !env.health_checks.is_empty();
                    checks.push(Check::new(
                        "production",
                        "monitoring configured",
                        monitored,
                        if monitored {
                            format!("{} health checks", env.health_checks.len())
                        } else {
                            "`environments.production.health_checks` is empty".to_owned()
                        },
                    ));
                    checks.push(self.containment_check(release, &record, live.as_ref()));
                }
            },
            Err(why) => checks.push(Check::new("production", "environment", false, why.to_string())),
        }
        checks
    }

    /// Whether the release contains what production runs and every release shipped there
    /// before (`git merge-base --is-ancestor`), so that shipping it undoes nobody's release
    /// without a person saying so.
    fn containment_check(&self, release: &Release, record: &Record, live: Option<&Deployment>) -> Check {
        let commit = release::find(self.ws, "R07-version-tag.md", release)
            .ok()
            .and_then(Lookup::found)
            .and_then(|r07| r07.field("commit").map(str::to_owned));
        let found = view::containment(&release.label(), commit.as_deref(), record, live, |commit, ancestor| {
            view::contains(&self.ws.root, commit, ancestor)
        });
        match found {
            Containment::Contains(detail) => Check::new("production", gates::CONTAINS_LIVE, true, detail),
            Containment::Unchecked(why) => {
                Check::new("production", gates::CONTAINS_LIVE, true, format!("not checked: {why}"))
            }
            Containment::Removes { detail, .. } => {
                let mut check = Check::new(
                    "production",
                    gates::CONTAINS_LIVE,
                    false,
                    format!(
                        "{detail}; to ship it on purpose, approve it with `allow_revert: true` in the approval's front matter"
                    ),
                );
                check.overridable = true;
                check
            }
        }
    }

    /// Records a block: task `blocked` with the reason, one human request, the approval
    /// request when only a human is missing. Writes nothing if it was already recorded.
    fn block(
        &self,
        task: &Task,
        node: &Node,
        reason: &str,
        qa_rejected: Option<&str>,
        request_approval: bool,
        checks: &[Check],
    ) {
        let id = task.id.as_str();
        let release = self.release_of(task);
        let (unit, version) = (release.unit.clone(), release.version.as_str());
        let same = task.status == TaskStatus::Blocked && task.blocked_reason.as_deref() == Some(reason);
        let run_id = new_run_id();
        if same {
            return;
        }
        let ops = vec![
            FieldOp::Set("status".into(), TaskStatus::Blocked.as_str().into()),
            FieldOp::Set("blocked_reason".into(), reason.into()),
            FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()),
            FieldOp::Set("updated_at".into(), crate::time::now_rfc3339().into()),
        ];
        let current = task.status.as_str();
        if !task.from_state {
            match record::edit_task(self.ws, Some(id), &[current], ops, Vec::new()) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.write_failed(format!("cannot record that {id} is blocked: {e}"));
                    return;
                }
            }
        }
        self.audit.record(&run_id, "blocked", id, reason, &[]);
        let mut fields = vec![FieldOp::Set("status".into(), "blocked".into())];
        if task.from_state {
            // The node stands for itself: its entry carries what a task would.
            fields.push(FieldOp::Set("blocked_reason".into(), reason.into()));
            fields.push(FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()));
        }
        self.edit_state(StateEdit { node: node.name.clone(), fields, current_nodes: None });
        // "for unit X" only when there is a unit; environment work has none.
        let for_unit = if unit.is_empty() { String::new() } else { format!(" for unit `{unit}`") };
        let approval_file = (request_approval || only_an_approval_missing(checks)).then(|| {
            self.approval_request_file(&self.release_of(task)).unwrap_or_else(|| {
                release::output_path(self.ws, &gates::approval_file_name("production"), &self.release_of(task))
            })
        });
        let (severity, issue, help, contacts) = match (qa_rejected, &approval_file) {
            (Some(why), _) => (
                "HIGH",
                format!("QA rejected unit `{unit}`: {why}"),
                "QA to re-test and approve the unit, or close the task".to_owned(),
                "QA-Engineer",
            ),
            (None, Some(file)) => (
                "HIGH",
                format!("`{}`{for_unit} version `{version}` waits for a human approval", node.name),
                format!(
                    "tick `- [x] Approved` in `{file}` and fill in `approved_by` (or set `status: approved` there); tick `- [x] Hold` to hold"
                ),
                "devops.approvers",
            ),
            (None, None) => (
                "HIGH",
                format!("`{}`{for_unit} is blocked by its gates", node.name),
                "resolve the failed checks listed under Actions Taken".to_owned(),
                "Product-Manager",
            ),
        };
        let mut actions: Vec<String> =
            checks.iter().filter(|c| c.blocks()).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        actions.insert(
            0,
            if node.action.deploys() {
                "Deployment blocked; nothing was deployed"
            } else {
                "Blocked before it ran; nothing was changed"
            }
            .to_owned(),
        );
        let request = HumanRequest {
            agent: self.ws.config.agent.name.clone(),
            task_id: id.to_owned(),
            node: node.name.clone(),
            unit_id: unit.clone(),
            severity,
            issue,
            impact: format!("`{}` cannot run until this is resolved", node.name),
            actions,
            status: "blocked".into(),
            help_needed: help,
            contacts: contacts.into(),
            raised_at: crate::time::now_rfc3339(),
            run_id: run_id.clone(),
        };
        // One entry per cause, whatever the wording of its reason: the approval a person owes,
        // QA's rejection, or the failed checks by name.
        let cause = match (qa_rejected, &approval_file) {
            (Some(_), _) => "qa rejected".to_owned(),
            (None, Some(_)) => "approval".to_owned(),
            (None, None) => {
                let mut names: Vec<&str> = checks.iter().filter(|c| c.blocks()).map(|c| c.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                format!("gates: {}", names.join(", "))
            }
        };
        if let Err(e) = requests::append(self.ws, &self.renderer, &request, &cause, reason, approval_file.as_deref()) {
            self.write_failed(format!("cannot append to {}: {e}", self.ws.config.paths.human_requests));
        }
        if node.action.deploys() {
            // The signal hands over to whom the escalation goes: QA for its own rejection.
            let next = qa_rejected.map(|_| "QA-Engineer");
            self.signal_to(&unit, "blocked", &[], &request.issue, next);
        }
    }

    /// The approval file of `release` that exists now, if any.
    fn approval_request_file(&self, release: &Release) -> Option<String> {
        release::find(self.ws, &gates::approval_file_name("production"), release)
            .ok()
            .and_then(Lookup::found)
            .map(|artifact| artifact.file)
    }

    /// Writes the approval request of the task's release once: from then on the file is the
    /// human's and is never overwritten. Each release gets its own request: the plain name
    /// when it is free, else `R12-prod-approval-<UNIT_ID>-<version>.md` beside another
    /// release's file. A copy of the request as written goes to the release's history, so
    /// that the request itself never counts as an approval. Returns whether it wrote the file.
    fn write_approval_request(&self, task: &Task, node: &Node, checks: &[Check]) -> bool {
        let release = self.release_of(task);
        let (unit, version) = (release.unit.clone(), release.version.as_str().to_owned());
        let run_id = new_run_id();
        let name = gates::approval_file_name("production");
        if self.approval_request_file(&release).is_some() {
            return false;
        }
        let relative = release::output_path(self.ws, &name, &release);
        let Ok(path) = self.ws.inside(&relative) else { return false };
        if path.exists() || path.symlink_metadata().is_ok() {
            return false;
        }
        let mut front = serde_json::Map::new();
        front.insert("status".into(), "pending".into());
        front.insert("approved_by".into(), Value::Null);
        front.insert("unit_id".into(), unit.clone().into());
        front.insert("version".into(), version.clone().into());
        front.insert("node".into(), node.name.clone().into());
        front.insert("run_id".into(), run_id.clone().into());
        front.insert("generated_at".into(), crate::time::now_rfc3339().into());
        let context = json!({
            "unit_id": unit,
            "version": version,
            "approval_file": relative,
            "task": {"id": task.id, "title": task.title},
            "checks": checks.iter().filter(|c| c.passed).collect::<Vec<_>>(),
            "warnings": checks.iter().filter(|c| c.warning).collect::<Vec<_>>(),
            "overridable": checks.iter().filter(|c| c.overridable && !c.passed).collect::<Vec<_>>(),
            "approvers": self.ws.config.devops.approvers,
        });
        let text = match self.renderer.markdown("R12-prod-approval.md", &front, &context) {
            Ok(text) => self.secrets.mask(&text),
            Err(e) => {
                tracing::error!("cannot render the approval request: {e}");
                return false;
            }
        };
        if let Err(e) = release::keep_in_history(self.ws, &release, &name, &text) {
            tracing::error!("cannot keep the approval request in the release history: {e}");
            return false;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // create_new: a human's file that appeared meanwhile is never replaced.
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).and_then(|mut f| {
            use std::io::Write;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        match created {
            Ok(()) => {
                crate::workspace::write::note_written(&path);
                self.audit.record(&run_id, "approval_requested", &relative, "every other gate passed", &[]);
                true
            }
            Err(e) => {
                tracing::warn!("cannot write the approval request {relative}: {e}");
                false
            }
        }
    }

    /// Claims, runs and records one task. `None` when another writer moved the task first.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        task: &Task,
        node: &Node,
        inputs: Vec<artifacts::Artifact>,
        checks: Vec<Check>,
        version: String,
        state: &Value,
    ) -> Option<Ran> {
        if !self.claims_allowed.get() {
            // An unpushed claim is not a claim: none is made while the remote is out of reach.
            return None;
        }
        let started = Instant::now();
        let id = task.id.clone();
        let run_id = new_run_id();
        let now = crate::time::now_rfc3339();
        let claim = vec![
            FieldOp::Set("status".into(), TaskStatus::InProgress.as_str().into()),
            FieldOp::Set("claimed_by".into(), self.ws.config.agent.name.clone().into()),
            // The host, so that a claim left by a runner that is gone says where it ran.
            FieldOp::Set("claimed_on".into(), crate::instance::host_name().into()),
            FieldOp::Set("claimed_at".into(), now.clone().into()),
            FieldOp::Set("run_id".into(), run_id.clone().into()),
            FieldOp::Set("updated_at".into(), now.clone().into()),
            FieldOp::Remove("blocked_reason".into()),
            FieldOp::Remove("blocked_by".into()),
        ];
        if !task.from_state {
            match record::edit_task(self.ws, Some(&id), &[task.status.as_str()], claim, Vec::new()) {
                Ok(true) => {}
                Ok(false) => return None,
                // A file broken since it was read is reported by the next pass; a write that
                // failed is the run's failure.
                Err(e @ (StoreError::Io { .. } | StoreError::Contended { .. })) => {
                    self.write_failed(format!("cannot claim {id}: {e}"));
                    return None;
                }
                Err(e) => {
                    tracing::error!("cannot claim {id}: {e}");
                    return None;
                }
            }
        }
        let input_hashes: Vec<(String, String)> = inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        // Who let the release through: recorded in R13, the reports and the audit log.
        let approved_by = inputs.iter().find(|a| a.file.contains("-approval")).map(|a| {
            a.field("approved_by").map(str::trim).filter(|b| !b.is_empty()).unwrap_or("a ticked box").to_owned()
        });
        let gate_summary = checks
            .iter()
            .map(|c| format!("{}: {}", c.name, if c.passed { "pass" } else { "warn" }))
            .collect::<Vec<_>>()
            .join(", ");
        self.audit.record(
            &run_id,
            "claimed",
            &id,
            &match &approved_by {
                Some(by) => format!("{} runs; gates: {gate_summary}; approved_by: {by}", node.name),
                None => format!("{} runs; gates: {gate_summary}", node.name),
            },
            &input_hashes,
        );
        // A check that only warns lets the task run; the console says so (stderr, warn level).
        for check in checks.iter().filter(|c| c.warning) {
            tracing::warn!("{id} runs with a warning: {}: {}", check.name, check.detail);
        }
        self.edit_state(StateEdit {
            node: node.name.clone(),
            fields: vec![
                FieldOp::Set("status".into(), "in_progress".into()),
                FieldOp::Set("started_at".into(), now.into()),
                FieldOp::Set("run_id".into(), run_id.clone().into()),
                FieldOp::Set("task".into(), id.clone().into()),
                FieldOp::Remove("blocked_reason".into()),
                FieldOp::Remove("blocked_by".into()),
            ],
            current_nodes: None,
        });
        if let Some(sync) = &self.options.sync
            && let Err(why) = sync.publish_claim(&id, &node.name, &run_id, task.from_state)
        {
            tracing::info!("{id}: the claim was dropped ({why}); {} does not run", node.name);
            self.audit.record(&run_id, "claim_dropped", &id, &why.to_string(), &[]);
            // A remote that refused this claim refuses the next: no more tries this pass.
            self.claims_allowed.set(sync.reachable_now());
            return None;
        }
        // The version readiness settled on (a paused rollout's own) with the task's unit.
        let release = Release::new(self.release_of(task).unit, version);
        let mut run = self.node_run(task, node, &run_id, release);
        run.inputs = inputs;
        run.approved_by = approved_by;
        run.warnings =
            checks.iter().filter(|c| c.warning).map(|c| json!({"name": c.name, "detail": c.detail})).collect();
        let outcome =
            nodes::run(&mut run).unwrap_or_else(|e| Outcome::Failed { step: e.step, reason: e.reason, log: e.log });
        self.finish(task, node, &mut run, &outcome, state);
        if let Some(sync) = &self.options.sync {
            sync.publish_results(&id, &node.name, &outcome.kind().to_string(), &run_id);
        }
        Some(Ran {
            task: id,
            node: node.name.clone(),
            outcome: outcome.kind(),
            run_id,
            duration_ms: started.elapsed().as_millis() as u64,
            summary: self.secrets.mask(&run.summary),
            artifacts: run.artifacts.clone(),
            deployed_to: node.action.deploys().then(|| node.changes_environment()).flatten(),
            warnings: checks.iter().filter(|c| c.warning).map(|c| format!("{}: {}", c.name, c.detail)).collect(),
        })
    }

    /// Finds this agent's runs that were cut off (`kill -9`, a crash) and records each as
    /// `failed` with reason `interrupted`: an unfinished rollout journal that no live runner
    /// holds (the environment is rolled back when `auto_rollback_enabled` and the rollout had
    /// changed it), and an owned task still `in_progress` under this agent's name. The
    /// instance lock guarantees that no other runner of this agent is alive, so such a task
    /// has no run behind it. A step's process group left running is ended first.
    fn recover(&self, summary: &mut Summary) {
        let agent = self.ws.config.agent.name.clone();
        let mut recovered = Vec::new();
        for journal in journal::Journal::all(self.ws) {
            if journal.agent != agent || journal.phase == journal::Phase::Paused {
                continue;
            }
            let Ok(env) = deploy::EnvConfig::load(&self.ws.config, &journal.environment) else { continue };
            let holder = crate::rollout::deploy_lock::Holder {
                agent: agent.clone(),
                run_id: journal.run_id.clone(),
                task: journal.task.clone(),
            };
            // A live runner holds the lock while its rollout runs.
            let Ok(_lock) = crate::rollout::deploy_lock::acquire(&env.lock_path(self.ws), &env.name, &holder) else {
                continue;
            };
            if let Some(ran) = self.recover_run(&journal.task, Some((&journal, &env))) {
                summary.ran.push(ran);
            }
            journal::Journal::remove(self.ws, &env.name);
            recovered.push(journal.task.clone());
        }
        // Only owned tasks in progress are decoded; the scan skips the rest of the list.
        let Ok(Some(text)) = self.ws.read_text(&self.ws.config.paths.tasks) else { return };
        let Ok((_, heads)) = crate::store::tasks::scan_in(&text, &self.ws.task_selection(), |head| {
            head.status.as_deref().map(TaskStatus::parse) == Some(TaskStatus::InProgress)
                && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
        }) else {
            return;
        };
        for head in heads {
            let task = Task::from_value(head.value(&text));
            let id = head.id.as_deref().unwrap_or_default();
            if task.claimed_by.as_deref() != Some(agent.as_str()) || recovered.iter().any(|r| r == id) {
                continue;
            }
            // With git sync, runners of this agent on other clones hold their own claims: only
            // a run this clone started (its run directory is here) is this runner's to recover.
            let run_id = task.run_id.as_deref().unwrap_or_default();
            if self.options.sync.is_some() && (run_id.is_empty() || !nodes::run_dir(self.ws, run_id).exists()) {
                continue;
            }
            if let Some(ran) = self.recover_run(id, None) {
                summary.ran.push(ran);
            }
        }
    }

    /// Records one interrupted run as failed, after ending what it left running and, with
    /// its journal and `auto_rollback_enabled`, rolling back what it changed.
    fn recover_run(&self, id: &str, rollout: Option<(&journal::Journal, &deploy::EnvConfig)>) -> Option<Ran> {
        let started = Instant::now();
        let text = self.ws.read_text(&self.ws.config.paths.tasks).ok().flatten()?;
        let (_, heads) = crate::store::tasks::scan_ids_in(&text, &self.ws.task_selection(), &[id]).ok()?;
        let task = crate::store::tasks::find(&heads, id).ok().map(|head| Task::from_value(head.value(&text)));
        let Some(task) = task.filter(|t| t.status == TaskStatus::InProgress) else {
            // The run had recorded its end; only its journal was left.
            return None;
        };
        let node = self.graph.node_for_task(&task.raw).ok()?;
        let old_run = task.run_id.clone().unwrap_or_default();
        let mut notes = Vec::new();
        if !old_run.is_empty()
            && let Some(group) = crate::exec::command::kill_leftover_group(&nodes::run_dir(self.ws, &old_run), &old_run)
        {
            notes.push(format!("ended its process group {group}, still running"));
        }
        let release = self.release_of(&task);
        let run_id = new_run_id();
        let mut run = self.node_run(&task, node, &run_id, release);
        if let Some((journal, env)) = rollout {
            if !journal.changed {
                // Its release was staged but never went live: not `deploying` for ever.
                let why = "the run was interrupted before anything changed";
                if let Err(e) = env.mark(self.ws, &journal.run_id, crate::environment::Status::Bad, why) {
                    self.write_failed(e.to_string());
                }
                notes.push(format!("{} had not been changed yet", env.name));
            } else if self.ws.config.devops.auto_rollback_enabled {
                let vars = vec![
                    ("OPSFLOW_ENV".to_owned(), env.name.clone()),
                    ("OPSFLOW_VERSION".to_owned(), journal.version.clone()),
                ];
                let asked = deploy::Asked {
                    by: self.ws.config.agent.name.clone(),
                    reason: "the run was interrupted".to_owned(),
                    run_id: run_id.clone(),
                    undo_named: true,
                };
                let rollback = deploy::rollback(self.ws, &run.runner, env, &vars, Some(journal), &asked);
                notes.push(format!(
                    "{} rolled back: {}",
                    env.name,
                    if rollback.success {
                        rollback.detail.clone()
                    } else {
                        format!("the rollback failed: {}", rollback.detail)
                    }
                ));
                if let Err(e) = nodes::write_rollback_result(&mut run, &rollback, "the run was interrupted", "") {
                    tracing::error!("cannot write R18: {e:?}");
                }
            } else {
                notes.push(format!(
                    "{} may be half changed (auto_rollback_enabled is off): check it, then roll back or redeploy",
                    env.name
                ));
            }
        }
        let reason = format!(
            "interrupted: run {old_run} was cut off before it finished (its runner is gone){}",
            if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
        );
        tracing::warn!("{id}: {reason}");
        let outcome = Outcome::Failed { step: "interrupted".into(), reason, log: String::new() };
        let state = load_json(self.ws, &self.ws.config.paths.state, crate::schema::SchemaName::State)
            .value
            .unwrap_or(Value::Null);
        self.finish(&task, node, &mut run, &outcome, &state);
        Some(Ran {
            task: id.to_owned(),
            node: node.name.clone(),
            outcome: OutcomeKind::Failed,
            run_id,
            duration_ms: started.elapsed().as_millis() as u64,
            summary: self.secrets.mask(&run.summary),
            artifacts: run.artifacts.clone(),
            deployed_to: node.action.deploys().then(|| node.changes_environment()).flatten(),
            warnings: Vec::new(),
        })
    }

    /// Files a Rollback_Deployment task for every R17 in which a human asked for a rollback
    /// (`decision: rollback`) that nothing has carried out: not opsflow's own record of an
    /// automatic rollback (`decided_by` is this agent), not a paused rollout's decision (its
    /// task acts on it), not one an R18 names by its `decision_sha256`. The task id carries
    /// the file's hash, so one request files one task. Returns whether it filed one.
    fn file_requested_rollbacks(&self, exists: &dyn Fn(&str) -> bool) -> bool {
        let dir = self.ws.config.paths.artifacts.trim_end_matches('/').to_owned();
        let Ok(entries) = std::fs::read_dir(self.ws.path(&dir)) else { return false };
        let mut names: Vec<String> =
            entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.retain(|name| !crate::workspace::editor_dropping(name));
        names.sort();
        let front = |name: &str| -> Option<(Value, String)> {
            let file = format!("{dir}/{name}");
            let text = self.ws.read_text(&file).ok().flatten()?;
            let doc = crate::workspace::read::parse_markdown(&file, &text).ok()?;
            Some((doc.front_matter?, sha256::hex(text.as_bytes())))
        };
        let carried_out: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with("R18-rollback-result") && n.ends_with(".md"))
            .filter_map(|n| front(n))
            .filter_map(|(fm, _)| fm.get("decision_sha256").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let journals = journal::Journal::all(self.ws);
        let mut appends = Vec::new();
        for name in names.iter().filter(|n| n.starts_with("R17-rollback-decision") && n.ends_with(".md")) {
            let Some((fm, sha)) = front(name) else { continue };
            let field = |key: &str| fm.get(key).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_owned();
            let unit = field("unit_id");
            if field("decision") != "rollback"
                || field("decided_by") == self.ws.config.agent.name
                || unit.is_empty()
                || crate::workspace::check_path_component(&unit).is_err()
                || carried_out.contains(&sha)
                || journals.iter().any(|j| j.unit_id == unit)
            {
                continue;
            }
            let id = format!("ROLLBACK-{unit}-{}", &sha[..8]);
            if exists(&id) {
                continue;
            }
            let now = crate::time::now_rfc3339();
            let mut task = json!({
                "id": id,
                "title": format!("Roll back unit {unit} as {dir}/{name} asks"),
                "agent": self.ws.config.agent.name,
                "type": "deployment_rollback",
                "status": "pending",
                "priority": "critical",
                "unit_id": unit,
                "node": "Rollback_Deployment",
                "source": format!("{dir}/{name}"),
                "created_at": now,
                "updated_at": now,
            });
            for key in ["version", "environment"] {
                let value = field(key);
                if !value.is_empty() {
                    task[key] = json!(value);
                }
            }
            self.audit.record(
                &new_run_id(),
                "rollback_requested",
                &id,
                &format!("{dir}/{name} says decision: rollback"),
                &[(format!("{dir}/{name}"), sha.clone())],
            );
            appends.push(task);
        }
        if appends.is_empty() {
            return false;
        }
        match record::edit_task(self.ws, None, &[], Vec::new(), appends) {
            Ok(_) => true,
            Err(e) => {
                self.write_failed(format!("cannot file the requested rollback: {e}"));
                false
            }
        }
    }

    /// Everything a node execution of `task` needs, for run `run_id`.
    fn node_run<'a>(&'a self, task: &'a Task, node: &'a Node, run_id: &str, release: Release) -> NodeRun<'a> {
        let id = task.id.clone();
        let runner = Runner {
            run_dir: nodes::run_dir(self.ws, run_id),
            workspace: self.ws.root.clone(),
            env: vec![
                ("OPSFLOW_VERSION".into(), release.version.to_string()),
                ("OPSFLOW_UNIT_ID".into(), release.unit.clone()),
                ("OPSFLOW_TASK_ID".into(), id),
                ("OPSFLOW_RUN_ID".into(), run_id.to_owned()),
                ("OPSFLOW_WORKSPACE".into(), self.ws.root.to_string_lossy().into_owned()),
            ],
            secrets: self.secrets.clone(),
            default_timeout: self.ws.config.devops.verification_timeout,
            abort: Arc::clone(&self.options.cancel.abort),
        };
        NodeRun {
            ws: self.ws,
            renderer: &self.renderer,
            runner,
            node,
            task,
            run_id: run_id.to_owned(),
            release,
            inputs: Vec::new(),
            artifacts: Vec::new(),
            also_completed: Vec::new(),
            summary: String::new(),
            deploy: None,
            approved_by: None,
            rolled_back: Vec::new(),
            warnings: Vec::new(),
            decided: None,
        }
    }

    /// Records the end of a node: task, state, fix task, human request, signal, audit.
    fn finish(&self, task: &Task, node: &Node, run: &mut NodeRun<'_>, outcome: &Outcome, state: &Value) {
        if let Outcome::Blocked { reason, escalate } = outcome {
            return self.finish_blocked(task, node, run, reason, *escalate);
        }
        let id = task.id.clone();
        let now = crate::time::now_rfc3339();
        let kind = outcome.kind();
        let task_status = kind.task_status();
        let node_status = if kind.is_failure() { "failed" } else { "completed" };
        let mut summary = run.summary.clone();
        let mut appends = Vec::new();
        let mut outcome_value =
            json!({"status": task_status, "run_id": run.run_id, "finished_at": now, "artifacts": run.artifacts});
        match outcome {
            Outcome::Failed { step, reason, log } => {
                summary = format!("{} failed at `{step}`: {reason}", node.name);
                outcome_value["failed_step"] = json!(step);
                outcome_value["log"] = json!(log);
                appends.push(self.with_context(
                    record::fix_task(&task.raw, &node.name, step, reason, log),
                    task,
                    node,
                    run,
                ));
            }
            Outcome::RolledBack { reason } => {
                outcome_value["rollback_reason"] = json!(reason);
                appends.push(self.with_context(
                    record::fix_task(&task.raw, &node.name, "verification", reason, ""),
                    task,
                    node,
                    run,
                ));
            }
            _ => {}
        }
        let summary = self.secrets.mask(&summary);
        run.summary = summary.clone();
        outcome_value["summary"] = json!(summary);
        self.secrets.mask_json(&mut outcome_value);
        let mut ops = vec![
            FieldOp::Set("status".into(), task_status.as_str().into()),
            FieldOp::Set("outcome".into(), outcome_value.clone()),
            FieldOp::Set("updated_at".into(), now.clone().into()),
        ];
        // `resolved_by` answered an earlier failure; a new one needs its own answer.
        if kind.is_failure() && task.resolved_by.is_some() {
            ops.push(FieldOp::Remove("resolved_by".into()));
        }
        let task_id = (!task.from_state).then_some(id.as_str());
        self.record_outcome(task_id, &id, node, run, ops, appends, &outcome_value);
        // state.json: this node (and any it completed on the way) and the current position.
        let mut completed = vec![node.name.clone()];
        for action in &run.also_completed {
            completed.extend(self.graph.nodes.iter().filter(|n| n.action == *action).map(|n| n.name.clone()));
        }
        let mut current = state.clone();
        for (i, name) in completed.iter().enumerate() {
            let last = i + 1 == completed.len();
            let next = self.graph.node(name).map(|n| n.next.clone()).unwrap_or_default();
            let current_nodes = (node_status == "completed").then(|| record::next_current_nodes(&current, name, &next));
            if let Some(list) = &current_nodes {
                current["current_nodes"] = json!(list);
                current["nodes"][name.as_str()]["status"] = json!("completed");
            }
            let mut fields = vec![FieldOp::Set(
                "status".into(),
                if last || node_status == "completed" { node_status.into() } else { "completed".into() },
            )];
            fields.push(FieldOp::Set(
                if node_status == "completed" { "completed_at".into() } else { "failed_at".into() },
                now.clone().into(),
            ));
            fields.push(FieldOp::Set("run_id".into(), run.run_id.clone().into()));
            if name == &node.name {
                fields.push(FieldOp::Set("outputs".into(), json!(run.artifacts)));
            }
            self.edit_state(StateEdit { node: name.clone(), fields, current_nodes });
        }
        // A node this one made current works on the same release: it carries the release,
        // so that it runs for this unit and version even when no task stands for it.
        if node_status == "completed" && !run.release.unit.is_empty() {
            let before: Vec<&str> = state
                .get("current_nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let now: Vec<String> = current
                .get("current_nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|name| !before.contains(name))
                .map(str::to_owned)
                .collect();
            for name in now {
                let mut fields = vec![FieldOp::Set("unit_id".into(), run.release.unit.clone().into())];
                if !run.release.version.is_empty() {
                    fields.push(FieldOp::Set("version".into(), run.release.version.as_str().into()));
                }
                self.edit_state(StateEdit { node: name, fields, current_nodes: None });
            }
        }
        let unit = self.release_of(task).unit;
        let failed = matches!(outcome, Outcome::Failed { .. } | Outcome::RolledBack { .. });
        if failed {
            let (step, reason, log) = match outcome {
                Outcome::Failed { step, reason, log } => (step.clone(), reason.clone(), log.clone()),
                Outcome::RolledBack { reason } => ("verification".to_owned(), reason.clone(), String::new()),
                _ => unreachable!("only failures get here"),
            };
            let request = HumanRequest {
                agent: self.ws.config.agent.name.clone(),
                task_id: id.clone(),
                node: node.name.clone(),
                unit_id: unit.clone(),
                // Seed 000's escalation rules: a production outage or a rollback that fails.
                severity: if node.action == Action::DeployToProduction || step == "rollback" {
                    "CRITICAL"
                } else {
                    "HIGH"
                },
                issue: self.secrets.mask(&format!("{} failed at `{step}`: {reason}", node.name)),
                impact: if matches!(outcome, Outcome::RolledBack { .. }) {
                    "the release was rolled back; the previous release serves users".to_owned()
                } else {
                    format!("{} did not complete; later nodes wait", node.name)
                },
                actions: vec![
                    format!("ran {} (run {})", node.name, run.run_id),
                    if log.is_empty() {
                        "see the artifacts listed in the task's outcome".to_owned()
                    } else {
                        format!("log: {log}")
                    },
                    format!("filed fix task {} for Task-Coder", record::fix_task_id(&id)),
                ],
                status: if matches!(outcome, Outcome::RolledBack { .. }) {
                    "rolled back".into()
                } else {
                    "failed".into()
                },
                help_needed: if node.action.deploys() {
                    // A built release cannot change (its files are checksummed): retrying it
                    // fails the same way.
                    format!(
                        "fix the failure in a new version and ship that (the release {} cannot change); set `resolved_by` on `{id}` once it is handled",
                        run.release.label()
                    )
                } else {
                    "fix the failure, then set the task back to `pending` to retry".into()
                },
                contacts: "Task-Coder, Product-Manager".into(),
                raised_at: now.clone(),
                run_id: run.run_id.clone(),
            };
            // Each failed run is its own entry, answered only by what answers that run.
            self.request_human(&request, &format!("failed run {}", run.run_id), &format!("{step}: {reason}"));
        }
        for undone in std::mem::take(&mut run.rolled_back) {
            self.mark_rolled_back(&undone, run);
        }
        let signal_status = if failed {
            Some("failed")
        } else if node.action == Action::DeployToProduction
            || node.next.is_empty() && node.action == Action::DeploymentAndContinuousFeedback
        {
            Some("completed")
        } else {
            None
        };
        if let Some(signal_status) = signal_status
            && let Some(file) = self.signal(&unit, signal_status, &run.artifacts, &run.summary)
        {
            run.artifacts.push(file);
        }
        let inputs: Vec<(String, String)> = run.inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        self.audit.record(&run.run_id, task_status.as_str(), &id, &run.summary, &inputs);
    }

    /// The deployment context of a failure in its fix task (seed 000: a bug report with
    /// deployment context): environment, version, unit, run, and the figures the node saw.
    fn with_context(&self, mut fix: Value, task: &Task, node: &Node, run: &NodeRun<'_>) -> Value {
        let mut context = json!({
            "environment": self.environment_of(task, node),
            "unit_id": run.release.unit,
            "version": run.release.version.as_str(),
            "run_id": run.run_id,
            // Only a folder that exists: a run whose checks were all HTTP wrote no step log.
            "run_log_dir": nodes::run_dir(self.ws, &run.run_id).is_dir().then(|| self.ws.label(&nodes::run_dir(self.ws, &run.run_id))),
        });
        if let Some(deploy) = &run.deploy {
            context["strategy"] = json!(deploy.strategy);
            context["previous_version"] = json!(deploy.previous_version);
            context["failed_step"] = json!(deploy.failed_step);
            context["analyses"] = json!(
                deploy
                    .analyses
                    .iter()
                    .map(|a| format!("{}: {} ({})", a.stage, a.verdict, a.reason))
                    .collect::<Vec<_>>()
            );
        }
        fix["details"]["deployment"] = context;
        self.secrets.mask_json(&mut fix);
        fix
    }

    /// Sets the production task of a release that a later rollback undid to `rolled_back`
    /// (it said `deployed`), and says in the completion signal that the release was rolled back.
    fn mark_rolled_back(&self, undone: &Release, run: &mut NodeRun<'_>) {
        let Ok(Some(text)) = self.ws.read_text(&self.ws.config.paths.tasks) else { return };
        let Ok((_, heads)) = crate::store::tasks::scan_in(&text, &self.ws.task_selection(), |head| {
            head.status.as_deref().map(TaskStatus::parse) == Some(TaskStatus::Deployed)
                && head.kind.as_deref() == Some("deployment_production")
                && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
        }) else {
            return;
        };
        let now = crate::time::now_rfc3339();
        for head in heads {
            let release = Task::from_value(head.value(&text)).release();
            if release.unit != undone.unit || release.version != undone.version {
                continue;
            }
            let Some(id) = head.id.as_deref() else { continue };
            let ops = vec![
                FieldOp::Set("status".into(), TaskStatus::RolledBack.as_str().into()),
                FieldOp::Set(
                    "rolled_back".into(),
                    json!({"by_task": run.task_id(), "run_id": run.run_id, "at": now, "summary": self.secrets.mask(&run.summary)}),
                ),
                FieldOp::Set("updated_at".into(), now.clone().into()),
            ];
            match record::edit_task(self.ws, Some(id), &[TaskStatus::Deployed.as_str()], ops, Vec::new()) {
                Ok(true) => self.audit.record(&run.run_id, "rolled_back", id, &run.summary, &[]),
                Ok(false) => {}
                Err(e) => self.write_failed(format!("cannot record that {id} was rolled back: {e}")),
            }
        }
        let message = format!("{} was rolled back: {}", undone.label(), run.summary);
        if let Some(file) = self.signal(&undone.unit, "failed", &run.artifacts, &message)
            && !run.artifacts.contains(&file)
        {
            run.artifacts.push(file);
        }
    }

    /// Writes a node's outcome onto its task. The task entry may have changed under the running
    /// node (another writer, `git stash`, `git checkout`): what happened in the environment is
    /// recorded on the task whatever its status is now, with a note; when the task is gone,
    /// the outcome is kept in the run's `outcome.json`, logged as an error and put in front of
    /// a human. Never silently lost.
    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &self,
        task_id: Option<&str>,
        id: &str,
        node: &Node,
        run: &NodeRun<'_>,
        mut ops: Vec<FieldOp>,
        appends: Vec<Value>,
        outcome: &Value,
    ) {
        let moved =
            match record::edit_task(self.ws, task_id, &[TaskStatus::InProgress.as_str()], ops.clone(), appends.clone())
            {
                Ok(true) => return,
                Ok(false) => None,
                Err(e) => Some(e.to_string()),
            };
        if moved.is_none() && task_id.is_some() {
            tracing::warn!(
                "{id} changed while {} ran (another writer or a git command); its outcome is recorded over what is there now",
                node.name
            );
            ops.push(FieldOp::Set(
                "outcome_note".into(),
                format!("the task changed while run {} ran; this outcome was recorded over it", run.run_id).into(),
            ));
            match record::edit_task(self.ws, task_id, &[], ops, appends.clone()) {
                Ok(_) => return,
                Err(e) => return self.keep_lost_outcome(id, node, run, outcome, &e.to_string()),
            }
        }
        self.keep_lost_outcome(id, node, run, outcome, &moved.unwrap_or_default());
    }

    /// Keeps an outcome that could not be written onto its task (the task is gone).
    fn keep_lost_outcome(&self, id: &str, node: &Node, run: &NodeRun<'_>, outcome: &Value, why: &str) {
        let file = nodes::run_dir(self.ws, &run.run_id).join("outcome.json");
        let document = json!({"task": id, "node": node.name, "outcome": outcome, "why": why});
        let written = crate::store::file::write_atomic(
            &file,
            format!("{}\n", serde_json::to_string_pretty(&document).unwrap_or_default()).as_bytes(),
        );
        let kept = self.ws.label(&file);
        self.write_failed(format!(
            "cannot record the outcome of {id} ({why}); it is kept in {kept}{}",
            if written.is_err() { " (which could not be written either)" } else { "" }
        ));
        let request = HumanRequest {
            agent: self.ws.config.agent.name.clone(),
            task_id: id.to_owned(),
            node: node.name.clone(),
            unit_id: run.release.unit.clone(),
            severity: "HIGH",
            issue: format!("the outcome of {} for {id} could not be recorded on its task: {why}", node.name),
            impact: "tasks.json does not say what happened in the environment".to_owned(),
            actions: vec![format!("ran {} (run {})", node.name, run.run_id), format!("outcome kept in {kept}")],
            status: "needs attention".into(),
            help_needed: format!("restore the task entry of {id}, or record the outcome from {kept} by hand"),
            contacts: "Product-Manager".into(),
            raised_at: crate::time::now_rfc3339(),
            run_id: run.run_id.clone(),
        };
        self.request_human(&request, why, why);
    }

    /// Records a node that stopped to wait after it was claimed: the task goes back to
    /// `blocked` (by opsflow, so every pass checks it again), the node too; a paused rollout
    /// also gets one human request and a `blocked` completion signal.
    fn finish_blocked(&self, task: &Task, node: &Node, run: &mut NodeRun<'_>, reason: &str, escalate: bool) {
        let id = task.id.clone();
        let now = crate::time::now_rfc3339();
        let reason = self.secrets.mask(reason);
        if run.summary.is_empty() {
            run.summary = reason.clone();
        }
        let summary = self.secrets.mask(&run.summary);
        run.summary = summary.clone();
        let outcome = json!({"status": TaskStatus::Blocked, "run_id": run.run_id, "finished_at": now, "artifacts": run.artifacts, "summary": summary});
        let ops = vec![
            FieldOp::Set("status".into(), TaskStatus::Blocked.as_str().into()),
            FieldOp::Set("blocked_reason".into(), reason.clone().into()),
            FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()),
            FieldOp::Set("outcome".into(), outcome),
            FieldOp::Set("updated_at".into(), now.clone().into()),
        ];
        let task_id = (!task.from_state).then_some(id.as_str());
        if let Err(e) = record::edit_task(self.ws, task_id, &[TaskStatus::InProgress.as_str()], ops, Vec::new()) {
            self.write_failed(format!("cannot record that {id} waits: {e}"));
        }
        let mut fields = vec![
            FieldOp::Set("status".into(), "blocked".into()),
            FieldOp::Set("run_id".into(), run.run_id.clone().into()),
        ];
        if task.from_state {
            fields.push(FieldOp::Set("blocked_reason".into(), reason.clone().into()));
            fields.push(FieldOp::Set("blocked_by".into(), BLOCKED_BY.into()));
        }
        self.edit_state(StateEdit { node: node.name.clone(), fields, current_nodes: None });
        let release = self.release_of(task);
        let (unit, version) = (release.unit.clone(), release.version.as_str().to_owned());
        if escalate {
            let request = HumanRequest {
                agent: self.ws.config.agent.name.clone(),
                task_id: id.clone(),
                node: node.name.clone(),
                unit_id: unit.clone(),
                severity: "CRITICAL",
                issue: format!("the rollout of {unit} version {version} is paused: {reason}"),
                impact: "the new release serves part or all of the traffic until a human decides".to_owned(),
                actions: vec![
                    format!("ran {} (run {})", node.name, run.run_id),
                    "paused the rollout where it stood; nothing was rolled back or promoted".to_owned(),
                    format!("artifacts: {}", run.artifacts.join(", ")),
                ],
                status: "paused".into(),
                help_needed: "set `decision: rollback` or `decision: proceed` (with `decided_by` and `reason`) in the R17 file named above".into(),
                contacts: "devops.approvers".into(),
                raised_at: now.clone(),
                run_id: run.run_id.clone(),
            };
            self.request_human(&request, "paused rollout", &reason);
            if let Some(file) = self.signal(&unit, "blocked", &run.artifacts, &run.summary) {
                run.artifacts.push(file);
            }
        }
        let inputs: Vec<(String, String)> = run.inputs.iter().map(|a| (a.file.clone(), a.sha256.clone())).collect();
        self.audit.record(&run.run_id, if escalate { "paused" } else { "blocked" }, &id, &reason, &inputs);
    }
}

/// A run id: the UTC time and a short random-enough suffix (pid, nanoseconds, a counter).
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let stamp = crate::time::rfc3339(now.as_secs() as i64).replace(['-', ':'], "");
    let mix = now.subsec_nanos()
        ^ std::process::id().rotate_left(16)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9);
    format!("{stamp}-{:06x}", mix & 0xFF_FFFF)
}

/// Inputs other agents may or may not write: a node runs without them and says so.
fn optional_input(name: &str) -> bool {
    name.starts_with("D21-")
}

/// What the config must hold before `node` can run: a gap there is a configuration problem
/// (the task waits with the key named), never a code bug that files a fix task.
fn config_checks(ws: &Workspace, node: &Node) -> Vec<Check> {
    let config = &ws.config;
    let mut checks = Vec::new();
    let missing_environment = |name: &str| {
        (!config.environments.contains_key(name)).then(|| {
            Check::new(
                "config",
                &format!("environments.{name}"),
                false,
                format!("`environments.{name}` is not set in project-config.json"),
            )
        })
    };
    match node.action {
        Action::BuildRelease if config.release.artifacts.is_empty() => checks.push(Check::new(
            "config",
            "release.artifacts",
            false,
            "`release.artifacts` is not set in project-config.json: add a `release` section with the `build` command and the `artifacts` it produces",
        )),
        Action::StagingEnvironmentSetup => checks.extend(missing_environment("staging")),
        _ => {}
    }
    checks
}

/// Whether the human approval is the only check that holds a task back (besides those the
/// approval can let through): the task then waits for a person, whether the request is as
/// opsflow wrote it, half filled in or on hold.
fn only_an_approval_missing(checks: &[Check]) -> bool {
    let mut blocking = checks.iter().filter(|c| c.blocks()).peekable();
    blocking.peek().is_some() && blocking.all(|c| c.name == "human approval" || c.overridable)
}

/// Lets through the failed checks a person may let through, saying who did and where.
fn allow_overridable(checks: &mut [Check], letter: &str) {
    for check in checks.iter_mut().filter(|c| c.overridable && !c.passed) {
        check.passed = true;
        check.detail = format!("{}; let through on purpose with {letter}", check.detail);
    }
}
