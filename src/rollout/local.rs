//! The `local` provider: releases in directories, switched by atomic symlink swaps.
//!
//! Layout under the environment's `path`:
//! - `recreate`: `releases/<version>/` and `current -> releases/<version>`.
//! - `blue-green`: `slots/blue/`, `slots/green/` and `active -> slots/<side>`; a release is
//!   copied into the idle slot, health-checked there, and only then does `active` switch.
//!
//! `releases.json` records every deployment (version, slot, status `good`/`bad`) so that a
//! rollback can find the last good release and skip bad ones. A symlink is swapped by creating
//! it under a temporary name and renaming it over the old one, which is atomic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Recreate,
    BlueGreen,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub version: String,
    /// The unit whose release this is (empty for a release without a unit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit_id: String,
    /// The directory of the release, relative to the environment root.
    pub dir: String,
    pub status: String,
    pub deployed_at: String,
    pub run_id: String,
    /// Whether the deploy ran `migrate`, so that undoing it runs `migrate_down`.
    #[serde(default)]
    pub migrated: bool,
}

/// `releases.json`: every deployment of an environment, oldest first. Statuses: `deploying`
/// (not finished yet), `good`, `bad`, `replaced` (its directory now holds a later release).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub deployments: Vec<Deployment>,
}

impl History {
    /// The history at `path`; empty when the file is missing or unreadable.
    pub fn load(path: &Path) -> History {
        fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    /// Writes the history to `path`, which must stay inside `workspace`.
    pub fn save(&self, workspace: &Path, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)? + "\n";
        write::write_file(workspace, path, text.as_bytes())
    }
}

pub struct LocalEnv {
    /// The workspace (canonical): every write under `root` is checked to stay inside it, so
    /// an environment folder that is a symlink to elsewhere is refused, not written through.
    pub workspace: PathBuf,
    pub root: PathBuf,
    pub strategy: Strategy,
}

impl LocalEnv {
    pub fn new(workspace: PathBuf, root: PathBuf, strategy: Strategy) -> LocalEnv {
        LocalEnv { workspace, root, strategy }
    }

    /// The link that says what is live: `current` or `active`.
    pub fn live_link(&self) -> PathBuf {
        self.root.join(match self.strategy {
            Strategy::Recreate => "current",
            Strategy::BlueGreen => "active",
        })
    }

    /// Creates the directory layout (idempotent).
    pub fn prepare(&self) -> io::Result<()> {
        match self.strategy {
            Strategy::Recreate => write::create_dir_all(&self.workspace, &self.root.join("releases")),
            Strategy::BlueGreen => {
                write::create_dir_all(&self.workspace, &self.root.join("slots/blue"))?;
                write::create_dir_all(&self.workspace, &self.root.join("slots/green"))
            }
        }
    }

    /// Where the live link points now, relative to the root.
    pub fn live_dir(&self) -> Option<String> {
        fs::read_link(self.live_link()).ok().map(|p| p.to_string_lossy().into_owned())
    }

    pub fn history(&self) -> History {
        History::load(&self.root.join("releases.json"))
    }

    pub fn save_history(&self, history: &History) -> io::Result<()> {
        history.save(&self.workspace, &self.root.join("releases.json"))
    }

    /// The version live now, from the history.
    pub fn live_version(&self) -> Option<String> {
        self.live_deployment().map(|d| d.version)
    }

    /// The deployment live now, from the history.
    pub fn live_deployment(&self) -> Option<Deployment> {
        let live = self.live_dir()?;
        self.history().deployments.iter().rev().find(|d| d.dir == live && d.status == "good").cloned()
    }

