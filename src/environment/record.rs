//! The record of one environment: every deployment made to it (the release by unit and
//! version, the commit it was built from, the digest of its artifacts, who approved it, when
//! it started and ended, its status, the release it replaced) and every change of what is
//! live (deploys, pauses, a human's decisions, rollbacks), oldest first.
//!
//! It is the environment's `releases.json` (in the `local` provider's directory, or
//! `<runtime>/envs/<name>/releases.json` for the `command` provider), written whole and
//! atomically on every change, so a `kill -9` leaves the old or the new record and never half
//! of one. It is opsflow's own file in the runtime directory, so `git checkout` and `git
//! stash` do not move it. A record that cannot be read is an error naming the file and the
//! place, never an empty history: acting on it would take down what is live.
//!
//! The record stays small however many releases an environment has had: once it holds more
//! than [`RECENT`] + [`SLACK`] deployments, [`Record::compact`] moves the old deployments
//! nothing needs any more (not deploying, not restorable, not the newest in a directory that
//! is still there) and their events to `releases-archive.jsonl` beside it, one JSON object per
//! line, appended and made durable before the record is rewritten without them. Every pass,
//! deploy and rollback reads the record only; `opsflow history` reads both ([`load_all`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::write;

/// Where a deployment stands. A release marked `bad` (failed its checks, or undone by a
/// rollback) is never restored by a rollback; `replaced` means its directory now holds a
/// later release, so it cannot be restored either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started and not finished: the run is going on, or it was cut off.
    Deploying,
    Good,
    Bad,
    Replaced,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deploying => "deploying",
            Status::Good => "good",
            Status::Bad => "bad",
            Status::Replaced => "replaced",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release as the record names it: always its unit and its version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    #[serde(default)]
    pub unit_id: String,
    pub version: String,
}

impl ReleaseRef {
    pub fn new(unit_id: impl Into<String>, version: impl Into<String>) -> ReleaseRef {
        ReleaseRef { unit_id: unit_id.into(), version: version.into() }
    }

    /// `UNIT-003 1.0.1`, or the bare version for a release without a unit.
    pub fn label(&self) -> String {
        label(&self.unit_id, &self.version)
    }
}

/// How every report names a release: `UNIT-003 1.0.1`, or `1.0.1` without a unit.
pub fn label(unit: &str, version: &str) -> String {
    if unit.is_empty() { version.to_owned() } else { format!("{unit} {version}") }
}

/// What the record knows of where a release comes from, given when its deployment starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The task that deployed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// The git commit it was built from (`git rev-parse HEAD` at build time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether the working tree had uncommitted changes when it was built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// The digest of its `SHA256SUMS` as built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Releases whose shipped changes this one does not contain and which a person let it
    /// remove on purpose (`allow_revert` in the approval).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_revert: Vec<ReleaseRef>,
}

/// One deployment of a release to the environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub version: String,
    /// The unit whose release this is (empty for a release without a unit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit_id: String,
    /// The directory of the release, relative to the environment root (empty for `command`).
    #[serde(default)]
    pub dir: String,
    pub status: Status,
    /// When the deployment started.
    pub deployed_at: String,
    /// When it ended (good or bad); none while it runs or when it was cut off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub run_id: String,
    /// Whether the deploy ran `migrate`, so that undoing it runs `migrate_down`.
    #[serde(default)]
    pub migrated: bool,
    #[serde(default, flatten)]
    pub provenance: Provenance,
    /// The release that was live when this one started, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<ReleaseRef>,
    /// Why it is `bad`: the failed check, or the rollback that undid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What its last checks found: the deploy's health checks and smoke tests, then each
    /// monitoring period that watched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckNote>,
    /// `ssh`: what each host ran when this deployment (or the rollback that undid it) was
    /// done with it, by host name: `UNIT-001@1.2.0`, `none` (no `current` link) or `unknown`
    /// (the host could not be reached to switch it back).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
    /// `ssh`: its directory was removed from the hosts by `keep_releases`, so it cannot be
    /// restored (a `local` environment looks at its directory instead).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
}

/// What a deployment's last checks found, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckNote {
    pub at: String,
    pub passed: bool,
    pub summary: String,
}

impl Deployment {
    pub fn release(&self) -> ReleaseRef {
        ReleaseRef::new(self.unit_id.clone(), self.version.clone())
    }

