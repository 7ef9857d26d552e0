//! BMAD's QA gate files (BMAD-METHOD v4, `docs/qa/gates/<epic>.<story>-<slug>.yml`, the folder
//! is `paths.qa_gates`): QA's verdict on a story, which opsflow takes as a QA verdict on the
//! release whose unit is that story (`story: "1.3"` for unit `1.3`).
//!
//! This module only reads: each file through [`Workspace::read_text`] and
//! [`read::parse_yaml`] (the guards of front matter), then decoded into a [`GateFile`] whose
//! every field was checked, a problem naming the file, the line and the key. What a gate
//! means for a deployment is decided in `engine::gates`.

use std::fs;

use yaml_rust2::Yaml;

use crate::sha256;
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::read;

/// The `gate` of a gate file, and the `status` of an `nfr_validation` entry (which has no
/// `WAIVED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Concerns,
    Fail,
    Waived,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Concerns => "CONCERNS",
            Verdict::Fail => "FAIL",
            Verdict::Waived => "WAIVED",
        }
    }

    fn parse(text: &str) -> Option<Verdict> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PASS" => Some(Verdict::Pass),
            "CONCERNS" => Some(Verdict::Concerns),
            "FAIL" => Some(Verdict::Fail),
            "WAIVED" => Some(Verdict::Waived),
            _ => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `low`, `medium` or `high`: BMAD's fixed scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// One of `top_issues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopIssue {
    pub id: String,
    pub severity: Severity,
    pub finding: String,
}

/// `waiver`: only counts with `active: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waiver {
    pub active: bool,
    pub reason: String,
    pub approved_by: String,
}

/// One entry of `nfr_validation` (`security`, `performance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nfr {
    pub status: Verdict,
    pub notes: String,
}

/// A gate file as opsflow reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFile {
    /// Relative to the workspace.
    pub file: String,
    pub sha256: String,
    pub story: String,
    pub gate: Verdict,
    pub status_reason: String,
    pub reviewer: String,
    pub top_issues: Vec<TopIssue>,
    pub waiver: Waiver,
    pub security: Option<Nfr>,
    pub performance: Option<Nfr>,
}

impl GateFile {
    /// The `top_issues` of severity `high`: blocking bugs.
    pub fn high_issues(&self) -> impl Iterator<Item = &TopIssue> {
        self.top_issues.iter().filter(|issue| issue.severity == Severity::High)
    }
}

/// The gate files in `paths.qa_gates`, sorted (editors' droppings left out).
pub fn files(ws: &Workspace) -> Vec<String> {
    let dir = ws.config.paths.qa_gates.trim_end_matches('/');
    let mut names: Vec<String> = fs::read_dir(ws.path(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| (name.ends_with(".yml") || name.ends_with(".yaml")) && !crate::workspace::editor_dropping(name))
        .collect();
    names.sort();
    names.into_iter().map(|name| format!("{dir}/{name}")).collect()
}

/// The story a gate file's name is for: `1.3` of `1.3-user-auth-login.yml`.
pub fn story_of_name(file: &str) -> Option<&str> {
    let name = file.rsplit('/').next()?;
    let stem = name.strip_suffix(".yml").or_else(|| name.strip_suffix(".yaml"))?;
    Some(stem.split_once('-').map_or(stem, |(story, _)| story))
}

/// Reads and checks one gate file. A file whose name names a story (`1.3-...`) must hold
/// that story.
pub fn load_file(ws: &Workspace, file: &str) -> Result<Option<GateFile>, Vec<Diagnostic>> {
    match ws.read_text(file) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => decode(file, &text).map(Some),
        Err(problem) => Err(vec![problem]),
    }
}

/// The gate file for `unit`: the one whose `story` is the unit. A broken file whose name
/// says it is for the unit is an error (it might be the verdict); broken files of other
/// stories are `validate`'s to report. Two files for one story are an error naming both.
pub fn load_for(ws: &Workspace, unit: &str) -> Result<Option<GateFile>, Vec<Diagnostic>> {
    let mut found: Option<GateFile> = None;
    let mut problems = Vec::new();
    for file in files(ws) {
        let name = file.rsplit('/').next().unwrap_or_default();
        let named_for_unit = [".yml", ".yaml", "-"].iter().any(|end| name.starts_with(&format!("{unit}{end}")));
        match load_file(ws, &file) {
            Ok(Some(gate)) if gate.story == unit => match &found {
                Some(first) => problems.push(Diagnostic::new(
                    &file,
                    Kind::DuplicateId,
                    format!(
                        "a second gate file for story {unit} (the first is {}): opsflow does not choose between two verdicts; remove or merge one",
                        first.file
                    ),
                )),
                None => found = Some(gate),
            },
            Ok(_) => {}
            Err(diagnostics) if named_for_unit => problems.extend(diagnostics),
            Err(_) => {}
        }
    }
    if problems.is_empty() { Ok(found) } else { Err(problems) }
}

