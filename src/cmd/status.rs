//! `opsflow status [--json]`: the workflow position, the owned tasks and what holds them back.

use serde::Serialize;
use serde_json::Value;

use super::print_json;
use crate::Exit;
use crate::engine::readiness::{self, Wait};
use crate::schema::SchemaName;
use crate::task::Task;
use crate::validate::{load_json, load_tasks};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;

#[derive(Debug, Serialize)]
struct Status {
    workspace: String,
    agent: String,
    workflow: Option<String>,
    /// The owners of the workflow's agent nodes, whose tasks of those nodes' types this runner
    /// also runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acting_for: Vec<String>,
    current_nodes: Vec<String>,
    nodes: Vec<NodeStatus>,
    tasks: Vec<OwnedTask>,
    /// What each environment runs, from its record: the live release, what a rollback would
    /// restore.
    environments: Vec<crate::environment::view::EnvironmentView>,
    /// Each environment's lock, deploy window and wait timer, where it has one.
    schedules: Vec<Schedule>,
    /// Releases a person put on hold: `UNIT-001 1.2.0 (task P-7: ...)`.
    held: Vec<String>,
    /// Fix tasks opsflow filed for failures that are not finished: `FIX-P-7 (pending)`.
    open_fix_tasks: Vec<String>,
    /// Set when the check that a release contains what is live cannot be made here.
    #[serde(skip_serializing_if = "Option::is_none")]
    commit_check: Option<String>,
    /// Rollouts in progress or paused (`.opsflow/rollouts/`).
    rollouts: Vec<Rollout>,
    /// The last ends of runs in the audit log, newest last.
    last_runs: Vec<Value>,
    /// Problems with the files status read.
    diagnostics: Vec<Diagnostic>,
    /// Changes git sync brought in to commands or overrides that nobody trusted yet: the nodes
    /// that use them are held until `opsflow trust`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    untrusted: Vec<String>,
    /// With `git.sync`: whether the remote answered the last runner, and since when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<crate::sync::RemoteStatus>,
    /// With `notifications` (or entries left in the outbox): what waits to be sent, and which
    /// channels fail since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<crate::notify::OutboxStatus>,
    /// Things that keep a task from running as meant without being errors (the exit code
    /// stays): an agent that nearly names this runner, an owned task's unknown status. The
    /// same lines `validate` prints.
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Rollout {
    environment: String,
    task: String,
    version: String,
    strategy: String,
    phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<String>,
}

/// How many ends of runs `status` shows.
const LAST_RUNS: usize = 10;
/// How much of the audit log's end `status` reads to find them.
const AUDIT_TAIL_BYTES: u64 = 256 * 1024;

/// The last `LAST_RUNS` task ends recorded in the audit log (its last `AUDIT_TAIL_BYTES`).
fn last_runs(ws: &Workspace) -> Vec<Value> {
    use std::io::{Read, Seek, SeekFrom};
    let path = ws.path(&ws.config.paths.runtime).join("audit.jsonl");
    // Opened only if it is a regular file: a FIFO in its place would block `status`.
    let Ok(Some(mut file)) = crate::workspace::read::open_regular(&path, "audit.jsonl") else { return Vec::new() };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = length.saturating_sub(AUDIT_TAIL_BYTES);
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(start)).and_then(|_| file.read_to_end(&mut tail)).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&tail);
    // A read that starts mid-file starts mid-line: the first line is skipped.
    let lines = text.lines().skip(usize::from(start > 0));
    let ends: Vec<Value> = lines
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| {
            matches!(
                entry.get("event").and_then(Value::as_str),
                Some("done" | "deployed" | "failed" | "rolled_back" | "paused")
            )
        })
        .map(|entry| {
            serde_json::json!({
                "time": entry.get("time"),
                "run_id": entry.get("run_id"),
                "task": entry.get("subject"),
                "outcome": entry.get("event"),
                "summary": entry.get("reason"),
            })
        })
        .collect();
    ends[ends.len().saturating_sub(LAST_RUNS)..].to_vec()
}

#[derive(Debug, Serialize)]
struct NodeStatus {
    name: String,
    status: String,
}

