//! Writing inside the workspace: the one check every write, directory creation, rename, link
//! and copy goes through.
//!
//! A workspace is written by other agents, and any folder in it may be a symlink. Checking
//! only the file opsflow writes is not enough: with `docs/workflow/deployments` linked to
//! `/srv/elsewhere`, a new file "inside" it lands outside. [`confine`] therefore walks the path
//! from the workspace root one component at a time, resolves every symlink it meets, and
//! refuses the path when one leads outside the workspace or nowhere (a dangling link would
//! be created wherever it points). Components that do not exist yet are created by opsflow
//! itself as plain directories, so they cannot lead anywhere.
//!
//! The helpers below ([`write_file`], [`create_dir_all`], [`rename`], [`symlink`],
//! [`copy_tree`], [`remove_file`], [`remove_tree`]) check first, for a message that says where
//! a link leads, and then act through directory descriptors resolved beneath the root
//! ([`beneath`](super::beneath)), so that a folder swapped for a symlink between the check and
//! the act cannot make them write outside. They take the canonical workspace root.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::beneath::{self, Dir};

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}", outside(path, through, target))]
    Outside { path: String, through: String, target: PathBuf },
    #[error("{path}: `{through}` is a symlink to {}, which does not exist; opsflow does not follow it", target.display())]
    Dangling { path: String, through: String, target: PathBuf },
    #[error("{path}: is not inside the workspace {}", root.display())]
    NotUnder { path: String, root: PathBuf },
    #[error("{path}: climbs out of the workspace with `..`")]
    ParentDir { path: String },
    #[error("{path}: cannot resolve `{through}`: {source}")]
    Resolve { path: String, through: String, source: io::Error },
}

impl From<WriteError> for io::Error {
    fn from(error: WriteError) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, error.to_string())
    }
}

fn outside(path: &str, through: &str, target: &Path) -> String {
    if path == through {
        format!(
            "{path}: leads outside the workspace (to {}) through a symlink; opsflow does not follow it",
            target.display()
        )
    } else {
        format!(
            "{path}: `{through}` is a symlink that leads outside the workspace (to {}); opsflow does not follow it",
            target.display()
        )
    }
}

fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// Checks that `path` (absolute under `root`, or relative to it) stays inside `root` with
/// every symlink on the way resolved. `root` must be canonical. Returns the absolute path.
pub fn confine(root: &Path, path: &Path) -> Result<PathBuf, WriteError> {
    let absolute = root.join(path);
    let label = shown(root, &absolute);
    let Ok(relative) = absolute.strip_prefix(root) else {
        return Err(WriteError::NotUnder { path: label, root: root.to_owned() });
    };
    // `..` is refused wherever it is, even after a folder that does not exist yet (where the
    // walk below stops).
    if relative.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(WriteError::ParentDir { path: label });
    }
    let mut current = root.to_owned();
    for component in relative.components() {
        match component {
            Component::Normal(name) => current.push(name),
            Component::CurDir => continue,
            Component::ParentDir => return Err(WriteError::ParentDir { path: label }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(WriteError::NotUnder { path: label, root: root.to_owned() });
            }
        }
        let metadata = match fs::symlink_metadata(&current) {
            Ok(metadata) => metadata,
            // The rest does not exist yet: opsflow creates it, as plain directories.
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => return Err(WriteError::Resolve { path: label, through: shown(root, &current), source }),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        match fs::canonicalize(&current) {
            Ok(resolved) if resolved.starts_with(root) => {}
            Ok(resolved) => {
                return Err(WriteError::Outside { path: label, through: shown(root, &current), target: resolved });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let target = fs::read_link(&current).unwrap_or_default();
                return Err(WriteError::Dangling { path: label, through: shown(root, &current), target });
            }
            Err(source) => return Err(WriteError::Resolve { path: label, through: shown(root, &current), source }),
        }
    }
    Ok(absolute)
}

