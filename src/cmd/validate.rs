//! `opsflow validate [--json]`: every problem in the workspace, exit 0 or 2.

use serde_json::json;

use super::print_json;
use crate::Exit;
use crate::validate::validate_workspace;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, as_json: bool) -> anyhow::Result<Exit> {
    let report = validate_workspace(ws);
    let ok = report.diagnostics.is_empty();
    if as_json {
        print_json(&json!({
            "ok": ok,
            "workspace": ws.root,
            "checked": report.checked,
            "diagnostics": report.diagnostics,
            "warnings": report.warnings,
        }))?;
    } else {
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
        for diagnostic in &report.diagnostics {
            println!("{diagnostic}");
        }
        let files = report.diagnostics.iter().map(|d| d.file.as_str()).collect::<std::collections::BTreeSet<_>>().len();
        if ok {
            println!("ok: {} valid", count(report.checked.len(), "file"));
        } else {
            let problems = count(report.diagnostics.len(), "problem");
            println!("{problems} in {files} of {}", count(report.checked.len(), "file"));
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Invalid })
}

/// `1 file`, `2 files`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
