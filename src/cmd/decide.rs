//! The commands for a person's decisions: `approve`, `hold`, `promote`, `abort` and `retry`.
//!
//! Each writes the file a person would edit by hand (the release's approval, the paused
//! rollout's R17, the task's entry in `tasks.json`), changing only the lines it decides, so the
//! markdown stays the record and the diff stays a few readable lines. It refuses, writing
//! nothing, when the decision has nothing to answer or would not count. It records who acted
//! in the audit log, then runs the engine once to carry the decision out, or leaves that to
//! the daemon of this agent when one holds the instance lock.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::print_json;
use crate::Exit;
use crate::engine::{artifacts, gates, record};
use crate::release::{self, Lookup, Release};
use crate::rollout::journal::Journal;
use crate::store::edit::FieldOp;
use crate::task::{Task, TaskStatus};
use crate::workspace::Workspace;

/// Task types whose failure belongs to a built release, which never changes.
const IMMUTABLE_DEPLOYMENTS: [&str; 2] = ["deployment_staging", "deployment_production"];

/// The release a person is asked to approve: its waiting task and its approval file.
struct Waiting {
    task: Task,
    release: Release,
}

/// `opsflow approve [UNIT [VERSION]] --as NAME [--note TEXT]`.
pub fn approve(
    ws: &Workspace,
    unit: Option<&str>,
    version: Option<&str>,
    by: Option<&str>,
    note: Option<&str>,
    as_json: bool,
) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let by = actor(ws, by);
    require_approver(ws, &by, "approve")?;
    let waiting = waiting_release(ws, "approve", unit, version)?;
    let artifact = approval_file(ws, &waiting.release)?;
    if artifacts::ticks(&artifact.body).hold {
        anyhow::bail!(
            "{} has `Hold` ticked, which wins over `status: approved`; untick it by hand first, then approve",
            artifact.file
        );
    }
    let mut fields = vec![
        ("status", json!("approved")),
        ("approved_by", json!(by)),
        ("approved_at", json!(crate::time::now_rfc3339())),
    ];
    if let Some(note) = note {
        fields.push(("note", json!(note)));
    }
    let written = edit_front_matter_file(ws, &artifact.file, Some(&artifact.sha256), &fields)?;
    let reason =
        format!("{} approved by {by}{}", waiting.release.label(), note.map(|n| format!(": {n}")).unwrap_or_default());
    let identity = ws.config.devops.approval_identity;
    if identity.by_git() {
        // Committing it is the approver's own act: opsflow does not commit on their behalf.
        eprintln!(
            "{file} is approved in the working tree; with devops.approval_identity \"{}\" it counts once you commit it as yourself: git add {file} && git commit{signed}",
            identity.as_str(),
            file = artifact.file,
            signed = if identity == crate::config::ApprovalIdentity::GitSigned { " -S" } else { "" }
        );
    }
    let decided = Decided { command: "approve", event: "approved", task: &waiting.task.id, by: &by, reason: &reason };
    finish(ws, &decided, &artifact.file, &written, fields, as_json)
}

/// `opsflow hold [UNIT [VERSION]] --as NAME --reason TEXT`.
pub fn hold(
    ws: &Workspace,
    unit: Option<&str>,
    version: Option<&str>,
    by: Option<&str>,
    reason: &str,
    as_json: bool,
) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let by = actor(ws, by);
    require_approver(ws, &by, "hold")?;
    let waiting = waiting_release(ws, "hold", unit, version)?;
    let artifact = approval_file(ws, &waiting.release)?;
    let fields = vec![("status", json!("hold")), ("held_by", json!(by)), ("reason", json!(reason))];
    let written = edit_front_matter_file(ws, &artifact.file, Some(&artifact.sha256), &fields)?;
    let why = format!("{} held by {by}: {reason}", waiting.release.label());
    let decided = Decided { command: "hold", event: "held", task: &waiting.task.id, by: &by, reason: &why };
    finish(ws, &decided, &artifact.file, &written, fields, as_json)
}

