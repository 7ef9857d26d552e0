//! A person's git work under a running `opsflow watch`: checking out an older commit and
//! back, merging another agent's branch, stashing. The daemon follows the files it finds,
//! never redeploys what git brought back, and writes nothing where there is nothing new, so
//! the person's next `git merge` or `git stash pop` is never refused for local changes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::engine::{edit_json, status_of};
use crate::life::{approval_file, approve, life_workspace, live_index, new_release};
use crate::util::{TASKS, Workspace, task, tasks_of, wait_until};

/// Long enough that only a hang fails: a production deploy with its monitoring takes seconds.
const DEADLINE: Duration = Duration::from_secs(120);

fn git(ws: &Workspace, args: &[&str]) -> String {
    crate::util::git(ws.path(), args)
}

/// `git status --porcelain`, one path per line (renames and the like do not occur here).
fn changed(ws: &Workspace) -> Vec<String> {
    git(ws, &["status", "--porcelain", "--untracked-files=all"]).lines().map(|l| l[3..].to_owned()).collect()
}

/// `opsflow watch --http 127.0.0.1:0` as a child process; its log is kept for messages.
struct Watch {
    child: Child,
    log: Arc<Mutex<String>>,
    address: SocketAddr,
}

impl Watch {
    fn start(ws: &Workspace) -> Watch {
        Watch::start_with(ws, &[])
    }

    /// `opsflow [global] watch --http 127.0.0.1:0`.
    fn start_with(ws: &Workspace, global: &[&str]) -> Watch {
        let mut args = global.to_vec();
        args.extend(["watch", "--http", "127.0.0.1:0"]);
        let mut child =
            ws.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn opsflow watch");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut address = None;
        wait_until(DEADLINE, "`opsflow watch` to say where it listens", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("`opsflow watch` exited with {status}:\n{}", log.lock().unwrap());
            }
            let log = log.lock().unwrap();
            address = log.lines().find_map(|line| line.split_once("on http://").map(|(_, a)| a.trim().to_owned()));
            address.is_some()
        });
        Watch { child, log, address: address.unwrap().parse().expect("an address") }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The exposition on `/metrics`, read with a plain HTTP/1.1 GET.
    fn exposition(&self) -> String {
        let mut stream = TcpStream::connect(self.address).expect("connect to /metrics");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.address).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read /metrics");
        let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        body.to_owned()
    }

    /// The sum of the `/metrics` samples whose series starts with `prefix`; 0 when there is
    /// none (a gauge with no task of that status).
    fn metric(&self, prefix: &str) -> f64 {
        sum_of(&self.exposition(), prefix)
    }

    /// Owned tasks counted as `pending` by the last reconcile, if it started after `since`
    /// (seconds since the epoch, this machine's clock): the end of the last successful
    /// reconcile less its duration is when it started, and every file it read was read after
    /// that. `None` before such a reconcile, and when it counted no owned task at all (every
    /// workspace here has some): it read `tasks.json` while a test or git was rewriting it in
    /// place, found it incomplete, and reads it again once it settles.
    fn pending_since(&self, since: f64) -> Option<f64> {
        let exposition = self.exposition();
        let ended = sum_of(&exposition, "opsflow_last_successful_reconcile_timestamp_seconds");
        let took = sum_of(&exposition, "opsflow_reconcile_last_duration_seconds");
        if ended - took <= since {
            return None;
        }
        (sum_of(&exposition, "opsflow_tasks{") > 0.0).then(|| sum_of(&exposition, "opsflow_tasks{status=\"pending\"}"))
    }
}

/// The sum of the samples of `exposition` whose series starts with `prefix`.
fn sum_of(exposition: &str, prefix: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| series.starts_with(prefix))
        .map(|(_, value)| value.trim().parse::<f64>().expect("a number"))
        .sum()
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SENTINEL: &str = "SENTINEL-1";

/// Owned tasks `pending` in `tasks.json` as it is now, counted by `tasks list --mine`.
fn pending_in_file(ws: &Workspace) -> f64 {
    let listed = ws.run(&["tasks", "list", "--mine", "--status", "pending", "--json"]).json();
    listed.as_array().expect("a JSON array").len() as f64
}

