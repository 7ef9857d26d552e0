//! The engine: find owned work, check gates, run nodes, record everything.
//!
//! `run` reconciles until a pass changes nothing: it reads `tasks.json` afresh on every pass
//! (state is truth, nothing is cached between passes), picks the first owned task that may
//! run, claims it, runs its node and records the result; a blocked task is recorded once and
//! re-checked on every later pass. A pass with nothing new writes no file.

mod admission;
pub mod artifacts;
mod blocking;
mod execution;
pub mod gates;
pub mod kept;
mod outcome;
pub mod readiness;
pub mod record;
mod recovery;
pub mod requests;
pub mod schedule;

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
use crate::validate::{load_json, load_task_list_indexed};
use crate::workflow::graph::{Action, Environment, Graph, Node};
use crate::workflow::owns;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;
use artifacts::Artifact;
use gates::{Approval, Check, CheckId};
use kept::KeptOutcome;
use record::{BLOCKED_BY, Claimed, HumanRequest};

/// Marks a task made up for a current node of `state.json` that no task stands for (see
/// [`Task::from_state`]).
const FROM_STATE: &str = "from_state";

/// How the ids of the rollback tasks opsflow files for an R17 begin (`ROLLBACK-<UNIT>-<digest>`).
pub(crate) const ROLLBACK_PREFIX: &str = "ROLLBACK-";

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
    /// How long one `run` may go on passing before it returns with `Summary::more` set, so
    /// that a caller (the daemon) stays responsive: health, shutdown and the next events.
    pub budget: Option<std::time::Duration>,
    /// Told of every node as it ends, before the run returns.
    pub progress: Option<Progress>,
    /// What time it is for deploy windows and wait timers (`OPSFLOW_NOW` in tests).
    pub clock: crate::time::Clock,
    /// What each pass leaves of `tasks.json` for the next ([`crate::validate::TaskIndex`]):
    /// a daemon keeps one for all its reconciles.
    pub task_index: Arc<std::sync::Mutex<crate::validate::TaskIndex>>,
}

/// A callback told of every node as it ends.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(&Ran) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
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
    /// The notifications the run's delivery steps tried to send, for `/metrics`.
    #[serde(skip)]
    pub deliveries: Vec<crate::notify::Delivery>,
    /// The run stopped at its budget with work left: run again at once.
    #[serde(skip)]
    pub more: bool,
    /// Each node was told to `Options::progress` as it ended.
    #[serde(skip)]
    pub counted: bool,
    /// The first instant a deploy that waits for its window or wait timer may start: a daemon
    /// reconciles then, whatever files change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<String>,
    #[serde(skip)]
    pub wake: Option<jiff::Timestamp>,
    /// How many owned tasks have each status, as the last pass read `tasks.json` when the file
    /// is still at that version when the run ends (`None` otherwise), for `/metrics`.
    #[serde(skip)]
    pub owned_by_status: Option<std::collections::BTreeMap<String, u64>>,
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
    /// A failed deploy that switched the previous release back in (or undid its rollout):
    /// a rollback, whatever the outcome is called.
    #[serde(skip)]
    pub switched_back: bool,
    /// An agent node's attempts: their verdicts and what they reported spending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentFigures>,
}

/// What an agent node's run did, for `/metrics` and `run --json`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentFigures {
    /// Each attempt's verdict, in order (`passed`, `invalid`, ...).
    pub verdicts: Vec<String>,
    pub tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
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
    /// Tasks whose node ran and ended blocked during this `run` (another runner holds an
    /// `ssh` host's deploy lock, which admission cannot see without connecting): they wait
    /// for the next run instead of being tried again pass after pass. Kept for the whole run,
    /// not a pass.
    pub(super) blocked_by_run: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// A finished run's outcome that is written with the next claim of this `run`, in the
    /// same rewrite of `tasks.json` (`outcome::Deferred`); written on its own at the latest
    /// when the `run` ends.
    deferred: std::cell::RefCell<Option<outcome::Deferred>>,
    /// Failed writes of the workflow's records during this `run`, for the summary (see
    /// [`Summary::write_errors`]).
    write_errors: std::cell::RefCell<Vec<String>>,
}

