//! Wiring the merge driver into a git repository: `.gitattributes` and `git config`.
//!
//! Git is driven through its command line (so the user's own git, config and hooks apply),
//! always with a timeout, from the workspace directory. `init` calls [`install`]; `validate`
//! calls [`missing_driver`] to warn when `.gitattributes` names the driver but the
//! repository's config does not define it, in which case git silently falls back to its
//! line merge.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::git::GitError;
use crate::store::file::{self, StoreError};

/// How long one git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The driver's name in `.gitattributes` and git config.
pub const DRIVER: &str = "opsflow";

pub use crate::git::GitOutput;

/// Why [`install`] could not wire the driver in: each names the file or repository.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// `.gitattributes` could not be written.
    #[error(transparent)]
    Write(#[from] StoreError),
    #[error("cannot find the opsflow executable to name in the git config of {}: {source}", top.display())]
    Executable { top: PathBuf, source: std::io::Error },
    /// A git command that could not run, did not finish, or failed (`git config`).
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Runs `git args…` in `dir`, killing it after [`GIT_TIMEOUT`].
pub fn git(dir: &Path, args: &[&str]) -> Result<GitOutput, GitError> {
    crate::git::run(dir, args, GIT_TIMEOUT)
}

/// The top of the git work tree that holds `dir`, or `None` outside a repository (or
/// without git).
pub fn toplevel(dir: &Path) -> Option<PathBuf> {
    let output = git(dir, &["rev-parse", "--show-toplevel"]).ok()?;
    if !output.success {
        return None;
    }
    let top = PathBuf::from(output.stdout.trim_end_matches(['\n', '\r']));
    fs::canonicalize(&top).ok().or(Some(top))
}

/// A path as a `.gitattributes` pattern: relative to the repository root, with `/`, quoted
/// C-style when it holds characters that would split it.
fn pattern(path: &str) -> String {
    if path.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
        serde_json::to_string(path).expect("a string serializes")
    } else {
        path.to_owned()
    }
}

/// A string as one shell word, for the driver command git runs through the shell.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The lines `.gitattributes` needs for a workspace at `workspace` (relative to the
/// repository root; empty at the root) with these configured paths.
pub fn attribute_lines(workspace: &str, tasks: &str, state: &str, human_requests: &str) -> Vec<String> {
    let at = |path: &str| {
        let joined = if workspace.is_empty() { path.to_owned() } else { format!("{workspace}/{path}") };
        pattern(&joined)
    };
    vec![
        format!("{} merge={DRIVER}", at(tasks)),
        format!("{} merge={DRIVER}", at(state)),
        format!("{} merge=union", at(human_requests)),
    ]
}

/// What [`install`] did, for `init` to print.
#[derive(Debug)]
pub struct Installed {
    pub gitattributes: PathBuf,
    /// The lines added to `.gitattributes` (empty: all were there).
    pub added: Vec<String>,
    pub driver: String,
    pub name: String,
}

/// Writes the missing lines into the repository's `.gitattributes` and sets
/// `merge.opsflow.driver` and `merge.opsflow.name` in the repository's config.
pub fn install(top: &Path, lines: &[String]) -> Result<Installed, SetupError> {
    let path = top.join(".gitattributes");
    let existing = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(SetupError::Read { path, source }),
    };
    let present = |line: &str| {
        let wanted: Vec<&str> = line.split_whitespace().collect();
        existing.lines().any(|have| have.split_whitespace().collect::<Vec<_>>() == wanted)
    };
    let added: Vec<String> = lines.iter().filter(|line| !present(line)).cloned().collect();
    if !added.is_empty() {
        let newline = if existing.contains("\r\n") { "\r\n" } else { "\n" };
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push_str(newline);
        }
        if !existing.contains("merge=opsflow") {
            text.push_str(&format!("# opsflow merges its workflow files by task id and node name{newline}"));
        }
        for line in &added {
            text.push_str(line);
            text.push_str(newline);
        }
        file::write_atomic(top, &path, text.as_bytes())?;
    }
    let exe = std::env::current_exe().map_err(|source| SetupError::Executable { top: top.to_owned(), source })?;
    let driver = format!("{} merge-driver %O %A %B %P", shell_word(&exe.to_string_lossy()));
    let name = "opsflow: tasks.json by task id and state.json by node name, field by field".to_owned();
    for (key, value) in [(format!("merge.{DRIVER}.driver"), &driver), (format!("merge.{DRIVER}.name"), &name)] {
        let args = ["config", "--local", &key, value];
        git(top, &args)?.ok(top, &args)?;
    }
    Ok(Installed { gitattributes: path, added, driver, name })
}

/// When the repository that holds `dir` names the opsflow driver in a `.gitattributes` but
/// its git config does not define `merge.opsflow.driver`, the sentence that says so.
pub fn missing_driver(dir: &Path) -> Option<String> {
    // Only a `.gitattributes` that names the driver costs a git process.
    let mut named_in = None;
    let mut at = Some(dir);
    while let Some(current) = at {
        let attributes = current.join(".gitattributes");
        if fs::read_to_string(&attributes).is_ok_and(|text| text.contains(&format!("merge={DRIVER}"))) {
            named_in = Some(attributes);
            break;
        }
        if current.join(".git").exists() {
            break;
        }
        at = current.parent();
    }
    let named_in = named_in?;
    let output = git(dir, &["config", "--get", &format!("merge.{DRIVER}.driver")]).ok()?;
    // Exit 1 is git's "not set"; anything else (not a repository, no git) says nothing.
    (output.code == Some(1)).then(|| {
        format!(
            "{} names `merge={DRIVER}` but git config has no `merge.{DRIVER}.driver`, so git merges tasks.json and state.json line by line; run `opsflow init` here to set it",
            named_in.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            attribute_lines("", "docs/workflow/tasks.json", "docs/workflow/state.json", "docs/h.md"),
            [
                "docs/workflow/tasks.json merge=opsflow",
                "docs/workflow/state.json merge=opsflow",
                "docs/h.md merge=union"
            ]
        );
        assert_eq!(attribute_lines("sub dir", "t.json", "s.json", "h.md")[0], "\"sub dir/t.json\" merge=opsflow");
        assert_eq!(shell_word("/usr/bin/opsflow"), "/usr/bin/opsflow");
        assert_eq!(shell_word("/a b/it's"), "'/a b/it'\\''s'");
    }
}
