//! The three-way merge of `tasks.json` and `state.json` that git runs as a merge driver.
//!
//! Git's line merge knows nothing of JSON: two runners that each append a task, or change two
//! fields of one task, get conflict markers or, worse, a clean merge that is not JSON. This
//! module merges by meaning instead: tasks matched by `id`, nodes by name, field by field,
//! three ways (base, ours, theirs). The result is OURS's text with splices from the store's
//! [`edit`] module applied, so every byte the other side did not change stays as OURS had it.
//!
//! Entries are compared by their bytes first and decoded only when those differ from base,
//! which keeps a merge of two 100,000-task files that differ in a few entries to three span
//! scans and a hash lookup per entry.
//!
//! A conflict (the same field changed differently on both sides, one id added twice with
//! different content, an entry deleted on one side and changed on the other) keeps OURS for
//! that field or entry and is listed, so the caller can report it and let git mark the file.
//! A listed value is cut after [`SHOWN_VALUE_CHARS`] characters, with its length.

pub mod setup;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::store::edit::{self, FieldOp, Splice, Style};
use crate::store::json::{self, Span, SyntaxError};
use crate::store::tasks::{self, Layout, LayoutError, TaskHead};
use crate::workspace::diagnostic::Diagnostic;

/// Which workflow file is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Tasks,
    State,
}

impl FileKind {
    /// The kind a path names (`…tasks.json`, `…state.json`), if it names one.
    pub fn from_path(path: &str) -> Option<FileKind> {
        if path.ends_with("tasks.json") {
            Some(FileKind::Tasks)
        } else if path.ends_with("state.json") {
            Some(FileKind::State)
        } else {
            None
        }
    }

    /// The kind a file's shape says: an array or an object with `tasks` is a task list, an
    /// object with `nodes` or `current_nodes` is a state file.
    pub fn detect(text: &str) -> Option<FileKind> {
        let root = json::root(text).ok()?;
        match text.as_bytes()[root.start] {
            b'[' => Some(FileKind::Tasks),
            b'{' => {
                let (members, _) = json::object_members(text, root.start).ok()?;
                if members.iter().any(|m| m.key_is(text, "tasks")) {
                    Some(FileKind::Tasks)
                } else if members.iter().any(|m| m.key_is(text, "nodes") || m.key_is(text, "current_nodes")) {
                    Some(FileKind::State)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// One of the three versions git hands the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Base,
    Ours,
    Theirs,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Base => "base",
            Side::Ours => "ours",
            Side::Theirs => "theirs",
        })
    }
}

/// Why a merge could not be made at all (as opposed to a [`Conflict`], which is reported in a
/// result that is still written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("{side} version, line {line} column {column}: invalid JSON: {message}")]
    Syntax { side: Side, line: usize, column: usize, message: String },
    #[error("{side} version: {message}")]
    Shape { side: Side, message: String },
    #[error("the merged text is not valid JSON ({0}); this is a bug in opsflow, and the file was left as ours")]
    Invalid(String),
    /// A version git handed the driver is not there (`label` is the file being merged).
    #[error("{label} ({side}: {}): does not exist", file.display())]
    Missing { label: String, side: Side, file: PathBuf },
    /// A version git handed the driver cannot be read or is not text; the diagnostic names
    /// the file.
    #[error("{0}")]
    Unreadable(Box<Diagnostic>),
}

impl MergeError {
    fn syntax(side: Side, text: &str, error: SyntaxError) -> MergeError {
        let (line, column) = json::line_col(text, error.offset);
        MergeError::Syntax { side, line, column, message: error.message }
    }

    fn layout(side: Side, text: &str, error: LayoutError) -> MergeError {
        match error {
            LayoutError::Syntax(e) => MergeError::syntax(side, text, e),
            LayoutError::Shape(message) => MergeError::Shape { side, message },
        }
    }
}

/// A change both sides made differently. `None` means absent (deleted, or never added).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// What holds the field: ``task `T-1` ``, ``node `Deploy_To_Staging` ``, or `None` for the
    /// top level of the file.
    pub entry: Option<String>,
    /// The field, or `None` when the whole entry is in conflict.
    pub field: Option<String>,
    pub base: Option<Value>,
    pub ours: Option<Value>,
    pub theirs: Option<Value>,
}

/// The most characters of one value a conflict line shows: a 20 MB field would otherwise be
/// printed whole, once per side.
pub const SHOWN_VALUE_CHARS: usize = 300;

