//! Acting on the workspace through directory descriptors, so that no interleaving of renames
//! can make a write land outside it.
//!
//! Checking a path and then using it by name leaves a window: another process can swap a
//! folder on the way for a symlink to anywhere (`renameat2(RENAME_EXCHANGE)` in a loop) after
//! the check and before the write. Here a directory is resolved once, from a descriptor of
//! the workspace root, one component at a time with `openat(O_NOFOLLOW)`; a symlink met on
//! the way is read (`readlinkat`) and followed by the same walk, so it is honoured only while
//! it leads to a place inside the workspace, and `..` can never climb above the root. Every
//! create, write, rename, link and removal then acts relative to the descriptor of the
//! directory it resolved (`openat`, `mkdirat`, `renameat`, `symlinkat`, `unlinkat`), and the
//! final name is never followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).
//!
//! What this does not cover: a process that moves an already resolved directory itself out
//! of the workspace (which needs write access to the place it moves it to) takes opsflow's
//! next write with it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// How many symlinks one resolution follows before it gives up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Suffix of the temporary files opsflow writes beside their targets.
pub const TEMP_SUFFIX: &str = ".opsflow-tmp";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An open directory inside the workspace, and the path it was resolved from (for messages).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn escape(path: &Path, through: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: `{}` leads outside the workspace (it was changed while opsflow wrote); opsflow does not follow it",
            path.display(),
            through.display()
        ),
    )
}

fn names(path: &Path) -> io::Result<VecDeque<OsString>> {
    let mut out = VecDeque::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push_back(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => out.push_back(OsString::from("..")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: is not relative", path.display()),
                ));
            }
        }
    }
    Ok(out)
}

fn is_symlink(dir: &OwnedFd, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::RDONLY);

impl Dir {
    /// The workspace root itself (canonical).
    pub fn root(root: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::openat(CWD, root, OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY, Mode::empty())?;
        Ok(Dir { fd, path: root.to_owned() })
    }

