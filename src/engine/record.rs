//! Recording what the engine decided: task and node transitions, fix tasks, human requests,
//! the completion signal. Every write goes through the store and happens only when it changes
//! something, so a pass with nothing new writes no file.

use serde_json::{Map, Value, json};

use crate::render::Renderer;
use crate::schema::SchemaName;
use crate::sha256;
use crate::store::edit::FieldOp;
use crate::store::file::{self, Content, StoreError};
use crate::store::state::{self, StateEdit};
use crate::store::tasks::{self, TaskEdits};
use crate::workspace::Workspace;

/// The marker opsflow leaves on tasks it blocked, so it knows to re-check them. A task that a
/// human or another agent set `blocked` has no marker and is left alone.
pub const BLOCKED_BY: &str = "opsflow";

fn refused(file: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Refused(format!("{file}: {error}"))
}

/// Edits one task (when `id` is given), provided its status is still one of `expect` (another
/// writer may have moved it since it was read), and appends `appends` that are not there yet;
/// returns false when the task had moved and nothing was written.
pub fn edit_task(
    ws: &Workspace,
    id: Option<&str>,
    expect: &[&str],
    ops: Vec<FieldOp>,
    appends: Vec<Value>,
) -> Result<bool, StoreError> {
    let edits: Vec<EntryEdit<'_>> =
        id.map(|id| EntryEdit { id, expect, claim: None, ops: &ops, needs: None }).into_iter().collect();
    let edited = edit_tasks_with(ws, &edits, &appends, None, None)?;
    Ok(edited.first().is_none_or(|e| e.applied))
}

/// The pass's [`crate::validate::TaskIndex`], through which an edit finds its entries in a
/// new version of `tasks.json` without walking the part that did not change.
pub type Index<'a> = Option<&'a std::sync::Mutex<crate::validate::TaskIndex>>;

/// [`edit_task`] of one task, starting from `tasks.json` as a pass read it (`known`) when the
/// file is still at that version under the lock: neither read nor scanned again. Otherwise
/// the entry is found through `index` when it can say, else by a scan.
pub fn edit_known_task(
    ws: &Workspace,
    known: Option<&crate::validate::KnownTasks>,
    index: Index<'_>,
    id: &str,
    expect: &[&str],
    ops: Vec<FieldOp>,
) -> Result<bool, StoreError> {
    let edits = [EntryEdit { id, expect, claim: None, ops: &ops, needs: None }];
    Ok(edit_tasks_with(ws, &edits, &[], known, index)?[0].applied)
}

/// Several entries' edits in one rewrite of `tasks.json` (a finished run's outcome and the
/// next claim), each under its own condition: an edit whose condition fails is left out, with
/// the edits that need it ([`EntryEdit::needs`]), and the others are written. Returns what
/// became of each, in order.
pub fn edit_known_tasks(
    ws: &Workspace,
    known: Option<&crate::validate::KnownTasks>,
    index: Index<'_>,
    edits: &[EntryEdit<'_>],
) -> Result<Vec<Edited>, StoreError> {
    edit_tasks_with(ws, edits, &[], known, index)
}

/// One entry's edit in a write of `tasks.json`.
#[derive(Debug, Clone, Copy)]
pub struct EntryEdit<'a> {
    pub id: &'a str,
    /// The statuses the entry must still have; empty for any.
    pub expect: &'a [&'a str],
    /// The run whose claim the entry must carry (its `run_id`), whatever its status; a
    /// missing entry is then [`Claimed::Gone`] instead of an error.
    pub claim: Option<&'a str>,
    pub ops: &'a [FieldOp],
    /// An earlier edit of the same write that must land (be written, or already hold) for
    /// this one to: a claim that the pass made because of a finished run's outcome.
    pub needs: Option<usize>,
}

/// What became of one [`EntryEdit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// Written: false when the entry had moved, did not carry the claim, or already said so.
    pub applied: bool,
    /// For an edit under a claim: whether the entry carried it.
    pub claimed: Claimed,
}

