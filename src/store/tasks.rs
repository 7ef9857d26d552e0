//! `tasks.json` seen through spans: find entries, read their key fields, edit and append.
//!
//! The file is `{"tasks": [...]}` or a bare array, kept in whichever form it has. Reading the
//! tasks this runner owns walks every entry's members once and decodes only the few fields a
//! filter needs ([`TaskHead`]); no entry is turned into a `serde_json::Value` unless asked.

use std::borrow::Cow;

use serde_json::Value;

use super::edit::{self, FieldOp, Splice, Style};
use super::json::{self, Member, Span, SyntaxError};

/// Where the task array is and how the file wraps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub array_start: usize,
    pub wrapped: bool,
}

impl Layout {
    /// The JSON Pointer of the entry at `index`.
    pub fn pointer(&self, index: usize) -> String {
        if self.wrapped { format!("/tasks/{index}") } else { format!("/{index}") }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    Syntax(SyntaxError),
    /// The file is JSON but not a task list.
    Shape(String),
}

impl From<SyntaxError> for LayoutError {
    fn from(error: SyntaxError) -> Self {
        LayoutError::Syntax(error)
    }
}

/// The fields of one entry that filters and lookups need, borrowed from the text.
#[derive(Debug, Clone, Default)]
pub struct TaskHead<'t> {
    pub index: usize,
    pub span: Span,
    pub id: Option<Cow<'t, str>>,
    pub agent: Option<Cow<'t, str>>,
    pub kind: Option<Cow<'t, str>>,
    pub status: Option<Cow<'t, str>>,
}

impl TaskHead<'_> {
    /// The whole entry as a value (allocates; use for the entries you keep).
    pub fn value(&self, text: &str) -> Value {
        serde_json::from_str(self.span.of(text)).expect("the scanner checked this span")
    }
}

fn string_value<'t>(text: &'t str, member: &Member) -> Option<Cow<'t, str>> {
    let raw = member.value.of(text);
    raw.starts_with('"').then(|| json::decode_string(raw))
}

/// Every entry's head, in order, once the whole file is known to be a valid task list.
pub fn heads(text: &str) -> Result<(Layout, Vec<TaskHead<'_>>), LayoutError> {
    let mut out = Vec::new();
    let layout = scan(text, |head| out.push(head))?;
    Ok((layout, out))
}

fn syntax(offset: usize, message: &str) -> SyntaxError {
    SyntaxError { offset, message: message.to_owned() }
}

/// One pass over the whole file: checks its syntax and shape and calls `visit` with each
/// entry's head. Heads arrive before the end of the file is checked, so act on them only
/// once this returns `Ok`.
pub fn scan<'t>(text: &'t str, mut visit: impl FnMut(TaskHead<'t>)) -> Result<Layout, LayoutError> {
    let bytes = text.as_bytes();
    let start = json::skip_ws(text, 0);
    match bytes.get(start) {
        Some(b'[') => {
            let end = scan_array(text, start, &mut visit)?;
            check_trailing(text, end)?;
            Ok(Layout { array_start: start, wrapped: false })
        }
        Some(b'{') => {
            let mut array_start = None;
            let mut pos = json::skip_ws(text, start + 1);
            if bytes.get(pos) == Some(&b'}') {
                pos += 1;
            } else {
                loop {
                    let key_end = json::string_end(text, pos)?;
                    let colon = json::skip_ws(text, key_end);
                    if bytes.get(colon) != Some(&b':') {
                        return Err(syntax(colon, "expected `:` after the key").into());
                    }
                    let value = json::skip_ws(text, colon + 1);
                    let value_end = if json::decode_string(&text[pos..key_end]) == "tasks" {
                        if bytes.get(value) != Some(&b'[') {
                            json::value_end(text, value)?;
                            return Err(LayoutError::Shape("`tasks` must be an array".to_owned()));
                        }
                        if array_start.is_some() {
                            return Err(LayoutError::Shape("the `tasks` key appears twice".to_owned()));
                        }
                        array_start = Some(value);
                        scan_array(text, value, &mut visit)?
                    } else {
                        json::value_end(text, value)?
                    };
                    pos = json::skip_ws(text, value_end);
                    match bytes.get(pos) {
                        Some(b',') => pos = json::skip_ws(text, pos + 1),
                        Some(b'}') => {
                            pos += 1;
                            break;
                        }
                        _ => return Err(syntax(pos, "expected `,` or `}`").into()),
                    }
                }
            }
            check_trailing(text, pos)?;
            let array_start = array_start
                .ok_or_else(|| LayoutError::Shape("the top-level object has no `tasks` array".to_owned()))?;
            Ok(Layout { array_start, wrapped: true })
        }
        _ => {
            json::root(text)?;
            Err(LayoutError::Shape("the top level must be an object with a `tasks` array, or an array".to_owned()))
        }
    }
}

