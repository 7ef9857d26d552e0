//! Many writers on one `tasks.json`: real `opsflow tasks add|update` processes at once lose
//! nothing, and a writer that ignores the lock never has its writes clobbered by opsflow.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace, flock_waiters, leftover_temp_files, task, wait_for_exit, wait_until};

const SEED: &str = r#"{
  "tasks": [
    {"id": "U-1", "title": "one", "agent": "devops", "type": "deployment_staging", "status": "pending"},
    {"id": "U-2", "title": "two", "agent": "devops", "type": "deployment_staging", "status": "pending"},
    {"id": "U-3", "title": "three", "agent": "devops", "type": "deployment_staging", "status": "pending"},
    {"id": "U-4", "title": "four", "agent": "devops", "type": "deployment_staging", "status": "pending"}
  ]
}
"#;

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    ws.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn opsflow")
}

#[test]
fn concurrent_adds_and_updates_lose_nothing() {
    let ws = Workspace::new().file(TASKS, SEED);
    // Hold the lock while every writer starts, so they all contend for it at once: each one
    // must then wait, and the test knows they are all waiting when the kernel says so.
    let lock_path = ws.join("docs/workflow/tasks.json.lock");
    let gate = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    gate.lock().unwrap();

    const ADDERS: usize = 8;
    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 0..ADDERS {
        let title = format!("added by writer {i}");
        let child =
            spawn(&ws, &["tasks", "add", "--title", &title, "--owner", "devops", "--type", "deployment_staging"]);
        children.push((title, child));
    }
    let updates: Vec<(&str, String, String)> = vec![
        ("U-1", "status".into(), "in_progress".into()),
        ("U-1", "claimed_by".into(), "DevOps-Engineer".into()),
        ("U-1", "x-note".into(), "same entry, third writer".into()),
        ("U-2", "status".into(), "done".into()),
        ("U-3", "status".into(), "blocked".into()),
        ("U-4", "environment".into(), "staging".into()),
    ];
    for (id, key, value) in &updates {
        let assignment = format!("{key}={value}");
        children.push((format!("update {id}"), spawn(&ws, &["tasks", "update", id, "--set", &assignment])));
    }
    let ino = fs::metadata(&lock_path).unwrap().ino();
    if flock_waiters(ino).is_some() {
        wait_until(Duration::from_secs(120), "every writer to wait for the lock", || {
            flock_waiters(ino) == Some(children.len())
        });
    }
    drop(gate);

    let mut printed_ids = BTreeMap::new();
    for (what, mut child) in children {
        let status = wait_for_exit(&mut child, Duration::from_secs(120), &what);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(status.success(), "{what} failed with {status}\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
        if what.starts_with("added by ") {
            printed_ids.insert(what, stdout.trim().to_owned());
        }
    }

    let tasks = ws.tasks();
    assert_eq!(tasks.len(), 4 + ADDERS, "{tasks:#?}");
    let mut ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), tasks.len(), "task ids are not unique: {tasks:#?}");
    for i in 0..ADDERS {
        let title = format!("added by writer {i}");
        let with_title: Vec<&Value> = tasks.iter().filter(|t| t["title"] == title.as_str()).collect();
        assert_eq!(with_title.len(), 1, "`{title}` is not present exactly once");
        assert_eq!(with_title[0]["id"], printed_ids[&title].as_str(), "the id `{title}` printed is not its id");
    }
    for (id, key, value) in &updates {
        assert_eq!(task(&tasks, id)[key.as_str()], value.as_str(), "the update of {id}.{key} was lost");
    }
    ws.run(&["validate"]).status(0);
    assert_eq!(ws.list_dir("docs/workflow"), ["tasks.json", "tasks.json.lock"]);
}

/// What the writer that ignores the lock saw.
#[derive(Default)]
struct RogueLog {
    /// Reads that lacked the task the rogue writer had just written: someone replaced its
    /// file with content computed before it.
    stale_reads: Vec<String>,
    /// How many tasks it wrote.
    written: usize,
}