/// `opsflow promote ENV` (`proceed`) and `opsflow abort ENV --reason TEXT` (`rollback`).
pub fn decide_rollout(
    ws: &Workspace,
    environment: &str,
    proceed: bool,
    by: Option<&str>,
    reason: Option<&str>,
    as_json: bool,
) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    super::history::known_environment(ws, environment)?;
    let by = actor(ws, by);
    // Like an approval, `proceed` sends traffic on; a rollback is always allowed.
    if proceed {
        require_approver(ws, &by, "promote")?;
    }
    let journal = Journal::load(ws, environment)?;
    let Some((journal, pause)) = journal.and_then(|j| j.pause.clone().map(|p| (j, p))) else {
        anyhow::bail!(
            "nothing is paused in {environment}: no rollout there waits for a decision (`opsflow status` lists the rollouts)"
        );
    };
    let decision = if proceed { "proceed" } else { "rollback" };
    let mut fields = vec![("decision", json!(decision)), ("decided_by", json!(by))];
    if let Some(reason) = reason {
        fields.push(("reason", json!(reason)));
    }
    // The R17 must be the one that asks about this pause: a decision about an earlier pause
    // would not count, and the engine would go on waiting.
    let file = pause.decision_file.as_str();
    let text = ws.read_text(file).map_err(|d| anyhow::anyhow!("{d}"))?.unwrap_or_default();
    if text.is_empty() {
        anyhow::bail!(
            "{file} is missing: the rollout paused in {environment} waits for a decision there; `opsflow run` writes it again"
        );
    }
    let doc = crate::workspace::read::parse_markdown(file, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
    let asked = doc.front_matter.as_ref().and_then(|fm| fm.get("pause_id")).and_then(Value::as_str);
    if let Some(asked) = asked.filter(|asked| *asked != pause.id) {
        anyhow::bail!(
            "{file} asks about an earlier pause ({asked}), not the one {environment} waits on ({}); `opsflow run` writes it again",
            pause.id
        );
    }
    let sha = crate::sha256::hex(text.as_bytes());
    let written = edit_front_matter_file(ws, file, Some(&sha), &fields)?;
    let (command, event) = if proceed { ("promote", "promoted") } else { ("abort", "aborted") };
    let why = format!(
        "{environment}: {decision} the rollout of {} paused at {} by {by}{}",
        Release::new(journal.unit_id.clone(), journal.version.clone()).label(),
        pause.stage,
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    let decided = Decided { command, event, task: &journal.task, by: &by, reason: &why };
    finish(ws, &decided, &pause.decision_file, &written, fields, as_json)
}

/// `opsflow retry TASK`: a failed or blocked task back to `pending`.
pub fn retry(ws: &Workspace, id: &str, by: Option<&str>, as_json: bool) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let by = actor(ws, by);
    let tasks = owned_tasks(ws)?;
    let Some(task) = tasks.into_iter().find(|t| t.id == id) else {
        anyhow::bail!("no task `{id}` owned by {} in {}", ws.config.agent.name, ws.config.paths.tasks);
    };
    let status = task.status.to_string();
    if !(task.status.is_failure() || task.status == TaskStatus::Blocked) {
        anyhow::bail!("task `{id}` is `{status}`: only a failed or blocked task can be retried");
    }
    if task.status.is_failure() && IMMUTABLE_DEPLOYMENTS.contains(&task.kind.as_str()) {
        let release = Release::new(
            task.unit_id.clone().unwrap_or_default(),
            task.version.as_ref().map(|v| v.as_str()).unwrap_or_default(),
        );
        anyhow::bail!(
            "task `{id}` ({}) of {} is `{status}`, and retrying cannot change that: a built release cannot change: ship a new version",
            task.kind,
            release.label()
        );
    }
    let now = crate::time::now_rfc3339();
    let ops = vec![
        FieldOp::Set("status".into(), "pending".into()),
        FieldOp::Remove("blocked_reason".into()),
        FieldOp::Remove("blocked_by".into()),
        FieldOp::Set("retried_by".into(), by.clone().into()),
        FieldOp::Set("updated_at".into(), now.into()),
    ];
    if !record::edit_task(ws, Some(id), &[status.as_str()], ops, Vec::new())? {
        anyhow::bail!("task `{id}` changed while it was read; nothing was written, look at it again");
    }
    let fields = vec![("status", json!("pending")), ("retried_by", json!(by))];
    let why = format!("{id} was `{status}`; retried by {by}");
    let file = ws.config.paths.tasks.clone();
    let decided = Decided { command: "retry", event: "retried", task: id, by: &by, reason: &why };
    finish(ws, &decided, &file, "", fields, as_json)
}

