//! The fault-injection harness, and the scenarios that need more than one fault.
//!
//! Each fault is a small value the tests share:
//! - [`Gate`]: a deploy (or any) command that stops at a point the test chooses and waits
//!   there until the test opens it, so that a `git checkout`, an edit or a full disk lands at a
//!   known moment of a run.
//! - [`write_in_chunks`]: an editor that truncates a file and writes it in two chunks with a
//!   pause between them, as VS Code and others do.
//! - [`Immutable`]: `chattr +i` on a file for as long as the value lives.
//! - [`SmallDisk`]: a small `tmpfs` mounted for the test, which [`SmallDisk::fill`] fills to the
//!   last page and [`SmallDisk::free`] empties again.
//!
//! Where the machine cannot inject a fault (no `chattr`, no permission to mount), the test says
//! so on stderr and stops: the skip is stated, never silent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::status_of;
use crate::util::{Workspace, task, wait_for_exit, wait_until};

/// A point in a command where it waits for the test: the command touches `reached`, then
/// waits until `open` exists.
pub struct Gate {
    reached: PathBuf,
    open: PathBuf,
}

impl Gate {
    /// A gate named `name` in the workspace (its files are `<name>.reached` and `<name>.open`).
    pub fn new(ws: &Workspace, name: &str) -> Gate {
        Gate { reached: ws.join(&format!("{name}.reached")), open: ws.join(&format!("{name}.open")) }
    }

    /// The shell command that stops at the gate.
    pub fn command(&self) -> String {
        format!("touch '{}'; while [ ! -e '{}' ]; do sleep 0.05; done", self.reached.display(), self.open.display())
    }

    /// Waits until a command reached the gate.
    pub fn wait_reached(&self, deadline: Duration) {
        wait_until(deadline, "a command to reach the gate", || self.reached.exists());
    }

    /// Lets the command go on (creating an empty file, which a full disk still allows).
    pub fn open(&self) {
        std::fs::File::create(&self.open).unwrap();
    }
}

/// Writes `text` to `path` as an editor that writes in chunks does: truncates it, writes the
/// first `cut` bytes, waits `pause`, writes the rest.
pub fn write_in_chunks(path: &Path, text: &str, cut: usize, pause: Duration) {
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    file.write_all(&text.as_bytes()[..cut]).unwrap();
    file.sync_data().unwrap();
    std::thread::sleep(pause);
    file.write_all(&text.as_bytes()[cut..]).unwrap();
}

/// `chattr +i` on a file for as long as it lives; `None` where the file system cannot.
pub struct Immutable(PathBuf);

impl Immutable {
    pub fn set(path: PathBuf) -> Option<Immutable> {
        let done = std::process::Command::new("chattr").arg("+i").arg(&path).output().ok()?;
        if done.status.success() {
            Some(Immutable(path))
        } else {
            eprintln!("skipped: `chattr +i` is not available on this file system");
            None
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        std::process::Command::new("chattr").arg("-i").arg(&self.0).output().ok();
    }
}

/// A small `tmpfs` mounted on a new directory for as long as it lives.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts `megabytes` of `tmpfs`; `None`, saying why, where the test may not mount.
    pub fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::Builder::new().prefix("opsflow-disk-").tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => {
                let filler = dir.path().join("filler");
                Some(SmallDisk { dir, filler })
            }
            Ok(out) => {
                eprintln!("skipped: cannot mount a tmpfs here: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to its last page: every later write of content fails with ENOSPC.
    pub fn fill(&self) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.filler).unwrap();
        for size in [1 << 20, 1 << 12, 1] {
            let chunk = vec![0u8; size];
            while file.write_all(&chunk).is_ok() {}
        }
        let probe = std::fs::write(self.dir.path().join("probe"), "x");
        assert!(probe.is_err(), "the disk is full");
    }

    /// Fills the disk so that only `bytes` (rounded to whole pages) are left free.
    pub fn fill_leaving(&self, bytes: usize) {
        let spare = self.dir.path().join("spare");
        std::fs::write(&spare, vec![1u8; bytes]).unwrap();
        self.fill();
        std::fs::remove_file(&spare).unwrap();
    }

    /// Makes room again.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).unwrap();
        std::fs::remove_file(self.dir.path().join("probe")).ok();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily, so that a process of a failed test still holding a file there cannot keep it.
        std::process::Command::new("umount").arg("-l").arg(self.dir.path()).output().ok();
    }
}

