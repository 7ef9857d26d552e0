//! The rollout journal: what a deployment has done to an environment so far, on disk.
//!
//! One file per environment, `.opsflow/rollouts/<environment>.json`, written (atomically)
//! before the first change to the environment and after every step, and removed when the
//! rollout ends. It serves two purposes:
//!
//! - **Pause.** An inconclusive analysis pauses the rollout (`phase: paused`): the journal
//!   keeps the step to resume from, the baseline and whether the deploy migrated, so that a
//!   human's `decision: proceed` in R17 resumes exactly there and `decision: rollback` undoes
//!   exactly what was done.
//! - **Interruption.** A journal whose phase is `deploying` or `verifying` while no runner holds
//!   the environment's deploy lock belongs to a run that was cut off (`kill -9`, a crash, a
//!   power loss). The next run finds it, marks the task `failed` with reason `interrupted`,
//!   and rolls the environment back when `auto_rollback_enabled`.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::exec::metrics::Sample;
use crate::workspace::Workspace;

/// A journal that cannot be read or written, with its path.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the rollout journal {path} cannot be read ({source}); remove it once the environment is known to be sound"
    )]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("cannot read the rollout journal {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the rollout journal {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Commands are changing the environment.
    #[default]
    Deploying,
    /// The release is live and being watched (the monitoring period).
    Verifying,
    /// Waiting for a human's decision in R17.
    Paused,
}

/// Why and where a rollout paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// Names this pause; the R17 that asks for the decision carries it as `pause_id`.
    pub id: String,
    /// `canary step 2 of 3 (50%)`, `batch 1 of 4`, `monitoring period`.
    pub stage: String,
    pub reason: String,
    pub at: String,
    /// The R17 file that asks for the decision, relative to the workspace.
    pub decision_file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub environment: String,
    pub task: String,
    pub node: String,
    #[serde(default)]
    pub unit_id: String,
    pub version: String,
    /// The run that started the rollout; a resumed rollout keeps it.
    pub run_id: String,
    pub agent: String,
    pub pid: u32,
    pub provider: String,
    pub strategy: String,
    pub phase: Phase,
    /// Whether anything in the environment changed yet (a command ran, a link moved).
    #[serde(default)]
    pub changed: bool,
    /// Whether `migrate` ran, so a rollback runs `migrate_down`.
    #[serde(default)]
    pub migrated: bool,
    /// The canary step or rolling batch to do next (from 0).
    #[serde(default)]
    pub next_step: usize,
    /// The traffic weight set last (canary, rolling), in percent.
    #[serde(default)]
    pub weight: u32,
    /// Blue-green: the side being deployed, and the side that served before.
    #[serde(default)]
    pub slot: Option<String>,
    #[serde(default)]
    pub previous_slot: Option<String>,
    #[serde(default)]
    pub previous_version: Option<String>,
    /// A paused production rollout's reports as they stood (`{"deploy", "monitoring"}`), so
    /// that a person's decision renders them again, all of them, from the same facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<serde_json::Value>,
    /// The unit of the release that was live before, so every report names it with its unit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_unit: String,
    /// Blue-green: whether traffic was switched to the new side.
    #[serde(default)]
    pub switched: bool,
    /// The metrics before the deploy, for the p95 trigger.
    #[serde(default)]
    pub baseline: Option<Sample>,
    #[serde(default)]
    pub pause: Option<Pause>,
    /// `ssh`: where each host's `current` link pointed before the rollout (a release
    /// directory, empty for none), so a failure switches every host back to its own.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hosts_before: std::collections::BTreeMap<String, String>,
    pub started_at: String,
    pub updated_at: String,
}

impl Journal {
    pub fn path(ws: &Workspace, environment: &str) -> PathBuf {
        let safe = crate::workspace::file_name_part(environment);
        ws.path(&ws.config.paths.runtime).join("rollouts").join(format!("{safe}.json"))
    }

    /// The journal of `environment`, if there is one. A journal that cannot be read is an
    /// error: a rollout may be half done, so nothing may deploy there until a human looks.
    pub fn load(ws: &Workspace, environment: &str) -> Result<Option<Journal>, JournalError> {
        let path = Journal::path(ws, environment);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|source| JournalError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::Read { path, source }),
        }
    }

    /// Every journal in the workspace (unreadable ones are skipped; `load` reports them).
    pub fn all(ws: &Workspace) -> Vec<Journal> {
        let dir = ws.path(&ws.config.paths.runtime).join("rollouts");
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        let mut journals: Vec<Journal> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        journals.sort_by(|a, b| a.environment.cmp(&b.environment));
        journals
    }

    pub fn save(&mut self, ws: &Workspace) -> Result<(), JournalError> {
        self.updated_at = crate::time::now_rfc3339();
        let path = Journal::path(ws, &self.environment);
        crate::instance::ensure_runtime_dir(ws).map_err(|source| JournalError::Write { path: path.clone(), source })?;
        let text = serde_json::to_string_pretty(self).expect("a journal serializes") + "\n";
        crate::workspace::write::write_file(&ws.root, &path, text.as_bytes())
            .map_err(|source| JournalError::Write { path, source })
    }

    pub fn remove(ws: &Workspace, environment: &str) {
        if let Err(e) = crate::workspace::write::remove_file(&ws.root, &Journal::path(ws, environment)) {
            tracing::warn!("cannot remove the rollout journal of {environment}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(environment: &str) -> Journal {
        serde_json::from_value(serde_json::json!({
            "environment": environment, "task": "T-1", "node": "Deploy_To_Staging", "version": "1.0.0",
            "run_id": "run-1", "agent": "DevOps-Engineer", "pid": 1, "provider": "command",
            "strategy": "direct", "phase": "deploying", "started_at": "", "updated_at": "",
        }))
        .unwrap()
    }

    #[test]
    fn a_journal_that_cannot_be_read_or_written_is_an_error_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let path = Journal::path(&ws, "staging");

        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"environment\": \"staging\"").unwrap();
        let error = Journal::load(&ws, "staging").unwrap_err();
        assert!(matches!(error, JournalError::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!("the rollout journal {} cannot be read (", path.display())));

        // A directory where the journal belongs can be neither read nor replaced.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let error = Journal::load(&ws, "staging").unwrap_err();
        assert!(matches!(&error, JournalError::Read { path: p, .. } if *p == path), "{error:?}");
        let error = journal("staging").save(&ws).unwrap_err();
        assert!(matches!(&error, JournalError::Write { path: p, .. } if *p == path), "{error:?}");
        assert!(
            error.to_string().starts_with(&format!("cannot write the rollout journal {}: ", path.display())),
            "{error}"
        );

        let mut good = journal("production");
        good.save(&ws).unwrap();
        assert_eq!(Journal::load(&ws, "production").unwrap().map(|j| j.task), Some("T-1".to_owned()));
    }
}