/// The paths written while recording is on (git sync commits exactly these). Off unless
/// [`start_recording`] was called, so a runner without sync keeps no list.
static RECORDING: AtomicBool = AtomicBool::new(false);
static WRITTEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Records from now on every path opsflow writes, renames into place, copies or links.
pub fn start_recording() {
    RECORDING.store(true, Ordering::SeqCst);
}

/// Notes that opsflow wrote `path` (absolute), when recording.
pub fn note_written(path: &Path) {
    if RECORDING.load(Ordering::Relaxed) {
        WRITTEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(path.to_owned());
    }
}

/// The paths written since the last call, and forgets them.
pub fn take_written() -> Vec<PathBuf> {
    std::mem::take(&mut *WRITTEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_iter().collect()
}

/// The directory `path` (absolute under `root`, or relative to it), resolved beneath `root`
/// once (see [`beneath`](super::beneath)): what is done through it stays inside the workspace
/// whatever is renamed meanwhile. Checked with [`confine`] first, for the message.
pub fn dir(root: &Path, path: &Path, create: bool) -> io::Result<Dir> {
    let absolute = confine(root, path)?;
    let relative = absolute
        .strip_prefix(root)
        .map_err(|_| WriteError::NotUnder { path: shown(root, &absolute), root: root.to_owned() })?;
    Dir::open(root, relative, create)
}

/// The directory of the file `path`, resolved as [`dir`] does, and the file's name in it.
pub fn parent(root: &Path, path: &Path, create: bool) -> io::Result<(Dir, OsString)> {
    let absolute = confine(root, path)?;
    let (dir, name) = beneath::split(root, &absolute)?;
    Ok((Dir::open(root, &dir, create)?, name))
}

/// Replaces the file at `path` atomically, creating its directory; refused outside `root`.
pub fn write_file(root: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = parent(root, path, true)?;
    dir.write_atomic(&name, bytes)?;
    note_written(&root.join(path));
    Ok(())
}

/// Opens `path` for appending (a log), creating it and its directory; never through a symlink.
pub fn append(root: &Path, path: &Path) -> io::Result<fs::File> {
    let (dir, name) = parent(root, path, true)?;
    dir.append(&name)
}

/// Opens `path` for reading and writing (a lock file), creating it and its directory; never
/// through a symlink.
pub fn open_rw(root: &Path, path: &Path) -> io::Result<fs::File> {
    let (dir, name) = parent(root, path, true)?;
    dir.open_rw(&name)
}

/// Creates the new file `path` (failing when anything is there) and its directory.
pub fn create_new(root: &Path, path: &Path) -> io::Result<fs::File> {
    let (dir, name) = parent(root, path, true)?;
    let file = dir.create_new(&name)?;
    note_written(&root.join(path));
    Ok(file)
}

/// `fs::create_dir_all`, refused when any existing component leads outside `root`.
pub fn create_dir_all(root: &Path, path: &Path) -> io::Result<()> {
    dir(root, path, true).map(drop)
}

/// `fs::rename`, with both ends inside `root`.
pub fn rename(root: &Path, from: &Path, to: &Path) -> io::Result<()> {
    let (from_dir, from_name) = parent(root, from, false)?;
    let (to_dir, to_name) = parent(root, to, false)?;
    from_dir.rename(&from_name, &to_dir, &to_name)?;
    note_written(&root.join(to));
    Ok(())
}

/// Removes the file or symlink `path` (never what a symlink points to); nothing there is not
/// an error.
pub fn remove_file(root: &Path, path: &Path) -> io::Result<()> {
    let (dir, name) = match parent(root, path, false) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match dir.remove_file(&name) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes `path` and everything below it, never following a symlink; nothing there is not an
/// error.
pub fn remove_tree(root: &Path, path: &Path) -> io::Result<()> {
    match parent(root, path, false) {
        Ok((dir, name)) => dir.remove_tree(&name),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the symlink `link -> target` (a target relative to the link's directory), with the
/// link inside `root` and the target resolving inside it.
pub fn symlink(root: &Path, target: &Path, link: &Path) -> io::Result<()> {
    let absolute = confine(root, link)?;
    let parent_path = absolute.parent().unwrap_or(root);
    confine(root, &parent_path.join(target))?;
    let (dir, name) = parent(root, link, false)?;
    dir.symlink(target, &name)?;
    note_written(&absolute);
    Ok(())
}

/// Copies the file `from` to `to` (inside `root`), atomically.
pub fn copy_file(root: &Path, from: &Path, to: &Path) -> io::Result<()> {
    let (dir, name) = parent(root, to, true)?;
    let mut source = fs::File::open(from)?;
    let temp = dir.write_temp(&name, |out| io::copy(&mut source, out).map(drop))?;
    if let Err(e) = dir.rename(&temp, &dir, &name) {
        dir.remove_file(&temp).ok();
        return Err(e);
    }
    note_written(&root.join(to));
    Ok(())
}

/// Copies a directory tree of plain files and directories to `to` (inside `root`). A symlink
/// in the source is refused with an error naming it and where it leads: following it could
/// copy any file of the machine into a release, and copying it as a link could publish one.
pub fn copy_tree(root: &Path, from: &Path, to: &Path) -> io::Result<()> {
    let (dir, name) = parent(root, to, true)?;
    let label = from.file_name().map(PathBuf::from).unwrap_or_default();
    dir.copy_tree_in(from, &name, &label)?;
    note_written(&root.join(to));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        (dir, root, outside)
    }

    #[test]
    fn a_symlinked_folder_on_the_way_is_refused_with_where_it_leads() {
        let (_dir, root, outside) = workspace();
        fs::create_dir_all(root.join("docs/workflow")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("docs/workflow/deployments")).unwrap();
        let error = confine(&root, Path::new("docs/workflow/deployments/new/report.md")).unwrap_err().to_string();
        assert!(error.contains("docs/workflow/deployments/new/report.md"), "{error}");
        assert!(error.contains("`docs/workflow/deployments` is a symlink"), "{error}");
        assert!(error.contains(&fs::canonicalize(outside.path()).unwrap().display().to_string()), "{error}");
        assert!(write_file(&root, Path::new("docs/workflow/deployments/x"), b"x").is_err());
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was written outside");
    }

    #[test]
    fn symlinks_inside_the_workspace_and_new_folders_are_fine() {
        let (_dir, root, _outside) = workspace();
        fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("alias")).unwrap();
        write_file(&root, Path::new("alias/a/b/c.txt"), b"ok").unwrap();
        assert_eq!(fs::read_to_string(root.join("real/a/b/c.txt")).unwrap(), "ok");
    }

    #[test]
    fn dangling_links_and_parent_dirs_are_refused() {
        let (_dir, root, _outside) = workspace();
        std::os::unix::fs::symlink("/nonexistent/opsflow-test", root.join("gone")).unwrap();
        assert!(matches!(confine(&root, Path::new("gone/x")), Err(WriteError::Dangling { .. })));
        assert!(matches!(confine(&root, Path::new("a/../../x")), Err(WriteError::ParentDir { .. })));
        assert!(matches!(confine(&root, Path::new("/etc/passwd")), Err(WriteError::NotUnder { .. })));
    }

    #[test]
    fn copy_tree_refuses_a_symlink_in_the_source() {
        let (_dir, root, _outside) = workspace();
        fs::create_dir_all(root.join("dist")).unwrap();
        fs::write(root.join("dist/index.html"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("dist/passwd.txt")).unwrap();
        let error = copy_tree(&root, &root.join("dist"), &root.join("copy")).unwrap_err().to_string();
        assert!(error.contains("dist/passwd.txt is a symlink (to /etc/passwd)"), "{error}");
    }
}
