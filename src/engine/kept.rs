//! The outcome of every finished run, kept beside the run (`<runtime>/runs/<run>/outcome.json`)
//! before it is written onto its task, so that an outcome is never lost and never lands on the
//! wrong entry.
//!
//! An outcome belongs to the claim that produced it: it is written onto the task entry only
//! while that entry carries the run's claim (`run_id`). When it does not (another branch's
//! task with the same id after a `git checkout`, the entry from before the claim after a
//! `git stash`, a task that is gone, a `tasks.json` that cannot take the write), the outcome
//! stays pending: listed in `<runtime>/outcomes-pending/`, put in front of a human, and
//! applied by the first pass that finds the entry with the claim again (the branch checked
//! out again, the stash popped, the file writable). Recovery applies a finished run's outcome
//! instead of calling it interrupted, and an entry that a writer put back to its claim after
//! the outcome was written gets the outcome again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::edit::FieldOp;
use crate::store::file::{StoreError, write_atomic};
use crate::workspace::Workspace;

/// One run's outcome, as written to its task entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptOutcome {
    pub task: String,
    pub node: String,
    pub run_id: String,
    /// The task entry's fields the outcome sets.
    #[serde(default)]
    pub set: Map<String, Value>,
    /// The fields it removes.
    #[serde(default)]
    pub remove: Vec<String>,
    /// The tasks it files with it (a fix task).
    #[serde(default)]
    pub appends: Vec<Value>,
    /// The outcome as recorded on the task (`status`, `summary`, `artifacts`, ...).
    pub outcome: Value,
    /// Why it is not on its task yet; empty once it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// When it was written onto its task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The run whose claim the entry must carry, when not `run_id` (a recovery records an
    /// interrupted run on the dead runner's claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

impl KeptOutcome {
    pub fn new(task: &str, node: &str, run_id: &str, ops: &[FieldOp], appends: &[Value], outcome: &Value) -> Self {
        let mut set = Map::new();
        let mut remove = Vec::new();
        for op in ops {
            match op {
                FieldOp::Set(key, value) => {
                    set.insert(key.clone(), value.clone());
                }
                FieldOp::Remove(key) => remove.push(key.clone()),
            }
        }
        KeptOutcome {
            task: task.to_owned(),
            node: node.to_owned(),
            run_id: run_id.to_owned(),
            set,
            remove,
            appends: appends.to_vec(),
            outcome: outcome.clone(),
            why: String::new(),
            applied_at: None,
            claim: None,
        }
    }

    /// The run whose claim the task entry must carry for this outcome to land on it.
    pub fn claim(&self) -> &str {
        self.claim.as_deref().unwrap_or(&self.run_id)
    }

    /// The edit of the task entry, with `updated_at` now.
    pub fn ops(&self) -> Vec<FieldOp> {
        let mut ops: Vec<FieldOp> = self
            .set
            .iter()
            .filter(|(key, _)| key.as_str() != "updated_at")
            .map(|(key, value)| FieldOp::Set(key.clone(), value.clone()))
            .collect();
        ops.push(FieldOp::Set("updated_at".into(), crate::time::now_rfc3339().into()));
        ops.extend(self.remove.iter().map(|key| FieldOp::Remove(key.clone())));
        ops
    }

    /// Where the outcome of `run_id` is kept.
    pub fn path(ws: &Workspace, run_id: &str) -> PathBuf {
        crate::nodes::run_dir(ws, run_id).join("outcome.json")
    }

    /// The marker of a pending outcome.
    fn pending_path(ws: &Workspace, run_id: &str) -> PathBuf {
        ws.path(&ws.config.paths.runtime).join("outcomes-pending").join(format!("{run_id}.json"))
    }

    /// The outcome of `run_id`, if it finished (or `Err` naming a file that cannot be read).
    pub fn load(ws: &Workspace, run_id: &str) -> Result<Option<KeptOutcome>, String> {
        if crate::workspace::check_path_component(run_id).is_err() {
            return Ok(None);
        }
        let path = Self::path(ws, run_id);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", ws.label(&path))),
        };
        // Files of an older opsflow held only `task`, `node`, `outcome` and `why`.
        serde_json::from_str(&text)
            .map(Some)
            .or_else(|e| {
                let old: Value = serde_json::from_str(&text).map_err(|_| e)?;
                Ok::<_, serde_json::Error>(old.get("task").map(|_| KeptOutcome {
                    task: old["task"].as_str().unwrap_or_default().to_owned(),
                    node: old["node"].as_str().unwrap_or_default().to_owned(),
                    run_id: run_id.to_owned(),
                    set: Map::new(),
                    remove: Vec::new(),
                    appends: Vec::new(),
                    outcome: old["outcome"].clone(),
                    why: old["why"].as_str().unwrap_or_default().to_owned(),
                    applied_at: None,
                    claim: None,
                }))
            })
            .map_err(|e| format!("{} is not an outcome: {e}", ws.label(&path)))
    }

    /// Writes the outcome beside its run; a pending one is also listed in `outcomes-pending/`,
    /// an applied one taken off that list.
    pub fn save(&self, ws: &Workspace) -> Result<(), StoreError> {
        let path = Self::path(ws, &self.run_id);
        let text = format!("{}\n", serde_json::to_string_pretty(self).expect("an outcome serializes"));
        write_atomic(&ws.root, &path, text.as_bytes())?;
        let pending = Self::pending_path(ws, &self.run_id);
        if self.applied_at.is_none() && !self.why.is_empty() {
            write_atomic(&ws.root, &pending, format!("{}\n", self.task).as_bytes())?;
        } else if let Err(e) = crate::workspace::write::remove_file(&ws.root, &pending) {
            return Err(StoreError::Io { path: pending, action: "cannot remove", source: e });
        }
        Ok(())
    }

    /// A sentence for a person: what is kept where, and what makes it land.
    pub fn explain(&self, ws: &Workspace) -> String {
        format!(
            "run {} of {} finished ({}) but its outcome is not on task {} ({}); it is kept in {} and recorded as soon as the entry that carries the run's claim (`run_id: {}`) is back, or delete that file to let the task run again",
            self.run_id,
            self.node,
            self.outcome.get("status").and_then(Value::as_str).unwrap_or("?"),
            self.task,
            self.why,
            ws.label(&Self::path(ws, &self.run_id)),
            self.claim()
        )
    }
}

