//! What a task waits on, which problems are its own, and what in `tasks.json` is worth a
//! warning: one reading shared by `status` and the engine, so both say the same thing.
//!
//! A task waits on every `depends_on` entry that is not finished (`done` or `deployed`); each
//! wait explains itself, naming a status that sounds finished but is not (`completed`). An
//! entry that names no task but an issue of beads' `issues.jsonl` waits until beads says
//! `closed` (docs/integrations.md). A
//! diagnostic whose JSON Pointer points into a task's entry is that task's problem; one
//! pointing into another agent's entry is theirs; one pointing nowhere holds everyone.

use serde::Serialize;

use crate::config::Config;
use crate::integrations::beads;
use crate::task::{Task, TaskStatus, near_miss, owned_type};
use crate::workspace::diagnostic::{Diagnostic, Kind};

/// A `depends_on` entry that is not finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    pub id: String,
    /// Its status; `None` when no task has the id.
    pub status: Option<TaskStatus>,
    /// When no task has the id but beads' issue list does: the issue as beads has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beads: Option<BeadsWait>,
    /// When neither has it and a beads issue list exists: its file, and how many of its lines
    /// could not be read (the id may be on one of them).
    #[serde(skip)]
    pub not_in_beads: Option<(String, usize)>,
}

/// A beads issue a task waits on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeadsWait {
    pub file: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

impl Wait {
    /// The wait as users read it: `TASK-102 (status `completed`; opsflow waits for `done` or
    /// `deployed`)`.
    pub fn describe(&self) -> String {
        if let Some(issue) = &self.beads {
            let assignee = issue.assignee.as_ref().map(|a| format!(", assignee {a}")).unwrap_or_default();
            return format!(
                "{} (beads issue in {}, status `{}`{assignee}; opsflow waits for `{}`)",
                self.id,
                issue.file,
                issue.status,
                beads::CLOSED
            );
        }
        match &self.status {
            None => match &self.not_in_beads {
                Some((file, 0)) => format!("{} (no task has this id, and no issue in {file})", self.id),
                Some((file, unreadable)) => format!(
                    "{} (no task has this id, and no issue in {file}, {unreadable} of whose lines could not be read: see `opsflow validate`)",
                    self.id
                ),
                None => format!("{} (no task has this id)", self.id),
            },
            Some(status) if status.is_open() => format!("{} (status `{status}`)", self.id),
            Some(status) => {
                format!("{} (status `{status}`; opsflow waits for {})", self.id, TaskStatus::finished_list())
            }
        }
    }
}

/// The `depends_on` entries of `task` that are not finished, given the status of every task
/// by id (`None`: no such task) and beads' issues: an id no task has but an issue has is
/// finished when the issue is `closed`.
pub fn waiting_on<'s>(task: &Task, status_of: impl Fn(&str) -> Option<&'s str>, issues: &beads::Issues) -> Vec<Wait> {
    task.depends_on
        .iter()
        .filter_map(|dep| {
            let status = status_of(dep).map(TaskStatus::parse);
            if status.is_none()
                && let Some(issue) = issues.get(dep)
            {
                let beads = BeadsWait {
                    file: issues.file.clone(),
                    status: issue.status.clone(),
                    assignee: issue.assignee.clone(),
                };
                return (!issue.is_closed()).then(|| Wait {
                    id: dep.clone(),
                    status,
                    beads: Some(beads),
                    not_in_beads: None,
                });
            }
            let finished = status.as_ref().is_some_and(TaskStatus::is_finished);
            let not_in_beads =
                (status.is_none() && issues.present).then(|| (issues.file.clone(), issues.problems.len()));
            (!finished).then(|| Wait { id: dep.clone(), status, beads: None, not_in_beads })
        })
        .collect()
}

/// The index of the entry a diagnostic points into (`{prefix}/{index}` or below), if any.
pub fn entry_of(diagnostic: &Diagnostic, prefix: &str) -> Option<usize> {
    let rest = diagnostic.pointer.as_deref()?.strip_prefix(prefix)?.strip_prefix('/')?;
    rest.split('/').next()?.parse().ok()
}

/// Whether a diagnostic is a problem of entry `index`.
pub fn is_problem_of(diagnostic: &Diagnostic, prefix: &str, index: usize) -> bool {
    entry_of(diagnostic, prefix) == Some(index)
}

