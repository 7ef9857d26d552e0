//! Locked, atomic, re-checked replacement of a whole file.
//!
//! Writers that cooperate take an exclusive `File::lock` on a sidecar `<file>.lock`; the lock
//! dies with its holder, so a killed writer never blocks the next one. The new content goes
//! to a temporary file in the same directory, is fsynced, and replaces the old one with an
//! atomic exchange (`renameat2(RENAME_EXCHANGE)`); the file that was swapped out is then
//! compared with the one that was read. If a writer that ignores the lock replaced or
//! changed the file in the meantime, the exchange is undone and the edit is redone on what
//! is there now, so that writer's change is never lost. The directory is fsynced last.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::workspace::diagnostic::Diagnostic;
use crate::workspace::read;

/// How many times an edit is redone when another writer keeps changing the file.
const MAX_ATTEMPTS: usize = 50;
const TEMP_SUFFIX: &str = ".opsflow-tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    #[error("{path}: another writer changed the file during each of {attempts} attempts; nothing was written")]
    Contended { path: PathBuf, attempts: usize },
    /// The edit itself was refused (no such task, a duplicate id, an invalid field).
    #[error("{0}")]
    Refused(String),
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_owned();
    move |source| StoreError::Io { path, action, source }
}

/// The new content of a file: whole, or as splices into the content that was read (written
/// piece by piece, so a large file is never copied in memory).
#[derive(Debug, Clone)]
pub enum Content {
    Whole(String),
    Spliced(Vec<super::edit::Splice>),
}

impl From<String> for Content {
    fn from(whole: String) -> Content {
        Content::Whole(whole)
    }
}

/// What [`modify`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written { attempts: usize },
}

/// The sidecar lock file of `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// What opsflow writes to a `.gitignore` beside the first lock file it creates in a directory
/// that has none (and what `init` writes to `docs/workflow/.gitignore`): its lock files and
/// interrupted writes, so `git add -A` commits neither. A sidecar lock is the file's name and
/// `.lock` whatever the file is called (`tasks.json.lock`, `issues.jsonl.lock`,
/// `human-requests.txt.lock` for a configured path), so the rule is `/*.lock`: a narrower one
/// once missed `issues.jsonl.lock`. It applies to that one directory (the leading `/`).
pub const LOCK_GITIGNORE: &str = "# opsflow's lock files and interrupted writes\n/*.lock\n/.*.opsflow-tmp\n";

/// Takes the exclusive sidecar lock of `path`, waiting for the current holder. The
/// `.gitignore` for it is written by [`modify`], once it has written the file: an edit that
/// was refused leaves nothing in the folder but the lock.
pub fn lock(path: &Path) -> Result<File, StoreError> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        // A planted symlink must not make opsflow create a file elsewhere.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "cannot open the lock file"))?;
    file.lock().map_err(io_error(&lock_path, "cannot lock"))?;
    Ok(file)
}

/// Writes [`LOCK_GITIGNORE`] beside `lock_path` unless a `.gitignore` is there. Best effort:
/// a directory where it cannot be written still gets its lock.
fn ignore_locks_in_git(lock_path: &Path) {
    let Some(dir) = lock_path.parent() else { return };
    let gitignore = dir.join(".gitignore");
    // `create_new`, so a `.gitignore` someone writes at the same moment is never replaced.
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&gitignore)
        .and_then(|mut file| file.write_all(LOCK_GITIGNORE.as_bytes()));
    if let Err(e) = written
        && e.kind() != io::ErrorKind::AlreadyExists
    {
        tracing::debug!("cannot write {}: {e}", gitignore.display());
    }
}

/// Identity of a file version: a rename changes the inode, a write the size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn version_of(path: &Path) -> Result<Option<Version>, StoreError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(Version {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, "cannot stat")(e)),
    }
}

