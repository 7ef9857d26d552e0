//! opsflow's verdict on an agent's outputs: whatever the agent said about itself, an output
//! passes only when it exists, was written during this attempt, reads through the workspace's
//! defensive readers, validates against its schema and has content (no empty document, no
//! `{}`, no placeholder). Each failure is a diagnostic with the file, the place and the rule,
//! as `validate --json` gives them, which the next attempt's prompt carries.

use serde_json::Value;

use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::read;

/// One declared output, resolved for this task.
#[derive(Debug, Clone)]
pub struct Output {
    /// Workspace-relative.
    pub path: String,
    pub schema: Option<String>,
}

/// What an output held when the run's first attempt started: its digest, `None` when it did
/// not exist.
pub type Before = Option<String>;

/// The digest of a file as the workspace's readers see it (an unreadable file by its problem),
/// `None` when it does not exist.
pub fn fingerprint(ws: &Workspace, path: &str) -> Before {
    match ws.read_text(path) {
        Ok(Some(text)) => Some(crate::sha256::hex(text.as_bytes())),
        Ok(None) => None,
        Err(problem) => Some(format!("unreadable: {}", problem.message)),
    }
}

/// Every problem of the outputs after an attempt that started at `attempt_started`; empty
/// when they all pass. An output counts as written in this run when it differs from what it
/// held before the first attempt, or was written (its modification time) since this attempt
/// started: a file left from an earlier release does not pass for this one.
pub fn check(ws: &Workspace, outputs: &[(Output, Before)], attempt_started: std::time::SystemTime) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (output, before) in outputs {
        let touched = ws
            .inside(&output.path)
            .ok()
            .and_then(|path| std::fs::symlink_metadata(path).ok())
            .and_then(|meta| meta.modified().ok())
            .is_some_and(|modified| modified >= attempt_started);
        problems.extend(check_one(ws, output, before.as_deref().filter(|_| !touched)));
    }
    problems
}

fn check_one(ws: &Workspace, output: &Output, before: Option<&str>) -> Vec<Diagnostic> {
    let path = output.path.as_str();
    let output_problem = |rule: &str, message: String| Diagnostic::new(path, Kind::Output, message).rule(rule);
    let text = match ws.read_text(path) {
        Ok(Some(text)) => text,
        Ok(None) => {
            return vec![output_problem("output.missing", "was not written: the node declares it as an output".into())];
        }
        Err(problem) => return vec![problem],
    };
    if before == Some(crate::sha256::hex(text.as_bytes()).as_str()) {
        return vec![output_problem(
            "output.unchanged",
            "was not written in this run: it is the same as before the first attempt started".into(),
        )];
    }
    if path.ends_with(".json") {
        let value = match read::parse_json(path, &text) {
            Ok(value) => value,
            Err(problem) => return vec![problem],
        };
        if let Some(schema) = &output.schema {
            let found: Vec<Diagnostic> =
                ws.schemas.validate_by_file(schema, path, &value).into_iter().map(|d| d.locate_in(&text)).collect();
            if !found.is_empty() {
                return found;
            }
        }
        if !has_content(&value) {
            return vec![output_problem("output.empty", format!("holds no content ({})", shape(&value))).at(1, 1)];
        }
        if let Some((pointer, found)) = placeholder_in_json(&value, "") {
            return vec![
                output_problem("output.placeholder", format!("holds a placeholder ({found:?}) instead of content"))
                    .pointer(pointer)
                    .locate_in(&text),
            ];
        }
        return Vec::new();
    }
    if path.ends_with(".md") || path.ends_with(".markdown") {
        let loaded = read::parse_markdown(path, &text);
        let doc = match loaded {
            Ok(doc) => doc,
            Err(problem) => return vec![problem],
        };
        if let Some(schema) = &output.schema {
            let Some(front_matter) = &doc.front_matter else {
                return vec![
                    Diagnostic::new(path, Kind::FrontMatter, "has no front matter; it needs a `---` block at the top")
                        .at(1, 1),
                ];
            };
            let mut found = Vec::new();
            for mut problem in ws.schemas.validate_by_file(schema, path, front_matter) {
                problem.message = format!("front matter: {}", problem.message);
                if problem.line.is_none() {
                    let pointer = problem.pointer.clone().unwrap_or_default();
                    let (line, column) = read::front_matter_position(&text, &pointer)
                        .or_else(|| read::front_matter_position(&text, ""))
                        .unwrap_or((1, 1));
                    problem = problem.at(line, column);
                }
                found.push(problem);
            }
            if !found.is_empty() {
                return found;
            }
        }
        return body_problems(path, &doc.body, doc.body_line);
    }
    body_problems(path, &text, 1)
}

