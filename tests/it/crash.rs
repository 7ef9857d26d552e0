//! `kill -9` of `opsflow tasks update` at random moments: the file always parses with the
//! old or the new content, the lock dies with its holder, and the temporary files a killed
//! writer leaves are removed by the next one.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Jitter, TASKS, Workspace, leftover_temp_files, task, tasks_of, wait_for_exit};

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

#[test]
fn kill_9_at_random_moments_leaves_old_or_new_content_and_no_stuck_lock() {
    let ws = Workspace::new().file(TASKS, big_tasks_file());

    // How long one update takes here (the fastest of three, so a slow outlier does not
    // stretch the delays past the writer's whole run), so the kills spread over its run.
    let typical = (0..3)
        .map(|i| {
            let started = Instant::now();
            ws.run(&["tasks", "update", TARGET, "--set", &format!("status=calibration-{i}")]).status(0);
            started.elapsed()
        })
        .min()
        .unwrap();

    let mut jitter = Jitter::new();
    let seed = jitter.seed;
    let (mut killed_while_running, mut new_content, mut temps_left_by_kills) = (0, 0, 0);
    const ROUNDS: usize = 40;
    for round in 0..ROUNDS {
        let before = ws.read(TASKS);
        let old = status_of(&before);
        let new = format!("round-{round}");
        let mut child = ws
            .command(&["tasks", "update", TARGET, "--set", &format!("status={new}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(jitter.below(typical.as_micros() as u64 * 6 / 5 + 1));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_while_running += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let after = ws.read(TASKS);
        let status = status_of(&after);
        let context = format!("round {round}, kill after {delay:?} (seed {seed}, OPSFLOW_TEST_SEED replays it)");
        if status == old {
            assert!(after == before, "{context}: the task kept its old status but other bytes changed");
        } else {
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
        let exit = wait_for_exit(&mut next, Duration::from_secs(20), &format!("{context}: the next update"));
        assert!(exit.success(), "{context}: the next update failed with {exit}");
        assert_eq!(leftover_temp_files(&ws), Vec::<String>::new(), "{context}: temporary files were left behind");
        assert_eq!(task(&ws.tasks(), TARGET)["claimed_by"], format!("after-round-{round}").as_str());
    }
    eprintln!(
        "{killed_while_running} of {ROUNDS} kills hit a running writer, {new_content} rounds ended with the new \
         content, {temps_left_by_kills} left temporary files (typical update {typical:?}, seed {seed})"
    );
    assert_eq!(ws.list_dir("docs/workflow"), [".gitignore", "tasks.json", "tasks.json.lock"]);
    ws.run(&["validate"]).status(0);
    // The kills must have hit running writers, or this test proved nothing.
    assert!(
        killed_while_running >= ROUNDS / 4,
        "only {killed_while_running} of {ROUNDS} kills hit a running writer (seed {seed}); \
         {new_content} rounds ended with the new content, {temps_left_by_kills} left temporary files"
    );
}
