//! Sync through a git remote (PRODUCT.md section 9, docs/sync.md): several runners on several
//! clones coordinate through one branch of one remote, with the `git` command line.
//!
//! Before each pass the engine calls [`GitSync::before_pass`]: what opsflow wrote since the
//! last commit is committed, the branch is fetched, local commits are rebased onto it (the
//! merge driver merges `tasks.json` and `state.json`; a conflict in a generated file is
//! settled by the newer release, any other conflict stops the sync), and what is ahead is
//! pushed. A claim counts only once it is pushed ([`GitSync::publish_claim`]): a rejected push
//! is fetched, rebased and checked again, and the claim is dropped when another runner's is
//! there. Results are committed and pushed after the node ([`GitSync::publish_results`]) and,
//! when the remote refuses them, stay local until a later pass pushes them. Nothing is ever
//! force-pushed, and only the paths opsflow wrote (`workspace::write::take_written`) are
//! committed.
//!
//! Every git call has a timeout, and what it printed goes to the log (debug level) and, for a
//! claim or its results, to the run's `git.log`. Whether the remote answers is kept in
//! `<runtime>/git-sync.json` for `status`, and in memory for `/metrics`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::git::{GitError, GitOutput};
use crate::store::file::StoreError;
use crate::workspace::Workspace;
use crate::workspace::read;
use crate::workspace::write::{self, WriteError};

/// How long one git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a rejected push is rebased and tried again within one call.
const PUSH_ATTEMPTS: u32 = 12;
/// The file under the runtime directory that says whether the remote answers.
pub const STATUS_FILE: &str = "git-sync.json";

/// Whether the remote answers, as `status` and `/metrics` show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteStatus {
    /// `remote/branch`.
    pub remote: String,
    pub reachable: bool,
    /// When the remote stopped answering (RFC 3339), while it does not.
    pub unreachable_since: Option<String>,
    /// The same as Unix seconds, for `/metrics`.
    pub unreachable_since_unix: Option<u64>,
    /// Why the last fetch or push failed.
    pub last_error: Option<String>,
    /// A rebase conflict opsflow does not resolve: the sync stays stopped until a human
    /// resolves it.
    pub stopped: Option<String>,
}

/// What [`GitSync::before_pass`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Pass {
    /// In sync with the remote: claims may be made.
    Ready,
    /// The remote does not answer, or refuses pushes: no new claims.
    Unreachable,
    /// A conflict opsflow will not resolve: no new claims; a human must act.
    Stopped(String),
}

enum Push {
    Pushed,
    /// Another writer pushed first.
    Rejected,
    /// The remote cannot be reached or refused the push (a hook, permissions): git's words.
    Failed(String),
}