fn check_trailing(text: &str, end: usize) -> Result<(), SyntaxError> {
    let rest = json::skip_ws(text, end);
    if rest == text.len() { Ok(()) } else { Err(syntax(rest, "expected end of file after the JSON value")) }
}

/// Walks the array at `start` in one pass, entry members included; returns its end.
fn scan_array<'t>(text: &'t str, start: usize, visit: &mut impl FnMut(TaskHead<'t>)) -> Result<usize, SyntaxError> {
    let bytes = text.as_bytes();
    let mut pos = json::skip_ws(text, start + 1);
    if bytes.get(pos) == Some(&b']') {
        return Ok(pos + 1);
    }
    let mut index = 0;
    loop {
        let mut head = TaskHead { index, ..TaskHead::default() };
        let end = if bytes.get(pos) == Some(&b'{') {
            let mut members = json::Members::new(text, pos);
            for member in &mut members {
                let member = member?;
                let raw_key = member.key.of(text);
                let slot = match &raw_key[1..raw_key.len() - 1] {
                    "id" => &mut head.id,
                    "agent" => &mut head.agent,
                    "type" => &mut head.kind,
                    "status" => &mut head.status,
                    _ => continue,
                };
                *slot = string_value(text, &member);
            }
            members.end
        } else {
            json::value_end(text, pos)?
        };
        head.span = Span { start: pos, end };
        visit(head);
        pos = json::skip_ws(text, end);
        match bytes.get(pos) {
            Some(b',') => pos = json::skip_ws(text, pos + 1),
            Some(b']') => return Ok(pos + 1),
            _ => return Err(syntax(pos, "expected `,` or `]` in the task list")),
        }
        index += 1;
    }
}

/// Edits to apply to `tasks.json` in one write.
#[derive(Debug, Clone, Default)]
pub struct TaskEdits {
    /// Field changes per task id.
    pub updates: Vec<(String, Vec<FieldOp>)>,
    /// New entries, appended in order.
    pub appends: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("no task has the id `{0}`")]
    NoSuchTask(String),
    #[error("the id `{id}` is used by more than one task (entries {first} and {second}); fix tasks.json first")]
    DuplicateId { id: String, first: usize, second: usize },
    #[error("entry {index} (id `{id}`) is not an object")]
    NotAnObject { id: String, index: usize },
    #[error("{0}")]
    Layout(String),
}

/// Finds the single entry with `id`.
pub fn find<'t>(heads: &'t [TaskHead<'t>], id: &str) -> Result<&'t TaskHead<'t>, EditError> {
    let mut found = heads.iter().filter(|h| h.id.as_deref() == Some(id));
    let first = found.next().ok_or_else(|| EditError::NoSuchTask(id.to_owned()))?;
    if let Some(second) = found.next() {
        return Err(EditError::DuplicateId { id: id.to_owned(), first: first.index, second: second.index });
    }
    Ok(first)
}

/// The heads of the entries whose id is one of `ids` (every occurrence, so duplicates show),
/// in one pass that keeps nothing else.
pub fn scan_ids<'t>(text: &'t str, ids: &[&str]) -> Result<(Layout, Vec<TaskHead<'t>>), LayoutError> {
    let mut found = Vec::new();
    let layout = scan(text, |head| {
        if head.id.as_deref().is_some_and(|id| ids.contains(&id)) {
            found.push(head);
        }
    })?;
    Ok((layout, found))
}

