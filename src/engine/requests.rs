//! `human-requests.md`: appending a request for a person, and marking it resolved once what
//! it asked for happened.
//!
//! Each entry opsflow writes starts with a marker line, `<!-- opsflow:request KEY {...} -->`:
//! `KEY` is 16 hex digits of the SHA-256 of the task, the node and the cause (the kind of
//! block, or the failed run; so one cause is never open twice), and the JSON says what to
//! watch (the task or state.json node, its status when the request was raised, the digest of
//! the reason, the failed run, the file a human answers in). An open entry whose reason is
//! reworded for the same cause is rendered again in place, keeping what follows it. On every pass
//! [`resolve`] looks at the open entries; when the cause cleared (the task was unblocked, or
//! blocked for another reason, a failure was fixed or set back to `pending`) it inserts one
//! line, `- **Resolved:** <when>: <what happened>`, under the entry's heading. Nothing else in
//! the file is ever changed, so whatever a person wrote stays, and the file stays friendly to
//! git's `merge=union` (entries are appended; a resolution is one added line).
//!
//! Entries written before the marker carried its JSON have no watch and stay as they are.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::record::{HumanRequest, fix_task_id};
use crate::render::Renderer;
use crate::sha256;
use crate::store::edit::FieldOp;
use crate::store::file::{self, StoreError};
use crate::store::tasks;
use crate::workspace::Workspace;

/// The top of a new `human-requests.md`: what the file is and how a person answers.
pub const HEADER: &str = "# Human requests\n\n\
opsflow appends an entry here when a gate blocks one of its tasks, a deployment fails or is rolled back, or a rollout waits for a decision.\n\
Writing in this file answers nothing: do what the entry's **Help Needed** line says (for an approval, tick `- [x] Approved` in the approval file it names and fill in `approved_by`, or set `status: approved` there; for a paused rollout, set `decision` in the R17 file; for a failed deployment, ship a new version and set `resolved_by` on the failed task; for another failure, fix it and set the task back to `pending`).\n\
opsflow reads those files again on its next pass and adds a **Resolved** line to the entry when its cause has cleared. Notes of your own under an entry are kept.\n";

const MARKER: &str = "<!-- opsflow:request ";
const RESOLVED: &str = "- **Resolved:** ";
const CONTACTS: &str = "- **Contacts Notified:** ";

/// What an entry watches to know when it is resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Watch {
    /// The task id, or `state-<node>` for a current node of state.json that no task stood for.
    task: String,
    node: String,
    /// The status the request was raised for: `blocked`, `failed` or `rolled_back`.
    status: String,
    /// The file a human edits to answer (an approval, a rollback decision), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer_in: Option<String>,
    /// 16 hex digits of the SHA-256 of the `blocked_reason` it was raised for, kept current
    /// when the same cause is reworded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The run that failed, for a failure: a later failure is another entry, and only what
    /// answers this run (a fix task filed for it, the task moving on) resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

/// What a marker keeps of a reason: 16 hex digits of its SHA-256.
fn digest_of(reason: &str) -> String {
    sha256::hex(reason.as_bytes())[..16].to_owned()
}

/// The key of a request's marker: 16 hex digits of the SHA-256 of the task, the node and the cause.
pub fn key_of(task: &str, node: &str, reason: &str) -> String {
    sha256::hex(format!("{task}\n{node}\n{reason}").as_bytes())[..16].to_owned()
}

/// The status a request watches, from the status it was raised with; `None` for requests no
/// later state of the task answers (an outcome that could not be recorded).
fn watched_status(status: &str) -> Option<&'static str> {
    match status {
        "blocked" | "paused" => Some("blocked"),
        "failed" => Some("failed"),
        "rolled back" | "rolled_back" => Some("rolled_back"),
        _ => None,
    }
}

/// The marker line of a request.
fn marker_line(key: &str, watch: Option<&Watch>) -> String {
    match watch {
        // `>` only occurs inside JSON strings, where `\u003e` means the same: the comment
        // cannot be closed early by a value.
        Some(watch) => {
            let json = serde_json::to_string(watch).expect("a Watch serializes").replace('>', "\\u003e");
            format!("{MARKER}{key} {json} -->")
        }
        None => format!("{MARKER}{key} -->"),
    }
}

/// One entry found in the file: its key, what it watches, the byte offset where a resolution
/// line goes, and whether it is resolved already.
struct Entry {
    key: String,
    watch: Option<Watch>,
    /// Where its marker line starts.
    marker_at: usize,
    insert_at: usize,
    resolved: bool,
}