    pub fn label(&self) -> String {
        label(&self.unit_id, &self.version)
    }
}

/// Kinds of change the record keeps, besides the deployments themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DeployStarted,
    Deployed,
    Failed,
    Paused,
    Proceeded,
    RolledBack,
    Interrupted,
    /// A deploy waited for the environment's lock, deploy window or wait timer.
    Waited,
    /// A person locked the environment (`opsflow lock`): nothing deploys there until unlocked.
    Locked,
    Unlocked,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DeployStarted => "deploy_started",
            EventKind::Deployed => "deployed",
            EventKind::Failed => "failed",
            EventKind::Paused => "paused",
            EventKind::Proceeded => "proceeded",
            EventKind::RolledBack => "rolled_back",
            EventKind::Interrupted => "interrupted",
            EventKind::Waited => "waited",
            EventKind::Locked => "locked",
            EventKind::Unlocked => "unlocked",
        }
    }
}

/// One change of the environment, in the order it happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub at: String,
    pub event: EventKind,
    /// The release it concerns (for a rollback: the release undone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit_id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// Who decided it: an approver, a person's decision, or opsflow's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// For a rollback: what it restored (none: the environment was taken down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<ReleaseRef>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Event {
    pub fn new(event: EventKind, release: &ReleaseRef, run_id: &str, detail: impl Into<String>) -> Event {
        Event {
            at: crate::time::now_rfc3339(),
            event,
            unit_id: release.unit_id.clone(),
            version: release.version.clone(),
            run_id: run_id.to_owned(),
            by: None,
            restored: None,
            detail: detail.into(),
        }
    }

    pub fn by(mut self, by: impl Into<String>) -> Event {
        self.by = Some(by.into()).filter(|b: &String| !b.trim().is_empty());
        self
    }
}

/// An environment's record could not be read or written. Nothing acts on an environment
/// whose record it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the environment record {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "the environment record {} is corrupt at line {line}, column {column}: {message}; nothing is deployed to or rolled back in this environment until it is repaired or restored from a backup",
        path.display()
    )]
    Corrupt { path: PathBuf, line: usize, column: usize, message: String },
    #[error("cannot write the environment record {}: {source}", path.display())]
    Unwritable { path: PathBuf, source: io::Error },
}

/// `releases.json`: every deployment of an environment and every change of it, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// `ssh`: what each host runs now, by host name, as [`Deployment::hosts`] names it;
    /// changed with every switch of a host's `current` link.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
}

/// How the record names what a host runs: `UNIT-001@1.2.0`, or the bare version.
pub fn host_label(unit: &str, version: &str) -> String {
    if unit.is_empty() { version.to_owned() } else { format!("{unit}@{version}") }
}

/// A host whose `current` link is gone: nothing runs there.
pub const HOST_NOTHING: &str = "none";
/// A host that could not be reached to be switched (back): what it runs is not known.
pub const HOST_UNKNOWN: &str = "unknown";

