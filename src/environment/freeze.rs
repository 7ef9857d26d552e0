//! What holds an environment's deploys back besides the gates: a person's lock (`opsflow lock
//! ENV`, a freeze), and when each release's wait timer started.
//!
//! Both are opsflow's own files in the runtime directory, beside the environment's record:
//! `<runtime>/env-locks/<env>.json` (who locked it, when, why) and
//! `<runtime>/wait-timers/<env>.json` (for each release, when opsflow first saw it approved,
//! or ready when no approval is needed). They say what one machine's runner holds, so a
//! checkout does not move them, and they are written whole and atomically. A file that cannot
//! be read is an error naming it, never "not locked": a lock that silently stopped counting
//! would let a deploy through a freeze.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workspace::{self, write};

/// A person's lock on an environment: while it stands nothing deploys there; rollbacks still
/// may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub environment: String,
    pub locked_by: String,
    pub locked_at: String,
    pub reason: String,
}

impl Lock {
    /// `locked by alice since 2026-12-07T08:00:00Z: release freeze`.
    pub fn describe(&self) -> String {
        format!("locked by {} since {}: {}", self.locked_by, self.locked_at, self.reason)
    }
}

/// When a release's wait timer started, and on whose approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerStart {
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// A lock or timer file that cannot be read or written, naming it.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{} is not what opsflow wrote there ({message}); remove it or restore it", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Unwritable { path: PathBuf, source: io::Error },
}

/// The lock file of `environment`.
pub fn lock_path(root: &Path, runtime: &str, environment: &str) -> PathBuf {
    root.join(runtime).join("env-locks").join(format!("{}.json", workspace::file_name_part(environment)))
}

/// The wait timer starts of `environment`.
pub fn timers_path(root: &Path, runtime: &str, environment: &str) -> PathBuf {
    root.join(runtime).join("wait-timers").join(format!("{}.json", workspace::file_name_part(environment)))
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, FreezeError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FreezeError::Unreadable { path: path.to_owned(), source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| FreezeError::Corrupt { path: path.to_owned(), message: e.to_string() })
}

fn save_json(root: &Path, path: &Path, value: &impl Serialize) -> Result<(), FreezeError> {
    let text = serde_json::to_string_pretty(value).expect("a lock serializes") + "\n";
    write::write_file(root, path, text.as_bytes())
        .map_err(|source| FreezeError::Unwritable { path: path.to_owned(), source })
}

/// The lock on `environment`, if any.
pub fn load_lock(root: &Path, runtime: &str, environment: &str) -> Result<Option<Lock>, FreezeError> {
    load_json(&lock_path(root, runtime, environment))
}

/// Locks the environment the lock names (replacing an earlier lock of it).
pub fn save_lock(root: &Path, runtime: &str, lock: &Lock) -> Result<(), FreezeError> {
    save_json(root, &lock_path(root, runtime, &lock.environment), lock)
}

/// Removes the lock on `environment`.
pub fn remove_lock(root: &Path, runtime: &str, environment: &str) -> Result<(), FreezeError> {
    let path = lock_path(root, runtime, environment);
    match write::remove_file(root, &path) {
        Ok(()) => {
            write::note_written(&path);
            Ok(())
        }
        Err(source) => Err(FreezeError::Unwritable { path, source }),
    }
}

/// The wait timer starts of `environment`, by release label (`UNIT-001 1.0.0`).
pub fn load_timers(root: &Path, runtime: &str, environment: &str) -> Result<BTreeMap<String, TimerStart>, FreezeError> {
    Ok(load_json(&timers_path(root, runtime, environment))?.unwrap_or_default())
}

/// Writes the wait timer starts of `environment`.
pub fn save_timers(
    root: &Path,
    runtime: &str,
    environment: &str,
    timers: &BTreeMap<String, TimerStart>,
) -> Result<(), FreezeError> {
    save_json(root, &timers_path(root, runtime, environment), timers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_reads_back_and_a_broken_one_is_an_error_not_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(load_lock(root, ".opsflow", "production").unwrap(), None);
        let lock = Lock {
            environment: "production".into(),
            locked_by: "alice".into(),
            locked_at: "2026-12-07T08:00:00Z".into(),
            reason: "year-end freeze".into(),
        };
        save_lock(root, ".opsflow", &lock).unwrap();
        assert_eq!(load_lock(root, ".opsflow", "production").unwrap(), Some(lock.clone()));
        assert_eq!(lock.describe(), "locked by alice since 2026-12-07T08:00:00Z: year-end freeze");
        fs::write(lock_path(root, ".opsflow", "production"), "{\"environment\": ").unwrap();
        let error = load_lock(root, ".opsflow", "production").unwrap_err().to_string();
        assert!(error.contains("production.json is not what opsflow wrote there"), "{error}");
        remove_lock(root, ".opsflow", "production").unwrap();
        remove_lock(root, ".opsflow", "production").unwrap();
        assert_eq!(load_lock(root, ".opsflow", "production").unwrap(), None);
    }
}