/// Reads `path` under its lock, lets `edit` compute the new content from the current one
/// (`None`: the file does not exist), and replaces the file atomically.
///
/// `edit` may run more than once: when another writer changes the file between the read and
/// the replace, the edit is redone on the new content. Returning `Ok(None)` writes nothing.
pub fn modify<F, C>(path: &Path, label: &str, limit: u64, mut edit: F) -> Result<Outcome, StoreError>
where
    F: FnMut(Option<&str>) -> Result<Option<C>, StoreError>,
    C: Into<Content>,
{
    let first_lock = lock_path(path).symlink_metadata().is_err();
    let _lock = lock(path)?;
    remove_stale_temps(path);
    for attempt in 1..=MAX_ATTEMPTS {
        let before = version_of(path)?;
        let current = match before {
            None => None,
            Some(_) => match read::read_bytes(path, label, limit).map_err(|d| StoreError::Invalid(Box::new(d)))? {
                Some(bytes) => Some(read::check_text(label, bytes).map_err(|d| StoreError::Invalid(Box::new(d)))?),
                None => continue,
            },
        };
        let Some(new) = edit(current.as_deref())? else { return Ok(Outcome::Unchanged) };
        let new = new.into();
        let temp = match (&new, current.as_deref()) {
            (Content::Whole(whole), Some(current)) if whole == current => return Ok(Outcome::Unchanged),
            (Content::Spliced(splices), _) if splices.is_empty() => return Ok(Outcome::Unchanged),
            (Content::Whole(whole), _) => TempFile::write(path, |out| out.write_all(whole.as_bytes()))?,
            (Content::Spliced(splices), current) => {
                let current = current.unwrap_or_default();
                TempFile::write(path, |out| super::edit::write_spliced(current, splices, out))?
            }
        };
        let written = version_of(&temp.path)?;
        // The cheap re-check: the file as read is still the file on disk.
        if version_of(path)? != before {
            continue;
        }
        match before {
            None => match rename_noreplace(&temp.path, path) {
                Ok(()) => temp.persisted(),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(path, "cannot move the new file into place")(e)),
            },
            Some(read_version) => match rename_exchange(&temp.path, path) {
                Ok(()) => {
                    // `temp.path` now holds what was displaced: it must be what was read.
                    if version_of(&temp.path)? != Some(read_version) {
                        restore(path, &temp.path, written)?;
                        continue;
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                    // Filesystems without the exchange get a plain rename after the re-check.
                    fs::rename(&temp.path, path).map_err(io_error(path, "cannot move the new file into place"))?;
                    temp.persisted();
                }
                Err(e) => return Err(io_error(path, "cannot move the new file into place")(e)),
            },
        }
        sync_dir(path)?;
        crate::workspace::write::note_written(path);
        if first_lock {
            ignore_locks_in_git(&lock_path(path));
        }
        return Ok(Outcome::Written { attempts: attempt });
    }
    Err(StoreError::Contended { path: path.to_owned(), attempts: MAX_ATTEMPTS })
}

/// Undoes a swap that displaced another writer's file: `temp` holds that file and `path` the
/// one opsflow wrote (`written`). Swapping back is checked too: if yet another writer renamed
/// a file over `path` in between, swapping back would displace that newer file, so it is put
/// back at `path`, and the older file opsflow had displaced is kept beside it as
/// `<name>.displaced-<pid>-<n>` (with a warning) instead of being deleted: nothing is lost.
fn restore(path: &Path, temp: &Path, written: Option<Version>) -> Result<(), StoreError> {
    rename_exchange(temp, path).map_err(io_error(path, "cannot restore the other writer's file"))?;
    if version_of(temp)? == written {
        return Ok(());
    }
    // `path` now holds the file opsflow displaced first, `temp` a newer one: the newer one goes
    // back into place.
    rename_exchange(temp, path).map_err(io_error(path, "cannot restore the other writer's file"))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let kept = path.with_file_name(format!("{name}.displaced-{}-{n}", std::process::id()));
    fs::rename(temp, &kept).map_err(io_error(&kept, "cannot keep the displaced file"))?;
    tracing::warn!(
        "two writers that ignore the lock replaced {} while opsflow swapped it; the newer file is in place, the older one is kept as {}",
        path.display(),
        kept.display()
    );
    Ok(())
}

