//! What the record says, for people and gates: the commit a release was built from, whether
//! a release contains what is live (the check that keeps a release from silently undoing
//! another), and the lines `status` and `history` print.
//!
//! The decisions here are pure functions of what they are given (the record, the commits,
//! and a `contains` question answered by git), so they are tested in-process.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::record::{Deployment, EventKind, Record, ReleaseRef, label};

/// How long a git question of these checks may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The commit of the work tree at `root` and whether tracked files have uncommitted
/// changes; `None` outside a git repository (or without a first commit).
pub fn head_commit(root: &Path) -> Option<(String, bool)> {
    let head = crate::git::run(root, &["rev-parse", "--verify", "-q", "HEAD"], GIT_TIMEOUT).ok()?;
    let commit = head.stdout.trim().to_owned();
    if !head.success || commit.is_empty() {
        return None;
    }
    let dirty = crate::git::run(root, &["status", "--porcelain", "--untracked-files=no"], GIT_TIMEOUT)
        .ok()
        .filter(|s| s.success)
        .is_some_and(|s| !s.stdout.trim().is_empty());
    Some((commit, dirty))
}

/// Whether the history of `commit` contains `ancestor` (`git merge-base --is-ancestor`):
/// `Err` when git cannot say (not a repository, a commit it does not have).
pub fn contains(root: &Path, commit: &str, ancestor: &str) -> Result<bool, String> {
    for id in [commit, ancestor] {
        if !is_commit_id(id) {
            return Err(format!("{:?} is not a commit id", short(id)));
        }
    }
    let out = crate::git::run(root, &["merge-base", "--is-ancestor", ancestor, commit], GIT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    match out.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!(
            "git cannot compare {} with {}: {}",
            short(commit),
            short(ancestor),
            out.stderr.trim().lines().next().unwrap_or("unknown commit")
        )),
    }
}

/// Whether the history of `commit` contains each of `ancestors`, in one `git rev-list` (the
/// commits reachable from them and not from `commit`: an ancestor listed there is not
/// contained) instead of one git process each, so that the check costs the same after a
/// thousand releases. When git cannot answer for all of them at once (a commit it does not
/// have), each is asked alone, so that each answer or error is its own.
pub fn contains_each(root: &Path, commit: &str, ancestors: &[&str]) -> Vec<Result<bool, String>> {
    let full = |id: &str| is_commit_id(id) && matches!(id.len(), 40 | 64);
    if ancestors.len() > 1 && full(commit) && ancestors.iter().all(|a| full(a)) {
        let not = format!("^{commit}");
        let mut args = vec!["rev-list"];
        args.extend_from_slice(ancestors);
        args.extend([not.as_str(), "--"]);
        if let Ok(out) = crate::git::run(root, &args, GIT_TIMEOUT)
            && out.success
        {
            let missing: std::collections::HashSet<&str> = out.stdout.lines().collect();
            return ancestors.iter().map(|a| Ok(!missing.contains(a))).collect();
        }
    }
    ancestors.iter().map(|a| contains(root, commit, a)).collect()
}

