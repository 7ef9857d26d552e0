//! Seed fidelity: the files other agents read have the seeds' own shapes. The seed's
//! templates are fixtures (`tests/fixtures/seed/`, copied from seed 000); every section
//! heading, table header and front-matter key there must appear in what opsflow writes, for a
//! success, a failure and a rollback. Plus seed 000's failure rules.

use serde_json::json;

use crate::engine::{APPROVAL, CONFIG, REQUESTS, approve, edit_json, status_of};
use crate::util::{Workspace, task};

const DEPLOY_MD: &str = "docs/workflow/deployments/Deploy-UNIT-001.md";
const R18: &str = "docs/workflow/artifacts/R18-rollback-result.md";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/seed/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The headings (`#` lines), table header rows and front-matter keys of a seed template.
fn shape(seed: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_front = false;
    let lines: Vec<&str> = seed.lines().collect();
    for (i, line) in lines.iter().copied().enumerate() {
        if line == "---" {
            in_front = i == 0;
            continue;
        }
        if in_front {
            // Front matter is written as JSON values: a nested key appears quoted.
            if let Some((key, _)) = line.split_once(':') {
                out.push(if key.starts_with(' ') { format!("\"{}\":", key.trim()) } else { format!("{key}:") });
            }
        } else if line.starts_with('#') {
            // "# Deployment Report — <UNIT_ID>": the text before the placeholder.
            out.push(line.split('<').next().unwrap().trim_end().to_owned());
        } else if line.starts_with('|') && lines.get(i + 1).is_some_and(|next| next.starts_with("|--")) {
            // A table's header row (the one above its `|---|` line).
            out.push(line.to_owned());
        } else if let Some(label) = line.strip_prefix("- **").and_then(|l| l.split("**").next()) {
            out.push(format!("- **{label}**"));
        }
    }
    out
}

fn assert_has_shape(written: &str, seed: &str, case: &str) {
    for part in shape(seed) {
        assert!(written.contains(&part), "{case}: {part:?} from the seed is missing in\n{written}");
    }
}

fn shipped() -> Workspace {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    ws
}

#[test]
fn the_deploy_report_has_the_seeds_shape_for_a_success_a_failure_and_a_rollback() {
    let seed = fixture("Deploy-UNIT_ID.md");
    assert!(shape(&seed).len() >= 20, "{:?}", shape(&seed));
    let ws = shipped();
    let success = ws.read_string(DEPLOY_MD);
    assert_has_shape(&success, &seed, "success");
    assert!(success.contains("status: \"success\"") && success.contains("- **Status:** SUCCESS"), "{success}");
    assert!(success.contains("| Error rate | < 5% | 0.2% | PASS |"), "{success}");
    // opsflow's provenance stays beside the seed's fields.
    for key in ["run_id:", "inputs:", "generated_at:"] {
        assert!(success.contains(key), "{key}");
    }

    for (case, ws) in outcomes().into_iter().skip(1) {
        let written = ws.read_string(DEPLOY_MD);
        assert_has_shape(&written, &seed, case);
        if case == "failure" {
            assert!(
                written.contains("- **Status:** FAILED") && written.contains("| Deployment failed | FAILED |"),
                "{written}"
            );
        } else {
            assert!(
                written.contains("- **Status:** ROLLED_BACK") && written.contains("- Rollback required: Yes"),
                "{written}"
            );
        }
    }
}

#[test]
fn r18_follows_the_seeds_rollback_procedure_with_what_was_done() {
    let seed = fixture("rollback-procedure.md");
    let ws = shipped();
    break_next_release(&ws);
    ws.run(&["run"]).status(1);
    let r18 = ws.read_string(R18);
    for heading in seed.lines().filter(|l| l.starts_with('#')) {
        assert!(r18.contains(heading), "{heading:?} missing in\n{r18}");
    }
    // What was done, with the figures: the error rate after the rollback against the baseline.
    assert!(r18.contains("- Undone: UNIT-001 1.1.0"), "{r18}");
    assert!(r18.contains("Target rollback release: UNIT-001 1.0.0"), "{r18}");
    assert!(r18.contains("Error rate and latency: back to baseline: error rate 0.2% (limit 5%)"), "{r18}");
}

/// Production metrics that read 40% errors while a release marked BROKEN is live, and the
/// next release (1.1.0) marked so.
fn break_next_release(ws: &Workspace) {
    edit_json(ws, CONFIG, |c| {
        c["environments"]["production"]["metrics"]["command"] = json!(
            "if grep -q BROKEN .opsflow/envs/production/active/index.html; then e=40; else e=0.2; fi; printf '{\"error_rate\": %s, \"latency_p95_ms\": 42}\\n' $e"
        );
    });
    let index = ws.read_string("app/index.html");
    ws.write("app/index.html", format!("{index}<!-- BROKEN -->\n"));
    crate::rollout::release(ws, "1.1.0");
}

#[test]
fn after_a_rolled_back_release_the_units_next_production_deploy_waits_for_its_fix() {
    let ws = shipped();
    // 1.1.0 breaks its monitoring period and is rolled back; FIX-PROD-110 is filed.
    let index = ws.read_string("app/index.html");
    break_next_release(&ws);
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "PROD-110"), "rolled_back");
    let fix = task(&ws.tasks(), "FIX-PROD-110").clone();
    assert_eq!(fix["details"]["deployment"]["environment"], "production", "{fix}");
    assert_eq!(fix["details"]["deployment"]["version"], "1.1.0", "{fix}");

    // 1.2.0 is fine, but waits until the failure is resolved.
    ws.write("app/index.html", format!("{index}<!-- 1.2.0 -->\n"));
    crate::rollout::release(&ws, "1.2.0");
    ws.run(&["run"]).status(3);
    let reason = task(&ws.tasks(), "PROD-120")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("PROD-110 of UNIT-001 failed or was rolled back and is not resolved: FIX-PROD-110"),
        "{reason}"
    );
    assert!(!ws.read_string(".opsflow/envs/production/active/index.html").contains("1.2.0"));

    // Task-Coder fixes it: the deploy goes on.
    ws.run(&["tasks", "update", "FIX-PROD-110", "--set", "status=done"]).status(0);
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "PROD-120"), "deployed");
}