/// A full disk at the worst moment: production's deploy has switched the release in and the
/// disk fills before opsflow records it. Nothing that was written may be lost or cut short,
/// no run may be called interrupted, and once there is room again the outcome lands, once.
#[test]
fn a_disk_that_fills_mid_deploy_loses_no_record_and_the_outcome_lands_once_there_is_room() {
    let Some(disk) = SmallDisk::mount(64) else { return };
    let ws = Workspace::new_in(disk.path()).sample();
    let gate = Gate::new(&ws, "deploy");
    let ws = crate::rollout::for_production(
        ws,
        json!({
            "provider": "command",
            "strategy": "direct",
            "commands": {"deploy": gate.command(), "rollback": "true"},
            "health_checks": [{"name": "up", "command": "true"}],
        }),
    );
    let tasks_before = ws.read(crate::util::TASKS);
    let mut child =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    gate.wait_reached(Duration::from_secs(60));
    let claimed = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(claimed["status"], "in_progress", "{claimed}");
    let run_id = claimed["run_id"].as_str().unwrap().to_owned();
    disk.fill();
    gate.open();
    let status = wait_for_exit(&mut child, Duration::from_secs(120), "the run on a full disk");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "a record that could not be written fails the run:\n{stderr}");
    assert!(stderr.contains("No space left on device"), "the cause is named:\n{stderr}");
    // tasks.json is whole: the claim, never a cut-off write.
    let tasks: Value = serde_json::from_slice(&ws.read(crate::util::TASKS)).expect("tasks.json is whole JSON");
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), crate::util::tasks_of(&tasks_before).len());
    assert!(crate::util::leftover_temp_files(&ws).is_empty(), "{:?}", crate::util::leftover_temp_files(&ws));

    // Room again: the next run records what happened, and calls nothing interrupted.
    disk.free();
    let next = ws.run(&["run"]);
    assert!(matches!(next.code(), Some(0 | 1 | 3)), "exit {:?}\n{}", next.code(), next.stderr());
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert_ne!(production["status"], "in_progress", "{production}");
    assert!(
        !audit.lines().any(|l| l.contains(&run_id) && l.contains("interrupted")),
        "a run that finished is not called interrupted:\n{audit}"
    );
    // What the task says is what the environment's record says of that run.
    let record: Value = serde_json::from_slice(&ws.read(".opsflow/envs/production/releases.json")).unwrap();
    let deployment = record["deployments"].as_array().unwrap().iter().rev().find(|d| d["run_id"] == run_id.as_str());
    // The release went live and passed its checks: that is what the task and the record say.
    assert_eq!(production["status"], "deployed", "{production}");
    let deployment = deployment.expect("the deployment is in the record");
    assert_eq!(deployment["status"], "good", "{record}");
    // And it is said once: the next run does nothing more to it.
    ws.run(&["run"]);
    assert_eq!(status_of(&ws, "DEVOPS-007"), production["status"].as_str().unwrap());
}

/// A sample workspace whose build stops at `gate` after it counted itself in `builds.log`,
/// and the `opsflow run` that is started on it, stopped there: the build task is claimed.
/// Then the test holds `tasks.json`'s lock and lets the build finish, so that the run waits
/// for the lock to write the build's outcome with the next claim. Returns the run, the
/// build's run id and the lock.
fn held_between_an_outcome_and_the_next_claim(
    ws: &Workspace,
    gate: &Gate,
) -> (std::process::Child, String, std::fs::File) {
    crate::engine::edit_json(ws, crate::engine::CONFIG, |c| {
        c["release"]["build"] =
            json!(format!("mkdir -p dist && cp -R app/. dist/ && echo built >> builds.log && {}", gate.command()));
    });
    let mut child =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    gate.wait_reached(Duration::from_secs(60));
    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "in_progress", "{build}");
    let run_id = build["run_id"].as_str().unwrap().to_owned();
    let lock_path = ws.join("docs/workflow/tasks.json.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    lock.lock().unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&lock.metadata().unwrap());
    gate.open();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while crate::util::flock_waiters(inode) != Some(1) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it wrote the next claim");
        assert!(std::time::Instant::now() < end, "timed out waiting for the run to wait for the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The build finished and its outcome waits: it is kept beside the run, not on the task.
    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "in_progress", "{build}");
    assert_eq!(build["run_id"], run_id.as_str(), "{build}");
    let kept: Value =
        serde_json::from_slice(&ws.read(&format!(".opsflow/runs/{run_id}/outcome.json"))).expect("the kept outcome");
    assert_eq!(kept["task"], "DEVOPS-005", "{kept}");
    assert!(kept.get("applied_at").is_none_or(Value::is_null), "{kept}");
    (child, run_id, lock)
}