/// A value as a conflict line shows it: compact JSON, cut after [`SHOWN_VALUE_CHARS`]
/// characters with a note of how long it was.
fn shown_value(value: &Value) -> String {
    let text = serde_json::to_string(value).expect("a Value serializes");
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}… ({} characters in all)", &text[..cut], text.chars().count()),
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: &Option<Value>| match value {
            Some(value) => shown_value(value),
            None if self.field.is_none() => "(deleted)".to_owned(),
            None => "(absent)".to_owned(),
        };
        let what = match (&self.entry, &self.field) {
            (Some(entry), Some(field)) => format!("{entry}, field `{field}`"),
            (Some(entry), None) => entry.clone(),
            (None, Some(field)) => format!("top-level field `{field}`"),
            (None, None) => "the whole file".to_owned(),
        };
        let base = if self.base.is_none() && self.field.is_none() { "(absent)".to_owned() } else { shown(&self.base) };
        write!(f, "{what}: base {base}, ours {}, theirs {}", shown(&self.ours), shown(&self.theirs))
    }
}

/// What a merge produced.
#[derive(Debug)]
pub struct Merged {
    /// The merged text; `None` when it is OURS unchanged.
    pub text: Option<String>,
    pub conflicts: Vec<Conflict>,
    /// The ids of the tasks merged field by field (changed on both sides), the only entries
    /// of a merged task list that neither side wrote as they are, for the caller to check
    /// against the task schema (empty for `state.json`, which is small enough to check whole).
    pub touched: Vec<String>,
}

/// Merges `theirs` into `ours` against `base` (which may be empty: the file was added on both
/// sides).
pub fn merge(kind: FileKind, base: &str, ours: &str, theirs: &str) -> Result<Merged, MergeError> {
    for (side, text) in [(Side::Ours, ours), (Side::Theirs, theirs)] {
        if text.trim().is_empty() {
            return Err(MergeError::Shape { side, message: "the file is empty".to_owned() });
        }
    }
    let mut touched = Vec::new();
    let (splices, conflicts) = match kind {
        FileKind::Tasks => merge_tasks(base, ours, theirs, &mut touched)?,
        FileKind::State => merge_state(base, ours, theirs)?,
    };
    if splices.is_empty() {
        return Ok(Merged { text: None, conflicts, touched: Vec::new() });
    }
    let text = edit::apply(ours, splices);
    let checked = match kind {
        FileKind::Tasks => tasks::scan(&text, |_| false).map(|_| ()).map_err(|e| format!("{e:?}")),
        FileKind::State => json::root(&text).map(|_| ()).map_err(|e| e.to_string()),
    };
    checked.map_err(MergeError::Invalid)?;
    Ok(Merged { text: (text != ours).then_some(text), conflicts, touched })
}

/// An object's members as (key, raw value text), in order.
type Fields<'t> = Vec<(Cow<'t, str>, &'t str)>;

fn fields<'t>(text: &'t str, start: usize, side: Side) -> Result<Fields<'t>, MergeError> {
    let (members, _) = json::object_members(text, start).map_err(|e| MergeError::syntax(side, text, e))?;
    Ok(members.iter().map(|m| (m.key(text), m.value.of(text))).collect())
}

/// The last value of `key` (JSON parsers keep the last duplicate).
fn lookup<'t>(fields: &Fields<'t>, key: &str) -> Option<&'t str> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, raw)| *raw)
}

fn decode(raw: &str) -> Value {
    serde_json::from_str(raw).expect("the scanner checked this span")
}

/// Two raw values are the same when their bytes are, or else when they mean the same.
fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || decode(a) == decode(b),
        _ => false,
    }
}

/// A field both sides changed differently, with the raw values.
struct FieldConflict<'t> {
    field: String,
    base: Option<&'t str>,
    ours: Option<&'t str>,
    theirs: Option<&'t str>,
}

impl FieldConflict<'_> {
    fn into_conflict(self, entry: Option<String>) -> Conflict {
        Conflict {
            entry,
            field: Some(self.field),
            base: self.base.map(decode),
            ours: self.ours.map(decode),
            theirs: self.theirs.map(decode),
        }
    }
}

/// The three-way merge of one object's fields: the operations that bring THEIRS's changes
/// into OURS, and the fields both changed differently (OURS kept). Keys in `skip` are left to
/// the caller.
fn merge_fields<'t>(
    base: &Fields<'t>,
    ours: &Fields<'t>,
    theirs: &Fields<'t>,
    skip: &[&str],
) -> (Vec<FieldOp>, Vec<FieldConflict<'t>>) {
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in ours.iter().chain(theirs).chain(base) {
        if !keys.contains(&key.as_ref()) && !skip.contains(&key.as_ref()) {
            keys.push(key);
        }
    }
    let mut ops = Vec::new();
    let mut conflicts = Vec::new();
    for key in keys {
        let (b, o, t) = (lookup(base, key), lookup(ours, key), lookup(theirs, key));
        if same(t, b) || same(o, t) {
            continue;
        }
        if same(o, b) {
            ops.push(match t {
                Some(raw) => FieldOp::Set(key.to_owned(), decode(raw)),
                None => FieldOp::Remove(key.to_owned()),
            });
        } else {
            conflicts.push(FieldConflict { field: key.to_owned(), base: b, ours: o, theirs: t });
        }
    }
    (ops, conflicts)
}