fn entries(text: &str) -> Vec<Entry> {
    let mut found: Vec<Entry> = Vec::new();
    let mut offset = 0;
    let mut after_marker = false;
    for line in text.split_inclusive('\n') {
        let end = offset + line.len();
        let bare = line.trim_end();
        if let Some(rest) = bare.strip_prefix(MARKER).and_then(|r| r.strip_suffix("-->")) {
            let rest = rest.trim();
            let (key, json) = rest.split_once(' ').unwrap_or((rest, ""));
            let watch = serde_json::from_str(json.trim()).ok();
            // A marker that is the file's last line without a newline: the resolution goes
            // on a line of its own after it.
            found.push(Entry { key: key.to_owned(), watch, marker_at: offset, insert_at: end, resolved: false });
            after_marker = true;
        } else if let Some(entry) = found.last_mut() {
            if after_marker && bare.starts_with("## ") {
                entry.insert_at = end;
            }
            if bare.starts_with(RESOLVED) {
                entry.resolved = true;
            }
            after_marker = false;
        }
        offset = end;
    }
    found
}

/// Appends a request to `human-requests.md` unless an open one for the same task and cause is
/// there (one that was resolved does not count: the same trouble again is a new request).
/// `cause` names the cause, not its wording: the kind of block (an approval, a QA rejection,
/// the failed checks by name), or the run that failed. An open entry of the same cause whose
/// `reason` was reworded is updated in place: its text is rendered again under the same
/// heading, with the time it was first raised and a line saying when it changed, and notes a
/// person wrote under it are kept. `answer_in` is the file a human edits to answer it, if
/// any. Returns whether it appended or updated an entry.
pub fn append(
    ws: &Workspace,
    renderer: &Renderer,
    request: &HumanRequest,
    cause: &str,
    reason: &str,
    answer_in: Option<&str>,
) -> Result<bool, StoreError> {
    let key = key_of(&request.task_id, &request.node, cause);
    let watch = watched_status(&request.status).map(|status| Watch {
        task: request.task_id.clone(),
        node: request.node.clone(),
        status: status.to_owned(),
        answer_in: answer_in.map(str::to_owned),
        reason: (status == "blocked").then(|| digest_of(reason)),
        run_id: (status != "blocked").then(|| request.run_id.clone()),
    });
    let marker = marker_line(&key, watch.as_ref());
    let body = renderer
        .markdown("human-request.md", &Map::new(), &json!(request))
        .map_err(|e| StoreError::Refused(e.to_string()))?;
    // The renderer always writes front matter; a request entry is a fragment of a file.
    let entry = body.strip_prefix("---\n---\n").unwrap_or(&body).to_owned();
    let file = ws.config.paths.human_requests.clone();
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    let mut changed = false;
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |current| {
        let current = current.unwrap_or(HEADER);
        if let Some(open) = entries(current).into_iter().find(|e| e.key == key && !e.resolved) {
            let same = open.watch.as_ref().and_then(|w| w.reason.as_deref()).is_none_or(|r| r == digest_of(reason));
            if same {
                return Ok(None);
            }
            changed = true;
            return Ok(Some(reworded(current, &open, &marker, &entry, &request.raised_at)));
        }
        changed = true;
        let separator = if current.ends_with('\n') { "\n" } else { "\n\n" };
        Ok(Some(format!("{current}{separator}{marker}\n{entry}")))
    })?;
    Ok(changed)
}

/// Whether an open (unresolved) entry with marker key `key` is in `human-requests.md`.
pub fn is_open(ws: &Workspace, key: &str) -> bool {
    let Ok(Some(text)) = ws.read_text(&ws.config.paths.human_requests) else { return false };
    entries(&text).iter().any(|e| e.key == key && !e.resolved)
}