/// Replaces a whole file atomically, without the sidecar lock: for files only opsflow writes
/// (artifacts, reports), where the instance lock already keeps other runners out.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error(parent, "cannot create the directory"))?;
    }
    let temp = TempFile::write(path, |out| out.write_all(bytes))?;
    fs::rename(&temp.path, path).map_err(io_error(path, "cannot move the new file into place"))?;
    temp.persisted();
    sync_dir(path)?;
    crate::workspace::write::note_written(path);
    Ok(())
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir, "cannot sync the directory"))
}

/// A temporary file beside its target, removed on drop unless it was moved into place.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    fn write(
        target: &Path,
        fill: impl FnOnce(&mut EarlyWriteback<'_>) -> io::Result<()>,
    ) -> Result<TempFile, StoreError> {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = target.with_file_name(format!(".{name}.{}.{n}{TEMP_SUFFIX}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path, "cannot create a temporary file"))?;
        let temp = TempFile { path, keep: false };
        if let Ok(metadata) = fs::metadata(target) {
            // Keep the target's permissions; best effort, the content matters more.
            let _ = file.set_permissions(metadata.permissions());
        }
        let mut out = EarlyWriteback { file: &mut file, written: 0, started: 0 };
        fill(&mut out).map_err(io_error(&temp.path, "cannot write the temporary file"))?;
        file.sync_all().map_err(io_error(&temp.path, "cannot sync the temporary file"))?;
        Ok(temp)
    }

    fn persisted(mut self) {
        self.keep = true;
    }
}

/// How much of a new file is written before the kernel is asked to start putting it on disk.
const WRITEBACK_CHUNK: usize = 1024 * 1024;

/// A writer for a new file that starts the disk write of every [`WRITEBACK_CHUNK`] as soon as
/// it is in the page cache (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait).
/// The device then works while the rest is still being written, and the fsync that follows
/// waits for the last chunk instead of the whole file: on a 27 MB `tasks.json` the write and
/// the fsync together take about two thirds of the time. Only a hint: durability still comes
/// from that fsync, and where the call does not exist the writer is a plain one.
struct EarlyWriteback<'f> {
    file: &'f mut File,
    written: u64,
    started: u64,
}

