//! Locked, atomic, re-checked replacement of a whole file.
//!
//! Writers that cooperate take an exclusive `File::lock` on a sidecar `<file>.lock`; the lock
//! dies with its holder, so a killed writer never blocks the next one. The new content goes
//! to a temporary file in the same directory, is fsynced, and replaces the old one with an
//! atomic exchange (`renameat2(RENAME_EXCHANGE)`); the file that was swapped out is then
//! compared with the one that was read. If a writer that ignores the lock replaced or
//! changed the file in the meantime, the exchange is undone and the edit is redone on what
//! is there now, so that writer's change is never lost. The directory is fsynced last.
//!
//! Every step acts relative to the file's directory, resolved once beneath the workspace root
//! (`workspace::beneath`), so no rename of a folder on the way can move a write outside.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::workspace::beneath::{Dir, TEMP_SUFFIX};
use crate::workspace::diagnostic::Diagnostic;
use crate::workspace::{read, write};

/// How many times an edit is redone when another writer keeps changing the file.
const MAX_ATTEMPTS: usize = 50;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    /// A write inside the workspace failed; the error names the file and the step.
    #[error("{0}")]
    Write(io::Error),
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

/// A file opsflow replaces: its directory, resolved beneath the workspace root once
/// ([`beneath`](crate::workspace::beneath)), and its name there. Every step of a replacement
/// (the lock, the temporary file, the exchange, the undo) acts relative to that directory, so
/// a folder on the way swapped for a symlink cannot move any of them outside.
struct Target {
    dir: Dir,
    name: OsString,
    path: PathBuf,
}

impl Target {
    fn open(root: &Path, path: &Path) -> Result<Target, StoreError> {
        let (dir, name) = write::parent(root, path, true).map_err(StoreError::Write)?;
        Ok(Target { dir, name, path: path.to_owned() })
    }

    fn with_suffix(&self, suffix: &str) -> OsString {
        let mut name = self.name.clone();
        name.push(suffix);
        name
    }

    fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.with_file_name(name)
    }

    fn version(&self, name: &OsStr) -> Result<Option<Version>, StoreError> {
        let stat = self.dir.stat(name).map_err(io_error(&self.shown(name), "cannot stat"))?;
        Ok(stat.map(|s| Version {
            dev: s.st_dev,
            ino: s.st_ino,
            size: s.st_size as u64,
            mtime: s.st_mtime,
            mtime_nsec: s.st_mtime_nsec as i64,
        }))
    }

    /// Reads the file through its directory; a symlink inside the workspace (which the write
    /// then replaces by a file) is read where it leads.
    fn read(&self, label: &str, limit: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let invalid = |d| StoreError::Invalid(Box::new(d));
        match self.dir.open_read(&self.name) {
            Ok(file) => read::read_opened(file, label, limit).map(Some).map_err(invalid),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                read::read_bytes(&self.path, label, limit).map_err(invalid)
            }
            Err(e) => Err(io_error(&self.path, "cannot open")(e)),
        }
    }

    /// Takes the exclusive sidecar lock, waiting for the current holder.
    fn lock(&self) -> Result<File, StoreError> {
        let name = self.with_suffix(".lock");
        // A planted symlink must not make opsflow create a file elsewhere (`open_rw` never
        // follows the name).
        let file = self.dir.open_rw(&name).map_err(io_error(&self.shown(&name), "cannot open the lock file"))?;
        file.lock().map_err(io_error(&self.shown(&name), "cannot lock"))?;
        Ok(file)
    }

    /// Writes [`LOCK_GITIGNORE`] beside the lock unless a `.gitignore` is there. Best effort:
    /// a directory where it cannot be written still gets its lock.
    fn ignore_locks_in_git(&self) {
        // `create_new`, so a `.gitignore` someone writes at the same moment is never replaced.
        let written = self
            .dir
            .create_new(OsStr::new(".gitignore"))
            .and_then(|mut file| file.write_all(LOCK_GITIGNORE.as_bytes()));
        if let Err(e) = written
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            tracing::debug!("cannot write {}: {e}", self.shown(OsStr::new(".gitignore")).display());
        }
    }

    /// Writes a temporary file beside the target with `fill`, fsynced.
    fn temp(&self, fill: impl FnOnce(&mut EarlyWriteback<'_>) -> io::Result<()>) -> Result<TempFile<'_>, StoreError> {
        let name = self
            .dir
            .write_temp(&self.name, |file| {
                let mut out = EarlyWriteback { file, written: 0, started: 0 };
                fill(&mut out)
            })
            .map_err(StoreError::Write)?;
        Ok(TempFile { target: self, name, keep: false })
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.dir.sync().map_err(io_error(self.dir.path(), "cannot sync the directory"))
    }

    /// Removes temporary files of the target left by writers that were killed (their pid is
    /// gone).
    fn remove_stale_temps(&self) {
        let prefix = format!(".{}.", self.name.to_string_lossy());
        let Ok(entries) = self.dir.entries() else { return };
        for name in entries {
            let shown = name.to_string_lossy();
            let Some(middle) = shown.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(TEMP_SUFFIX)) else {
                continue;
            };
            let Some(pid) = middle.split('.').next().and_then(|pid| pid.parse::<i32>().ok()) else { continue };
            if !crate::process_alive(pid) {
                self.dir.remove_file(&name).ok();
            }
        }
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

/// How much older than the start of a read a file's modification time must be before the
/// text read may stand for that version later ([`Known`]): file times come from a clock that
/// ticks every few milliseconds, so a write right after the read could carry the same time.
const KNOWN_MARGIN: std::time::Duration = std::time::Duration::from_millis(30);

/// A file's text as a reader read it at one version, for a later [`modify_known`] of the same
/// file: that edit takes these bytes instead of reading the file again, provided the file is
/// still at that version when it holds the lock (the same re-check the store makes before it
/// replaces a file). Only the text of a version that stayed the same during the read, and
/// whose modification time was older than the read by [`KNOWN_MARGIN`], is known.
#[derive(Debug)]
pub struct Known {
    version: Version,
    pub text: String,
}

impl Drop for Known {
    /// The text's memory serves the next large read ([`read::recycle`]).
    fn drop(&mut self) {
        read::recycle(std::mem::take(&mut self.text));
    }
}

impl Known {
    /// `text`, read from `path` with `read` between two looks at the file's version; `None`
    /// for a text that may not stand for a version (see [`Known`]).
    pub fn read<E>(
        path: &Path,
        read: impl FnOnce() -> Result<Option<String>, E>,
    ) -> Result<(Option<String>, Option<Known>), E> {
        let started = std::time::SystemTime::now();
        let before = std::fs::metadata(path).ok();
        let text = read()?;
        let after = std::fs::metadata(path).ok();
        let (Some(text), Some(before), Some(after)) = (text, before, after) else { return Ok((None, None)) };
        let settled = before.modified().ok().zip(started.checked_sub(KNOWN_MARGIN)).is_some_and(|(m, s)| m < s);
        let version = Version::of(&before);
        if !settled || version != Version::of(&after) || version.size != text.len() as u64 {
            return Ok((Some(text), None));
        }
        Ok((None, Some(Known { version, text })))
    }

    /// The text, when the file at `path` is still at the version it was read at: for another
    /// reader in the same pass, which then need not read the file again.
    pub fn current(&self, path: &Path) -> Option<&str> {
        let now = std::fs::metadata(path).ok()?;
        (Version::of(&now) == self.version).then_some(self.text.as_str())
    }
}

/// A file's version (device, inode, size, modification time) as seen at one moment, to tell
/// later whether anyone has replaced or written it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Version);

impl Stamp {
    /// The version of the file at `path` now; `None` when it cannot be looked at.
    pub fn of(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp(Version::of(&m)))
    }
}

impl Version {
    fn of(metadata: &std::fs::Metadata) -> Version {
        use std::os::unix::fs::MetadataExt;
        Version {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }
}

/// [`modify`], starting from `known` when the file is still at its version under the lock
/// (no second read); any later attempt reads the file.
pub fn modify_known<F, C>(
    root: &Path,
    path: &Path,
    label: &str,
    limit: u64,
    known: Option<&Known>,
    edit: F,
) -> Result<Outcome, StoreError>
where
    F: FnMut(Option<&str>) -> Result<Option<C>, StoreError>,
    C: Into<Content>,
{
    modify_from(root, path, label, limit, known, edit)
}

/// Reads `path` (inside the canonical workspace `root`) under its lock, lets `edit` compute
/// the new content from the current one (`None`: the file does not exist), and replaces the
/// file atomically.
///
/// `edit` may run more than once: when another writer changes the file between the read and
/// the replace, the edit is redone on the new content. Returning `Ok(None)` writes nothing.
pub fn modify<F, C>(root: &Path, path: &Path, label: &str, limit: u64, edit: F) -> Result<Outcome, StoreError>
where
    F: FnMut(Option<&str>) -> Result<Option<C>, StoreError>,
    C: Into<Content>,
{
    modify_from(root, path, label, limit, None, edit)
}

fn modify_from<F, C>(
    root: &Path,
    path: &Path,
    label: &str,
    limit: u64,
    mut known: Option<&Known>,
    mut edit: F,
) -> Result<Outcome, StoreError>
where
    F: FnMut(Option<&str>) -> Result<Option<C>, StoreError>,
    C: Into<Content>,
{
    let target = Target::open(root, path)?;
    let first_lock = target.dir.stat(&target.with_suffix(".lock")).ok().flatten().is_none();
    let _lock = target.lock()?;
    target.remove_stale_temps();
    for attempt in 1..=MAX_ATTEMPTS {
        let before = target.version(&target.name)?;
        // The text read earlier stands for the file only while the file is at its version.
        let known_text = known.take().filter(|k| before == Some(k.version)).map(|k| k.text.as_str());
        let current = read::Recycled(match (before, known_text) {
            (_, Some(_)) | (None, _) => None,
            (Some(_), None) => match target.read(label, limit)? {
                Some(bytes) => Some(read::check_text(label, bytes).map_err(|d| StoreError::Invalid(Box::new(d)))?),
                None => continue,
            },
        });
        let current = known_text.or(current.0.as_deref());
        let Some(new) = edit(current)? else { return Ok(Outcome::Unchanged) };
        let new = new.into();
        let temp = match (&new, current) {
            (Content::Whole(whole), Some(current)) if whole == current => return Ok(Outcome::Unchanged),
            (Content::Spliced(splices), _) if splices.is_empty() => return Ok(Outcome::Unchanged),
            (Content::Whole(whole), _) => target.temp(|out| out.write_all(whole.as_bytes()))?,
            (Content::Spliced(splices), current) => {
                let current = current.unwrap_or_default();
                target.temp(|out| super::edit::write_spliced(current, splices, out))?
            }
        };
        let written = target.version(&temp.name)?;
        // The cheap re-check: the file as read is still the file on disk.
        if target.version(&target.name)? != before {
            continue;
        }
        let dir = &target.dir;
        let moved = |e| io_error(path, "cannot move the new file into place")(e);
        match before {
            None => match dir.rename_noreplace(&temp.name, dir, &target.name) {
                Ok(()) => temp.persisted(),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(moved(e)),
            },
            Some(read_version) => match dir.exchange(&temp.name, dir, &target.name) {
                Ok(()) => {
                    // The temporary name now holds what was displaced: it must be what was read.
                    if target.version(&temp.name)? != Some(read_version) {
                        restore(&target, &temp.name, written)?;
                        continue;
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                    // Filesystems without the exchange get a plain rename after the re-check.
                    dir.rename(&temp.name, dir, &target.name).map_err(moved)?;
                    temp.persisted();
                }
                Err(e) => return Err(moved(e)),
            },
        }
        target.sync()?;
        crate::workspace::write::note_written(path);
        if first_lock {
            target.ignore_locks_in_git();
        }
        return Ok(Outcome::Written { attempts: attempt });
    }
    Err(StoreError::Contended { path: path.to_owned(), attempts: MAX_ATTEMPTS })
}

/// Undoes a swap that displaced another writer's file: `temp` holds that file and the target
/// the one opsflow wrote (`written`). Swapping back is checked too: if yet another writer
/// renamed a file over the target in between, swapping back would displace that newer file,
/// so it is put back in place, and the older file opsflow had displaced is kept beside it as
/// `<name>.displaced-<pid>-<n>` (with a warning) instead of being deleted: nothing is lost.
fn restore(target: &Target, temp: &OsStr, written: Option<Version>) -> Result<(), StoreError> {
    let dir = &target.dir;
    let failed = |e| io_error(&target.path, "cannot restore the other writer's file")(e);
    dir.exchange(temp, dir, &target.name).map_err(failed)?;
    if target.version(temp)? == written {
        return Ok(());
    }
    // The target now holds the file opsflow displaced first, `temp` a newer one: the newer one
    // goes back into place.
    dir.exchange(temp, dir, &target.name).map_err(failed)?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let kept = target.with_suffix(&format!(".displaced-{}-{n}", std::process::id()));
    dir.rename(temp, dir, &kept).map_err(io_error(&target.shown(&kept), "cannot keep the displaced file"))?;
    tracing::warn!(
        "two writers that ignore the lock replaced {} while opsflow swapped it; the newer file is in place, the older one is kept as {}",
        target.path.display(),
        target.shown(&kept).display()
    );
    Ok(())
}

/// Replaces a whole file inside the canonical workspace `root` atomically, without the sidecar
/// lock: for files only opsflow writes (artifacts, reports), where the instance lock already
/// keeps other runners out.
pub fn write_atomic(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write::write_file(root, path, bytes).map_err(StoreError::Write)
}

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

/// How much of a new file is written before the kernel is asked to start putting it on disk.
const WRITEBACK_CHUNK: usize = 1024 * 1024;

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

/// A temporary file beside its target, removed on drop unless it was moved into place.
struct TempFile<'t> {
    target: &'t Target,
    name: OsString,
    keep: bool,
}

impl TempFile<'_> {
    fn persisted(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.target.dir.remove_file(&self.name).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A temporary directory by its canonical path, as a workspace root is.
    fn tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(fs::canonicalize(dir.path()).unwrap(), dir.path(), "the temporary directory is canonical");
        dir
    }

    #[test]
    fn modify_creates_replaces_and_leaves_no_temp_files() {
        let dir = tempdir();
        let path = dir.path().join("f.json");
        let outcome = modify(dir.path(), &path, "f.json", 1 << 20, |current| {
            assert!(current.is_none());
            Ok(Some("1".to_owned()))
        })
        .unwrap();
        assert_eq!(outcome, Outcome::Written { attempts: 1 });
        let outcome =
            modify(dir.path(), &path, "f.json", 1 << 20, |current| Ok(Some(format!("{}2", current.unwrap())))).unwrap();
        assert_eq!(outcome, Outcome::Written { attempts: 1 });
        assert_eq!(fs::read_to_string(&path).unwrap(), "12");
        let same = modify(dir.path(), &path, "f.json", 1 << 20, |current| Ok(current.map(str::to_owned))).unwrap();
        assert_eq!(same, Outcome::Unchanged);
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, [".gitignore", "f.json", "f.json.lock"]);
        assert_eq!(fs::read_to_string(dir.path().join(".gitignore")).unwrap(), LOCK_GITIGNORE);
    }

    #[test]
    fn a_known_text_stands_for_its_version_only() {
        let dir = tempdir();
        let path = dir.path().join("f.txt");
        fs::write(&path, "one").unwrap();
        let read = || Ok::<_, ()>(Some(fs::read_to_string(&path).unwrap()));
        // Just written: its time is too close to the read to stand for the version.
        let (text, known) = Known::read(&path, read).unwrap();
        assert!(known.is_none() && text.as_deref() == Some("one"));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
        fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        let (_, known) = Known::read(&path, read).unwrap();
        let known = known.unwrap();
        assert_eq!(known.text, "one");
        assert_eq!(known.current(&path), Some("one"), "another reader of the same version takes it");
        // Still at its version: the edit starts from the known text (the same bytes, not a copy).
        modify_known(dir.path(), &path, "f.txt", 1 << 20, Some(&known), |current| {
            assert!(std::ptr::eq(current.unwrap(), known.text.as_str()));
            Ok(Some(format!("{}+", current.unwrap())))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one+");
        assert_eq!(known.current(&path), None, "nobody takes it once the file changed");
        // Changed since: the edit reads the file.
        modify_known(dir.path(), &path, "f.txt", 1 << 20, Some(&known), |current| {
            assert_eq!(current, Some("one+"));
            Ok(Some("two".to_owned()))
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
    }

    #[test]
    fn a_file_of_several_writeback_chunks_is_written_whole() {
        let dir = tempdir();
        let path = dir.path().join("f.txt");
        // Not a multiple of the chunk, and written by a single `write_all`.
        let text: String = (0..3 * WRITEBACK_CHUNK + 12_345).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        modify(dir.path(), &path, "f.txt", u64::MAX, |_| Ok(Some(text.clone()))).unwrap();
        assert!(fs::read_to_string(&path).unwrap() == text);
    }

    #[test]
    fn undoing_a_swap_never_displaces_a_newer_file_and_loses_nothing() {
        let dir = tempdir();
        let path = dir.path().join("f.txt");
        let temp = dir.path().join(".f.txt.1.0.opsflow-tmp");
        let target = Target::open(dir.path(), &path).unwrap();
        let temp_name = OsStr::new(".f.txt.1.0.opsflow-tmp");
        // One writer that ignores the lock: opsflow swapped its file out (it is at `temp`,
        // opsflow's at `path`); undoing the swap puts it back and removes opsflow's.
        fs::write(&path, "opsflow's").unwrap();
        let written = target.version(&target.name).unwrap();
        fs::write(&temp, "first writer's").unwrap();
        restore(&target, temp_name, written).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first writer's");
        assert_eq!(fs::read_to_string(&temp).unwrap(), "opsflow's", "the caller's temp file, removed on drop");
        fs::remove_file(&temp).unwrap();

        // Two of them: after the swap, a second writer renamed its file over `path` too, so
        // `path` holds the newest file and `temp` the first writer's; opsflow's is gone.
        fs::write(&path, "opsflow's, again").unwrap();
        let written = target.version(&target.name).unwrap();
        fs::write(&temp, "first writer's").unwrap();
        let newest = dir.path().join("newest");
        fs::write(&newest, "second writer's").unwrap();
        fs::rename(&newest, &path).unwrap();
        restore(&target, temp_name, written).unwrap();
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
        let dir = tempdir();
        let path = dir.path().join("f.txt");
        fs::write(&path, "a").unwrap();
        let mut calls = 0;
        let outcome = modify(dir.path(), &path, "f.txt", 1 << 20, |current| {
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
        let dir = tempdir();
        let path = dir.path().join("f.txt");
        // An error before anything is written.
        fs::write(&path, "\u{feff}x").unwrap();
        assert!(matches!(
            modify(dir.path(), &path, "f.txt", 1 << 20, |_| Ok(Some("y".to_owned()))),
            Err(StoreError::Invalid(_))
        ));
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
        let outcome = modify(dir.path(), &path, "f.txt", 1 << 20, |_| {
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
