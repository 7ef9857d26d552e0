//! `opsflow rollback ENV [--to VERSION] [--reason TEXT]`: a human's rollback.
//!
//! It files a `deployment_rollback` task (so the rollback is gated, logged and recorded like
//! everything else) and runs the engine at once. When a daemon of this agent already works in
//! the workspace, the task is filed and the daemon carries it out.

use serde_json::{Value, json};

use super::require_valid_config;
use crate::Exit;
use crate::engine::record;
use crate::rollout::deploy;
use crate::workspace::Workspace;

pub fn run(
    ws: &Workspace,
    environment: &str,
    to: Option<&str>,
    reason: Option<&str>,
    as_json: bool,
) -> anyhow::Result<Exit> {
    require_valid_config(ws)?;
    let env = super::history::known_environment(ws, environment)?;
    if let Some(version) = to {
        crate::workspace::check_path_component(version).map_err(|why| anyhow::anyhow!("--to {why}"))?;
    }
    // A request that cannot be carried out changes nothing: no task is filed, no report is
    // rewritten, and the error lists what could be restored.
    let record = env.history(ws)?;
    let restorable = deploy::restorable(ws, &env, &record);
    if let Some(why) = deploy::refusal_of(&env, &restorable, env.live(ws, &record).as_ref(), false, to) {
        anyhow::bail!("{why}");
    }
    let now = crate::time::now_rfc3339();
    // The run id's time and suffix: two rollbacks within one second get two tasks.
    let id = format!("ROLLBACK-{}-{}", crate::workspace::file_name_part(environment), crate::engine::new_run_id());
    let requested_by = std::env::var("USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| "a human".into());
    let mut task = json!({
        "id": id,
        "title": match to {
            Some(deploy::TAKE_DOWN) => format!("Take {environment} down"),
            Some(version) => format!("Roll {environment} back to {version}"),
            None => format!("Roll {environment} back to the last good release"),
        },
        "agent": ws.config.agent.name,
        "type": "deployment_rollback",
        "status": "pending",
        "priority": "critical",
        "environment": environment,
        "node": "Rollback_Deployment",
        "requested_by": requested_by,
        "created_at": now,
        "updated_at": now,
    });
    if let Some(version) = to {
        task["target_version"] = json!(version);
    }
    if let Some(reason) = reason {
        task["reason"] = Value::String(reason.to_owned());
    }
    record::edit_task(ws, None, &[], Vec::new(), vec![task])?;
    eprintln!("filed {id}: roll {environment} back{}", to.map(|v| format!(" to {v}")).unwrap_or_default());
    match crate::instance::acquire(ws) {
        Ok(lock) => {
            drop(lock);
            super::run::run(ws, false, as_json)
        }
        Err(held) => {
            eprintln!("{held}: it carries out {id}");
            Ok(Exit::Ok)
        }
    }
}
