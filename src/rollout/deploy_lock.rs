//! The deploy lock of an environment: one deployment (or rollback) at a time per target.
//!
//! The lock is `File::lock` on a lock file, so it dies with its holder: a deploy killed with
//! `kill -9` never leaves a lock that blocks the next one (Deployer's stale `deploy.lock`
//! complaints cannot happen). The holder writes who it is (pid, host, agent, run, task, since
//! when) into the file, so a refused deploy can name it. A file left by a dead holder is
//! simply taken over; its old text says who that was.
//!
//! Where the file lives: in the environment's own directory for `local` environments
//! (`<path>/.deploy.lock`, the directory is the shared resource, so two workspaces deploying
//! into it see each other), else `.opsflow/locks/deploy-<environment>.lock`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held while an environment changes; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DeployLock {
    _file: File,
    pub path: PathBuf,
    /// What the file said before it was taken: the last holder, if it died holding it.
    pub previous_holder: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployLockError {
    #[error("the deploy lock of {environment} is held by {holder} (lock {path})")]
    Held { environment: String, holder: String, path: PathBuf },
    #[error("cannot use the deploy lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Who is taking the lock, written into the file.
#[derive(Debug, Clone, Default)]
pub struct Holder {
    pub agent: String,
    pub run_id: String,
    pub task: String,
}

impl Holder {
    fn describe(&self) -> String {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!(
            "pid {} on host {}, agent {}, run {}, task {}, since {}",
            std::process::id(),
            host.trim(),
            self.agent,
            self.run_id,
            self.task,
            crate::time::now_rfc3339()
        )
    }
}

/// The lock file of environment `name`: `local_root` is the directory of a `local`
/// environment, `runtime` the workspace's `.opsflow/`.
pub fn lock_path(runtime: &Path, name: &str, local_root: Option<&Path>) -> PathBuf {
    match local_root {
        Some(root) => root.join(".deploy.lock"),
        None => runtime.join("locks").join(format!("deploy-{}.lock", crate::workspace::file_name_part(name))),
    }
}

/// Takes the lock at `path` for environment `environment`, or says who holds it.
pub fn acquire(root: &Path, path: &Path, environment: &str, holder: &Holder) -> Result<DeployLock, DeployLockError> {
    let io = |source| DeployLockError::Io { path: path.to_owned(), source };
    // The holder's line is written into the file: never through a planted symlink.
    let mut file = crate::workspace::write::open_rw(root, path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(DeployLockError::Held {
                environment: environment.to_owned(),
                holder: read_holder(&mut file),
                path: path.to_owned(),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let previous = read_holder(&mut file);
    let previous_holder = (previous != UNKNOWN).then_some(previous);
    let text = format!("{}\n", holder.describe());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(text.as_bytes()))
        .map_err(io)?;
    Ok(DeployLock { _file: file, path: path.to_owned(), previous_holder })
}

/// Who holds the lock at `path` now, or `None` when it is free. Takes nothing.
pub fn holder(path: &Path) -> Option<String> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(fs::TryLockError::WouldBlock) => Some(read_holder(&mut file)),
        Err(fs::TryLockError::Error(_)) => None,
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        // The text is cleared so the file no longer names a holder; the lock itself goes
        // with the file handle.
        let _ = self._file.set_len(0);
    }
}

const UNKNOWN: &str = "another process";

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() { UNKNOWN.to_owned() } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_a_released_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "prod", None);
        let holder = Holder { agent: "DevOps-Engineer".into(), run_id: "r1".into(), task: "T-1".into() };
        let first = acquire(dir.path(), &path, "prod", &holder).unwrap();
        assert_eq!(first.previous_holder, None);
        let refused = acquire(dir.path(), &path, "prod", &Holder::default()).unwrap_err().to_string();
        assert!(refused.contains("held by pid") && refused.contains("run r1, task T-1"), "{refused}");
        assert!(super::holder(&path).is_some());
        drop(first);
        assert_eq!(super::holder(&path), None);
        acquire(dir.path(), &path, "prod", &holder).unwrap();
    }
}