fn layout_error(error: LayoutError) -> EditError {
    match error {
        LayoutError::Syntax(e) => EditError::Layout(e.to_string()),
        LayoutError::Shape(s) => EditError::Layout(s),
    }
}

/// The splices that apply `edits` to the text of `tasks.json`, given the layout and the heads
/// of (at least) the edited entries.
pub fn splices_for(
    text: &str,
    layout: Layout,
    heads: &[TaskHead<'_>],
    edits: &TaskEdits,
) -> Result<Vec<Splice>, EditError> {
    let style = Style::detect(text);
    let mut splices: Vec<Splice> = Vec::new();
    for (id, ops) in &edits.updates {
        let head = find(heads, id)?;
        if text.as_bytes()[head.span.start] != b'{' {
            return Err(EditError::NotAnObject { id: id.clone(), index: head.index });
        }
        splices.extend(
            edit::edit_object(text, head.span.start, ops, &style).map_err(|e| EditError::Layout(e.to_string()))?,
        );
    }
    splices.extend(
        edit::append_elements(text, layout.array_start, &edits.appends, &style)
            .map_err(|e| EditError::Layout(e.to_string()))?,
    );
    Ok(splices)
}

/// The splices that apply `edits`, in one scan of the file.
pub fn splices(text: &str, edits: &TaskEdits) -> Result<Vec<Splice>, EditError> {
    let ids: Vec<&str> = edits.updates.iter().map(|(id, _)| id.as_str()).collect();
    let (layout, heads) = scan_ids(text, &ids).map_err(layout_error)?;
    splices_for(text, layout, &heads, edits)
}

/// Applies `edits` to the text of `tasks.json`, touching nothing else.
pub fn apply(text: &str, edits: &TaskEdits) -> Result<String, EditError> {
    Ok(edit::apply(text, splices(text, edits)?))
}

/// A fresh `tasks.json` holding `tasks`, in the wrapped form with two-space indentation.
pub fn new_file(tasks: &[Value]) -> String {
    let mut text =
        serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks })).expect("a Value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = r#"{
  "version": 3,
  "tasks": [
    {"id": "A", "agent": "DevOps-Engineer", "type": "deployment_staging", "status": "pending"},
    {
        "status":"done", "id":"B",
        "agent": "Backend", "x": {"nested": ["ok"]}
    }
  ]
}
"#;

    #[test]
    fn heads_read_key_fields_only() {
        let (layout, heads) = heads(FILE).unwrap();
        assert!(layout.wrapped);
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1].id.as_deref(), Some("B"));
        assert_eq!(heads[1].kind, None);
        assert_eq!(heads[0].value(FILE)["type"], "deployment_staging");
    }

    #[test]
    fn update_and_append_touch_nothing_else() {
        let edits = TaskEdits {
            updates: vec![("B".into(), vec![FieldOp::Set("status".into(), json!("failed"))])],
            appends: vec![json!({"id": "C"})],
        };
        let out = apply(FILE, &edits).unwrap();
        let expected = FILE.replace("\"status\":\"done\"", "\"status\":\"failed\"").replace(
            "\"x\": {\"nested\": [\"ok\"]}\n    }",
            "\"x\": {\"nested\": [\"ok\"]}\n    },\n    {\n        \"id\": \"C\"\n    }",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn duplicate_and_missing_ids_are_refused() {
        let text = r#"[{"id": "A"}, {"id": "A"}]"#;
        let edits = TaskEdits { updates: vec![("A".into(), vec![])], appends: vec![] };
        assert!(matches!(apply(text, &edits), Err(EditError::DuplicateId { .. })));
        let edits = TaskEdits { updates: vec![("Z".into(), vec![])], appends: vec![] };
        assert_eq!(apply(text, &edits), Err(EditError::NoSuchTask("Z".into())));
    }
}
