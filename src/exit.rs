//! The exit codes (docs/reference.md) and the one place that decides which code an error
//! that ends a command gives, from the kind of error it is.
//!
//! A command's own result says 0, 1 or 3 (a node failed, work waits); an error that ends
//! it early is usually bad usage, a bad config or an invalid input file (2), but a write that
//! failed on the way (`tasks.json`, `state.json`, a rollout journal, the runtime directory) is
//! a failure of the command (1). [`Exit::of`] walks the error's chain for the first cause it
//! knows, so context added on the way never changes the code; [`report`] is the line printed.

use std::process::ExitCode;

use crate::config::{ConfigError, DurationError};
use crate::instance::InstanceError;
use crate::rollout::deploy_lock::DeployLockError;
use crate::rollout::journal::JournalError;
use crate::store::file::StoreError;

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
    if cause.is::<ConfigError>() || cause.is::<DurationError>() {
        return Some(Exit::Invalid);
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
            StoreError::Io { .. } | StoreError::Contended { .. } => Exit::Failed,
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
