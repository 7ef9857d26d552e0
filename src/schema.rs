//! The JSON Schemas every input is checked against: embedded at build time, overridable per file.
//!
//! `schemas/*.json` are compiled into the binary; a file of the same name in the workspace's
//! schemas directory replaces one. Each schema is compiled once per process and source text
//! (the daemon opens the workspace again on every reconcile; the compiled schema is kept
//! while its file stays the same). Validation
//! returns every error as a [`Diagnostic`] with the instance's JSON Pointer and the rule.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::read;

/// The schemas opsflow knows, one per kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaName {
    Config,
    Tasks,
    /// One entry of `tasks.json`: `tasks.schema.json#/$defs/task`.
    Task,
    State,
    Workflow,
    QaReport,
    QaTestReport,
    Approval,
    RollbackDecision,
    /// `deployment-report.json` as anyone may write it: seed 003's sections.
    DeploymentReport,
    /// `deployment-report.json` as opsflow writes it: also `unit_id`, `version` and `run_id`.
    OwnDeploymentReport,
    CompletionSignal,
}

/// What opsflow's own deployment report has beyond seed 003's sections.
const OWN_REPORT_FIELDS: [&str; 3] = ["unit_id", "version", "run_id"];

const ALL: [SchemaName; 12] = [
    SchemaName::Config,
    SchemaName::Tasks,
    SchemaName::Task,
    SchemaName::State,
    SchemaName::Workflow,
    SchemaName::QaReport,
    SchemaName::QaTestReport,
    SchemaName::Approval,
    SchemaName::RollbackDecision,
    SchemaName::DeploymentReport,
    SchemaName::OwnDeploymentReport,
    SchemaName::CompletionSignal,
];

/// The built-in schema files, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("project-config.schema.json", include_str!("../schemas/project-config.schema.json")),
    ("tasks.schema.json", include_str!("../schemas/tasks.schema.json")),
    ("state.schema.json", include_str!("../schemas/state.schema.json")),
    ("workflow.schema.json", include_str!("../schemas/workflow.schema.json")),
    ("qa-report.schema.json", include_str!("../schemas/qa-report.schema.json")),
    ("qa-test-report.schema.json", include_str!("../schemas/qa-test-report.schema.json")),
    ("approval.schema.json", include_str!("../schemas/approval.schema.json")),
    ("rollback-decision.schema.json", include_str!("../schemas/rollback-decision.schema.json")),
    ("devops-output-schema.json", include_str!("../schemas/devops-output-schema.json")),
    ("stage-completion-signal.schema.json", include_str!("../schemas/stage-completion-signal.schema.json")),
];

impl SchemaName {
    pub fn file(self) -> &'static str {
        match self {
            SchemaName::Config => "project-config.schema.json",
            SchemaName::Tasks | SchemaName::Task => "tasks.schema.json",
            SchemaName::State => "state.schema.json",
            SchemaName::Workflow => "workflow.schema.json",
            SchemaName::QaReport => "qa-report.schema.json",
            SchemaName::QaTestReport => "qa-test-report.schema.json",
            SchemaName::Approval => "approval.schema.json",
            SchemaName::RollbackDecision => "rollback-decision.schema.json",
            SchemaName::DeploymentReport | SchemaName::OwnDeploymentReport => "devops-output-schema.json",
            SchemaName::CompletionSignal => "stage-completion-signal.schema.json",
        }
    }

    fn index(self) -> usize {
        ALL.iter().position(|&n| n == self).expect("every name is in ALL")
    }
}

/// The schemas of one workspace, compiled on first use.
pub struct Schemas {
    /// The workspace's schemas directory and how it is shown to users.
    override_dir: PathBuf,
    override_label: String,
    limit: u64,
    compiled: [OnceLock<Result<Arc<jsonschema::Validator>, Diagnostic>>; ALL.len()],
}

impl Schemas {
    pub fn new(override_dir: PathBuf, override_label: &str, limit: u64) -> Schemas {
        Schemas { override_dir, override_label: override_label.to_owned(), limit, compiled: Default::default() }
    }

    /// The source of a schema file: the workspace's override, else the embedded one.
    pub fn source(&self, file: &str) -> Result<(String, String), Diagnostic> {
        let label = format!("{}/{file}", self.override_label.trim_end_matches('/'));
        if let Some(text) = read::read_text(&self.override_dir.join(file), &label, self.limit)? {
            return Ok((label, text));
        }
        let (_, text) = EMBEDDED.iter().find(|(name, _)| *name == file).expect("every schema file is embedded");
        Ok((format!("(built-in) schemas/{file}"), (*text).to_owned()))
    }