/// A commit id as git prints one: hexadecimal, 4 to 64 digits (never an option or a range).
fn is_commit_id(id: &str) -> bool {
    (4..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What the commit check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// The release contains every shipped release's commit, or there is nothing to compare.
    Contains(String),
    /// The check cannot be made (no commits recorded, not a git repository): a note.
    Unchecked(String),
    /// Shipping the release would remove the shipped changes of these releases (labels);
    /// the sentence names the live one.
    Removes { releases: Vec<ReleaseRef>, units: Vec<String>, detail: String },
}

/// Whether `release` (built from `commit`) contains what is live in the environment and
/// every release shipped there before that the record keeps, by `contains(commit,
/// ancestors)`, which answers for each ancestor in order ([`contains_each`]).
pub fn containment(
    release: &str,
    commit: Option<&str>,
    record: &Record,
    live: Option<&Deployment>,
    contains: impl Fn(&str, &[&str]) -> Vec<Result<bool, String>>,
) -> Containment {
    let Some(live) = live else {
        return Containment::Contains("nothing is live to compare with".to_owned());
    };
    let Some(live_commit) = live.provenance.commit.as_deref() else {
        return Containment::Unchecked(format!("the live release {} has no recorded commit", live.label()));
    };
    let Some(commit) = commit else {
        return Containment::Unchecked(format!(
            "{release} has no recorded commit (built outside a git repository, or before commits were recorded)"
        ));
    };
    let mut removed: Vec<&Deployment> = Vec::new();
    let mut unknown = None;
    // The live release first, then every release shipped before it.
    let shipped: Vec<&Deployment> = std::iter::once(live)
        .chain(record.shipped().into_iter().filter(|d| d.run_id != live.run_id))
        .filter(|d| d.provenance.commit.is_some())
        .collect();
    let mut theirs: Vec<&str> = Vec::new();
    for d in &shipped {
        let ancestor = d.provenance.commit.as_deref().unwrap_or_default();
        if !theirs.contains(&ancestor) {
            theirs.push(ancestor);
        }
    }
    let answers = contains(commit, &theirs);
    for d in shipped {
        let ancestor = d.provenance.commit.as_deref().unwrap_or_default();
        if removed.iter().any(|r| r.unit_id == d.unit_id && r.version == d.version) {
            continue;
        }
        let answer = theirs.iter().position(|t| *t == ancestor).and_then(|i| answers.get(i)).cloned();
        match answer.unwrap_or_else(|| Err("git gave no answer".to_owned())) {
            Ok(true) => {}
            Ok(false) => removed.push(d),
            Err(why) if d.run_id == live.run_id => unknown = Some(why),
            Err(_) => {}
        }
    }
    if let Some(why) = unknown {
        return Containment::Removes {
            releases: vec![live.release()],
            units: vec![live.unit_id.clone()],
            detail: format!(
                "cannot tell whether {release} (commit {}) contains the live release {} (commit {}): {why}",
                short(commit),
                live.label(),
                short(live_commit)
            ),
        };
    }
    if removed.is_empty() {
        return Containment::Contains(format!(
            "{release} (commit {}) contains the live release {} (commit {})",
            short(commit),
            live.label(),
            short(live_commit)
        ));
    }
    let mut units: Vec<String> = Vec::new();
    for d in &removed {
        if !units.contains(&d.unit_id) {
            units.push(d.unit_id.clone());
        }
    }
    let releases: Vec<ReleaseRef> = removed.iter().map(|d| d.release()).collect();
    let live_removed = removed.iter().any(|d| d.run_id == live.run_id);
    let head = if live_removed {
        format!(
            "{release} (commit {}) does not contain the live release {} (commit {})",
            short(commit),
            live.label(),
            short(live_commit)
        )
    } else {
        format!("{release} (commit {}) does not contain every release shipped before it", short(commit))
    };
    let detail = format!(
        "{head}: shipping it would remove the shipped changes of {} ({})",
        units.iter().map(|u| if u.is_empty() { "a release without a unit" } else { u }).collect::<Vec<_>>().join(", "),
        releases.iter().map(ReleaseRef::label).collect::<Vec<_>>().join(", ")
    );
    Containment::Removes { releases, units, detail }
}

/// One row of `opsflow history ENV`: a deployment and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub release: String,
    pub unit_id: String,
    pub version: String,
    pub status: String,
    pub live: bool,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub run_id: String,
    pub task: String,
    pub commit: Option<String>,
    pub dirty: Option<bool>,
    pub approved_by: Option<String>,
    pub replaced: Option<String>,
    pub reason: Option<String>,
    pub allowed_revert: Vec<String>,
    /// Rollbacks that undid this deployment: who, when, and what they restored.
    pub rolled_back: Vec<String>,
    /// `ssh`: what each host ran when this deployment was done with it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
}