#[derive(Debug, Serialize)]
struct OwnedTask {
    id: String,
    status: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_id: Option<String>,
    /// `depends_on` entries that are not finished yet.
    waiting_on: Vec<String>,
    /// Each of them with why it holds the task: the text `run` prints for it too.
    waiting_why: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_reason: Option<String>,
    /// What a person does next for it, when something waits on a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    /// Problems inside this task's entry.
    problems: Vec<String>,
    /// An agent node running for this task: its attempt and how long it has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<RunningAgent>,
}

#[derive(Debug, Serialize)]
struct RunningAgent {
    node: String,
    run_id: String,
    attempt: u32,
    max_attempts: u32,
    started_at: String,
    elapsed_seconds: i64,
    attempt_elapsed_seconds: i64,
}

/// The agent node running for `task`, from its run's progress file, while it runs.
fn running_agent(ws: &Workspace, task: &Task) -> Option<RunningAgent> {
    if task.status != crate::task::TaskStatus::InProgress {
        return None;
    }
    let run_id = task.run_id.as_deref()?;
    let relative =
        format!("{}/runs/{run_id}/{}", ws.config.paths.runtime.trim_end_matches('/'), crate::agent::PROGRESS_FILE);
    let text = ws.read_text(&relative).ok()??;
    let progress: crate::agent::Progress = serde_json::from_str(&text).ok()?;
    let since = |stamp: &str| {
        stamp.parse::<jiff::Timestamp>().map_or(0, |at| jiff::Timestamp::now().as_second() - at.as_second())
    };
    Some(RunningAgent {
        node: progress.node,
        run_id: run_id.to_owned(),
        attempt: progress.attempt,
        max_attempts: progress.max_attempts,
        elapsed_seconds: since(&progress.started_at),
        attempt_elapsed_seconds: since(&progress.attempt_started_at),
        started_at: progress.started_at,
    })
}

/// What a person does next for a task in `status`, from what it says and what waits on it:
/// an approval to give or a hold to lift, a paused rollout to decide, a fix task to finish, a
/// failed release to answer. `None` when nothing waits on a person.
pub(super) fn next_step(task: &Task, fix: Option<(&str, &str)>) -> Option<String> {
    use crate::task::TaskStatus;
    let reason = task.blocked_reason.as_deref().unwrap_or_default();
    let file_in = |marker: &str| {
        reason
            .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == ')')
            .find(|w| w.contains(marker))
            .map(|w| w.trim_matches(|c: char| c == '`' || c == ',' || c == ':').to_owned())
    };
    match &task.status {
        TaskStatus::Blocked if reason.contains("on hold") => Some(format!(
            "held: remove the hold in {} (untick `Hold`, or set `status: approved`) to let it ship",
            file_in("-approval").unwrap_or_else(|| "its approval file".to_owned())
        )),
        TaskStatus::Blocked if reason.contains("rollout paused") => Some(format!(
            "decide in {}: `decision: proceed` or `decision: rollback`, with `decided_by` and `reason`",
            file_in("R17-rollback-decision").unwrap_or_else(|| "its R17 file".to_owned())
        )),
        TaskStatus::Blocked if reason.contains("allow_revert") => Some(
            "ship an older build on purpose with `allow_revert: true` in its approval, or build a new version on top of what is live"
                .to_owned(),
        ),
        TaskStatus::Blocked if reason.contains("human approval") => Some(format!(
            "approve in {}: `status: approved` and `approved_by`, or tick `- [x] Approved`{}",
            file_in("-approval").unwrap_or_else(|| "its approval file".to_owned()),
            scheduled_wait(reason).map(|wait| format!("; then it still waits: {wait}")).unwrap_or_default()
        )),
        TaskStatus::Blocked if locked_environment(reason).is_some() => Some(format!(
            "{} is locked: `opsflow unlock {}` lets it deploy (whoever locked it said why: see the reason)",
            locked_environment(reason).unwrap_or_default(),
            locked_environment(reason).unwrap_or_default()
        )),
        status if status.is_failure() && task.resolved_by.as_deref().is_none_or(|b| b.trim().is_empty()) => {
            Some(match fix {
                Some((fix, fix_status)) if !matches!(fix_status, "done" | "deployed" | "cancelled") => format!(
                    "waits for fix task {fix} (`{fix_status}`); a failed release cannot change: ship a new version, and set `resolved_by` on {} once handled",
                    task.id
                ),
                _ => format!("set `resolved_by` on {} once the failure is handled; ship a new version to retry", task.id),
            })
        }
        _ => None,
    }
}

