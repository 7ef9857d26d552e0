//! Watching the workspace: file events become hints for the reconciler.
//!
//! Events are hints, not truth: the reconciler always reads the files it needs, so a missed or
//! coalesced event changes nothing but latency. The root is watched on its own and each
//! top-level directory recursively, except `.git/`, `target/` and opsflow's runtime directory,
//! so a large build tree costs no inotify watches; a new top-level directory gets its watch
//! when it appears. Editors' droppings (`.#NAME`, `.NAME.swp`, `NAME~`, ...) are no hint.
//! When the kernel's queue overflows (notify's `need_rescan`) or the hint channel is full,
//! the reconciler is told to rescan everything.
//!
//! A watcher that can no longer see every change (the root removed or moved away, the inotify
//! watch limit reached, its event stream ended) returns why; the supervisor starts a new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use notify::event::ModifyKind;
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// What the watcher tells the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    Changed(PathBuf),
    Rescan,
}

/// True for paths opsflow never reacts to: version control, build output, its own runtime
/// files, lock files, temporary files of atomic writes, and editors' droppings
/// ([`crate::workspace::editor_dropping`]: locks, swap and backup files, safe-write temporaries).
pub fn ignored(root: &Path, runtime: &str, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else { return true };
    let mut components = relative.components();
    let Some(first) = components.next() else { return false };
    let first = first.as_os_str().to_string_lossy();
    if first == ".git" || first == "target" || relative.starts_with(runtime) {
        return true;
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.ends_with(".lock") || name.ends_with(".opsflow-tmp") || crate::workspace::editor_dropping(&name)
}

/// Why a watcher stopped watching. The supervisor ([`super::supervise_watcher`]) logs it,
/// reports it on `/healthz` and starts a new watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error("cannot start watching {path}: {reason}")]
    Start { path: PathBuf, reason: String },
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: std::io::Error },
    #[error(
        "the inotify watch limit is reached (raise fs.inotify.max_user_watches, or watch fewer directories): {source}"
    )]
    WatchLimit { source: notify::Error },
    #[error("{path} was removed or moved away")]
    RootGone { path: PathBuf },
    #[error("the event stream of the file watcher ended")]
    StreamEnded,
}

/// Runs the watcher until `cancel` (then `Ok`), or until it can no longer see every change
/// (then the reason); sends hints on `hints` (bounded).
pub async fn run(
    root: PathBuf,
    runtime: String,
    hints: mpsc::Sender<Hint>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> Result<(), WatcherError> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<notify::Result<Event>>(1024);
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callback_overflow = Arc::clone(&overflow);
    let start = |e: notify::Error| match e.kind {
        notify::ErrorKind::MaxFilesWatch => WatcherError::WatchLimit { source: e },
        _ => WatcherError::Start { path: root.clone(), reason: describe(&e) },
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // Called on notify's thread; never block it.
        if raw_tx.try_send(event).is_err() {
            callback_overflow.store(true, Ordering::SeqCst);
        }
    })
    .map_err(start)?;
    watcher.watch(&root, RecursiveMode::NonRecursive).map_err(start)?;
    let entries = std::fs::read_dir(&root).map_err(|source| WatcherError::List { path: root.clone(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !ignored(&root, &runtime, &path) {
            watch_directory(&mut watcher, &path, &metrics)?;
        }
    }
    tracing::info!("watching {}", root.display());
    if let Some(reason) = metrics.watcher_running() {
        // Whatever changed while no watcher ran is found by one full reconcile.
        tracing::info!("the file watcher runs again (it was down: {reason})");
        let _ = hints.try_send(Hint::Rescan);
    }
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            event = raw_rx.recv() => match event {
                Some(event) => event,
                None => return Err(WatcherError::StreamEnded),
            },
        };
        if overflow.swap(false, Ordering::SeqCst) {
            metrics.watcher_rescans.inc();
            let _ = hints.try_send(Hint::Rescan);
        }
        let event = match event {
            Ok(event) => event,
            // Directories created from now on would go unwatched.
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                return Err(WatcherError::WatchLimit { source: e });
            }
            Err(e) => {
                tracing::warn!("file watcher: {e}");
                metrics.watcher_errors.inc();
                let _ = hints.try_send(Hint::Rescan);
                continue;
            }
        };
        if event.need_rescan() {
            metrics.watcher_rescans.inc();
            if hints.try_send(Hint::Rescan).is_err() {
                tracing::debug!("hint queue full; a rescan is already pending");
            }
            continue;
        }
        if matches!(event.kind, EventKind::Access(_)) {
            continue;
        }
        // The root's own watch is gone with it: no event would come again, even once a new
        // directory takes its place.
        if matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)))
            && event.paths.contains(&root)
        {
            return Err(WatcherError::RootGone { path: root });
        }
        for path in event.paths {
            if ignored(&root, &runtime, &path) {
                continue;
            }
            metrics.watcher_events.inc();
            // A new top-level directory (a checkout, an agent's first file) needs its own watch.
            if path.parent() == Some(root.as_path()) && path.is_dir() {
                watch_directory(&mut watcher, &path, &metrics)?;
            }
            // A full queue means a reconcile is pending anyway; it reads everything.
            let _ = hints.try_send(Hint::Changed(path));
        }
    }
}