/// The environment's deployments newest first, with the live one marked.
pub fn history_rows(record: &Record, live: Option<&Deployment>) -> Vec<HistoryRow> {
    record
        .deployments
        .iter()
        .rev()
        .map(|d| {
            let rolled_back = record
                .events
                .iter()
                .filter(|e| e.event == EventKind::RolledBack && e.unit_id == d.unit_id && e.version == d.version)
                .filter(|e| e.at.as_str() >= d.deployed_at.as_str())
                .map(|e| {
                    format!(
                        "{} by {}{}",
                        e.at,
                        e.by.as_deref().unwrap_or("opsflow"),
                        match &e.restored {
                            Some(r) => format!(", restoring {}", r.label()),
                            None => ", leaving nothing live".to_owned(),
                        }
                    )
                })
                .collect();
            HistoryRow {
                release: d.label(),
                unit_id: d.unit_id.clone(),
                version: d.version.clone(),
                status: d.status.to_string(),
                live: live.is_some_and(|l| l.run_id == d.run_id),
                started_at: d.deployed_at.clone(),
                ended_at: d.ended_at.clone(),
                run_id: d.run_id.clone(),
                task: d.provenance.task.clone(),
                commit: d.provenance.commit.clone(),
                dirty: d.provenance.dirty,
                approved_by: d.provenance.approved_by.clone(),
                replaced: d.replaced.as_ref().map(|r| r.label()),
                reason: d.reason.clone(),
                allowed_revert: d.provenance.allowed_revert.iter().map(|r| r.label()).collect(),
                rolled_back,
                hosts: d.hosts.clone(),
            }
        })
        .collect()
}

/// What one environment runs, as `status` and `history` show it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub environment: String,
    /// The record's file.
    pub record: String,
    /// The live release, described (`UNIT-001 1.2.0 (commit …, since …, approved by …)`).
    pub live: Option<String>,
    pub live_unit: Option<String>,
    pub live_version: Option<String>,
    pub live_commit: Option<String>,
    /// What the live release's last checks found: `healthy at its last check (T): ...`.
    pub last_check: Option<String>,
    /// What a rollback would restore now (the first of `restorable`).
    pub rollback_restores: Option<String>,
    pub restorable: Vec<String>,
    /// The record cannot be read: nothing deploys to or rolls back this environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `ssh`: what each host runs now (`UNIT-001@1.2.0`, `none`, `unknown`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
}

impl EnvironmentView {
    /// The view of an environment from its record; `live` and `restorable` are what the
    /// provider's state and the record say together.
    pub fn new(
        environment: &str,
        record_file: String,
        record: Result<(Option<Deployment>, Vec<Deployment>), String>,
    ) -> EnvironmentView {
        let mut view = EnvironmentView {
            environment: environment.to_owned(),
            record: record_file,
            live: None,
            live_unit: None,
            live_version: None,
            live_commit: None,
            last_check: None,
            rollback_restores: None,
            restorable: Vec::new(),
            error: None,
            hosts: BTreeMap::new(),
        };
        match record {
            Ok((live, restorable)) => {
                view.live = live.as_ref().map(describe_live);
                view.live_unit = live.as_ref().map(|d| d.unit_id.clone());
                view.live_version = live.as_ref().map(|d| d.version.clone());
                view.live_commit = live.as_ref().and_then(|d| d.provenance.commit.clone());
                view.last_check = live.as_ref().and_then(|d| d.last_check.as_ref()).map(|check| {
                    format!(
                        "{} at its last check ({}): {}",
                        if check.passed { "healthy" } else { "not healthy" },
                        check.at,
                        check.summary
                    )
                });
                view.restorable = restorable.iter().map(Deployment::label).collect();
                view.rollback_restores = view.restorable.first().cloned();
            }
            Err(e) => view.error = Some(e),
        }
        view
    }

