//! `opsflow trust [--as NAME]`: the commands and overrides as they are now become the trusted
//! ones (`<runtime>/trusted.json`), so the nodes that a change brought in by git sync held may
//! run. Who trusted what is kept in the audit log, with each change's commits and authors.

use serde_json::json;

use super::print_json;
use crate::Exit;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, by: Option<&str>, as_json: bool) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let by = super::decide::actor(ws, by);
    let trusted = crate::trust::trust(ws, &by);
    let audit = crate::audit::Audit::of(ws, crate::exec::secrets::Secrets::from_env(&ws.config.secrets));
    let described: Vec<String> = trusted.iter().map(crate::trust::describe).collect();
    let reason = if described.is_empty() {
        format!("trusted by {by}: the commands and overrides as they are (nothing was waiting)")
    } else {
        format!("trusted by {by}: {}", described.join("; "))
    };
    let inputs: Vec<(String, String)> =
        trusted.iter().map(|c| (c.key.clone(), c.new.as_ref().map(|i| i.digest.clone()).unwrap_or_default())).collect();
    audit.record(&crate::engine::new_run_id(), "trusted", "commands", &reason, &inputs);
    if as_json {
        print_json(&json!({"trusted_by": by, "changes": trusted}))?;
    } else if described.is_empty() {
        println!("nothing was waiting for trust; recorded the current commands and overrides as trusted by {by}");
    } else {
        println!("trusted by {by}:");
        for line in &described {
            println!("  {line}");
        }
        println!("the nodes they held run on the next `opsflow run` (or the daemon's next reconcile)");
    }
    Ok(Exit::Ok)
}
