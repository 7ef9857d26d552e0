//! One runner per agent per workspace: an exclusive lock in `.opsflow/locks/`.
//!
//! The lock is `File::lock` on `instance-<agent>.lock`, so it dies with its holder (a killed
//! runner never blocks the next). The holder writes its pid, host and start time into the
//! file, which is how a refused second runner can say who holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::workspace::{Workspace, write};

/// Held for as long as this runner lives.
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the instance lock of this agent, or says who holds it.
pub fn acquire(ws: &Workspace) -> Result<InstanceLock, String> {
    let runtime = ensure_runtime_dir(ws).map_err(|e| format!("cannot create {}: {e}", ws.config.paths.runtime))?;
    let agent = crate::workspace::file_name_part(&ws.config.agent.name);
    let path = runtime.join("locks").join(format!("instance-{agent}.lock"));
    write::create_dir_all(&ws.root, path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // The holder's line is written into the file: never through a planted symlink.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "another process".to_owned() } else { holder.to_owned() };
            return Err(format!(
                "another opsflow runner for agent {} already works in this workspace ({holder}; lock {})",
                ws.config.agent.name,
                path.display()
            ));
        }
        Err(fs::TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
    }
    let info = format!("pid {} on host {} since {}\n", std::process::id(), host_name(), crate::time::now_rfc3339());
    let _ = file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(info.as_bytes()));
    Ok(InstanceLock { _file: file, path })
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