    /// The compiled schema `name`, from the process's cache while its source is unchanged.
    fn compile(&self, name: SchemaName) -> Result<Arc<jsonschema::Validator>, Diagnostic> {
        /// The schema last compiled for each name, with its source. Compiling the config's
        /// schema takes about 2 ms, more than a reconcile with nothing to do.
        static COMPILED: Mutex<Vec<(SchemaName, String, Arc<jsonschema::Validator>)>> = Mutex::new(Vec::new());
        let (label, text) = self.source(name.file())?;
        let cache = || COMPILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, validator)) = cache().iter().find(|(n, source, _)| *n == name && *source == text) {
            return Ok(Arc::clone(validator));
        }
        let validator = Arc::new(self.compile_text(name, &label, &text)?);
        let mut cache = cache();
        cache.retain(|(n, _, _)| *n != name);
        cache.push((name, text, Arc::clone(&validator)));
        Ok(validator)
    }

    fn compile_text(&self, name: SchemaName, label: &str, text: &str) -> Result<jsonschema::Validator, Diagnostic> {
        let label = label.to_owned();
        let mut schema = read::parse_json(&label, text)?;
        if name == SchemaName::Task {
            // One task on its own: the definition, with the file's `$defs` beside it for its `$ref`s.
            let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
            schema = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": defs,
                "$ref": "#/$defs/task",
            });
        }
        if name == SchemaName::OwnDeploymentReport
            && let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut)
        {
            for field in OWN_REPORT_FIELDS {
                if !required.iter().any(|r| r == field) {
                    required.push(field.into());
                }
            }
        }
        // A report another hand wrote may carry fields of its own, which are kept; the report
        // opsflow writes has only the contract's, so a misspelt field in a template is caught
        // before the file is written.
        if name == SchemaName::OwnDeploymentReport
            && let Some(object) = schema.as_object_mut()
        {
            object.entry("additionalProperties").or_insert(Value::Bool(false));
        }
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| Diagnostic::new(&label, Kind::Schema, format!("is not a valid JSON Schema: {e}")))
    }

    /// [`Schemas::validate`] by schema file name: a built-in schema (with the workspace's
    /// override), or any other schema file of the workspace's schemas folder, compiled for this
    /// call. A schema that does not exist or does not compile is one diagnostic naming it.
    pub fn validate_by_file(&self, schema_file: &str, file: &str, value: &Value) -> Vec<Diagnostic> {
        if let Some(name) = ALL
            .iter()
            .find(|n| n.file() == schema_file && !matches!(n, SchemaName::Task | SchemaName::OwnDeploymentReport))
        {
            return self.validate(*name, file, value);
        }
        let label = format!("{}/{schema_file}", self.override_label.trim_end_matches('/'));
        let text = match read::read_text(&self.override_dir.join(schema_file), &label, self.limit) {
            Ok(Some(text)) => text,
            Ok(None) => {
                return vec![Diagnostic::new(
                    &label,
                    Kind::Schema,
                    format!("does not exist, and no built-in schema has that name (so {file} cannot be checked)"),
                )];
            }
            Err(diagnostic) => return vec![diagnostic],
        };
        let compiled = read::parse_json(&label, &text).and_then(|schema| {
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| Diagnostic::new(&label, Kind::Schema, format!("is not a valid JSON Schema: {e}")))
        });
        match compiled {
            Ok(validator) => validator.iter_errors(value).map(|error| schema_diagnostic(file, &error)).collect(),
            Err(mut broken) => {
                broken.message = format!("{} (so {file} cannot be checked)", broken.message);
                vec![broken]
            }
        }
    }

    /// Every way `value` (from `file`) breaks the schema; empty when it is valid.
    pub fn validate(&self, name: SchemaName, file: &str, value: &Value) -> Vec<Diagnostic> {
        let validator = match self.compiled[name.index()].get_or_init(|| self.compile(name)) {
            Ok(validator) => validator,
            Err(broken) => {
                let mut error = broken.clone();
                error.message = format!("{} (so {file} cannot be checked)", error.message);
                return vec![error];
            }
        };
        let mut found: Vec<(Diagnostic, Option<usize>)> = validator
            .iter_errors(value)
            .map(|error| {
                let options = match error.kind() {
                    jsonschema::error::ValidationErrorKind::Enum { options } => options.as_array().map(Vec::len),
                    _ => None,
                };
                (schema_diagnostic(file, &error), options)
            })
            .collect();
        // Two lists of allowed values for one place (a general one, and a narrower one such as
        // the strategies of the environment's provider): only the narrower is said.
        let narrowest = |pointer: &Option<String>| {
            found.iter().filter(|(d, _)| &d.pointer == pointer).filter_map(|(_, n)| *n).min()
        };
        let keep: Vec<bool> = found.iter().map(|(d, n)| n.is_none_or(|n| narrowest(&d.pointer) == Some(n))).collect();
        let mut seen_enum: Vec<Option<String>> = Vec::new();
        let mut kept = Vec::new();
        for ((diagnostic, options), keep) in found.drain(..).zip(keep) {
            if !keep {
                continue;
            }
            if options.is_some() {
                if seen_enum.contains(&diagnostic.pointer) {
                    continue;
                }
                seen_enum.push(diagnostic.pointer.clone());
            }
            kept.push(diagnostic);
        }
        kept
    }
}

