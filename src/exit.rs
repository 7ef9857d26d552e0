//! The exit codes (docs/reference.md) and the one place that decides which code an error
//! that ends a command gives, from the kind of error it is.
//!
//! A command's own result says 0, 1 or 3 (a node failed, work waits); an error that ends
//! it early is usually bad usage, a bad config or an invalid input file (2), but a write that
//! failed on the way (`tasks.json`, `state.json`, a rollout journal, the runtime directory, the
//! merge driver's result, `.gitattributes`) or a git command that failed is a failure of the
//! command (1). [`Exit::of`] walks the error's chain for the first cause it
//! knows, so context added on the way never changes the code; [`report`] is the line printed.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::duration::DurationError;
use crate::git::GitError;
use crate::instance::InstanceError;
use crate::merge::MergeError;
use crate::merge::setup::SetupError;
use crate::release::ReleaseError;
use crate::rollout::deploy::EnvError;
use crate::rollout::deploy_lock::DeployLockError;
use crate::rollout::journal::JournalError;
use crate::store::file::StoreError;
use crate::sync::SyncError;
use crate::workflow::graph::GraphError;
use crate::workspace::PathComponentError;

/// The exit codes. When several apply, the lowest non-zero one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    /// A node failed or was rolled back, or a write the command needed failed.
    Failed = 1,
    /// Bad usage, bad config or an invalid input file.
    Invalid = 2,
    /// Work is waiting on a gate or an approval.
    Waiting = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

impl Exit {
    /// The exit code of an error that ended a command: that of the first cause in its chain
    /// whose kind is known, else [`Exit::Invalid`] (usage and input errors say what to fix).
    pub fn of(error: &anyhow::Error) -> Exit {
        error.chain().find_map(kind_of).unwrap_or(Exit::Invalid)
    }
}