    /// Resolves the directory `relative` (to the root) beneath `root`, creating the folders
    /// that do not exist when `create` is set. Refused when the way leads outside the root.
    pub fn open(root: &Path, relative: &Path, create: bool) -> io::Result<Dir> {
        let top = Dir::root(root)?;
        let shown = root.join(relative);
        let mut queue = names(relative)?;
        // The directories resolved so far, from the root down, and their names below it.
        let mut fds: Vec<OwnedFd> = vec![top.fd];
        let mut resolved: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(name) = queue.pop_front() {
            if name == ".." {
                if resolved.pop().is_none() {
                    return Err(escape(&shown, relative));
                }
                fds.pop();
                continue;
            }
            let current = fds.last().expect("the root is never popped");
            match rustix::fs::openat(current, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    fds.push(fd);
                    resolved.push(name);
                }
                Err(Errno::LOOP | Errno::NOTDIR) if is_symlink(current, &name) => {
                    links += 1;
                    let through: PathBuf = resolved.iter().chain(std::iter::once(&name)).collect();
                    if links > MAX_LINKS {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{}: too many symlinks on the way", shown.display()),
                        ));
                    }
                    let target = PathBuf::from(OsString::from_vec(
                        rustix::fs::readlinkat(current, name.as_os_str(), Vec::new())?.into_bytes(),
                    ));
                    let rest = if target.is_absolute() {
                        // Absolute links count only when they lead into the root; they are
                        // then walked from the root like any other path.
                        let Ok(inside) = target.strip_prefix(root) else { return Err(escape(&shown, &through)) };
                        fds.truncate(1);
                        resolved.clear();
                        names(inside)?
                    } else {
                        names(&target)?
                    };
                    for name in rest.into_iter().rev() {
                        queue.push_front(name);
                    }
                }
                Err(Errno::NOTDIR) => {
                    let at: PathBuf = resolved.iter().chain(std::iter::once(&name)).collect();
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is a file, not a directory", root.join(at).display()),
                    ));
                }
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(current, name.as_os_str(), Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => queue.push_front(name),
                        Err(e) => return Err(with_path(&shown, "cannot create the directory", e.into())),
                    }
                }
                Err(e) => return Err(with_path(&shown, "cannot open the directory", e.into())),
            }
        }
        Ok(Dir { fd: fds.pop().expect("the root is never popped"), path: shown })
    }

    /// The path this directory was resolved from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// A directory below this one (its name is never followed when it is a symlink).
    pub fn child(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        let shown = self.shown(name);
        loop {
            match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => return Ok(Dir { fd, path: shown }),
                Err(Errno::NOENT) if create => match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => continue,
                    Err(e) => return Err(with_path(&shown, "cannot create the directory", e.into())),
                },
                Err(e) => return Err(with_path(&shown, "cannot open the directory", e.into())),
            }
        }
    }

    /// Opens `name` with `flags` (never following it), creating it with mode `0o666` (less
    /// the umask) when the flags say so.
    pub fn open_file(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
        let fd =
            rustix::fs::openat(&self.fd, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(0o666))?;
        Ok(File::from(fd))
    }

    /// Creates `name`, failing when anything is there.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        self.open_file(name, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY)
    }

    /// Opens `name` for appending, creating it when missing.
    pub fn append(&self, name: &OsStr) -> io::Result<File> {
        self.open_file(name, OFlags::CREATE | OFlags::APPEND | OFlags::WRONLY)
    }

    /// Opens `name` for reading and writing, creating it when missing (lock files).
    pub fn open_rw(&self, name: &OsStr) -> io::Result<File> {
        self.open_file(name, OFlags::CREATE | OFlags::RDWR)
    }

    /// Opens the existing file `name` for reading, non-blocking (a FIFO put in its place does
    /// not make the open wait).
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        self.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK)
    }

    /// The status of `name` itself (a symlink is not followed); `None` when it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a temporary file beside `name` with `fill`, fsynced, keeping `name`'s
    /// permissions when it exists. Returns the temporary file's name.
    pub fn write_temp(&self, name: &OsStr, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<OsString> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".{}.{n}{TEMP_SUFFIX}", std::process::id()));
        let mut file =
            self.create_new(&temp).map_err(|e| with_path(&self.shown(&temp), "cannot create a temporary file", e))?;
        let written = (|| {
            if let Ok(Some(stat)) = self.stat(name)
                && FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            {
                use std::os::unix::fs::PermissionsExt;
                // Keep the target's permissions; best effort, the content matters more.
                file.set_permissions(std::fs::Permissions::from_mode(stat.st_mode & 0o7777)).ok();
            }
            fill(&mut file)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            self.remove_file(&temp).ok();
            return Err(with_path(&self.shown(&temp), "cannot write the temporary file", e));
        }
        Ok(temp)
    }

    /// Replaces `name` atomically with `bytes`: a temporary file beside it, fsynced, renamed
    /// over it, and the directory fsynced.
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8]) -> io::Result<()> {
        let temp = self.write_temp(name, |file| file.write_all(bytes))?;
        if let Err(e) = self.rename(&temp, self, name) {
            self.remove_file(&temp).ok();
            return Err(with_path(&self.shown(name), "cannot move the new file into place", e));
        }
        self.sync().map_err(|e| with_path(&self.path, "cannot sync the directory", e))
    }

    /// `renameat(self/from, to_dir/to)`.
    pub fn rename(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &to_dir.fd, to)?)
    }

    /// `renameat2(self/from, to_dir/to, RENAME_EXCHANGE)`.
    pub fn exchange(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(&self.fd, from, &to_dir.fd, to, RenameFlags::EXCHANGE)?)
    }

    /// `renameat2(self/from, to_dir/to, RENAME_NOREPLACE)`, with a check-then-rename where the
    /// file system has no such flag.
    pub fn rename_noreplace(&self, from: &OsStr, to_dir: &Dir, to: &OsStr) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &to_dir.fd, to, RenameFlags::NOREPLACE) {
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                if to_dir.stat(to)?.is_some() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                self.rename(from, to_dir, to)
            }
            other => Ok(other?),
        }
    }

    /// Creates the symlink `name -> target`.
    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, name)?)
    }

    /// Removes the file or symlink `name`.
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes `name` and everything below it; a symlink inside is removed, never followed.
    /// Nothing there is not an error.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)? {
            None => Ok(()),
            Some(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                let child = self.child(name, false)?;
                for entry in child.entries()? {
                    child.remove_tree(&entry)?;
                }
                drop(child);
                Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
            }
            Some(_) => self.remove_file(name),
        }
    }

    /// The names in this directory (without `.` and `..`).
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name));
            }
        }
        Ok(out)
    }

    /// fsyncs the directory, so renames in it survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Copies the tree at `from` (a path to read, refusing any symlink in it, named `label` in
    /// messages) into the new directory `name` below this one.
    pub fn copy_tree_in(&self, from: &Path, name: &OsStr, label: &Path) -> io::Result<()> {
        let source =
            rustix::fs::openat(CWD, from, OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::RDONLY, Mode::empty())?;
        let target = self.child(name, true)?;
        copy_from(&Dir { fd: source, path: from.to_owned() }, &target, label)
    }
}

