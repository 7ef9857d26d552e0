//! A task of `tasks.json` as opsflow reads it: typed fields decoded once from an entry.
//!
//! The store (`store::tasks`) keeps the file's bytes and writes through splices; this is the
//! read side. Each pass decodes every owned entry it may act on into a [`Task`] once, and the
//! engine, the nodes and `status` read its fields from there instead of looking strings up
//! in a JSON value. Nothing of the entry is lost: a status opsflow does not know is kept
//! verbatim in [`TaskStatus::Other`], and fields opsflow only passes on stay in [`Task::raw`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::release::{Release, Version};
use crate::store::taskmaster;
use crate::store::tasks::Selection;
use crate::workflow::OWNED_TYPE_PREFIXES;

/// A task's `status`. The known values are the exact strings of `tasks.json`; any other
/// string (another agent's status, a typo) is kept as written in `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Blocked,
    Done,
    Deployed,
    Failed,
    RolledBack,
    Cancelled,
    Other(String),
}

impl TaskStatus {
    /// Every status opsflow knows, in the order the docs list them.
    pub const KNOWN: [TaskStatus; 8] = [
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Blocked,
        TaskStatus::Done,
        TaskStatus::Deployed,
        TaskStatus::Failed,
        TaskStatus::RolledBack,
        TaskStatus::Cancelled,
    ];

    /// The statuses after which a task counts as finished for `depends_on`.
    pub const FINISHED: [TaskStatus; 2] = [TaskStatus::Done, TaskStatus::Deployed];

    pub fn parse(text: &str) -> TaskStatus {
        match text {
            "pending" => TaskStatus::Pending,
            "in_progress" => TaskStatus::InProgress,
            "blocked" => TaskStatus::Blocked,
            "done" => TaskStatus::Done,
            "deployed" => TaskStatus::Deployed,
            "failed" => TaskStatus::Failed,
            "rolled_back" => TaskStatus::RolledBack,
            "cancelled" => TaskStatus::Cancelled,
            other => TaskStatus::Other(other.to_owned()),
        }
    }

    /// The status as `tasks.json` writes it.
    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Done => "done",
            TaskStatus::Deployed => "deployed",
            TaskStatus::Failed => "failed",
            TaskStatus::RolledBack => "rolled_back",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Other(text) => text,
        }
    }

    /// `done` or `deployed`: a task that depends on this one may run.
    pub fn is_finished(&self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Deployed)
    }

    /// `pending`, `blocked` or `in_progress`: the task may still act.
    pub fn is_open(&self) -> bool {
        matches!(self, TaskStatus::Pending | TaskStatus::Blocked | TaskStatus::InProgress)
    }

    /// `failed` or `rolled_back`.
    pub fn is_failure(&self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::RolledBack)
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, TaskStatus::Other(_))
    }

    /// The finished statuses as the messages name them: "`done` or `deployed`".
    pub fn finished_list() -> String {
        let names: Vec<String> = TaskStatus::FINISHED.iter().map(|s| format!("`{}`", s.as_str())).collect();
        names.join(" or ")
    }
}

impl From<String> for TaskStatus {
    fn from(text: String) -> TaskStatus {
        match TaskStatus::parse(&text) {
            TaskStatus::Other(_) => TaskStatus::Other(text),
            known => known,
        }
    }
}