impl Record {
    /// The record at `path`: empty when the file does not exist, an error when it cannot be
    /// read or is not a record.
    pub fn load(path: &Path) -> Result<Record, RecordError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(source) => return Err(RecordError::Unreadable { path: path.to_owned(), source }),
        };
        serde_json::from_str(&text).map_err(|e| RecordError::Corrupt {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: serde_message(&e),
        })
    }

    /// Writes the record to `path` (inside `workspace`) atomically.
    pub fn save(&self, workspace: &Path, path: &Path) -> Result<(), RecordError> {
        let text = serde_json::to_string_pretty(self).expect("a record serializes") + "\n";
        write::write_file(workspace, path, text.as_bytes())
            .map_err(|source| RecordError::Unwritable { path: path.to_owned(), source })
    }

    /// Adds a deployment that starts: whatever an earlier deployment left in its directory
    /// (a blue-green slot, a rebuilt version) is replaced and can no longer be restored.
    pub fn push_replacing(&mut self, deployment: Deployment) {
        for earlier in self.deployments.iter_mut().filter(|d| d.dir == deployment.dir && d.status == Status::Good) {
            earlier.status = Status::Replaced;
        }
        self.deployments.push(deployment);
    }

    /// The newest good deployment: what is live for a provider without a live link.
    pub fn newest_good(&self) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.status == Status::Good)
    }

    /// The good deployment in `dir`, newest first: what is live for a provider whose live
    /// link points at `dir`.
    pub fn good_in(&self, dir: &str) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.dir == dir && d.status == Status::Good)
    }

    /// The releases a rollback could restore, newest first: good, not the live one, each
    /// release once, and (for a provider with directories) whose directory `exists`.
    pub fn restorable(&self, live_run: Option<&str>, exists: impl Fn(&Deployment) -> bool) -> Vec<&Deployment> {
        let mut out: Vec<&Deployment> = Vec::new();
        for d in self.deployments.iter().rev() {
            if d.status != Status::Good || d.pruned || Some(d.run_id.as_str()) == live_run || !exists(d) {
                continue;
            }
            if out.iter().any(|o| o.unit_id == d.unit_id && o.version == d.version) {
                continue;
            }
            out.push(d);
        }
        out
    }

    /// The release directories beyond `keep` that may be removed, newest first by rank:
    /// never one of `protected` (the live release, the one a rollback would restore); good
    /// releases are kept before bad ones, newest first, whatever their unit. Only
    /// directories under `releases/` are ever named.
    pub fn prunable(&self, keep: usize, protected: &[&str]) -> Vec<String> {
        let mut newest: Vec<(&str, Status, bool)> = Vec::new();
        for d in self.deployments.iter().rev() {
            if !newest.iter().any(|(dir, _, _)| *dir == d.dir) {
                newest.push((&d.dir, d.status, d.pruned));
            }
        }
        // A directory pruned already is gone: it neither counts nor is removed again.
        let mut newest: Vec<(&str, Status)> =
            newest.into_iter().filter(|(_, _, pruned)| !pruned).map(|(dir, status, _)| (dir, status)).collect();
        let rank = |(dir, status): &(&str, Status)| {
            if protected.contains(dir) {
                0
            } else if *status == Status::Good {
                1
            } else {
                2
            }
        };
        // A stable sort keeps newest first within each rank.
        newest.sort_by_key(rank);
        newest
            .iter()
            .enumerate()
            .filter(|(i, entry)| rank(entry) != 0 && *i >= keep)
            .map(|(_, (dir, _))| *dir)
            .filter(|dir| dir.starts_with("releases/") && !dir.contains(".."))
            .map(str::to_owned)
            .collect()
    }

    /// Releases that were live here (good, or undone later) whose `commit` is recorded,
    /// newest first, each release once: what a release must contain not to undo them.
    pub fn shipped(&self) -> Vec<&Deployment> {
        let mut out: Vec<&Deployment> = Vec::new();
        for d in self.deployments.iter().rev() {
            let was_live = matches!(d.status, Status::Good | Status::Replaced);
            if !was_live || d.provenance.commit.is_none() {
                continue;
            }
            if out.iter().any(|o| o.unit_id == d.unit_id && o.version == d.version) {
                continue;
            }
            out.push(d);
        }
        out
    }
}

/// How many of its newest deployments `releases.json` keeps, whatever became of them.
pub const RECENT: usize = 100;
/// How many deployments more than [`RECENT`] the record holds before it is compacted, so that
/// the archive is appended to once in a while, not on every change.
pub const SLACK: usize = 50;

/// What [`Record::compact`] moved out of the record, oldest first.
#[derive(Debug, Default, PartialEq)]
pub struct Archived {
    pub deployments: Vec<Deployment>,
    pub events: Vec<Event>,
}

/// One line of `releases-archive.jsonl`: `{"deployment": {...}}` or `{"event": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ArchiveLine {
    Deployment(Box<Deployment>),
    Event(Event),
}

