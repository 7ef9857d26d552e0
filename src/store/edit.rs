//! Splicing edits into JSON text so that every byte outside them stays as it was.
//!
//! An edit is a list of [`Splice`]s computed against the original text: replace a member's
//! value, remove a member, add members after the last one, add elements before an array's
//! closing bracket. New text follows the surrounding style (indentation, line ending, the
//! `": "` separator, inline or one member per line), so `git diff` shows only the edit.

use serde_json::Value;

use super::json::{self, Member, Span, SyntaxError};

/// A change to one field of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldOp {
    Set(String, Value),
    Remove(String),
}

impl FieldOp {
    /// `ops` applied in order to a decoded object: what the splices make of its text.
    pub fn apply_all(ops: &[FieldOp], map: &mut serde_json::Map<String, Value>) {
        for op in ops {
            match op {
                FieldOp::Set(key, value) => {
                    map.insert(key.clone(), value.clone());
                }
                FieldOp::Remove(key) => {
                    map.shift_remove(key);
                }
            }
        }
    }
}

/// Replace `text[start..end]` with `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub start: usize,
    pub end: usize,
    pub with: String,
}

/// How the file is written: its line ending and its indentation unit.
#[derive(Debug, Clone)]
pub struct Style {
    pub newline: &'static str,
    pub unit: String,
    pub multiline: bool,
}

impl Style {
    /// The style of `text`: the line ending of its first line, the indentation of its first
    /// indented line. Both are read from the start of the file, never from the whole of it.
    pub fn detect(text: &str) -> Style {
        let newline = match text.find('\n') {
            Some(at) if text[..at].ends_with('\r') => "\r\n",
            _ => "\n",
        };
        let unit = text.lines().skip(1).map(leading_ws).find(|ws| !ws.is_empty()).unwrap_or("  ").to_owned();
        Style { newline, unit, multiline: text.trim().contains('\n') }
    }
}

fn leading_ws(line: &str) -> &str {
    let end = line.find(|c| c != ' ' && c != '\t').unwrap_or(line.len());
    &line[..end]
}

/// The indentation of the line that holds byte `pos`.
fn line_indent(text: &str, pos: usize) -> &str {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    leading_ws(&text[start..])
}

/// The whitespace after the last newline in `gap`, if `gap` has a newline.
fn indent_after_newline(gap: &str) -> Option<&str> {
    let indent = &gap[gap.rfind('\n')? + 1..];
    indent.chars().all(|c| c == ' ' || c == '\t').then_some(indent)
}

/// `inner` minus `outer` when `inner` extends it, else the file's unit.
fn unit_between<'a>(inner: &'a str, outer: &str, style: &'a Style) -> &'a str {
    match inner.strip_prefix(outer) {
        Some(unit) if !unit.is_empty() => unit,
        _ => &style.unit,
    }
}

