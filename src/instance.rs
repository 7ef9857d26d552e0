//! One runner per agent per workspace: an exclusive lock in `.opsflow/locks/` for each agent a
//! runner acts for (its own, and the owner of each agent node of the workflow).
//!
//! The lock is `File::lock` on `instance-<agent>.lock`, so it dies with its holder (a killed
//! runner never blocks the next). The holder writes its pid, host and start time into the
//! file, which is how a refused second runner can say who holds it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::workspace::{Workspace, write};

/// Why the instance lock could not be taken; each names the file or directory it concerns.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot create the runtime directory {path}: {source}")]
    Runtime { path: PathBuf, source: io::Error },
    #[error("cannot open the instance lock {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    /// Another runner of the same agent holds the lock.
    #[error("another opsflow runner for agent {agent} already works in this workspace ({holder}; lock {path})")]
    Busy { agent: String, holder: String, path: PathBuf },
}

/// Held for as long as this runner lives: one lock per agent it acts for.
pub struct InstanceLock {
    _files: Vec<File>,
    /// The lock of the runner's own agent.
    pub path: PathBuf,
}

/// Takes the instance lock of this runner's agent and of every agent node's owner it acts
/// for (`workflow::agents_acted_for`), or says who holds the first one that is taken.
pub fn acquire(ws: &Workspace) -> Result<InstanceLock, InstanceError> {
    let runtime = ensure_runtime_dir(ws)
        .map_err(|source| InstanceError::Runtime { path: ws.path(&ws.config.paths.runtime), source })?;
    let locks = runtime.join("locks");
    write::create_dir_all(&ws.root, &locks).map_err(|source| InstanceError::Runtime { path: locks.clone(), source })?;
    let mut files = Vec::new();
    let mut own = None;
    for agent in crate::workflow::agents_acted_for(&ws.config) {
        let (file, path) = lock_agent(ws, &locks, &agent)?;
        files.push(file);
        own.get_or_insert(path);
    }
    Ok(InstanceLock { _files: files, path: own.expect("a runner acts for its own agent") })
}

fn lock_agent(ws: &Workspace, locks: &Path, agent: &str) -> Result<(File, PathBuf), InstanceError> {
    let path = locks.join(format!("instance-{}.lock", crate::workspace::file_name_part(agent)));
    // The holder's line is written into the file: never through a planted symlink.
    let mut file =
        write::open_rw(&ws.root, &path).map_err(|source| InstanceError::Open { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "another process".to_owned() } else { holder.to_owned() };
            return Err(InstanceError::Busy { agent: agent.to_owned(), holder, path });
        }
        Err(fs::TryLockError::Error(source)) => return Err(InstanceError::Lock { path, source }),
    }
    let info = format!("pid {} on host {} since {}\n", std::process::id(), host_name(), crate::time::now_rfc3339());
    // Who holds the lock is a courtesy for the next runner's message; the lock itself holds.
    if let Err(e) =
        file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(info.as_bytes()))
    {
        tracing::warn!("cannot note the holder in {}: {e}", path.display());
    }
    Ok((file, path))
}

/// This machine's host name (`unknown` when the system does not say), as recorded in the
/// instance lock and in a claim's `claimed_on`.
pub fn host_name() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host = host.trim();
    if host.is_empty() { "unknown".to_owned() } else { host.to_owned() }
}

/// Creates the runtime directory with a `.gitignore` that keeps it out of git, and returns
/// it. Refused when it, or a folder above it, is a symlink that leads outside the workspace:
/// every runtime file (logs, locks, journals, local environments) lives under it.
pub fn ensure_runtime_dir(ws: &Workspace) -> std::io::Result<PathBuf> {
    let runtime = ws.confine(Path::new(&ws.config.paths.runtime))?;
    write::create_dir_all(&ws.root, &runtime)?;
    let ignore = runtime.join(".gitignore");
    if !ignore.exists() {
        write::write_file(
            &ws.root,
            &ignore,
            b"# opsflow's runtime state: audit log, run logs, locks, local environments\n*\n",
        )?;
    }
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_directory_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the runtime directory belongs.
        std::fs::write(dir.path().join(".opsflow"), "not a directory\n").unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let error = acquire(&ws).err().expect("the runtime directory is a file");
        assert!(matches!(error, InstanceError::Runtime { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot create the runtime directory {}", ws.root.join(".opsflow").display())),
            "{message}"
        );
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let held = acquire(&ws).unwrap();
        let Err(InstanceError::Busy { holder, path, .. }) = acquire(&ws) else { panic!("a second lock was taken") };
        assert_eq!(path, held.path);
        assert!(holder.starts_with(&format!("pid {} on host ", std::process::id())), "{holder}");
    }
}