/// What became of an edit that may land only on the entry that carries a run's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Written, or the entry already said so.
    Applied,
    /// The entry with that id carries another claim, or none (`found`: its `run_id`): another
    /// branch's task of the same id, the entry from before the claim (`git stash`), a
    /// person's edit.
    NotOurs { found: Option<String> },
    /// No entry has that id.
    Gone,
}

/// Edits task `id` only while its entry carries the claim of `run_id`, whatever its status
/// is now, and appends `appends` with it (starting from `known`, as a pass read the file,
/// while the file is at that version; the entries found through `index` when it can say).
pub fn edit_claimed_task(
    ws: &Workspace,
    known: Option<&crate::validate::KnownTasks>,
    index: Index<'_>,
    id: &str,
    run_id: &str,
    ops: Vec<FieldOp>,
    appends: Vec<Value>,
) -> Result<Claimed, StoreError> {
    let edits = [EntryEdit { id, expect: &[], claim: Some(run_id), ops: &ops, needs: None }];
    Ok(edit_tasks_with(ws, &edits, &appends, known, index)?.swap_remove(0).claimed)
}

fn edit_tasks_with(
    ws: &Workspace,
    edits: &[EntryEdit<'_>],
    appends: &[Value],
    mut known: Option<&crate::validate::KnownTasks>,
    index: Index<'_>,
) -> Result<Vec<Edited>, StoreError> {
    let file = ws.config.paths.tasks.clone();
    let mut tries = 0;
    loop {
        let mut unreadable = false;
        let result = edit_tasks_once(ws, &file, edits, appends, &mut unreadable, known.take(), index);
        tries += 1;
        if result.is_ok() || !unreadable || tries >= 3 {
            return result;
        }
        // An editor or agent that rewrites the file in place (truncate, then write) was
        // caught halfway: wait until the file settles, then edit what it holds then.
        let _ = ws.read_text_settled(&file, |text| tasks::scan_ids_in(text, &ws.task_selection(), &[]).is_ok());
    }
}

/// Whether `entry` already holds what `ops` would set and remove, apart from `updated_at`.
fn already_so(entry: &Value, ops: &[FieldOp]) -> bool {
    ops.iter().all(|op| match op {
        FieldOp::Set(key, _) if key == "updated_at" => true,
        FieldOp::Set(key, value) => entry.get(key) == Some(value),
        FieldOp::Remove(key) => entry.get(key).is_none(),
    })
}

/// A scan error in words, with its line and column.
fn layout_error(text: &str, error: &tasks::LayoutError) -> String {
    match error {
        tasks::LayoutError::Syntax(syntax) => {
            let (line, column) = crate::store::json::line_col(text, syntax.offset);
            format!("line {line} column {column}: {}", syntax.message)
        }
        tasks::LayoutError::Shape(shape) => shape.clone(),
    }
}

/// One try of [`edit_tasks_with`]. The appends are written only when no edit's condition
/// failed: a fix task goes with the outcome of its failure, or not at all.
fn edit_tasks_once(
    ws: &Workspace,
    file: &str,
    edits: &[EntryEdit<'_>],
    appends: &[Value],
    unreadable: &mut bool,
    known: Option<&crate::validate::KnownTasks>,
    index: Index<'_>,
) -> Result<Vec<Edited>, StoreError> {
    let path = ws.inside(file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    let mut results = Vec::new();
    file::modify_known(&ws.root, &path, file, ws.config.limits.max_file_bytes, known.map(|k| &k.file), |current| {
        results = vec![Edited { applied: true, claimed: Claimed::Applied }; edits.len()];
        let Some(text) = current else { return Err(refused(file, "the file disappeared")) };
        let mut wanted: Vec<&str> = appends.iter().filter_map(|t| t.get("id").and_then(Value::as_str)).collect();
        wanted.extend(edits.iter().map(|e| e.id));
        // The very text the pass scanned (the file is still at that version): its entries
        // are where the pass found them, and it had no duplicate ids.
        let scanned = known.filter(|k| {
            appends.is_empty()
                && std::ptr::eq(text, k.file.text.as_str())
                && wanted.iter().all(|w| k.entries.iter().any(|(entry, _, _)| entry == w))
        });
        let (layout, heads) = match scanned {
            Some(k) => {
                let heads = k
                    .entries
                    .iter()
                    .filter(|(entry, _, _)| wanted.contains(&entry.as_str()))
                    .map(|(_, index, span)| tasks::head_at(text, &k.layout, &k.selection, *index, *span))
                    .collect();
                (k.layout, heads)
            }
            None => {
                let indexed = index.and_then(|index| {
                    let index = index.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    crate::validate::indexed_heads(ws, &index, text, &wanted)
                });
                match indexed {
                    Some(found) => found,
                    None => tasks::scan_ids_in(text, &ws.task_selection(), &wanted).map_err(|e| {
                        *unreadable = true;
                        refused(file, layout_error(text, &e))
                    })?,
                }
            }
        };
        let mut updates = Vec::new();
        // Whether each edit landed (written, or the entry already said so), in order.
        let mut landed: Vec<bool> = Vec::with_capacity(edits.len());
        for (edit, result) in edits.iter().zip(results.iter_mut()) {
            landed.push(false);
            if edit.needs.is_some_and(|needed| !landed.get(needed).copied().unwrap_or(false)) {
                result.applied = false;
                continue;
            }
            let head = match tasks::find(&heads, edit.id) {
                Ok(head) => head,
                Err(_) if edit.claim.is_some() => {
                    *result = Edited { applied: false, claimed: Claimed::Gone };
                    continue;
                }
                Err(e) => return Err(refused(file, e)),
            };
            if let Some(run) = edit.claim {
                let entry = head.value(text);
                let found = entry.get("run_id").and_then(Value::as_str);
                if found != Some(run) {
                    *result = Edited { applied: false, claimed: Claimed::NotOurs { found: found.map(str::to_owned) } };
                    continue;
                }
            }
            let status = head.status.as_deref().unwrap_or_default();
            if !edit.expect.is_empty() && !edit.expect.contains(&status) {
                result.applied = false;
                continue;
            }
            *landed.last_mut().expect("pushed above") = true;
            if appends.is_empty() && already_so(&head.value(text), edit.ops) {
                // Another pass (or a `git stash` bringing the committed entry back) already
                // recorded this: only `updated_at` would change, so nothing is written.
                result.applied = false;
                continue;
            }
            updates.push((edit.id.to_owned(), edit.ops.to_vec()));
        }
        // An edit whose condition failed holds the appends back.
        let held_back = landed.contains(&false);
        // Skip appends that are already there (a fix task filed on an earlier pass).
        let appends: Vec<Value> = appends
            .iter()
            .filter(|_| !held_back)
            .filter(|t| {
                let new_id = t.get("id").and_then(Value::as_str);
                !heads.iter().any(|h| h.id.is_some() && h.id.as_deref() == new_id)
            })
            .cloned()
            .collect();
        if updates.is_empty() && appends.is_empty() {
            return Ok(None);
        }
        tasks::splices_for(text, layout, &heads, &TaskEdits { updates, appends })
            .map(|splices| Some(Content::Spliced(splices)))
            .map_err(|e| refused(file, e))
    })?;
    Ok(results)
}

/// Edits one node of `state.json`.
pub fn edit_state(ws: &Workspace, workflow: &str, change: &StateEdit) -> Result<(), StoreError> {
    let file = ws.config.paths.state.clone();
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |current| {
        state::apply(current, workflow, change).map(Some).map_err(|e| refused(&file, e))
    })?;
    Ok(())
}

/// The `current_nodes` after `node` finished: without it, plus its next nodes that are not
/// completed yet, in order and without duplicates.
pub fn next_current_nodes(state: &Value, node: &str, next: &[String]) -> Vec<String> {
    let mut current: Vec<String> = state
        .get("current_nodes")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).filter(|n| *n != node).map(str::to_owned).collect())
        .unwrap_or_default();
    for name in next {
        let done = state.pointer(&format!("/nodes/{name}/status")).and_then(Value::as_str) == Some("completed");
        if !done && !current.contains(name) {
            current.push(name.clone());
        }
    }
    current
}