impl From<TaskStatus> for String {
    fn from(status: TaskStatus) -> String {
        match status {
            TaskStatus::Other(text) => text,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `tasks.json`, decoded. A field missing or of the wrong type reads as empty
/// (`None`, `""`): the schema check reports it, and the engine skips entries with problems.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub agent: String,
    /// `type`.
    pub kind: String,
    pub status: TaskStatus,
    pub priority: Option<String>,
    pub depends_on: Vec<String>,
    pub unit_id: Option<String>,
    pub version: Option<Version>,
    pub environment: Option<String>,
    /// A workflow node named by the task, overriding the type mapping.
    pub node: Option<String>,
    /// The file a task was filed from (a human's R17 for a requested rollback).
    pub source: Option<String>,
    pub target_version: Option<String>,
    pub blocked_reason: Option<String>,
    pub blocked_by: Option<String>,
    pub resolved_by: Option<String>,
    pub claimed_by: Option<String>,
    pub run_id: Option<String>,
    /// A task made up for a current node of `state.json` that no task stands for: it has no
    /// entry in `tasks.json`, so what it records goes to `state.json` only.
    pub from_state: bool,
    /// The entry as decoded, for the fields opsflow only passes on (a fix task copies
    /// `unit_id` and `version` as written).
    pub raw: Value,
}

impl Task {
    /// Decodes an entry. Never fails: see [`Task`].
    pub fn from_value(raw: Value) -> Task {
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
        let filled = |key: &str| text(key).filter(|v| !v.trim().is_empty());
        Task {
            id: text("id").unwrap_or_default(),
            title: text("title").unwrap_or_default(),
            agent: text("agent").unwrap_or_default(),
            kind: text("type").unwrap_or_default(),
            status: TaskStatus::parse(raw.get("status").and_then(Value::as_str).unwrap_or_default()),
            priority: text("priority"),
            depends_on: raw
                .get("depends_on")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            unit_id: filled("unit_id").map(|u| u.trim().to_owned()),
            version: filled("version").map(Version::new),
            environment: text("environment"),
            node: text("node"),
            source: text("source"),
            target_version: text("target_version"),
            blocked_reason: text("blocked_reason"),
            blocked_by: text("blocked_by"),
            resolved_by: text("resolved_by"),
            claimed_by: text("claimed_by"),
            run_id: text("run_id"),
            from_state: raw.get("from_state") == Some(&Value::Bool(true)),
            raw,
        }
    }

    /// The release the task names: its `unit_id` and `version`, either possibly unknown.
    pub fn release(&self) -> Release {
        Release::new(
            self.unit_id.clone().unwrap_or_default(),
            self.version.as_ref().map(Version::as_str).unwrap_or_default(),
        )
    }

    /// A string field opsflow only passes on (`reason`, `requested_by`), trimmed; `None` when
    /// missing, not a string or blank.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.raw.get(key).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether this runner owns the task (its agent and its type).
    pub fn owned_by(&self, config: &Config) -> bool {
        crate::workflow::owns(config, Some(&self.agent), Some(&self.kind))
    }
}

/// The entries of a decoded `tasks.json` and the JSON Pointer prefix of entry `i`
/// (`{prefix}/{i}`): a bare array, an object with a `tasks` array, or the `tasks` of the tag
/// `selection` names in Task Master's tagged form, whose entries are read as opsflow reads its
/// own (`store::taskmaster::normalize`). `None` for any other shape.
pub fn entries<'d>(document: &'d Value, selection: &Selection) -> Option<TaskEntries<'d>> {
    match document {
        Value::Array(list) => Some(TaskEntries { prefix: String::new(), list: Cow::Borrowed(list), subtasks: None }),
        Value::Object(map) => match map.get("tasks") {
            Some(Value::Array(list)) => {
                Some(TaskEntries { prefix: "/tasks".to_owned(), list: Cow::Borrowed(list), subtasks: None })
            }
            Some(_) => None,
            None => {
                let tag = selection.tag.as_deref().ok()?;
                let list = map.get(tag)?.get("tasks")?.as_array()?;
                let normalized = list
                    .iter()
                    .map(|entry| taskmaster::normalize(entry.clone(), selection.default_agent.as_deref()))
                    .collect();
                Some(TaskEntries {
                    prefix: format!("/{}/tasks", tag.replace('~', "~0").replace('/', "~1")),
                    list: Cow::Owned(normalized),
                    subtasks: Some(subtask_statuses(list)),
                })
            }
        },
        _ => None,
    }
}

/// What [`entries`] found.
#[derive(Debug, Clone)]
pub struct TaskEntries<'d> {
    /// Entry `i` is at `{prefix}/{i}`.
    pub prefix: String,
    pub list: Cow<'d, [Value]>,
    /// In Task Master's tagged form, the status of every subtask by its id (`12.1`), in
    /// opsflow's words: what a `depends_on` may name besides the tasks.
    pub subtasks: Option<HashMap<String, String>>,
}

/// The status of every subtask of Task Master entries (`subtasks`, each with an `id`), by
/// `{task id}.{subtask id}`, in opsflow's words.
pub fn subtask_statuses(list: &[Value]) -> HashMap<String, String> {
    let mut statuses = HashMap::new();
    for entry in list {
        let Some(parent) = entry.get("id").and_then(taskmaster::id_text) else { continue };
        for subtask in entry.get("subtasks").and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = subtask.get("id").and_then(taskmaster::id_text) else { continue };
            let status = taskmaster::effective_status(
                subtask.get("status").and_then(Value::as_str),
                subtask.get(taskmaster::FINE_STATUS_FIELD).and_then(Value::as_str),
            );
            statuses.insert(format!("{parent}.{id}"), status.unwrap_or_default().to_owned());
        }
    }
    statuses
}

