//! The `local` provider: releases in directories, switched by atomic symlink swaps.
//!
//! Layout under the environment's `path`:
//! - `recreate`: `releases/<version>/` and `current -> releases/<version>`.
//! - `blue-green`: `slots/blue/`, `slots/green/` and `active -> slots/<side>`; a release is
//!   copied into the idle slot, health-checked there, and only then does `active` switch.
//!
//! `releases.json` is the environment's record (`environment::record`): every deployment
//! (release, slot, status `good`/`bad`), so that a rollback can find the last good release
//! and skip bad ones. A symlink is swapped by creating
//! it under a temporary name and renaming it over the old one, which is atomic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::record::{Deployment, Record};
use crate::workspace::write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Recreate,
    BlueGreen,
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

    /// The environment's record file.
    pub fn record_path(&self) -> PathBuf {
        self.root.join("releases.json")
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
        write::remove_tree(&self.workspace, &staging)?;
        write::copy_tree(&self.workspace, source, &staging)?;
        if target.exists() {
            let trash = self.root.join(format!(".trash-{}", std::process::id()));
            write::rename(&self.workspace, &target, &trash)?;
            write::rename(&self.workspace, &staging, &target)?;
            write::remove_tree(&self.workspace, &trash)?;
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
        write::remove_file(&self.workspace, &temp)?;
        write::symlink(&self.workspace, Path::new(dir), &temp)?;
        write::rename(&self.workspace, &temp, &link)?;
        write::dir(&self.workspace, &self.root, false)?.sync()
    }

    /// Records a deployment that starts: a release staged into a directory replaces whatever
    /// an earlier deployment left there (a blue-green slot, a rebuilt version), which can no
    /// longer be restored.
    pub fn record(&self, history: &mut Record, deployment: Deployment) {
        history.push_replacing(deployment);
    }

    /// What a rollback could restore, newest first: [`Record::restorable`], the one rule (good,
    /// not pruned, each release once, not the live run), with this provider's part of it: the
    /// release's directory is still here and is not the one the live link points at.
    pub fn restorable_in<'r>(&self, history: &'r Record) -> Vec<&'r Deployment> {
        let live = self.live_dir();
        let live_run = live.as_deref().and_then(|dir| history.good_in(dir)).map(|d| d.run_id.as_str());
        history.restorable(live_run, |d| Some(&d.dir) != live.as_ref() && self.root.join(&d.dir).is_dir())
    }

    /// What a rollback restores when none is named: the first of [`LocalEnv::restorable_in`].
    pub fn rollback_target_in<'r>(&self, history: &'r Record) -> Option<&'r Deployment> {
        self.restorable_in(history).into_iter().next()
    }

    /// Takes the live link away: the environment is as before its first release.
    pub fn take_down(&self) -> io::Result<()> {
        write::remove_file(&self.workspace, &self.live_link())?;
        write::dir(&self.workspace, &self.root, false)?.sync()
    }
}

