//! beads' issue list (`.beads/issues.jsonl`, `paths.beads`): one JSON object a line, as
//! beads exports its issues. opsflow reads it, never writes it, and only for what a task's
//! `depends_on` names: an issue id there waits until beads says `closed`.
//!
//! The file belongs to other agents, so it is read leniently: a line that is not JSON, or not
//! an issue, is a problem at its line number and the other lines still count; fields beads
//! writes in another shape than expected (`priority` as a string, a dependency on an id the
//! file does not hold) are warnings. Reading goes through [`Workspace::read_text`] like every
//! workflow file.

use std::collections::HashMap;

use serde_json::Value;

use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind, excerpt_value};
use crate::workspace::read;

/// The status of a beads issue that counts as finished.
pub const CLOSED: &str = "closed";

/// What opsflow reads of one beads issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub id: String,
    pub title: String,
    /// As written; beads leaves it out for `open`, so a missing status reads as `open`.
    pub status: String,
    /// beads' integer priority (0 is the most urgent), when it is one.
    pub priority: Option<i64>,
    pub issue_type: Option<String>,
    pub assignee: Option<String>,
    /// The one-based line of the file.
    pub line: usize,
}

impl Issue {
    pub fn is_closed(&self) -> bool {
        self.status == CLOSED
    }
}

/// The issue list as read.
#[derive(Debug, Default)]
pub struct Issues {
    /// Relative to the workspace.
    pub file: String,
    /// Whether the file exists (a missing file is no source, and not a problem).
    pub present: bool,
    /// The issues, by id (the first line of an id).
    pub issues: HashMap<String, Issue>,
    /// Lines that could not be read as an issue, and a file that could not be read at all.
    pub problems: Vec<Diagnostic>,
    /// Readable, but not as beads writes it.
    pub warnings: Vec<Diagnostic>,
}

impl Issues {
    pub fn get(&self, id: &str) -> Option<&Issue> {
        self.issues.get(id)
    }
}

/// Reads `paths.beads` when it exists.
pub fn load(ws: &Workspace) -> Issues {
    let file = ws.config.paths.beads.clone();
    match ws.read_text(&file) {
        Ok(None) => Issues { file, ..Issues::default() },
        Ok(Some(text)) => parse(&file, &text),
        Err(problem) => Issues { file, present: true, problems: vec![problem], ..Issues::default() },
    }
}

