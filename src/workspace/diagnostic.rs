//! Problems found in workspace files, as data.
//!
//! Loading never stops at the first problem: every check returns [`Diagnostic`]s, and
//! `validate`, `status` and the engine decide what to do with them. A diagnostic names the
//! file (relative to the workspace) and the place: a line and column for syntax, the JSON
//! Pointer and the rule broken for schema errors, nothing for whole-file problems.

use std::fmt;

use serde::Serialize;

/// The longest value a message quotes whole: longer ones are a mistake the key already
/// points at (a token given where a duration belongs, a 20 MB field), and quoting them whole
/// would repeat them, perhaps a secret, into stderr and `/healthz`.
pub const QUOTE_WHOLE: usize = 32;
/// How many characters of a longer value a message shows.
pub const QUOTE_START: usize = 8;

/// A value from a file as a message quotes it, between `open` and `close`: whole when it has
/// at most [`QUOTE_WHOLE`] characters, else its first [`QUOTE_START`] and its length:
/// `` `ghp_Abcd…` (40 characters) ``.
pub fn excerpt(text: &str, open: &str, close: &str) -> String {
    let count = text.chars().count();
    if count <= QUOTE_WHOLE {
        return format!("{open}{text}{close}");
    }
    let start: String = text.chars().take(QUOTE_START).collect();
    format!("{open}{start}…{close} ({count} characters)")
}

/// A JSON value as a message shows it: a string in double quotes, any other value as compact
/// JSON, each [`excerpt`]ed, with bidirectional controls written as `\u{XXXX}`.
pub fn excerpt_value(value: &serde_json::Value) -> String {
    // JSON leaves bidirectional controls as they are; a terminal would reorder the message.
    super::escape_bidi(&excerpt_json(value))
}

fn excerpt_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => {
            let quoted = value.to_string();
            let count = s.chars().count();
            if count <= QUOTE_WHOLE {
                return quoted;
            }
            // The start as JSON writes it, so a control character stays visible as an escape.
            let start: String = quoted.chars().skip(1).take(QUOTE_START).collect();
            format!("\"{start}…\" ({count} characters)")
        }
        _ => excerpt(&value.to_string(), "", ""),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The file could not be read at all.
    Io,
    TooLarge,
    InvalidUtf8,
    ByteOrderMark,
    ConflictMarkers,
    /// A symlink (or a path from a file) that leads outside the workspace.
    OutsideWorkspace,
    Syntax,
    FrontMatter,
    Schema,
    DuplicateId,
    UnknownDependency,
    DependencyCycle,
    Config,
    /// A warning: a task's agent nearly names this runner but is not one of its names.
    NearMissAgent,
    /// A warning: an owned task's status is not one opsflow knows.
    UnknownStatus,
    /// An agent's declared output that is missing, unchanged, empty or a placeholder.
    Output,
    /// A `verify` command of an agent node that failed.
    Verify,
    /// A file that decides the workflow, which an agent changed (and opsflow restored).
    Protected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, relative to the workspace, with `/` separators.
    pub file: String,
    pub kind: Kind,
    /// One-based; `u32` keeps a diagnostic small enough to travel in a `Result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The JSON Pointer of the offending value, for schema and data errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The schema keyword that failed, for schema errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            kind,
            line: None,
            column: None,
            pointer: None,
            rule: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(u32::try_from(line).unwrap_or(u32::MAX));
        self.column = Some(u32::try_from(column).unwrap_or(u32::MAX));
        self
    }

    pub fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Gives a pointer diagnostic a line and column from the text it points into.
    pub fn locate_in(mut self, text: &str) -> Self {
        if let Some(pointer) = &self.pointer
            && self.line.is_none()
            && let Some(span) = crate::store::json::resolve_pointer(text, pointer)
        {
            let (line, column) = crate::store::json::line_col(text, span.start);
            self = self.at(line, column);
        }
        self
    }
}

impl std::error::Error for Diagnostic {}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(pointer) = &self.pointer {
            let shown = if pointer.is_empty() { "the top level" } else { pointer };
            write!(f, "at {shown}: ")?;
        }
        write!(f, "{}", self.message)?;
        match (&self.rule, self.kind) {
            (Some(rule), Kind::Output | Kind::Verify | Kind::Protected) => write!(f, " (rule `{rule}`)")?,
            (Some(rule), _) => write!(f, " (schema rule `{rule}`)")?,
            (None, _) => {}
        }
        Ok(())
    }
}
