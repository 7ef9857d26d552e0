//! A release (a unit at a version) and the one rule for its artifacts: which scope a file
//! belongs to, how a release finds its inputs, and where it writes its outputs.
//!
//! Environment artifacts (INFRA04 to INFRA13) describe the environments and belong to no
//! release: any release uses them. Release artifacts (R06 to R18, D21 to D23, the deployment
//! report, the QA reports and R04 that other agents write) belong to one release, bound by
//! their front matter `unit_id` and `version`. A workspace ships many releases, so every
//! question "is this file this release's?" is answered here and nowhere else.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::engine::artifacts::Artifact;
use crate::sha256;
use crate::store::file::StoreError;
use crate::validate::load_markdown;
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::{Workspace, check_path_component};

/// Why a release directory does not check out against its `SHA256SUMS`, or a history copy
/// could not be kept. Each names the release directory (`dir`) and the file.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// `SHA256SUMS` is missing or unreadable.
    #[error("{}/SHA256SUMS: {source}", dir.display())]
    Sums { dir: PathBuf, source: std::io::Error },
    #[error("{}/SHA256SUMS: malformed line {line:?}", dir.display())]
    Malformed { dir: PathBuf, line: String },
    #[error("{}/SHA256SUMS names a path outside the release: {file}", dir.display())]
    Outside { dir: PathBuf, file: String },
    /// A file `SHA256SUMS` lists is missing or unreadable.
    #[error("{}/{file}: {source}", dir.display())]
    Unreadable { dir: PathBuf, file: String, source: std::io::Error },
    #[error(
        "{}/{file} does not match SHA256SUMS (expected {expected}, found {actual}): the release was changed after it was built",
        dir.display()
    )]
    Mismatch { dir: PathBuf, file: String, expected: String, actual: String },
    #[error(
        "{}/{file} is in the release but not in SHA256SUMS: the release was changed after it was built",
        dir.display()
    )]
    Unlisted { dir: PathBuf, file: String },
    /// The release directory could not be listed.
    #[error("{}: cannot list the release: {source}", dir.display())]
    List { dir: PathBuf, source: std::io::Error },
    /// The history copy's path is not a safe one inside the workspace.
    #[error("{0}")]
    HistoryPath(Box<Diagnostic>),
    #[error("{relative}: {source}")]
    History { relative: String, source: StoreError },
}

/// A version as written (`1.2.3` or `v1.2.3`). Two versions are the same when they are equal
/// without one leading `v`; the git tag is always `v` plus that bare form.
#[derive(Debug, Clone, Default)]
pub struct Version(String);

impl Version {
    pub fn new(text: impl Into<String>) -> Version {
        Version(text.into().trim().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The version without one leading `v`: what directories and tags are named after.
    pub fn bare(&self) -> &str {
        bare(&self.0)
    }

    /// The git tag of this version: `v1.2.3`, never `vv1.2.3`.
    pub fn tag(&self) -> String {
        format!("v{}", self.bare())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.bare() == other.bare()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bare(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('v').filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit())).unwrap_or(text)
}

/// Whether two versions as written are the same release version (`v1.2.3` = `1.2.3`).
pub fn same_version(a: &str, b: &str) -> bool {
    bare(a) == bare(b)
}

/// A unit at a version. Either part may be unknown (empty): a node without a unit, or a task
/// whose version is not known yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Release {
    pub unit: String,
    pub version: Version,
}

impl Release {
    pub fn new(unit: impl Into<String>, version: impl Into<String>) -> Release {
        Release { unit: unit.into().trim().to_owned(), version: Version::new(version) }
    }

    pub fn unit(&self) -> Option<&str> {
        (!self.unit.is_empty()).then_some(self.unit.as_str())
    }

    pub fn version(&self) -> Option<&str> {
        (!self.version.is_empty()).then_some(self.version.as_str())
    }

    /// Whether a file whose front matter says `unit_id: unit` and `version: version` serves
    /// this release: a file without `unit_id` serves any unit, one without `version` any
    /// version of its unit.
    pub fn accepts(&self, unit: Option<&str>, version: Option<&str>) -> bool {
        let unit_ok = match (unit.map(str::trim).filter(|u| !u.is_empty()), self.unit()) {
            (Some(bound), Some(mine)) => bound == mine,
            _ => true,
        };
        let version_ok = match (version.map(str::trim).filter(|v| !v.is_empty()), self.version()) {
            (Some(bound), Some(mine)) => same_version(bound, mine),
            _ => true,
        };
        unit_ok && version_ok
    }