    /// The lines `status` prints for it.
    pub fn lines(&self) -> Vec<String> {
        if let Some(error) = &self.error {
            return vec![format!("{}: {error}", self.environment)];
        }
        let live = match &self.live {
            Some(live) => format!("{}: {live} is live", self.environment),
            None => format!("{}: nothing is live", self.environment),
        };
        let mut lines = vec![live];
        for (host, runs) in &self.hosts {
            lines.push(format!("  {host} runs {}", host_release(runs)));
        }
        lines.extend(self.last_check.as_ref().map(|check| format!("  {check}")));
        match &self.rollback_restores {
            Some(release) => lines.push(format!("  a rollback would restore {release}")),
            None if self.live.is_some() => {
                lines.push("  a rollback has nothing to restore (only `--to none` takes it down)".to_owned())
            }
            None => {}
        }
        lines
    }
}

/// What a host runs, as every report names a release: `UNIT-001@1.2.0` is `UNIT-001 1.2.0`;
/// `none` is "nothing", `unknown` "an unknown release (it could not be reached)".
pub fn host_release(runs: &str) -> String {
    match runs {
        super::record::HOST_NOTHING => "nothing".to_owned(),
        super::record::HOST_UNKNOWN => "an unknown release (it could not be reached)".to_owned(),
        _ => match runs.split_once('@') {
            Some((unit, version)) => label(unit, version),
            None => runs.to_owned(),
        },
    }
}