/// Sets the **Contacts Notified** line of the last entry with marker key `key` to `line`
/// (what the delivery of its escalation came to). Nothing else in the file changes, and
/// nothing is written when the line says so already.
pub fn set_contacts(ws: &Workspace, key: &str, line: &str) -> Result<(), StoreError> {
    let file = ws.config.paths.human_requests.clone();
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    let wanted = format!("{CONTACTS}{}", crate::render::markdown_escape(line));
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |current| {
        let Some(text) = current else { return Ok(None) };
        let Some(entry) = entries(text).into_iter().rev().find(|e| e.key == key) else { return Ok(None) };
        let mut offset = entry.marker_at;
        for (i, line) in text[entry.marker_at..].split_inclusive('\n').enumerate() {
            if i > 0 && line.starts_with(MARKER) {
                break;
            }
            if line.starts_with(CONTACTS) {
                let bare = line.trim_end_matches(['\n', '\r']);
                if bare == wanted {
                    return Ok(None);
                }
                let end = offset + bare.len();
                return Ok(Some(format!("{}{wanted}{}", &text[..offset], &text[end..])));
            }
            offset += line.len();
        }
        Ok(None)
    })?;
    Ok(())
}

/// `text` with the open entry `open` rendered again as `entry` (and its marker line as
/// `marker`): the lines from its marker to its `Raised` line are replaced, the first `Raised`
/// line is kept, an `Updated` line says when, and whatever follows (a person's notes) stays.
fn reworded(text: &str, open: &Entry, marker: &str, entry: &str, now: &str) -> String {
    let start = open.marker_at;
    let rest = &text[start..];
    // The entry's rendered part ends with its `Raised` line (the template's last).
    let mut end = start;
    let mut raised = None;
    let mut offset = start;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if i > 0 && line.starts_with(MARKER) {
            break;
        }
        offset += line.len();
        if line.starts_with("- **Raised:** ") {
            raised = Some(line.trim_end().to_owned());
            end = offset;
            break;
        }
    }
    let Some(raised) = raised else { return text.to_owned() };
    // Whom the first raising notified stays as the delivery step keeps it.
    let contacts = rest[..end - start].split_inclusive('\n').find(|line| line.starts_with(CONTACTS));
    let mut block = String::new();
    block.push_str(marker);
    block.push('\n');
    for line in entry.split_inclusive('\n') {
        if line.starts_with("- **Raised:** ") {
            block.push_str(&raised);
            block.push('\n');
            block.push_str(&format!("- **Updated:** {now}: the reason was reworded; the cause is the same\n"));
        } else if let (true, Some(kept)) = (line.starts_with(CONTACTS), contacts) {
            block.push_str(kept);
        } else if !line.starts_with("- **Updated:** ") {
            block.push_str(line);
        }
    }
    // Lines between the Raised line and the next entry that an earlier update wrote.
    let mut tail = &text[end..];
    while let Some(line) = tail.split_inclusive('\n').next().filter(|l| l.starts_with("- **Updated:** ")) {
        tail = &tail[line.len()..];
    }
    format!("{}{block}{tail}", &text[..start])
}

/// Marks every open entry whose cause has cleared as resolved, with `now` and what happened.
/// Reads `tasks.json` (only the watched entries are decoded) and `state.json` only when an
/// entry is open; `tasks` is the text of `tasks.json` when the caller knows it is the file's
/// current version (the pass's own read), so it is not read again. Returns how many entries
/// it marked.
///
/// `waiting` is an outcome that waits to be written with the next claim (the task's id and
/// the edit): the entry is judged as it will read once it is.
pub fn resolve(
    ws: &Workspace,
    now: &str,
    tasks: Option<&str>,
    waiting: Option<(&str, &[FieldOp])>,
) -> Result<usize, StoreError> {
    let file = ws.config.paths.human_requests.clone();
    let Ok(Some(text)) = ws.read_text(&file) else { return Ok(0) };
    let open: Vec<Watch> = entries(&text).into_iter().filter(|e| !e.resolved).filter_map(|e| e.watch).collect();
    if open.is_empty() {
        return Ok(0);
    }
    let mut wanted: Vec<String> = open.iter().map(|w| w.task.clone()).collect();
    wanted.extend(open.iter().map(|w| fix_task_id(&w.task)));
    let mut current = Current::read(ws, &wanted, tasks);
    if let Some((id, ops)) = waiting
        && let Some(Value::Object(entry)) = current.tasks.iter_mut().find(|t| t["id"].as_str() == Some(id))
    {
        FieldOp::apply_all(ops, entry);
    }
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    let mut marked = 0;
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |text| {
        let Some(text) = text else { return Ok(None) };
        let mut inserts: Vec<(usize, String)> = Vec::new();
        for entry in entries(text) {
            let (false, Some(watch)) = (entry.resolved, &entry.watch) else { continue };
            if let Some(what) = current.resolution(ws, &entry.key, watch) {
                let newline = if text[..entry.insert_at].ends_with('\n') { "" } else { "\n" };
                inserts.push((entry.insert_at, format!("{newline}{RESOLVED}{now}: {what}\n")));
            }
        }
        marked = inserts.len();
        if inserts.is_empty() {
            return Ok(None);
        }
        let mut out = String::with_capacity(text.len() + inserts.iter().map(|(_, s)| s.len()).sum::<usize>());
        let mut from = 0;
        for (at, line) in inserts {
            out.push_str(&text[from..at]);
            out.push_str(&line);
            from = at;
        }
        out.push_str(&text[from..]);
        Ok(Some(out))
    })?;
    Ok(marked)
}