/// One task's run as the pass resolves it once, in `consider` (or recovery): the task, its
/// node, its release (the task's unit and version; the version of the unit's newest R07 when
/// the task names none) and the environment its node changes. Admission, blocking, execution
/// and outcome recording read these instead of working them out again; a run's own release
/// (`NodeRun::release`, which a paused rollout's journal may set) is what its outcome names.
pub(super) struct Subject<'a> {
    pub(super) task: &'a Task,
    pub(super) node: &'a Node,
    pub(super) release: Release,
    pub(super) environment: Option<String>,
}

/// The facts of one pass that the decisions about each task need, read once when it starts:
/// passed down to admission and execution, never kept between passes.
struct Pass {
    /// The time of this pass, taken once from `Options::clock`.
    now: jiff::Timestamp,
    /// Whether this pass may claim: false while the git remote is unreachable or the sync
    /// stopped (an unpushed claim is not a claim), or once a remote refused a claim.
    claims_allowed: bool,
    /// `tasks.json` as this pass read it, for its claim (see `validate::TaskList::known`):
    /// taken by the claim, dropped when the pass ends.
    known: Option<crate::validate::KnownTasks>,
    /// The version of `tasks.json` this pass read (see [`Summary::owned_by_status`]).
    read: Option<crate::store::file::Stamp>,
    /// The first instant a deploy that waits in this pass may start (see [`Summary::wake`]).
    wake: Option<jiff::Timestamp>,
    /// The releases whose production deployment is open (pending, blocked or running): an
    /// approval without `version` counts only while a single release of its unit waits.
    open_production: Vec<Release>,
    /// Production deployments that failed or were rolled back and are not resolved yet (their
    /// fix task is open and no human set `resolved_by`): later production deployments of that
    /// unit wait (seed 000, "Handling Deployment Failures": block subsequent deployments until
    /// resolved).
    unresolved: Vec<Unresolved>,
}

