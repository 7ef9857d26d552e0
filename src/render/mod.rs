//! Rendering artifacts from handlebars templates; front matter from data, by code.
//!
//! Templates live in `templates/<artifact>.hbs`, embedded at build time; a file of the same
//! name in the workspace's templates directory overrides one. Strict mode: a template that
//! names a missing field fails instead of printing nothing. Three registries differ only in
//! how `{{value}}` is escaped:
//! - markdown: values are made inert (newlines collapsed, markdown punctuation escaped), so a
//!   task title can never forge a heading, a link or a ticked `- [x] Approved` box;
//! - JSON: values are JSON-string-escaped, and the output is parsed and checked against its
//!   schema before anything is written;
//! - plain: for files such as the CI pipeline, whose values come from the config only.
//!
//! Every value is masked for secrets before it is escaped, in all three registries, and so is
//! front matter: escaping first would hide a secret holding `\` or a newline from masking.
//!
//! Architecture invariant: `render` does no process or network IO; it reads templates only.

use handlebars::Handlebars;
use serde_json::{Map, Value};

use crate::exec::secrets::Secrets;
use crate::schema::SchemaName;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};

/// The built-in templates, by file name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("INFRA04-env-specs.md.hbs", include_str!("../../templates/INFRA04-env-specs.md.hbs")),
    ("INFRA05-iac-design.md.hbs", include_str!("../../templates/INFRA05-iac-design.md.hbs")),
    ("INFRA06-deployment-strategy.md.hbs", include_str!("../../templates/INFRA06-deployment-strategy.md.hbs")),
    ("INFRA08-dev-env.md.hbs", include_str!("../../templates/INFRA08-dev-env.md.hbs")),
    ("INFRA09-tooling-setup.md.hbs", include_str!("../../templates/INFRA09-tooling-setup.md.hbs")),
    ("INFRA10-ci-pipeline.md.hbs", include_str!("../../templates/INFRA10-ci-pipeline.md.hbs")),
    ("INFRA11-quality-gates.md.hbs", include_str!("../../templates/INFRA11-quality-gates.md.hbs")),
    ("ci-pipeline.yml.hbs", include_str!("../../templates/ci-pipeline.yml.hbs")),
    ("INFRA12-staging-env.md.hbs", include_str!("../../templates/INFRA12-staging-env.md.hbs")),
    ("INFRA13-monitoring-setup.md.hbs", include_str!("../../templates/INFRA13-monitoring-setup.md.hbs")),
    ("R07-version-tag.md.hbs", include_str!("../../templates/R07-version-tag.md.hbs")),
    ("R08-staging-deploy.md.hbs", include_str!("../../templates/R08-staging-deploy.md.hbs")),
    ("R09-smoke-tests.md.hbs", include_str!("../../templates/R09-smoke-tests.md.hbs")),
    ("R12-prod-approval.md.hbs", include_str!("../../templates/R12-prod-approval.md.hbs")),
    ("R13-prod-deploy.md.hbs", include_str!("../../templates/R13-prod-deploy.md.hbs")),
    ("R14-monitoring-active.md.hbs", include_str!("../../templates/R14-monitoring-active.md.hbs")),
    ("R15-verification-result.md.hbs", include_str!("../../templates/R15-verification-result.md.hbs")),
    ("R16-health-check.md.hbs", include_str!("../../templates/R16-health-check.md.hbs")),
    ("R17-rollback-decision.md.hbs", include_str!("../../templates/R17-rollback-decision.md.hbs")),
    ("R18-rollback-result.md.hbs", include_str!("../../templates/R18-rollback-result.md.hbs")),
    ("D22-deployed-product.md.hbs", include_str!("../../templates/D22-deployed-product.md.hbs")),
    ("D23-feedback-channels.md.hbs", include_str!("../../templates/D23-feedback-channels.md.hbs")),
    ("Deploy-report.md.hbs", include_str!("../../templates/Deploy-report.md.hbs")),
    ("deployment-report.json.hbs", include_str!("../../templates/deployment-report.json.hbs")),
    ("stage-completion-signal.json.hbs", include_str!("../../templates/stage-completion-signal.json.hbs")),
    ("human-request.md.hbs", include_str!("../../templates/human-request.md.hbs")),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    #[error("template {template} produced invalid output: {problems}")]
    Invalid { template: String, problems: String },
}