    /// `UNIT-7 1.4.0`, `UNIT-7`, `1.4.0` or `no release`: how messages name a release.
    pub fn label(&self) -> String {
        match (self.unit(), self.version()) {
            (Some(unit), Some(version)) => format!("{unit} {version}"),
            (Some(unit), None) => unit.to_owned(),
            (None, Some(version)) => version.to_owned(),
            (None, None) => "no release".to_owned(),
        }
    }

    /// The name suffix of this release's own copy of a file: `-UNIT-7-1.4.0`.
    fn suffix(&self) -> Option<String> {
        match (self.unit(), self.version()) {
            (Some(unit), Some(_)) => Some(format!("-{unit}-{}", self.version.bare())),
            _ => None,
        }
    }

    /// Where this release's history is kept: `<releases>/<UNIT>/<version>`, when both are known.
    pub fn history_dir(&self, ws: &Workspace) -> Option<String> {
        let unit = self.unit()?;
        self.version()?;
        if check_path_component(unit).is_err() || check_path_component(self.version.bare()).is_err() {
            return None;
        }
        Some(format!("{}/{unit}/{}", ws.config.paths.releases.trim_end_matches('/'), self.version.bare()))
    }
}

/// Which scope a file belongs to, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Describes the environments; belongs to no release.
    Environment,
    /// Belongs to one release.
    Release,
}

pub fn scope(name: &str) -> Scope {
    if name.starts_with("INFRA") { Scope::Environment } else { Scope::Release }
}

/// Files a human or another agent acts on: never replaced by another release's copy.
fn actionable(name: &str) -> bool {
    name.starts_with("R12-") || name.starts_with("R17-")
}

/// What looking for a release's input found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Artifact),
    Missing,
    /// The file exists but its front matter names another release.
    Elsewhere {
        file: String,
        release: Release,
    },
}

impl Lookup {
    pub fn found(self) -> Option<Artifact> {
        match self {
            Lookup::Found(artifact) => Some(artifact),
            _ => None,
        }
    }

    /// Why the input is not there for `release`, for a blocked reason: "missing", or whose
    /// file it is.
    pub fn why_not(&self, ws: &Workspace, name: &str, release: &Release) -> String {
        match self {
            Lookup::Found(artifact) => format!("{} is there", artifact.file),
            Lookup::Missing => format!("input {}/{name} is missing", ws.config.paths.artifacts.trim_end_matches('/')),
            Lookup::Elsewhere { file, release: other } => {
                format!("{file} is for {}, not {}", other.label(), release.label())
            }
        }
    }
}

fn artifacts_dir(ws: &Workspace) -> String {
    ws.config.paths.artifacts.trim_end_matches('/').to_owned()
}

/// The file names a release's copy of `name` may have, most specific first.
fn candidates(ws: &Workspace, name: &str, release: &Release) -> Vec<String> {
    let dir = artifacts_dir(ws);
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let mut out = Vec::new();
    if scope(name) == Scope::Release {
        if let Some(suffix) = release.suffix() {
            out.push(format!("{dir}/{stem}{suffix}.md"));
        }
        if let Some(unit) = release.unit() {
            out.push(format!("{dir}/{stem}-{unit}.md"));
        }
    }
    out.push(format!("{dir}/{name}"));
    // opsflow's own outputs are also kept per release; R12 and R17 are answered by humans in
    // the artifacts folder, so their history copies never count as an answer.
    if scope(name) == Scope::Release
        && !actionable(name)
        && let Some(history) = release.history_dir(ws)
    {
        out.push(format!("{history}/{name}"));
    }
    out
}