impl Record {
    /// Moves out what nothing but `opsflow history` needs any more, once the record holds
    /// more than [`RECENT`] + [`SLACK`] deployments. It keeps the newest [`RECENT`]
    /// deployments, every one still deploying, every good one whose release is still there
    /// (`exists`: its directory, for a provider with directories) and the newest deployment
    /// of every directory still there (a later pruning or a blue-green switch reads it), and
    /// every event since the oldest of the newest [`RECENT`] or about a deployment it keeps.
    pub fn compact(&mut self, exists: impl Fn(&Deployment) -> bool) -> Option<Archived> {
        let count = self.deployments.len();
        if count <= RECENT + SLACK {
            return None;
        }
        let window = count - RECENT;
        let mut keep = vec![false; count];
        let mut dirs: HashSet<&str> = HashSet::new();
        for (i, d) in self.deployments.iter().enumerate().rev() {
            let newest_in_dir = dirs.insert(d.dir.as_str());
            keep[i] = i >= window
                || d.status == Status::Deploying
                || (!d.pruned && (d.status == Status::Good || newest_in_dir) && exists(d));
        }
        if keep.iter().all(|k| *k) {
            return None;
        }
        let since = self.deployments[window].deployed_at.clone();
        let mut runs: HashSet<String> = HashSet::new();
        let mut releases: HashSet<(String, String)> = HashSet::new();
        for d in self.deployments.iter().zip(&keep).filter(|(_, k)| **k).map(|(d, _)| d) {
            runs.insert(d.run_id.clone());
            releases.insert((d.unit_id.clone(), d.version.clone()));
        }
        let mut archived = Archived::default();
        let mut i = 0;
        self.deployments.retain(|d| {
            let kept = keep[i];
            i += 1;
            if !kept {
                archived.deployments.push(d.clone());
            }
            kept
        });
        self.events.retain(|e| {
            let kept =
                e.at >= since || runs.contains(&e.run_id) || releases.contains(&(e.unit_id.clone(), e.version.clone()));
            if !kept {
                archived.events.push(e.clone());
            }
            kept
        });
        Some(archived)
    }
}

/// What `serde_json` says is wrong, without the place it appends (the caller names it).
fn serde_message(e: &serde_json::Error) -> String {
    e.to_string().split(" at line ").next().unwrap_or_default().to_owned()
}

/// The archive beside the record at `record`: `releases-archive.jsonl`.
pub fn archive_path(record: &Path) -> PathBuf {
    record.with_file_name("releases-archive.jsonl")
}

/// Appends `archived` to the archive of the record at `record` (inside `workspace`) and makes
/// it durable. A line cut short by a crash is dropped first (what it held is still in the
/// record, which is rewritten only after this returns).
pub fn append_archive(workspace: &Path, record: &Path, archived: &Archived) -> io::Result<()> {
    let path = archive_path(record);
    let mut text = String::new();
    let lines = archived
        .deployments
        .iter()
        .map(|d| ArchiveLine::Deployment(Box::new(d.clone())))
        .chain(archived.events.iter().cloned().map(ArchiveLine::Event));
    for line in lines {
        text.push_str(&serde_json::to_string(&line).expect("an archive line serializes"));
        text.push('\n');
    }
    let mut file = write::open_rw(workspace, &path)?;
    let len = file.metadata()?.len();
    let end = complete_lines(&mut file, len)?;
    if end != len {
        file.set_len(end)?;
    }
    file.seek(SeekFrom::Start(end))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if len == 0 {
        write::dir(workspace, path.parent().unwrap_or(workspace), false)?.sync()?;
    }
    Ok(())
}

