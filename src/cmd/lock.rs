//! `opsflow lock ENV --reason TEXT` and `opsflow unlock ENV`: a person's freeze of an
//! environment (as Kamal's `lock`).
//!
//! The lock is `<runtime>/env-locks/<env>.json` (who, when, why; `environment::freeze`),
//! written atomically, and an event in the environment's record. While it stands no deploy
//! starts there: a deploy waits with a reason that names who locked it and why. Rollbacks, a
//! failed deploy's own and `opsflow rollback`, still run. `unlock` removes it, records that,
//! and runs the engine once so that what waited deploys now (or leaves it to the daemon that
//! holds the instance lock, which sees the unlock at its next pass).

use serde_json::json;

use super::print_json;
use crate::Exit;
use crate::environment::freeze::{self, Lock};
use crate::environment::{Event, EventKind, ReleaseRef};
use crate::rollout::deploy::EnvConfig;
use crate::workspace::Workspace;

/// `opsflow lock ENV --reason TEXT [--as NAME]`.
pub fn lock(ws: &Workspace, environment: &str, reason: &str, by: Option<&str>, as_json: bool) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let env = super::history::known_environment(ws, environment)?;
    if reason.trim().is_empty() {
        anyhow::bail!("`--reason` is empty: say why {environment} is locked, for whoever finds a deploy waiting");
    }
    let by = super::decide::actor(ws, by);
    let runtime = ws.config.paths.runtime.as_str();
    if let Some(held) = freeze::load_lock(&ws.root, runtime, environment)? {
        anyhow::bail!("{environment} is already {}; `opsflow unlock {environment}` first", held.describe());
    }
    let lock = Lock {
        environment: environment.to_owned(),
        locked_by: by.clone(),
        locked_at: crate::time::now_rfc3339(),
        reason: reason.trim().to_owned(),
    };
    freeze::save_lock(&ws.root, runtime, &lock)?;
    record(ws, &env, EventKind::Locked, &by, &lock.reason)?;
    audit(ws, "locked", environment, &format!("{environment} {} (`opsflow lock`)", lock.describe()));
    let path = ws.label(&freeze::lock_path(&ws.root, runtime, environment));
    if as_json {
        print_json(&json!({ "environment": environment, "locked": true, "lock": lock, "file": path }))?;
    } else {
        println!("{environment} is {}", lock.describe());
        println!("  no deploy starts there until `opsflow unlock {environment}`; rollbacks still run");
    }
    Ok(Exit::Ok)
}

/// `opsflow unlock ENV [--as NAME]`.
pub fn unlock(ws: &Workspace, environment: &str, by: Option<&str>, as_json: bool) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let env = super::history::known_environment(ws, environment)?;
    let by = super::decide::actor(ws, by);
    let runtime = ws.config.paths.runtime.as_str();
    let Some(held) = freeze::load_lock(&ws.root, runtime, environment)? else {
        anyhow::bail!("{environment} is not locked: nothing to unlock (`opsflow status` shows the locks)");
    };
    freeze::remove_lock(&ws.root, runtime, environment)?;
    let detail = format!("unlocked by {by}; it was {}", held.describe());
    record(ws, &env, EventKind::Unlocked, &by, &detail)?;
    audit(ws, "unlocked", environment, &format!("{environment} {detail} (`opsflow unlock`)"));
    eprintln!("{environment} {detail}");
    let unlocked = json!({ "environment": environment, "locked": false, "by": by, "was": held });
    match crate::instance::acquire(ws) {
        Ok(instance) => {
            drop(instance);
            let Some(summary) = super::run::reconcile(ws, false)? else { return Ok(Exit::Invalid) };
            if as_json {
                print_json(&json!({ "unlock": unlocked, "run": summary }))?;
            } else {
                super::run::print_summary(&summary, false);
            }
            Ok(summary.exit())
        }
        Err(daemon) => {
            if as_json {
                print_json(&json!({ "unlock": unlocked, "daemon": daemon.to_string() }))?;
            }
            eprintln!("{daemon}: it starts what waited at its next pass");
            Ok(Exit::Ok)
        }
    }
}

/// Records the lock or unlock in the environment's record, under its deploy lock when it is
/// free (a deploy that runs now writes the record too; it is waited for a moment).
fn record(ws: &Workspace, env: &EnvConfig, kind: EventKind, by: &str, detail: &str) -> anyhow::Result<()> {
    let holder = crate::rollout::deploy_lock::Holder {
        agent: ws.config.agent.name.clone(),
        run_id: crate::engine::new_run_id(),
        task: format!("opsflow {}", kind.as_str()),
    };
    let lock_path = env.lock_path(ws);
    let mut deploy_lock = None;
    for _ in 0..50 {
        match crate::rollout::deploy_lock::acquire(&ws.root, &lock_path, &env.name, &holder) {
            Ok(lock) => {
                deploy_lock = Some(lock);
                break;
            }
            Err(crate::rollout::deploy_lock::DeployLockError::Held { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(other) => return Err(other.into()),
        }
    }
    let event = Event::new(kind, &ReleaseRef::default(), "", detail).by(by);
    env.change_record(ws, |record| record.events.push(event))?;
    drop(deploy_lock);
    Ok(())
}

fn audit(ws: &Workspace, event: &str, environment: &str, reason: &str) {
    let audit = crate::audit::Audit::of(ws, crate::exec::secrets::Secrets::from_env(&ws.config.secrets));
    audit.record(&crate::engine::new_run_id(), event, environment, reason, &[]);
}
