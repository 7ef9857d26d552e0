//! `kill -9` of `opsflow tasks update` while it is known to be running (waiting for the lock,
//! or with its temporary file on disk, killed a random moment later): the file always parses
//! with the old or the new content, the lock dies with its holder, and the temporary files a
//! killed writer leaves are removed by the next one.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Jitter, TASKS, Workspace, flock_waiters, leftover_temp_files, task, tasks_of, wait_for_exit};

const TASK_COUNT: usize = 10_000;
const TARGET: &str = "T-05000";

/// A tasks.json big enough (about 2.5 MB) that writing it takes a few milliseconds.
fn big_tasks_file() -> String {
    let tasks: Vec<Value> = (0..TASK_COUNT)
        .map(|i| {
            json!({
                "id": format!("T-{i:05}"),
                "title": format!("task number {i} with a title long enough to matter"),
                "agent": if i % 3 == 0 { "DevOps-Engineer" } else { "Backend-Engineer" },
                "type": if i % 3 == 0 { "deployment_staging" } else { "implementation" },
                "status": "pending",
                "unit_id": format!("UNIT-{}", i / 10),
                "x-notes": "unknown fields are kept byte for byte",
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&json!({ "tasks": tasks })).unwrap();
    text.push('\n');
    text
}

fn status_of(bytes: &[u8]) -> String {
    let tasks = tasks_of(bytes);
    assert_eq!(tasks.len(), TASK_COUNT, "the number of tasks changed");
    task(&tasks, TARGET)["status"].as_str().expect("a string status").to_owned()
}

/// Where a round's kill lands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Moment {
    /// The test holds the file's lock: the writer is waiting for it (the kernel lists it
    /// among the lock's waiters), so it is certainly running when it is killed.
    WaitingForTheLock,
    /// The writer's temporary file exists: it is writing or syncing the new content, or about
    /// to swap it in. The kill comes up to 20 ms later, so some writers finish first.
    WritingItsTemporaryFile,
}

/// Spins until `condition` holds or the child exits; fails the test at a generous deadline.
fn wait_for(child: &mut std::process::Child, what: &str, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if condition() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn kill_9_at_random_moments_leaves_old_or_new_content_and_no_stuck_lock() {
    let ws = Workspace::new().file(TASKS, big_tasks_file());
    // One update creates the sidecar lock file, so its inode can be found in /proc/locks.
    ws.run(&["tasks", "update", TARGET, "--set", "status=first"]).status(0);
    let lock_path = ws.join("docs/workflow/tasks.json.lock");

    let mut jitter = Jitter::new();
    let seed = jitter.seed;
    let (mut rounds, mut killed_waiting, mut killed_mid_write, mut new_content, mut temps_left_by_kills) =
        (0, 0, 0, 0, 0);
    // Rounds go on until enough kills have landed in each moment, so the test never depends
    // on how fast this machine writes; the cap only stops a writer that is never caught.
    const ENOUGH: usize = 10;
    const MAX_ROUNDS: usize = 400;
    while killed_waiting < ENOUGH || killed_mid_write < ENOUGH {
        assert!(
            rounds < MAX_ROUNDS,
            "after {rounds} rounds only {killed_mid_write} kills landed while a temporary file existed (seed {seed})"
        );
        let round = rounds;
        rounds += 1;
        let moment = if killed_waiting >= ENOUGH || (killed_mid_write < ENOUGH && jitter.below(2) == 0) {
            Moment::WritingItsTemporaryFile
        } else {
            Moment::WaitingForTheLock
        };
        let before = ws.read(TASKS);
        let old = status_of(&before);
        let new = format!("round-{round}");
        let gate = (moment == Moment::WaitingForTheLock).then(|| {
            let gate = OpenOptions::new().write(true).open(&lock_path).unwrap();
            gate.lock().unwrap();
            gate
        });
        let mut child = ws
            .command(&["tasks", "update", TARGET, "--set", &format!("status={new}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let context = format!("round {round}, {moment:?} (seed {seed}, OPSFLOW_TEST_SEED replays it)");
        let reached = match moment {
            Moment::WaitingForTheLock => {
                let inode = fs::metadata(&lock_path).unwrap().ino();
                wait_for(&mut child, "the writer to wait for the lock", || flock_waiters(inode).is_none_or(|n| n > 0))
            }
            Moment::WritingItsTemporaryFile => {
                let reached =
                    wait_for(&mut child, "the writer's temporary file", || !leftover_temp_files(&ws).is_empty());
                let delay = Instant::now() + Duration::from_micros(jitter.below(20_000));
                while Instant::now() < delay {
                    std::hint::spin_loop();
                }
                reached
            }
        };
        // SIGKILL; a writer that already exited is simply reaped.
        let _ = child.kill();
        let exit = child.wait().unwrap();
        drop(gate);
        let killed = exit.signal() == Some(libc::SIGKILL);
        match moment {
            Moment::WaitingForTheLock => {
                assert!(reached && killed, "{context}: the writer exited ({exit}) while the test held its lock");
                killed_waiting += 1;
            }
            Moment::WritingItsTemporaryFile if reached && killed => killed_mid_write += 1,
            Moment::WritingItsTemporaryFile => {}
        }

        let after = ws.read(TASKS);
        let status = status_of(&after);
        if status == old {
            assert!(after == before, "{context}: the task kept its old status but other bytes changed");
        } else {
            assert_ne!(moment, Moment::WaitingForTheLock, "{context}: a writer that never got the lock wrote");
            assert_eq!(status, new, "{context}: the status is neither the old `{old}` nor the new `{new}`");
            new_content += 1;
        }
        if !leftover_temp_files(&ws).is_empty() {
            temps_left_by_kills += 1;
        }

        // The next writer is not blocked by a lock its killed predecessor held, and it
        // removes the temporary files that predecessor left.
        let mut next = ws
            .command(&["tasks", "update", TARGET, "--set", &format!("claimed_by=after-round-{round}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exit = wait_for_exit(&mut next, Duration::from_secs(60), &format!("{context}: the next update"));
        assert!(exit.success(), "{context}: the next update failed with {exit}");
        assert_eq!(leftover_temp_files(&ws), Vec::<String>::new(), "{context}: temporary files were left behind");
        assert_eq!(task(&ws.tasks(), TARGET)["claimed_by"], format!("after-round-{round}").as_str());
    }
    eprintln!(
        "{rounds} rounds: {killed_waiting} kills of a writer waiting for the lock, {killed_mid_write} of a writer \
         with its temporary file on disk; {new_content} ended with the new content, {temps_left_by_kills} left \
         temporary files (seed {seed})"
    );
    assert_eq!(ws.list_dir("docs/workflow"), [".gitignore", "tasks.json", "tasks.json.lock"]);
    ws.run(&["validate"]).status(0);
}