/// The environment a blocked reason says is locked (`environment lock: production is locked by …`).
pub(super) fn locked_environment(reason: &str) -> Option<&str> {
    let after = reason.split(&format!("{}: ", crate::engine::schedule::LOCK_CHECK)).nth(1)?;
    after.split(" is ").next().filter(|name| !name.is_empty() && !name.contains(' '))
}

/// The deploy window and wait timer a blocked reason waits for, in its own words; only time
/// clears them.
pub(super) fn scheduled_wait(reason: &str) -> Option<String> {
    use crate::engine::schedule::{TIMER_CHECK, WINDOW_CHECK};
    let waits: Vec<&str> = reason
        .split("; ")
        .filter(|part| part.starts_with(&format!("{WINDOW_CHECK}: ")) || part.starts_with(&format!("{TIMER_CHECK}: ")))
        .collect();
    (!waits.is_empty()).then(|| waits.join("; "))
}

/// An environment's lock, deploy window and wait timer, for `status`.
#[derive(Debug, Serialize)]
struct Schedule {
    environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<crate::environment::freeze::Lock>,
    /// A lock file that cannot be read (deploys wait as if locked).
    #[serde(skip_serializing_if = "Option::is_none")]
    lock_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_open: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wait_timer: Option<String>,
}

impl Schedule {
    fn of(ws: &Workspace, env: &crate::rollout::deploy::EnvConfig, now: jiff::Timestamp) -> Option<Schedule> {
        let lock = crate::environment::freeze::load_lock(&ws.root, &ws.config.paths.runtime, &env.name);
        let schedule = Schedule {
            environment: env.name.clone(),
            lock_error: lock.as_ref().err().map(ToString::to_string),
            lock: lock.ok().flatten(),
            deploy_window: env.deploy_window.as_ref().map(|w| w.describe(now)),
            window_open: env.deploy_window.as_ref().map(|w| w.is_open(now)),
            wait_timer: env.wait_timer.map(crate::duration::format_duration),
        };
        let any = schedule.lock.is_some()
            || schedule.lock_error.is_some()
            || schedule.deploy_window.is_some()
            || schedule.wait_timer.is_some();
        any.then_some(schedule)
    }

    fn lines(&self) -> Vec<String> {
        let name = &self.environment;
        let mut lines = Vec::new();
        if let Some(lock) = &self.lock {
            lines.push(format!("{name} is {}: no deploy starts there until `opsflow unlock {name}`", lock.describe()));
        }
        if let Some(error) = &self.lock_error {
            lines.push(format!("{name} lock: {error}; deploys wait"));
        }
        if let Some(window) = &self.deploy_window {
            lines.push(format!("{name} deploy window: {window}"));
        }
        if let Some(timer) = &self.wait_timer {
            lines.push(format!("{name} wait timer: {timer} after the approval"));
        }
        lines
    }
}