/// A human-in-the-loop entry, in seed 000's escalation format.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HumanRequest {
    pub agent: String,
    pub task_id: String,
    pub node: String,
    pub unit_id: String,
    pub severity: &'static str,
    pub issue: String,
    pub impact: String,
    pub actions: Vec<String>,
    pub status: String,
    pub help_needed: String,
    /// Whom the request is for (roles, not people opsflow reached): the **Escalated To** line.
    pub contacts: String,
    /// The channels of `notifications` that were told, or are queued to be (see
    /// `notify::outbox::contacts_line`): the **Contacts Notified** line. Set by the engine
    /// when it files the request.
    pub notified: String,
    pub raised_at: String,
    pub run_id: String,
}

/// Appends a request to `human-requests.md` unless an open one for the same task and reason
/// is there (see `requests`). Returns whether it was appended.
pub fn append_human_request(
    ws: &Workspace,
    renderer: &Renderer,
    request: &HumanRequest,
    cause: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    super::requests::append(ws, renderer, request, cause, reason, None)
}

/// The longest task id the schema allows.
const MAX_TASK_ID_CHARS: usize = 200;

/// How the id of every fix task begins (see [`fix_task_id`]).
pub const FIX_PREFIX: &str = "FIX-";

/// `FIX-<id>`, or, when that would be longer than the schema allows, `FIX-`, the start of the
/// id and `-` with 16 hex digits of the id's SHA-256: deterministic, so a later pass finds the
/// fix task it filed, and distinct for ids that share their first 179 characters.
pub fn fix_task_id(id: &str) -> String {
    let whole = format!("{FIX_PREFIX}{id}");
    if whole.chars().count() <= MAX_TASK_ID_CHARS {
        return whole;
    }
    let hash = &sha256::hex(id.as_bytes())[..16];
    let keep = MAX_TASK_ID_CHARS - "FIX-".len() - 1 - hash.len();
    let start: String = id.chars().take(keep).collect();
    format!("FIX-{start}-{hash}")
}

