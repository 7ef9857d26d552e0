//! Task Master's dialect of the task list: what differs when `tasks.json` is Task Master's
//! tagged file (`{"master": {"tasks": [...], "metadata": {...}}, ...}`).
//!
//! Its ids are integers as often as strings, its dependencies are `dependencies`, and its
//! statuses are its own words (`in-progress`, `review`, `deferred`). opsflow reads an entry
//! of that dialect as one of its own (the id as text, `dependencies` as `depends_on`, the
//! status in opsflow's words) and writes back only what Task Master knows: a status of its
//! vocabulary, with opsflow's finer one (`deployed`, `failed`, `rolled_back`) kept beside it
//! in [`FINE_STATUS_FIELD`]. The mapping is in docs/integrations.md ("Task Master").

use serde_json::Value;

/// The field of a Task Master entry where opsflow keeps its own status when Task Master has
/// no word for it.
pub const FINE_STATUS_FIELD: &str = "opsflow_status";

/// The tag Task Master works in when `.taskmaster/state.json` names none.
pub const DEFAULT_TAG: &str = "master";

/// Every status Task Master knows, as its files write them.
pub const STATUSES: [&str; 7] = ["pending", "in-progress", "done", "blocked", "review", "deferred", "cancelled"];

/// A status of Task Master's file in opsflow's words: `in-progress` is `in_progress`; the
/// others are the same word (or, like `review`, a status opsflow does not act on).
pub fn read_status(status: &str) -> &str {
    match status {
        "in-progress" => "in_progress",
        other => other,
    }
}

/// The status written to Task Master's file for opsflow's `status`; `None` for a status
/// Task Master does not know and opsflow has no mapping for.
pub fn written_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "pending",
        "in_progress" | "in-progress" => "in-progress",
        "blocked" => "blocked",
        "done" | "deployed" => "done",
        "failed" => "blocked",
        "rolled_back" | "cancelled" => "cancelled",
        "review" => "review",
        "deferred" => "deferred",
        _ => return None,
    })
}

/// Whether opsflow's `status` needs [`FINE_STATUS_FIELD`]: Task Master's word for it says less.
pub fn is_fine(status: &str) -> bool {
    matches!(status, "deployed" | "failed" | "rolled_back")
}

/// The status of an entry in opsflow's words, from its `status` and its
/// [`FINE_STATUS_FIELD`]: the finer status counts only while `status` is still what opsflow
/// wrote for it, so a status someone set since (`pending` to run a task again) wins.
pub fn effective_status<'s>(status: Option<&'s str>, fine: Option<&'s str>) -> Option<&'s str> {
    match (status, fine) {
        (Some(status), Some(fine)) if is_fine(fine) && written_status(fine) == Some(status) => Some(fine),
        (status, _) => status.map(read_status),
    }
}

/// An id as opsflow names it: a string as written, an integer as its digits.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A decoded Task Master entry as opsflow reads one of its own: `id` as text, `depends_on`
/// from `dependencies` when it has none (integers as their digits, subtask ids such as
/// `"12.1"` as written), `status` in opsflow's words, and `agent` the tag's default agent
/// when the entry names none. Every other field is left as it is.
pub fn normalize(mut entry: Value, default_agent: Option<&str>) -> Value {
    let Some(fields) = entry.as_object_mut() else { return entry };
    if let Some(id) = fields.get("id").and_then(id_text) {
        fields.insert("id".into(), Value::String(id));
    }
    if !fields.contains_key("depends_on")
        && let Some(Value::Array(list)) = fields.get("dependencies")
    {
        let ids: Vec<Value> = list.iter().map(|d| id_text(d).map(Value::String).unwrap_or_else(|| d.clone())).collect();
        fields.insert("depends_on".into(), Value::Array(ids));
    }
    let status = fields.get("status").and_then(Value::as_str);
    let fine = fields.get(FINE_STATUS_FIELD).and_then(Value::as_str);
    if let Some(effective) = effective_status(status, fine).map(str::to_owned) {
        fields.insert("status".into(), Value::String(effective));
    }
    if let Some(agent) = default_agent
        && !fields.contains_key("agent")
    {
        fields.insert("agent".into(), Value::String(agent.to_owned()));
    }
    entry
}

/// A new entry as Task Master writes one: an id of digits as an integer, `depends_on` as
/// `dependencies` (integers where they are digits), the status in Task Master's words.
pub fn to_taskmaster(mut entry: Value) -> Value {
    let Some(fields) = entry.as_object_mut() else { return entry };
    let as_number = |value: &Value| -> Value {
        match value.as_str().and_then(|text| text.parse::<u64>().ok().filter(|n| n.to_string() == text)) {
            Some(number) => Value::from(number),
            None => value.clone(),
        }
    };
    if let Some(id) = fields.get("id").map(as_number) {
        fields.insert("id".into(), id);
    }
    if let Some(Value::Array(list)) = fields.shift_remove("depends_on") {
        fields.insert("dependencies".into(), Value::Array(list.iter().map(as_number).collect()));
    }
    if let Some(status) = fields.get("status").and_then(Value::as_str).map(str::to_owned)
        && let Some(written) = written_status(&status)
    {
        if is_fine(&status) {
            fields.insert(FINE_STATUS_FIELD.into(), Value::String(status));
        }
        fields.insert("status".into(), Value::String(written.to_owned()));
    }
    entry
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_status_opsflow_writes_is_one_task_master_knows_and_reads_back_the_same() {
        for status in ["pending", "in_progress", "blocked", "done", "deployed", "failed", "rolled_back", "cancelled"] {
            let written = written_status(status).unwrap();
            assert!(STATUSES.contains(&written), "{status} -> {written}");
            let fine = is_fine(status).then_some(status);
            assert_eq!(effective_status(Some(written), fine), Some(status));
        }
        // A status set since opsflow wrote its finer one wins.
        assert_eq!(effective_status(Some("pending"), Some("failed")), Some("pending"));
        assert_eq!(effective_status(Some("review"), None), Some("review"));
        assert_eq!(written_status("Ready to Deploy"), None);
    }

    #[test]
    fn an_entry_reads_as_opsflow_reads_its_own_and_is_written_back_as_task_master_does() {
        let entry = json!({"id": 12, "title": "t", "status": "in-progress", "dependencies": [3, "11.2"]});
        let read = normalize(entry, Some("devops"));
        assert_eq!(
            read,
            json!({"id": "12", "title": "t", "status": "in_progress",
            "dependencies": [3, "11.2"], "depends_on": ["3", "11.2"], "agent": "devops"})
        );
        let new = to_taskmaster(json!({"id": "13", "status": "deployed", "depends_on": ["12", "12.1"]}));
        assert_eq!(
            new,
            json!({"id": 13, "status": "done", "opsflow_status": "deployed", "dependencies": [12, "12.1"]})
        );
    }
}