/// Reads the lines of an issue list; `file` names it in every diagnostic.
pub fn parse(file: &str, text: &str) -> Issues {
    let mut issues = Issues { file: file.to_owned(), present: true, ..Issues::default() };
    let mut dependencies: Vec<(usize, String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let problem = |message: String| Diagnostic::new(file, Kind::Schema, message).at(number, 1);
        let value = match read::parse_json(file, line) {
            Ok(value) => value,
            Err(mut syntax) => {
                syntax.line = Some(u32::try_from(number).unwrap_or(u32::MAX));
                syntax.message = format!("line {number} is not a beads issue: {}", syntax.message);
                issues.problems.push(syntax);
                continue;
            }
        };
        let Some(object) = value.as_object() else {
            issues.problems.push(problem(format!(
                "line {number} is not a beads issue: expected a JSON object, found {}",
                excerpt_value(&value)
            )));
            continue;
        };
        let id = match object.get("id") {
            Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
            Some(other) => {
                issues.problems.push(problem(format!(
                    "line {number}: `id` must be a non-empty string, found {}",
                    excerpt_value(other)
                )));
                continue;
            }
            None => {
                issues.problems.push(problem(format!("line {number}: the issue has no `id`")));
                continue;
            }
        };
        if let Some(first) = issues.issues.get(&id) {
            issues.problems.push(problem(format!(
                "line {number}: issue `{id}` is also on line {}; opsflow reads line {} only",
                first.line, first.line
            )));
            continue;
        }
        let mut warn =
            |message: String| issues.warnings.push(Diagnostic::new(file, Kind::Schema, message).at(number, 1));
        let mut text_field = |key: &str| match object.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                warn(format!(
                    "line {number}: `{key}` of issue `{id}` must be a string, found {}",
                    excerpt_value(other)
                ));
                None
            }
        };
        let title = text_field("title").unwrap_or_default();
        let status = text_field("status").filter(|s| !s.is_empty()).unwrap_or_else(|| "open".to_owned());
        let issue_type = text_field("issue_type");
        let assignee = text_field("assignee").filter(|a| !a.is_empty());
        let priority = match object.get("priority") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(other) => {
                issues.warnings.push(
                    Diagnostic::new(
                        file,
                        Kind::Schema,
                        format!(
                            "line {number}: `priority` of issue `{id}` must be an integer (0 is the most urgent), found {}",
                            excerpt_value(other)
                        ),
                    )
                    .at(number, 1),
                );
                None
            }
        };
        match object.get("dependencies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (k, dependency) in list.iter().enumerate() {
                    match dependency.get("depends_on_id").and_then(Value::as_str) {
                        Some(target) => dependencies.push((number, format!("dependencies/{k}"), target.to_owned())),
                        None => issues.warnings.push(
                            Diagnostic::new(
                                file,
                                Kind::Schema,
                                format!(
                                    "line {number}: dependency {k} of issue `{id}` names no `depends_on_id`, found {}",
                                    excerpt_value(dependency)
                                ),
                            )
                            .at(number, 1),
                        ),
                    }
                }
            }
            Some(other) => issues.warnings.push(
                Diagnostic::new(
                    file,
                    Kind::Schema,
                    format!(
                        "line {number}: `dependencies` of issue `{id}` must be a list, found {}",
                        excerpt_value(other)
                    ),
                )
                .at(number, 1),
            ),
        }
        issues.issues.insert(id.clone(), Issue { id, title, status, priority, issue_type, assignee, line: number });
    }
    // A dependency can name an issue on a later line, so they are checked once all are read.
    for (number, place, target) in dependencies {
        if !issues.issues.contains_key(&target) {
            issues.warnings.push(
                Diagnostic::new(
                    file,
                    Kind::UnknownDependency,
                    format!("line {number}: {place} depends on `{target}`, which no issue in this file has as its id"),
                )
                .at(number, 1),
            );
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/beads/issues.jsonl");

    #[test]
    fn the_fixture_reads_as_beads_wrote_it() {
        let issues = parse(".beads/issues.jsonl", FIXTURE);
        assert!(issues.problems.is_empty(), "{:#?}", issues.problems);
        assert!(issues.warnings.is_empty(), "{:#?}", issues.warnings);
        let api = issues.get("bd-a1b2").expect("bd-a1b2");
        assert_eq!(api.status, "closed");
        assert!(api.is_closed());
        assert_eq!(api.priority, Some(1));
        assert_eq!(api.issue_type.as_deref(), Some("feature"));
        let docs = issues.get("bd-c3d4").expect("bd-c3d4");
        assert_eq!((docs.status.as_str(), docs.assignee.as_deref()), ("in_progress", Some("alice")));
        assert!(!docs.is_closed());
    }

    #[test]
    fn a_line_that_is_not_json_is_reported_at_its_line_and_the_rest_still_count() {
        let text = "{\"id\":\"bd-1\",\"title\":\"one\",\"status\":\"closed\",\"priority\":0}\n{\"id\": \"bd-2\", oops\n\n[1]\n{\"id\":\"bd-3\",\"title\":\"three\",\"priority\":2}\n";
        let issues = parse(".beads/issues.jsonl", text);
        let problems: Vec<String> = issues.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with(".beads/issues.jsonl:2:"), "{}", problems[0]);
        assert!(problems[0].contains("line 2 is not a beads issue: invalid JSON"), "{}", problems[0]);
        assert!(
            problems[1].starts_with(".beads/issues.jsonl:4:1: line 4 is not a beads issue: expected a JSON object")
        );
        assert!(issues.get("bd-1").is_some_and(Issue::is_closed));
        assert_eq!(issues.get("bd-3").map(|i| i.status.as_str()), Some("open"), "no status is beads' `open`");
    }

    #[test]
    fn fields_in_another_shape_and_dependencies_on_ids_not_in_the_file_are_warnings() {
        let text = concat!(
            "{\"id\":\"bd-1\",\"title\":\"one\",\"status\":\"open\",\"priority\":\"high\",\"assignee\":7,",
            "\"dependencies\":[{\"issue_id\":\"bd-1\",\"depends_on_id\":\"bd-9\",\"type\":\"blocks\"},",
            "{\"issue_id\":\"bd-1\",\"depends_on_id\":\"bd-2\",\"type\":\"blocks\"}]}\n",
            "{\"id\":\"bd-2\",\"title\":\"two\",\"status\":\"closed\",\"priority\":1}\n",
            "{\"id\":\"bd-2\",\"title\":\"again\",\"status\":\"open\",\"priority\":1}\n",
        );
        let issues = parse("b.jsonl", text);
        let warnings: Vec<String> = issues.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "b.jsonl:1:1: line 1: `assignee` of issue `bd-1` must be a string, found 7",
                "b.jsonl:1:1: line 1: `priority` of issue `bd-1` must be an integer (0 is the most urgent), found \"high\"",
                "b.jsonl:1:1: line 1: dependencies/0 depends on `bd-9`, which no issue in this file has as its id",
            ]
        );
        let problems: Vec<String> = issues.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["b.jsonl:3:1: line 3: issue `bd-2` is also on line 2; opsflow reads line 2 only"]);
        assert!(issues.get("bd-2").is_some_and(Issue::is_closed), "the first line of an id counts");
    }
}