/// A writer that ignores the lock: read, add one task, write a temporary file, rename. It
/// writes at least `iterations` tasks, and goes on until opsflow has written `opsflow_writes`
/// times beside it, so the two always overlap however fast either one is.
fn rogue_writer(
    tasks_path: PathBuf,
    iterations: usize,
    opsflow_written: &AtomicUsize,
    opsflow_writes: usize,
    done: &AtomicBool,
) -> RogueLog {
    let temp = tasks_path.with_file_name("rogue-writer.tmp");
    let mut log = RogueLog::default();
    let mut i = 0;
    let end = Instant::now() + Duration::from_secs(120);
    while i < iterations || opsflow_written.load(Ordering::SeqCst) < opsflow_writes {
        assert!(
            Instant::now() < end,
            "opsflow wrote fewer than {opsflow_writes} times in 120 s beside the rogue writer"
        );
        let bytes = fs::read(&tasks_path).expect("the rogue writer reads tasks.json");
        if i > 0 {
            let previous = format!("\"ROGUE-{:03}\"", i - 1);
            if !String::from_utf8_lossy(&bytes).contains(&previous) {
                log.stale_reads.push(format!("iteration {i} read a file without {previous}"));
            }
        }
        let mut root: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("the rogue writer read a file that does not parse: {e}"));
        root["tasks"].as_array_mut().expect("a tasks array").push(json!({
            "id": format!("ROGUE-{i:03}"),
            "title": "written without the lock",
            "agent": "Rogue-Agent",
            "type": "chore",
            "status": "pending",
        }));
        let mut file = File::create(&temp).unwrap();
        file.write_all(serde_json::to_string_pretty(&root).unwrap().as_bytes()).unwrap();
        // A careful writer syncs before it renames; this also paces it like a real one.
        file.sync_data().unwrap();
        drop(file);
        // It takes no lock, but it does not rename over content it did not read. Without this
        // it could act on a file no writer meant to keep: when its rename lands in the
        // microseconds between opsflow's last check and its swap, opsflow swaps its own file
        // in, sees that the displaced file is not the one it read, and swaps back; a read in
        // that moment returns opsflow's file, and a rename based on it drops the rogue writer's
        // own previous write (README, "Writers that ignore the lock"). Content, not the inode,
        // is compared: a freed inode number is soon given to the next new file.
        if fs::read(&tasks_path).ok().as_deref() != Some(bytes.as_slice()) {
            fs::remove_file(&temp).unwrap();
            continue;
        }
        fs::rename(&temp, &tasks_path).unwrap();
        i += 1;
    }
    log.written = i;
    done.store(true, Ordering::SeqCst);
    log
}

/// What one opsflow worker did while the rogue writer ran.
#[derive(Default)]
struct WorkerLog {
    written: usize,
    /// The titles of the tasks it added.
    added: Vec<String>,
    /// Refusals because the file changed during every attempt: nothing written, and said so.
    contended: usize,
    failures: Vec<String>,
}

#[test]
fn a_writer_that_ignores_the_lock_is_never_clobbered() {
    let ws = Workspace::new().file(TASKS, SEED);
    const ROGUE_WRITES: usize = 200;
    // The opsflow writes that must land while the rogue writer runs.
    const OPSFLOW_WRITES: usize = 4;
    let done = AtomicBool::new(false);
    let opsflow_written = AtomicUsize::new(0);
    let (rogue, workers) = std::thread::scope(|scope| {
        let rogue = scope.spawn(|| rogue_writer(ws.join(TASKS), ROGUE_WRITES, &opsflow_written, OPSFLOW_WRITES, &done));
        // Two opsflow writers run add and update processes back to back while the rogue
        // writer is busy.
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (ws, done, opsflow_written) = (&ws, &done, &opsflow_written);
                scope.spawn(move || {
                    let mut log = WorkerLog::default();
                    let mut n = 0;
                    while !done.load(Ordering::SeqCst) {
                        n += 1;
                        let title = format!("opsflow {worker}-{n}");
                        let counter = format!("x-counter-{worker}={n}");
                        let args: &[&str] = if n % 2 == 0 {
                            &["tasks", "add", "--title", &title, "--owner", "devops", "--type", "deployment_staging"]
                        } else {
                            &["tasks", "update", "U-1", "--set", &counter]
                        };
                        let run = ws.run(args);
                        if run.code() == Some(0) {
                            log.written += 1;
                            if n % 2 == 0 {
                                log.added.push(title.clone());
                            }
                            opsflow_written.fetch_add(1, Ordering::SeqCst);
                        } else if run.code() == Some(2) && run.stderr().contains("another writer changed the file") {
                            log.contended += 1;
                        } else {
                            log.failures.push(format!("{args:?}: {}", run.stderr()));
                        }
                    }
                    log
                })
            })
            .collect();
        let rogue = rogue.join().expect("the rogue writer finished");
        (rogue, workers.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>())
    });

    let tasks = ws.tasks();
    assert!(rogue.written >= ROGUE_WRITES);
    let missing: Vec<String> = (0..rogue.written)
        .map(|i| format!("ROGUE-{i:03}"))
        .filter(|id| !tasks.iter().any(|t| t["id"] == id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "opsflow clobbered the rogue writer's tasks {missing:?}; what the rogue writer saw: {:?}",
        rogue.stale_reads
    );
    for i in 0..rogue.written {
        let id = format!("ROGUE-{i:03}");
        assert_eq!(tasks.iter().filter(|t| t["id"] == id.as_str()).count(), 1, "{id} is duplicated");
    }
    let failures: Vec<&String> = workers.iter().flat_map(|w| &w.failures).collect();
    assert!(failures.is_empty(), "opsflow commands failed: {failures:#?}");
    let written: usize = workers.iter().map(|w| w.written).sum();
    let contended: usize = workers.iter().map(|w| w.contended).sum();
    assert!(written >= OPSFLOW_WRITES, "{written} opsflow writes, {contended} refused as contended");
    // No task opsflow added is there twice. (One may be missing: the rogue writer renames
    // without the lock, so it can drop a write that lands between its check and its rename;
    // no one can prevent that but the rogue writer.)
    for title in workers.iter().flat_map(|w| &w.added) {
        let copies = tasks.iter().filter(|t| t["title"] == title.as_str()).count();
        assert!(copies <= 1, "the task `{title}` opsflow added is there {copies} times");
    }
    assert_eq!(leftover_temp_files(&ws), Vec::<String>::new());
    assert_eq!(ws.list_dir("docs/workflow"), [".gitignore", "tasks.json", "tasks.json.lock"]);
}