/// A notify error in words, without the paths notify appends (the caller names the path).
fn describe(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::PathNotFound => "it does not exist".to_owned(),
        notify::ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        notify::ErrorKind::Io(e) => e.to_string(),
        notify::ErrorKind::Generic(message) => message.clone(),
        notify::ErrorKind::WatchNotFound => "the watch is gone".to_owned(),
        notify::ErrorKind::InvalidConfig(config) => format!("invalid watcher configuration {config:?}"),
        notify::ErrorKind::MaxFilesWatch => "the inotify watch limit is reached".to_owned(),
    }
}

/// Watches a top-level directory recursively. Reaching the watch limit ends the watcher (its
/// supervisor reports it); another error (a directory that vanished, one not readable) is
/// logged and counted.
fn watch_directory(watcher: &mut impl Watcher, path: &Path, metrics: &Metrics) -> Result<(), WatcherError> {
    match watcher.watch(path, RecursiveMode::Recursive) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => Err(WatcherError::WatchLimit { source: e }),
        Err(e) => {
            tracing::warn!("cannot watch {}: {}", path.display(), describe(&e));
            metrics.watcher_errors.inc();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_vcs_build_runtime_locks_and_temp_files() {
        let root = Path::new("/ws");
        for path in [
            ".git/index",
            "target/debug/x",
            ".opsflow/audit.jsonl",
            "docs/workflow/tasks.json.lock",
            "docs/.tasks.json.1.2.opsflow-tmp",
        ] {
            assert!(ignored(root, ".opsflow", &root.join(path)), "{path}");
        }
        for path in ["docs/workflow/tasks.json", "project-config.json", "QA/QA-Report-U.md", ".github/workflows/x.yml"]
        {
            assert!(!ignored(root, ".opsflow", &root.join(path)), "{path}");
        }
    }

    /// An editor's lock, swap or safe-write file woke a reconcile each time it came and went
    /// (Emacs' `.#NAME` lock, JetBrains' `___jb_tmp___`, VS Code's `.vsctmp`, Vim's `4913`).
    #[test]
    fn editor_droppings_wake_no_reconcile() {
        let root = Path::new("/ws");
        for path in [
            "ARTIFACTS/.#R12-prod-approval.md",
            "ARTIFACTS/#R12-prod-approval.md#",
            "ARTIFACTS/R12-prod-approval.md~",
            "ARTIFACTS/.R12-prod-approval.md.swx",
            "ARTIFACTS/4913",
            "docs/workflow/tasks.json___jb_tmp___",
            "docs/workflow/tasks.json___jb_old___",
            "docs/workflow/tasks.json.vsctmp",
            ".#project-config.json",
            // An agent writing a large tasks.json to a temporary file it renames over it.
            "docs/workflow/.tasks.json.agent-tmp",
            "docs/workflow/tasks.json.tmp",
        ] {
            assert!(ignored(root, ".opsflow", &root.join(path)), "{path}");
        }
    }
}
