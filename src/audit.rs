//! The audit log: one JSON object a line in `.opsflow/audit.jsonl`, for every decision.
//!
//! Each entry says when, which run and agent, what happened (`event`) to what (`subject`),
//! why, and the sha256 of every input the decision read. Lines are appended with `O_APPEND`
//! in one `write`, so concurrent writers never interleave within a line. Secrets are masked.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::exec::secrets::Secrets;

pub struct Audit {
    /// The workspace (canonical): the log is appended inside it only.
    pub root: PathBuf,
    pub path: PathBuf,
    pub agent: String,
    pub secrets: Secrets,
}

impl Audit {
    /// The workspace's audit log (`<runtime>/audit.jsonl`) for its configured agent.
    pub fn of(ws: &crate::workspace::Workspace, secrets: Secrets) -> Audit {
        Audit {
            root: ws.root.clone(),
            path: ws.path(&ws.config.paths.runtime).join("audit.jsonl"),
            agent: ws.config.agent.name.clone(),
            secrets,
        }
    }

    pub fn record(&self, run_id: &str, event: &str, subject: &str, reason: &str, inputs: &[(String, String)]) {
        let inputs: Map<String, Value> =
            inputs.iter().map(|(file, sha)| (file.clone(), Value::String(sha.clone()))).collect();
        let mut entry = json!({
            "time": crate::time::now_rfc3339(),
            "run_id": run_id,
            "agent": self.agent,
            "event": event,
            "subject": subject,
            "reason": reason,
            "inputs": inputs,
        });
        self.secrets.mask_json(&mut entry);
        let mut line = serde_json::to_string(&entry).expect("a Value serializes");
        line.push('\n');
        // Never appended through a symlink, nor through a folder renamed meanwhile: either
        // could send it anywhere.
        let written = crate::workspace::write::append(&self.root, &self.path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::error!("cannot append to the audit log {}: {e}", self.path.display());
        }
    }
}