impl std::os::fd::AsRawFd for Dir {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

fn copy_from(source: &Dir, target: &Dir, label: &Path) -> io::Result<()> {
    for name in source.entries()? {
        let shown = label.join(&name);
        let Some(stat) = source.stat(&name)? else { continue };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => copy_from(&source.child(&name, false)?, &target.child(&name, true)?, &shown)?,
            FileType::Symlink => {
                let leads_to = rustix::fs::readlinkat(&source.fd, name.as_os_str(), Vec::new())
                    .map(|target| PathBuf::from(OsString::from_vec(target.into_bytes())))
                    .unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is a symlink (to {}); a release holds only files and directories, so it is refused",
                        shown.display(),
                        leads_to.display()
                    ),
                ));
            }
            FileType::RegularFile => {
                let mut input = source.open_read(&name)?;
                let mut output = target.create_new(&name).or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        target.remove_file(&name)?;
                        target.create_new(&name)
                    } else {
                        Err(e)
                    }
                })?;
                {
                    use std::os::unix::fs::PermissionsExt;
                    output.set_permissions(std::fs::Permissions::from_mode(stat.st_mode & 0o7777)).ok();
                }
                io::copy(&mut input, &mut output)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file or directory; a release holds only those", shown.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Reads a whole file opened from a [`Dir`] (for callers that compare what they displaced).
pub fn read_all(mut file: File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    Ok(out)
}

fn with_path(path: &Path, action: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {action}: {e}", path.display()))
}

/// Splits `path` (absolute under `root`, or relative to it) into its directory relative to the
/// root and its file name.
pub fn split(root: &Path, path: &Path) -> io::Result<(PathBuf, OsString)> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    if relative.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: is not inside the workspace {}", path.display(), root.display()),
        ));
    }
    let name = relative
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: names no file", path.display())))?;
    if name.as_bytes() == b".." {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: names no file", path.display())));
    }
    Ok((relative.parent().map(Path::to_owned).unwrap_or_default(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn workspace() -> (tempfile::TempDir, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        (dir, root, outside)
    }

    #[test]
    fn symlinks_that_stay_inside_are_followed_and_others_refused() {
        let (_dir, root, outside) = workspace();
        fs::create_dir_all(root.join("real/deep")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        std::os::unix::fs::symlink(root.join("real/deep"), root.join("absolute")).unwrap();
        std::os::unix::fs::symlink("../real", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("away")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("real/deep/climb")).unwrap();
        for (path, lands) in [("alias/deep", "real/deep"), ("absolute", "real/deep"), ("real/up/deep", "real/deep")] {
            let dir = Dir::open(&root, Path::new(path), false).unwrap();
            dir.write_atomic(OsStr::new("f"), path.as_bytes()).unwrap();
            assert_eq!(fs::read_to_string(root.join(lands).join("f")).unwrap(), path);
        }
        for path in ["away", "away/new", "real/deep/climb/x", "../x"] {
            let error = Dir::open(&root, Path::new(path), true).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{path}: {error}");
        }
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was created outside");
    }

    #[test]
    fn a_final_name_that_is_a_symlink_is_never_followed() {
        let (_dir, root, outside) = workspace();
        let dir = Dir::open(&root, Path::new("a/b"), true).unwrap();
        std::os::unix::fs::symlink(outside.path().join("planted"), root.join("a/b/log")).unwrap();
        assert!(dir.append(OsStr::new("log")).is_err());
        // Replacing it renames over the link itself.
        dir.write_atomic(OsStr::new("log"), b"x").unwrap();
        assert!(!outside.path().join("planted").exists());
        assert_eq!(fs::read_to_string(root.join("a/b/log")).unwrap(), "x");
    }

    #[test]
    fn remove_tree_removes_links_inside_without_following_them() {
        let (_dir, root, outside) = workspace();
        fs::write(outside.path().join("keep"), "keep").unwrap();
        fs::create_dir_all(root.join("r/x/y")).unwrap();
        fs::write(root.join("r/x/y/f"), "f").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("r/x/link")).unwrap();
        Dir::open(&root, Path::new("r"), false).unwrap().remove_tree(OsStr::new("x")).unwrap();
        assert!(!root.join("r/x").exists());
        assert_eq!(fs::read_to_string(outside.path().join("keep")).unwrap(), "keep");
    }

    #[test]
    fn a_swap_loop_never_makes_a_write_land_outside() {
        let (_dir, root, outside) = workspace();
        fs::create_dir_all(root.join("docs/history")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("docs/evil")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, docs) = (stop.clone(), root.join("docs"));
            std::thread::spawn(move || {
                let dir = Dir::root(&docs).unwrap();
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if dir.exchange(OsStr::new("history"), &dir, OsStr::new("evil")).is_ok() {
                        swaps += 1;
                    }
                }
                swaps
            })
        };
        // 3000 attempts, and more while none has gone through yet (a loaded machine can give
        // the swap loop every turn for a while), up to a deadline.
        let (mut written, mut n) = (0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while n < 3000 || (written == 0 && std::time::Instant::now() < deadline) {
            let name = format!("f{n}");
            if let Ok(dir) = Dir::open(&root, Path::new("docs/history/sub"), true)
                && dir.write_atomic(OsStr::new(&name), b"x").is_ok()
            {
                written += 1;
            }
            n += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 100, "the swap loop ran ({swaps} swaps)");
        assert!(written > 0, "some writes went through");
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing landed outside");
    }
}