/// Why the sync could not start, or a claim does not count, or the sync stopped. Each names
/// the repository, the remote and branch, or the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("git.sync is on but {} is not in a git repository", root.display())]
    NotInRepository { root: PathBuf },
    #[error("{relative} is outside the git repository {}", top.display())]
    OutsideRepository { relative: String, top: PathBuf },
    #[error("git.sync is on but the repository {} has no remote `{remote}` (git.remote in {config}): {stderr}", top.display())]
    NoRemote { top: PathBuf, remote: String, config: String, stderr: String },
    /// The sentence of `merge::setup::missing_driver`, which names the `.gitattributes`.
    #[error("git.sync needs the merge driver: {0}")]
    NoDriver(String),
    /// A git command that could not run, did not finish, or failed.
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot commit opsflow's changes: {0}")]
    Commit(#[source] GitError),
    /// The remote `remote/branch` could not be fetched or did not take a push.
    #[error("{remote} is unreachable: {reason}")]
    Unreachable { remote: String, reason: String },
    #[error("the remote {remote} did not take the claim: {reason}")]
    ClaimRefused { remote: String, reason: String },
    #[error("another runner's claim of {task} landed first on {remote}")]
    ClaimTaken { task: String, remote: String },
    #[error("the push to {remote} was rejected {attempts} times in a row")]
    PushRejected { remote: String, attempts: u32 },
    #[error("`git rebase {onto}` failed in {}: {reason}", top.display())]
    Rebase { top: PathBuf, onto: String, reason: String },
    #[error("the rebase onto {onto} in {} did not finish", top.display())]
    RebaseUnfinished { top: PathBuf, onto: String },
    /// The rebase went through, but putting back the uncommitted changes it had set aside
    /// (`--autostash`) conflicted: git leaves the files unmerged and the changes in the stash.
    #[error(
        "the rebase onto {onto} in {} went through, but putting back the uncommitted changes it set aside conflicted in {files}: they are kept in `git stash` (stash@{{0}}); resolve those files, then `git stash drop`",
        top.display()
    )]
    AutostashConflict { top: PathBuf, onto: String, files: String },
    #[error(
        "rebasing onto {remote}/{branch} conflicts in {path}: {why}; opsflow does not guess, so the rebase was aborted and the local commits wait; resolve it by hand (git pull --rebase {remote} {branch}) and push"
    )]
    Conflict { remote: String, branch: String, path: String, why: &'static str },
    /// The newer release's file could not be written while settling a conflict.
    #[error(transparent)]
    Confine(#[from] WriteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a step of the sync failed: the remote does not answer (claims wait for it), or the
/// sync stopped (a human must act).
enum Halt {
    Unreachable(SyncError),
    Stopped(SyncError),
}

/// The sync of one workspace with its remote; shared by the passes of a run or a daemon.
#[derive(Debug)]
pub struct GitSync {
    top: PathBuf,
    remote: String,
    branch: String,
    tracking: String,
    tasks: PathBuf,
    state: PathBuf,
    tasks_in_repo: String,
    state_in_repo: String,
    status_file: PathBuf,
    runs: PathBuf,
    status: Mutex<RemoteStatus>,
    /// The stop reason a human request was filed for, so it is filed once.
    reported_stop: Mutex<Option<String>>,
    /// The run whose `git.log` receives git's output.
    log: Mutex<Option<PathBuf>>,
    /// The last push was refused (a hook, permissions): a fetch that works does not make the
    /// remote reachable again, only a push that lands does.
    push_refused: std::sync::atomic::AtomicBool,
    /// The repository's git directory (`rev-parse --absolute-git-dir`), where a rebase in
    /// progress keeps its state.
    git_dir: PathBuf,
    /// A node's results are committed but not pushed yet: the next claim's push carries them
    /// (one push instead of two); when the next pass makes no claim, they are pushed at its end.
    results_waiting: std::sync::atomic::AtomicBool,
    /// A change of the config's `git` section that needs a restart, once it was reported.
    reported_change: Mutex<Option<String>>,
    /// Paths opsflow committed before and that git tracks since: when a commit has only such
    /// paths, `git commit -- PATHS` needs no `git status` first.
    tracked: Mutex<std::collections::HashSet<String>>,
}

impl GitSync {
    /// The sync of `ws` when its config turns it on (`None` when it does not). An error when
    /// the workspace is not in a git repository, the remote is not configured, or the merge
    /// driver is named but not set up (git would merge `tasks.json` line by line).
    pub fn open(ws: &Workspace) -> Result<Option<GitSync>, SyncError> {
        let git = &ws.config.git;
        if !git.sync {
            return Ok(None);
        }
        let top = crate::merge::setup::toplevel(&ws.root)
            .ok_or_else(|| SyncError::NotInRepository { root: ws.root.clone() })?;
        let in_repo = |relative: &str| -> Result<(PathBuf, String), SyncError> {
            let absolute = ws.path(relative);
            let inside = absolute
                .strip_prefix(&top)
                .map_err(|_| SyncError::OutsideRepository { relative: relative.to_owned(), top: top.clone() })?;
            Ok((absolute.clone(), inside.to_string_lossy().replace('\\', "/")))
        };
        let (tasks, tasks_in_repo) = in_repo(&ws.config.paths.tasks)?;
        let (state, state_in_repo) = in_repo(&ws.config.paths.state)?;
        let runtime = ws.path(&ws.config.paths.runtime);
        let sync = GitSync {
            remote: git.remote.clone(),
            branch: git.branch.clone(),
            tracking: format!("refs/remotes/{}/{}", git.remote, git.branch),
            tasks,
            state,
            tasks_in_repo,
            state_in_repo,
            status_file: runtime.join(STATUS_FILE),
            runs: runtime.join("runs"),
            status: Mutex::new(RemoteStatus {
                remote: format!("{}/{}", git.remote, git.branch),
                // Unknown until the first fetch, which saves the status either way.
                reachable: false,
                ..RemoteStatus::default()
            }),
            reported_stop: Mutex::new(None),
            log: Mutex::new(None),
            push_refused: Default::default(),
            git_dir: PathBuf::new(),
            results_waiting: Default::default(),
            reported_change: Mutex::new(None),
            tracked: Mutex::new(Default::default()),
            top,
        };
        let url = sync.git(&["remote", "get-url", "--", &git.remote])?;
        if !url.success {
            return Err(SyncError::NoRemote {
                top: sync.top.clone(),
                remote: git.remote.clone(),
                config: ws.config_label.clone(),
                stderr: url.stderr.trim().to_owned(),
            });
        }
        let git_dir = sync.git_ok(&["rev-parse", "--absolute-git-dir"])?;
        let sync = GitSync { git_dir: PathBuf::from(git_dir.trim()), ..sync };
        if let Some(missing) = crate::merge::setup::missing_driver(&ws.root) {
            return Err(SyncError::NoDriver(missing));
        }
        write::start_recording();
        tracing::info!(
            "git sync on: remote {} ({}), branch {}, fetch every {}",
            git.remote,
            url.stdout.trim(),
            git.branch,
            crate::duration::format_duration(git.fetch_interval)
        );
        Ok(Some(sync))
    }

    /// Whether `git` (the config as reloaded) turns sync off or names another remote or branch
    /// than this sync started with: a warning the first time each change is seen, for the log.
    /// Those take a restart (`fetch_interval` applies at once, the daemon reads it each time).
    pub fn restart_needed(&self, git: &crate::config::Git) -> Option<String> {
        let mut changes = Vec::new();
        if !git.sync {
            changes.push("git.sync is now false".to_owned());
        }
        if git.remote != self.remote {
            changes.push(format!("git.remote is now `{}` (was `{}`)", git.remote, self.remote));
        }
        if git.branch != self.branch {
            changes.push(format!("git.branch is now `{}` (was `{}`)", git.branch, self.branch));
        }
        let change = (!changes.is_empty()).then(|| changes.join(", "));
        let mut reported = self.reported_change.lock().unwrap_or_else(|p| p.into_inner());
        if *reported == change {
            return None;
        }
        *reported = change.clone();
        change.map(|c| {
            format!(
                "{c}: a change of the git section takes a restart of opsflow; until then it keeps syncing with {}/{}",
                self.remote, self.branch
            )
        })
    }

    /// Whether the remote answers, and since when it does not.
    pub fn status(&self) -> RemoteStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The status the last runner left in `ws`'s runtime directory, for `status`.
    pub fn read_status(ws: &Workspace) -> Option<RemoteStatus> {
        let path = ws.path(&ws.config.paths.runtime).join(STATUS_FILE);
        let text = crate::workspace::read::read_text(&path, STATUS_FILE, 64 * 1024).ok().flatten()?;
        serde_json::from_str(&text).ok()
    }

    /// The stop reason, the first time it is seen (a human request is filed once per reason).
    pub fn new_stop(&self, reason: &str) -> bool {
        let mut reported = self.reported_stop.lock().unwrap_or_else(|p| p.into_inner());
        if reported.as_deref() == Some(reason) {
            return false;
        }
        *reported = Some(reason.to_owned());
        true
    }

    /// Before a pass: commit what opsflow wrote, fetch, rebase, push what is ahead.
    pub fn before_pass(&self) -> Pass {
        self.set_log(None);
        if let Err(e) = self.commit_written("Record opsflow's updates", None) {
            return self.stop(&e);
        }
        let ahead = match self.sync_to_remote() {
            Err(Halt::Unreachable(_)) => return Pass::Unreachable,
            Err(Halt::Stopped(reason)) => return self.stop(&reason),
            Ok(ahead) => ahead,
        };
        self.update(|s| s.stopped = None);
        *self.reported_stop.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Results committed after the last node wait for this pass's claim to carry them (one
        // push, not two), once: when this pass claims nothing, the run's end or the next pass
        // pushes them. While pushes are refused they are tried every pass.
        let carry = self.results_waiting.swap(false, std::sync::atomic::Ordering::SeqCst)
            && !self.push_refused.load(std::sync::atomic::Ordering::SeqCst);
        if carry {
            self.reachable(false);
            return Pass::Ready;
        }
        match self.push_ahead(ahead) {
            Ok(()) => {
                self.reachable(false);
                Pass::Ready
            }
            Err(Halt::Unreachable(_)) => Pass::Unreachable,
            Err(Halt::Stopped(reason)) => self.stop(&reason),
        }
    }

    /// After the last pass: commit and push what is left.
    pub fn after_run(&self) {
        self.set_log(None);
        if let Err(e) = self.commit_written("Record opsflow's updates", None) {
            tracing::error!("{e}");
            return;
        }
        self.results_waiting.store(false, std::sync::atomic::Ordering::SeqCst);
        if self.ahead() > 0 {
            match self.sync_to_remote().and_then(|ahead| self.push_ahead(ahead)) {
                Ok(()) => {}
                Err(Halt::Unreachable(e)) => {
                    tracing::warn!("{} local commits stay unpushed until the remote is back: {e}", self.ahead())
                }
                Err(Halt::Stopped(e)) => tracing::error!("{e}"),
            }
        }
    }

    /// Commits the claim opsflow just wrote for `task` and pushes it. `Err` with the reason
    /// when the claim does not count: another runner's claim landed first, or the remote
    /// does not take it. The claim is then undone locally (the task is as the remote has it).
    pub fn publish_claim(&self, task: &str, node: &str, run_id: &str, from_state: bool) -> Result<(), SyncError> {
        let run_dir = self.runs.join(run_id);
        // The run directory marks the claim as this clone's, for recovery after a crash.
        write::create_dir_all(&self.top, &run_dir).ok();
        self.set_log(Some(run_dir.join("git.log")));
        let subject = format!("Claim {task} for {node}");
        if let Err(e) = self.commit_written(&subject, Some((run_id, task))) {
            self.drop_claim(run_id);
            return Err(e);
        }
        for attempt in 0..PUSH_ATTEMPTS {
            if attempt > 0 {
                // Several runners rejected by the same push would otherwise retry in lockstep.
                std::thread::sleep(jitter(attempt));
            }
            match self.push() {
                Push::Pushed => {
                    tracing::info!("claimed {task} ({node}, run {run_id}): pushed to {}/{}", self.remote, self.branch);
                    return Ok(());
                }
                Push::Failed(e) => {
                    self.push_refused.store(true, std::sync::atomic::Ordering::SeqCst);
                    self.unreachable(&e);
                    self.drop_claim(run_id);
                    return Err(SyncError::ClaimRefused { remote: self.target(), reason: e });
                }
                Push::Rejected => {
                    // When the remote already has another claim of the task, the claim is
                    // dropped at once: rebasing it first would only cost time.
                    let fetched = self.fetch();
                    if fetched.is_ok() && !from_state && self.taken_on_remote(task, run_id) {
                        self.drop_claim(run_id);
                        return Err(SyncError::ClaimTaken { task: task.to_owned(), remote: self.target() });
                    }
                    match fetched.and_then(|()| self.integrate()) {
                        Ok(_) => {
                            if !self.still_ours(task, node, run_id, from_state) {
                                self.drop_claim(run_id);
                                return Err(SyncError::ClaimTaken { task: task.to_owned(), remote: self.target() });
                            }
                        }
                        Err(Halt::Unreachable(e) | Halt::Stopped(e)) => {
                            self.drop_claim(run_id);
                            return Err(e);
                        }
                    }
                }
            }
        }
        self.drop_claim(run_id);
        Err(SyncError::PushRejected { remote: self.target(), attempts: PUSH_ATTEMPTS })
    }

    /// Commits the node's results. They are pushed with the next claim of the next pass (one
    /// push carries both), or by that pass or the end of the run when it claims nothing,
    /// rebasing and retrying while other writers get there first. When the remote does not
    /// take them they stay local until a later pass pushes them; never forced, never lost.
    pub fn publish_results(&self, task: &str, node: &str, outcome: &str, run_id: &str) {
        self.set_log(Some(self.runs.join(run_id).join("git.log")));
        let subject = format!("{node} {outcome} for {task}");
        match self.commit_written(&subject, Some((run_id, task))) {
            Ok(_) => self.results_waiting.store(true, std::sync::atomic::Ordering::SeqCst),
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// `remote/branch`, as messages name the remote.
    fn target(&self) -> String {
        format!("{}/{}", self.remote, self.branch)
    }

    fn stop(&self, reason: &SyncError) -> Pass {
        let reason = reason.to_string();
        if self.status().stopped.as_deref() != Some(reason.as_str()) {
            tracing::error!("git sync stopped: {reason}");
        }
        self.update(|s| s.stopped = Some(reason.clone()));
        Pass::Stopped(reason)
    }

    fn set_log(&self, path: Option<PathBuf>) {
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    /// Changes the remote status, saving it when it changed.
    fn update(&self, change: impl FnOnce(&mut RemoteStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let before = status.clone();
        change(&mut status);
        if *status != before {
            let text = serde_json::to_string_pretty(&*status).unwrap_or_default();
            if write::write_file(&self.top, &self.status_file, (text + "\n").as_bytes()).is_err() {
                tracing::debug!("cannot save {}", self.status_file.display());
            }
        }
    }

    /// Whether a claim can be pushed now, as far as opsflow knows.
    pub fn reachable_now(&self) -> bool {
        self.status().reachable
    }

    fn unreachable(&self, error: &str) {
        let error = error.trim().to_owned();
        self.update(|s| {
            if s.reachable || s.unreachable_since.is_none() {
                let now = crate::time::now_rfc3339();
                tracing::warn!(
                    "git remote {} is unreachable since {now}: {error}; no new claims until it is back, running work finishes and its commits stay local",
                    s.remote
                );
                s.unreachable_since = Some(now);
                s.unreachable_since_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs());
            }
            s.reachable = false;
            s.last_error = Some(error);
        });
    }

    /// The remote answered: a fetch (`by_push` false) or a push that landed.
    fn reachable(&self, by_push: bool) {
        use std::sync::atomic::Ordering;
        if by_push {
            self.push_refused.store(false, Ordering::SeqCst);
        } else if self.push_refused.load(Ordering::SeqCst) {
            return;
        }
        self.update(|s| {
            match (&s.unreachable_since, s.reachable) {
                (Some(since), _) => {
                    tracing::info!("git remote {} is reachable again (unreachable since {since})", s.remote)
                }
                (None, false) => tracing::info!("git remote {} is reachable", s.remote),
                (None, true) => {}
            }
            s.reachable = true;
            s.unreachable_since = None;
            s.unreachable_since_unix = None;
            s.last_error = None;
        });
    }

    /// Runs `git args…` at the top of the repository, killed after [`GIT_TIMEOUT`], with its
    /// output in the debug log and the run's `git.log`.
    fn git(&self, args: &[&str]) -> Result<GitOutput, GitError> {
        let shown = crate::git::shown(args);
        let output = crate::git::run(&self.top, args, GIT_TIMEOUT)?;
        let status = crate::git::status(output.code);
        let report = format!("$ {shown}\n{}{}[{}]\n", output.stdout, output.stderr, status);
        tracing::debug!("{}", report.trim_end());
        if let Some(log) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && let Ok(mut file) = write::append(&self.top, log)
            && let Err(e) = file.write_all(report.as_bytes())
        {
            tracing::warn!("cannot append git's output to {}: {e}", log.display());
        }
        Ok(output)
    }

    /// `git args…`, an error naming the command when it fails.
    fn git_ok(&self, args: &[&str]) -> Result<String, GitError> {
        Ok(self.git(args)?.ok(&self.top, args)?.stdout)
    }

    /// Commits the paths opsflow wrote since the last commit that git tracks (or would:
    /// ignored files such as the runtime directory are left out). Returns whether it committed.
    fn commit_written(&self, subject: &str, trailers: Option<(&str, &str)>) -> Result<bool, SyncError> {
        let written: Vec<String> = write::take_written()
            .iter()
            .filter_map(|p| p.strip_prefix(&self.top).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if written.is_empty() {
            return Ok(false);
        }
        let body = trailers.map(|(run, task)| format!("Opsflow-Run: {run}\nOpsflow-Task: {task}")).unwrap_or_default();
        fn commit_args<'a>(subject: &'a str, body: &'a str, paths: &[&'a str]) -> Vec<&'a str> {
            let mut commit = vec!["commit", "-q", "-m", subject];
            if !body.is_empty() {
                commit.extend(["-m", body]);
            }
            commit.push("--");
            commit.extend(paths.iter());
            commit
        }
        // Only files committed before (a claim's tasks.json and state.json): one command. When
        // it fails (nothing changed, a path git no longer knows), `git status` below decides.
        let known = {
            let tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
            written.iter().all(|p| tracked.contains(p))
        };
        if known {
            let paths: Vec<&str> = written.iter().map(String::as_str).collect();
            if self.git(&commit_args(subject, &body, &paths)).is_ok_and(|o| o.success) {
                return Ok(true);
            }
        }
        let mut args = vec!["status", "--porcelain=v1", "-z", "--untracked-files=all", "--"];
        args.extend(written.iter().map(String::as_str));
        let listed = self.git_ok(&args)?;
        let entries: Vec<&str> = listed.split('\0').filter(|e| e.len() > 3).collect();
        let changed: Vec<&str> = entries.iter().map(|e| &e[3..]).collect();
        if changed.is_empty() {
            return Ok(false);
        }
        // `commit -- PATHS` takes tracked files as they are; only new files need `add` first.
        let new: Vec<&str> = entries.iter().filter(|e| e.starts_with("??")).map(|e| &e[3..]).collect();
        if !new.is_empty() {
            let mut add = vec!["add", "-A", "--"];
            add.extend(new.iter());
            self.git_ok(&add)?;
        }
        self.git_ok(&commit_args(subject, &body, &changed)).map_err(SyncError::Commit)?;
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        for path in changed {
            if self.top.join(path).exists() {
                tracked.insert(path.to_owned());
            } else {
                tracked.remove(path);
            }
        }
        Ok(true)
    }

    /// How many local commits the remote branch does not have.
    fn ahead(&self) -> u64 {
        self.git_ok(&["rev-list", "--count", &format!("{}..HEAD", self.tracking)])
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn push(&self) -> Push {
        let target = format!("HEAD:refs/heads/{}", self.branch);
        match self.git(&["push", "--porcelain", "--", &self.remote, &target]) {
            Err(e) => Push::Failed(e.to_string()),
            Ok(output) if output.success => {
                self.reachable(true);
                Push::Pushed
            }
            Ok(output) => {
                let text = format!("{}{}", output.stdout, output.stderr);
                // `[rejected]` is another writer first; `[remote rejected]` is a hook or a
                // permission saying no, which no rebase changes.
                // Two pushes at the same moment: the loser's ref update finds the other's commit.
                let raced = text.contains("cannot lock ref") || text.contains("failed to update ref");
                if raced
                    || text.contains("\t[rejected]")
                    || text.contains("[rejected] ") && !text.contains("[remote rejected]")
                {
                    Push::Rejected
                } else {
                    Push::Failed(last_lines(&text))
                }
            }
        }
    }

    /// Pushes what is ahead of the remote (`ahead`, as [`Self::sync_to_remote`] found it),
    /// rebasing and retrying with backoff while others push first.
    fn push_ahead(&self, mut ahead: bool) -> Result<(), Halt> {
        for attempt in 0..PUSH_ATTEMPTS {
            if !ahead {
                return Ok(());
            }
            if attempt > 0 {
                std::thread::sleep(jitter(attempt));
            }
            match self.push() {
                Push::Pushed => return Ok(()),
                Push::Failed(e) => {
                    self.push_refused.store(true, std::sync::atomic::Ordering::SeqCst);
                    self.unreachable(&e);
                    return Err(self.unreachable_error(e));
                }
                Push::Rejected => ahead = self.sync_to_remote()?,
            }
        }
        Ok(())
    }

    /// Fetches the branch and rebases local commits onto it; returns whether local commits
    /// are ahead of it.
    fn sync_to_remote(&self) -> Result<bool, Halt> {
        self.fetch()?;
        self.integrate()
    }

    /// Whether the remote-tracking branch has `task` in a state no claim can be made on: taken
    /// (`in_progress`), finished, or gone.
    fn taken_on_remote(&self, task: &str, run_id: &str) -> bool {
        let Ok(text) = self.git_ok(&["show", &format!("{}:{}", self.tracking, self.tasks_in_repo)]) else {
            return false;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else { return false };
        let list = value.get("tasks").unwrap_or(&value);
        let entry = list.as_array().and_then(|tasks| tasks.iter().find(|t| t["id"] == task));
        entry.is_none_or(|e| e["run_id"] != run_id && !matches!(e["status"].as_str(), Some("pending" | "blocked")))
    }

    /// Fetches the branch into the remote-tracking ref.
    fn fetch(&self) -> Result<(), Halt> {
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking);
        let e = match self.git(&["fetch", "--quiet", "--no-tags", "--", &self.remote, &refspec]) {
            Ok(output) if output.success => return Ok(()),
            Ok(output) => last_lines(&output.stderr),
            Err(e) => e.to_string(),
        };
        self.unreachable(&e);
        Err(self.unreachable_error(e))
    }

    fn unreachable_error(&self, reason: String) -> Halt {
        Halt::Unreachable(SyncError::Unreachable { remote: self.target(), reason })
    }

    /// Rebases local commits onto the remote-tracking branch; returns whether local commits
    /// are ahead of it.
    fn integrate(&self) -> Result<bool, Halt> {
        // The common case, nothing new on either side, costs one call: HEAD is the remote.
        let (head, remote) = self.head_and_remote();
        if head.is_some() && head == remote {
            return Ok(false);
        }
        let up_to_date = self.git(&["merge-base", "--is-ancestor", &self.tracking, "HEAD"]).is_ok_and(|o| o.success);
        if !up_to_date {
            self.rebase().map_err(Halt::Stopped)?;
        }
        let (head, remote) = self.head_and_remote();
        Ok(head.is_none() || head != remote)
    }

    /// The commits HEAD and the remote-tracking branch point at, in one call.
    fn head_and_remote(&self) -> (Option<String>, Option<String>) {
        let out = match self.git(&["rev-parse", "HEAD", &self.tracking]) {
            Ok(out) if out.success => out,
            _ => return (None, None),
        };
        let mut lines = out.stdout.lines().map(str::to_owned);
        (lines.next(), lines.next())
    }

    fn rebase_in_progress(&self) -> bool {
        ["rebase-merge", "rebase-apply"].iter().any(|dir| self.git_dir.join(dir).exists())
    }

    /// Rebases onto the remote branch, settling the conflicts opsflow may settle; any other
    /// conflict aborts the rebase and is returned as the reason.
    fn rebase(&self) -> Result<(), SyncError> {
        let first = self.git(&["rebase", "--autostash", &self.tracking])?;
        if first.success {
            // git exits 0 when its autostash does not apply: the files are left unmerged.
            let unmerged = self.git_ok(&["diff", "--name-only", "--diff-filter=U"]).unwrap_or_default();
            let files: Vec<&str> = unmerged.lines().filter(|l| !l.trim().is_empty()).collect();
            if !files.is_empty() {
                return Err(SyncError::AutostashConflict {
                    top: self.top.clone(),
                    onto: self.tracking.clone(),
                    files: files.join(", "),
                });
            }
            return Ok(());
        }
        if !self.rebase_in_progress() {
            return Err(SyncError::Rebase {
                top: self.top.clone(),
                onto: self.tracking.clone(),
                reason: last_lines(&first.stderr),
            });
        }
        for _ in 0..10_000 {
            if !self.rebase_in_progress() {
                return Ok(());
            }
            let conflicted = self.git_ok(&["diff", "--name-only", "-z", "--diff-filter=U"]).unwrap_or_default();
            let conflicted: Vec<&str> = conflicted.split('\0').filter(|p| !p.is_empty()).collect();
            // The commit being replayed, read once for all its conflicted files.
            let mut message = None;
            for path in &conflicted {
                if let Err(why) = self.settle(path, &mut message) {
                    let _ = self.git(&["rebase", "--abort"]);
                    return Err(why);
                }
            }
            if !conflicted.is_empty() {
                let mut add = vec!["add", "--"];
                add.extend(conflicted.iter());
                if let Err(e) = self.git_ok(&add) {
                    let _ = self.git(&["rebase", "--abort"]);
                    return Err(e.into());
                }
            }
            let next = self.git(&["-c", "core.editor=true", "rebase", "--continue"])?;
            if !next.success && self.rebase_in_progress() {
                let unmerged = self.git_ok(&["diff", "--name-only", "--diff-filter=U"]).unwrap_or_default();
                let staged = self.git(&["diff", "--cached", "--quiet"]).is_ok_and(|o| !o.success);
                if unmerged.trim().is_empty() && !staged {
                    // Our change became empty on top of theirs: nothing of it is left to replay.
                    self.git(&["rebase", "--skip"])?;
                }
            }
        }
        let _ = self.git(&["rebase", "--abort"]);
        Err(SyncError::RebaseUnfinished { top: self.top.clone(), onto: self.tracking.clone() })
    }

    /// Settles one conflicted path of a rebase (the caller stages it), or says why it cannot
    /// be settled. `message` caches the message of the commit being replayed.
    fn settle(&self, path: &str, message: &mut Option<String>) -> Result<(), SyncError> {
        let absolute = self.top.join(path);
        if path == self.tasks_in_repo || path == self.state_in_repo {
            // The merge driver wrote valid JSON with the remote's value for each field both
            // sides changed (and listed them); the remote's published history wins over an
            // unpushed local change. Without the driver git leaves markers: never settled.
            // Through the workspace's readers: a FIFO is not opened, duplicate keys are refused.
            let text = read::read_text(&absolute, path, crate::config::DEFAULT_MAX_FILE_BYTES)
                .ok()
                .flatten()
                .unwrap_or_default();
            if text.contains("<<<<<<<") || read::parse_json(path, &text).is_err() {
                return Err(self.conflict_reason(path, "git left conflict markers (is the merge driver configured?)"));
            }
            return Ok(());
        }
        let message = message
            .get_or_insert_with(|| self.git_ok(&["log", "-1", "--format=%B", "REBASE_HEAD"]).unwrap_or_default());
        if !message.contains("Opsflow-Run:") {
            return Err(self.conflict_reason(path, "the local commit is not opsflow's"));
        }
        // Stage 2 is the branch being rebased onto (the remote), stage 3 opsflow's commit.
        let remote = self.git(&["show", &format!(":2:{path}")]).ok().filter(|o| o.success).map(|o| o.stdout);
        let local = self.git(&["show", &format!(":3:{path}")]).ok().filter(|o| o.success).map(|o| o.stdout);
        let winner = match (remote, local) {
            (Some(remote), Some(local)) => match (release_key(&remote), release_key(&local)) {
                (Some(r), Some(l)) => {
                    if l > r {
                        local
                    } else {
                        remote
                    }
                }
                _ => {
                    return Err(self.conflict_reason(path, "neither version says when it was generated"));
                }
            },
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => return Err(self.conflict_reason(path, "neither side has the file")),
        };
        crate::store::file::write_atomic(&self.top, Path::new(path), winner.as_bytes())?;
        let _ = write::take_written();
        tracing::info!("rebase: {path} changed on both sides; kept the newer release's file");
        Ok(())
    }

    fn conflict_reason(&self, path: &str, why: &'static str) -> SyncError {
        SyncError::Conflict { remote: self.remote.clone(), branch: self.branch.clone(), path: path.to_owned(), why }
    }

    /// Whether the claim of `run_id` is still the task's after a rebase.
    fn still_ours(&self, task: &str, node: &str, run_id: &str, from_state: bool) -> bool {
        let (path, pointer) = if from_state {
            (&self.state, format!("/nodes/{}", node.replace('~', "~0").replace('/', "~1")))
        } else {
            (&self.tasks, String::new())
        };
        let label = path.to_string_lossy();
        let Ok(Some(text)) = read::read_text(path, &label, crate::config::DEFAULT_MAX_FILE_BYTES) else { return false };
        let Ok(value) = read::parse_json(&label, &text) else { return false };
        let entry = if from_state {
            value.pointer(&pointer).cloned()
        } else {
            let list = value.get("tasks").unwrap_or(&value);
            list.as_array().and_then(|tasks| tasks.iter().find(|t| t["id"] == task).cloned())
        };
        entry.is_some_and(|e| e["run_id"] == run_id && e["status"] == "in_progress")
    }

    /// Removes the claim commit of `run_id` when it is the last commit, keeping other local
    /// changes (`reset --keep`).
    fn drop_claim(&self, run_id: &str) {
        let _ = write::take_written();
        let message = self.git_ok(&["log", "-1", "--format=%B"]).unwrap_or_default();
        if message.starts_with("Claim ") && message.contains(&format!("Opsflow-Run: {run_id}")) {
            if let Err(e) = self.git_ok(&["reset", "-q", "--keep", "HEAD~1"]) {
                tracing::error!("cannot drop the unpublished claim of run {run_id}: {e}");
            }
        } else {
            // The claim commit is not there (the rebase dropped it as empty) or the commit
            // failed: put back the claim's files as committed.
            let _ = self.git(&["checkout", "-q", "HEAD", "--", &self.tasks_in_repo, &self.state_in_repo]);
        }
    }
}

/// What decides which of two versions of a generated file is newer: its `generated_at`, then
/// its run id (front matter, or top-level JSON fields).
fn release_key(text: &str) -> Option<(String, String)> {
    let field = |name: &str| -> Option<String> {
        if let Some(rest) = text.strip_prefix("---\n") {
            let front = &rest[..rest.find("\n---").unwrap_or(rest.len())];
            front.lines().find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix(':')?.trim();
                Some(value.trim_matches('"').trim_matches('\'').to_owned())
            })
        } else {
            let value: Value = serde_json::from_str(text).ok()?;
            value.get(name).and_then(Value::as_str).map(str::to_owned)
        }
    };
    let generated_at = field("generated_at")?;
    Some((generated_at, field("run_id").unwrap_or_default()))
}

/// A random pause before retrying a rejected push, longer with each attempt (at most 0.8 s),
/// so that runners rejected by the same push do not retry in lockstep.
fn jitter(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let ceiling = 25 * u64::from(attempt.min(32)).pow(2);
    Duration::from_millis(random % ceiling.clamp(1, 800))
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_release_wins_by_generated_at_then_run_id() {
        let old = "---\nrun_id: \"20260101T000000Z-aaaaaa\"\ngenerated_at: \"2026-01-01T00:00:00Z\"\n---\n# x\n";
        let new = "---\nrun_id: \"20260101T000001Z-000000\"\ngenerated_at: \"2026-01-01T00:00:01Z\"\n---\n# x\n";
        assert!(release_key(new) > release_key(old));
        let same_second = "---\nrun_id: \"20260101T000000Z-bbbbbb\"\ngenerated_at: \"2026-01-01T00:00:00Z\"\n---\n";
        assert!(release_key(same_second) > release_key(old));
        let json = r#"{"generated_at": "2026-01-01T00:00:02Z", "run_id": "r"}"#;
        assert!(release_key(json) > release_key(new));
        assert_eq!(release_key("# no front matter\n"), None);
    }
}