/// How many resolved entries `human-requests.md` keeps: older ones move to the archive
/// ([`archive_path`]), so that the file a person reads, and every pass parses, stays the size
/// of what is current, however many releases the project ships.
pub const KEEP_RESOLVED: usize = 50;

/// How many resolved entries past [`KEEP_RESOLVED`] wait before they move together: the file
/// is rewritten once per this many resolutions, not on every one.
const ARCHIVE_BATCH: usize = 25;

/// The top of a new archive file.
pub const ARCHIVE_HEADER: &str = "# Human requests: archive\n\n\
Resolved entries that opsflow moved out of the requests file, oldest first, each as it was there (notes included).\n";

/// The archive of a requests file: `human-requests.md` keeps its resolved entries in
/// `human-requests-archive.md` beside it.
pub fn archive_path(file: &str) -> String {
    format!("{}-archive.md", file.strip_suffix(".md").unwrap_or(file))
}

/// Each entry's text: from its marker line to the next entry's marker (or the file's end),
/// with whatever a person wrote under it.
fn blocks<'t>(text: &'t str, found: &[Entry]) -> Vec<&'t str> {
    found
        .iter()
        .enumerate()
        .map(|(i, entry)| &text[entry.marker_at..found.get(i + 1).map_or(text.len(), |next| next.marker_at)])
        .collect()
}

/// Moves the oldest resolved entries of `human-requests.md` to its archive once more than
/// [`KEEP_RESOLVED`] (plus a batch) are resolved. Each entry moves whole, as it is, and is
/// appended to the archive before it leaves the requests file, so a runner stopped in between
/// leaves it in both, never in neither. Open entries never move. Returns how many moved.
pub fn archive_resolved(ws: &Workspace) -> Result<usize, StoreError> {
    let file = ws.config.paths.human_requests.clone();
    let Ok(Some(text)) = ws.read_text(&file) else { return Ok(0) };
    let found = entries(&text);
    let resolved = found.iter().filter(|e| e.resolved).count();
    if resolved <= KEEP_RESOLVED + ARCHIVE_BATCH {
        return Ok(0);
    }
    let moving: Vec<String> = found
        .iter()
        .zip(blocks(&text, &found))
        .filter(|(entry, _)| entry.resolved)
        .take(resolved - KEEP_RESOLVED)
        .map(|(_, block)| block.to_owned())
        .collect();
    let archive = archive_path(&file);
    let archive_at = ws.inside(&archive).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    file::modify(&ws.root, &archive_at, &archive, ws.config.limits.max_file_bytes, |current| {
        let mut out = current.unwrap_or(ARCHIVE_HEADER).to_owned();
        let before = out.len();
        for block in &moving {
            // Already there when an earlier attempt stopped before the requests file changed.
            if !out.contains(block.as_str()) {
                if !out.ends_with("\n\n") {
                    out.push('\n');
                }
                out.push_str(block);
            }
        }
        Ok((out.len() != before).then_some(out))
    })?;
    let path = ws.inside(&file).map_err(|d| StoreError::Invalid(Box::new(d)))?;
    let mut moved = 0;
    file::modify(&ws.root, &path, &file, ws.config.limits.max_file_bytes, |current| {
        let Some(text) = current else { return Ok(None) };
        let found = entries(text);
        let mut out = String::with_capacity(text.len());
        let start = found.first().map_or(text.len(), |e| e.marker_at);
        out.push_str(&text[..start]);
        moved = 0;
        for (entry, block) in found.iter().zip(blocks(text, &found)) {
            if entry.resolved && moving.iter().any(|m| m == block) {
                moved += 1;
            } else {
                out.push_str(block);
            }
        }
        Ok((moved > 0).then_some(out))
    })?;
    Ok(moved)
}

