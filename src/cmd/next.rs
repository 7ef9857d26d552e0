//! `opsflow next [--json]`: the one thing that waits for a person, and the command that answers it.
//!
//! It is the first task this runner owns that `status` gives a `next` step (the same words),
//! with the command line of `approve`, `promote`, `abort` or `retry` that decides it, so a
//! person or a script need not read the files to know what to type.

use serde_json::{Value, json};

use super::print_json;
use crate::Exit;
use crate::task::{Task, TaskStatus};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, as_json: bool) -> anyhow::Result<Exit> {
    let tasks = super::decide::owned_tasks(ws)?;
    let status_of = |id: &str| tasks.iter().find(|t| t.id == id).map(|t| t.status.to_string());
    let found = tasks.iter().find_map(|task| {
        let fix_id = crate::engine::record::fix_task_id(&task.id);
        let fix_status = status_of(&fix_id);
        let fix = fix_status.as_deref().map(|s| (fix_id.as_str(), s));
        super::status::next_step(task, fix).map(|next| (task, next))
    });
    // Deploys that wait only for their deploy window or wait timer: nobody needs to act.
    let waiting: Vec<Value> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Blocked)
        .filter_map(|t| {
            let wait = super::status::scheduled_wait(t.blocked_reason.as_deref().unwrap_or_default())?;
            Some(json!({ "task": t.id, "waits_for": wait }))
        })
        .collect();
    let Some((task, next)) = found else {
        if as_json {
            print_json(
                &json!({ "task": Value::Null, "next": Value::Null, "command": Value::Null, "waiting": waiting }),
            )?;
        } else {
            println!("nothing waits for a person (`opsflow status` shows the whole workflow)");
            for wait in &waiting {
                println!(
                    "{} waits, and starts on its own: {}",
                    wait["task"].as_str().unwrap_or_default(),
                    wait["waits_for"].as_str().unwrap_or_default()
                );
            }
        }
        return Ok(Exit::Ok);
    };
    let command = command_for(task);
    if as_json {
        print_json(&json!({ "task": task.id, "next": next, "command": command, "waiting": waiting }))?;
    } else {
        println!("{}: {next}", task.id);
        if let Some(command) = &command {
            println!("  {command}");
        }
    }
    Ok(Exit::Ok)
}

/// The command line that answers what `task` waits for, when one does.
fn command_for(task: &Task) -> Option<String> {
    let reason = task.blocked_reason.as_deref().unwrap_or_default();
    let release = [task.unit_id.clone(), task.version.as_ref().map(|v| v.as_str().to_owned())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let environment = task.environment.clone().unwrap_or_else(|| {
        if task.kind == "deployment_staging" { "staging".to_owned() } else { "production".to_owned() }
    });
    match &task.status {
        TaskStatus::Blocked if reason.contains("rollout paused") => Some(format!(
            "opsflow promote {environment} --as NAME   (or: opsflow abort {environment} --as NAME --reason TEXT)"
        )),
        TaskStatus::Blocked if reason.contains("allow_revert") => None,
        TaskStatus::Blocked if reason.contains("human approval") => {
            Some(format!("opsflow approve {release} --as NAME").replace("  ", " "))
        }
        TaskStatus::Blocked if super::status::locked_environment(reason).is_some() => {
            super::status::locked_environment(reason).map(|env| format!("opsflow unlock {env} --as NAME"))
        }
        status
            if status.is_failure()
                && !["deployment_staging", "deployment_production"].contains(&task.kind.as_str()) =>
        {
            Some(format!("opsflow retry {}", task.id))
        }
        _ => None,
    }
}
