//! Input artifacts as read (file, front matter, body, digest) and their markdown structure.
//!
//! Which file is a release's input is decided in `crate::release`. Markdown is parsed with
//! pulldown-cmark, never with regular expressions: a checkbox inside a code block or a quote
//! is not an approval.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;
use serde_json::Value;

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

    /// Whether a front matter field says yes: `true`, or the string `"true"` or `yes`.
    pub fn flag(&self, key: &str) -> bool {
        match self.front_matter.get(key) {
            Some(Value::Bool(yes)) => *yes,
            Some(Value::String(text)) => matches!(text.trim().to_ascii_lowercase().as_str(), "true" | "yes"),
            _ => false,
        }
    }
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
/// (code blocks never produce task-list items). A ticked item approves only when its text is
/// `Approved` (case and a trailing period aside); one that starts with `Hold`, `On hold`,
/// `Not approved` or `Reject` holds; any other ticked item approves nothing and is listed in
/// `ignored`, so that a human sees why their tick did not count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticks {
    pub approved: bool,
    pub hold: bool,
    pub ignored: Vec<String>,
}

/// What one ticked item says.
fn tick_meaning(label: &str) -> Option<bool> {
    let text = label.trim().trim_end_matches('.').trim().to_lowercase();
    if text == "approved" {
        return Some(true);
    }
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let holds = matches!(words.as_slice(), ["hold", ..] | ["on", "hold", ..] | ["not", "approved", ..])
        || words.first().is_some_and(|w| w.starts_with("reject"));
    holds.then_some(false)
}

pub fn ticks(body: &str) -> Ticks {
    let mut ticks = Ticks::default();
    let mut quote_depth = 0usize;
    let mut pending: Option<String> = None;
    let mut item_checked = false;
    // A ticked item's label is its first line: a note on the next line is not part of it.
    let mut first_line_done = false;
    for event in Parser::new_ext(body, Options::ENABLE_TASKLISTS) {
        match event {
            Event::Start(Tag::BlockQuote(_)) => quote_depth += 1,
            Event::End(TagEnd::BlockQuote(_)) => quote_depth = quote_depth.saturating_sub(1),
            Event::TaskListMarker(checked) if quote_depth == 0 => {
                item_checked = checked;
                pending = Some(String::new());
                first_line_done = false;
            }
            Event::SoftBreak | Event::HardBreak => first_line_done = true,
            Event::Text(text) | Event::Code(text) if !first_line_done => {
                if let Some(buffer) = pending.as_mut() {
                    buffer.push_str(&text);
                }
            }
            Event::End(TagEnd::Item) | Event::End(TagEnd::Paragraph) => {
                if let Some(label) = pending.take()
                    && item_checked
                {
                    match tick_meaning(&label) {
                        Some(true) => ticks.approved = true,
                        Some(false) => ticks.hold = true,
                        None => ticks.ignored.push(label.trim().to_owned()),
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
        let approved = Ticks { approved: true, ..Ticks::default() };
        assert_eq!(ticks("- [x] Approved\n- [ ] Hold\n"), approved);
        assert_eq!(ticks("- [X] approved.\n"), approved);
        assert_eq!(ticks("- [X] Approved\n- [x] Hold\n"), Ticks { approved: true, hold: true, ignored: vec![] });
        assert_eq!(ticks("```\n- [x] Approved\n```\n"), Ticks::default());
        assert_eq!(ticks("    - [x] Approved\n"), Ticks::default());
        assert_eq!(ticks("> - [x] Approved\n"), Ticks::default());
        assert_eq!(ticks("- [ ] Approved\n"), Ticks::default());
        assert_eq!(ticks("Approved\n[x] Approved\n"), Ticks::default());
    }

    #[test]
    fn a_ticked_hold_followed_by_a_note_on_the_next_line_is_a_hold() {
        // `- [x] Hold` and a note under it used to be read as the item "HoldHolding: ...".
        let hold = Ticks { hold: true, ..Ticks::default() };
        assert_eq!(ticks("- [ ] Approved\n- [x] Hold\n  Holding: the payment provider is down\n"), hold);
        assert_eq!(ticks("- [x] Approved\n  (alice, after the demo)\n"), Ticks { approved: true, ..Ticks::default() });
    }

    #[test]
    fn only_the_word_approved_approves_and_hold_words_hold() {
        let ignored = |label: &str| Ticks { ignored: vec![label.to_owned()], ..Ticks::default() };
        assert_eq!(ticks("- [x] Approved: NO, wait for Monday\n"), ignored("Approved: NO, wait for Monday"));
        assert_eq!(ticks("- [x] Approve\n"), ignored("Approve"));
        assert_eq!(ticks("- [x] Approved by alice\n"), ignored("Approved by alice"));
        let hold = Ticks { hold: true, ..Ticks::default() };
        for label in ["Hold", "On hold", "on hold until Monday", "Not approved", "Rejected", "Reject: broken"] {
            assert_eq!(ticks(&format!("- [x] {label}\n")), hold, "{label}");
        }
        let both = ticks("- [x] Approved\n- [x] On hold\n");
        assert!(both.approved && both.hold);
    }

    #[test]
    fn outline_reads_headings_and_items() {
        let outline = outline("# Needs\n\n- **CPU**: 2 cores\n- Disk\n  - nested\n\n## Other\ntext\n");
        assert_eq!(outline.headings, ["Needs", "Other"]);
        assert_eq!(outline.items, ["CPU: 2 cores", "Disk nested"]);
    }
}
