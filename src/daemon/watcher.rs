//! Watching the workspace: file events become hints for the reconciler.
//!
//! Events are hints, not truth: the reconciler always reads the files it needs, so a missed or
//! coalesced event changes nothing but latency. The root is watched on its own and each
//! top-level directory recursively, except `.git/`, `target/` and opsflow's runtime directory,
//! so a large build tree costs no inotify watches; a new top-level directory gets its watch
//! when it appears. When the kernel's queue overflows (notify's `need_rescan`) or the hint
//! channel is full, the reconciler is told to rescan everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
/// files, lock files and temporary files of atomic writes.
pub fn ignored(root: &Path, runtime: &str, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else { return true };
    let mut components = relative.components();
    let Some(first) = components.next() else { return false };
    let first = first.as_os_str().to_string_lossy();
    if first == ".git" || first == "target" || relative.starts_with(runtime) {
        return true;
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.ends_with(".lock") || name.ends_with(".opsflow-tmp") || name.ends_with(".swp") || name.ends_with('~')
}

/// Runs the watcher until `cancel`; sends hints on `hints` (bounded).
pub async fn run(
    root: PathBuf,
    runtime: String,
    hints: mpsc::Sender<Hint>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<notify::Result<Event>>(1024);
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callback_overflow = Arc::clone(&overflow);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // Called on notify's thread; never block it.
        if raw_tx.try_send(event).is_err() {
            callback_overflow.store(true, Ordering::SeqCst);
        }
    })?;
    watcher.watch(&root, RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && !ignored(&root, &runtime, &path)
            && let Err(e) = watcher.watch(&path, RecursiveMode::Recursive)
        {
            tracing::warn!("cannot watch {}: {e}", path.display());
            metrics.watcher_errors.inc();
        }
    }
    tracing::info!("watching {}", root.display());
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            event = raw_rx.recv() => match event {
                Some(event) => event,
                None => return Ok(()),
            },
        };
        if overflow.swap(false, Ordering::SeqCst) {
            metrics.watcher_rescans.inc();
            let _ = hints.try_send(Hint::Rescan);
        }
        let event = match event {
            Ok(event) => event,
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
        for path in event.paths {
            if ignored(&root, &runtime, &path) {
                continue;
            }
            metrics.watcher_events.inc();
            // A new top-level directory (a checkout, an agent's first file) needs its own watch.
            if path.parent() == Some(root.as_path())
                && path.is_dir()
                && let Err(e) = watcher.watch(&path, RecursiveMode::Recursive)
            {
                tracing::warn!("cannot watch {}: {e}", path.display());
                metrics.watcher_errors.inc();
            }
            // A full queue means a reconcile is pending anyway; it reads everything.
            let _ = hints.try_send(Hint::Changed(path));
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
}
