//! `opsflow tasks list|add|update|release`: the safe way for agents and scripts to use `tasks.json`.
//!
//! `list` reads through the span scanner, so filtering 100,000 tasks decodes only the
//! matches. `add` and `update` go through the store: under the lock, checked against the
//! task schema, touching only the entry they edit. `release` frees the claim of a task whose
//! runner is gone, after making sure no live runner of this workspace is running it.

use std::io::{self, BufWriter, Write};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::require_valid_config;
use crate::Exit;
use crate::cli::{AddArgs, ListArgs, ReleaseArgs, TasksCommand, UpdateArgs};
use crate::schema::SchemaName;
use crate::store::edit::FieldOp;
use crate::store::file::Content;
use crate::store::json::{Span, SyntaxError};
use crate::store::tasks::{self, Layout, TaskEdits};
use crate::store::{StoreError, file};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::Diagnostic;

/// Runs a `tasks` command; `global_agent` is the global `--agent`, which `add` and `list` take
/// as the owner when `--owner` is missing (the spelling before `--owner` existed).
pub fn run(ws: &Workspace, command: &TasksCommand, global_agent: Option<&str>) -> anyhow::Result<Exit> {
    require_valid_config(ws)?;
    // An alias in all but name: scripts written before `--owner` keep working unchanged.
    let old_spelling = |owner: &Option<String>| owner.clone().or_else(|| global_agent.map(str::to_owned));
    match command {
        TasksCommand::List(args) if !args.mine && args.owner.is_none() && global_agent.is_some() => {
            list(ws, &ListArgs { owner: old_spelling(&args.owner), ..args.clone() })
        }
        TasksCommand::List(args) => list(ws, args),
        TasksCommand::Add(args) => {
            let Some(owner) = old_spelling(&args.owner) else {
                bail!("expected `--owner AGENT`, the agent the task is for (e.g. `--owner devops`), found none");
            };
            if args.owner.is_none() {
                eprintln!(
                    "note: `--agent {owner}` was taken as `--owner {owner}`, the agent the task is for; write `--owner` (`--agent` means \"act as this agent\")"
                );
            }
            add(ws, &AddArgs { owner: Some(owner), ..args.clone() })
        }
        TasksCommand::Update(args) => update(ws, args),
        TasksCommand::Release(args) => release(ws, args),
    }
}

pub use crate::validate::layout_diagnostic;

/// `tasks list` on a file it cannot read: the diagnostics as `validate` says them, on stderr,
/// and with `--json` also as `validate --json` has them (`{"ok": false, "diagnostics": [...]}`)
/// on stdout, so a script that parses the list reads why there is none. Exit 2.
fn unreadable(diagnostics: Vec<Diagnostic>, json: bool) -> anyhow::Result<Exit> {
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    if json {
        super::print_json(&serde_json::json!({ "ok": false, "diagnostics": diagnostics }))?;
    }
    Ok(Exit::Invalid)
}