/// A body with no words (only headings, rules and blank lines) is empty; one whose only text
/// is a placeholder is not an output.
fn body_problems(path: &str, body: &str, first_line: usize) -> Vec<Diagnostic> {
    let words: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .map(|(i, line)| (first_line + i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#') && !line.chars().all(|c| "-*_=|: ".contains(c)))
        .collect();
    if words.is_empty() {
        let message = "has no content: the document has no text besides its front matter and headings";
        return vec![Diagnostic::new(path, Kind::Output, message).rule("output.empty").at(first_line, 1)];
    }
    if let Some((line, text)) = words.iter().find(|(_, text)| is_placeholder(text)) {
        return vec![
            Diagnostic::new(path, Kind::Output, format!("holds a placeholder ({text:?}) instead of content"))
                .rule("output.placeholder")
                .at(*line, 1),
        ];
    }
    Vec::new()
}

/// Text that stands for content still to be written: `TODO`, `TBD`, `FIXME`, `placeholder`,
/// `lorem ipsum`, `...`, `<fill in>`, alone on its line (a list marker or a trailing colon
/// allowed), or a line that starts with `TODO:`.
fn is_placeholder(text: &str) -> bool {
    let stripped = text.trim_start_matches(['-', '*', '>', ' ']).trim().trim_end_matches(':').trim();
    let lower = stripped.to_lowercase();
    let lower = lower.trim_matches(['[', ']', '(', ')', '<', '>', '`', '*', '_']);
    matches!(lower, "todo" | "tbd" | "fixme" | "placeholder" | "..." | "…" | "fill in" | "fill me in" | "n/a")
        || lower.starts_with("lorem ipsum")
        || stripped.starts_with("TODO:")
        || stripped.starts_with("TODO ")
        || stripped.starts_with("TBD:")
}

fn has_content(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.trim().is_empty(),
        Value::Array(list) => list.iter().any(has_content),
        Value::Object(map) => map.values().any(has_content),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Object(map) if map.is_empty() => "`{}`",
        Value::Array(list) if list.is_empty() => "`[]`",
        Value::Object(_) => "an object with only empty values",
        Value::Array(_) => "a list with only empty values",
        _ => "an empty value",
    }
}

fn placeholder_in_json(value: &Value, pointer: &str) -> Option<(String, String)> {
    match value {
        Value::String(text) if is_placeholder(text.trim()) => Some((pointer.to_owned(), text.clone())),
        Value::Array(list) => {
            list.iter().enumerate().find_map(|(i, v)| placeholder_in_json(v, &format!("{pointer}/{i}")))
        }
        Value::Object(map) => map.iter().find_map(|(key, v)| {
            placeholder_in_json(v, &format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_and_real_text_is_not() {
        for text in ["TODO", "- TBD", "TODO: write the report", "[placeholder]", "...", "Lorem ipsum dolor", "FIXME:"] {
            assert!(is_placeholder(text), "{text}");
        }
        for text in ["Verdict: approved", "All 24 unit tests pass", "todo list reviewed", "Details below:"] {
            assert!(!is_placeholder(text), "{text}");
        }
    }

    #[test]
    fn an_empty_body_or_object_has_no_content() {
        assert!(!has_content(&serde_json::json!({})));
        assert!(!has_content(&serde_json::json!({"summary": "", "items": []})));
        assert!(has_content(&serde_json::json!({"passed": 0})));
        let problems = body_problems("QA/r.md", "\n# QA Report\n\n---\n", 5);
        assert_eq!(problems[0].rule.as_deref(), Some("output.empty"));
        assert_eq!(problems[0].line, Some(5));
        let problems = body_problems("QA/r.md", "# QA Report\n\nTODO\n", 3);
        assert_eq!((problems[0].rule.as_deref(), problems[0].line), (Some("output.placeholder"), Some(5)));
        assert!(body_problems("QA/r.md", "# QA Report\n\nAll suites pass.\n", 3).is_empty());
    }

    #[test]
    fn a_placeholder_value_in_json_is_pointed_at() {
        let value = serde_json::json!({"summary": "ok", "results": [{"name": "unit", "notes": "TBD"}]});
        assert_eq!(placeholder_in_json(&value, ""), Some(("/results/0/notes".into(), "TBD".into())));
    }
}