    /// Stages `source` as a new release and returns the directory (relative to the root) it
    /// went to: `releases/<name>` (`name` is `<UNIT_ID>/<version>` or the bare version), or
    /// the idle slot. Nothing live changes yet.
    pub fn stage(&self, name: &str, source: &Path) -> io::Result<String> {
        self.prepare()?;
        let dir = match self.strategy {
            Strategy::Recreate => format!("releases/{name}"),
            Strategy::BlueGreen => {
                let live = self.live_dir();
                if live.as_deref() == Some("slots/blue") { "slots/green".to_owned() } else { "slots/blue".to_owned() }
            }
        };
        let target = self.root.join(&dir);
        // Copy beside the target, then swap it in, so a half-copied release is never visible.
        let staging = self.root.join(format!(".staging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        write::copy_tree(&self.workspace, source, &staging)?;
        if target.exists() {
            let trash = self.root.join(format!(".trash-{}", std::process::id()));
            write::rename(&self.workspace, &target, &trash)?;
            write::rename(&self.workspace, &staging, &target)?;
            fs::remove_dir_all(&trash)?;
        } else {
            if let Some(parent) = target.parent() {
                write::create_dir_all(&self.workspace, parent)?;
            }
            write::rename(&self.workspace, &staging, &target)?;
        }
        Ok(dir)
    }

    /// Points the live link at `dir` atomically.
    pub fn switch(&self, dir: &str) -> io::Result<()> {
        let link = self.live_link();
        let temp = self.root.join(format!(".link-{}", std::process::id()));
        let _ = fs::remove_file(&temp);
        write::symlink(&self.workspace, Path::new(dir), &temp)?;
        write::rename(&self.workspace, &temp, &link)?;
        fs::File::open(&self.root).and_then(|d| d.sync_all())
    }

    /// Records a deployment's outcome.
    pub fn record(&self, deployment: Deployment) -> io::Result<()> {
        let mut history = self.history();
        // A release staged into a directory replaces whatever an earlier deployment left
        // there (a blue-green slot, a rebuilt version): that one can no longer be restored.
        for earlier in history.deployments.iter_mut().filter(|d| d.dir == deployment.dir && d.status == "good") {
            earlier.status = "replaced".to_owned();
        }
        history.deployments.push(deployment);
        self.save_history(&history)
    }

    /// Marks the latest deployment of `dir` as bad, so rollback skips it.
    pub fn mark_bad(&self, dir: &str) -> io::Result<()> {
        let mut history = self.history();
        if let Some(d) = history.deployments.iter_mut().rev().find(|d| d.dir == dir) {
            d.status = "bad".to_owned();
        }
        self.save_history(&history)
    }

    /// The last good deployment other than the live one, whose directory still exists.
    pub fn rollback_target(&self) -> Option<Deployment> {
        let live = self.live_dir();
        let history = self.history();
        history
            .deployments
            .iter()
            .rev()
            .filter(|d| d.status == "good" && Some(&d.dir) != live.as_ref())
            .find(|d| self.root.join(&d.dir).is_dir())
            .cloned()
    }
}

impl LocalEnv {
    /// Removes release directories beyond the `keep` newest (`recreate` only: blue-green has
    /// its two slots). Never removes the live release or the one a rollback would restore.
    /// Returns the directories removed, relative to the root.
    pub fn prune(&self, keep: usize) -> io::Result<Vec<String>> {
        if self.strategy != Strategy::Recreate {
            return Ok(Vec::new());
        }
        let history = self.history();
        let live = self.live_dir();
        let target = self.rollback_target().map(|d| d.dir);
        // Newest first, each directory once.
        let mut newest: Vec<&str> = Vec::new();
        for d in history.deployments.iter().rev() {
            if !newest.contains(&d.dir.as_str()) {
                newest.push(&d.dir);
            }
        }
        let protected = |dir: &str| Some(dir) == live.as_deref() || Some(dir) == target.as_deref();
        let mut kept = newest.iter().filter(|d| protected(d)).count();
        let mut removed = Vec::new();
        for dir in newest {
            if protected(dir) {
                continue;
            }
            if kept < keep {
                kept += 1;
                continue;
            }
            let path = self.root.join(dir);
            if dir.starts_with("releases/") && !dir.contains("..") && path.is_dir() {
                fs::remove_dir_all(&path)?;
                removed.push(dir.to_owned());
            }
        }
        Ok(removed)
    }
}

/// Copies a release's tree of files and directories; a symlink in it is refused with an
/// error naming it (see [`write::copy_plain_tree`]). `to` must already be checked to stay
/// inside the workspace.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    write::copy_plain_tree(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blue_green_alternates_slots_and_switches_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("index.html"), "v1").unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let env = LocalEnv::new(root.clone(), root.join("env"), Strategy::BlueGreen);
        let first = env.stage("1", &source).unwrap();
        assert_eq!(first, "slots/blue");
        env.switch(&first).unwrap();
        fs::write(source.join("index.html"), "v2").unwrap();
        let second = env.stage("2", &source).unwrap();
        assert_eq!(second, "slots/green");
        assert_eq!(fs::read_to_string(env.live_link().join("index.html")).unwrap(), "v1");
        env.switch(&second).unwrap();
        assert_eq!(fs::read_to_string(env.live_link().join("index.html")).unwrap(), "v2");
    }

    #[test]
    fn a_reader_never_sees_a_missing_or_half_switched_link() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let env = LocalEnv::new(
            dir.path().canonicalize().unwrap(),
            dir.path().canonicalize().unwrap().join("env"),
            Strategy::BlueGreen,
        );
        let mut slots = Vec::new();
        for version in ["v1", "v2"] {
            let source = dir.path().join(version);
            fs::create_dir_all(&source).unwrap();
            fs::write(source.join("index.html"), version).unwrap();
            fs::write(source.join("style.css"), version).unwrap();
            let slot = env.stage(version, &source).unwrap();
            env.switch(&slot).unwrap();
            slots.push(slot);
        }
        let live = env.live_link();
        let (done, reads) = (AtomicBool::new(false), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut problems = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    // One resolution of the link, then the release it names must be whole.
                    match fs::read_link(&live) {
                        Ok(target) => {
                            let release = live.parent().unwrap().join(&target);
                            let index = fs::read_to_string(release.join("index.html"));
                            let style = fs::read_to_string(release.join("style.css"));
                            match (index, style) {
                                (Ok(index), Ok(style)) if index == style => {}
                                other => problems.push(format!("{}: {other:?}", target.display())),
                            }
                        }
                        Err(e) => problems.push(format!("the link could not be read: {e}")),
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                }
                problems
            });
            // Switch back and forth until the reader has looked many times while switches
            // were going on.
            let mut switches = 0;
            while reads.load(Ordering::SeqCst) < 2_000 || switches < 200 {
                env.switch(&slots[switches % 2]).unwrap();
                switches += 1;
            }
            done.store(true, Ordering::SeqCst);
            let problems = reader.join().unwrap();
            assert!(problems.is_empty(), "{} bad reads of {:?}, first: {:?}", problems.len(), reads, problems.first());
        });
        assert_eq!(
            fs::read_to_string(live.join("index.html")).unwrap(),
            fs::read_to_string(live.join("style.css")).unwrap()
        );
    }
}