fn list(ws: &Workspace, args: &ListArgs) -> anyhow::Result<Exit> {
    let file = &ws.config.paths.tasks;
    // Each match: its span, and whether it is a Task Master entry (shown as opsflow reads it).
    let matching = |text: &str| -> Result<Vec<(Span, bool)>, tasks::LayoutError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let (_, heads) = tasks::scan_in(text, &ws.task_selection(), |head| {
            (!args.mine || crate::workflow::owns(&ws.config, head.agent.as_deref(), head.kind.as_deref()))
                && args.status.as_deref().is_none_or(|s| head.status.as_deref() == Some(s))
                && args.owner.as_deref().is_none_or(|a| head.agent.as_deref() == Some(a))
                && args.kind.as_deref().is_none_or(|t| head.kind.as_deref() == Some(t))
        })?;
        Ok(heads.into_iter().map(|head| (head.span, head.taskmaster)).collect())
    };
    let text = match ws.read_text(file) {
        Ok(text) => text.unwrap_or_default(),
        Err(diagnostic) => return unreadable(vec![diagnostic], args.json),
    };
    let (text, matched) = match matching(&text) {
        Ok(matched) => (text, matched),
        Err(_) => {
            // Perhaps being rewritten in place: read again once it has settled.
            let text = match ws
                .read_text_settled(file, |text| tasks::scan_in(text, &ws.task_selection(), |_| false).is_ok())
            {
                Ok(text) => text.unwrap_or_default(),
                Err(diagnostic) => return unreadable(vec![diagnostic], args.json),
            };
            match matching(&text) {
                Ok(matched) => (text, matched),
                Err(error) => return unreadable(crate::validate::unreadable_tasks(ws, &text, error), args.json),
            }
        }
    };
    // Every entry is decoded before anything is printed, so a failure leaves stdout empty
    // rather than holding half a document; each decoded entry goes straight into the output
    // (or its row) and is dropped, so memory holds the output, not every entry decoded.
    let mut document = Vec::with_capacity(if args.json { text.len() / 4 + 4 } else { 0 });
    let mut rows: Vec<[String; 5]> = Vec::new();
    document.push(b'[');
    let default_agent = ws.config.taskmaster.default_agent.as_deref();
    for (i, (span, taskmaster)) in matched.iter().enumerate() {
        let value = match serde_json::from_str::<Value>(span.of(&text)) {
            Ok(value) if *taskmaster => crate::store::taskmaster::normalize(value, default_agent),
            Ok(value) => value,
            Err(e) => {
                let error = SyntaxError { offset: span.start, message: format!("a task entry cannot be decoded: {e}") };
                return unreadable(
                    crate::validate::unreadable_tasks(ws, &text, tasks::LayoutError::Syntax(error)),
                    args.json,
                );
            }
        };
        if args.json {
            // Each entry as the file has it, re-serialized compactly: one task a line.
            document.extend_from_slice(if i == 0 { b"\n  " } else { b",\n  " });
            serde_json::to_writer(&mut document, &value)?;
        } else {
            let field = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("-").to_owned();
            rows.push([field("id"), field("status"), field("type"), field("agent"), field("title")]);
        }
    }
    document.extend_from_slice(if matched.is_empty() { b"]\n" } else { b"\n]\n" });
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        out.write_all(&document)?;
    } else {
        let mut widths = [2, 6, 4, 5, 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header = ["ID", "STATUS", "TYPE", "AGENT", "TITLE"].map(str::to_owned);
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    out.flush()?;
    // The list shows entries as they are; those the schema refuses are said on stderr, so a
    // column of `-` is never the only sign that the file does not hold what opsflow reads.
    if !text.is_empty()
        && let Some(sentence) = crate::validate::FailingEntries::of_text(ws, &text).sentence(&ws.config.agent.name)
    {
        eprintln!("{sentence}");
    }
    Ok(Exit::Ok)
}

/// Runs a store edit of `tasks.json`; when the store refuses the file as invalid, waits for
/// a file being rewritten in place to settle and tries once more, so an in-place writer's
/// half-written file is not taken for a broken one. A file that is still invalid is refused
/// (exit 2, with the file and the place), and nothing is written.
fn with_settled_retry<T>(ws: &Workspace, mut edit: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match edit() {
        Err(StoreError::Invalid(_)) => {
            let file = &ws.config.paths.tasks;
            let _ = ws.read_text_settled(file, |text| tasks::scan_in(text, &ws.task_selection(), |_| false).is_ok());
            edit()
        }
        other => other,
    }
}

/// `key=text` sets a string, `key:=json` any JSON value.
fn parse_assignment(assignment: &str) -> anyhow::Result<(String, Value)> {
    let (key, value) =
        assignment.split_once('=').with_context(|| format!("`--set {assignment}`: expected KEY=VALUE or KEY:=JSON"))?;
    let (key, value) = match key.strip_suffix(':') {
        Some(key) => {
            let parsed = serde_json::from_str(value)
                .with_context(|| format!("`--set {assignment}`: the value after `:=` is not JSON"))?;
            (key, parsed)
        }
        None => (key, Value::String(value.to_owned())),
    };
    if key.is_empty() {
        bail!("`--set {assignment}`: the key is empty");
    }
    Ok((key.to_owned(), value))
}

/// Schema problems of one task, as one message.
fn check_task(ws: &Workspace, task: &Value, what: &str) -> Result<(), StoreError> {
    let problems = ws.schemas.validate(SchemaName::Task, &ws.config.paths.tasks, task);
    if problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|d| {
            format!(
                "  at {}: {}",
                if d.pointer.as_deref().unwrap_or("").is_empty() {
                    "the task"
                } else {
                    d.pointer.as_deref().unwrap_or("")
                },
                d.message
            )
        })
        .collect();
    Err(StoreError::Refused(format!("{what} would not be a valid task, so nothing was written:\n{}", lines.join("\n"))))
}