impl Write for EarlyWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(&buf[..buf.len().min(WRITEBACK_CHUNK)])?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_CHUNK as u64 {
            start_writeback(self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else { return };
    // SAFETY: the descriptor is open for the duration of the call; the call only starts I/O.
    // Its result is ignored on purpose: a failure here changes nothing that the fsync after
    // the write does not check.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes temporary files of `target` left by writers that were killed (their pid is gone).
fn remove_stale_temps(target: &Path) {
    let Some(dir) = target.parent() else { return };
    let prefix = format!(".{}.", target.file_name().unwrap_or_default().to_string_lossy());
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(middle) = name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(TEMP_SUFFIX)) else { continue };
        let Some(pid) = middle.split('.').next().and_then(|pid| pid.parse::<i32>().ok()) else { continue };
        if !crate::process_alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call.
    let result = unsafe {
        libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags)
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(from, to, libc::RENAME_NOREPLACE) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
            if to.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modify_creates_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let outcome = modify(&path, "f.json", 1 << 20, |current| {
            assert!(current.is_none());
            Ok(Some("1".to_owned()))
        })
        .unwrap();
        assert_eq!(outcome, Outcome::Written { attempts: 1 });
        let outcome = modify(&path, "f.json", 1 << 20, |current| Ok(Some(format!("{}2", current.unwrap())))).unwrap();
        assert_eq!(outcome, Outcome::Written { attempts: 1 });
        assert_eq!(fs::read_to_string(&path).unwrap(), "12");
        let same = modify(&path, "f.json", 1 << 20, |current| Ok(current.map(str::to_owned))).unwrap();
        assert_eq!(same, Outcome::Unchanged);
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, [".gitignore", "f.json", "f.json.lock"]);
        assert_eq!(fs::read_to_string(dir.path().join(".gitignore")).unwrap(), LOCK_GITIGNORE);
    }

    #[test]
    fn a_file_of_several_writeback_chunks_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        // Not a multiple of the chunk, and written by a single `write_all`.
        let text: String = (0..3 * WRITEBACK_CHUNK + 12_345).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        modify(&path, "f.txt", u64::MAX, |_| Ok(Some(text.clone()))).unwrap();
        assert!(fs::read_to_string(&path).unwrap() == text);
    }

    #[test]
    fn undoing_a_swap_never_displaces_a_newer_file_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let temp = dir.path().join(".f.txt.1.0.opsflow-tmp");
        // One writer that ignores the lock: opsflow swapped its file out (it is at `temp`,
        // opsflow's at `path`); undoing the swap puts it back and removes opsflow's.
        fs::write(&path, "opsflow's").unwrap();
        let written = version_of(&path).unwrap();
        fs::write(&temp, "first writer's").unwrap();
        restore(&path, &temp, written).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first writer's");
        assert_eq!(fs::read_to_string(&temp).unwrap(), "opsflow's", "the caller's temp file, removed on drop");
        fs::remove_file(&temp).unwrap();

        // Two of them: after the swap, a second writer renamed its file over `path` too, so
        // `path` holds the newest file and `temp` the first writer's; opsflow's is gone.
        fs::write(&path, "opsflow's, again").unwrap();
        let written = version_of(&path).unwrap();
        fs::write(&temp, "first writer's").unwrap();
        let newest = dir.path().join("newest");
        fs::write(&newest, "second writer's").unwrap();
        fs::rename(&newest, &path).unwrap();
        restore(&path, &temp, written).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second writer's", "the newest file stays in place");
        assert!(!temp.exists());
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("f.txt.displaced-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(fs::read_to_string(dir.path().join(&kept[0])).unwrap(), "first writer's", "kept beside it");
    }

    #[test]
    fn a_change_by_another_writer_between_read_and_replace_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        fs::write(&path, "a").unwrap();
        let mut calls = 0;
        let outcome = modify(&path, "f.txt", 1 << 20, |current| {
            calls += 1;
            if calls == 1 {
                // A writer that ignores the lock replaces the file while the edit is computed.
                let other = dir.path().join("other");
                fs::write(&other, "b").unwrap();
                fs::rename(&other, &path).unwrap();
            }
            Ok(Some(format!("{}+", current.unwrap())))
        })
        .unwrap();
        assert_eq!(outcome, Outcome::Written { attempts: 2 });
        assert_eq!(fs::read_to_string(&path).unwrap(), "b+");
    }

    #[test]
    fn errors_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        // An error before anything is written.
        fs::write(&path, "\u{feff}x").unwrap();
        assert!(matches!(modify(&path, "f.txt", 1 << 20, |_| Ok(Some("y".to_owned()))), Err(StoreError::Invalid(_))));
        // The file and its lock: the `.gitignore` is written beside a lock only once a write
        // went through, so a refused edit adds nothing to a folder another tool owns.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);

        // An error after temporary files were written: another writer replaces the file during
        // every attempt, so each attempt's temporary file is written and then given up. The
        // kernel's file events show that they existed.
        use notify::Watcher;
        fs::write(&path, "a").unwrap();
        let (sender, events) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && event.kind.is_create()
            {
                let _ = sender.send(event.paths);
            }
        })
        .unwrap();
        watcher.watch(dir.path(), notify::RecursiveMode::NonRecursive).unwrap();
        let mut calls = 0;
        let outcome = modify(&path, "f.txt", 1 << 20, |_| {
            calls += 1;
            let other = dir.path().join("other");
            fs::write(&other, format!("other writer {calls}")).unwrap();
            fs::rename(&other, &path).unwrap();
            Ok(Some("opsflow's".to_owned()))
        });
        assert!(matches!(outcome, Err(StoreError::Contended { .. })), "{outcome:?}");
        assert_eq!(calls, MAX_ATTEMPTS);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut temps_created = 0;
        while temps_created < MAX_ATTEMPTS {
            let paths = events.recv_timeout(std::time::Duration::from_secs(1)).unwrap_or_default();
            temps_created += paths.iter().filter(|p| p.to_string_lossy().ends_with(TEMP_SUFFIX)).count();
            assert!(std::time::Instant::now() < deadline, "{temps_created} temporary files were created");
        }
        let mut names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["f.txt", "f.txt.lock"], "a temporary file was left");
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("other writer {MAX_ATTEMPTS}"));
    }
}