/// One entry (a task, a node) present on all three sides, changed on theirs: the splices into
/// OURS and the conflicts. Entries that are not objects are merged whole.
fn merge_entry<'t>(
    label: &str,
    (base, base_start): (&'t str, usize),
    (ours, ours_start): (&'t str, usize),
    (theirs, theirs_start): (&'t str, usize),
    raw: (&'t str, &'t str, &'t str),
    style: &Style,
    out: &mut (Vec<Splice>, Vec<Conflict>),
) -> Result<(), MergeError> {
    let (base_raw, ours_raw, theirs_raw) = raw;
    let objects = [base_raw, ours_raw, theirs_raw].iter().all(|r| r.starts_with('{'));
    if !objects {
        if same(Some(ours_raw), Some(base_raw)) {
            let end = ours_start + ours_raw.len();
            out.0.push(Splice { start: ours_start, end, with: theirs_raw.to_owned() });
        } else if !same(Some(ours_raw), Some(theirs_raw)) {
            out.1.push(Conflict {
                entry: Some(label.to_owned()),
                field: None,
                base: Some(decode(base_raw)),
                ours: Some(decode(ours_raw)),
                theirs: Some(decode(theirs_raw)),
            });
        }
        return Ok(());
    }
    let base_fields = fields(base, base_start, Side::Base)?;
    let ours_fields = fields(ours, ours_start, Side::Ours)?;
    let theirs_fields = fields(theirs, theirs_start, Side::Theirs)?;
    let (ops, conflicts) = merge_fields(&base_fields, &ours_fields, &theirs_fields, &[]);
    out.1.extend(conflicts.into_iter().map(|c| c.into_conflict(Some(label.to_owned()))));
    if !ops.is_empty() {
        out.0.extend(
            edit::edit_object(ours, ours_start, &ops, style).map_err(|e| MergeError::syntax(Side::Ours, ours, e))?,
        );
    }
    Ok(())
}

/// The same id added on both sides: equal content is fine, anything else is a conflict on
/// every field that differs (or on the whole entry when either is not an object).
fn added_twice(label: &str, ours: &str, theirs: &str, out: &mut Vec<Conflict>) {
    if same(Some(ours), Some(theirs)) {
        return;
    }
    let (ours, theirs) = (decode(ours), decode(theirs));
    match (ours.as_object(), theirs.as_object()) {
        (Some(o), Some(t)) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.extend(t.keys().filter(|k| !o.contains_key(*k)));
            for key in keys {
                if o.get(key) != t.get(key) {
                    out.push(Conflict {
                        entry: Some(format!("{label} (added on both sides)")),
                        field: Some(key.clone()),
                        base: None,
                        ours: o.get(key).cloned(),
                        theirs: t.get(key).cloned(),
                    });
                }
            }
        }
        _ => out.push(Conflict {
            entry: Some(format!("{label} (added on both sides)")),
            field: None,
            base: None,
            ours: Some(ours),
            theirs: Some(theirs),
        }),
    }
}

use crate::store::tasks::FxMap;

/// How a task matches its counterparts: by id, or by its whole content when it has no id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key<'t> {
    Id(Cow<'t, str>),
    Content(String),
}

impl Key<'_> {
    fn label(&self) -> String {
        match self {
            Key::Id(id) => format!("task `{id}`"),
            Key::Content(content) => format!("task without an id {content}"),
        }
    }
}

fn key_of<'t>(text: &'t str, head: &TaskHead<'t>) -> Key<'t> {
    match &head.id {
        Some(id) => Key::Id(id.clone()),
        None => Key::Content(serde_json::to_string(&decode(head.span.of(text))).expect("a Value serializes")),
    }
}

/// Where each entry of one side is, by key; duplicate ids are refused.
fn index<'t>(side: Side, text: &'t str, heads: &'t [TaskHead<'t>]) -> Result<FxMap<Key<'t>, usize>, MergeError> {
    let mut map = FxMap::with_capacity_and_hasher(heads.len(), Default::default());
    for (i, head) in heads.iter().enumerate() {
        let key = key_of(text, head);
        if let Some(&first) = map.get(&key) {
            if let Key::Id(id) = &key {
                let first: &TaskHead = &heads[first];
                return Err(MergeError::Shape {
                    side,
                    message: format!(
                        "the id `{id}` is used by more than one task (entries {} and {}); fix the file first",
                        first.index, head.index
                    ),
                });
            }
            continue;
        }
        map.insert(key, i);
    }
    Ok(map)
}

/// How the elements of an array are laid out: one a line at some indentation, or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArrayLayout {
    multiline: bool,
    indent: String,
    newline: &'static str,
}