/// Whether this runner owns an entry not decoded yet (its `agent` and `type`).
pub fn owned_entry(config: &Config, entry: &Value) -> bool {
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    crate::workflow::owns(config, text("agent"), text("type"))
}

/// A name reduced for comparison: lower case, letters and digits only.
fn reduced(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The configured name (the agent name or an alias) that `agent` nearly is, when it is not
/// one exactly: equal once lower-cased with everything but letters and digits removed, or
/// one containing the other after that, or at most two edits apart. Names of one or two
/// letters are never near misses of anything (`QA` is not `PM`), and containment and edits
/// count only from three and four letters on, for the same reason.
pub fn near_miss<'c>(config: &'c Config, agent: &str) -> Option<&'c str> {
    if config.is_own_agent(agent) {
        return None;
    }
    let theirs = reduced(agent);
    std::iter::once(&config.agent.name).chain(&config.agent.aliases).map(String::as_str).find(|name| {
        let ours = reduced(name);
        let shorter = theirs.chars().count().min(ours.chars().count());
        !ours.is_empty()
            && !theirs.is_empty()
            && (ours == theirs
                || (shorter >= 3 && (ours.contains(&theirs) || theirs.contains(&ours)))
                || (shorter >= 4 && edit_distance(&ours, &theirs) <= 2))
    })
}

/// Whether a task type is one this runner may own.
pub fn owned_type(kind: &str) -> bool {
    OWNED_TYPE_PREFIXES.iter().any(|prefix| kind.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_kept_verbatim() {
        for text in ["pending", "in_progress", "blocked", "done", "deployed", "failed", "rolled_back", "cancelled"] {
            let status: TaskStatus = serde_json::from_value(json!(text)).unwrap();
            assert!(status.is_known(), "{text}");
            assert_eq!(serde_json::to_value(&status).unwrap(), json!(text));
        }
        for text in ["Ready to Deploy", "Pending", "todo", "completed", ""] {
            let status: TaskStatus = serde_json::from_value(json!(text)).unwrap();
            assert_eq!(status, TaskStatus::Other(text.to_owned()));
            assert_eq!(serde_json::to_value(&status).unwrap(), json!(text));
        }
        assert!(TaskStatus::Done.is_finished() && TaskStatus::Deployed.is_finished());
        assert!(!TaskStatus::parse("completed").is_finished());
        assert_eq!(TaskStatus::finished_list(), "`done` or `deployed`");
    }

    #[test]
    fn a_task_decodes_its_fields_and_keeps_the_entry() {
        let task = Task::from_value(json!({
            "id": "T-1", "title": "Deploy", "agent": "devops", "type": "deployment_staging",
            "status": "Ready to Deploy", "depends_on": ["A", 3, "B"], "unit_id": " U1 ", "version": "",
            "custom": {"kept": true}
        }));
        assert_eq!(task.id, "T-1");
        assert_eq!(task.status, TaskStatus::Other("Ready to Deploy".into()));
        assert_eq!(task.depends_on, ["A", "B"]);
        assert_eq!(task.unit_id.as_deref(), Some("U1"));
        assert!(task.version.is_none());
        assert_eq!(task.release(), Release::new("U1", ""));
        assert_eq!(task.raw["custom"]["kept"], json!(true));
        // Wrong types read as empty instead of failing.
        let odd = Task::from_value(json!({"id": 7, "status": null}));
        assert_eq!((odd.id.as_str(), odd.status.as_str()), ("", ""));
    }

    #[test]
    fn near_misses_of_the_agent_name() {
        let mut config = Config::default();
        config.agent.name = "devops".into();
        config.agent.aliases = vec!["DEVOPS_ENGINEER_AGENT".into()];
        for near in ["DevOps", "devops-engineer", "DevOps Agent", "dev ops", "devosp", "Devops_Engineer_Agent"] {
            assert!(near_miss(&config, near).is_some(), "{near} should be a near miss");
        }
        for far in ["devops", "DEVOPS_ENGINEER_AGENT", "Task-Coder", "QA-Engineer", "Product-Manager", "QA", ""] {
            assert!(near_miss(&config, far).is_none(), "{far} should not be a near miss");
        }
        assert_eq!(edit_distance("devops", "devosp"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        // Short names: two letters apart is not a near miss.
        config.agent.name = "QA".into();
        config.agent.aliases.clear();
        assert!(near_miss(&config, "PM").is_none());
        assert!(near_miss(&config, "qa").is_some());
    }
}