/// The tasks this runner owns, decoded.
pub fn owned_tasks(ws: &Workspace) -> anyhow::Result<Vec<Task>> {
    let loaded = crate::validate::load_tasks(ws);
    let Some(value) = loaded.value.as_ref() else {
        for problem in &loaded.diagnostics {
            eprintln!("{problem}");
        }
        anyhow::bail!("{} cannot be read; `opsflow validate` says why", ws.config.paths.tasks);
    };
    let entries = crate::task::entries(value, &ws.task_selection());
    let list: &[Value] = entries.as_ref().map(|e| &*e.list).unwrap_or(&[]);
    let mut tasks: Vec<Task> = list
        .iter()
        .filter(|entry| crate::task::owned_entry(&ws.config, entry))
        .map(|entry| Task::from_value(entry.clone()))
        .collect();
    tasks.extend(state_nodes(ws, &tasks));
    Ok(tasks)
}

/// The current nodes of `state.json` that stand for a task (no owned task runs them) and that
/// opsflow blocked, as the engine sees them: a task `state-<node>` with the node's release and
/// reason. A release that came through the workflow on its own (the README's first hour)
/// waits for its approval there.
fn state_nodes(ws: &Workspace, tasks: &[Task]) -> Vec<Task> {
    let Ok(Some(text)) = ws.read_text(&ws.config.paths.state) else { return Vec::new() };
    let Ok(state) = crate::workspace::read::parse_json(&ws.config.paths.state, &text) else { return Vec::new() };
    let Ok(graph) = crate::workflow::graph::Graph::load(ws) else { return Vec::new() };
    let current = state.get("current_nodes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    current
        .filter_map(|name| {
            let node = graph.node(name)?;
            let entry = state.pointer(&format!("/nodes/{name}"))?;
            let field = |key: &str| entry.get(key).and_then(Value::as_str);
            if field("status") != Some("blocked") || field("blocked_by") != Some(crate::engine::record::BLOCKED_BY) {
                return None;
            }
            let covered =
                tasks.iter().any(|t| graph.node_for_task(&t.raw).is_ok_and(|n| n.name == name) && t.status.is_open());
            if covered {
                return None;
            }
            let mut task = json!({
                "id": format!("state-{name}"),
                "title": format!("{name} (a current node of state.json)"),
                "agent": ws.config.agent.name,
                "type": node.task_types.first().cloned().unwrap_or_default(),
                "status": "blocked",
            });
            for key in ["unit_id", "version", "environment", "blocked_reason", "blocked_by"] {
                if let Some(value) = entry.get(key) {
                    task[key] = value.clone();
                }
            }
            Some(Task::from_value(task))
        })
        .collect()
}

/// The release whose production task waits for a person's approval, the one named or the only one.
fn waiting_release(
    ws: &Workspace,
    command: &str,
    unit: Option<&str>,
    version: Option<&str>,
) -> anyhow::Result<Waiting> {
    let all: Vec<Waiting> = owned_tasks(ws)?
        .into_iter()
        .filter(|t| {
            t.status == TaskStatus::Blocked && t.blocked_reason.as_deref().is_some_and(|r| r.contains("human approval"))
        })
        .map(|task| {
            let release = Release::new(
                task.unit_id.clone().unwrap_or_default(),
                task.version.as_ref().map(|v| v.as_str()).unwrap_or_default(),
            );
            Waiting { task, release }
        })
        .collect();
    let listed = |list: &[Waiting]| {
        list.iter().map(|w| format!("{} (task {})", w.release.label(), w.task.id)).collect::<Vec<_>>().join(", ")
    };
    if all.is_empty() {
        anyhow::bail!(
            "no release waits for an approval: no task is blocked on `human approval` (`opsflow next` says what waits)"
        );
    }
    let (mut matching, others): (Vec<Waiting>, Vec<Waiting>) = all.into_iter().partition(|w| {
        unit.is_none_or(|u| w.release.unit == u)
            && version.is_none_or(|v| release::same_version(w.release.version.as_str(), v))
    });
    match matching.len() {
        0 => {
            let named = Release::new(unit.unwrap_or_default(), version.unwrap_or_default());
            anyhow::bail!("{} waits for no approval; waiting: {}", named.label(), listed(&others))
        }
        1 => Ok(matching.remove(0)),
        _ => anyhow::bail!(
            "several releases wait for an approval ({}); name one: `opsflow {command} UNIT VERSION`",
            listed(&matching)
        ),
    }
}

/// The approval file of `release`, or why there is none for it.
fn approval_file(ws: &Workspace, release: &Release) -> anyhow::Result<artifacts::Artifact> {
    let name = gates::approval_file_name("production");
    let lookup = release::find(ws, &name, release).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the approval of {} cannot be read: {}", release.label(), lines.join("; "))
    })?;
    match lookup {
        Lookup::Found(artifact) => Ok(artifact),
        Lookup::Missing => anyhow::bail!(
            "there is no approval request for {}: {}; `opsflow run` writes it once every other gate passes",
            release.label(),
            Lookup::Missing.why_not(ws, &name, release)
        ),
        other @ Lookup::Elsewhere { .. } => anyhow::bail!(
            "the approval request for {} is not there: {}; nothing was written",
            release.label(),
            other.why_not(ws, &name, release)
        ),
    }
}

