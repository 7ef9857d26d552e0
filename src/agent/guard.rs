//! The files that decide what ships, kept away from the agents opsflow runs.
//!
//! Before each attempt a `Snapshot` copies, byte for byte, every file that decides the
//! workflow and is not one of the node's declared outputs: the config, `workflow.json`, the
//! schemas and templates folders, the approval files and R17 decisions of the artifacts
//! folder, the QA verdicts (reports, the JSON test report, BMAD gate files), every entry of
//! `tasks.json` this runner owns (the DevOps tasks and the agent nodes' tasks, the attempt's
//! own among them) and the `state.json` entry of every node of the workflow. After the attempt
//! every difference is put back (a changed file rewritten, a new one removed, a removed one
//! written again, an entry set back field by field through the store, a removed entry
//! appended again) and returned, so the attempt fails with each change named. An owned task
//! the agent filed (`opsflow tasks add`) stays when it is `pending`, since it passes every gate
//! like any other; one filed with another status is set to `cancelled` and named. A copy rather than git: it restores edits nobody
//! committed, and works where the workspace is not a repository. The copy is also saved in
//! the run's folder (`attempt-N.guard/`) while the attempt runs, so that when opsflow is
//! killed mid-attempt, recovery puts the files back from it (`restore_left`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::record;
use crate::store::edit::FieldOp;
use crate::store::state::StateEdit;
use crate::workspace::{Workspace, write};

/// One change an agent made to a file that decides the workflow, already undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub file: String,
    /// What it did: `changed`, `created`, `removed`, or which fields of an entry it set.
    pub what: String,
    /// Set when the change could not be undone.
    pub not_restored: Option<String>,
}

/// The protected files and entries as they were when an attempt started.
pub struct Snapshot {
    files: BTreeMap<String, Option<Vec<u8>>>,
    folders: Vec<String>,
    excluded: Vec<String>,
    tasks: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
}