impl LocalEnv {
    /// Removes release directories beyond `keep` (`recreate` only: blue-green has its two
    /// slots). Never removes the live release or the one a rollback would restore; after
    /// those, good releases are kept before bad ones, newest first, whatever their unit, so
    /// pruning never keeps a release that cannot be restored in place of one that can.
    /// Returns the directories removed, relative to the root.
    pub fn prune(&self, history: &Record, keep: usize) -> io::Result<Vec<String>> {
        if self.strategy != Strategy::Recreate {
            return Ok(Vec::new());
        }
        let live = self.live_dir();
        let target = self.rollback_target_in(history).map(|d| d.dir.clone());
        let protected: Vec<&str> = live.iter().chain(target.iter()).map(String::as_str).collect();
        let mut removed = Vec::new();
        for dir in history.prunable(keep, &protected) {
            let path = self.root.join(&dir);
            if path.is_dir() {
                write::remove_tree(&self.workspace, &path)?;
                removed.push(dir);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::record::Status;

    #[test]
    fn keep_releases_keeps_good_releases_of_every_unit_before_bad_ones() {
        // `keep_releases` removed good releases of two units while keeping three bad ones.
        use crate::environment::record::Provenance;
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let env = LocalEnv::new(root.clone(), root.join("env"), Strategy::Recreate);
        let mut record = Record::default();
        let releases = [
            ("U-1", "1", Status::Good),
            ("U-2", "1", Status::Good),
            ("U-3", "1", Status::Bad),
            ("U-3", "2", Status::Bad),
        ];
        let mut releases = releases.to_vec();
        releases.push(("U-3", "3", Status::Bad));
        releases.push(("U-1", "2", Status::Good));
        for (i, (unit, version, status)) in releases.iter().enumerate() {
            let dir = format!("releases/{unit}/{version}");
            fs::create_dir_all(env.root.join(&dir)).unwrap();
            record.deployments.push(Deployment {
                version: (*version).into(),
                unit_id: (*unit).into(),
                dir,
                status: *status,
                deployed_at: format!("2026-01-01T00:00:0{i}Z"),
                ended_at: None,
                run_id: format!("r{i}"),
                migrated: false,
                provenance: Provenance::default(),
                replaced: None,
                reason: None,
                last_check: None,
                hosts: Default::default(),
                pruned: false,
            });
        }
        env.switch("releases/U-1/2").unwrap();
        let mut removed = env.prune(&record, 3).unwrap();
        removed.sort();
        assert_eq!(removed, ["releases/U-3/1", "releases/U-3/2", "releases/U-3/3"]);
        for kept in ["releases/U-1/1", "releases/U-1/2", "releases/U-2/1"] {
            assert!(env.root.join(kept).is_dir(), "{kept} is kept");
        }
    }

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

    /// What a rollback restores by directory (`rollback_target_in`: what pruning keeps and the
    /// production gate names) and what it could restore by run (`restorable_in`, through
    /// `Record::restorable`: what `rollback`, `status` and `history` offer) agree, whatever is
    /// live: a bad release, a pruned one, one whose directory is gone, a release deployed
    /// twice and an older good entry in the live directory are never the target.
    #[test]
    fn the_rollback_target_is_the_first_release_a_rollback_could_restore() {
        use crate::environment::record::Provenance;
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let env = LocalEnv::new(root.clone(), root.join("env"), Strategy::Recreate);
        let mut record = Record::default();
        // (unit, version, status, directory kept, pruned)
        let releases = [
            ("U-4", "1", Status::Good, true, false),
            ("U-1", "1", Status::Good, true, false),
            ("U-2", "1", Status::Good, false, false),
            ("U-1", "2", Status::Bad, true, false),
            ("U-3", "1", Status::Good, false, true),
            ("U-1", "1", Status::Good, true, false),
            ("U-4", "1", Status::Good, true, false),
        ];
        for (i, (unit, version, status, kept, pruned)) in releases.into_iter().enumerate() {
            let dir = format!("releases/{unit}/{version}");
            if kept {
                fs::create_dir_all(env.root.join(&dir)).unwrap();
            }
            record.deployments.push(Deployment {
                version: version.into(),
                unit_id: unit.into(),
                dir,
                status,
                deployed_at: format!("2026-01-01T00:00:0{i}Z"),
                ended_at: None,
                run_id: format!("r{i}"),
                migrated: false,
                provenance: Provenance::default(),
                replaced: None,
                reason: None,
                last_check: None,
                hosts: Default::default(),
                pruned,
            });
        }
        let runs = |list: Vec<&Deployment>| list.iter().map(|d| d.run_id.clone()).collect::<Vec<_>>();
        // Nothing live yet: every kept good release, newest first, each once.
        assert_eq!(runs(env.restorable_in(&record)), ["r6", "r5"]);
        assert_eq!(env.rollback_target_in(&record).map(|d| d.run_id.as_str()), Some("r6"));
        for (live, restorable) in
            [("releases/U-4/1", vec!["r5"]), ("releases/U-1/1", vec!["r6"]), ("releases/U-1/2", vec!["r6", "r5"])]
        {
            env.switch(live).unwrap();
            assert_eq!(runs(env.restorable_in(&record)), restorable, "live {live}");
            assert_eq!(
                env.rollback_target_in(&record).map(|d| d.run_id.clone()),
                restorable.first().map(|run| run.to_string()),
                "live {live}"
            );
        }
    }
}