/// Finds `name` (e.g. `R08-staging-deploy.md`) for `release`. Environment artifacts are found
/// by their plain name whatever their front matter says. `Err` when a file that would serve
/// the release exists but is invalid.
pub fn find(ws: &Workspace, name: &str, release: &Release) -> Result<Lookup, Vec<Diagnostic>> {
    if let Some(unit) = release.unit() {
        check_path_component(unit)
            .map_err(|why| vec![Diagnostic::new(artifacts_dir(ws), Kind::OutsideWorkspace, why.to_string())])?;
    }
    let mut elsewhere = None;
    for file in candidates(ws, name, release) {
        let loaded = load_markdown(ws, &file, crate::validate::artifact_schema(name));
        if !loaded.diagnostics.is_empty() {
            return Err(loaded.diagnostics);
        }
        let Some(doc) = loaded.doc else { continue };
        let front_matter = doc.front_matter.clone().unwrap_or(Value::Object(Default::default()));
        let field = |key: &str| front_matter.get(key).and_then(Value::as_str).map(str::to_owned);
        let (unit, version) = (field("unit_id"), field("version"));
        if scope(name) == Scope::Release && !release.accepts(unit.as_deref(), version.as_deref()) {
            elsewhere.get_or_insert_with(|| Lookup::Elsewhere {
                file: file.clone(),
                release: Release::new(unit.unwrap_or_default(), version.unwrap_or_default()),
            });
            continue;
        }
        let text = ws.read_text(&file).ok().flatten().unwrap_or_default();
        return Ok(Lookup::Found(Artifact {
            file,
            front_matter,
            body: doc.body,
            sha256: sha256::hex(text.as_bytes()),
        }));
    }
    Ok(elsewhere.unwrap_or(Lookup::Missing))
}

/// The `unit_id` and `version` an existing file names (a markdown file's front matter, a JSON
/// report's top level), if it parses.
pub(crate) fn bound_release(ws: &Workspace, file: &str) -> Option<Release> {
    let text = ws.read_text(file).ok().flatten()?;
    let fields = if file.ends_with(".json") {
        crate::workspace::read::parse_json(file, &text).ok()?
    } else {
        crate::workspace::read::parse_markdown(file, &text).ok()?.front_matter?
    };
    let field = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Some(Release::new(field("unit_id"), field("version")))
}

/// Where `release` writes its copy of `name`. The plain name holds the newest release's copy,
/// except that a file a human or another agent may still act on (an approval request, a
/// rollback decision) of another release is never replaced: this release's copy then goes
/// beside it as `<name>-<UNIT_ID>-<version>.md`. A copy of this release already written
/// under that name is written there again.
pub fn output_path(ws: &Workspace, name: &str, release: &Release) -> String {
    let dir = artifacts_dir(ws);
    let plain = format!("{dir}/{name}");
    if scope(name) == Scope::Environment {
        return plain;
    }
    let Some(suffix) = release.suffix() else { return plain };
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let own = format!("{dir}/{stem}{suffix}.md");
    if ws.path(&own).symlink_metadata().is_ok() {
        return own;
    }
    match bound_release(ws, &plain) {
        Some(other) if actionable(name) && !(other.unit == release.unit && other.version == release.version) => own,
        None if actionable(name) && ws.path(&plain).symlink_metadata().is_ok() => own,
        _ => plain,
    }
}

/// Keeps a copy of an output in the release's history folder, where it is never overwritten
/// by another release. Returns the copy's path.
pub fn keep_in_history(
    ws: &Workspace,
    release: &Release,
    name: &str,
    text: &str,
) -> Result<Option<String>, ReleaseError> {
    let Some(dir) = release.history_dir(ws) else { return Ok(None) };
    let relative = format!("{dir}/{name}");
    let path = ws.inside(&relative).map_err(|d| ReleaseError::HistoryPath(Box::new(d)))?;
    crate::store::file::write_atomic(&ws.root, &path, text.as_bytes())
        .map_err(|source| ReleaseError::History { relative: relative.clone(), source })?;
    Ok(Some(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_without_one_leading_v() {
        assert_eq!(Version::new("v1.2.3"), Version::new("1.2.3"));
        assert_ne!(Version::new("1.2.3"), Version::new("1.2.4"));
        assert_eq!(Version::new("v1.2.3").tag(), "v1.2.3");
        assert_eq!(Version::new("1.2.3").tag(), "v1.2.3");
        assert_eq!(Version::new("vv1").bare(), "vv1");
        assert_eq!(Version::new("version-2").bare(), "version-2");
        assert!(same_version("v2.0.0", "2.0.0"));
    }

    #[test]
    fn a_file_serves_the_releases_its_front_matter_allows() {
        let release = Release::new("UNIT-1", "1.1.0");
        assert!(release.accepts(None, None));
        assert!(release.accepts(Some("UNIT-1"), None));
        assert!(release.accepts(Some("UNIT-1"), Some("v1.1.0")));
        assert!(!release.accepts(Some("UNIT-2"), Some("1.1.0")));
        assert!(!release.accepts(Some("UNIT-1"), Some("1.0.0")));
        assert!(release.accepts(None, Some("1.1.0")));
        assert_eq!(Release::new("UNIT-7", "1.4.0").label(), "UNIT-7 1.4.0");
    }
}
