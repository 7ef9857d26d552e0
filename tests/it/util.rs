//! The test harness: a temporary workspace builder, a runner for the real binary, and
//! helpers to wait for a condition with a deadline instead of sleeping.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The path of the task list in a workspace with the default config.
pub const TASKS: &str = "docs/workflow/tasks.json";

/// The binary under test.
pub fn opsflow_bin() -> &'static str {
    env!("CARGO_BIN_EXE_opsflow")
}

/// A fresh workspace in its own temporary directory, removed when dropped.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::Builder::new().prefix("opsflow-it-").tempdir().expect("create a temporary directory"),
        }
    }

    /// A fresh workspace in a new directory inside `parent`.
    pub fn new_in(parent: &Path) -> Workspace {
        Workspace {
            dir: tempfile::Builder::new()
                .prefix("opsflow-it-")
                .tempdir_in(parent)
                .expect("create a temporary directory"),
        }
    }

    /// Writes `contents` to `relative`, creating the parent directories.
    pub fn file(self, relative: &str, contents: impl AsRef<[u8]>) -> Workspace {
        self.write(relative, contents);
        self
    }

    /// Copies the repository's sample workspace (config, docs, QA, ARTIFACTS, app).
    pub fn sample(self) -> Workspace {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for entry in ["project-config.json", "docs", "QA", "ARTIFACTS", "app"] {
            copy_tree(&repo.join(entry), &self.path().join(entry));
        }
        self
    }

    /// Makes `relative` a symlink to `target`.
    pub fn symlink(self, relative: &str, target: &Path) -> Workspace {
        let link = self.path().join(relative);
        fs::create_dir_all(link.parent().expect("a relative path has a parent")).unwrap();
        std::os::unix::fs::symlink(target, &link).expect("create a symlink");
        self
    }

    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path().join(relative);
        fs::create_dir_all(path.parent().expect("a relative path has a parent")).unwrap();
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path().join(relative)
    }

    pub fn read(&self, relative: &str) -> Vec<u8> {
        fs::read(self.join(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
    }

    pub fn read_string(&self, relative: &str) -> String {
        String::from_utf8(self.read(relative)).unwrap_or_else(|e| panic!("{relative} is not UTF-8: {e}"))
    }

    /// The tasks of `tasks.json`, whichever form the file has; panics if it does not parse.
    pub fn tasks(&self) -> Vec<Value> {
        tasks_of(&self.read(TASKS))
    }

    /// The names of the entries of a directory of the workspace, sorted.
    pub fn list_dir(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.join(relative))
            .unwrap_or_else(|e| panic!("list {relative}: {e}"))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every file, directory and symlink of the workspace with its content, to prove that a
    /// command wrote nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Entry> {
        snapshot_of(self.path())
    }

    /// The command that runs opsflow in this workspace, for tests that spawn it themselves.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(opsflow_bin());
        command.arg("-C").arg(self.path()).args(args).env_remove("OPSFLOW_LOG").stdin(Stdio::null());
        command
    }

    /// Runs opsflow in this workspace and waits for it.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// [`Workspace::run`] with `env` added to its environment.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self.command(args).envs(env.iter().copied()).output().expect("run opsflow");
        Run { args: args.iter().map(|a| (*a).to_owned()).collect(), output }
    }
}

/// One node of a [`Workspace::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
}

/// Every file, directory and symlink under `dir`, by path relative to it, with its content.
pub fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    snapshot_into(dir, dir, &mut out);
    out
}