/// The fix task filed for a failure: for Task-Coder, high priority, pointing at the log.
pub fn fix_task(task: &Value, node: &str, step: &str, reason: &str, log: &str) -> Value {
    let id = task.get("id").and_then(Value::as_str).unwrap_or("task");
    let mut fix = Map::new();
    fix.insert("id".into(), fix_task_id(id).into());
    fix.insert("title".into(), format!("Fix the failure of {node} for {id}: {step}").into());
    fix.insert("agent".into(), "Task-Coder".into());
    fix.insert("type".into(), "bug_fix".into());
    fix.insert("status".into(), "pending".into());
    fix.insert("priority".into(), "high".into());
    fix.insert("source_task".into(), id.into());
    for key in ["unit_id", "version"] {
        if let Some(value) = task.get(key) {
            fix.insert(key.into(), value.clone());
        }
    }
    fix.insert("details".into(), json!({"node": node, "failed_step": step, "reason": reason, "log": log}));
    Value::Object(fix)
}

/// Whether the signal at `path` already says what `signal` says, apart from when: then it
/// stays as it is, so a state that comes back (a `git stash` undoing an edit, a checkout of
/// an older commit) leaves the file as committed instead of changing only its timestamp.
fn says_the_same(ws: &Workspace, file: &str, signal: &Value) -> bool {
    let Ok(Some(text)) = ws.read_text(file) else { return false };
    let Ok(mut existing) = serde_json::from_str::<Value>(&text) else { return false };
    let mut signal = signal.clone();
    for value in [&mut existing, &mut signal] {
        if let Some(object) = value.as_object_mut() {
            object.remove("completed_at");
        }
    }
    existing == signal
}