/// Decodes the text of a gate file; every problem found, each at its key.
pub fn decode(file: &str, text: &str) -> Result<GateFile, Vec<Diagnostic>> {
    let yaml = read::parse_yaml(file, text).map_err(|problem| vec![problem])?;
    let mut problems = Vec::new();
    let at = |pointer: &str, message: String| {
        let diagnostic = Diagnostic::new(file, Kind::Schema, message).pointer(pointer);
        match position(text, pointer) {
            Some((line, column)) => diagnostic.at(line, column),
            None => diagnostic,
        }
    };
    if !matches!(yaml, Yaml::Hash(_)) {
        return Err(vec![Diagnostic::new(
            file,
            Kind::Schema,
            "a BMAD QA gate file is a YAML mapping with at least `story` and `gate`",
        )]);
    }
    let story = match scalar(&yaml["story"]) {
        _ if yaml["story"].is_badvalue() => {
            problems.push(at("", "no `story` (`story: \"<epic>.<story>\"`, the unit it is for)".into()));
            String::new()
        }
        Some(story) if !story.trim().is_empty() => story,
        _ => {
            problems.push(at(
                "/story",
                format!("`story` must be a story number such as \"1.3\", found {}", shown(&yaml["story"])),
            ));
            String::new()
        }
    };
    if let Some(named) = story_of_name(file)
        && !story.is_empty()
        && named.contains('.')
        && named != story
    {
        problems.push(at("/story", format!("`story` is \"{story}\" but the file name says {named}")));
    }
    let gate = match scalar(&yaml["gate"]).as_deref().and_then(Verdict::parse) {
        Some(gate) => Some(gate),
        None if yaml["gate"].is_badvalue() => {
            problems.push(at("", "no `gate` (PASS, CONCERNS, FAIL or WAIVED)".into()));
            None
        }
        None => {
            problems.push(at(
                "/gate",
                format!("`gate` must be PASS, CONCERNS, FAIL or WAIVED, found {}", shown(&yaml["gate"])),
            ));
            None
        }
    };
    let text_of = |key: &str| scalar(&yaml[key]).unwrap_or_default();
    let mut top_issues = Vec::new();
    match &yaml["top_issues"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::Array(list) => {
            for (index, issue) in list.iter().enumerate() {
                let pointer = format!("/top_issues/{index}/severity");
                let severity = match scalar(&issue["severity"]).as_deref().map(str::trim) {
                    Some("low") => Some(Severity::Low),
                    Some("medium") => Some(Severity::Medium),
                    Some("high") => Some(Severity::High),
                    _ => {
                        problems.push(at(
                            &pointer,
                            format!(
                                "`severity` of top_issues item {index} must be low, medium or high, found {}",
                                shown(&issue["severity"])
                            ),
                        ));
                        None
                    }
                };
                if let Some(severity) = severity {
                    top_issues.push(TopIssue {
                        id: scalar(&issue["id"]).unwrap_or_else(|| format!("top_issues item {index}")),
                        severity,
                        finding: scalar(&issue["finding"]).unwrap_or_default(),
                    });
                }
            }
        }
        other => problems.push(at("/top_issues", format!("`top_issues` must be a list, found {}", shown(other)))),
    }
    let waiver = match &yaml["waiver"] {
        Yaml::BadValue | Yaml::Null => Waiver::default(),
        Yaml::Hash(_) => {
            let waiver = &yaml["waiver"];
            let active = match &waiver["active"] {
                Yaml::Boolean(active) => *active,
                Yaml::BadValue | Yaml::Null => false,
                other => {
                    problems.push(at(
                        "/waiver/active",
                        format!("`waiver.active` must be true or false, found {}", shown(other)),
                    ));
                    false
                }
            };
            Waiver {
                active,
                reason: scalar(&waiver["reason"]).unwrap_or_default(),
                approved_by: scalar(&waiver["approved_by"]).unwrap_or_default().trim().to_owned(),
            }
        }
        other => {
            problems.push(at(
                "/waiver",
                format!("`waiver` must be a mapping (`{{ active: false }}`), found {}", shown(other)),
            ));
            Waiver::default()
        }
    };
    let mut nfr = |key: &str| -> Option<Nfr> {
        let entry = &yaml["nfr_validation"][key];
        if entry.is_badvalue() || entry.is_null() {
            return None;
        }
        match scalar(&entry["status"]).as_deref().and_then(Verdict::parse) {
            Some(status) if status != Verdict::Waived => {
                Some(Nfr { status, notes: scalar(&entry["notes"]).unwrap_or_default() })
            }
            _ => {
                problems.push(at(
                    &format!("/nfr_validation/{key}/status"),
                    format!(
                        "`nfr_validation.{key}.status` must be PASS, CONCERNS or FAIL, found {}",
                        shown(&entry["status"])
                    ),
                ));
                None
            }
        }
    };
    let security = nfr("security");
    let performance = nfr("performance");
    match gate {
        Some(gate) if problems.is_empty() => Ok(GateFile {
            file: file.to_owned(),
            sha256: sha256::hex(text.as_bytes()),
            story,
            gate,
            status_reason: text_of("status_reason"),
            reviewer: text_of("reviewer"),
            top_issues,
            waiver,
            security,
            performance,
        }),
        _ => Err(problems),
    }
}