fn array_layout(text: &str, array_start: usize, heads: &[TaskHead<'_>]) -> Option<ArrayLayout> {
    let first = heads.first()?;
    let gap = &text[array_start + 1..first.span.start];
    let newline = Style::detect(text).newline;
    match gap.rfind('\n') {
        Some(at) => Some(ArrayLayout { multiline: true, indent: gap[at + 1..].to_owned(), newline }),
        None => Some(ArrayLayout { multiline: false, indent: String::new(), newline }),
    }
}

/// A task entry of THEIRS can be copied as its bytes when OURS lays its entries out the same
/// way (same indentation, same line ending), which is what a line merge would have produced.
fn copyable(ours: &Option<ArrayLayout>, theirs: &Option<ArrayLayout>, raw: &str) -> bool {
    match (ours, theirs) {
        (Some(o), Some(t)) => o == t && (o.multiline || !raw.contains('\n')),
        _ => false,
    }
}

/// Parsed side of a task list.
struct TaskSide<'t> {
    text: &'t str,
    layout: Layout,
    heads: Vec<TaskHead<'t>>,
}

fn scan_tasks(side: Side, text: &str) -> Result<TaskSide<'_>, MergeError> {
    let (layout, heads) = tasks::heads(text).map_err(|e| MergeError::layout(side, text, e))?;
    Ok(TaskSide { text, layout, heads })
}

fn merge_tasks(
    base: &str,
    ours: &str,
    theirs: &str,
    touched: &mut Vec<String>,
) -> Result<(Vec<Splice>, Vec<Conflict>), MergeError> {
    let (ours_side, theirs_side, base_side) = std::thread::scope(|scope| {
        let theirs_scan = scope.spawn(|| scan_tasks(Side::Theirs, theirs));
        let base_scan = scope.spawn(|| (!base.trim().is_empty()).then(|| scan_tasks(Side::Base, base)).transpose());
        let ours_side = scan_tasks(Side::Ours, ours);
        (ours_side, theirs_scan.join(), base_scan.join())
    });
    let ours_side = ours_side?;
    let theirs_side = theirs_side.expect("scanning does not panic")?;
    let base_side = base_side.expect("scanning does not panic")?;
    let empty_base = TaskSide {
        text: "",
        layout: Layout { array_start: 0, wrapped: false, tag: None, shape: None },
        heads: Vec::new(),
    };
    let base_side = base_side.unwrap_or(empty_base);

    let base_map = index(Side::Base, base_side.text, &base_side.heads)?;
    let ours_map = index(Side::Ours, ours, &ours_side.heads)?;
    let theirs_map = index(Side::Theirs, theirs, &theirs_side.heads)?;

    let style = Style::detect(ours);
    let ours_layout = array_layout(ours, ours_side.layout.array_start, &ours_side.heads);
    let theirs_layout = array_layout(theirs, theirs_side.layout.array_start, &theirs_side.heads);
    let mut out: (Vec<Splice>, Vec<Conflict>) = (Vec::new(), Vec::new());
    let mut removed = vec![false; ours_side.heads.len()];
    let mut added: Vec<&str> = Vec::new();

    for head in &theirs_side.heads {
        let key = key_of(theirs, head);
        let theirs_raw = head.span.of(theirs);
        let base_head = base_map.get(&key).map(|&i| &base_side.heads[i]);
        let ours_head = ours_map.get(&key).map(|&i| &ours_side.heads[i]);
        match (base_head, ours_head) {
            (Some(b), Some(o)) => {
                let (base_raw, ours_raw) = (b.span.of(base_side.text), o.span.of(ours));
                if theirs_raw == base_raw || ours_raw == theirs_raw {
                    continue;
                }
                if ours_raw == base_raw && copyable(&ours_layout, &theirs_layout, theirs_raw) {
                    // Only theirs changed this entry: take its bytes, as a line merge would.
                    out.0.push(Splice { start: o.span.start, end: o.span.end, with: theirs_raw.to_owned() });
                    continue;
                }
                if let Key::Id(id) = &key
                    && ours_raw != base_raw
                {
                    touched.push(id.to_string());
                }
                merge_entry(
                    &key.label(),
                    (base_side.text, b.span.start),
                    (ours, o.span.start),
                    (theirs, head.span.start),
                    (base_raw, ours_raw, theirs_raw),
                    &style,
                    &mut out,
                )?;
            }
            (Some(b), None) => {
                // Deleted on ours: fine unless theirs changed it.
                let base_raw = b.span.of(base_side.text);
                if !same(Some(base_raw), Some(theirs_raw)) {
                    out.1.push(Conflict {
                        entry: Some(format!("{} (deleted on ours, changed on theirs)", key.label())),
                        field: None,
                        base: Some(decode(base_raw)),
                        ours: None,
                        theirs: Some(decode(theirs_raw)),
                    });
                }
            }
            (None, Some(o)) => added_twice(&key.label(), o.span.of(ours), theirs_raw, &mut out.1),
            (None, None) => added.push(theirs_raw),
        }
    }
    for head in &base_side.heads {
        let key = key_of(base_side.text, head);
        if theirs_map.contains_key(&key) {
            continue;
        }
        let Some(&o) = ours_map.get(&key) else { continue };
        let (base_raw, ours_raw) = (head.span.of(base_side.text), ours_side.heads[o].span.of(ours));
        if same(Some(base_raw), Some(ours_raw)) {
            removed[o] = true;
        } else {
            out.1.push(Conflict {
                entry: Some(format!("{} (changed on ours, deleted on theirs)", key.label())),
                field: None,
                base: Some(decode(base_raw)),
                ours: Some(decode(ours_raw)),
                theirs: None,
            });
        }
    }

    // Top-level fields beside `tasks`, when both sides wrap the list in an object and theirs
    // changed the bytes around the list (walking the members walks the whole list again).
    if ours_side.layout.wrapped && theirs_side.layout.wrapped && around(&theirs_side) != around(&base_side) {
        let root = |text: &str| json::skip_ws(text, 0);
        let base_fields = if base_side.layout.wrapped {
            fields(base_side.text, root(base_side.text), Side::Base)?
        } else {
            Vec::new()
        };
        let ours_fields = fields(ours, root(ours), Side::Ours)?;
        let theirs_fields = fields(theirs, root(theirs), Side::Theirs)?;
        let (ops, conflicts) = merge_fields(&base_fields, &ours_fields, &theirs_fields, &["tasks"]);
        out.1.extend(conflicts.into_iter().map(|c| c.into_conflict(None)));
        if !ops.is_empty() {
            out.0.extend(
                edit::edit_object(ours, root(ours), &ops, &style)
                    .map_err(|e| MergeError::syntax(Side::Ours, ours, e))?,
            );
        }
    }

    let (mut splices, conflicts) = out;
    splices.extend(element_changes(&ours_side, &removed, &added, &ours_layout, &theirs_layout, &style)?);
    Ok((splices, conflicts))
}

