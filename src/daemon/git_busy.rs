//! Whether git is rewriting the working tree right now.
//!
//! A `git checkout`, `merge`, `stash` or `rebase` writes many files one after the other while
//! it holds the repository's `index.lock`. A reconcile that started in the middle would read
//! half of the old commit and half of the new one, and could write records (a completion
//! signal, a block reason) that belong to neither. The daemon therefore waits, after the
//! debounce, for as long as the lock exists, up to [`MAX_WAIT`]: a lock left behind by a git
//! that crashed must not stop the daemon for good.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The longest a reconcile waits for git to finish.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The `index.lock` of the git repository holding `dir`, if `dir` is in one: found by looking
/// for `.git` upward, a directory in a plain clone or a `gitdir:` file in a worktree or
/// submodule. Without running git, so it costs nothing per reconcile.
pub fn index_lock(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    for at in dir.ancestors() {
        let dot_git = at.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else { continue };
        if meta.is_dir() {
            return Some(dot_git.join("index.lock"));
        }
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let git_dir = text.lines().find_map(|line| line.strip_prefix("gitdir:"))?.trim();
        return Some(at.join(git_dir).join("index.lock"));
    }
    None
}

/// Since when git holds the lock, if it does: the lock's modification time.
pub fn held_since(lock: Option<&Path>) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(lock?).ok()?;
    Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lock_of_a_clone_and_of_a_worktree() {
        let root = tempfile::tempdir().unwrap();
        let clone = root.path().join("clone");
        std::fs::create_dir_all(clone.join(".git")).unwrap();
        std::fs::create_dir_all(clone.join("docs/workflow")).unwrap();
        let lock = index_lock(&clone.join("docs/workflow")).unwrap();
        assert_eq!(lock, clone.canonicalize().unwrap().join(".git/index.lock"));
        assert_eq!(held_since(Some(&lock)), None);
        std::fs::write(&lock, "").unwrap();
        assert!(held_since(Some(&lock)).is_some());

        let worktree = root.path().join("tree");
        std::fs::create_dir_all(&worktree).unwrap();
        std::fs::write(worktree.join(".git"), "gitdir: ../clone/.git/worktrees/tree\n").unwrap();
        let lock = index_lock(&worktree).unwrap();
        assert_eq!(lock, worktree.canonicalize().unwrap().join("../clone/.git/worktrees/tree/index.lock"));
    }
}