/// The watched tasks and nodes as they are now.
struct Current {
    /// The task list could be read; when it cannot, nothing is resolved.
    readable: bool,
    tasks: Vec<Value>,
    state: Value,
}

impl Current {
    fn read(ws: &Workspace, wanted: &[String], known: Option<&str>) -> Current {
        let mut current = Current { readable: false, tasks: Vec::new(), state: Value::Null };
        let read;
        let text = match known {
            Some(text) => text,
            None => {
                let Ok(Some(text)) = ws.read_text(&ws.config.paths.tasks) else { return current };
                read = text;
                &read
            }
        };
        let ids: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let Ok((_, heads)) = tasks::scan_ids_in(text, &ws.task_selection(), &ids) else { return current };
        let Ok(decoded) = heads.iter().map(|head| head.try_value(text)).collect::<Result<Vec<_>, _>>() else {
            return current;
        };
        current.tasks = decoded;
        current.readable = true;
        if let Ok(Some(state)) = ws.read_text(&ws.config.paths.state) {
            current.state = serde_json::from_str(&state).unwrap_or(Value::Null);
        }
        current
    }

    fn task(&self, id: &str) -> Option<&Value> {
        self.tasks.iter().find(|t| t.get("id").and_then(Value::as_str) == Some(id))
    }

    /// What resolved the entry, or `None` while it is still open.
    fn resolution(&self, ws: &Workspace, key: &str, watch: &Watch) -> Option<String> {
        if !self.readable {
            return None;
        }
        let on_state = watch.task == format!("state-{}", watch.node);
        let (entry, what) = if on_state {
            (self.state.pointer(&format!("/nodes/{}", watch.node.replace('~', "~0").replace('/', "~1"))), "node")
        } else {
            (self.task(&watch.task), "task")
        };
        let name = if on_state { &watch.node } else { &watch.task };
        let Some(entry) = entry else {
            return Some(format!(
                "{what} `{name}` is no longer in {}",
                if on_state { "state.json" } else { "tasks.json" }
            ));
        };
        let field = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default();
        let status = field("status");
        if watch.status == "blocked" {
            if status == "blocked" {
                let same = match &watch.reason {
                    Some(reason) => *reason == digest_of(field("blocked_reason")),
                    None => key_of(&watch.task, &watch.node, field("blocked_reason")) == key,
                };
                if same {
                    return None;
                }
                return Some(format!(
                    "{what} `{name}` is blocked for another reason now: {}",
                    crate::render::markdown_escape(field("blocked_reason"))
                ));
            }
            let answered = watch.answer_in.as_deref().map(|file| answered_in(ws, file)).unwrap_or_default();
            return Some(format!("{answered}{what} `{name}` is `{status}` now"));
        }
        // A failure: resolved when the task moved on, a human recorded `resolved_by`, or its
        // fix task is finished.
        if status != watch.status {
            return Some(format!("{what} `{name}` is `{status}` now"));
        }
        let by = field("resolved_by").trim();
        if !by.is_empty() {
            return Some(format!("`resolved_by: {by}` on {what} `{name}`"));
        }
        // A newer run failed since: that failure has its own entry.
        let failed_run = entry.pointer("/outcome/run_id").and_then(Value::as_str);
        if let (Some(watched), Some(failed_run)) = (&watch.run_id, failed_run)
            && watched != failed_run
        {
            return Some(format!("{what} `{name}` failed again in run `{failed_run}`, which has an entry of its own"));
        }
        let fix = fix_task_id(&watch.task);
        let fix_task = self.task(&fix);
        // A fix task filed for an earlier failure does not answer this one.
        let for_this_run = match (&watch.run_id, fix_task.and_then(|t| t.pointer("/details/deployment/run_id"))) {
            (Some(watched), Some(Value::String(filed_for))) => watched == filed_for,
            _ => true,
        };
        let fix_status = fix_task.and_then(|t| t.get("status")).and_then(Value::as_str).unwrap_or_default();
        (for_this_run && matches!(fix_status, "done" | "deployed" | "cancelled"))
            .then(|| format!("fix task `{fix}` is `{fix_status}`"))
    }
}

