//! Input artifacts: finding them for a unit, hashing them, reading their markdown structure.
//!
//! An artifact for one unit may carry the unit id in its name (`R12-prod-approval-UNIT-42.md`)
//! and its front matter `unit_id` binds it: a generic `R12-prod-approval.md` whose front matter
//! names another unit is not this unit's. Markdown is parsed with pulldown-cmark, never with
//! regular expressions: a checkbox inside a code block or a quote is not an approval.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;
use serde_json::Value;

use crate::sha256;
use crate::validate::load_markdown;
use crate::workspace::diagnostic::Diagnostic;
use crate::workspace::{Workspace, check_path_component};

/// An input document, read and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    /// Relative to the workspace.
    pub file: String,
    pub front_matter: Value,
    #[serde(skip)]
    pub body: String,
    pub sha256: String,
}

impl Artifact {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.front_matter.get(key).and_then(Value::as_str)
    }
}

/// Finds `name` (e.g. `R12-prod-approval.md`) for `unit` in the artifacts directory.
/// `Ok(None)` when there is none for this unit; `Err` when the file exists but is invalid.
pub fn find(ws: &Workspace, name: &str, unit: Option<&str>) -> Result<Option<Artifact>, Vec<Diagnostic>> {
    let dir = ws.config.paths.artifacts.trim_end_matches('/');
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let mut candidates = Vec::new();
    if let Some(unit) = unit {
        check_path_component(unit)
            .map_err(|why| vec![Diagnostic::new(dir, crate::workspace::diagnostic::Kind::OutsideWorkspace, why)])?;
        candidates.push(format!("{dir}/{stem}-{unit}.md"));
    }
    candidates.push(format!("{dir}/{stem}.md"));
    for file in candidates {
        let loaded = load_markdown(ws, &file, crate::validate::artifact_schema(name));
        if !loaded.diagnostics.is_empty() {
            return Err(loaded.diagnostics);
        }
        let Some(doc) = loaded.doc else { continue };
        let front_matter = doc.front_matter.clone().unwrap_or(Value::Object(Default::default()));
        let bound_elsewhere = match (unit, front_matter.get("unit_id").and_then(Value::as_str)) {
            (Some(unit), Some(bound)) => bound != unit,
            _ => false,
        };
        if bound_elsewhere {
            continue;
        }
        let text = ws.read_text(&file).ok().flatten().unwrap_or_default();
        return Ok(Some(Artifact { file, front_matter, body: doc.body, sha256: sha256::hex(text.as_bytes()) }));
    }
    Ok(None)
}

/// The headings and list items of a markdown body, in order, as plain text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outline {
    pub headings: Vec<String>,
    pub items: Vec<String>,
}

pub fn outline(body: &str) -> Outline {
    let mut outline = Outline::default();
    let mut current: Option<(bool, String)> = None;
    let mut item_depth = 0usize;
    for event in Parser::new_ext(body, Options::ENABLE_TASKLISTS | Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => current = Some((true, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                if let Some((_, text)) = current.take() {
                    outline.headings.push(text.trim().to_owned());
                }
            }
            Event::Start(Tag::Item) => {
                item_depth += 1;
                if item_depth == 1 {
                    current = Some((false, String::new()));
                } else if let Some((_, buffer)) = current.as_mut() {
                    buffer.push(' ');
                }
            }
            Event::End(TagEnd::Item) => {
                item_depth -= 1;
                if item_depth == 0
                    && let Some((_, text)) = current.take()
                {
                    outline.items.push(text.trim().to_owned());
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, buffer)) = current.as_mut() {
                    buffer.push_str(&text);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, buffer)) = current.as_mut() {
                    buffer.push(' ');
                }
            }
            _ => {}
        }
    }
    outline
}

/// The ticked checkboxes of an approval body that count: task-list items outside quotes
/// (code blocks never produce task-list items).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    pub approved: bool,
    pub hold: bool,
}

pub fn ticks(body: &str) -> Ticks {
    let mut ticks = Ticks::default();
    let mut quote_depth = 0usize;
    let mut pending: Option<String> = None;
    let mut item_checked = false;
    for event in Parser::new_ext(body, Options::ENABLE_TASKLISTS) {
        match event {
            Event::Start(Tag::BlockQuote(_)) => quote_depth += 1,
            Event::End(TagEnd::BlockQuote(_)) => quote_depth = quote_depth.saturating_sub(1),
            Event::TaskListMarker(checked) if quote_depth == 0 => {
                item_checked = checked;
                pending = Some(String::new());
            }
            Event::Text(text) => {
                if let Some(buffer) = pending.as_mut() {
                    buffer.push_str(&text);
                }
            }
            Event::End(TagEnd::Item) | Event::End(TagEnd::Paragraph) => {
                if let Some(label) = pending.take()
                    && item_checked
                {
                    let first_word =
                        label.trim().split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_lowercase();
                    match first_word.as_str() {
                        "approved" | "approve" => ticks.approved = true,
                        "hold" => ticks.hold = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_task_list_items_count() {
        assert_eq!(ticks("- [x] Approved\n- [ ] Hold\n"), Ticks { approved: true, hold: false });
        assert_eq!(ticks("- [X] Approved by alice\n- [x] Hold\n"), Ticks { approved: true, hold: true });
        assert_eq!(ticks("```\n- [x] Approved\n```\n"), Ticks::default());
        assert_eq!(ticks("    - [x] Approved\n"), Ticks::default());
        assert_eq!(ticks("> - [x] Approved\n"), Ticks::default());
        assert_eq!(ticks("- [ ] Approved\n"), Ticks::default());
        assert_eq!(ticks("Approved\n[x] Approved\n"), Ticks::default());
        assert_eq!(ticks("- [x] Not approved\n"), Ticks::default());
    }

    #[test]
    fn outline_reads_headings_and_items() {
        let outline = outline("# Needs\n\n- **CPU**: 2 cores\n- Disk\n  - nested\n\n## Other\ntext\n");
        assert_eq!(outline.headings, ["Needs", "Other"]);
        assert_eq!(outline.items, ["CPU: 2 cores", "Disk nested"]);
    }
}