/// The error that ended a command, as one line: each cause after the first, unless the text
/// so far already ends with it (typed errors say their cause in their own sentence, and
/// anyhow's `{:#}` would print it twice).
pub fn report(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The exit code of one cause, when its type says.
fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    if cause.is::<ConfigError>()
        || cause.is::<DurationError>()
        || cause.is::<MergeError>()
        || cause.is::<GraphError>()
        || cause.is::<PathComponentError>()
    {
        return Some(Exit::Invalid);
    }
    if cause.is::<GitError>() {
        return Some(Exit::Failed);
    }
    if let Some(error) = cause.downcast_ref::<SyncError>() {
        return Some(match error {
            // The config turns sync on for a repository that cannot have it.
            SyncError::NotInRepository { .. }
            | SyncError::OutsideRepository { .. }
            | SyncError::NoRemote { .. }
            | SyncError::NoDriver(_) => Exit::Invalid,
            // Typed causes decide for themselves.
            SyncError::Git(e) | SyncError::Commit(e) => return kind_of(e),
            SyncError::Confine(_) => Exit::Invalid,
            SyncError::Store(e) => return kind_of(e),
            SyncError::Unreachable { .. }
            | SyncError::ClaimRefused { .. }
            | SyncError::ClaimTaken { .. }
            | SyncError::PushRejected { .. }
            | SyncError::Rebase { .. }
            | SyncError::RebaseUnfinished { .. }
            | SyncError::AutostashConflict { .. }
            | SyncError::Conflict { .. } => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<SetupError>() {
        return Some(match error {
            SetupError::Write(e) => return kind_of(e),
            SetupError::Read { .. } | SetupError::Executable { .. } | SetupError::Git(_) => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<EnvError>() {
        return Some(match error {
            EnvError::Missing { .. }
            | EnvError::Invalid { .. }
            | EnvError::Unsupported { .. }
            | EnvError::NoCommand { .. } => Exit::Invalid,
            EnvError::Failed { .. } => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<ReleaseError>() {
        return Some(match error {
            // A copy in the release's history that could not be written.
            ReleaseError::History { source, .. } => return kind_of(source),
            ReleaseError::HistoryPath(_) => Exit::Invalid,
            // A release that does not check out against its SHA256SUMS is an invalid input.
            ReleaseError::Sums { .. }
            | ReleaseError::Malformed { .. }
            | ReleaseError::Outside { .. }
            | ReleaseError::Unreadable { .. }
            | ReleaseError::Mismatch { .. }
            | ReleaseError::Unlisted { .. }
            | ReleaseError::List { .. } => Exit::Invalid,
        });
    }
    if let Some(error) = cause.downcast_ref::<InstanceError>() {
        return Some(match error {
            // Another runner of the agent works here: run it once (as before, a usage error).
            InstanceError::Busy { .. } => Exit::Invalid,
            InstanceError::Runtime { .. } | InstanceError::Open { .. } | InstanceError::Lock { .. } => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<StoreError>() {
        return Some(match error {
            StoreError::Invalid(_) | StoreError::Refused(_) => Exit::Invalid,
            StoreError::Io { .. } | StoreError::Write(_) | StoreError::Contended { .. } => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<JournalError>() {
        return Some(match error {
            JournalError::Corrupt { .. } => Exit::Invalid,
            JournalError::Read { .. } | JournalError::Write { .. } => Exit::Failed,
        });
    }
    if let Some(error) = cause.downcast_ref::<DeployLockError>() {
        return Some(match error {
            // A busy environment: the work waits for it.
            DeployLockError::Held { .. } => Exit::Waiting,
            DeployLockError::Io { .. } => Exit::Failed,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn each_kind_of_error_has_its_exit_code_whatever_context_it_carries() {
        let cases: Vec<(anyhow::Error, Exit)> = vec![
            (ConfigError::Invalid { file: "project-config.json".into(), count: 2 }.into(), Exit::Invalid),
            (
                StoreError::Io {
                    path: PathBuf::from("docs/workflow/state.json"),
                    action: "cannot write",
                    source: io(std::io::ErrorKind::PermissionDenied),
                }
                .into(),
                Exit::Failed,
            ),
            (StoreError::Refused("docs/workflow/tasks.json: no task X".into()).into(), Exit::Invalid),
            (
                InstanceError::Busy { agent: "DevOps-Engineer".into(), holder: "pid 1".into(), path: PathBuf::new() }
                    .into(),
                Exit::Invalid,
            ),
            (
                InstanceError::Runtime { path: PathBuf::from(".opsflow"), source: io(std::io::ErrorKind::Other) }
                    .into(),
                Exit::Failed,
            ),
            (
                JournalError::Write { path: PathBuf::from("staging.json"), source: io(std::io::ErrorKind::Other) }
                    .into(),
                Exit::Failed,
            ),
            (anyhow::anyhow!("not an opsflow workspace"), Exit::Invalid),
            (
                MergeError::Missing {
                    label: "docs/workflow/tasks.json".into(),
                    side: crate::merge::Side::Theirs,
                    file: PathBuf::from(".merge_file_a1b2c3"),
                }
                .into(),
                Exit::Invalid,
            ),
            (
                SetupError::Git(GitError::Failed {
                    command: "git config --local merge.opsflow.name opsflow".into(),
                    dir: PathBuf::from("/repo"),
                    code: Some(255),
                    stderr: "error: could not lock config file .git/config: File exists".into(),
                })
                .into(),
                Exit::Failed,
            ),
            (
                SetupError::Write(StoreError::Io {
                    path: PathBuf::from("/repo/.gitattributes"),
                    action: "cannot write",
                    source: io(std::io::ErrorKind::PermissionDenied),
                })
                .into(),
                Exit::Failed,
            ),
            (SyncError::NotInRepository { root: PathBuf::from("/srv/ops") }.into(), Exit::Invalid),
            (
                SyncError::Git(GitError::Timeout {
                    command: "git rev-parse --absolute-git-dir".into(),
                    dir: PathBuf::from("/srv/ops"),
                    timeout: std::time::Duration::from_secs(60),
                })
                .into(),
                Exit::Failed,
            ),
            (EnvError::Missing { config: "project-config.json".into(), name: "staging".into() }.into(), Exit::Invalid),
            (
                ReleaseError::Mismatch {
                    dir: PathBuf::from("R06-release-artifacts/UNIT-001/1.0.0"),
                    file: "index.html".into(),
                    expected: "aa".into(),
                    actual: "bb".into(),
                }
                .into(),
                Exit::Invalid,
            ),
            (
                JournalError::Read { path: PathBuf::from("staging.json"), source: io(std::io::ErrorKind::NotFound) }
                    .into(),
                Exit::Failed,
            ),
        ];
        for (error, expected) in cases {
            let message = report(&error);
            assert!(!message.contains(": entity not found: entity not found"), "{message}");
            assert_eq!(Exit::of(&error), expected, "{message}");
            let wrapped = error.context("while running `opsflow run`");
            assert_eq!(Exit::of(&wrapped), expected, "{message}, with context");
            assert_eq!(report(&wrapped), format!("while running `opsflow run`: {message}"));
        }
    }
}