fn schema_diagnostic(file: &str, error: &jsonschema::ValidationError<'_>) -> Diagnostic {
    let pointer = error.instance_path().to_string();
    let schema_path = error.schema_path().to_string();
    let mut message = error.to_string();
    let value = error.instance();
    // The value as a message quotes it: a long one only by its start and length.
    let instance = crate::workspace::diagnostic::excerpt_value(value);
    // The validator's own messages (`maxLength`, `format`, ...) start with the whole value.
    let whole = value.to_string();
    if whole != instance
        && let Some(rest) = message.strip_prefix(whole.as_str())
    {
        message = format!("{instance}{rest}");
    }
    if schema_path.contains("/$defs/duration/") && value.is_number() {
        let n = &instance;
        message = format!(
            "expected a duration with a unit, found the bare number {n}; write it as a string such as \"{n}s\", \"{n}ms\" or \"{n}m\""
        );
    } else {
        match error.kind() {
            jsonschema::error::ValidationErrorKind::Pattern { pattern } => {
                message = match pattern_in_words(pattern, false) {
                    Some(words) => format!("{instance} {words}"),
                    None => format!("{instance} does not have the form this field needs (the pattern `{pattern}`)"),
                };
            }
            jsonschema::error::ValidationErrorKind::Not { schema } => {
                let pattern = schema.get("pattern").and_then(Value::as_str);
                if let Some(words) = pattern.and_then(|p| pattern_in_words(p, true)) {
                    message = format!("{instance} {words}");
                    // Which bidirectional control, as U+XXXX: it does not show in a terminal.
                    let bidi =
                        value.as_str().and_then(|text| text.chars().find(|&c| crate::workspace::bidi_control(c)));
                    if let Some(character) = bidi.filter(|_| pattern.is_some_and(|p| p.contains('\u{202e}'))) {
                        message = format!("{message}; it contains U+{:04X}", character as u32);
                    }
                }
            }
            jsonschema::error::ValidationErrorKind::OneOfNotValid { context }
            | jsonschema::error::ValidationErrorKind::AnyOf { context } => {
                if let Some(words) = alternatives_in_words(file, &pointer, value, context) {
                    message = words;
                }
            }
            jsonschema::error::ValidationErrorKind::OneOfMultipleValid { .. } => {
                message = format!(
                    "{} matches more than one of the forms allowed here, and must match exactly one",
                    field_name(&pointer)
                );
            }
            jsonschema::error::ValidationErrorKind::Type { kind } => {
                let types: Vec<String> = match kind {
                    jsonschema::error::TypeKind::Single(one) => vec![type_in_words(one.as_str())],
                    jsonschema::error::TypeKind::Multiple(set) => {
                        set.iter().map(|one| type_in_words(one.as_str())).collect()
                    }
                };
                let mut types = types;
                let last = types.pop().unwrap_or_default();
                let expected = if types.is_empty() { last } else { format!("{} or {last}", types.join(", ")) };
                message = format!("{} must be {expected}, found {instance}", field_name(&pointer));
            }
            jsonschema::error::ValidationErrorKind::Enum { options } => {
                if let Some(options) = options.as_array() {
                    let mut shown: Vec<String> = options.iter().map(Value::to_string).collect();
                    let last = shown.pop().unwrap_or_default();
                    message = if shown.is_empty() {
                        format!("{instance} is not {last}")
                    } else {
                        format!("{instance} is not one of {} or {last}", shown.join(", "))
                    };
                }
            }
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                let keys: Vec<String> = unexpected.iter().map(|key| format!("`{key}`")).collect();
                let noun = if keys.len() == 1 { "key" } else { "keys" };
                message = format!("unknown {noun} {}: the schema allows no other keys here", keys.join(", "));
                // One unknown key is pointed at, so the diagnostic carries its line.
                if let [key] = unexpected.as_slice() {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    let at = format!("{pointer}/{escaped}");
                    let message = "not a key the schema allows here";
                    return Diagnostic::new(file, Kind::Schema, message).pointer(at).rule("additionalProperties");
                }
            }
            _ => {}
        }
    }
    Diagnostic::new(file, Kind::Schema, message).pointer(pointer).rule(error.kind().keyword().to_owned())
}