/// "approved in `file` by NAME; " (or what its front matter says) for a request answered in `file`.
fn answered_in(ws: &Workspace, file: &str) -> String {
    let front = ws
        .read_text(file)
        .ok()
        .flatten()
        .and_then(|text| crate::workspace::read::parse_markdown(file, &text).ok())
        .and_then(|doc| doc.front_matter);
    let field = |key: &str| {
        front.as_ref().and_then(|f| f.get(key)).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
    };
    match (field("approved_by"), field("decided_by")) {
        (Some(by), _) => format!("approved in `{file}` by {}; ", crate::render::markdown_escape(by)),
        (None, Some(by)) => format!("decided in `{file}` by {}; ", crate::render::markdown_escape(by)),
        (None, None) => format!("answered in `{file}`; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_cannot_close_early() {
        let watch = Watch {
            task: "T --> x".into(),
            node: "Deploy_To_Production".into(),
            status: "blocked".into(),
            answer_in: Some("docs/a.md".into()),
            reason: Some(digest_of("waits for a human approval")),
            run_id: None,
        };
        let line = marker_line("0123456789abcdef", Some(&watch));
        assert_eq!(line.matches("-->").count(), 1, "{line}");
        let text = format!("# H\n\n{line}\n## Escalation Request\n- **Agent:** a\n\nA note of mine\n");
        let found = entries(&text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "0123456789abcdef");
        assert_eq!(found[0].watch.as_ref(), Some(&watch));
        assert!(!found[0].resolved);
        // The resolution goes under the heading.
        assert_eq!(&text[..found[0].insert_at], format!("# H\n\n{line}\n## Escalation Request\n"));
        // A reworded entry keeps the Contacts Notified line the delivery step wrote.
        let open = &entries(&text)[0];
        let with_raised = format!(
            "{line}\n## Escalation Request\n- **Contacts Notified:** hook (accepted 2026-01-01T00:00:00Z)\n- **Raised:** t0 (run `r`)\nA note of mine\n"
        );
        let again = reworded(
            &with_raised,
            open,
            &line,
            "## Escalation Request\n- **Contacts Notified:** hook (queued)\n- **Raised:** t1 (run `r`)\n",
            "t1",
        );
        assert!(again.contains("- **Contacts Notified:** hook (accepted 2026-01-01T00:00:00Z)\n"), "{again}");
        assert!(again.contains("- **Raised:** t0") && again.ends_with("A note of mine\n"), "{again}");
        // An old marker without a watch is found, and watches nothing.
        let old = entries("<!-- opsflow:request 0123456789abcdef -->\n## E\n- **Resolved:** x\n");
        assert!(old[0].watch.is_none() && old[0].resolved);
    }

    #[test]
    fn old_resolved_entries_move_to_the_archive_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let file = ws.config.paths.human_requests.clone();
        let entry = |n: usize, resolved: bool| {
            let resolution =
                if resolved { format!("{RESOLVED}t{n}: task `T{n}` is `done` now\n") } else { String::new() };
            format!(
                "{MARKER}{n:016x} -->\n## Escalation Request\n{resolution}- **Raised:** t{n}\nA note of mine on {n}\n\n"
            )
        };
        let total = KEEP_RESOLVED + ARCHIVE_BATCH + 5;
        // Entry 3 stays open among the resolved ones.
        let mut text = HEADER.to_owned() + "\n";
        for n in 0..total {
            text.push_str(&entry(n, n != 3));
        }
        std::fs::create_dir_all(ws.path(&file).parent().unwrap()).unwrap();
        std::fs::write(ws.path(&file), &text).unwrap();
        let resolved = total - 1;
        assert_eq!(archive_resolved(&ws).unwrap(), resolved - KEEP_RESOLVED);
        let kept = std::fs::read_to_string(ws.path(&file)).unwrap();
        let archive = std::fs::read_to_string(ws.path(&archive_path(&file))).unwrap();
        assert!(kept.starts_with(HEADER) && archive.starts_with(ARCHIVE_HEADER));
        assert_eq!(entries(&kept).iter().filter(|e| e.resolved).count(), KEEP_RESOLVED);
        // The open entry stays, every entry is in one of the two files, whole, in order.
        assert!(entries(&kept).iter().any(|e| !e.resolved && e.key == format!("{:016x}", 3)));
        for n in 0..total {
            let block = entry(n, n != 3);
            assert!(kept.contains(&block) ^ archive.contains(&block), "entry {n}");
        }
        assert!(archive.find(&entry(0, true)).unwrap() < archive.find(&entry(1, true)).unwrap());
        // Nothing more moves until another batch is resolved.
        assert_eq!(archive_resolved(&ws).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(ws.path(&archive_path(&file))).unwrap(), archive);
    }
}