/// Writers that all read a large list before any of them has the lock: each one finds, under
/// the lock, a file that others changed since, and must still take an id nobody has, refuse
/// an id another took first, and see the tasks it depends on, whether the change it meets is
/// at the end (appends) or near the start (an update of an early task).
#[test]
fn adds_that_all_read_a_large_list_first_still_take_unique_ids() {
    let entries: Vec<String> = (1..=2000)
        .map(|i| {
            format!(
                "    {{\"id\": \"TASK-{i}\", \"title\": \"finished work number {i} of a long project\", \"agent\": \"Backend-Developer\", \"type\": \"implementation\", \"status\": \"done\"}}"
            )
        })
        .collect();
    let seed = format!("{{\n  \"tasks\": [\n{}\n  ]\n}}\n", entries.join(",\n"));
    let ws = Workspace::new().file(TASKS, &seed);
    let lock_path = ws.join("docs/workflow/tasks.json.lock");
    let gate = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    gate.lock().unwrap();

    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 0..6 {
        let title = format!("numbered by writer {i}");
        let args = ["tasks", "add", "--title", &title, "--owner", "devops", "--type", "deployment_staging"];
        children.push((title.clone(), spawn(&ws, &args)));
    }
    for i in 0..2 {
        let title = format!("wants the id SAME, writer {i}");
        let args =
            ["tasks", "add", "--id", "SAME", "--title", &title, "--owner", "devops", "--type", "deployment_staging"];
        children.push((title.clone(), spawn(&ws, &args)));
    }
    let title = "depends on an early task".to_owned();
    let args = [
        "tasks",
        "add",
        "--id",
        "DEP-1",
        "--title",
        &title,
        "--owner",
        "devops",
        "--type",
        "deployment_staging",
        "--set",
        "depends_on:=[\"TASK-5\"]",
    ];
    children.push((title.clone(), spawn(&ws, &args)));
    children.push(("update TASK-3".into(), spawn(&ws, &["tasks", "update", "TASK-3", "--set", "x-note=early edit"])));
    let ino = fs::metadata(&lock_path).unwrap().ino();
    if flock_waiters(ino).is_some() {
        wait_until(Duration::from_secs(120), "every writer to wait for the lock", || {
            flock_waiters(ino) == Some(children.len())
        });
    }
    drop(gate);

    let mut printed = BTreeMap::new();
    let mut refused = Vec::new();
    for (what, mut child) in children {
        let status = wait_for_exit(&mut child, Duration::from_secs(120), &what);
        let output = child.wait_with_output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8(output.stdout).unwrap(), String::from_utf8_lossy(&output.stderr).into_owned());
        if what.starts_with("wants the id SAME") && !status.success() {
            assert!(stderr.contains("a task with the id `SAME` already exists"), "{what}: {stderr}");
            refused.push(what);
            continue;
        }
        assert!(status.success(), "{what} failed with {status}\n{stdout}{stderr}");
        printed.insert(what, stdout.trim().to_owned());
    }
    assert_eq!(refused.len(), 1, "exactly one of the two writers of SAME is refused: {refused:?}");

    let tasks = ws.tasks();
    assert_eq!(tasks.len(), 2000 + 6 + 1 + 1, "nothing lost, nothing doubled");
    let mut ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), tasks.len(), "task ids are not unique");
    let mut numbered: Vec<&str> = (0..6).map(|i| printed[&format!("numbered by writer {i}")].as_str()).collect();
    numbered.sort();
    assert_eq!(numbered, ["TASK-2001", "TASK-2002", "TASK-2003", "TASK-2004", "TASK-2005", "TASK-2006"]);
    for (what, id) in &printed {
        if what.starts_with("update") {
            continue;
        }
        assert_eq!(task(&tasks, id)["title"], what.as_str(), "the id {id} printed is not the task's");
    }
    assert_eq!(task(&tasks, "DEP-1")["depends_on"], json!(["TASK-5"]));
    assert_eq!(task(&tasks, "TASK-3")["x-note"], "early edit");
    ws.run(&["validate"]).status(0);
}