/// What `add` needs to know of the ids in the task list: whether its own is taken, which
/// of the ids it depends on exist, and the highest TASK-N (or Task Master number) in use.
struct AddFacts {
    taken: bool,
    found: Vec<String>,
    highest: u64,
}

impl AddFacts {
    fn of<'i>(
        ids: impl Iterator<Item = Option<&'i str>>,
        taskmaster: bool,
        id: Option<&str>,
        depends_on: &[String],
    ) -> AddFacts {
        let mut facts = AddFacts { taken: false, found: Vec::new(), highest: 0 };
        for entry in ids.flatten() {
            // Task Master numbers its tasks: a new one takes the next integer.
            let number = if taskmaster {
                entry.bytes().all(|b| b.is_ascii_digit()).then(|| entry.parse::<u64>().ok()).flatten()
            } else {
                entry.strip_prefix("TASK-").and_then(|n| n.parse::<u64>().ok())
            };
            if let Some(number) = number {
                facts.highest = facts.highest.max(number);
            }
            facts.taken |= id == Some(entry);
            if depends_on.iter().any(|d| d == entry) && !facts.found.iter().any(|f| f == entry) {
                facts.found.push(entry.to_owned());
            }
        }
        facts
    }
}

/// Scans `text`, the task list, for what `add` needs; with `before` (the version the same
/// `add` scanned first, and that scan's layout and entries), only from where the two
/// versions differ when it can. Returns the layout, the facts, and the entries of a whole
/// scan (for a later one to start from).
#[allow(clippy::type_complexity)]
fn add_scan<'t>(
    ws: &Workspace,
    file: &str,
    text: &'t str,
    before: Option<(&str, &Layout, &[tasks::Entry<'_>])>,
    id: Option<&str>,
    depends_on: &[String],
) -> Result<(Layout, AddFacts, Option<Vec<tasks::Entry<'t>>>), StoreError> {
    if let Some((previous, layout, entries)) = before
        && let Some(tail) = tasks::resume::scan_after(text, |_| false, previous, layout, entries)
    {
        let ids =
            entries[..tail.from].iter().map(|e| e.id.as_deref()).chain(tail.entries.iter().map(|e| e.id.as_deref()));
        return Ok((tail.layout, AddFacts::of(ids, false, id, depends_on), None));
    }
    let tasks::Index { layout, entries, .. } = tasks::scan_index(text, &ws.task_selection(), |_| false, |_| false)
        .map_err(|e| StoreError::Invalid(Box::new(layout_diagnostic(file, text, e))))?;
    let facts = AddFacts::of(entries.iter().map(|e| e.id.as_deref()), layout.taskmaster(), id, depends_on);
    Ok((layout, facts, Some(entries)))
}

fn add(ws: &Workspace, args: &AddArgs) -> anyhow::Result<Exit> {
    let mut fields = Map::new();
    fields.insert("title".into(), args.title.clone().into());
    fields.insert("agent".into(), args.owner.clone().unwrap_or_default().into());
    fields.insert("type".into(), args.kind.clone().into());
    fields.insert("status".into(), "pending".into());
    for assignment in &args.set {
        let (key, value) = parse_assignment(assignment)?;
        if key == "id" {
            bail!("use --id to choose the id");
        }
        fields.insert(key, value);
    }
    // The ids `depends_on` names, when it is a list of strings (the schema refuses any other shape).
    let depends_on: Vec<String> = fields
        .get("depends_on")
        .and_then(Value::as_array)
        .map(|deps| deps.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let file = ws.config.paths.tasks.clone();
    let path = ws.inside(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut chosen_id = String::new();
    let id_wanted = args.id.as_deref();
    let mut plan = |current: Option<(&str, &Layout, &AddFacts)>| -> Result<Option<Content>, StoreError> {
        let id = match (&args.id, current) {
            (Some(id), Some((_, _, facts))) if facts.taken => {
                return Err(StoreError::Refused(format!("a task with the id `{id}` already exists")));
            }
            (Some(id), _) => id.clone(),
            (None, Some((_, layout, facts))) if layout.taskmaster() => (facts.highest + 1).to_string(),
            (None, Some((_, _, facts))) => format!("TASK-{:03}", facts.highest + 1),
            (None, None) => "TASK-001".to_owned(),
        };
        let mut task = Map::new();
        task.insert("id".into(), id.clone().into());
        task.extend(fields.clone());
        let task = Value::Object(task);
        check_task(ws, &task, &format!("task `{id}`"))?;
        let deps: Vec<&str> = depends_on.iter().map(String::as_str).collect();
        let found = current.map(|(_, _, facts)| facts.found.as_slice()).unwrap_or_default();
        check_dependencies(&file, &id, &deps, |dep| found.iter().any(|f| f == dep))?;
        chosen_id = id;
        let new = match current {
            Some((text, layout, _)) => Content::Spliced(
                tasks::splices_for(text, *layout, &[], &TaskEdits { updates: vec![], appends: vec![task] })
                    .map_err(|e| StoreError::Refused(format!("{file}: {e}")))?,
            ),
            None => Content::Whole(tasks::new_file(&[task])),
        };
        Ok(Some(new))
    };
    with_settled_retry(ws, || {
        // Tried on the file as read first, so an `add` that is refused creates no lock file.
        // When the file is still at that version under the lock, that plan is the edit: the
        // file is neither read nor scanned a second time.
        let (read, known) =
            file::Known::read(&path, || ws.read_text(&file).map_err(|d| StoreError::Invalid(Box::new(d))))?;
        let current = known.as_ref().map(|k| k.text.as_str()).or(read.as_deref());
        let first = match current {
            Some(text) => Some((text, add_scan(ws, &file, text, None, id_wanted, &depends_on)?)),
            None => None,
        };
        let mut planned = plan(first.as_ref().map(|(text, (layout, facts, _))| (*text, layout, facts)))?;
        let known_text = known.as_ref().map(|k| k.text.as_ptr());
        file::modify_known(&ws.root, &path, &file, ws.config.limits.max_file_bytes, known.as_ref(), |now| {
            match (now, known_text) {
                (Some(text), Some(known)) if text.as_ptr() == known => Ok(planned.take()),
                (Some(text), _) => {
                    // Another writer changed the file since it was read: its scan serves for
                    // the entries before the change.
                    let before = first
                        .as_ref()
                        .and_then(|(previous, (layout, _, entries))| Some((*previous, layout, entries.as_deref()?)));
                    let (layout, facts, _) = add_scan(ws, &file, text, before, id_wanted, &depends_on)?;
                    plan(Some((text, &layout, &facts)))
                }
                (None, _) => plan(None),
            }
        })
    })?;
    println!("{chosen_id}");
    note_agent_edit(ws, "task_added", &chosen_id, "filed with `opsflow tasks add`");
    Ok(Exit::Ok)
}

/// A task filed or changed from inside an agent node's run (`OPSFLOW_RUN_ID` and
/// `OPSFLOW_NODE` set by opsflow in the agent's environment) is a line in the audit log, with
/// the run: what an agent did to the task list is on record.
fn note_agent_edit(ws: &Workspace, event: &str, id: &str, what: &str) {
    let (Ok(run_id), Ok(node)) = (std::env::var("OPSFLOW_RUN_ID"), std::env::var("OPSFLOW_NODE")) else { return };
    let audit = crate::audit::Audit::of(ws, crate::exec::secrets::Secrets::from_env(&ws.config.secrets));
    audit.record(&run_id, event, id, &format!("{what} by the agent of node {node} (run {run_id})"), &[]);
}

fn update(ws: &Workspace, args: &UpdateArgs) -> anyhow::Result<Exit> {
    let mut ops = Vec::new();
    for assignment in &args.set {
        let (key, value) = parse_assignment(assignment)?;
        if key == "id" && value != Value::String(args.id.clone()) {
            bail!("the id of a task cannot be changed");
        }
        ops.push(FieldOp::Set(key, value));
    }
    for key in &args.unset {
        if key == "id" {
            bail!("the id of a task cannot be removed");
        }
        ops.push(FieldOp::Remove(key.clone()));
    }
    if ops.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --unset KEY");
    }
    let file = ws.config.paths.tasks.clone();
    let path = ws.inside(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let selection = ws.task_selection();
    let plan = |current: Option<&str>| -> Result<Option<Content>, StoreError> {
        let (text, layout, heads, before) = locate(&file, &selection, current, &args.id)?;
        let Some(mut fields) = before.as_object().cloned() else {
            return Err(StoreError::Refused(format!("{file}: task `{}` is not an object", args.id)));
        };
        FieldOp::apply_all(&ops, &mut fields);
        if before.as_object() == Some(&fields) {
            return Ok(None);
        }
        let now = crate::time::now_rfc3339();
        fields.insert("updated_at".into(), now.clone().into());
        let changed_deps = ops.iter().find_map(|op| match op {
            FieldOp::Set(key, value) if key == "depends_on" => Some(value),
            _ => None,
        });
        // A Task Master task is checked as opsflow's own only when it is this runner's:
        // the others are Task Master's, and need none of opsflow's fields.
        if !layout.taskmaster() || crate::task::owned_entry(&ws.config, &Value::Object(fields.clone())) {
            check_task(ws, &Value::Object(fields), &format!("task `{}`", args.id))?;
        }
        if let Some(deps) = changed_deps {
            let deps: Vec<&str> = deps.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            // In Task Master's file a dependency may be a subtask (`12.1`): its task is looked up too.
            let mut wanted = deps.clone();
            if layout.taskmaster() {
                wanted.extend(deps.iter().filter_map(|dep| dep.split_once('.')).map(|(parent, _)| parent));
            }
            let (_, found) = tasks::scan_ids_in(text, &selection, &wanted)
                .map_err(|e| StoreError::Invalid(Box::new(layout_diagnostic(&file, text, e))))?;
            let parents: Vec<Value> =
                found.iter().filter(|head| head.taskmaster).filter_map(|head| head.try_value(text).ok()).collect();
            let subtasks = crate::task::subtask_statuses(&parents);
            check_dependencies(&file, &args.id, &deps, |dep| {
                found.iter().any(|head| head.id.as_deref() == Some(dep)) || subtasks.contains_key(dep)
            })?;
        }
        let mut all_ops = ops.clone();
        all_ops.push(FieldOp::Set("updated_at".into(), now.into()));
        splice_update(&file, text, layout, &heads, &args.id, all_ops)
    };
    let outcome = with_settled_retry(ws, || {
        // The edit is tried on the file as read before the lock is taken, so an edit that is
        // refused (an unknown id, an invalid file) creates nothing, not even the lock file.
        let read = ws.read_text(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
        if plan(read.as_deref())?.is_none() {
            return Ok(file::Outcome::Unchanged);
        }
        file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, plan)
    })?;
    match outcome {
        file::Outcome::Unchanged => println!("{}: unchanged", args.id),
        file::Outcome::Written { .. } => {
            println!("{}: updated", args.id);
            note_agent_edit(ws, "task_updated", &args.id, "changed with `opsflow tasks update`");
        }
    }
    Ok(Exit::Ok)
}

/// A live runner of this workspace that may be running a task claimed at `claimed_at` by
/// `agent`: the holder of that agent's instance lock, when it started before the claim or
/// the claim's run has its directory here. `None` when no live runner holds the lock.
fn live_runner(ws: &Workspace, agent: &str, run_id: &str, claimed_at: Option<&str>) -> Option<String> {
    let runtime = ws.path(&ws.config.paths.runtime);
    let path = runtime.join("locks").join(format!("instance-{}.lock", crate::workspace::file_name_part(agent)));
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => return None,
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(_)) => return None,
    }
    let mut holder = String::new();
    let _ = std::io::Read::read_to_string(&mut file, &mut holder);
    let holder = holder.trim().to_owned();
    // The holder line is `pid P on host H since T`; a runner that started after the claim
    // was made did not make it (its start-up recovery looks at its own leftover claims).
    let since = holder.rsplit_once(" since ").map(|(_, since)| since.trim());
    let started_after_claim = match (since, claimed_at) {
        (Some(since), Some(claimed)) if crate::time::is_rfc3339_utc(since) && crate::time::is_rfc3339_utc(claimed) => {
            since > claimed
        }
        _ => false,
    };
    let run_here = !run_id.is_empty()
        && crate::workspace::check_path_component(run_id).is_ok()
        && runtime.join("runs").join(run_id).exists();
    (!started_after_claim || run_here).then(|| if holder.is_empty() { "a live process".to_owned() } else { holder })
}

/// Task `id` in `tasks.json` as it is under the lock: the file's text and layout, the heads to
/// splice into, and the task decoded.
/// Refuses a `depends_on` of task `id` that names the task itself or a task that does not
/// `exist` in `file`.
fn check_dependencies(file: &str, id: &str, deps: &[&str], exists: impl Fn(&str) -> bool) -> Result<(), StoreError> {
    if deps.contains(&id) {
        return Err(StoreError::Refused(format!(
            "task `{id}` cannot depend on itself (`depends_on`), so nothing was written"
        )));
    }
    let unknown: Vec<String> = deps.iter().filter(|dep| !exists(dep)).map(|dep| format!("`{dep}`")).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "`depends_on` names {}, which {} no task in {file}, so nothing was written",
        unknown.join(", "),
        if unknown.len() == 1 { "is" } else { "are" }
    )))
}