/// The length of `file` up to and including its last newline.
fn complete_lines(file: &mut fs::File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The record at `path` with everything its archive holds, oldest first, for `opsflow
/// history`; and the archive's problem, if it cannot be read whole (the record is then all
/// there is to show, with the problem named).
pub fn load_all(path: &Path) -> Result<(Record, Option<String>), RecordError> {
    let mut record = Record::load(path)?;
    let archive = archive_path(path);
    let text = match fs::read_to_string(&archive) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((record, None)),
        Err(e) => return Ok((record, Some(format!("cannot read {}: {e}", archive.display())))),
    };
    let mut deployments = Vec::new();
    let mut events = Vec::new();
    let mut problem = None;
    let complete = if text.ends_with('\n') { &text[..] } else { &text[..text.rfind('\n').map_or(0, |i| i + 1)] };
    for (n, line) in complete.lines().enumerate() {
        match serde_json::from_str::<ArchiveLine>(line) {
            Ok(ArchiveLine::Deployment(d)) => deployments.push(*d),
            Ok(ArchiveLine::Event(e)) => events.push(e),
            Err(e) => {
                problem = Some(format!(
                    "{} is corrupt at line {}, column {}: {}; the deployments archived from there on are not shown",
                    archive.display(),
                    n + 1,
                    e.column(),
                    serde_message(&e)
                ));
                break;
            }
        }
    }
    // A crash between appending and rewriting the record leaves a deployment in both: the
    // record's copy is the newer.
    let mut seen: HashSet<(String, String)> =
        record.deployments.iter().map(|d| (d.run_id.clone(), d.deployed_at.clone())).collect();
    let mut all: Vec<Deployment> = Vec::with_capacity(deployments.len() + record.deployments.len());
    for d in deployments.into_iter().rev() {
        if seen.insert((d.run_id.clone(), d.deployed_at.clone())) {
            all.push(d);
        }
    }
    all.reverse();
    all.append(&mut record.deployments);
    all.sort_by(|a, b| a.deployed_at.cmp(&b.deployed_at));
    let key = |e: &Event| serde_json::to_string(e).expect("an event serializes");
    let mut seen: HashSet<String> = record.events.iter().map(key).collect();
    let mut events: Vec<Event> = events.into_iter().filter(|e| seen.insert(key(e))).collect();
    events.append(&mut record.events);
    events.sort_by(|a, b| a.at.cmp(&b.at));
    record.deployments = all;
    record.events = events;
    Ok((record, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(unit: &str, version: &str, status: Status, run: &str) -> Deployment {
        Deployment {
            version: version.into(),
            unit_id: unit.into(),
            dir: format!("releases/{unit}/{version}"),
            status,
            deployed_at: "2026-01-01T00:00:00Z".into(),
            ended_at: None,
            run_id: run.into(),
            migrated: false,
            provenance: Provenance::default(),
            replaced: None,
            reason: None,
            last_check: None,
            hosts: BTreeMap::new(),
            pruned: false,
        }
    }

    /// A `recreate` history of `count` releases of one unit, each good then replaced by the
    /// next as it went live, with one event each.
    fn long_history(count: usize) -> Record {
        let mut record = Record::default();
        for i in 0..count {
            let mut d = deployment("U-1", &format!("1.0.{i}"), Status::Good, &format!("r{i}"));
            d.deployed_at = format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
            record.events.push(Event {
                at: d.deployed_at.clone(),
                ..Event::new(EventKind::Deployed, &d.release(), &d.run_id, "")
            });
            record.deployments.push(d);
        }
        record
    }

    #[test]
    fn compaction_keeps_the_recent_the_restorable_and_the_deploying_and_archives_the_rest() {
        let mut record = long_history(RECENT + SLACK);
        assert_eq!(record.compact(|_| false), None, "a record at the limit is left alone");
        let mut record = long_history(RECENT + SLACK + 10);
        record.deployments[3].status = Status::Deploying;
        record.deployments[5].status = Status::Bad;
        let there = |d: &Deployment| d.version == "1.0.7" || d.version == "1.0.5";
        let archived = record.compact(there).unwrap();
        let kept: Vec<&str> = record.deployments.iter().take(3).map(|d| d.version.as_str()).collect();
        // Deploying, the newest in a directory still there (bad), good and still there.
        assert_eq!(kept, ["1.0.3", "1.0.5", "1.0.7"]);
        assert_eq!(record.deployments.len(), RECENT + 3);
        assert_eq!(archived.deployments.len(), SLACK + 10 - 3);
        assert!(archived.deployments.iter().all(|d| d.status == Status::Good));
        // The events of what it keeps stay with it; the others go with their deployments.
        assert_eq!(record.events.len(), RECENT + 3);
        assert_eq!(archived.events.len(), SLACK + 10 - 3);
        assert!(record.events.iter().any(|e| e.version == "1.0.3"));
        assert_eq!(record.compact(there), None, "nothing left to move");

        // `ssh`: a good release whose directory `keep_releases` removed from the hosts is
        // archived; one still on them is kept.
        let mut record = long_history(RECENT + SLACK + 2);
        record.deployments[0].pruned = true;
        let archived = record.compact(|_| true).unwrap();
        let archived: Vec<&str> = archived.deployments.iter().map(|d| d.version.as_str()).collect();
        assert_eq!(archived, ["1.0.0"]);
        assert_eq!(record.deployments.len(), RECENT + SLACK + 1);
    }

    #[test]
    fn the_archive_and_the_record_give_back_the_whole_history_through_a_torn_line_and_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.json");
        let whole = long_history(2 * (RECENT + SLACK));
        let mut record = whole.clone();
        record.deployments.truncate(RECENT + SLACK + 20);
        record.events.truncate(RECENT + SLACK + 20);
        let first = record.compact(|_| false).unwrap();
        append_archive(dir.path(), &path, &first).unwrap();
        // Cut off while appending the next batch: half a line at the end.
        let archive = archive_path(&path);
        let mut file = fs::OpenOptions::new().append(true).open(&archive).unwrap();
        file.write_all(br#"{"deployment": {"version": "9.9"#).unwrap();
        // Cut off after appending, before the record was rewritten: both hold the batch.
        record.deployments.extend(whole.deployments[RECENT + SLACK + 20..].iter().cloned());
        record.events.extend(whole.events[RECENT + SLACK + 20..].iter().cloned());
        let mut compacted = record.clone();
        let second = compacted.compact(|_| false).unwrap();
        append_archive(dir.path(), &path, &second).unwrap();
        record.save(dir.path(), &path).unwrap();
        let (all, problem) = load_all(&path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(all, whole);
        // Once the record is rewritten, the same.
        compacted.save(dir.path(), &path).unwrap();
        let (all, problem) = load_all(&path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(all, whole);
        assert!(Record::load(&path).unwrap().deployments.len() <= RECENT + SLACK);
    }

    #[test]
    fn a_corrupt_archive_is_named_with_its_line_and_the_record_is_still_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.json");
        let mut record = long_history(RECENT + SLACK + 5);
        let archived = record.compact(|_| false).unwrap();
        append_archive(dir.path(), &path, &archived).unwrap();
        record.save(dir.path(), &path).unwrap();
        let archive = archive_path(&path);
        let text = fs::read_to_string(&archive).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{not json";
        fs::write(&archive, lines.join("\n") + "\n").unwrap();
        let (all, problem) = load_all(&path).unwrap();
        let problem = problem.unwrap();
        assert!(problem.contains("releases-archive.jsonl is corrupt at line 3, column 2"), "{problem}");
        assert_eq!(all.deployments.len(), RECENT + 2, "the two lines before it and the record");
    }

    #[test]
    fn a_record_cut_short_is_corrupt_with_its_place_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.json");
        let record = Record {
            deployments: vec![deployment("U-1", "1.0.0", Status::Good, "r1")],
            events: vec![],
            hosts: BTreeMap::new(),
        };
        let text = serde_json::to_string_pretty(&record).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        let error = Record::load(&path).unwrap_err().to_string();
        assert!(error.contains("releases.json is corrupt at line "), "{error}");
        assert!(error.contains("nothing is deployed to or rolled back"), "{error}");
        fs::remove_file(&path).unwrap();
        assert_eq!(Record::load(&path).unwrap(), Record::default());
    }

    #[test]
    fn a_record_written_before_provenance_was_kept_still_reads() {
        let old = r#"{"deployments": [{"version": "1.0.0", "unit_id": "U-1", "dir": "releases/U-1/1.0.0",
            "status": "good", "deployed_at": "2026-01-01T00:00:00Z", "run_id": "r1", "migrated": false}]}"#;
        let record: Record = serde_json::from_str(old).unwrap();
        assert_eq!(record.deployments[0].status, Status::Good);
        assert_eq!(record.deployments[0].provenance, Provenance::default());
    }

    #[test]
    fn restorable_releases_skip_the_live_the_bad_and_the_gone_and_name_each_release_once() {
        let record = Record {
            deployments: vec![
                deployment("U-1", "1.0.0", Status::Good, "r1"),
                deployment("U-2", "1.0.0", Status::Bad, "r2"),
                deployment("U-1", "1.0.0", Status::Good, "r3"),
                deployment("U-3", "2.0.0", Status::Good, "r4"),
                deployment("U-1", "1.1.0", Status::Good, "r5"),
            ],
            events: vec![],
            hosts: BTreeMap::new(),
        };
        let restorable = record.restorable(Some("r5"), |d| d.unit_id != "U-3");
        let labels: Vec<String> = restorable.iter().map(|d| d.label()).collect();
        assert_eq!(labels, ["U-1 1.0.0"]);
        assert_eq!(restorable[0].run_id, "r3");
    }
}
