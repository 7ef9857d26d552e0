//! `opsflow status [--json]`: the workflow position, the owned tasks and what holds them back.

use serde::Serialize;
use serde_json::Value;

use super::print_json;
use crate::Exit;
use crate::schema::SchemaName;
use crate::validate::{load_json, load_tasks};
use crate::workflow::{FINISHED_STATUSES, owns};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;

#[derive(Debug, Serialize)]
struct Status {
    workspace: String,
    agent: String,
    workflow: Option<String>,
    current_nodes: Vec<String>,
    nodes: Vec<NodeStatus>,
    tasks: Vec<TaskStatus>,
    /// Rollouts in progress or paused (`.opsflow/rollouts/`).
    rollouts: Vec<Rollout>,
    /// The last ends of runs in the audit log, newest last.
    last_runs: Vec<Value>,
    /// Problems with the files status read.
    diagnostics: Vec<Diagnostic>,
    /// With `git.sync`: whether the remote answered the last runner, and since when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<crate::sync::RemoteStatus>,
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
struct TaskStatus {
    id: String,
    status: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_id: Option<String>,
    /// `depends_on` entries that are not finished yet.
    waiting_on: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_reason: Option<String>,
    /// Problems inside this task's entry.
    problems: Vec<String>,
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

    let (prefix, list): (&str, Vec<Value>) = match &tasks.value {
        Some(Value::Array(list)) => ("", list.clone()),
        Some(Value::Object(map)) => ("/tasks", map.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default()),
        _ => ("", Vec::new()),
    };
    let status_of = |id: &str| {
        list.iter()
            .find(|t| t.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|t| t.get("status"))
            .and_then(Value::as_str)
    };
    let text = |task: &Value, key: &str| task.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut owned = Vec::new();
    let mut entry_problems = vec![false; tasks.diagnostics.len()];
    for (index, task) in list.iter().enumerate() {
        if !owns(&ws.config, task.get("agent").and_then(Value::as_str), task.get("type").and_then(Value::as_str)) {
            continue;
        }
        let pointer = format!("{prefix}/{index}");
        let problems = tasks
            .diagnostics
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.pointer.as_deref().is_some_and(|p| p == pointer || p.starts_with(&format!("{pointer}/")))
            })
            .map(|(i, d)| {
                entry_problems[i] = true;
                d.to_string()
            })
            .collect();
        let waiting_on = task
            .get("depends_on")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .filter_map(Value::as_str)
                    .filter(|dep| !status_of(dep).is_some_and(|s| FINISHED_STATUSES.contains(&s)))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        owned.push(TaskStatus {
            id: text(task, "id").unwrap_or_default(),
            status: text(task, "status").unwrap_or_default(),
            kind: text(task, "type").unwrap_or_default(),
            title: text(task, "title").unwrap_or_default(),
            unit_id: text(task, "unit_id"),
            waiting_on,
            blocked_reason: text(task, "blocked_reason"),
            problems,
        });
    }
    // Problems inside other agents' entries do not hold this runner back; file-level ones do.
    diagnostics.extend(
        tasks
            .diagnostics
            .iter()
            .zip(&entry_problems)
            .filter(|(d, shown)| !**shown && !is_foreign_entry_problem(d, prefix, &list, ws))
            .map(|(d, _)| d.clone()),
    );

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
    let status = Status {
        workspace: ws.root.display().to_string(),
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
    Ok(if invalid { Exit::Invalid } else { Exit::Ok })
}

fn is_foreign_entry_problem(diagnostic: &Diagnostic, prefix: &str, list: &[Value], ws: &Workspace) -> bool {
    let Some(rest) =
        diagnostic.pointer.as_deref().and_then(|p| p.strip_prefix(prefix)).and_then(|p| p.strip_prefix('/'))
    else {
        return false;
    };
    let Some(index) = rest.split('/').next().and_then(|i| i.parse::<usize>().ok()) else { return false };
    list.get(index).is_some_and(|task| {
        !owns(&ws.config, task.get("agent").and_then(Value::as_str), task.get("type").and_then(Value::as_str))
    })
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
    println!("\ntasks owned by {}", status.agent);
    if status.tasks.is_empty() {
        println!("  (none)");
    }
    for task in &status.tasks {
        let unit = task.unit_id.as_deref().map(|u| format!("  [{u}]")).unwrap_or_default();
        println!("  {}  {}  {}{unit}  {}", task.id, task.status, task.kind, task.title);
        if !task.waiting_on.is_empty() {
            println!("      waiting on {}", task.waiting_on.join(", "));
        }
        if let Some(reason) = &task.blocked_reason {
            println!("      blocked: {reason}");
        }
        for problem in &task.problems {
            println!("      problem: {problem}");
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
    if !status.diagnostics.is_empty() {
        println!("\nproblems");
        for diagnostic in &status.diagnostics {
            println!("  {diagnostic}");
        }
    }
}