/// The text before and after the task array (the array's brackets included).
fn around<'t>(side: &TaskSide<'t>) -> (&'t str, &'t str) {
    if side.text.is_empty() {
        return ("", "");
    }
    let from = side.heads.last().map_or(side.layout.array_start + 1, |h| h.span.end);
    let close = json::skip_ws(side.text, from);
    (&side.text[..=side.layout.array_start], &side.text[close..])
}

/// The splices that remove the `removed` entries of OURS's task array and append `added`
/// (raw entries of THEIRS, in their order), keeping commas and line breaks balanced.
fn element_changes(
    ours: &TaskSide<'_>,
    removed: &[bool],
    added: &[&str],
    ours_layout: &Option<ArrayLayout>,
    theirs_layout: &Option<ArrayLayout>,
    style: &Style,
) -> Result<Vec<Splice>, MergeError> {
    let text = ours.text;
    let spans: Vec<Span> = ours.heads.iter().map(|h| h.span).collect();
    let syntax = |e: SyntaxError| MergeError::syntax(Side::Ours, text, e);
    let values = || added.iter().map(|raw| decode(raw)).collect::<Vec<Value>>();
    let array_start = ours.layout.array_start;
    let kept = removed.iter().filter(|r| !**r).count();
    if !spans.is_empty() && kept == 0 {
        // Every entry of ours goes: write the array's inside anew, as the store would for an
        // empty list.
        let close = json::skip_ws(text, spans.last().expect("not empty").end);
        let mut emptied = String::with_capacity(text.len() - (close - array_start));
        emptied.push_str(&text[..array_start + 1]);
        emptied.push_str(&text[close..]);
        let appended = edit::append_elements(&emptied, array_start, &values(), style).map_err(syntax)?;
        let with = appended.into_iter().next().map(|s| s.with).unwrap_or_default();
        return Ok(vec![Splice { start: array_start + 1, end: close, with }]);
    }
    let mut splices = Vec::new();
    let first_kept = removed.iter().position(|r| !r).unwrap_or(spans.len());
    if first_kept > 0 && first_kept < spans.len() {
        splices.push(Splice { start: spans[0].start, end: spans[first_kept].start, with: String::new() });
    }
    for i in first_kept + 1..spans.len() {
        if removed[i] {
            splices.push(Splice { start: spans[i - 1].end, end: spans[i].end, with: String::new() });
        }
    }
    if added.is_empty() {
        return Ok(splices);
    }
    match (spans.last(), ours_layout) {
        (Some(last), Some(layout)) if added.iter().all(|raw| copyable(ours_layout, theirs_layout, raw)) => {
            let join = if layout.multiline {
                format!(",{}{}", layout.newline, layout.indent)
            } else {
                match spans.get(..2) {
                    Some([a, b]) => text[a.end..b.start].to_owned(),
                    _ => ", ".to_owned(),
                }
            };
            let mut with = String::new();
            for raw in added {
                with.push_str(&join);
                with.push_str(raw);
            }
            splices.push(Splice { start: last.end, end: last.end, with });
        }
        _ => splices.extend(edit::append_elements(text, array_start, &values(), style).map_err(syntax)?),
    }
    Ok(splices)
}