/// Renders a value to sit at `indent`: pretty with `unit` when multi-line, compact inline.
pub fn render(value: &Value, multiline: bool, unit: &str, indent: &str, newline: &str) -> String {
    if !multiline
        || !matches!(value, Value::Object(m) if !m.is_empty()) && !matches!(value, Value::Array(a) if !a.is_empty())
    {
        return serde_json::to_string(value).expect("a Value always serializes");
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("a Value always serializes");
    let pretty = String::from_utf8(out).expect("serde_json writes UTF-8");
    // JSON strings cannot hold a raw newline, so every newline here is layout.
    pretty.replace('\n', &format!("{newline}{indent}"))
}

fn key_json(key: &str) -> String {
    serde_json::to_string(key).expect("a string always serializes")
}

/// The splices that apply `ops` to the object starting at `obj_start`.
pub fn edit_object(text: &str, obj_start: usize, ops: &[FieldOp], style: &Style) -> Result<Vec<Splice>, SyntaxError> {
    let (members, end) = json::object_members(text, obj_start)?;
    let close = end - 1;
    let obj_indent = line_indent(text, obj_start);
    let first_gap = members.first().map(|m| &text[obj_start + 1..m.key.start]);
    let multiline = first_gap.map_or(style.multiline, |gap| gap.contains('\n'));
    let member_indent: String = match first_gap.and_then(indent_after_newline) {
        Some(indent) => indent.to_owned(),
        None => format!("{obj_indent}{}", style.unit),
    };
    let unit = unit_between(&member_indent, obj_indent, style).to_owned();
    let separator = members
        .first()
        .map(|m| &text[m.key.end..m.value.start])
        .filter(|s| !s.contains('\n'))
        .unwrap_or(": ")
        .to_owned();
    let inline_join = match members.get(..2) {
        Some([a, b]) => text[a.value.end..b.key.start].to_owned(),
        _ => ", ".to_owned(),
    };

    let last_index_of = |name: &str| members.iter().rposition(|m| m.key_is(text, name));
    let mut removed = vec![false; members.len()];
    let mut splices = Vec::new();
    let mut inserts: Vec<(&str, &Value)> = Vec::new();
    for op in ops {
        match op {
            FieldOp::Set(key, value) => match last_index_of(key) {
                Some(i) => {
                    let member = members[i];
                    // A later op on the same key replaces an earlier one's splice.
                    splices.retain(|s: &Splice| s.start != member.value.start);
                    let current: Option<Value> = serde_json::from_str(member.value.of(text)).ok();
                    if current.as_ref() != Some(value) {
                        let indent = line_indent(text, member.key.start);
                        let with = render(value, multiline, &unit, indent, style.newline);
                        splices.push(Splice { start: member.value.start, end: member.value.end, with });
                    }
                    removed[i] = false;
                }
                None => {
                    inserts.retain(|(k, _)| k != key);
                    inserts.push((key, value));
                }
            },
            FieldOp::Remove(key) => {
                if let Some(i) = last_index_of(key) {
                    removed[i] = true;
                    splices.retain(|s| s.start != members[i].value.start);
                }
                inserts.retain(|(k, _)| k != key);
            }
        }
    }

    let render_member = |(key, value): &(&str, &Value)| {
        format!("{}{separator}{}", key_json(key), render(value, multiline, &unit, &member_indent, style.newline))
    };
    let join = if multiline { format!(",{}{member_indent}", style.newline) } else { inline_join.clone() };

    let kept = removed.iter().filter(|r| !**r).count();
    if kept == 0 && (!members.is_empty() || !inserts.is_empty()) {
        // Nothing of the old interior survives: write it anew.
        splices.clear();
        let with = if inserts.is_empty() {
            String::new()
        } else if multiline {
            let body = inserts.iter().map(render_member).collect::<Vec<_>>().join(&join);
            format!("{nl}{member_indent}{body}{nl}{obj_indent}", nl = style.newline)
        } else {
            inserts.iter().map(render_member).collect::<Vec<_>>().join(&inline_join)
        };
        splices.push(Splice { start: obj_start + 1, end: close, with });
        return Ok(splices);
    }

    splices.extend(removal_splices(&members, &removed));
    if !inserts.is_empty() {
        let last = members.last().expect("kept > 0").value.end;
        let mut with = String::new();
        for insert in &inserts {
            with.push_str(&join);
            with.push_str(&render_member(insert));
        }
        splices.push(Splice { start: last, end: last, with });
    }
    Ok(splices)
}

/// Removes members so that the commas and line breaks of the rest stay balanced.
fn removal_splices(members: &[Member], removed: &[bool]) -> Vec<Splice> {
    let mut splices = Vec::new();
    let first_kept = removed.iter().position(|r| !r).unwrap_or(members.len());
    if first_kept > 0 && first_kept < members.len() {
        // A leading run: cut from the first key to the first kept key.
        splices.push(Splice { start: members[0].key.start, end: members[first_kept].key.start, with: String::new() });
    }
    for i in first_kept + 1..members.len() {
        if removed[i] {
            // Cut from the end of the previous value, taking this member's comma with it.
            splices.push(Splice { start: members[i - 1].value.end, end: members[i].value.end, with: String::new() });
        }
    }
    splices
}

/// The splices that add `values` at the end of the array starting at `array_start`.
pub fn append_elements(
    text: &str,
    array_start: usize,
    values: &[Value],
    style: &Style,
) -> Result<Vec<Splice>, SyntaxError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    Ok(append_elements_in(text, array_start, &ArrayShape::of(text, array_start)?, values, style))
}

/// What appending to an array needs to know of it: its first, second and last elements and
/// where it ends. A scan that walked the array already has it ([`ArrayShape::note`]), so an
/// append does not walk the array again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrayShape {
    pub first: Option<Span>,
    pub second: Option<Span>,
    pub last: Option<Span>,
    /// Just after the closing `]`.
    pub end: usize,
}