/// What a value that fits none of a `oneOf`/`anyOf`'s branches should have been, from what each
/// branch said: "`unit_id` must be a string or null, found 5" when every branch wanted another
/// type, "needs one of `http`, `command` or `prometheus`" when every branch wanted a key, else
/// each branch's complaint in turn.
fn alternatives_in_words(
    file: &str,
    pointer: &str,
    instance: &Value,
    context: &[Vec<jsonschema::ValidationError<'static>>],
) -> Option<String> {
    use jsonschema::error::ValidationErrorKind as K;
    let single: Vec<&jsonschema::ValidationError<'static>> =
        context.iter().filter(|branch| branch.len() == 1).map(|branch| &branch[0]).collect();
    if context.is_empty() {
        return None;
    }
    let join = |mut items: Vec<String>| {
        items.dedup();
        let last = items.pop().unwrap_or_default();
        if items.is_empty() { last } else { format!("{} or {last}", items.join(", ")) }
    };
    if single.len() == context.len() {
        let types: Option<Vec<String>> = single
            .iter()
            .map(|e| match e.kind() {
                K::Type { kind: jsonschema::error::TypeKind::Single(one) } => Some(type_in_words(one.as_str())),
                _ => None,
            })
            .collect();
        if let Some(types) = types {
            let instance = crate::workspace::diagnostic::excerpt_value(instance);
            return Some(format!("{} must be {}, found {instance}", field_name(pointer), join(types)));
        }
        let keys: Option<Vec<String>> = single
            .iter()
            .map(|e| match e.kind() {
                K::Required { property } => Some(format!("`{}`", property.as_str().unwrap_or_default())),
                _ => None,
            })
            .collect();
        if let Some(keys) = keys {
            return Some(format!("{} needs one of {}", field_name(pointer), join(keys)));
        }
    }
    let branches: Vec<String> = context
        .iter()
        .map(|branch| branch.iter().map(|e| schema_diagnostic(file, e).message).collect::<Vec<_>>().join(" and "))
        .collect();
    Some(format!("{} fits none of the forms allowed here: {}", field_name(pointer), branches.join("; or ")))
}

/// A JSON type as a reader says it: "a string", "an object".
fn type_in_words(name: &str) -> String {
    match name {
        "null" => "null".to_owned(),
        "integer" => "a whole number".to_owned(),
        "array" => "an array (a list in `[...]`)".to_owned(),
        "object" => "an object (`{...}`)".to_owned(),
        "boolean" => "true or false".to_owned(),
        other => format!("a {other}"),
    }
}

/// The field a JSON Pointer ends at, for a sentence: `` `id` ``, `item 3 of `depends_on``,
/// or `the document` for the whole file.
fn field_name(pointer: &str) -> String {
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    let mut segments = pointer.rsplit('/');
    match (segments.next(), segments.next()) {
        (None | Some(""), _) => "the document".to_owned(),
        (Some(last), parent) if last.bytes().all(|b| b.is_ascii_digit()) => match parent.filter(|p| !p.is_empty()) {
            Some(parent) => format!("item {last} of `{}`", unescape(parent)),
            None => format!("item {last}"),
        },
        (Some(last), _) => format!("`{}`", unescape(last)),
    }
}

/// What the patterns of the built-in schemas allow, in words: a schema's regex means nothing to
/// most readers. `negated` is for a pattern under `not` (what must not match). `None` for a
/// pattern this table does not know (a workspace's own schema override).
fn pattern_in_words(pattern: &str, negated: bool) -> Option<&'static str> {
    Some(match (pattern, negated) {
        (r"^[^/\\]+$", false) => "must be one or more characters other than `/` and `\\`",
        (r"[\x00-\x1F\x7F]", true) => "must not contain control characters (a line break, a tab)",
        ("[\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{061c}]", true) => {
            "must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069, U+200E, \
             U+200F, U+061C), which make text display in another order than it is stored"
        }
        (r"\.\.", true) => "must not contain `..`",
        (r"^\.$", true) => "must not be `.`",
        (r"^[A-Za-z_][A-Za-z0-9_]*$", false) => {
            "must be a name of letters, digits and `_` that does not start with a digit"
        }
        (r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$", false) => {
            "must be a duration: a number and a unit (`ms`, `s`, `m`, `h` or `d`), such as \"300s\""
        }
        (r"^https?://", false) => "must be a URL that starts with `http://` or `https://`",
        (r"^http://", false) => "must be a URL that starts with `http://`",
        (r"^(https?://|\{slot_url\})", false) => {
            "must be a URL that starts with `http://` or `https://`, or `{slot_url}` and a path"
        }
        (r"^[A-Za-z0-9._/-]+$", false) => "must be a branch name of letters, digits, `.`, `_`, `/` and `-`",
        (r#"^(https://|ssh://|git@)[^\s'"\\`$]+$"#, false) => {
            "must be a git URL (`https://`, `ssh://` or `git@`) without spaces, quotes, `\\`, `` ` `` or `$`"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_from_another_hand_keeps_extra_fields_and_opsflow_s_own_has_none() {
        let schemas = Schemas::new(PathBuf::from("/nonexistent"), "schemas", 1 << 20);
        let seed = include_str!("../tests/fixtures/seed/deployment-report.seed-003.json");
        let mut report: Value = serde_json::from_str(seed).unwrap();
        report["from_another_agent"] = Value::Bool(true);
        assert_eq!(schemas.validate(SchemaName::DeploymentReport, "r.json", &report), Vec::new());
        for field in OWN_REPORT_FIELDS {
            report[field] = Value::String("x".into());
        }
        let own = schemas.validate(SchemaName::OwnDeploymentReport, "r.json", &report);
        let rules: Vec<_> = own.iter().map(|d| (d.pointer.as_deref(), d.rule.as_deref())).collect();
        assert_eq!(rules, [(Some("/from_another_agent"), Some("additionalProperties"))]);
    }

    #[test]
    fn every_embedded_schema_compiles() {
        let schemas = Schemas::new(PathBuf::from("/nonexistent"), "schemas", 1 << 20);
        for name in ALL {
            let compiled = schemas.compiled[name.index()].get_or_init(|| schemas.compile(name));
            assert!(compiled.is_ok(), "{name:?}: {:?}", compiled.as_ref().err());
        }
    }

    #[test]
    fn every_pattern_of_the_embedded_schemas_is_said_in_words() {
        fn patterns(value: &Value, negated: bool, out: &mut Vec<(String, bool)>) {
            match value {
                Value::Object(map) => {
                    for (key, child) in map {
                        match (key.as_str(), child) {
                            ("pattern", Value::String(p)) => out.push((p.clone(), negated)),
                            ("not", child) => patterns(child, true, out),
                            (_, child) => patterns(child, negated, out),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| patterns(item, negated, out)),
                _ => {}
            }
        }
        let schemas = Schemas::new(PathBuf::from("/nonexistent"), "schemas", 1 << 20);
        for name in ALL {
            let (_, text) = schemas.source(name.file()).unwrap();
            let mut found = Vec::new();
            patterns(&serde_json::from_str(&text).unwrap(), false, &mut found);
            for (pattern, negated) in found {
                assert!(pattern_in_words(&pattern, negated).is_some(), "{name:?}: `{pattern}` (negated: {negated})");
            }
        }
    }

    /// A 20 MB id was repeated whole in the validator's own `maxLength` message.
    #[test]
    fn a_long_value_is_quoted_by_its_start_and_length() {
        let schemas = Schemas::new(PathBuf::from("/nonexistent"), "schemas", 1 << 20);
        let task = serde_json::json!({
            "id": "X".repeat(5000), "title": "t", "agent": "a", "type": "infrastructure_design", "status": "pending"
        });
        let problems = schemas.validate(SchemaName::Task, "tasks.json", &task);
        let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages, ["\"XXXXXXXX…\" (5000 characters) is longer than 200 characters"]);
    }
}