/// `current_nodes` merged as a set: OURS's list, minus what THEIRS removed, plus what THEIRS
/// added (in THEIRS's order). `None` when any side's value is not a list of strings.
fn merge_name_set(base: Option<&str>, ours: &str, theirs: &str) -> Option<Vec<String>> {
    let names = |raw: &str| serde_json::from_str::<Vec<String>>(raw).ok();
    let base = match base {
        Some(raw) => names(raw)?,
        None => Vec::new(),
    };
    let (ours, theirs) = (names(ours)?, names(theirs)?);
    let mut merged: Vec<String> = ours.into_iter().filter(|n| !base.contains(n) || theirs.contains(n)).collect();
    for name in theirs {
        if !base.contains(&name) && !merged.contains(&name) {
            merged.push(name);
        }
    }
    Some(merged)
}

fn merge_state(base: &str, ours: &str, theirs: &str) -> Result<(Vec<Splice>, Vec<Conflict>), MergeError> {
    let object_root = |side: Side, text: &str| -> Result<usize, MergeError> {
        let root = json::root(text).map_err(|e| MergeError::syntax(side, text, e))?;
        if text.as_bytes()[root.start] != b'{' {
            return Err(MergeError::Shape { side, message: "the top level must be an object".to_owned() });
        }
        Ok(root.start)
    };
    let ours_root = object_root(Side::Ours, ours)?;
    let theirs_root = object_root(Side::Theirs, theirs)?;
    let base_fields =
        if base.trim().is_empty() { Vec::new() } else { fields(base, object_root(Side::Base, base)?, Side::Base)? };
    let ours_fields = fields(ours, ours_root, Side::Ours)?;
    let theirs_fields = fields(theirs, theirs_root, Side::Theirs)?;
    let style = Style::detect(ours);
    let mut out: (Vec<Splice>, Vec<Conflict>) = (Vec::new(), Vec::new());
    let mut skip: Vec<&str> = Vec::new();
    let mut root_ops: Vec<FieldOp> = Vec::new();

    // `nodes`: matched by name, each node field by field.
    let is_object = |raw: Option<&str>| raw.is_some_and(|r| r.starts_with('{'));
    let (base_nodes, ours_nodes, theirs_nodes) =
        (lookup(&base_fields, "nodes"), lookup(&ours_fields, "nodes"), lookup(&theirs_fields, "nodes"));
    if let (Some(ours_nodes), Some(theirs_nodes)) = (ours_nodes, theirs_nodes)
        && is_object(Some(ours_nodes))
        && is_object(Some(theirs_nodes))
        && (base_nodes.is_none() || is_object(base_nodes))
    {
        skip.push("nodes");
        let start_in = |text: &str, raw: &str| raw.as_ptr() as usize - text.as_ptr() as usize;
        let ours_start = start_in(ours, ours_nodes);
        let theirs_start = start_in(theirs, theirs_nodes);
        let base_node_fields = match base_nodes {
            Some(raw) => fields(base, start_in(base, raw), Side::Base)?,
            None => Vec::new(),
        };
        let ours_node_fields = fields(ours, ours_start, Side::Ours)?;
        let theirs_node_fields = fields(theirs, theirs_start, Side::Theirs)?;
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in ours_node_fields.iter().chain(&theirs_node_fields).chain(&base_node_fields) {
            if !names.contains(&name.as_ref()) {
                names.push(name);
            }
        }
        let mut node_ops = Vec::new();
        for name in names {
            let label = format!("node `{name}`");
            let b = lookup(&base_node_fields, name);
            let o = lookup(&ours_node_fields, name);
            let t = lookup(&theirs_node_fields, name);
            if same(t, b) || same(o, t) {
                continue;
            }
            match (b, o, t) {
                (Some(b), Some(o), Some(t)) => merge_entry(
                    &label,
                    (base, start_in(base, b)),
                    (ours, start_in(ours, o)),
                    (theirs, start_in(theirs, t)),
                    (b, o, t),
                    &style,
                    &mut out,
                )?,
                (None, Some(o), Some(t)) => added_twice(&label, o, t, &mut out.1),
                (_, None, Some(t)) if same(o, b) => node_ops.push(FieldOp::Set(name.to_owned(), decode(t))),
                (_, Some(_), None) if same(o, b) => node_ops.push(FieldOp::Remove(name.to_owned())),
                (b, o, t) => out.1.push(Conflict {
                    entry: Some(format!(
                        "{label} ({})",
                        if o.is_none() {
                            "deleted on ours, changed on theirs"
                        } else {
                            "changed on ours, deleted on theirs"
                        }
                    )),
                    field: None,
                    base: b.map(decode),
                    ours: o.map(decode),
                    theirs: t.map(decode),
                }),
            }
        }
        if !node_ops.is_empty() {
            out.0.extend(
                edit::edit_object(ours, ours_start, &node_ops, &style)
                    .map_err(|e| MergeError::syntax(Side::Ours, ours, e))?,
            );
        }
    }

    // `current_nodes`: a set of names.
    if let (Some(o), Some(t)) = (lookup(&ours_fields, "current_nodes"), lookup(&theirs_fields, "current_nodes"))
        && let Some(merged) = merge_name_set(lookup(&base_fields, "current_nodes"), o, t)
    {
        skip.push("current_nodes");
        if serde_json::from_str::<Vec<String>>(o).ok().as_ref() != Some(&merged) {
            root_ops.push(FieldOp::Set("current_nodes".into(), Value::from(merged)));
        }
    }

    let (ops, conflicts) = merge_fields(&base_fields, &ours_fields, &theirs_fields, &skip);
    root_ops.extend(ops);
    out.1.extend(conflicts.into_iter().map(|c| c.into_conflict(None)));
    if !root_ops.is_empty() {
        out.0.extend(
            edit::edit_object(ours, ours_root, &root_ops, &style)
                .map_err(|e| MergeError::syntax(Side::Ours, ours, e))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(kind: FileKind, base: &str, ours: &str, theirs: &str) -> (String, Vec<Conflict>) {
        let result = merge(kind, base, ours, theirs).unwrap();
        let text = result.text.unwrap_or_else(|| ours.to_owned());
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"));
        (text, result.conflicts)
    }

    const BASE: &str = "{\n  \"tasks\": [\n    {\"id\": \"A\", \"status\": \"pending\", \"x\": 1},\n    {\"id\": \"B\", \"status\": \"pending\"},\n    {\"id\": \"C\", \"status\": \"pending\"}\n  ]\n}\n";

    #[test]
    fn disjoint_changes_meet_and_nothing_else_moves() {
        let ours = BASE.replace("\"id\": \"A\", \"status\": \"pending\"", "\"id\": \"A\", \"status\": \"done\"");
        let theirs = BASE.replace("\"id\": \"B\", \"status\": \"pending\"", "\"id\": \"B\", \"status\": \"failed\"");
        let (text, conflicts) = merged(FileKind::Tasks, BASE, &ours, &theirs);
        assert!(conflicts.is_empty());
        assert_eq!(
            text,
            ours.replace("\"id\": \"B\", \"status\": \"pending\"", "\"id\": \"B\", \"status\": \"failed\"")
        );
    }

    #[test]
    fn both_sides_change_different_fields_of_one_task() {
        let ours = BASE.replace("\"status\": \"pending\", \"x\": 1", "\"status\": \"done\", \"x\": 1");
        let theirs =
            BASE.replace("\"status\": \"pending\", \"x\": 1", "\"status\": \"pending\", \"x\": 2, \"y\": true");
        let (text, conflicts) = merged(FileKind::Tasks, BASE, &ours, &theirs);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert!(text.contains("{\"id\": \"A\", \"status\": \"done\", \"x\": 2, \"y\": true}"), "{text}");
    }

    #[test]
    fn the_same_field_changed_twice_is_a_conflict_that_keeps_ours() {
        let ours = BASE.replace("\"status\": \"pending\", \"x\": 1", "\"status\": \"done\", \"x\": 1");
        let theirs = BASE.replace("\"status\": \"pending\", \"x\": 1", "\"status\": \"failed\", \"x\": 1");
        let (text, conflicts) = merged(FileKind::Tasks, BASE, &ours, &theirs);
        assert_eq!(text, ours);
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflicts[0].to_string(),
            "task `A`, field `status`: base \"pending\", ours \"done\", theirs \"failed\""
        );
    }

    #[test]
    fn additions_deletions_and_their_conflicts() {
        let ours = BASE.replace(
            "    {\"id\": \"C\", \"status\": \"pending\"}\n",
            "    {\"id\": \"C\", \"status\": \"done\"},\n    {\"id\": \"D\", \"status\": \"pending\"}\n",
        );
        // Theirs deletes B (unchanged on ours: goes) and C (changed on ours: conflict), adds D
        // differently (conflict) and E.
        let theirs = "{\n  \"tasks\": [\n    {\"id\": \"A\", \"status\": \"pending\", \"x\": 1},\n    {\"id\": \"D\", \"status\": \"blocked\"},\n    {\"id\": \"E\", \"status\": \"pending\"}\n  ]\n}\n";
        let (text, conflicts) = merged(FileKind::Tasks, BASE, &ours, theirs);
        assert_eq!(
            text,
            "{\n  \"tasks\": [\n    {\"id\": \"A\", \"status\": \"pending\", \"x\": 1},\n    {\"id\": \"C\", \"status\": \"done\"},\n    {\"id\": \"D\", \"status\": \"pending\"},\n    {\"id\": \"E\", \"status\": \"pending\"}\n  ]\n}\n"
        );
        let shown: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "task `D` (added on both sides), field `status`: base (absent), ours \"pending\", theirs \"blocked\"",
                "task `C` (changed on ours, deleted on theirs): base {\"id\":\"C\",\"status\":\"pending\"}, ours {\"id\":\"C\",\"status\":\"done\"}, theirs (deleted)",
            ]
        );
    }

    #[test]
    fn removing_every_entry_and_adding_one() {
        let base = "[\n  {\"id\": \"A\"}\n]";
        let theirs = "[\n  {\"id\": \"B\"}\n]";
        let (text, conflicts) = merged(FileKind::Tasks, base, base, theirs);
        assert!(conflicts.is_empty());
        assert_eq!(text, "[\n  {\n    \"id\": \"B\"\n  }\n]");
        let (text, _) = merged(FileKind::Tasks, base, base, "[]");
        assert_eq!(text, "[]");
    }

    #[test]
    fn state_nodes_and_current_nodes() {
        let base = "{\n  \"workflow\": \"devops\",\n  \"current_nodes\": [\"A\"],\n  \"nodes\": {\n    \"A\": {\"status\": \"pending\"},\n    \"B\": {\"status\": \"pending\"}\n  }\n}\n";
        let ours = base
            .replace("\"A\": {\"status\": \"pending\"}", "\"A\": {\"status\": \"completed\"}")
            .replace("[\"A\"]", "[\"B\"]");
        let theirs = base
            .replace(
                "\"B\": {\"status\": \"pending\"}",
                "\"B\": {\"status\": \"pending\", \"note\": 1},\n    \"C\": {\"status\": \"pending\"}",
            )
            .replace("[\"A\"]", "[\"A\", \"C\"]");
        let (text, conflicts) = merged(FileKind::State, base, &ours, &theirs);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["current_nodes"], serde_json::json!(["B", "C"]));
        assert_eq!(value["nodes"]["A"]["status"], "completed");
        assert_eq!(value["nodes"]["B"]["note"], 1);
        assert_eq!(value["nodes"]["C"]["status"], "pending");
        assert!(text.starts_with("{\n  \"workflow\": \"devops\",\n  \"current_nodes\": [\n    \"B\",\n    \"C\"\n  ],\n  \"nodes\": {\n    \"A\": {\"status\": \"completed\"},\n    \"B\": {\"status\": \"pending\", \"note\": 1},\n"), "{text}");
    }

    #[test]
    fn kinds_by_path_and_shape() {
        assert_eq!(FileKind::from_path("docs/workflow/tasks.json"), Some(FileKind::Tasks));
        assert_eq!(FileKind::from_path("x/state.json"), Some(FileKind::State));
        assert_eq!(FileKind::detect("[]"), Some(FileKind::Tasks));
        assert_eq!(FileKind::detect("{\"nodes\": {}}"), Some(FileKind::State));
        assert_eq!(FileKind::detect("{\"a\": 1}"), None);
    }

    #[test]
    fn broken_input_is_an_error_naming_the_side_and_place() {
        let error = merge(FileKind::Tasks, "[]", "[]", "[\n  {\"id\": }\n]").unwrap_err();
        assert_eq!(error.to_string(), "theirs version, line 2 column 10: invalid JSON: expected a value, found `}`");
        let error = merge(FileKind::Tasks, "[]", "[{\"id\": \"A\"}, {\"id\": \"A\"}]", "[]").unwrap_err();
        assert!(error.to_string().contains("the id `A` is used by more than one task"), "{error}");
        let lone = "[{\"id\": \"A\", \"t\": \"\\ud800\"}]";
        let error = merge(FileKind::Tasks, "[]", "[]", lone).unwrap_err();
        assert!(error.to_string().starts_with("theirs version, line 1 column"), "{error}");
        assert_eq!(
            error.to_string(),
            "theirs version, line 1 column 20: invalid JSON: lone UTF-16 surrogate in a \\u escape (a high surrogate without a low one)"
        );
        let paired = "[{\"id\": \"A\", \"t\": \"\\\\ud800 \\ud83d\\ude80\"}]";
        assert!(merge(FileKind::Tasks, "[]", paired, "[]").is_ok());
        let low = "[{\"id\": \"A\", \"t\": \"x\\udc00\"}]";
        assert!(
            merge(FileKind::Tasks, "[]", low, "[]")
                .unwrap_err()
                .to_string()
                .contains("a low surrogate without a high one")
        );
    }

    /// One 20 MB field in conflict printed 40 MB of stderr: both sides' values whole.
    #[test]
    fn a_conflict_line_caps_each_value_and_says_how_long_it_was() {
        let conflict = Conflict {
            entry: Some("task `T-1`".to_owned()),
            field: Some("notes".to_owned()),
            base: Some(Value::String("short".to_owned())),
            ours: Some(Value::String("é".repeat(1_000_000))),
            theirs: Some(Value::String("b".repeat(1_000_000))),
        };
        let line = conflict.to_string();
        assert!(line.starts_with("task `T-1`, field `notes`: base \"short\", ours \"éé"), "{}", &line[..80]);
        assert!(line.contains("… (1000002 characters in all), theirs \"bb"), "{}", &line[..80]);
        assert!(line.ends_with("… (1000002 characters in all)"), "{line:.80}");
        assert!(line.chars().count() < 2 * SHOWN_VALUE_CHARS + 200, "{}", line.len());
    }
}