#[test]
fn a_rollback_whose_health_check_fails_too_escalates_as_critical() {
    let ws = crate::rollout::approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {"deploy": "true", "rollback": "true"},
        "health_checks": [{"name": "never", "command": "exit 1"}],
    }));
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "failed");
    let requests = ws.read_string(REQUESTS);
    let entry = requests.split("## Escalation Request").last().unwrap();
    assert!(entry.contains("CRITICAL"), "{entry}");
    assert!(entry.contains("rolling back failed too"), "{entry}");
    let _ = APPROVAL;
}

#[test]
fn identifiers_in_what_opsflow_writes_are_not_backslash_escaped() {
    let ws = shipped();
    let mut files = vec![crate::engine::REQUESTS.to_owned(), DEPLOY_MD.to_owned()];
    for name in ws.list_dir("docs/workflow/artifacts") {
        if name.ends_with(".md") {
            files.push(format!("docs/workflow/artifacts/{name}"));
        }
    }
    assert!(files.len() > 15, "{files:?}");
    for file in files {
        let text = ws.read_string(&file);
        // Commands and names in backticks are code spans an agent can read, not `\``.
        assert!(!text.contains("\\`"), "{file}: an escaped backtick:\n{text}");
        let bytes = text.as_bytes();
        for (i, window) in bytes.windows(3).enumerate() {
            if window[1..] == *b"\\_" && window[0].is_ascii_alphanumeric() {
                let line = text[..i].lines().count();
                panic!("{file}:{line}: an identifier with `\\_`:\n{text}");
            }
        }
    }
}

/// The `"key":` names of seed 003's JSON example (not JSON itself: it shows `a | b` choices).
fn seed_keys(seed: &str) -> Vec<String> {
    let mut keys: Vec<String> = seed
        .split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].trim_start().starts_with(':'))
        .map(|w| w[0].to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn json_keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.push(key.clone());
                json_keys(inner, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_keys(item, out)),
        _ => {}
    }
}

/// The three outcomes of a production deploy, each on its own workspace.
fn outcomes() -> Vec<(&'static str, Workspace)> {
    let success = shipped();
    let failure = Workspace::new().sample();
    edit_json(&failure, CONFIG, |c| {
        c["environments"]["production"]["health_checks"] = json!([{"name": "never", "command": "exit 1"}])
    });
    failure.run(&["run"]).status(3);
    approve(&failure, "alice");
    failure.run(&["run"]).status(1);
    let rollback = shipped();
    break_next_release(&rollback);
    rollback.run(&["run"]).status(1);
    vec![("success", success), ("failure", failure), ("rollback", rollback)]
}

#[test]
fn the_deployment_report_the_signal_and_escalations_have_the_seeds_shapes() {
    let report_seed = fixture("deployment-report.json.txt");
    let wanted = seed_keys(&report_seed);
    assert!(wanted.len() >= 30, "{wanted:?}");
    let escalation_seed = fixture("escalation-request.md");
    for (case, ws) in outcomes() {
        let report: serde_json::Value =
            serde_json::from_slice(&ws.read("ARTIFACTS/devops-engineer/deployment-report.json")).unwrap();
        let mut present = Vec::new();
        json_keys(&report, &mut present);
        // `health_check_url` is optional in the seed's own example (its second service has none);
        // opsflow writes it when a health check is an HTTP one.
        for key in wanted.iter().filter(|k| *k != "health_check_url") {
            assert!(present.contains(key), "{case}: the report lacks seed 003's {key:?}:\n{report:#}");
        }
        // Seed 003's enum values.
        let summary = &report["deployment_summary"];
        assert!(["production", "staging", "dev"].contains(&summary["environment"].as_str().unwrap()), "{case}");
        assert!(
            ["blue-green", "canary", "rolling", "direct"].contains(&summary["deployment_method"].as_str().unwrap())
        );
        assert!(["success", "failed", "rolled_back"].contains(&summary["status"].as_str().unwrap()));

        let signal: serde_json::Value =
            serde_json::from_slice(&ws.read("ARTIFACTS/system/stage-completion-signal.json")).unwrap();
        for key in ["stage", "agent", "unit_id", "status", "completed_at", "artifacts", "next_agent", "message"] {
            assert!(signal.get(key).is_some(), "{case}: the signal lacks {key}: {signal}");
        }
        assert_eq!(
            (signal["stage"].as_str(), signal["next_agent"].as_str()),
            (Some("devops"), Some("Product-Manager"))
        );
        let expected = if case == "success" { "completed" } else { "failed" };
        assert_eq!(signal["status"], expected, "{case}: {signal}");

        if case != "success" {
            let requests = ws.read_string(REQUESTS);
            let entry = requests.split("## Escalation Request").last().unwrap();
            for line in escalation_seed.lines().filter(|l| l.starts_with("- **")) {
                let label = line.split("**").nth(1).unwrap();
                assert!(entry.contains(&format!("**{label}**")), "{case}: {label} missing in\n{entry}");
            }
        }
    }
}