/// A scalar as its text: a string, or a number or boolean as written (`1.10` stays `1.10`).
fn scalar(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Boolean(yes) => Some(yes.to_string()),
        _ => None,
    }
}

/// A value as a message quotes it.
fn shown(yaml: &Yaml) -> String {
    match yaml {
        Yaml::BadValue => "nothing".to_owned(),
        Yaml::Null => "null".to_owned(),
        Yaml::Array(_) => "a list".to_owned(),
        Yaml::Hash(_) => "a mapping".to_owned(),
        other => crate::workspace::diagnostic::excerpt(&scalar(other).unwrap_or_default(), "`", "`"),
    }
}

/// The one-based line and column of the key a pointer names, as for front matter.
fn position(text: &str, pointer: &str) -> Option<(usize, usize)> {
    let wrapped = format!("---\n{text}\n---\n");
    read::front_matter_position(&wrapped, pointer).map(|(line, column)| (line.saturating_sub(1).max(1), column))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONCERNS: &str = include_str!("../../tests/fixtures/bmad/1.3-user-auth-login.yml");
    const WAIVED: &str = include_str!("../../tests/fixtures/bmad/1.3-user-auth-login-waived.yml");
    const PASS: &str = include_str!("../../tests/fixtures/bmad/1.3-user-auth-login-pass.yml");

    #[test]
    fn the_bmad_examples_read_as_written() {
        let gate = decode("docs/qa/gates/1.3-user-auth-login.yml", CONCERNS).unwrap();
        assert_eq!((gate.story.as_str(), gate.gate), ("1.3", Verdict::Concerns));
        assert_eq!(gate.high_issues().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["SEC-001"]);
        assert_eq!(gate.security, Some(Nfr { status: Verdict::Concerns, notes: "Rate limiting missing".into() }));
        assert_eq!(gate.performance.as_ref().map(|n| n.status), Some(Verdict::Pass));
        assert!(!gate.waiver.active);

        let waived = decode("docs/qa/gates/1.3-user-auth-login.yml", WAIVED).unwrap();
        assert_eq!(waived.gate, Verdict::Waived);
        assert_eq!(
            waived.waiver,
            Waiver {
                active: true,
                reason: "MVP release - performance optimization deferred".into(),
                approved_by: "Product Owner".into()
            }
        );
        let pass = decode("docs/qa/gates/1.3-user-auth-login.yml", PASS).unwrap();
        assert_eq!((pass.gate, pass.top_issues.len()), (Verdict::Pass, 0));
        assert_eq!(pass.reviewer, "Quinn (Test Architect)");
    }

    #[test]
    fn a_story_written_as_a_number_keeps_its_digits() {
        let gate = decode("g/1.10-x.yml", "story: 1.10\ngate: PASS\n").unwrap();
        assert_eq!(gate.story, "1.10");
    }

    #[test]
    fn bad_values_are_reported_at_their_key() {
        let text =
            "story: '1.3'\ngate: MAYBE\ntop_issues:\n  - id: X\n    severity: critical\nwaiver: { active: 'yes' }\n";
        let problems: Vec<String> =
            decode("docs/qa/gates/1.3-x.yml", text).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "docs/qa/gates/1.3-x.yml:2:1: at /gate: `gate` must be PASS, CONCERNS, FAIL or WAIVED, found `MAYBE`",
                "docs/qa/gates/1.3-x.yml:5:5: at /top_issues/0/severity: `severity` of top_issues item 0 must be low, medium or high, found `critical`",
                "docs/qa/gates/1.3-x.yml:6:11: at /waiver/active: `waiver.active` must be true or false, found `yes`",
            ]
        );
    }

    #[test]
    fn a_story_other_than_the_file_name_says_is_an_error() {
        let problems = decode("docs/qa/gates/1.3-x.yml", "story: '1.4'\ngate: PASS\n").unwrap_err();
        assert_eq!(
            problems[0].to_string(),
            "docs/qa/gates/1.3-x.yml:1:1: at /story: `story` is \"1.4\" but the file name says 1.3"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused_on_its_line() {
        let problems = decode("g.yml", "story: '1.3'\ngate: FAIL\ngate: PASS\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3), "{}", problems[0]);
        assert!(problems[0].message.contains("the key `gate` twice"), "{}", problems[0]);
    }

    #[test]
    fn story_of_name_takes_what_precedes_the_slug() {
        assert_eq!(story_of_name("docs/qa/gates/1.3-user-auth-login.yml"), Some("1.3"));
        assert_eq!(story_of_name("docs/qa/gates/2.1.yaml"), Some("2.1"));
        assert_eq!(story_of_name("docs/qa/gates/notes.txt"), None);
    }
}