impl ArrayShape {
    /// Walks the array at `array_start`.
    pub fn of(text: &str, array_start: usize) -> Result<ArrayShape, SyntaxError> {
        let mut shape = ArrayShape::default();
        let mut elements = json::Elements::new(text, array_start);
        for span in &mut elements {
            shape.note(span?);
        }
        shape.end = elements.end;
        Ok(shape)
    }

    /// Takes in the next element, in order.
    pub fn note(&mut self, span: Span) {
        match (self.first, self.second) {
            (None, _) => self.first = Some(span),
            (Some(_), None) => self.second = Some(span),
            _ => {}
        }
        self.last = Some(span);
    }

    /// This shape followed by `later`, the shape of the rest of the same array.
    pub fn then(self, later: ArrayShape) -> ArrayShape {
        let mut joined = self;
        for span in [later.first, later.second].into_iter().flatten() {
            if joined.second.is_none() {
                joined.note(span);
            }
        }
        if later.last.is_some() {
            joined.last = later.last;
        }
        joined.end = later.end.max(self.end);
        joined
    }
}

/// [`append_elements`] into the array at `array_start` whose shape is known.
pub fn append_elements_in(
    text: &str,
    array_start: usize,
    shape: &ArrayShape,
    values: &[Value],
    style: &Style,
) -> Vec<Splice> {
    if values.is_empty() {
        return Vec::new();
    }
    let spans: Vec<Span> = [shape.first, shape.second].into_iter().flatten().collect();
    let close = shape.end - 1;
    let array_indent = line_indent(text, array_start);
    let first_gap = spans.first().map(|s| &text[array_start + 1..s.start]);
    let multiline = first_gap.map_or(style.multiline, |gap| gap.contains('\n'));
    let element_indent = match first_gap.and_then(indent_after_newline) {
        Some(indent) => indent.to_owned(),
        None => format!("{array_indent}{}", style.unit),
    };
    // The unit inside an element: learned from the last element when it is a multi-line object.
    let inner_unit = shape
        .last
        .filter(|s| text.as_bytes()[s.start] == b'{')
        .and_then(|s| json::object_members(text, s.start).ok())
        .zip(shape.last)
        .and_then(|((members, _), last)| members.first().map(|m| &text[last.start..m.key.start]))
        .and_then(|gap| indent_after_newline(gap).map(str::to_owned))
        .map(|member_indent| unit_between(&member_indent, &element_indent, style).to_owned())
        .unwrap_or_else(|| style.unit.clone());
    let inline_join = match spans.get(..2) {
        Some([a, b]) => text[a.end..b.start].to_owned(),
        _ => ", ".to_owned(),
    };
    let rendered: Vec<String> =
        values.iter().map(|v| render(v, multiline, &inner_unit, &element_indent, style.newline)).collect();
    let join = if multiline { format!(",{}{element_indent}", style.newline) } else { inline_join };
    match shape.last {
        Some(last) => {
            let with = rendered.iter().map(|r| format!("{join}{r}")).collect();
            vec![Splice { start: last.end, end: last.end, with }]
        }
        None => {
            let body = rendered.join(&join);
            let with = if multiline {
                format!("{nl}{element_indent}{body}{nl}{array_indent}", nl = style.newline)
            } else {
                body
            };
            vec![Splice { start: array_start + 1, end: close, with }]
        }
    }
}

/// Writes `text` with `splices` applied to `out`, piece by piece, without building the result
/// in memory first.
pub fn write_spliced(text: &str, splices: &[Splice], out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut order: Vec<&Splice> = splices.iter().collect();
    order.sort_by_key(|s| (s.start, s.end));
    let mut at = 0;
    for splice in order {
        debug_assert!(splice.start >= at, "overlapping splices");
        out.write_all(&text.as_bytes()[at..splice.start])?;
        out.write_all(splice.with.as_bytes())?;
        at = splice.end;
    }
    out.write_all(&text.as_bytes()[at..])
}