fn snapshot_into(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(root).unwrap().to_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(relative, Entry::Symlink(fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            out.insert(relative, Entry::Dir);
            snapshot_into(root, &path, out);
        } else {
            out.insert(relative, Entry::File(fs::read(&path).unwrap()));
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).unwrap_or_else(|e| panic!("sample file {}: {e}", from.display()));
    if meta.is_dir() {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// The tasks of a `tasks.json` text, wrapped (`{"tasks": [...]}`) or a bare array.
pub fn tasks_of(bytes: &[u8]) -> Vec<Value> {
    let value: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("tasks.json does not parse: {e}\n{}", String::from_utf8_lossy(bytes)));
    match value {
        Value::Array(tasks) => tasks,
        Value::Object(mut map) => match map.remove("tasks") {
            Some(Value::Array(tasks)) => tasks,
            other => panic!("`tasks` is not an array: {other:?}"),
        },
        other => panic!("tasks.json is neither an array nor an object: {other}"),
    }
}

/// The task with `id`; panics unless exactly one task has it.
pub fn task<'a>(tasks: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = tasks.iter().filter(|t| t["id"] == id).collect();
    assert_eq!(found.len(), 1, "expected exactly one task `{id}`, found {}: {tasks:#?}", found.len());
    found[0]
}

/// What one run of opsflow did.
pub struct Run {
    args: Vec<String>,
    output: std::process::Output,
}

impl Run {
    /// Asserts the exit code, showing everything the command printed when it differs.
    #[track_caller]
    pub fn status(&self, code: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "`opsflow {}` exited with {:?}, expected {code}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8(self.output.stdout.clone()).expect("stdout is UTF-8")
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.output.stderr.clone()).expect("stderr is UTF-8")
    }

    /// Stdout parsed as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| {
            panic!("stdout of `opsflow {}` is not one JSON document: {e}\n{}", self.args.join(" "), self.stdout())
        })
    }
}

/// Waits until `condition` holds, checking often, and panics with `what` at the deadline.
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        // A short pause between checks keeps the polling from stealing a core from the
        // processes it waits for; the condition, not the pause, decides when to go on.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for a child to exit, killing it and failing the test at the deadline.
#[track_caller]
pub fn wait_for_exit(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let mut status = None;
    let end = Instant::now() + deadline;
    loop {
        if let Some(exited) = child.try_wait().expect("poll a child") {
            status = Some(exited);
        }
        if status.is_some() || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
    }
}

/// A small deterministic pseudo-random source (xorshift64*), seeded from the clock unless
/// `OPSFLOW_TEST_SEED` is set, so a failing run can be replayed.
pub struct Jitter {
    state: u64,
    pub seed: u64,
}

impl Jitter {
    pub fn new() -> Jitter {
        let seed = std::env::var("OPSFLOW_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id())
        });
        Jitter { state: seed | 1, seed }
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// Names of temporary files opsflow left beside `tasks.json`.
pub fn leftover_temp_files(ws: &Workspace) -> Vec<String> {
    ws.list_dir("docs/workflow").into_iter().filter(|name| name.ends_with(".opsflow-tmp")).collect()
}

/// True when `text` looks like an RFC 3339 UTC timestamp such as `2026-11-25T08:04:49Z`.
pub fn is_rfc3339_utc(text: &str) -> bool {
    opsflow::time::is_rfc3339_utc(text)
}

/// How many processes are blocked waiting for the flock on the file with inode `ino`
/// (the `->` lines of `/proc/locks`); `None` when the kernel does not show it.
pub fn flock_waiters(ino: u64) -> Option<usize> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let suffix = format!(":{ino}");
    Some(
        locks
            .lines()
            .filter(|line| line.contains("->"))
            .filter(|line| line.split_whitespace().any(|t| t.ends_with(&suffix) && t.matches(':').count() == 2))
            .count(),
    )
}

/// The paths whose entry differs between two snapshots (added, removed or changed).
pub fn changed_paths(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) -> Vec<PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `command` isolated from the user's and the system's git config, with a fixed author and
/// no editor or prompt: for git itself and for `opsflow` runs that drive git.
pub fn isolated(command: &mut Command) -> &mut Command {
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null())
}

/// Runs git in `dir`, [`isolated`].
pub fn git_in(dir: &Path, args: &[&str]) -> std::process::Output {
    isolated(Command::new("git").args(args).current_dir(dir)).output().expect("run git")
}

/// Runs git in `dir`, [`isolated`], and returns its stdout; fails the test when git fails.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_in(dir, args);
    assert!(
        output.status.success(),
        "git {} failed in {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