/// Every outcome that waits to be written onto its task, oldest run first.
pub fn pending(ws: &Workspace) -> Vec<KeptOutcome> {
    let dir = ws.path(&ws.config.paths.runtime).join("outcomes-pending");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut runs: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
        .collect();
    runs.sort();
    runs.into_iter()
        .filter_map(|run| KeptOutcome::load(ws, &run).ok().flatten())
        .filter(|kept| kept.applied_at.is_none())
        .collect()
}

/// How many run folders `<runtime>/runs/` keeps at least: the newest ones, with their logs.
pub const KEEP_RUNS: usize = 200;

/// How many finished run folders past [`KEEP_RUNS`] wait before they are removed together.
const PRUNE_BATCH: usize = 50;

/// Removes the oldest run folders of `<runtime>/runs/` once more than [`KEEP_RUNS`] (plus a
/// batch) are there, so that the folder stays bounded however many releases run. Only a run
/// whose outcome is written on its task (`applied_at` in its `outcome.json`) is removed: a
/// run without an outcome (running, interrupted, or one that recovery has yet to look at) and
/// an outcome still pending stay whatever their age. Run ids begin with their UTC time, so
/// the oldest sort first. Returns how many folders went.
pub fn prune_runs(ws: &Workspace) -> usize {
    let runs = ws.path(&ws.config.paths.runtime).join("runs");
    let Ok(entries) = std::fs::read_dir(&runs) else { return 0 };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    if names.len() <= KEEP_RUNS + PRUNE_BATCH {
        return 0;
    }
    names.sort();
    let mut removed = 0;
    for run in &names[..names.len() - KEEP_RUNS] {
        let applied = matches!(KeptOutcome::load(ws, run), Ok(Some(kept)) if kept.applied_at.is_some());
        if !applied || KeptOutcome::pending_path(ws, run).exists() {
            continue;
        }
        let dir = crate::nodes::run_dir(ws, run);
        match crate::workspace::write::remove_tree(&ws.root, &dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!("cannot remove the old run folder {}: {e}", ws.label(&dir));
                break;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_keeps_its_edit_and_gives_it_back() {
        let ops = vec![
            FieldOp::Set("status".into(), "deployed".into()),
            FieldOp::Set("updated_at".into(), "then".into()),
            FieldOp::Remove("resolved_by".into()),
        ];
        let kept = KeptOutcome::new(
            "P-1",
            "Deploy_To_Production",
            "r1",
            &ops,
            &[],
            &serde_json::json!({"status": "deployed"}),
        );
        let text = serde_json::to_string(&kept).unwrap();
        let back: KeptOutcome = serde_json::from_str(&text).unwrap();
        assert_eq!(back, kept);
        let ops = back.ops();
        assert!(ops.contains(&FieldOp::Set("status".into(), "deployed".into())));
        assert!(ops.contains(&FieldOp::Remove("resolved_by".into())));
        assert!(!ops.contains(&FieldOp::Set("updated_at".into(), "then".into())), "updated_at is now");
    }

    #[test]
    fn old_runs_go_once_their_outcome_is_on_their_task() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let total = KEEP_RUNS + PRUNE_BATCH + 10;
        let run_id = |n: usize| format!("20260101T{:06}Z-abcdef", n);
        for n in 0..total {
            let run = run_id(n);
            std::fs::create_dir_all(crate::nodes::run_dir(&ws, &run)).unwrap();
            std::fs::write(crate::nodes::run_dir(&ws, &run).join("build.log"), "log").unwrap();
            // Run 1 has no outcome (interrupted), run 2's outcome is not on its task yet.
            if n != 1 {
                let mut kept = KeptOutcome::new("T", "Build", &run, &[], &[], &serde_json::json!({}));
                kept.applied_at = (n != 2).then(|| "2026-01-01T00:00:00Z".to_owned());
                kept.save(&ws).unwrap();
            }
        }
        assert_eq!(prune_runs(&ws), total - KEEP_RUNS - 2);
        let left = |n: usize| crate::nodes::run_dir(&ws, &run_id(n)).exists();
        assert!(left(1) && left(2) && !left(0) && !left(3));
        assert!((total - KEEP_RUNS..total).all(left), "the newest runs stay");
        assert_eq!(prune_runs(&ws), 0);
    }
}