pub struct Renderer {
    markdown: Handlebars<'static>,
    json: Handlebars<'static>,
    plain: Handlebars<'static>,
    /// Masked in every value before it is escaped, and in front matter.
    secrets: Secrets,
}

/// `value` on one line: line breaks and tabs become spaces, other control characters go.
fn one_line(value: &str) -> String {
    value
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Makes a value inert inside markdown: one line, and every character that could start
/// markdown structure escaped, and only those, so that the raw text stays readable to agents
/// that read it as text (`error_rate`, `Deploy_To_Production`, `< 5%` stay as they are): an
/// underscore between letters or digits cannot open emphasis, `<` starts HTML or an autolink
/// only before a letter, `/`, `!` or `?`, `!` matters only before `[`, and `#` and `>` only at
/// the start of a line.
pub fn markdown_escape(value: &str) -> String {
    let line = one_line(value);
    // A code span the value holds (a command, a file name in backticks) stays a code span:
    // markdown reads nothing inside one, so its text needs no escapes (but `|`, which would
    // still end a table cell). A backtick that closes nothing is escaped.
    let mut out = String::with_capacity(line.len());
    let mut rest = line.as_str();
    while let Some(open) = rest.find('`') {
        let run = rest[open..].bytes().take_while(|&b| b == b'`').count();
        let after = &rest[open + run..];
        escape_text(&rest[..open], &mut out);
        match closing_run(after, run) {
            Some(close) => {
                let ticks = &rest[open..open + run];
                out.push_str(ticks);
                out.push_str(&after[..close].replace('|', "\\|"));
                out.push_str(ticks);
                rest = &after[close + run..];
            }
            None => {
                out.push_str(&"\\`".repeat(run));
                rest = after;
            }
        }
    }
    escape_text(rest, &mut out);
    out
}

/// Where a run of exactly `run` backticks starts in `text`: the end of a code span.
fn closing_run(text: &str, run: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let end = i + bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if end - i == run {
                return Some(i);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// Escapes one line of text outside code spans, appending it to `out` (whose content so far
/// says whether the text starts a line).
fn escape_text(text: &str, out: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let escape = match c {
            '\\' | '*' | '[' | ']' | '|' | '~' => true,
            '_' => !(word(before) && word(after)),
            '<' => after.is_some_and(|a| a.is_alphabetic() || matches!(a, '/' | '!' | '?')),
            '!' => after == Some('['),
            '#' | '>' => out.trim().is_empty(),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A value as a markdown code span, for identifiers (node names, task ids, paths) that
/// readers and `grep` should find exactly as they are written: one line, and a fence of
/// backticks longer than any run inside the value (padded with a space when the value starts
/// or ends with a backtick). An empty value is an empty string.
pub fn code_span(value: &str) -> String {
    let line = one_line(value);
    if line.is_empty() {
        return String::new();
    }
    let longest = line.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if line.starts_with('`') || line.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{line}{pad}{fence}")
}

/// `{{code value}}` in markdown templates: the value (masked for secrets) as a code span.
struct CodeHelper {
    secrets: Secrets,
}

impl handlebars::HelperDef for CodeHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let param = h.param(0).ok_or_else(|| handlebars::RenderErrorReason::ParamNotFoundForIndex("code", 0))?;
        if param.is_value_missing() {
            return Err(handlebars::RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
        }
        let text = match param.value() {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.write(&code_span(&self.secrets.mask(&text)))?;
        Ok(())
    }
}

/// Escapes a value for the inside of a JSON string literal.
pub fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).expect("a string always serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

/// What the compiled templates depend on: the templates directory and, for each built-in
/// template, the identity of its workspace override (size, modification time, inode) or its
/// absence. Equal fingerprints mean a compiled [`Renderer`] can be used again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    dir: String,
    /// The config's `secrets`, which the compiled escape functions mask.
    secrets: Vec<String>,
    max_file_bytes: u64,
    overrides: Vec<Option<(u64, std::time::SystemTime, u64)>>,
}

impl Fingerprint {
    pub fn of(ws: &Workspace) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        let dir = ws.config.paths.templates.trim_end_matches('/').to_owned();
        let root = ws.root.join(&dir);
        let overrides = TEMPLATES
            .iter()
            .map(|(file, _)| {
                let meta = std::fs::metadata(root.join(file)).ok()?;
                Some((meta.len(), meta.modified().ok()?, meta.ino()))
            })
            .collect();
        Fingerprint {
            dir,
            secrets: ws.config.secrets.clone(),
            max_file_bytes: ws.config.limits.max_file_bytes,
            overrides,
        }
    }
}

impl Renderer {
    /// Loads the templates: the workspace's overrides first, then the built-in ones.
    pub fn new(ws: &Workspace) -> Result<Renderer, Vec<Diagnostic>> {
        let mut registries = [Handlebars::new(), Handlebars::new(), Handlebars::new()];
        // Secrets are masked before a value is escaped: escaping first would turn a secret
        // that holds `\` or a newline into a form that masking no longer recognizes.
        let secrets = Secrets::from_env(&ws.config.secrets);
        let masked = secrets.clone();
        registries[0].register_escape_fn(move |value| markdown_escape(&masked.mask(value)));
        registries[0].register_helper("code", Box::new(CodeHelper { secrets: secrets.clone() }));
        let masked = secrets.clone();
        registries[1].register_escape_fn(move |value| json_escape(&masked.mask(value)));
        let masked = secrets.clone();
        registries[2].register_escape_fn(move |value| masked.mask(value));
        let mut problems = Vec::new();
        let dir = ws.config.paths.templates.trim_end_matches('/');
        for (file, built_in) in TEMPLATES {
            let relative = format!("{dir}/{file}");
            let (label, source) = match ws.read_text(&relative) {
                Ok(Some(text)) => (relative, text),
                Ok(None) => (format!("(built-in) templates/{file}"), (*built_in).to_owned()),
                Err(diagnostic) => {
                    problems.push(diagnostic);
                    continue;
                }
            };
            let name = file.strip_suffix(".hbs").expect("template files end in .hbs");
            let registry = if name.ends_with(".json") {
                &mut registries[1]
            } else if name.ends_with(".md") {
                &mut registries[0]
            } else {
                &mut registries[2]
            };
            registry.set_strict_mode(true);
            if let Err(e) = registry.register_template_string(name, source) {
                problems.push(Diagnostic::new(label, Kind::Syntax, format!("template does not compile: {e}")));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let [markdown, json, plain] = registries;
        Ok(Renderer { markdown, json, plain, secrets })
    }

    /// A markdown artifact: front matter from `front` (by code), body from the template.
    pub fn markdown(&self, template: &str, front: &Map<String, Value>, context: &Value) -> Result<String, RenderError> {
        let body = self
            .markdown
            .render(template, context)
            .map_err(|e| RenderError::Template { template: template.to_owned(), message: e.to_string() })?;
        let mut front = front.clone();
        front.values_mut().for_each(|value| self.secrets.mask_json(value));
        Ok(format!("{}{}", front_matter(&front), body))
    }

    /// A JSON document, parsed and checked against `schema` before it is returned.
    pub fn json(
        &self,
        template: &str,
        context: &Value,
        ws: &Workspace,
        schema: SchemaName,
    ) -> Result<Value, RenderError> {
        let text = self
            .json
            .render(template, context)
            .map_err(|e| RenderError::Template { template: template.to_owned(), message: e.to_string() })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| RenderError::Invalid { template: template.to_owned(), problems: format!("not JSON: {e}") })?;
        let problems = ws.schemas.validate(schema, template, &value);
        if !problems.is_empty() {
            let problems = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            return Err(RenderError::Invalid { template: template.to_owned(), problems });
        }
        Ok(value)
    }

    /// A plain text file (no escaping; for templates fed from the config only).
    pub fn plain(&self, template: &str, context: &Value) -> Result<String, RenderError> {
        self.plain
            .render(template, context)
            .map_err(|e| RenderError::Template { template: template.to_owned(), message: e.to_string() })
    }
}

/// YAML front matter from data: each value is written as JSON, which is valid YAML, so no
/// value can break out of its line or forge another key.
pub fn front_matter(fields: &Map<String, Value>) -> String {
    let mut out = String::from("---\n");
    for (key, value) in fields {
        let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            key.clone()
        } else {
            serde_json::to_string(key).expect("a string always serializes")
        };
        out.push_str(&format!("{key}: {}\n", serde_json::to_string(value).expect("a Value always serializes")));
    }
    out.push_str("---\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_values_cannot_forge_markdown() {
        use pulldown_cmark::{Event, Options, Parser, Tag};
        let evil = "# Heading\nx\n- [x] Approved\n<script>alert(1)</script> [link](http://evil) `code`";
        let escaped = markdown_escape(evil);
        assert!(!escaped.contains('\n'), "{escaped}");
        assert_eq!(crate::engine::artifacts::ticks(&format!("- {escaped}\n")), Default::default());
        // Wherever a template puts it (a line of its own, a list item, a heading's text), the
        // value is one paragraph of plain text: no heading, no HTML, no link, no box. A code
        // span the value held stays a code span, which markdown reads as plain text too.
        for placed in [format!("{escaped}\n"), format!("- {escaped}\n"), format!("## Task {escaped}\n")] {
            let (mut text, mut headings) = (String::new(), 0);
            for event in Parser::new_ext(&placed, Options::all()) {
                match event {
                    Event::Text(t) | Event::Code(t) => text.push_str(&t),
                    Event::Start(Tag::Heading { .. }) => headings += 1,
                    Event::Start(Tag::Paragraph | Tag::List(_) | Tag::Item) | Event::End(_) => {}
                    other => panic!("{other:?} in {placed:?}"),
                }
            }
            // Only the template's own heading.
            assert_eq!(headings, usize::from(placed.starts_with("## ")), "{placed:?}");
            assert!(text.ends_with(&evil.replace('\n', " ").replace('`', "")), "{text:?} from {placed:?}");
        }
    }

    #[test]
    fn code_spans_in_values_stay_code_spans_and_stay_inert() {
        assert_eq!(markdown_escape("command `printf '%s\\n' x`"), "command `printf '%s\\n' x`");
        assert_eq!(markdown_escape("a ` b"), "a \\` b");
        assert_eq!(markdown_escape("`a|b` c|d"), "`a\\|b` c\\|d");
        assert_eq!(markdown_escape("``x`y``"), "``x`y``");
        // A span cannot carry structure out: the rest of the value is escaped as before.
        let escaped = markdown_escape("`x` - [x] Approved ![i](u) <b>");
        assert_eq!(crate::engine::artifacts::ticks(&format!("- {escaped}\n")), Default::default());
        for event in pulldown_cmark::Parser::new(&escaped) {
            assert!(
                !matches!(
                    event,
                    pulldown_cmark::Event::InlineHtml(_)
                        | pulldown_cmark::Event::Start(
                            pulldown_cmark::Tag::Link { .. } | pulldown_cmark::Tag::Image { .. }
                        )
                ),
                "{escaped}: {event:?}"
            );
        }
    }

    #[test]
    fn identifiers_and_figures_stay_readable() {
        assert_eq!(markdown_escape("Deploy_To_Production"), "Deploy_To_Production");
        assert_eq!(markdown_escape("error_rate < 5%"), "error_rate < 5%");
        assert_eq!(markdown_escape("_private_"), "\\_private\\_");
        assert_eq!(markdown_escape("#1 > 2"), "\\#1 > 2");
        assert_eq!(markdown_escape("![x](y)"), "\\!\\[x\\](y)");
        assert_eq!(markdown_escape("a <b>"), "a \\<b>");
    }

    #[test]
    fn code_spans_hold_any_value_exactly() {
        assert_eq!(code_span("Deploy_To_Production"), "`Deploy_To_Production`");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x`"), "`` `x` ``");
        assert_eq!(code_span("a\nb"), "`a b`");
        assert_eq!(code_span(""), "");
        for value in ["_x_", "a``b`", "- [x] Approved", "<b>", "`"] {
            let span = code_span(value);
            let events: Vec<_> = pulldown_cmark::Parser::new(&span).collect();
            let code: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    pulldown_cmark::Event::Code(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(code, [value.to_owned()], "{events:?}");
        }
    }

    #[test]
    fn front_matter_round_trips_through_yaml() {
        let mut fields = Map::new();
        fields.insert("title".into(), Value::String("a: b\n---\nstatus: approved".into()));
        fields.insert("inputs".into(), serde_json::json!([{"file": "x.md", "sha256": "ab"}]));
        let text = format!("{}body\n", front_matter(&fields));
        let doc = crate::workspace::read::parse_markdown("t.md", &text).unwrap();
        assert_eq!(doc.front_matter.unwrap(), Value::Object(fields));
        assert_eq!(doc.body, "body\n");
    }
}