/// Writes `stage-completion-signal.json`, validated against its schema first, unless it
/// already says the same. `next_agent` is the agent that takes over (default
/// Product-Manager): the one the escalation goes to.
pub fn write_signal(
    ws: &Workspace,
    renderer: &Renderer,
    unit: &str,
    status: &str,
    artifacts: &[String],
    message: &str,
    next_agent: Option<&str>,
) -> Result<String, StoreError> {
    let context = json!({
        "next_agent": next_agent,
        "agent": ws.config.agent.name,
        "unit_id": unit,
        "status": status,
        "completed_at": crate::time::now_rfc3339(),
        "artifacts": artifacts,
        "message": message,
    });
    let file = ws.config.paths.completion_signal.clone();
    let value = renderer
        .json("stage-completion-signal.json", &context, ws, SchemaName::CompletionSignal)
        .map_err(|e| refused(&file, e))?;
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    if says_the_same(ws, &file, &value) {
        return Ok(file);
    }
    let text = format!("{}\n", serde_json::to_string_pretty(&value).expect("a Value serializes"));
    file::write_atomic(&ws.root, &path, text.as_bytes())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_that_would_only_touch_updated_at_is_already_so() {
        let entry = json!({"id": "T", "status": "blocked", "blocked_reason": "r", "updated_at": "then"});
        let set = |k: &str, v: &str| FieldOp::Set(k.into(), v.into());
        assert!(already_so(&entry, &[set("status", "blocked"), set("blocked_reason", "r"), set("updated_at", "now")]));
        assert!(!already_so(&entry, &[set("status", "blocked"), set("blocked_reason", "other")]));
        assert!(already_so(&entry, &[FieldOp::Remove("claimed_by".into())]));
        assert!(!already_so(&entry, &[FieldOp::Remove("status".into())]));
    }

    /// A workspace with default paths and no files; its `tasks.json` path.
    fn empty_workspace() -> (tempfile::TempDir, Workspace, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let path = dir.path().join(&ws.config.paths.tasks);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        (dir, ws, path)
    }

    fn tasks_file(n: usize) -> String {
        let entries: Vec<String> = (0..n)
            .map(|i| format!("    {{\"id\": \"T-{i}\", \"agent\": \"DevOps-Engineer\", \"status\": \"pending\"}}"))
            .collect();
        format!("{{\n  \"tasks\": [\n{}\n  ]\n}}\n", entries.join(",\n"))
    }

    /// An outcome and the next claim in one write: each under its own condition, so that an
    /// entry that moved or carries another claim is left as it is and the other edit lands.
    #[test]
    fn edits_of_two_entries_in_one_write_each_keep_their_condition() {
        let (_dir, ws, path) = empty_workspace();
        let set = |k: &str, v: &str| FieldOp::Set(k.into(), v.into());
        let claimed = |run: &str| {
            tasks_file(3).replacen(
                "\"id\": \"T-0\", \"agent\": \"DevOps-Engineer\", \"status\": \"pending\"",
                &format!("\"id\": \"T-0\", \"agent\": \"DevOps-Engineer\", \"status\": \"in_progress\", \"run_id\": \"{run}\""),
                1,
            )
        };
        let outcome = [set("status", "done")];
        let claim = [set("status", "in_progress")];
        let edits = [
            EntryEdit { id: "T-0", expect: &[], claim: Some("run-a"), ops: &outcome, needs: None },
            EntryEdit { id: "T-1", expect: &["pending"], claim: None, ops: &claim, needs: None },
        ];
        let read = |path: &std::path::Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };

        // Both hold: both land.
        std::fs::write(&path, claimed("run-a")).unwrap();
        let edited = edit_known_tasks(&ws, None, None, &edits).unwrap();
        assert_eq!(edited.iter().map(|e| e.applied).collect::<Vec<_>>(), [true, true]);
        let tasks = read(&path);
        assert_eq!(tasks["tasks"][0]["status"], "done");
        assert_eq!(tasks["tasks"][1]["status"], "in_progress");

        // The first entry carries another run's claim: only the claim lands.
        std::fs::write(&path, claimed("run-b")).unwrap();
        let edited = edit_known_tasks(&ws, None, None, &edits).unwrap();
        assert_eq!(edited[0], Edited { applied: false, claimed: Claimed::NotOurs { found: Some("run-b".into()) } });
        assert!(edited[1].applied);
        let tasks = read(&path);
        assert_eq!(tasks["tasks"][0]["status"], "in_progress");
        assert_eq!(tasks["tasks"][1]["status"], "in_progress");

        // The task to claim has moved: only the outcome lands.
        let moved = claimed("run-a").replacen(
            "\"id\": \"T-1\", \"agent\": \"DevOps-Engineer\", \"status\": \"pending\"",
            "\"id\": \"T-1\", \"agent\": \"DevOps-Engineer\", \"status\": \"cancelled\"",
            1,
        );
        std::fs::write(&path, &moved).unwrap();
        let edited = edit_known_tasks(&ws, None, None, &edits).unwrap();
        assert_eq!(edited[0], Edited { applied: true, claimed: Claimed::Applied });
        assert!(!edited[1].applied);
        let tasks = read(&path);
        assert_eq!(tasks["tasks"][0]["status"], "done");
        assert_eq!(tasks["tasks"][1]["status"], "cancelled");

        // A claim that needs the outcome does not land without it; it lands with it.
        std::fs::write(&path, claimed("run-b")).unwrap();
        let needing = [edits[0], EntryEdit { needs: Some(0), ..edits[1] }];
        let edited = edit_known_tasks(&ws, None, None, &needing).unwrap();
        assert_eq!(edited[0], Edited { applied: false, claimed: Claimed::NotOurs { found: Some("run-b".into()) } });
        assert!(!edited[1].applied);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), claimed("run-b"));
        std::fs::write(&path, claimed("run-a")).unwrap();
        let edited = edit_known_tasks(&ws, None, None, &needing).unwrap();
        assert_eq!(edited.iter().map(|e| e.applied).collect::<Vec<_>>(), [true, true]);

        // The task to claim is gone: nothing is written, and the caller writes the outcome alone.
        std::fs::write(&path, claimed("run-a")).unwrap();
        let gone = [edits[0], EntryEdit { id: "T-9", ..edits[1] }];
        let error = edit_known_tasks(&ws, None, None, &gone).unwrap_err();
        assert!(error.to_string().contains("T-9"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), claimed("run-a"));
    }

    /// A writer that truncates `tasks.json` and writes it again in pieces (an editor's save,
    /// `echo > file`) is caught halfway: the edit waits until the file settles and applies to
    /// what it holds then, instead of failing on a broken file.
    #[test]
    fn an_edit_of_a_file_rewritten_in_place_waits_for_it_and_applies() {
        use std::io::Write;
        let (_dir, ws, path) = empty_workspace();
        let whole = tasks_file(200);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&whole.as_bytes()[..40]).unwrap();
        let rest = whole.as_bytes()[40..].to_vec();
        let lock = path.with_extension("json.lock");
        let writer = std::thread::spawn(move || {
            // Starts once the edit has taken its lock (the writer ignores it, as editors do),
            // and is paced like a program writing its output as it goes.
            while !lock.exists() {
                std::thread::yield_now();
            }
            for piece in rest.chunks(rest.len() / 200 + 1) {
                file.write_all(piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let set = vec![FieldOp::Set("status".into(), "in_progress".into())];
        let edited = edit_task(&ws, Some("T-7"), &["pending"], set, Vec::new());
        writer.join().unwrap();
        assert!(matches!(edited, Ok(true)), "{edited:?}");
        let expected = whole.replacen(
            "\"id\": \"T-7\", \"agent\": \"DevOps-Engineer\", \"status\": \"pending\"",
            "\"id\": \"T-7\", \"agent\": \"DevOps-Engineer\", \"status\": \"in_progress\"",
            1,
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }

    /// A file that stays broken is refused with its place, after a bounded wait, and left as
    /// it is.
    #[test]
    fn an_edit_of_a_file_that_stays_broken_is_refused_with_its_place() {
        let (_dir, ws, path) = empty_workspace();
        let broken = &tasks_file(3)[..60];
        std::fs::write(&path, broken).unwrap();
        let set = vec![FieldOp::Set("status".into(), "in_progress".into())];
        let error = edit_task(&ws, Some("T-0"), &["pending"], set, Vec::new()).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("docs/workflow/tasks.json: line 3 column "), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    }
}
