//! Sync through a git remote (`git.sync`): real clones of a real bare repository, real
//! `opsflow run` and `opsflow watch` processes. A claim is pushed before its node runs; two
//! runners racing for one task land exactly one claim; an unreachable remote means no claim
//! and `status` says since when, and the results wait until it is back; and the goal: four
//! runners, 200 tasks pushed by another agent, a runner killed and pushes refused for a
//! while, every task claimed exactly once and no conflict marker in any commit.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace, git, git_in, isolated, opsflow_bin, tasks_of, wait_for_exit, wait_until};

const STATE: &str = "docs/workflow/state.json";
const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) fn design_task(id: &str) -> Value {
    json!({
        "id": id,
        "title": format!("Design the environments ({id})"),
        "agent": "DevOps-Engineer",
        "type": "infrastructure_design",
        "status": "pending",
        "priority": "high",
        "unit_id": "UNIT-001"
    })
}

/// A bare repository as the remote, seeded with the sample workspace and `git.sync` on.
pub(crate) struct Remote {
    _dir: tempfile::TempDir,
    pub(crate) bare: PathBuf,
    clones: Vec<Workspace>,
}

impl Remote {
    pub(crate) fn new(tasks: &[Value], git_config: Value) -> Remote {
        let dir = tempfile::Builder::new().prefix("opsflow-sync-").tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        git(dir.path(), &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        let seed = Workspace::new().sample();
        git(seed.path(), &["init", "-q", "-b", "main"]);
        let init = seed.run(&["init"]);
        init.status(0);
        let mut config: Value = serde_json::from_slice(&seed.read("project-config.json")).unwrap();
        config["git"] = git_config;
        seed.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
        let mut state: Value = serde_json::from_slice(&seed.read(STATE)).unwrap();
        state["current_nodes"] = json!([]);
        seed.write(STATE, serde_json::to_vec_pretty(&state).unwrap());
        seed.write(TASKS, serde_json::to_vec_pretty(&json!({ "tasks": tasks })).unwrap());
        git(seed.path(), &["add", "-A"]);
        git(seed.path(), &["commit", "-q", "-m", "Seed the workspace"]);
        git(seed.path(), &["push", "-q", bare.to_str().unwrap(), "main"]);
        Remote { _dir: dir, bare, clones: Vec::new() }
    }

    /// A new clone with the merge driver configured, as `opsflow init` would.
    pub(crate) fn clone(&mut self) -> usize {
        let ws = Workspace::new();
        git(ws.path(), &["clone", "-q", self.bare.to_str().unwrap(), "."]);
        git(ws.path(), &["config", "merge.opsflow.driver", &format!("{} merge-driver %O %A %B %P", opsflow_bin())]);
        git(ws.path(), &["config", "merge.opsflow.name", "opsflow"]);
        self.clones.push(ws);
        self.clones.len() - 1
    }

    pub(crate) fn ws(&self, clone: usize) -> &Workspace {
        &self.clones[clone]
    }

    pub(crate) fn opsflow(&self, clone: usize, args: &[&str]) -> Output {
        isolated(&mut self.ws(clone).command(args)).output().expect("run opsflow")
    }

    /// The remote branch's commits: (message) oldest first.
    fn messages(&self) -> Vec<String> {
        let log = git(&self.bare, &["log", "--reverse", "--format=%B%x00", "main"]);
        log.split('\0').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect()
    }

    /// Claim commits on the remote branch, by `Opsflow-Task:` trailer.
    fn claims(&self) -> BTreeMap<String, usize> {
        let mut claims = BTreeMap::new();
        for message in self.messages().iter().filter(|m| m.starts_with("Claim ")) {
            let task = message
                .lines()
                .find_map(|l| l.strip_prefix("Opsflow-Task: "))
                .unwrap_or_else(|| panic!("a claim without an Opsflow-Task trailer:\n{message}"));
            *claims.entry(task.to_owned()).or_default() += 1;
        }
        claims
    }

    /// The task list on the remote branch.
    fn remote_tasks(&self) -> Vec<Value> {
        tasks_of(git(&self.bare, &["show", &format!("main:{TASKS}")]).as_bytes())
    }
}

fn status_of(tasks: &[Value], id: &str) -> String {
    tasks.iter().find(|t| t["id"] == id).map(|t| t["status"].as_str().unwrap_or("").to_owned()).unwrap_or_default()
}

#[test]
fn a_claim_is_pushed_before_the_node_runs() {
    let mut remote = Remote::new(&[], json!({"sync": true, "fetch_interval": "1s"}));
    let clone = remote.clone();
    // The dev environment node runs `dev.setup`, which records what the remote holds then.
    let ws = remote.ws(clone);
    let seen = ws.join("seen");
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    config["dev"]["setup"] =
        json!(format!("git --git-dir '{}' log -1 --format=%B main > '{}'", remote.bare.display(), seen.display()));
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
    let design = ws.read_string("docs/workflow/artifacts/INFRA01-requirements.md");
    ws.write("docs/workflow/artifacts/INFRA04-env-specs.md", design);
    let mut task = design_task("T-1");
    task["type"] = json!("infrastructure_dev_env");
    ws.write(TASKS, serde_json::to_vec_pretty(&json!({"tasks": [task]})).unwrap());
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-q", "-m", "A dev environment task"]);
    git(ws.path(), &["push", "-q", "origin", "main"]);

    let run = remote.opsflow(clone, &["run"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    // The finished design lets the next nodes wait on inputs this workspace lacks (exit 3).
    assert!(stdout.contains("T-1") && stdout.contains("done"), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    let seen = fs::read_to_string(&seen).expect("the setup command ran");
    assert!(
        seen.starts_with("Claim T-1 for Dev_Environment_Setup"),
        "the remote's last commit as the node ran: {seen}"
    );
    assert!(seen.contains("Opsflow-Task: T-1") && seen.contains("Opsflow-Run: "), "{seen}");
    // Then the results landed too, with the same trailers, and only files opsflow wrote.
    let messages = remote.messages();
    let claim = messages.iter().position(|m| m.starts_with("Claim T-1 ")).unwrap();
    let results = messages.iter().position(|m| m.starts_with("Dev_Environment_Setup done for T-1")).unwrap();
    assert!(claim < results, "{messages:?}");
    assert!(messages[results].contains("Opsflow-Task: T-1"), "{}", messages[results]);
    assert_eq!(status_of(&remote.remote_tasks(), "T-1"), "done");
    let files = git(&remote.bare, &["show", "--name-only", "--format=", "main"]);
    assert!(files.lines().all(|f| f.starts_with("docs/workflow/")), "{files}");
    assert!(!files.contains(".opsflow"), "{files}");
}

#[test]
fn two_runners_racing_for_one_task_land_one_claim() {
    let mut remote = Remote::new(&[design_task("T-1")], json!({"sync": true, "fetch_interval": "1s"}));
    let (a, b) = (remote.clone(), remote.clone());
    // Both start from the same remote state; whichever pushes second finds the other's claim.
    let children: Vec<Child> = [a, b]
        .iter()
        .map(|&c| {
            isolated(&mut remote.ws(c).command(&["run"])).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let ran: Vec<bool> = outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).contains("T-1 ")).collect();
    let logs: Vec<String> = outputs
        .iter()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .collect();
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "exactly one runner ran T-1:\n{logs:#?}");
    assert_eq!(remote.claims().get("T-1"), Some(&1), "{:?}", remote.messages());
    assert_eq!(status_of(&remote.remote_tasks(), "T-1"), "done");
    // The loser holds no claim of its own: after a fetch it has what the remote has.
    let loser = if ran[0] { b } else { a };
    let run = remote.opsflow(loser, &["run"]);
    assert!(run.status.success());
    assert_eq!(status_of(&remote.ws(loser).tasks(), "T-1"), "done");
    assert_eq!(git(remote.ws(loser).path(), &["status", "--porcelain", "--untracked-files=no"]), "");
}

#[test]
fn an_unreachable_remote_means_no_claim_and_status_says_since_when() {
    let mut remote = Remote::new(&[design_task("T-1")], json!({"sync": true, "fetch_interval": "1s"}));
    let clone = remote.clone();
    let ws = remote.ws(clone);
    let moved = remote.bare.with_extension("away");
    fs::rename(&remote.bare, &moved).unwrap();
    let run = remote.opsflow(clone, &["run"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unreachable since"), "{stderr}");
    assert_eq!(status_of(&ws.tasks(), "T-1"), "pending", "no claim while the remote is away");
    let status = isolated(&mut ws.command(&["status"])).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text.lines().find(|l| l.starts_with("remote")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("origin/main unreachable since 20"), "{line}");
    let json: Value =
        serde_json::from_slice(&isolated(&mut ws.command(&["status", "--json"])).output().unwrap().stdout).unwrap();
    assert_eq!(json["remote"]["reachable"], false, "{json}");
    assert!(json["remote"]["unreachable_since"].as_str().is_some_and(|s| s.starts_with("20")), "{json}");

    // Back: the task is claimed and run, and everything is pushed.
    fs::rename(&moved, &remote.bare).unwrap();
    let run = remote.opsflow(clone, &["run"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(status_of(&remote.remote_tasks(), "T-1"), "done");
    let status = isolated(&mut ws.command(&["status"])).output().unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("remote     origin/main reachable"));
}

#[test]
fn results_made_while_pushes_are_refused_are_pushed_when_the_remote_is_back() {
    let mut remote = Remote::new(&[design_task("T-1")], json!({"sync": true, "fetch_interval": "1s"}));
    let clone = remote.clone();
    let flag = remote.bare.join("refuse");
    let hook = remote.bare.join("hooks/pre-receive");
    fs::write(&hook, format!("#!/bin/sh\nif [ -e '{}' ]; then echo refused >&2; exit 1; fi\n", flag.display()))
        .unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Pushes refused: fetches work, but no claim lands, so nothing runs.
    fs::write(&flag, "").unwrap();
    let run = remote.opsflow(clone, &["run"]);
    assert_eq!(status_of(&remote.ws(clone).tasks(), "T-1"), "pending", "{}", String::from_utf8_lossy(&run.stderr));
    assert!(remote.claims().is_empty());
    fs::remove_file(&flag).unwrap();
    let run = remote.opsflow(clone, &["run"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(remote.claims().get("T-1"), Some(&1));
    assert_eq!(status_of(&remote.remote_tasks(), "T-1"), "done");
}

/// One `opsflow watch` on a clone, its log in a file.
struct Runner {
    child: Child,
    log: PathBuf,
}

#[test]
fn sync_without_its_remote_names_the_repository_and_the_config_and_exits_2() {
    let ws = Workspace::new().sample();
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    config["git"] = json!({"sync": true, "remote": "upstream"});
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
    // Outside a repository, the workspace directory is named.
    let outside = ws.run(&["run"]);
    outside.status(2);
    assert!(outside.stderr().contains(" is not in a git repository"), "{}", outside.stderr());
    git(ws.path(), &["init", "-q", "-b", "main"]);
    let run = ws.run(&["run"]);
    run.status(2);
    let top = fs::canonicalize(ws.path()).unwrap();
    let expected = format!(
        "git.sync is on but the repository {} has no remote `upstream` (git.remote in project-config.json): ",
        top.display()
    );
    assert!(run.stderr().contains(&expected), "{}", run.stderr());
}

fn start_runner(remote: &Remote, clone: usize, name: &str) -> Runner {
    let log = remote._dir.path().join(format!("{name}.log"));
    let file = fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let child = isolated(&mut remote.ws(clone).command(&["-v", "watch"]))
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let runner = Runner { child, log };
    wait_until(DEADLINE, "the runner to watch", || {
        fs::read_to_string(&runner.log).unwrap_or_default().contains("watching ")
    });
    runner
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Another agent: adds tasks of type `kind` to the remote in bursts, retrying on a rejected push.
fn push_tasks(dir: &Path, ids: &[String], kind: &str) {
    loop {
        git(dir, &["fetch", "-q", "origin", "main"]);
        git(dir, &["reset", "-q", "--hard", "origin/main"]);
        let mut list: Value = serde_json::from_slice(&fs::read(dir.join(TASKS)).unwrap()).unwrap();
        let tasks = list["tasks"].as_array_mut().unwrap();
        tasks.extend(ids.iter().map(|id| {
            let mut task = design_task(id);
            task["type"] = json!(kind);
            task
        }));
        fs::write(dir.join(TASKS), serde_json::to_vec_pretty(&list).unwrap()).unwrap();
        git(dir, &["commit", "-q", "-am", &format!("Add {} tasks", ids.len())]);
        if git_in(dir, &["push", "-q", "origin", "main"]).status.success() {
            return;
        }
    }
}

#[test]
fn four_runners_claim_every_task_exactly_once() {
    const TASKS_TOTAL: usize = 200;
    let mut remote = Remote::new(&[], json!({"sync": true, "fetch_interval": "1s"}));
    // Cheap nodes: the dev environment with no tools and a setup command that returns at once,
    // unless the clone holds a `hold` file: then it waits, so that a runner can be killed in
    // the middle of a node (`running` says a node is in its setup).
    let agent = remote.clone();
    {
        let ws = remote.ws(agent);
        let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
        config["dev"]["tools"] = json!([]);
        config["dev"]["setup"] = json!("touch running; while [ -e hold ]; do sleep 0.02; done");
        ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
        let design = ws.read_string("docs/workflow/artifacts/INFRA01-requirements.md");
        ws.write("docs/workflow/artifacts/INFRA04-env-specs.md", design);
        git(ws.path(), &["add", "-A"]);
        git(ws.path(), &["commit", "-q", "-m", "Cheap dev environments"]);
        git(ws.path(), &["push", "-q", "origin", "main"]);
    }
    let runners_clones: Vec<usize> = (0..4).map(|_| remote.clone()).collect();
    let flag = remote.bare.join("refuse");
    let hook = remote.bare.join("hooks/pre-receive");
    fs::write(&hook, format!("#!/bin/sh\nif [ -e '{}' ]; then echo refused >&2; exit 1; fi\n", flag.display()))
        .unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut runners: Vec<Option<Runner>> =
        runners_clones.iter().enumerate().map(|(i, &c)| Some(start_runner(&remote, c, &format!("r{i}")))).collect();

    let agent_dir = remote.ws(agent).path().to_owned();
    let ids: Vec<String> = (0..TASKS_TOTAL).map(|i| format!("T-{i:03}")).collect();
    let pusher = {
        let ids = ids.clone();
        std::thread::spawn(move || {
            for burst in ids.chunks(25) {
                push_tasks(&agent_dir, burst, "infrastructure_dev_env");
            }
        })
    };
    let done = |remote: &Remote| {
        let tasks = remote.remote_tasks();
        tasks.iter().filter(|t| matches!(t["status"].as_str(), Some("done" | "failed"))).count()
    };
    // A runner killed in the middle of a node, and a remote that refuses pushes for a while.
    wait_until(DEADLINE, "a quarter of the tasks to be done", || done(&remote) >= TASKS_TOTAL / 4);
    // Every runner holds in its next node; the first one inside is killed there.
    for &clone in &runners_clones {
        fs::write(remote.ws(clone).join("hold"), "").unwrap();
        let _ = fs::remove_file(remote.ws(clone).join("running"));
    }
    let mut victim = 0;
    wait_until(DEADLINE, "a runner to be inside a node", || {
        match runners_clones.iter().position(|&c| remote.ws(c).join("running").exists()) {
            Some(index) => {
                victim = index;
                true
            }
            None => false,
        }
    });
    let mut killed = runners[victim].take().unwrap();
    // SAFETY: kill(2) of our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(killed.child.id() as i32, libc::SIGKILL) }, 0);
    let _ = killed.child.wait();
    for &clone in &runners_clones {
        fs::remove_file(remote.ws(clone).join("hold")).unwrap();
    }
    // The task it was running: claimed (and so pushed) by this clone, left `in_progress`.
    let first = remote.ws(runners_clones[victim]);
    let interrupted: Vec<String> = first
        .tasks()
        .iter()
        .filter(|t| t["status"] == "in_progress")
        .filter(|t| t["run_id"].as_str().is_some_and(|run| first.join(".opsflow/runs").join(run).exists()))
        .map(|t| t["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(interrupted.len(), 1, "the killed runner's tasks in progress: {interrupted:?}");
    let interrupted = interrupted[0].clone();
    assert_eq!(
        remote.claims().get(&interrupted),
        Some(&1),
        "the claim of {interrupted} was pushed before the node ran"
    );
    fs::write(&flag, "").unwrap();
    wait_until(DEADLINE, "a runner to see the remote refuse pushes", || {
        runners_clones.iter().enumerate().filter(|&(i, _)| i != victim).any(|(_, &c)| {
            let status = fs::read_to_string(remote.ws(c).join(".opsflow/git-sync.json")).unwrap_or_default();
            status.contains("\"reachable\": false")
        })
    });
    fs::remove_file(&flag).unwrap();
    runners[victim] = Some(start_runner(&remote, runners_clones[victim], &format!("r{victim}-again")));
    pusher.join().unwrap();

    let end = std::time::Instant::now() + DEADLINE * 3;
    while done(&remote) < TASKS_TOTAL {
        if std::time::Instant::now() > end {
            let logs: Vec<String> = runners
                .iter()
                .flatten()
                .map(|r| {
                    let log = fs::read_to_string(&r.log).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                })
                .collect();
            panic!(
                "{} of {TASKS_TOTAL} tasks done at the deadline; the runners' logs end:\n{}",
                done(&remote),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for runner in runners.iter_mut().flatten() {
        // SAFETY: kill(2) of our own child, not yet waited for.
        unsafe { libc::kill(runner.child.id() as i32, libc::SIGTERM) };
        wait_for_exit(&mut runner.child, DEADLINE, "a runner after SIGTERM");
    }

    let tasks = remote.remote_tasks();
    let claims = remote.claims();
    for id in &ids {
        assert_eq!(claims.get(id), Some(&1), "claims of {id}: {:?}", claims.get(id));
        let status = status_of(&tasks, id);
        assert!(status == "done" || status == "failed", "{id} is {status}");
        if status == "failed" {
            let task = tasks.iter().find(|t| t["id"] == id.as_str()).unwrap();
            assert!(task.to_string().contains("interrupted"), "{id} failed for another reason: {task}");
        }
    }
    // The restarted runner recovered the run it was killed in.
    let task = tasks.iter().find(|t| t["id"] == interrupted.as_str()).unwrap();
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task.to_string().contains("interrupted"), "{task}");
    assert_eq!(tasks.iter().filter(|t| t["id"].as_str().is_some_and(|i| i.starts_with("T-"))).count(), TASKS_TOTAL);
    let patches = git(&remote.bare, &["log", "-p", "--format=commit %H", "main"]);
    let marked: Vec<&str> =
        patches.lines().filter(|l| l.starts_with("+<<<<<<<") || l.starts_with("+>>>>>>>")).collect();
    assert!(marked.is_empty(), "conflict markers committed: {marked:?}");
}

#[test]
fn a_changed_git_section_takes_a_restart_and_the_log_says_so() {
    let mut remote = Remote::new(&[], json!({"sync": true, "fetch_interval": "1s"}));
    let clone = remote.clone();
    let runner = start_runner(&remote, clone, "watch");
    let ws = remote.ws(clone);
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    config["git"]["branch"] = json!("release");
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
    wait_until(DEADLINE, "the daemon to say the change takes a restart", || {
        fs::read_to_string(&runner.log).unwrap_or_default().contains(
            "git.branch is now `release` (was `main`): a change of the git section takes a restart of opsflow; until then it keeps syncing with origin/main",
        )
    });
    // It keeps syncing with the branch it started with: a task pushed there is claimed.
    let agent = remote.clone();
    push_tasks(remote.ws(agent).path(), &["T-1".to_owned()], "infrastructure_design");
    wait_until(DEADLINE, "the task pushed to main to be claimed", || remote.claims().contains_key("T-1"));
}

#[test]
fn an_uncommitted_edit_that_cannot_be_put_back_after_the_rebase_stops_the_sync_and_says_so() {
    // A pushed tasks.json that is not JSON, while this clone held an uncommitted edit: git left
    // the file unmerged and the edit in `stash@{0}`, and nothing was logged or filed.
    let mut remote = Remote::new(&[design_task("T-1")], json!({"sync": true, "fetch_interval": "1s"}));
    let ours = remote.clone();
    let theirs = remote.clone();
    let other = remote.ws(theirs);
    other.write(TASKS, "{\"tasks\": [\n");
    git(other.path(), &["commit", "-q", "-am", "A push cut short"]);
    git(other.path(), &["push", "-q", "origin", "main"]);
    let ws = remote.ws(ours);
    let edited = ws.read_string(TASKS).replace("Design the environments (T-1)", "Design both environments (T-1)");
    ws.write(TASKS, &edited);
    let run = remote.opsflow(ours, &["run"]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        stderr.contains("putting back the uncommitted changes it set aside conflicted in docs/workflow/tasks.json"),
        "{stderr}"
    );
    assert!(stderr.contains("stash@{0}"), "{stderr}");
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(requests.contains("stash@{0}"), "a person is asked to resolve it:\n{requests}");
    let stash = git(ws.path(), &["stash", "list"]);
    assert!(!stash.trim().is_empty(), "the edit is kept in the stash");
}