pub fn run(ws: &Workspace, as_json: bool) -> anyhow::Result<Exit> {
    let mut diagnostics: Vec<Diagnostic> = ws.config_problems.clone();
    let state = load_json(ws, &ws.config.paths.state, SchemaName::State);
    diagnostics.extend(state.diagnostics.iter().cloned());
    let tasks = load_tasks(ws);

    let state_value = state.value.unwrap_or(Value::Null);
    let current_nodes: Vec<String> = state_value
        .get("current_nodes")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let nodes = state_value
        .get("nodes")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(name, node)| NodeStatus {
                    name: name.clone(),
                    status: node.get("status").and_then(Value::as_str).unwrap_or("?").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();

    let selection = ws.task_selection();
    let found = tasks.value.as_ref().and_then(|v| crate::task::entries(v, &selection));
    let (prefix, list): (&str, &[Value]) = found.as_ref().map(|f| (f.prefix.as_str(), &*f.list)).unwrap_or(("", &[]));
    let subtasks = found.as_ref().and_then(|f| f.subtasks.as_ref());
    let status_of = |id: &str| {
        let entry = list.iter().find(|t| t.get("id").and_then(Value::as_str) == Some(id));
        entry
            .and_then(|t| t.get("status"))
            .and_then(Value::as_str)
            .or_else(|| subtasks.and_then(|s| s.get(id)).map(String::as_str))
    };
    let beads = crate::integrations::beads::load(ws);
    let mut owned = Vec::new();
    let mut entry_problems = vec![false; tasks.diagnostics.len()];
    for (index, entry) in list.iter().enumerate() {
        if !crate::task::owned_entry(&ws.config, entry) {
            continue;
        }
        // Only owned entries are decoded: the list may be large, and the rest is others' work.
        let task = Task::from_value(entry.clone());
        let problems = tasks
            .diagnostics
            .iter()
            .enumerate()
            .filter(|(_, d)| readiness::is_problem_of(d, prefix, index))
            .map(|(i, d)| {
                entry_problems[i] = true;
                d.to_string()
            })
            .collect();
        let waits = readiness::waiting_on(&task, status_of, &beads);
        let raw_text = |key: &str| task.raw.get(key).and_then(Value::as_str).map(str::to_owned);
        let fix_id = crate::engine::record::fix_task_id(&task.id);
        let fix = status_of(&fix_id).map(|s| (fix_id.as_str(), s));
        let next = next_step(&task, fix);
        // A cancelled task waits on nothing: what it once waited for is not shown.
        let cancelled = task.status == crate::task::TaskStatus::Cancelled;
        owned.push(OwnedTask {
            next,
            id: task.id.clone(),
            status: task.status.to_string(),
            kind: task.kind.clone(),
            title: task.title.clone(),
            unit_id: raw_text("unit_id"),
            waiting_on: if cancelled { Vec::new() } else { waits.iter().map(|w| w.id.clone()).collect() },
            waiting_why: if cancelled { Vec::new() } else { waits.iter().map(Wait::describe).collect() },
            blocked_reason: task.blocked_reason.clone().filter(|_| !cancelled),
            problems,
            agent: running_agent(ws, &task),
        });
    }
    // Problems inside other agents' entries do not hold this runner back; file-level ones do.
    diagnostics.extend(
        tasks
            .diagnostics
            .iter()
            .zip(&entry_problems)
            .filter(|(d, shown)| {
                let foreign = readiness::entry_of(d, prefix)
                    .and_then(|i| list.get(i))
                    .is_some_and(|t| !crate::task::owned_entry(&ws.config, t));
                !**shown && !foreign
            })
            .map(|(d, _)| d.clone()),
    );
    let warnings = crate::validate::task_warnings(ws, &tasks);

    let rollouts = crate::rollout::journal::Journal::all(ws)
        .into_iter()
        .map(|j| Rollout {
            environment: j.environment,
            task: j.task,
            version: j.version,
            strategy: j.strategy,
            phase: serde_json::to_value(j.phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            waiting_for: j.pause.map(|p| format!("a decision in {} ({}: {})", p.decision_file, p.stage, p.reason)),
        })
        .collect();
    let environments = ws
        .environments
        .iter()
        .map(|env| {
            let read = env.history(ws);
            let hosts = read.as_ref().map(|record| record.hosts.clone()).unwrap_or_default();
            let record = read.map_err(|e| e.to_string()).map(|record| {
                let live = env.live(ws, &record);
                (live, crate::rollout::deploy::restorable(ws, env, &record))
            });
            let mut view =
                crate::environment::view::EnvironmentView::new(&env.name, ws.label(&env.record_path(ws)), record);
            view.hosts = hosts;
            view
        })
        .collect();
    let now = crate::time::Clock::from_env().now();
    let schedules = ws.environments.iter().filter_map(|env| Schedule::of(ws, env, now)).collect();
    let held = owned
        .iter()
        .filter(|t| t.status == "blocked" && t.blocked_reason.as_deref().is_some_and(|r| r.contains("on hold")))
        .map(|t| {
            let version = list
                .iter()
                .find(|e| e.get("id").and_then(Value::as_str) == Some(t.id.as_str()))
                .and_then(|e| e.get("version").and_then(Value::as_str))
                .unwrap_or_default();
            format!("{} {version} (task {})", t.unit_id.as_deref().unwrap_or("no unit"), t.id)
        })
        .collect();
    let open_fix_tasks = list
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("bug_fix"))
        .filter_map(|e| {
            let id = e.get("id").and_then(Value::as_str)?;
            let status = e.get("status").and_then(Value::as_str).unwrap_or("pending");
            let source = e.get("source_task").and_then(Value::as_str).unwrap_or("?");
            (!matches!(status, "done" | "deployed" | "cancelled")).then(|| format!("{id} (`{status}`, for {source})"))
        })
        .collect();
    let commit_check = crate::environment::view::head_commit(&ws.root).is_none().then(|| {
        "cannot be made: this workspace is not a git repository with a commit, so a release is not checked for removing what production runs".to_owned()
    });
    let status = Status {
        workspace: ws.root.display().to_string(),
        acting_for: crate::workflow::agents_acted_for(&ws.config).into_iter().skip(1).collect(),
        environments,
        schedules,
        held,
        open_fix_tasks,
        commit_check,
        agent: ws.config.agent.name.clone(),
        workflow: state_value.get("workflow").and_then(Value::as_str).map(str::to_owned),
        current_nodes,
        nodes,
        tasks: owned,
        rollouts,
        last_runs: last_runs(ws),
        diagnostics,
        remote: ws.config.git.sync.then(|| {
            crate::sync::GitSync::read_status(ws).unwrap_or_else(|| crate::sync::RemoteStatus {
                remote: format!("{}/{}", ws.config.git.remote, ws.config.git.branch),
                ..Default::default()
            })
        }),
        notifications: {
            let outbox = crate::notify::outbox::status(ws);
            (!ws.config.notifications.is_empty() || outbox.pending > 0 || !outbox.unreadable.is_empty())
                .then_some(outbox)
        },
        warnings,
        untrusted: crate::trust::untrusted(ws).iter().map(crate::trust::describe).collect(),
    };
    // Whatever `validate` refuses makes `status` fail too, even a file `status` itself does
    // not read (a QA report, an approval), so scripts can trust either exit code.
    let validated = crate::validate::validate_workspace(ws);
    let invalid = !status.diagnostics.is_empty()
        || status.tasks.iter().any(|t| !t.problems.is_empty())
        || !validated.diagnostics.is_empty();
    if as_json {
        print_json(&status)?;
    } else {
        print_text(&status);
    }
    let shown: std::collections::HashSet<String> = status
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .chain(status.tasks.iter().flat_map(|t| t.problems.iter().cloned()))
        .collect();
    for diagnostic in validated.diagnostics.iter().map(ToString::to_string).filter(|d| !shown.contains(d)) {
        eprintln!("{diagnostic}");
    }
    if let Some(sentence) = crate::validate::FailingEntries::of(ws, &tasks).sentence(&ws.config.agent.name) {
        eprintln!("{sentence}");
    }
    Ok(if invalid { Exit::Invalid } else { Exit::Ok })
}

/// How many notifications wait: `nothing pending` when the outbox is empty.
fn notifications_line(outbox: &crate::notify::OutboxStatus) -> String {
    match outbox.pending {
        0 => "nothing pending: every notification was delivered".to_owned(),
        1 => "1 pending in the outbox".to_owned(),
        n => format!("{n} pending in the outbox"),
    }
}

/// One channel with entries waiting: how many, and since when its deliveries fail and why.
fn channel_line(channel: &crate::notify::ChannelHealth) -> String {
    let mut line = format!("{}: {} pending", channel.channel, channel.pending);
    if channel.unconfigured {
        line.push_str("; no channel of `notifications` has this name, so they are not sent");
    }
    if let Some(since) = &channel.failing_since {
        line.push_str(&format!("; failing since {since}"));
    }
    if let Some(error) = &channel.last_error {
        line.push_str(&format!(" ({error})"));
    }
    line
}

/// One line on the git remote: reachable, or since when not and why, or a stopped sync.
fn remote_line(remote: &crate::sync::RemoteStatus) -> String {
    let mut line = match (&remote.unreachable_since, remote.reachable) {
        (Some(since), _) => format!(
            "{} unreachable since {since}: {}; no new claims",
            remote.remote,
            remote.last_error.as_deref().unwrap_or("no answer")
        ),
        (None, true) => format!("{} reachable", remote.remote),
        (None, false) => format!("{} not contacted yet", remote.remote),
    };
    if let Some(stopped) = &remote.stopped {
        line.push_str(&format!("; sync stopped: {stopped}"));
    }
    line
}

fn print_text(status: &Status) {
    println!("workspace  {}", status.workspace);
    println!("agent      {}", status.agent);
    println!("workflow   {}", status.workflow.as_deref().unwrap_or("(no state.json)"));
    if let Some(remote) = &status.remote {
        println!("remote     {}", remote_line(remote));
    }
    println!(
        "current    {}",
        if status.current_nodes.is_empty() { "(none)".to_owned() } else { status.current_nodes.join(", ") }
    );
    if !status.nodes.is_empty() {
        println!("\nnodes");
        let width = status.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
        for node in &status.nodes {
            let marker = if status.current_nodes.contains(&node.name) { "*" } else { " " };
            println!("  {marker} {:width$}  {}", node.name, node.status);
        }
    }
    if !status.untrusted.is_empty() {
        println!("\nuntrusted changes (the nodes that use them are held; review, then `opsflow trust`)");
        for change in &status.untrusted {
            println!("  {change}");
        }
    }
    if status.acting_for.is_empty() {
        println!("\ntasks owned by {}", status.agent);
    } else {
        println!("\ntasks owned by {} and, through agent nodes, by {}", status.agent, status.acting_for.join(", "));
    }
    if status.tasks.is_empty() {
        println!("  (none): add the first with `opsflow tasks add --title ... --owner devops --type ...`");
        println!("  (the README's first hour, and what `opsflow init` printed, say which)");
    }
    for task in &status.tasks {
        let unit = task.unit_id.as_deref().map(|u| format!("  [{u}]")).unwrap_or_default();
        println!("  {}  {}  {}{unit}  {}", task.id, task.status, task.kind, task.title);
        for why in &task.waiting_why {
            println!("      waiting on {why}");
        }
        if let Some(reason) = &task.blocked_reason {
            println!("      blocked: {reason}");
        }
        if let Some(agent) = &task.agent {
            println!(
                "      agent: {} attempt {} of {}, running {} s (this attempt {} s), run {}",
                agent.node,
                agent.attempt,
                agent.max_attempts,
                agent.elapsed_seconds,
                agent.attempt_elapsed_seconds,
                agent.run_id
            );
        }
        if let Some(next) = &task.next {
            println!("      next: {next}");
        }
        for problem in &task.problems {
            println!("      problem: {problem}");
        }
    }
    if !status.environments.is_empty() {
        println!("\nenvironments");
        for environment in &status.environments {
            for line in environment.lines() {
                println!("  {line}");
            }
        }
        for line in status.schedules.iter().flat_map(Schedule::lines) {
            println!("  {line}");
        }
        for held in &status.held {
            println!("  held: {held}");
        }
        for fix in &status.open_fix_tasks {
            println!("  open fix task: {fix}");
        }
        if let Some(why) = &status.commit_check {
            println!("  commit check {why}");
        }
    }
    if !status.rollouts.is_empty() {
        println!("\nrollouts");
        for rollout in &status.rollouts {
            println!(
                "  {}  {} {} ({}, task {})",
                rollout.environment, rollout.phase, rollout.version, rollout.strategy, rollout.task
            );
            if let Some(waiting) = &rollout.waiting_for {
                println!("      waiting for {waiting}");
            }
        }
    }
    if !status.last_runs.is_empty() {
        println!("\nlast runs");
        let field = |run: &Value, key: &str| run.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        for run in &status.last_runs {
            println!(
                "  {}  {:<12} {:<11} {}",
                field(run, "time"),
                field(run, "task"),
                field(run, "outcome"),
                field(run, "summary")
            );
        }
    }
    if let Some(outbox) = &status.notifications {
        println!("\nnotifications");
        println!("  {}", notifications_line(outbox));
        for channel in &outbox.channels {
            println!("  {}", channel_line(channel));
        }
        for file in &outbox.unreadable {
            println!("  unreadable: {file}");
        }
    }
    if !status.diagnostics.is_empty() {
        println!("\nproblems");
        for diagnostic in &status.diagnostics {
            println!("  {diagnostic}");
        }
    }
    if !status.warnings.is_empty() {
        println!("\nwarnings");
        for warning in &status.warnings {
            println!("  warning: {warning}");
        }
    }
}