fn locate<'t>(
    file: &str,
    selection: &tasks::Selection,
    current: Option<&'t str>,
    id: &str,
) -> Result<(&'t str, tasks::Layout, Vec<tasks::TaskHead<'t>>, Value), StoreError> {
    let Some(text) = current else {
        return Err(StoreError::Refused(format!("{file} does not exist")));
    };
    let (layout, heads) = tasks::scan_ids_in(text, selection, &[id])
        .map_err(|e| StoreError::Invalid(Box::new(layout_diagnostic(file, text, e))))?;
    let head = tasks::find(&heads, id).map_err(|e| StoreError::Refused(format!("{file}: {e}")))?;
    let task = head
        .try_value(text)
        .map_err(|e| StoreError::Invalid(Box::new(layout_diagnostic(file, text, tasks::LayoutError::Syntax(e)))))?;
    Ok((text, layout, heads, task))
}

/// The splices that apply `ops` to task `id`, keeping every other byte.
fn splice_update(
    file: &str,
    text: &str,
    layout: tasks::Layout,
    heads: &[tasks::TaskHead<'_>],
    id: &str,
    ops: Vec<FieldOp>,
) -> Result<Option<Content>, StoreError> {
    let edits = TaskEdits { updates: vec![(id.to_owned(), ops)], appends: vec![] };
    tasks::splices_for(text, layout, heads, &edits)
        .map(|splices| Some(Content::Spliced(splices)))
        .map_err(|e| StoreError::Refused(format!("{file}: {e}")))
}

fn release(ws: &Workspace, args: &ReleaseArgs) -> anyhow::Result<Exit> {
    let file = ws.config.paths.tasks.clone();
    let path = ws.inside(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let text_field = |task: &Value, key: &str| task.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut released: Option<Value> = None;
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |current| {
        let (text, layout, heads, task) = locate(&file, &ws.task_selection(), current, &args.id)?;
        let status = text_field(&task, "status").unwrap_or_else(|| "(none)".to_owned());
        if status != "in_progress" {
            return Err(StoreError::Refused(format!(
                "task `{}` is `{status}`, not `in_progress`: only a claimed task can be released",
                args.id
            )));
        }
        let claimed_by = text_field(&task, "claimed_by");
        let run_id = text_field(&task, "run_id").unwrap_or_default();
        let agent = claimed_by.clone().unwrap_or_else(|| ws.config.agent.name.clone());
        // A claim made on another host is not held by a runner of this clone.
        let here = text_field(&task, "claimed_on").is_none_or(|host| host == crate::instance::host_name());
        if let Some(holder) =
            live_runner(ws, &agent, &run_id, text_field(&task, "claimed_at").as_deref()).filter(|_| here)
        {
            return Err(StoreError::Refused(format!(
                "task `{}` is claimed by a live opsflow runner of this workspace ({holder}); stop that runner first, or let it finish",
                args.id
            )));
        }
        let now = crate::time::now_rfc3339();
        let mut record = Map::new();
        for key in ["claimed_by", "claimed_on", "claimed_at", "run_id"] {
            if let Some(value) = task.get(key) {
                record.insert(key.into(), value.clone());
            }
        }
        record.insert("released_at".into(), now.clone().into());
        let ops = vec![
            FieldOp::Set("status".into(), "pending".into()),
            FieldOp::Remove("claimed_by".into()),
            FieldOp::Remove("claimed_on".into()),
            FieldOp::Remove("claimed_at".into()),
            FieldOp::Remove("run_id".into()),
            FieldOp::Set("released_from".into(), Value::Object(record)),
            FieldOp::Set("updated_at".into(), now.into()),
        ];
        released = Some(task);
        splice_update(&file, text, layout, &heads, &args.id, ops)
    })?;
    let task = released.unwrap_or_default();
    let claimed_by = text_field(&task, "claimed_by").unwrap_or_else(|| "nobody recorded".to_owned());
    let claimed_by = match text_field(&task, "claimed_on") {
        Some(host) => format!("{claimed_by} on host {host}"),
        None => claimed_by,
    };
    let run_id = text_field(&task, "run_id").unwrap_or_default();
    let since = text_field(&task, "claimed_at").map(|at| format!(" since {at}")).unwrap_or_default();
    let run = if run_id.is_empty() { String::new() } else { format!(", run {run_id}") };
    println!("{}: released; it was claimed by {claimed_by}{run}{since}, and is pending again", args.id);
    let audit = crate::audit::Audit::of(ws, crate::exec::secrets::Secrets::from_env(&ws.config.secrets));
    audit.record(
        &run_id,
        "released",
        &args.id,
        &format!("claim of {claimed_by}{run}{since} freed by hand with `opsflow tasks release`"),
        &[],
    );
    Ok(Exit::Ok)
}