impl Snapshot {
    /// Copies what an attempt may not change; `outputs` (the node's declared ones) are the
    /// agent's to write.
    pub fn take(ws: &Workspace, outputs: &[String]) -> Snapshot {
        let paths = &ws.config.paths;
        let folders: Vec<String> = [&paths.schemas, &paths.templates, &paths.qa_gates]
            .into_iter()
            .map(|dir| dir.trim_end_matches('/').to_owned())
            .collect();
        let mut snapshot = Snapshot {
            files: BTreeMap::new(),
            folders,
            excluded: outputs.to_vec(),
            tasks: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for file in snapshot.protected_files(ws) {
            let bytes = read(ws, &file);
            snapshot.files.insert(file, bytes);
        }
        snapshot.tasks = owned_entries(ws);
        snapshot.nodes = node_entries(ws);
        snapshot
    }

    /// Every protected file there is now.
    fn protected_files(&self, ws: &Workspace) -> Vec<String> {
        let paths = &ws.config.paths;
        let mut files =
            vec![crate::config::DEFAULT_CONFIG_FILE.to_owned(), paths.workflow.clone(), paths.qa_test_report.clone()];
        if let Some(label) =
            Some(ws.config_label.clone()).filter(|l| !l.is_empty() && !l.starts_with('/') && !l.starts_with('('))
        {
            files.push(label);
        }
        for folder in &self.folders {
            files.extend(listing(ws, folder, true, |_| true));
        }
        files.extend(listing(ws, &paths.artifacts, false, |name| {
            name.ends_with(".md") && (name.contains("-approval") || name.starts_with("R17-rollback-decision"))
        }));
        files.extend(listing(ws, &paths.qa_reports, false, |name| name.ends_with(".md")));
        files.retain(|file| !self.excluded.iter().any(|output| output == file));
        files.sort();
        files.dedup();
        files
    }

    /// Puts back everything the attempt changed and says what it was. What a changed file
    /// held is kept under `displaced` (workspace-relative, the same relative path below it),
    /// so a person's edit made during the attempt is not lost either.
    pub fn restore(&self, ws: &Workspace, displaced: &std::path::Path) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut now: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for file in self.protected_files(ws).into_iter().chain(self.files.keys().cloned()) {
            now.entry(file.clone()).or_insert_with(|| read(ws, &file));
        }
        for (file, current) in now {
            let before = self.files.get(&file).cloned().flatten();
            if before == current {
                continue;
            }
            let what = match (&before, &current) {
                (None, Some(_)) => "created",
                (Some(_), None) => "removed",
                _ => "changed",
            };
            if let Some(bytes) = &current {
                let kept = displaced.join(&file);
                if let Err(e) = write::write_file(&ws.root, &kept, bytes) {
                    tracing::warn!("cannot keep what an agent wrote to {file} in {}: {e}", kept.display());
                }
            }
            let undone = match &before {
                Some(bytes) => ws
                    .inside(&file)
                    .map_err(|d| d.to_string())
                    .and_then(|path| write::write_file(&ws.root, &path, bytes).map_err(|e| e.to_string())),
                None => ws
                    .inside(&file)
                    .map_err(|d| d.to_string())
                    .and_then(|path| write::remove_file(&ws.root, &path).map_err(|e| e.to_string())),
            };
            changes.push(Change { file, what: what.to_owned(), not_restored: undone.err() });
        }
        let tasks_file = &ws.config.paths.tasks;
        let now = owned_entries(ws);
        for (id, before) in &self.tasks {
            let undone = match now.get(id) {
                Some(after) if after == before => continue,
                Some(after) => {
                    let what = format!("set {}", describe(before, after));
                    let ops = field_ops(before, after);
                    (what, record::edit_task(ws, Some(id), &[], ops, Vec::new()).map(|_| ()))
                }
                None => (
                    "removed the entry".to_owned(),
                    record::edit_task(ws, None, &[], Vec::new(), vec![before.clone()]).map(|_| ()),
                ),
            };
            let (what, result) = undone;
            changes.push(Change {
                file: format!("{tasks_file} (task {id})"),
                what,
                not_restored: result.err().map(|e| e.to_string()),
            });
        }
        for (id, added) in now.iter().filter(|(id, _)| !self.tasks.contains_key(*id)) {
            let status = added.get("status").and_then(Value::as_str).unwrap_or("pending");
            if status == "pending" {
                continue; // Filed for later: it passes every gate like any other task.
            }
            let ops = vec![
                FieldOp::Set("status".into(), "cancelled".into()),
                FieldOp::Set(
                    "cancelled_reason".into(),
                    format!("filed by an agent node's attempt with status `{status}`; opsflow takes only `pending` tasks from agents").into(),
                ),
            ];
            let result = record::edit_task(ws, Some(id), &[], ops, Vec::new());
            changes.push(Change {
                file: format!("{tasks_file} (task {id})"),
                what: format!("filed a task with status `{status}` (set to `cancelled`)"),
                not_restored: result.err().map(|e| e.to_string()),
            });
        }
        let now = node_entries(ws);
        let workflow = state_workflow(ws);
        for (node, before) in &self.nodes {
            let after = now.get(node).cloned().unwrap_or(Value::Null);
            if &after == before {
                continue;
            }
            let edit = StateEdit { node: node.clone(), fields: field_ops(before, &after), current_nodes: None };
            let undone = record::edit_state(ws, &workflow, &edit).map_err(|e| e.to_string());
            changes.push(Change {
                file: format!("{} (node {node})", ws.config.paths.state),
                what: format!("set {}", describe(before, &after)),
                not_restored: undone.err(),
            });
        }
        changes
    }
}

/// The saved form of a [`Snapshot`]: its manifest (`guard.json`), the bytes beside it in
/// `files/<path>`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    folders: Vec<String>,
    excluded: Vec<String>,
    present: Vec<String>,
    absent: Vec<String>,
    tasks: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
}

const MANIFEST: &str = "guard.json";

impl Snapshot {
    /// Saves the snapshot into `dir` (made for it), the manifest last: a snapshot with no
    /// manifest was not finished and is not used.
    pub fn save(&self, ws: &Workspace, dir: &std::path::Path) -> std::io::Result<()> {
        for (file, bytes) in &self.files {
            if let Some(bytes) = bytes {
                write::write_file(&ws.root, &dir.join("files").join(file), bytes)?;
            }
        }
        let manifest = Manifest {
            folders: self.folders.clone(),
            excluded: self.excluded.clone(),
            present: self.files.iter().filter(|(_, b)| b.is_some()).map(|(f, _)| f.clone()).collect(),
            absent: self.files.iter().filter(|(_, b)| b.is_none()).map(|(f, _)| f.clone()).collect(),
            tasks: self.tasks.clone(),
            nodes: self.nodes.clone(),
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        write::write_file(&ws.root, &dir.join(MANIFEST), &text)
    }

    /// A snapshot saved by [`Snapshot::save`], if a whole one is there.
    fn load(ws: &Workspace, dir: &std::path::Path) -> Option<Snapshot> {
        let limit = ws.config.limits.max_file_bytes;
        let text = crate::workspace::read::read_bytes(&dir.join(MANIFEST), MANIFEST, limit).ok()??;
        let manifest: Manifest = serde_json::from_slice(&text).ok()?;
        let mut files = BTreeMap::new();
        for file in manifest.present {
            let bytes = crate::workspace::read::read_bytes(&dir.join("files").join(&file), &file, limit).ok()??;
            files.insert(file, Some(bytes));
        }
        files.extend(manifest.absent.into_iter().map(|file| (file, None)));
        Some(Snapshot {
            files,
            folders: manifest.folders,
            excluded: manifest.excluded,
            tasks: manifest.tasks,
            nodes: manifest.nodes,
        })
    }
}

/// Puts back what an attempt a killed runner left had changed, from the snapshot it saved in
/// `run_dir` (`attempt-N.guard/`), and removes the snapshot. Returns the changes undone.
pub fn restore_left(ws: &Workspace, run_dir: &std::path::Path) -> Vec<Change> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Vec::new() };
    let mut changes = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(attempt) = name.strip_suffix(".guard") else { continue };
        let dir = entry.path();
        if let Some(snapshot) = Snapshot::load(ws, &dir) {
            changes.extend(snapshot.restore(ws, &run_dir.join(format!("{attempt}.displaced"))));
        }
        if let Err(e) = write::remove_tree(&ws.root, &dir) {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
    changes
}