/// Things in owned-looking entries that are not errors but keep a task from running as its
/// writer meant: an agent that nearly names this runner (`DevOps` for `devops`), and, on a
/// task this runner owns, a status opsflow does not know (`Ready to Deploy`, `todo`).
/// `entries` are (index in the file, task); the warnings point at the field.
pub fn task_warnings<'t>(
    config: &Config,
    file: &str,
    prefix: &str,
    entries: impl IntoIterator<Item = (usize, &'t Task)>,
) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    let known: Vec<String> = TaskStatus::KNOWN.iter().map(|s| format!("`{s}`")).collect();
    let names: Vec<String> =
        std::iter::once(&config.agent.name).chain(&config.agent.aliases).map(|n| format!("`{n}`")).collect();
    for (index, task) in entries {
        if !owned_type(&task.kind) {
            continue;
        }
        if let Some(close) = near_miss(config, &task.agent) {
            warnings.push(
                Diagnostic::new(
                    file,
                    Kind::NearMissAgent,
                    format!(
                        "task {} has agent `{}`, close to `{close}` but not it, so opsflow does not run it; expected one of {} (set `agent` to one, or add an alias in project-config.json)",
                        task.id,
                        task.agent,
                        names.join(", ")
                    ),
                )
                .pointer(format!("{prefix}/{index}/agent")),
            );
        } else if task.owned_by(config) && !task.status.is_known() {
            warnings.push(
                Diagnostic::new(
                    file,
                    Kind::UnknownStatus,
                    format!(
                        "task {} has status `{}`, which opsflow does not know, so it does not run it; expected one of {} (opsflow runs `pending` tasks)",
                        task.id,
                        task.status,
                        known.join(", ")
                    ),
                )
                .pointer(format!("{prefix}/{index}/status")),
            );
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_wait_names_a_status_that_is_not_finished() {
        let task = Task::from_value(json!({"id": "T", "depends_on": ["A", "B", "C", "D"]}));
        let statuses = [("A", "completed"), ("B", "done"), ("C", "pending")];
        let status_of = |id: &str| statuses.iter().find(|(i, _)| *i == id).map(|(_, s)| *s);
        let waits: Vec<String> =
            waiting_on(&task, status_of, &beads::Issues::default()).iter().map(Wait::describe).collect();
        assert_eq!(
            waits,
            [
                "A (status `completed`; opsflow waits for `done` or `deployed`)",
                "C (status `pending`)",
                "D (no task has this id)",
            ]
        );
    }

    #[test]
    fn a_beads_issue_waits_until_beads_says_closed() {
        let issues = beads::parse(".beads/issues.jsonl", include_str!("../../tests/fixtures/beads/issues.jsonl"));
        let task =
            Task::from_value(json!({"id": "T", "depends_on": ["bd-a1b2", "bd-c3d4", "bd-e5f6", "bd-zzzz", "A"]}));
        let status_of = |id: &str| (id == "A").then_some("done");
        let waits: Vec<String> = waiting_on(&task, status_of, &issues).iter().map(Wait::describe).collect();
        assert_eq!(
            waits,
            [
                "bd-c3d4 (beads issue in .beads/issues.jsonl, status `in_progress`, assignee alice; opsflow waits for `closed`)",
                "bd-e5f6 (beads issue in .beads/issues.jsonl, status `open`; opsflow waits for `closed`)",
                "bd-zzzz (no task has this id, and no issue in .beads/issues.jsonl)",
            ]
        );
        let broken = beads::parse("b.jsonl", "{\"id\": \"bd-zzzz\", \"status\": \n");
        let waits: Vec<String> = waiting_on(&task, status_of, &broken).iter().map(Wait::describe).collect();
        assert!(
            waits.contains(&"bd-zzzz (no task has this id, and no issue in b.jsonl, 1 of whose lines could not be read: see `opsflow validate`)".to_owned()),
            "{waits:#?}"
        );
    }

    #[test]
    fn a_task_of_the_same_id_as_a_beads_issue_is_the_one_that_counts() {
        let issues = beads::parse("b.jsonl", "{\"id\":\"X\",\"status\":\"closed\"}\n");
        let task = Task::from_value(json!({"id": "T", "depends_on": ["X"]}));
        let waits = waiting_on(&task, |_| Some("pending"), &issues);
        assert_eq!(waits.iter().map(Wait::describe).collect::<Vec<_>>(), ["X (status `pending`)"]);
    }

    #[test]
    fn a_diagnostic_belongs_to_the_entry_its_pointer_points_into() {
        let at = |pointer: &str| Diagnostic::new("t.json", Kind::Schema, "m").pointer(pointer);
        assert_eq!(entry_of(&at("/tasks/3/unit_id"), "/tasks"), Some(3));
        assert_eq!(entry_of(&at("/tasks/3"), "/tasks"), Some(3));
        assert_eq!(entry_of(&at("/12/depends_on/0"), ""), Some(12));
        assert_eq!(entry_of(&at(""), "/tasks"), None, "the top level holds everyone");
        assert_eq!(entry_of(&at("/tasks"), "/tasks"), None);
        assert_eq!(entry_of(&Diagnostic::new("t.json", Kind::Syntax, "m"), ""), None);
        assert!(is_problem_of(&at("/tasks/3/id"), "/tasks", 3));
        assert!(!is_problem_of(&at("/tasks/31/id"), "/tasks", 3));
    }

    #[test]
    fn warnings_name_the_task_the_field_and_what_is_expected() {
        let mut config = Config::default();
        config.agent.name = "devops".into();
        config.agent.aliases.clear();
        let tasks = [
            Task::from_value(
                json!({"id": "A", "agent": "DevOps Agent", "type": "deployment_staging", "status": "pending"}),
            ),
            Task::from_value(
                json!({"id": "B", "agent": "devops", "type": "deployment_staging", "status": "Ready to Deploy"}),
            ),
            Task::from_value(json!({"id": "C", "agent": "devops", "type": "deployment_staging", "status": "pending"})),
            Task::from_value(json!({"id": "D", "agent": "DevOps", "type": "bug_fix", "status": "todo"})),
        ];
        let warnings = task_warnings(&config, "t.json", "/tasks", tasks.iter().enumerate());
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(shown[0].starts_with("t.json: at /tasks/0/agent: task A has agent `DevOps Agent`"), "{}", shown[0]);
        assert!(shown[0].contains("expected one of `devops`"), "{}", shown[0]);
        assert!(
            shown[1].starts_with("t.json: at /tasks/1/status: task B has status `Ready to Deploy`"),
            "{}",
            shown[1]
        );
        assert!(shown[1].contains("`pending`, `in_progress`, `blocked`, `done`, `deployed`"), "{}", shown[1]);
    }
}