/// `kill -9` of a runner whose finished build's outcome waits to be written with the next
/// claim: the next run records that outcome from what was kept beside the run, builds nothing
/// again, and goes on.
#[test]
fn a_runner_killed_while_an_outcome_waits_for_the_next_claim_leaves_it_to_the_next_run() {
    let ws = Workspace::new().sample();
    let gate = Gate::new(&ws, "build");
    let (mut child, run_id, lock) = held_between_an_outcome_and_the_next_claim(&ws, &gate);
    child.kill().unwrap();
    wait_for_exit(&mut child, Duration::from_secs(30), "the killed run");
    drop(lock);
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(staging["status"], "pending", "the next claim did not land: {staging}");

    let next = ws.run(&["run"]);
    assert_eq!(next.code(), Some(3), "up to production's approval:\n{}", next.stderr());
    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "done", "{build}");
    assert_eq!(build["run_id"], run_id.as_str(), "{build}");
    assert_eq!(build["outcome"]["run_id"], run_id.as_str(), "{build}");
    assert_eq!(build["outcome"]["status"], "done", "{build}");
    assert_eq!(ws.read_string("builds.log"), "built\n", "the build ran once");
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(
        !audit.lines().any(|l| l.contains(&run_id) && l.contains("interrupted")),
        "a build that finished is not called interrupted:\n{audit}"
    );
    let requests = std::fs::read_to_string(ws.join("docs/workflow/human-requests.md")).unwrap_or_default();
    assert!(!requests.contains(&run_id), "nothing for a human to do about the build:\n{requests}");
}

/// Another writer resets the build's task while its outcome waits for the next claim: the
/// outcome is not written over the reset entry, it is kept and put in front of a human, and
/// the deploy that the pass chose because the build was done is not claimed.
#[test]
fn a_task_reset_while_its_outcome_waits_keeps_the_outcome_and_claims_nothing_that_needed_it() {
    let ws = Workspace::new().sample();
    // A second task that waits for the build: the pass that chose the staging deploy found it
    // ready too, on the same view of the build.
    crate::engine::edit_json(&ws, crate::util::TASKS, |t| {
        t["tasks"].as_array_mut().unwrap().push(json!({
            "id": "DEVOPS-010", "title": "Design after the build", "agent": "DevOps-Engineer",
            "type": "infrastructure_design", "status": "pending", "unit_id": "UNIT-001",
            "depends_on": ["DEVOPS-005"],
        }));
    });
    let gate = Gate::new(&ws, "build");
    let (mut child, run_id, lock) = held_between_an_outcome_and_the_next_claim(&ws, &gate);
    // As the lock's holder, a person sets the build back to pending.
    crate::engine::edit_json(&ws, crate::util::TASKS, |t| {
        let build = t["tasks"].as_array_mut().unwrap().iter_mut().find(|t| t["id"] == "DEVOPS-005").unwrap();
        let entry = build.as_object_mut().unwrap();
        for key in ["claimed_by", "claimed_on", "claimed_at", "run_id"] {
            entry.remove(key);
        }
        entry.insert("status".into(), json!("pending"));
    });
    drop(lock);
    let status = wait_for_exit(&mut child, Duration::from_secs(60), "the run");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    // The run fails, saying where the outcome it could not record is kept.
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!(".opsflow/runs/{run_id}/outcome.json")), "{stderr}");

    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "pending", "the person's edit stands: {build}");
    assert!(build.get("outcome").is_none(), "{build}");
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(staging["status"], "pending", "a deploy of a build that is not done is not claimed: {staging}");
    assert!(staging.get("run_id").is_none(), "{staging}");
    let after = task(&ws.tasks(), "DEVOPS-010").clone();
    assert_eq!(after["status"], "pending", "nothing else that waited for the build is claimed: {after}");
    let kept: Value = serde_json::from_slice(&ws.read(&format!(".opsflow/runs/{run_id}/outcome.json"))).unwrap();
    assert!(kept.get("applied_at").is_none_or(Value::is_null), "the outcome is kept, pending: {kept}");
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(
        requests.contains(&run_id) && requests.contains("DEVOPS-005"),
        "a human is told where the outcome is:\n{requests}"
    );
}