fn read(ws: &Workspace, file: &str) -> Option<Vec<u8>> {
    let path = ws.inside(file).ok()?;
    crate::workspace::read::read_bytes(&path, file, ws.config.limits.max_file_bytes).ok().flatten()
}

/// The workspace-relative files of `folder` (and below it when `deep`) whose name passes.
fn listing(ws: &Workspace, folder: &str, deep: bool, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let folder = folder.trim_end_matches('/');
    let Ok(root) = ws.inside(folder) else { return Vec::new() };
    walkdir::WalkDir::new(&root)
        .max_depth(if deep { 8 } else { 1 })
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter(|entry| entry.file_name().to_str().is_some_and(&keep))
        .filter_map(|entry| {
            let relative = entry.path().strip_prefix(&ws.root).ok()?;
            Some(relative.to_string_lossy().replace('\\', "/"))
        })
        .collect()
}

/// Every entry of `tasks.json` this runner owns, by id.
fn owned_entries(ws: &Workspace) -> BTreeMap<String, Value> {
    let config = &ws.config;
    let loaded = crate::validate::load_task_list(
        ws,
        |head| crate::workflow::owns(config, head.agent.as_deref(), head.kind.as_deref()),
        |_| false,
    );
    loaded
        .kept
        .into_iter()
        .filter_map(|(_, entry)| Some((crate::store::taskmaster::id_text(entry.get("id")?)?, entry)))
        .collect()
}

/// The `state.json` entry of every node of the workflow (`null` for one without an entry);
/// other stages' nodes are theirs.
fn node_entries(ws: &Workspace) -> BTreeMap<String, Value> {
    let Some(state) = crate::validate::load_json(ws, &ws.config.paths.state, crate::schema::SchemaName::State).value
    else {
        return BTreeMap::new();
    };
    let Ok(graph) = crate::workflow::graph::Graph::load(ws) else { return BTreeMap::new() };
    graph
        .nodes
        .into_iter()
        .map(|node| {
            let entry = state.pointer(&format!("/nodes/{}", node.name)).cloned().unwrap_or(Value::Null);
            (node.name, entry)
        })
        .collect()
}

fn state_workflow(ws: &Workspace) -> String {
    crate::validate::load_json(ws, &ws.config.paths.state, crate::schema::SchemaName::State)
        .value
        .and_then(|state| state.get("workflow").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "devops".to_owned())
}

/// The edits that turn object `after` back into `before`.
fn field_ops(before: &Value, after: &Value) -> Vec<FieldOp> {
    let empty = serde_json::Map::new();
    let (before, after) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut ops: Vec<FieldOp> = before
        .iter()
        .filter(|(key, value)| after.get(*key) != Some(value))
        .map(|(key, value)| FieldOp::Set(key.clone(), value.clone()))
        .collect();
    ops.extend(after.keys().filter(|key| !before.contains_key(*key)).map(|key| FieldOp::Remove(key.clone())));
    ops
}

/// The fields that differ, as `status: "in_progress" -> "done"`.
fn describe(before: &Value, after: &Value) -> String {
    let empty = serde_json::Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |value: Option<&Value>| value.map_or("(none)".to_owned(), crate::workspace::diagnostic::excerpt_value);
    keys.into_iter()
        .filter(|key| b.get(*key) != a.get(*key))
        .map(|key| format!("`{key}` {} -> {}", shown(b.get(key)), shown(a.get(key))))
        .collect::<Vec<_>>()
        .join(", ")
}