/// Waits until a reconcile that started after the change just made (`what`) has counted as
/// many owned pending tasks as `tasks.json` holds. Neither figure is the daemon's count from
/// before the change: that one is of the last reconcile that finished, which may be older
/// than a write the daemon made since (its counts are published when a reconcile ends).
fn counted(ws: &Workspace, watch: &Watch, what: &str) {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let end = std::time::Instant::now() + DEADLINE;
    while !watch.pending_since(since).is_some_and(|counted| counted == pending_in_file(ws)) {
        if std::time::Instant::now() >= end {
            panic!("timed out after {DEADLINE:?} waiting for {what}:\n{}\n{}", watch.exposition(), watch.log());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Proves that the daemon has reconciled everything written before this call: adds an owned
/// task that can only wait (it depends on the product manager's open review) and waits until
/// the daemon counts it. Reconciles run one after another and each reads every file, so any
/// write the earlier files caused has happened by then.
fn settle(ws: &Workspace, watch: &Watch) {
    edit_json(ws, TASKS, |tasks| {
        tasks["tasks"].as_array_mut().unwrap().push(json!({
            "id": SENTINEL, "title": "wait for the review", "agent": "DevOps-Engineer",
            "type": "deployment_feedback", "status": "pending", "depends_on": ["PM-001"],
        }))
    });
    counted(ws, watch, "the daemon to count the waiting sentinel task");
}

/// Takes the sentinel out of `tasks.json` again and waits until the daemon no longer counts it.
fn clear(ws: &Workspace, watch: &Watch) {
    edit_json(ws, TASKS, |tasks| tasks["tasks"].as_array_mut().unwrap().retain(|t| t["id"] != SENTINEL));
    counted(ws, watch, "the daemon to see the sentinel gone");
}

/// Takes the sentinel away again with `git stash` (as a person parks an edit) and waits until
/// the daemon no longer counts it; then drops the stash.
fn unsettle(ws: &Workspace, watch: &Watch) {
    git(ws, &["stash", "-q"]);
    assert!(!ws.read_string(TASKS).contains(SENTINEL), "the stash left the sentinel in {TASKS}");
    counted(ws, watch, "the daemon to see the stash take the sentinel away");
    git(ws, &["stash", "drop", "-q"]);
}

/// `tasks.json` as committed at HEAD plus the sentinel and nothing else, and no other change.
fn only_the_sentinel_changed(ws: &Workspace, watch: &Watch) {
    assert_eq!(
        changed(ws),
        [TASKS],
        "the daemon wrote where nothing was new:\n{}\n{}",
        watch.log(),
        git(ws, &["diff", "--", ".", ":!docs/workflow/tasks.json"])
    );
    let committed = tasks_of(git(ws, &["show", &format!("HEAD:{TASKS}")]).as_bytes());
    let mut now = ws.tasks();
    now.retain(|t| t["id"] != SENTINEL);
    let differ: Vec<String> =
        now.iter().zip(&committed).filter(|(a, b)| a != b).map(|(a, b)| format!("now {a}\nwas {b}")).collect();
    assert_eq!(now.len(), committed.len(), "tasks came or went besides the sentinel:\n{}", watch.log());
    assert!(differ.is_empty(), "tasks.json changed besides the sentinel:\n{}\n{}", differ.join("\n"), watch.log());
}

fn production_live(ws: &Workspace) -> String {
    let mut live = live_index(ws);
    assert!(!live.is_empty(), "production serves nothing");
    live.retain(|c| c != '\n');
    live
}

fn commit_all(ws: &Workspace, message: &str) {
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-q", "-m", message]);
}

#[test]
fn checkout_merge_and_stash_under_a_running_daemon_redeploy_nothing_and_write_nothing() {
    let ws = life_workspace();
    git(&ws, &["init", "-q", "-b", "main"]);
    // 1.0.0 goes live before the daemon starts, and the person commits what opsflow wrote.
    ws.run(&["run"]).status(3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    ws.run(&["run"]).status(0);
    commit_all(&ws, "1.0.0 is live");
    let live_1_0 = production_live(&ws);
    assert!(live_1_0.contains("UNIT-001 1.0.0"), "{live_1_0}");

    let watch = Watch::start(&ws);
    let deployments = || watch.metric("opsflow_deployments_total{environment=\"production\"");

    // Other agents prepare 1.1.0 on a branch; the daemon stages it there.
    git(&ws, &["checkout", "-q", "-b", "release-1.1"]);
    let ids = new_release(&ws, "UNIT-001", "1.1.0", 0.1);
    wait_until(DEADLINE, "1.1.0 to reach staging and wait for approval", || {
        status_of(&ws, &ids[1]) == "deployed" && status_of(&ws, &ids[2]) == "blocked"
    });
    let request = approval_file(&ws, "UNIT-001", "1.1.0");
    settle(&ws, &watch);
    clear(&ws, &watch);
    commit_all(&ws, "1.1.0 staged");
    settle(&ws, &watch);
    only_the_sentinel_changed(&ws, &watch);
    unsettle(&ws, &watch);
    let production_runs = deployments();

    // Back to main, where 1.1.0 does not exist: its tasks and records go away with the
    // checkout, and the daemon neither undoes that nor touches production.
    git(&ws, &["checkout", "-q", "main"]);
    assert!(!ws.join(&request).exists(), "{request} belongs to the branch");
    settle(&ws, &watch);
    only_the_sentinel_changed(&ws, &watch);
    assert_eq!(production_live(&ws), live_1_0);
    unsettle(&ws, &watch);

    // The merge brings 1.1.0 back, staged and waiting: nothing to do but wait for a person.
    git(&ws, &["merge", "-q", "--no-ff", "-m", "merge release-1.1", "release-1.1"]);
    settle(&ws, &watch);
    only_the_sentinel_changed(&ws, &watch);
    assert_eq!(status_of(&ws, &ids[2]), "blocked");
    unsettle(&ws, &watch);
    assert_eq!(deployments(), production_runs, "a deployment ran on a checkout or merge:\n{}", watch.log());
    assert_eq!(production_live(&ws), live_1_0);

    // A person starts approving, parks the edit with `git stash`, and brings it back.
    let text = ws.read_string(&request);
    let half = text.replacen("approved_by: null", "approved_by: \"alice\"", 1);
    assert_ne!(half, text);
    ws.write(&request, half);
    let reason = || task(&ws.tasks(), &ids[2])["blocked_reason"].as_str().unwrap_or_default().to_owned();
    wait_until(DEADLINE, "the daemon to read the half-made approval", || !reason().contains("as opsflow wrote it"));
    assert!(reason().contains("is not approved yet (status pending"), "{}", reason());
    // The reason was written by the reconcile that read the edit, and that write wakes one
    // more reconcile. Git must not rewrite the tree under a reconcile that has already started
    // (it waits only for git's lock when it starts): once the daemon has counted and uncounted
    // the sentinel, in reconciles that had nothing else to do, nothing is left running.
    settle(&ws, &watch);
    clear(&ws, &watch);
    git(&ws, &["stash", "-q"]);
    assert_eq!(ws.read_string(&request), text);
    // The daemon reads the request as it was and says so again, in the same bytes as
    // committed, so the stash can come back.
    wait_until(DEADLINE, "the daemon to read the request as written again", || {
        reason().contains("as opsflow wrote it")
    });
    settle(&ws, &watch);
    only_the_sentinel_changed(&ws, &watch);
    unsettle(&ws, &watch);
    git(&ws, &["stash", "pop", "-q"]);
    approve_rest(&ws, &request);
    wait_until(DEADLINE, "the approved 1.1.0 to go live", || status_of(&ws, &ids[2]) == "deployed");
    assert!(production_live(&ws).contains("UNIT-001 1.1.0"), "{}", production_live(&ws));
    settle(&ws, &watch);
    assert_eq!(deployments(), production_runs + 1.0, "{}", watch.log());
    clear(&ws, &watch);
    commit_all(&ws, "1.1.0 is live");
    ws.run(&["validate"]).status(0);
    assert!(!watch.log().contains(" ERROR "), "{}", watch.log());
}

/// The second half of an approval someone began: the status.
fn approve_rest(ws: &Workspace, file: &str) {
    let text = ws.read_string(file);
    let signed = text.replacen("status: \"pending\"", "status: \"approved\"", 1);
    assert_ne!(signed, text);
    ws.write(file, signed);
}

/// While git holds `index.lock` (a checkout or stash writing the tree), the daemon does not
/// start a reconcile; it does once the lock is gone.
#[test]
fn the_daemon_waits_while_git_holds_the_index_lock() {
    let ws = Workspace::new().sample();
    git(&ws, &["init", "-q", "-b", "main"]);
    commit_all(&ws, "the sample");
    let watch = Watch::start_with(&ws, &["-v"]);
    wait_until(DEADLINE, "the first reconcile to block on the approval", || status_of(&ws, "DEVOPS-007") == "blocked");
    settle(&ws, &watch);
    let reconciles = watch.metric("opsflow_reconciles_total");

    let lock = ws.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    wait_until(DEADLINE, "the daemon to say it waits for git", || {
        watch.log().contains("git is writing the working tree: waiting for it to finish")
    });
    // The daemon is in its wait: no reconcile has run since the approval.
    assert_eq!(watch.metric("opsflow_reconciles_total"), reconciles);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");

    std::fs::remove_file(&lock).unwrap();
    wait_until(DEADLINE, "the approved release to go live once git is done", || {
        status_of(&ws, "DEVOPS-007") == "deployed"
    });
    assert!(!watch.log().contains("reconciling anyway"), "{}", watch.log());
}