/// Refuses a name that is not in `devops.approvers` when that list is set.
fn require_approver(ws: &Workspace, by: &str, what: &str) -> anyhow::Result<()> {
    let approvers = &ws.config.devops.approvers;
    if !approvers.is_empty() && !approvers.iter().any(|a| a == by) {
        anyhow::bail!(
            "`{by}` may not {what}: not one of devops.approvers ({}) in {}; pass `--as` one of them",
            approvers.join(", "),
            ws.config_label
        );
    }
    Ok(())
}

/// Who acted: `--as`, else git's `user.name` or `user.email`, else `USER`.
pub(crate) fn actor(ws: &Workspace, by: Option<&str>) -> String {
    if let Some(by) = by.map(str::trim).filter(|b| !b.is_empty()) {
        return by.to_owned();
    }
    for key in ["user.name", "user.email"] {
        if let Ok(out) = crate::git::run(&ws.root, &["config", key], Duration::from_secs(5))
            && out.success
            && !out.stdout.trim().is_empty()
        {
            return out.stdout.trim().to_owned();
        }
    }
    std::env::var("USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "a human".into())
}

/// Rewrites the front matter lines of `fields` in `file` and writes it atomically; returns the
/// new text. With `expected` (the sha256 of the file as the decision read it), a file that
/// changed since is refused: someone else is editing it.
fn edit_front_matter_file(
    ws: &Workspace,
    file: &str,
    expected: Option<&str>,
    fields: &[(&str, Value)],
) -> anyhow::Result<String> {
    let text = ws.read_text(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let Some(text) = text else { anyhow::bail!("{file} is gone; nothing was written") };
    if expected.is_some_and(|sha| sha != crate::sha256::hex(text.as_bytes())) {
        anyhow::bail!("{file} changed while it was read (someone is editing it); nothing was written, try again");
    }
    let edited = edit_front_matter(&text, fields).map_err(|why| anyhow::anyhow!("{file}: {why}; edit it by hand"))?;
    let path = ws.inside(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    crate::store::file::write_atomic(&ws.root, &path, edited.as_bytes())?;
    Ok(edited)
}

/// `text` with the front matter line of each key set to `key: <JSON value>` (added before the
/// closing `---` when missing). Every other byte stays: the other lines, the line endings,
/// the body. Refuses a front matter it cannot edit line by line (none, or a key whose value
/// goes on over the next lines).
pub fn edit_front_matter(text: &str, fields: &[(&str, Value)]) -> Result<String, String> {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.first().is_none_or(|l| l.trim_end() != "---") {
        return Err("no front matter (a first line `---`)".into());
    }
    let Some(close) = lines.iter().skip(1).position(|l| l.trim_end() == "---").map(|i| i + 1) else {
        return Err("the front matter has no closing `---`".into());
    };
    let ending = if lines[0].ends_with("\r\n") { "\r\n" } else { "\n" };
    let mut owned: Vec<String> = lines.drain(..).map(str::to_owned).collect();
    let mut close = close;
    for (key, value) in fields {
        let value = serde_json::to_string(value).map_err(|e| e.to_string())?;
        let prefix = format!("{key}:");
        let at = (1..close).find(|&i| owned[i].starts_with(&prefix));
        match at {
            Some(i) => {
                let continued = owned.get(i + 1).is_some_and(|next| {
                    i + 1 < close && (next.starts_with(' ') || next.starts_with('\t') || next.starts_with('-'))
                });
                if continued {
                    return Err(format!("`{key}` goes on over several lines"));
                }
                let line_end = if owned[i].ends_with("\r\n") {
                    "\r\n"
                } else if owned[i].ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                owned[i] = format!("{key}: {value}{line_end}");
            }
            None => {
                owned.insert(close, format!("{key}: {value}{ending}"));
                close += 1;
            }
        }
    }
    Ok(owned.concat())
}

/// A decision taken: the command, its audit event, the task it answers, who and why.
#[derive(Clone, Copy)]
struct Decided<'a> {
    command: &'a str,
    event: &'a str,
    task: &'a str,
    by: &'a str,
    reason: &'a str,
}

/// Audits the decision, says what was written and carries it out.
fn finish(
    ws: &Workspace,
    decided: &Decided<'_>,
    file: &str,
    written: &str,
    fields: Vec<(&str, Value)>,
    as_json: bool,
) -> anyhow::Result<Exit> {
    let Decided { command, event, task, by, reason } = *decided;
    let audit = crate::audit::Audit::of(ws, crate::exec::secrets::Secrets::from_env(&ws.config.secrets));
    let inputs =
        if written.is_empty() { Vec::new() } else { vec![(file.to_owned(), crate::sha256::hex(written.as_bytes()))] };
    audit.record(&crate::engine::new_run_id(), event, task, &format!("{reason} (`opsflow {command}`)"), &inputs);
    let set: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let shown: Vec<String> = set.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let mut decision = json!({ "command": command, "task": task, "by": by, "file": file, "set": set });
    eprintln!("{event} {task}: wrote {} in {file}", shown.join(", "));
    match crate::instance::acquire(ws) {
        Ok(lock) => {
            drop(lock);
            let Some(summary) = super::run::reconcile(ws, false)? else { return Ok(Exit::Invalid) };
            if as_json {
                decision["carried_out_by"] = json!("this command");
                print_json(&json!({ "decision": decision, "run": summary }))?;
            } else {
                super::run::print_summary(&summary, false);
            }
            Ok(summary.exit())
        }
        Err(held) => {
            if as_json {
                decision["carried_out_by"] = json!("the daemon");
                print_json(&json!({ "decision": decision, "daemon": held.to_string() }))?;
            }
            eprintln!("{held}: it carries out the decision");
            Ok(Exit::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "---\r\nstatus: \"pending\"\r\napproved_by: null\r\nversion: \"1.0.0\"\r\n---\r\n# R12\r\n\r\n- [ ] Approved\r\n";

    #[test]
    fn only_the_decided_lines_change_and_new_keys_go_before_the_closing_line() {
        let edited = edit_front_matter(
            REQUEST,
            &[("status", json!("approved")), ("approved_by", json!("alice")), ("note", json!("ok \"go\""))],
        )
        .unwrap();
        assert_eq!(
            edited,
            "---\r\nstatus: \"approved\"\r\napproved_by: \"alice\"\r\nversion: \"1.0.0\"\r\nnote: \"ok \\\"go\\\"\"\r\n---\r\n# R12\r\n\r\n- [ ] Approved\r\n"
        );
    }

    #[test]
    fn a_file_it_cannot_edit_line_by_line_is_refused() {
        assert!(edit_front_matter("# no front matter\n", &[("status", json!("hold"))]).is_err());
        assert!(edit_front_matter("---\nstatus: x\n", &[("status", json!("hold"))]).is_err());
        let block = "---\nreason: |\n  two\n  lines\n---\nbody\n";
        assert!(edit_front_matter(block, &[("reason", json!("one"))]).unwrap_err().contains("several lines"));
        // A key only at the start of a line counts: `xstatus:` or a body line is not it.
        let edited = edit_front_matter("---\nxstatus: 1\n---\nstatus: body\n", &[("status", json!("hold"))]).unwrap();
        assert_eq!(edited, "---\nxstatus: 1\nstatus: \"hold\"\n---\nstatus: body\n");
    }
}