/// `UNIT-001 1.2.0 (commit 1a2b3c4d5e6f, since 2026-…, approved by alice)`.
pub fn describe_live(d: &Deployment) -> String {
    let mut parts = Vec::new();
    if let Some(commit) = &d.provenance.commit {
        let dirty = if d.provenance.dirty == Some(true) { ", built with uncommitted changes" } else { "" };
        parts.push(format!("commit {}{dirty}", short(commit)));
    }
    parts.push(format!("since {}", d.ended_at.as_deref().unwrap_or(&d.deployed_at)));
    if let Some(by) = &d.provenance.approved_by {
        parts.push(format!("approved by {by}"));
    }
    format!("{} ({})", label(&d.unit_id, &d.version), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::record::{Provenance, Status};

    fn shipped(unit: &str, version: &str, commit: &str, run: &str) -> Deployment {
        Deployment {
            version: version.into(),
            unit_id: unit.into(),
            dir: format!("releases/{unit}/{version}"),
            status: Status::Good,
            deployed_at: "2026-01-01T00:00:00Z".into(),
            ended_at: None,
            run_id: run.into(),
            migrated: false,
            provenance: Provenance { commit: Some(commit.into()), ..Provenance::default() },
            replaced: None,
            reason: None,
            last_check: None,
            hosts: Default::default(),
            pruned: false,
        }
    }

    /// A linear history a -> b -> c; `x` is on a branch from `a`.
    fn contains_in_history(commit: &str, ancestors: &[&str]) -> Vec<Result<bool, String>> {
        ancestors.iter().map(|ancestor| contains_one(commit, ancestor)).collect()
    }

    fn contains_one(commit: &str, ancestor: &str) -> Result<bool, String> {
        let order = ["a", "b", "c"];
        let position = |c: &str| order.iter().position(|o| *o == c);
        match (commit, ancestor) {
            ("x", "a") | ("x", "x") => Ok(true),
            ("x", _) | (_, "x") => Ok(false),
            _ => match (position(commit), position(ancestor)) {
                (Some(c), Some(a)) => Ok(a <= c),
                _ => Err("unknown commit".into()),
            },
        }
    }

    #[test]
    fn one_git_call_answers_for_every_shipped_commit_and_a_commit_git_lacks_is_asked_alone() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        let commit = |message: &str| {
            git(&["commit", "-q", "--allow-empty", "-m", message]);
            git(&["rev-parse", "HEAD"])
        };
        let a = commit("a");
        let b = commit("b");
        git(&["checkout", "-q", "-b", "side", &a]);
        let x = commit("x");
        git(&["checkout", "-q", "main"]);
        let c = commit("c");
        let answers = contains_each(dir.path(), &c, &[&a, &b, &x, &c]);
        assert_eq!(answers, [Ok(true), Ok(true), Ok(false), Ok(true)]);
        let gone = "0123456789abcdef0123456789abcdef01234567";
        let answers = contains_each(dir.path(), &c, &[&a, gone, &x]);
        assert_eq!(answers[0], Ok(true));
        assert!(answers[1].as_ref().is_err_and(|e| e.contains("git cannot compare")), "{answers:?}");
        assert_eq!(answers[2], Ok(false));
        // A record's commit is never handed to git as an option.
        let answers = contains_each(dir.path(), &c, &[&a, "--output=/tmp/x"]);
        assert_eq!(answers[0], Ok(true));
        assert!(answers[1].as_ref().is_err_and(|e| e.contains("is not a commit id")), "{answers:?}");
    }

    #[test]
    fn an_older_build_that_lacks_the_live_release_names_it_and_its_unit() {
        let record = Record {
            deployments: vec![shipped("UNIT-001", "0.1.0", "a", "r1"), shipped("UNIT-003", "1.0.1", "c", "r2")],
            events: vec![],
            ..Record::default()
        };
        let live = record.deployments.last();
        let found = containment("UNIT-001 0.2.0", Some("b"), &record, live, contains_in_history);
        let Containment::Removes { releases, units, detail } = found else { panic!("{found:?}") };
        assert_eq!(releases, [ReleaseRef::new("UNIT-003", "1.0.1")]);
        assert_eq!(units, ["UNIT-003"]);
        assert!(detail.starts_with("UNIT-001 0.2.0 (commit b) does not contain the live release UNIT-003 1.0.1"));
    }

    #[test]
    fn a_release_built_on_top_of_what_is_live_passes_and_a_branch_removes_every_release_it_lacks() {
        let record = Record {
            deployments: vec![shipped("UNIT-001", "0.1.0", "a", "r1"), shipped("UNIT-002", "0.1.0", "b", "r2")],
            events: vec![],
            ..Record::default()
        };
        let live = record.deployments.last();
        assert!(matches!(
            containment("UNIT-001 0.3.0", Some("c"), &record, live, contains_in_history),
            Containment::Contains(_)
        ));
        let Containment::Removes { releases, .. } =
            containment("UNIT-004 1.0.0", Some("x"), &record, live, contains_in_history)
        else {
            panic!()
        };
        assert_eq!(releases, [ReleaseRef::new("UNIT-002", "0.1.0")]);
    }

    #[test]
    fn without_recorded_commits_the_check_says_it_cannot_be_made() {
        let record =
            Record { deployments: vec![shipped("UNIT-001", "0.1.0", "a", "r1")], events: vec![], ..Record::default() };
        let found = containment("UNIT-001 0.2.0", None, &record, record.deployments.last(), contains_in_history);
        assert!(
            matches!(found, Containment::Unchecked(ref why) if why.contains("has no recorded commit")),
            "{found:?}"
        );
        let found = containment("UNIT-001 0.2.0", Some("q"), &record, None, contains_in_history);
        assert!(matches!(found, Containment::Contains(_)));
    }

    #[test]
    fn a_live_commit_git_does_not_know_blocks_with_the_reason() {
        let record = Record {
            deployments: vec![shipped("UNIT-001", "0.1.0", "gone", "r1")],
            events: vec![],
            ..Record::default()
        };
        let found = containment("UNIT-001 0.2.0", Some("c"), &record, record.deployments.last(), contains_in_history);
        let Containment::Removes { detail, .. } = found else { panic!() };
        assert!(detail.contains("cannot tell whether UNIT-001 0.2.0"), "{detail}");
    }
}