impl Pass {
    /// Keeps `at` when it is the first instant a waiting deploy of this pass may start.
    fn wake_at(&mut self, at: jiff::Timestamp) {
        if self.wake.is_none_or(|known| at < known) {
            self.wake = Some(at);
        }
    }
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
        let audit = Audit::of(ws, secrets.clone());
        Ok(Engine {
            ws,
            graph,
            renderer,
            audit,
            secrets,
            options,
            blocked_by_run: std::cell::RefCell::default(),
            deferred: std::cell::RefCell::default(),
            write_errors: Default::default(),
        })
    }

    /// Reconciles until nothing more is runnable.
    pub fn run(&self) -> Summary {
        let mut summary = Summary::default();
        if !self.options.dry_run && !self.options.skip_recovery {
            self.recover(&mut summary);
        }
        // What a runner that stopped left in the outbox goes out first.
        self.deliver(&mut summary);
        let started = Instant::now();
        let mut told = 0;
        let mut read = None;
        self.blocked_by_run.borrow_mut().clear();
        summary.counted = self.options.progress.is_some();
        for _ in 0..MAX_PASSES {
            if self.options.cancel.stopping() {
                break;
            }
            let claims_allowed = self.sync_before_pass();
            let mut pass = Pass {
                now: self.options.clock.now(),
                claims_allowed,
                known: None,
                read: None,
                wake: None,
                open_production: Vec::new(),
                unresolved: Vec::new(),
            };
            let acted = self.pass(&mut pass, &mut summary);
            if !acted && self.deferred.borrow().is_some() {
                // No claim comes after this pass: the outcome that waits for one goes now, so
                // that what follows (resolved requests, the summary) reads it. It starts from
                // the pass's read, which is out of date once it is written.
                let known = pass.known.take();
                self.flush_deferred(known.as_ref());
            }
            (read, summary.wake) = (pass.read, pass.wake);
            if acted {
                // The pass changed the file after it read it.
                summary.owned_by_status = None;
            }
            self.deliver(&mut summary);
            if let Some(progress) = &self.options.progress {
                for ran in &summary.ran[told..] {
                    (progress.0)(ran);
                }
                told = summary.ran.len();
            }
            if acted && self.options.budget.is_some_and(|budget| started.elapsed() >= budget) {
                // More may be runnable: the caller runs again at once.
                summary.more = true;
                break;
            }
            // The pass's read of tasks.json serves, while nobody has written the file since.
            let tasks_path = self.ws.path(&self.ws.config.paths.tasks);
            let tasks = pass.known.as_ref().and_then(|known| known.file.current(&tasks_path));
            let deferred = self.deferred.borrow();
            let waiting = deferred.as_ref().map(|d| (d.task.as_str(), d.ops.as_slice()));
            if !self.options.dry_run
                && let Err(e) = requests::resolve(self.ws, &crate::time::now_rfc3339(), tasks, waiting)
            {
                tracing::error!("cannot mark resolved requests in {}: {e}", self.ws.config.paths.human_requests);
            }
            drop(deferred);
            if !self.options.dry_run
                && let Err(e) = requests::archive_resolved(self.ws)
            {
                tracing::error!(
                    "cannot move resolved requests from {} to {}: {e}",
                    self.ws.config.paths.human_requests,
                    requests::archive_path(&self.ws.config.paths.human_requests)
                );
            }
            // After a failed write of state.json the next pass would read the old position
            // and run the same node again: the run stops and reports it.
            if !acted || self.options.dry_run || !self.write_errors.borrow().is_empty() {
                break;
            }
        }
        // The last outcome has no claim to go with: it is written now.
        self.flush_deferred(None);
        if !self.options.dry_run {
            let pruned = kept::prune_runs(self.ws);
            if pruned > 0 {
                tracing::debug!("removed the folders of {pruned} old runs whose outcomes are on their tasks");
            }
        }
        if let Some(sync) = &self.options.sync {
            sync.after_run();
        }
        // A pass that ran nothing may still have written the file (a block) or the sync brought another version: its counts are
        // then of the file before that write.
        let now = crate::store::file::Stamp::of(&self.ws.path(&self.ws.config.paths.tasks));
        if now.is_none() || now != read {
            summary.owned_by_status = None;
        }
        summary.write_errors = self.write_errors.take();
        summary.wake_at = summary.wake.map(crate::time::stamp);
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

    /// Appends one request to `human-requests.md` per task and `cause` (see `requests::append`);
    /// a failure is a failed write.
    fn request_human(&self, request: &HumanRequest, cause: &str, reason: &str) {
        self.escalate(request, cause, reason, None);
    }

    /// [`Engine::request_human`] for a request answered in the file `answer_in`. A new request
    /// is an `escalation` event: queued in the outbox before the entry is written, whose
    /// **Contacts Notified** line says so (and the delivery step says later who accepted it).
    fn escalate(&self, request: &HumanRequest, cause: &str, reason: &str, answer_in: Option<&str>) {
        let mut request = request.clone();
        let channels = crate::notify::channels_for(self.ws, crate::notify::Event::Escalation);
        let key = requests::key_of(&request.task_id, &request.node, cause);
        let escalation = format!("escalation {key} {}", request.run_id);
        if !channels.is_empty() && !requests::is_open(self.ws, &key) {
            let raised = crate::notify::Raised {
                unit_id: request.unit_id.clone(),
                task_id: request.task_id.clone(),
                run_id: request.run_id.clone(),
                message: format!("{} ({}): {}", request.severity, request.status, request.issue),
                file: Some(answer_in.unwrap_or(&self.ws.config.paths.human_requests).to_owned()),
                request_key: Some(key.clone()),
                ..Default::default()
            };
            self.raise(crate::notify::Event::Escalation, &escalation, raised);
        }
        request.notified = crate::notify::outbox::contacts_line(self.ws, &escalation, &channels);
        if let Err(e) = requests::append(self.ws, &self.renderer, &request, cause, reason, answer_in) {
            self.write_failed(format!("cannot append to {}: {e}", self.ws.config.paths.human_requests));
        }
    }

    /// Puts an event in the outbox for the channels that want it (see `notify::enqueue`);
    /// `cause` makes its id, so the same event raised again is queued once.
    fn raise(&self, event: crate::notify::Event, cause: &str, raised: crate::notify::Raised) {
        if !self.options.dry_run && !self.ws.config.notifications.is_empty() {
            crate::notify::enqueue(self.ws, &self.secrets, event, cause, &raised);
        }
    }

    /// Sends what is due in the outbox, within its budget (`notify::deliver_due`).
    fn deliver(&self, summary: &mut Summary) {
        if !self.options.dry_run {
            summary.deliveries.extend(crate::notify::deliver_due(self.ws, &self.secrets));
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

    /// With `git.sync`: fetch, rebase and push before a pass. Returns whether the pass may
    /// claim: only while in sync.
    fn sync_before_pass(&self) -> bool {
        let Some(sync) = &self.options.sync else { return true };
        if let Some(warning) = sync.restart_needed(&self.ws.config.git) {
            tracing::warn!("{warning}");
        }
        // What runs, before and after the rebase: a change the sync brought in is untrusted
        // until a person trusts it; what changed here before the sync is the user's own.
        let before = crate::trust::snapshot(self.ws);
        crate::trust::note_local(self.ws, &before);
        let head = crate::environment::view::head_commit(&self.ws.root).map(|(commit, _)| commit);
        let pass = sync.before_pass();
        let after = crate::trust::snapshot(self.ws);
        if after != before {
            crate::trust::arrived(self.ws, &before, &after, head.as_deref(), &self.audit);
        }
        let claims_allowed = pass == crate::sync::Pass::Ready;
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
                notified: String::new(),
                raised_at: crate::time::now_rfc3339(),
                run_id: new_run_id(),
            };
            self.request_human(&request, &reason, &reason);
        }
        claims_allowed
    }

    /// One pass with its facts `facts`, which it completes as it reads; returns whether it ran
    /// a node (and so another pass may find more to do).
    fn pass(&self, facts: &mut Pass, summary: &mut Summary) -> bool {
        summary.blocked.clear();
        summary.waiting.clear();
        summary.plan.clear();
        summary.problems.clear();
        // Only owned entries that may still act are decoded and checked: a pass costs the
        // agent's open work, not the size of the file (finished tasks count by their status).
        let mut index = self.options.task_index.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut loaded = load_task_list_indexed(
            self.ws,
            |head| {
                let status = TaskStatus::parse(head.status.as_deref().unwrap_or_default());
                let failed_production = head.kind.as_deref() == Some("deployment_production") && status.is_failure();
                (status.is_open() || failed_production)
                    && owns(&self.ws.config, head.agent.as_deref(), head.kind.as_deref())
            },
            |id| id.starts_with(record::FIX_PREFIX) || id.starts_with(ROLLBACK_PREFIX),
            Some(&mut index),
        );
        drop(index);
        summary.owned_by_status = None;
        if !loaded.readable {
            summary.problems.extend(loaded.diagnostics);
            return false;
        }
        summary.owned_by_status = Some(std::mem::take(&mut loaded.owned_by_status));
        facts.read = loaded.stamp;
        facts.known = loaded.known.take();
        let prefix = std::mem::take(&mut loaded.prefix);
        let prefix = prefix.as_str();
        // Each owned entry that may act is decoded into a typed task once per pass.
        let mut owned: Vec<(usize, Task)> = std::mem::take(&mut loaded.kept)
            .into_iter()
            .map(|(index, value)| (index, Task::from_value(value)))
            .collect();
        self.overlay_deferred(&mut owned, &mut loaded.statuses, &mut facts.known);
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
        // No node of this runner runs while a pass starts: an owned task that shows this
        // runner's claim and whose run finished was put back by another writer (a rename of
        // an older copy into place). It gets the outcome again.
        if !self.options.dry_run {
            let agent = self.ws.config.agent.name.as_str();
            for (_, task) in owned.iter().filter(|(_, t)| t.status == TaskStatus::InProgress) {
                let Some(run_id) = task.run_id.as_deref().filter(|_| task.claimed_by.as_deref() == Some(agent)) else {
                    continue;
                };
                if let Ok(Some(mut kept)) = KeptOutcome::load(self.ws, run_id)
                    && kept.task == task.id
                    && self.apply_kept(&mut kept)
                {
                    return true;
                }
            }
        }
        // Outcomes kept aside: recorded as soon as their claim is back; until then their
        // task does not run again, whatever its entry says now.
        let mut waiting_outcomes = Vec::new();
        for mut kept in kept::pending(self.ws) {
            if !self.options.dry_run && self.apply_kept(&mut kept) {
                return true;
            }
            let reason = kept.explain(self.ws);
            summary.blocked.push(Blocked {
                task: kept.task.clone(),
                node: kept.node.clone(),
                checks: vec![Check::new("outcome", "no finished run waits to be recorded", false, reason.clone())],
                reason,
            });
            waiting_outcomes.push(kept);
        }
        let status_of = |id: &str| loaded.statuses.get(id).map(String::as_str);
        let beads = crate::integrations::beads::load(self.ws);
        let production = |t: &&(usize, Task)| t.1.kind == "deployment_production";
        let open_production =
            owned.iter().filter(production).filter(|(_, t)| t.status.is_open()).map(|(_, t)| t.release()).collect();
        let unresolved = owned
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
        (facts.open_production, facts.unresolved) = (open_production, unresolved);
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
            if task.status != TaskStatus::Pending && !ours_blocked || waiting_outcomes.iter().any(|k| k.task == task.id)
            {
                continue;
            }
            let entry_problems: Vec<Diagnostic> =
                loaded.diagnostics.iter().filter(|d| readiness::is_problem_of(d, prefix, *index)).cloned().collect();
            if !entry_problems.is_empty() {
                summary.problems.extend(entry_problems);
                continue;
            }
            let waits = readiness::waiting_on(task, status_of, &beads);
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
            if self.consider(facts, task, node, &state, summary) {
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
            if self.consider(facts, &Task::from_value(task), node, &state, summary) {
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
    fn consider(&self, facts: &mut Pass, task: &Task, node: &Node, state: &Value, summary: &mut Summary) -> bool {
        let id = task.id.clone();
        if self.blocked_by_run.borrow().contains(&id) {
            return false;
        }
        let subject = self.subject(task, node);
        match self.readiness(facts, &subject) {
            Readiness::Invalid(problems) => summary.problems.extend(problems),
            Readiness::Blocked { mut checks, mut reason, qa_rejected, request_approval } => {
                if !self.options.dry_run {
                    if request_approval && self.write_approval_request(&subject, &checks) {
                        // The request exists now: record the reason every later pass will see.
                        if let Readiness::Blocked { checks: now, reason: why, .. } = self.readiness(facts, &subject) {
                            (checks, reason) = (now, why);
                        }
                    }
                    self.block(&subject, &reason, qa_rejected.as_deref(), request_approval, &checks);
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
                if let Some(ran) = self.execute(facts, &subject, inputs, checks, version, state) {
                    summary.ran.push(ran);
                    return true;
                }
            }
        }
        false
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
    // The lock, window and wait timer hold the deploy after the approval too: they do not
    // change what a person owes it.
    let blocking: Vec<&Check> = checks.iter().filter(|c| c.blocks() && c.id != CheckId::Schedule).collect();
    !blocking.is_empty() && blocking.iter().all(|c| c.id == CheckId::HumanApproval || c.overridable)
}

/// Whether only the lock, window or wait timer hold a task back: nobody is asked for anything.
fn only_scheduled(checks: &[Check]) -> bool {
    let mut blocking = checks.iter().filter(|c| c.blocks()).peekable();
    blocking.peek().is_some() && blocking.all(|c| c.id == CheckId::Schedule)
}

/// Lets through the failed checks a person may let through, saying who did and where.
fn allow_overridable(checks: &mut [Check], letter: &str) {
    for check in checks.iter_mut().filter(|c| c.overridable && !c.passed) {
        check.passed = true;
        check.detail = format!("{}; let through on purpose with {letter}", check.detail);
    }
}