/// Applies non-overlapping splices to `text`.
pub fn apply(text: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| (s.start, s.end));
    let mut out = String::with_capacity(text.len() + splices.iter().map(|s| s.with.len()).sum::<usize>());
    let mut at = 0;
    for splice in splices {
        debug_assert!(splice.start >= at, "overlapping splices");
        out.push_str(&text[at..splice.start]);
        out.push_str(&splice.with);
        at = splice.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn edit(text: &str, ops: &[FieldOp]) -> String {
        let style = Style::detect(text);
        let start = json::root(text).unwrap().start;
        let out = apply(text, edit_object(text, start, ops, &style).unwrap());
        assert!(json::root(&out).is_ok(), "edit produced invalid JSON:\n{out}");
        out
    }

    /// Two ops on one existing key made two splices over the same bytes: a debug build
    /// panicked, a release build wrote both values into the file.
    #[test]
    fn a_key_set_twice_is_set_once() {
        let text = "{\"a\": 1, \"b\": 2}";
        let twice = [FieldOp::Set("a".into(), json!(5)), FieldOp::Set("a".into(), json!(6))];
        assert_eq!(edit(text, &twice), "{\"a\": 6, \"b\": 2}");
        let back = [FieldOp::Set("a".into(), json!(5)), FieldOp::Set("a".into(), json!(1))];
        assert_eq!(edit(text, &back), text);
    }

    fn set(key: &str, value: Value) -> FieldOp {
        FieldOp::Set(key.to_owned(), value)
    }

    #[test]
    fn replaces_only_the_value() {
        let text = "{\n    \"b\":   \"x\",\n  \"a\" : 1 }\n";
        assert_eq!(edit(text, &[set("b", json!("y"))]), "{\n    \"b\":   \"y\",\n  \"a\" : 1 }\n");
    }

    #[test]
    fn unchanged_values_keep_their_bytes() {
        let text = "{\"a\": \"\\u0041\", \"n\": 1.0}";
        assert_eq!(edit(text, &[set("a", json!("A")), set("n", json!(1.0))]), text);
    }

    #[test]
    fn new_members_follow_the_indentation_and_line_ending() {
        let text = "{\r\n\t\"a\": 1\r\n}\r\n";
        let out = edit(text, &[set("b", json!({"c": [1]}))]);
        assert_eq!(out, "{\r\n\t\"a\": 1,\r\n\t\"b\": {\r\n\t\t\"c\": [\r\n\t\t\t1\r\n\t\t]\r\n\t}\r\n}\r\n");
    }

    #[test]
    fn inline_objects_stay_inline() {
        let text = "[{\"a\":1,\"b\":2}]";
        let style = Style::detect(text);
        let out =
            apply(text, edit_object(text, 1, &[set("c", json!(3)), FieldOp::Remove("a".into())], &style).unwrap());
        assert_eq!(out, "[{\"b\":2,\"c\":3}]");
    }

    #[test]
    fn removals_keep_commas_balanced() {
        let text = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3,\n  \"d\": 4\n}";
        let remove = |k: &str| FieldOp::Remove(k.to_owned());
        assert_eq!(edit(text, &[remove("a"), remove("b")]), "{\n  \"c\": 3,\n  \"d\": 4\n}");
        assert_eq!(edit(text, &[remove("b"), remove("c")]), "{\n  \"a\": 1,\n  \"d\": 4\n}");
        assert_eq!(edit(text, &[remove("d")]), "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}");
        assert_eq!(edit(text, &[remove("a"), remove("b"), remove("c"), remove("d")]), "{}");
        assert_eq!(
            edit(text, &[remove("a"), remove("b"), remove("c"), remove("d"), set("e", json!(5))]),
            "{\n  \"e\": 5\n}"
        );
        assert_eq!(
            edit(text, &[remove("d"), set("e", json!(5))]),
            "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3,\n  \"e\": 5\n}"
        );
    }

    #[test]
    fn appends_in_the_arrays_style() {
        let text = "{\"tasks\": [\n    {\n      \"id\": \"A\"\n    }\n  ]\n}";
        let style = Style::detect(text);
        let out = apply(text, append_elements(text, 10, &[json!({"id": "B", "x": [1]})], &style).unwrap());
        assert_eq!(
            out,
            "{\"tasks\": [\n    {\n      \"id\": \"A\"\n    },\n    {\n      \"id\": \"B\",\n      \"x\": [\n        1\n      ]\n    }\n  ]\n}"
        );
        let empty = "{\n  \"tasks\": []\n}";
        let style = Style::detect(empty);
        let out = apply(empty, append_elements(empty, 13, &[json!({"id": "B"})], &style).unwrap());
        assert_eq!(out, "{\n  \"tasks\": [\n    {\n      \"id\": \"B\"\n    }\n  ]\n}");
    }
}
