//! Agent nodes: opsflow runs another agent (here Python scripts that behave like LLM command
//! lines: they read the prompt on stdin and write files) and judges what it wrote itself.
//! Each case asserts what a user sees: the task's status and `outcome.attempts`, the files
//! on disk, the attempt logs, the audit log and `human-requests.md`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::Daemon;
use crate::util::{TASKS, Workspace, task, wait_until};

const REPORT: &str = "QA/QA-Report-UNIT-001.md";
const TEST_REPORT: &str = "ARTIFACTS/qa-engineer/qa-test-report.json";
const APPROVAL: &str = "docs/workflow/artifacts/R12-prod-approval.md";

/// A fake QA agent. Its behaviour is its first argument.
const AGENT: &str = r#"
import json, os, subprocess, sys, time
mode = sys.argv[1]
prompt = sys.stdin.read()
root = os.environ["OPSFLOW_WORKSPACE"]
unit = os.environ["OPSFLOW_UNIT_ID"]
def write(relative, text):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
good_report = "---\nunit_id: \"%s\"\nversion: \"1.0.0\"\nstatus: approved\ntested_by: QA-Engineer\n---\n\n# QA Report\n\nAll 24 unit tests and 6 integration tests pass; no blocking bugs.\n" % unit
good_json = json.dumps({"unit_id": unit, "version": "1.0.0", "recommendation": "approve_for_deployment",
    "summary": "All suites pass.", "test_results": {"unit": {"passed": 24, "failed": 0, "skipped": 0}}})
def good():
    write("QA/QA-Report-%s.md" % unit, good_report)
    write("ARTIFACTS/qa-engineer/qa-test-report.json", good_json)
with open(os.path.join(root, "prompts.log"), "a") as f:
    f.write("=== attempt %s\n%s\n" % (os.environ["OPSFLOW_ATTEMPT"], prompt))
if mode == "fix":
    if "previous attempt" in prompt and "front matter" in prompt:
        good()
    else:
        write("QA/QA-Report-%s.md" % unit, "---\nunit_id: \"%s\"\n---\n\n# QA Report\n\nAll pass.\n" % unit)
        write("ARTIFACTS/qa-engineer/qa-test-report.json", good_json)
    print("QA complete. All tests pass. <loop-complete>")
elif mode == "claims":
    print(json.dumps({"type": "result", "result": "Task complete: all tests pass", "passes": True}))
elif mode == "hang":
    child = subprocess.Popen(["sleep", "300"])
    write("child.pid", str(child.pid))
    time.sleep(300)
elif mode == "budget":
    print(json.dumps({"usage": {"input_tokens": 900000, "output_tokens": 200000}, "cost_usd": 3.5}))
    sys.exit(1)
elif mode == "approve":
    good()
    path = os.path.join(root, "docs/workflow/artifacts/R12-prod-approval.md")
    text = open(path).read().replace("status: pending", "status: approved").replace("- [ ] Approved", "- [x] Approved")
    write("docs/workflow/artifacts/R12-prod-approval.md", text)
elif mode == "selfdone":
    good()
    path = os.path.join(root, "docs/workflow/tasks.json")
    tasks = json.load(open(path))
    for t in tasks["tasks"]:
        if t["id"] == os.environ["OPSFLOW_TASK_ID"]:
            t["status"] = "done"
    write("docs/workflow/tasks.json", json.dumps(tasks, indent=2) + "\n")
elif mode == "empty":
    write("QA/QA-Report-%s.md" % unit, "---\nunit_id: \"%s\"\nstatus: approved\n---\n\n# QA Report\n\n" % unit)
    write("ARTIFACTS/qa-engineer/qa-test-report.json", good_json)
elif mode == "placeholder":
    write("QA/QA-Report-%s.md" % unit, "---\nunit_id: \"%s\"\nstatus: approved\n---\n\n# QA Report\n\nTODO\n" % unit)
    write("ARTIFACTS/qa-engineer/qa-test-report.json", good_json)
elif mode == "missing":
    sys.exit(127)
elif mode == "approve_then_hang":
    path = os.path.join(root, "docs/workflow/artifacts/R12-prod-approval.md")
    write("docs/workflow/artifacts/R12-prod-approval.md", open(path).read().replace("status: pending", "status: approved"))
    write("ticked", "")
    time.sleep(300)
elif mode == "files_followup":
    good()
    subprocess.run([os.environ["OPSFLOW_BIN"], "tasks", "add", "--id", "BUG-7", "--title", "Flaky checkout test",
        "--owner", "Task-Coder", "--type", "bug_fix"], check=True, stdout=subprocess.DEVNULL)
elif mode == "forge":
    good()
    path = os.path.join(root, "docs/workflow/tasks.json")
    tasks = json.load(open(path))
    for t in tasks["tasks"]:
        if t["id"] == "DEVOPS-7":
            t["status"] = "deployed"
    base = {"agent": "DevOps-Engineer", "type": "deployment_production", "unit_id": unit, "version": "1.0.0"}
    tasks["tasks"].append(dict(base, id="DEVOPS-8", title="Shipped", status="done"))
    tasks["tasks"].append(dict(base, id="DEVOPS-9", title="Ship the fix", status="pending"))
    write("docs/workflow/tasks.json", json.dumps(tasks, indent=2) + "\n")
elif mode == "wait":
    # Reports its usage as Claude Code does, once a person lets it finish.
    while not os.path.exists(os.path.join(root, "go")):
        time.sleep(0.05)
    good()
    print(json.dumps({"type": "result", "usage": {"input_tokens": 1000, "output_tokens": 234}, "total_cost_usd": 0.25}))
"#;

const APPROVAL_TEXT: &str = "---\nenvironment: production\nunit_id: \"UNIT-001\"\nversion: \"1.0.0\"\nstatus: pending\napproved_by: null\n---\n\n# Production approval\n\n- [ ] Approved\n";

fn workflow(mode: &str, agent: Value) -> String {
    let mut spec = json!({
        "command": format!("python3 agents/qa.py {mode}"),
        "outputs": [
            {"path": "QA/QA-Report-{{unit_id}}.md", "schema": "qa-report.schema.json"},
            {"path": "ARTIFACTS/qa-engineer/qa-test-report.json", "schema": "qa-test-report.schema.json"}
        ],
        "max_attempts": 3,
        "timeout": "30s",
        "backoff": "10ms"
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), agent) {
        spec.extend(extra);
    }
    serde_json::to_string_pretty(&json!({
        "name": "qa",
        "nodes": [{
            "name": "QA_Testing",
            "action": "agent",
            "owner": "QA-Engineer",
            "task_types": ["qa_testing"],
            "agent": spec
        }]
    }))
    .unwrap()
}

fn workspace(mode: &str, agent: Value) -> Workspace {
    let tasks = json!({"tasks": [{
        "id": "QA-101", "title": "Test the landing page", "agent": "QA-Engineer", "type": "qa_testing",
        "status": "pending", "unit_id": "UNIT-001", "version": "1.0.0"
    }]});
    Workspace::new()
        .file("project-config.json", "{}\n")
        .file(TASKS, serde_json::to_string_pretty(&tasks).unwrap() + "\n")
        .file("docs/workflow/workflow.json", workflow(mode, agent))
        .file("agents/qa.py", AGENT)
        .file(APPROVAL, APPROVAL_TEXT)
}

fn the_task(ws: &Workspace) -> Value {
    task(&ws.tasks(), "QA-101").clone()
}

fn attempts(task: &Value) -> Vec<Value> {
    task["outcome"]["attempts"].as_array().cloned().unwrap_or_default()
}

fn verdicts(task: &Value) -> Vec<String> {
    attempts(task).iter().map(|a| a["verdict"].as_str().unwrap_or_default().to_owned()).collect()
}

fn audit_attempts(ws: &Workspace) -> Vec<Value> {
    ws.read_string(".opsflow/audit.jsonl")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["event"] == "agent_attempt")
        .collect()
}

#[test]
fn an_agent_that_writes_an_invalid_report_fixes_it_from_the_diagnostics_in_the_next_prompt() {
    let ws = workspace("fix", json!({}));
    let run = ws.run(&["run"]);
    run.status(0);
    let task = the_task(&ws);
    assert_eq!(task["status"], "done", "{task:#}");
    assert_eq!(verdicts(&task), ["invalid", "passed"]);
    let first = &attempts(&task)[0];
    let problem = &first["diagnostics"][0];
    assert_eq!(problem["file"], REPORT);
    assert_eq!(problem["rule"], "required", "{problem:#}");
    assert!(problem["message"].as_str().unwrap().contains("status"), "{problem:#}");
    assert_eq!(problem["line"], 1, "{problem:#}");
    // The second prompt carried the first attempt's diagnostics; the first had none.
    let prompts = ws.read_string("prompts.log");
    let (one, two) = prompts.split_once("=== attempt 2").expect("two attempts");
    assert!(!one.contains("previous attempt"), "{one}");
    assert!(two.contains("Your previous attempt (1) was refused: invalid"), "{two}");
    assert!(two.contains(REPORT) && two.contains("\"rule\": \"required\""), "{two}");
    // Each attempt's prompt, stdout and stderr are kept, and the task names them.
    for attempt in attempts(&task) {
        for log in ["prompt", "stdout", "stderr"] {
            let path = attempt["logs"][log].as_str().unwrap();
            assert!(ws.join(path).is_file(), "{path}");
        }
    }
    let stdout = ws.read_string(attempts(&task)[1]["logs"]["stdout"].as_str().unwrap());
    assert_eq!(stdout, "QA complete. All tests pass. <loop-complete>\n");
    assert_eq!(audit_attempts(&ws).len(), 2, "one audit line per attempt");
    assert!(ws.read_string(REPORT).contains("status: approved"));
    assert!(task["outcome"]["artifacts"].as_array().unwrap().iter().any(|a| a == REPORT), "{task:#}");
}

#[test]
fn an_agent_that_claims_success_and_writes_nothing_fails_every_attempt() {
    let ws = workspace("claims", json!({}));
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(verdicts(&task), ["invalid", "invalid", "invalid"]);
    let problems = &attempts(&task)[0]["diagnostics"];
    assert_eq!(problems[0]["rule"], "output.missing", "{problems:#}");
    assert_eq!(problems[0]["file"], REPORT);
    assert_eq!(problems[1]["file"], TEST_REPORT);
    let reason = task["outcome"]["summary"].as_str().unwrap();
    assert!(reason.contains("no attempt of QA_Testing passed opsflow's checks"), "{reason}");
    assert!(!ws.join(REPORT).exists());
    // No fix task for a coder and no DevOps completion signal: a person reads the attempts.
    assert_eq!(ws.tasks().len(), 1, "{:#?}", ws.tasks());
    assert!(!ws.join("ARTIFACTS/system/stage-completion-signal.json").exists());
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(requests.contains("then `opsflow retry QA-101`"), "{requests}");
    // `retry` sets it back and runs it again, from the first attempt, in a new run.
    let first_run = the_task(&ws)["run_id"].clone();
    let retried = ws.run(&["retry", "QA-101", "--as", "alice"]);
    retried.status(1);
    assert!(retried.stderr().contains("retried QA-101"), "{}", retried.stderr());
    let task = the_task(&ws);
    assert_ne!(task["run_id"], first_run);
    assert_eq!(verdicts(&task), ["invalid", "invalid", "invalid"]);
}

#[test]
fn an_agent_that_hangs_with_a_child_is_killed_with_its_whole_process_group_at_the_timeout() {
    let ws = workspace("hang", json!({"timeout": "2s", "max_attempts": 1}));
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(verdicts(&task), ["timed_out"], "{task:#}");
    let child: i32 = ws.read_string("child.pid").trim().parse().unwrap();
    wait_until(Duration::from_secs(10), "the agent's child to be gone", || {
        !std::path::Path::new(&format!("/proc/{child}")).exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(attempts(&task)[0]["diagnostics"][0]["message"].as_str().unwrap().contains("timeout of 2s"));
}

#[test]
fn an_agent_over_its_token_budget_is_stopped_with_the_reason() {
    let ws = workspace("budget", json!({"budget": {"tokens": 1000000}, "transient_retries": 0}));
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed");
    assert_eq!(attempts(&task).len(), 1, "no attempt starts past the budget: {task:#}");
    assert_eq!(attempts(&task)[0]["usage"]["input_tokens"], 900000);
    let reason = task["outcome"]["summary"].as_str().unwrap();
    assert!(reason.contains("tokens budget ran out (1100000 tokens spent, the budget is 1000000)"), "{reason}");
}

#[test]
fn an_agent_that_ticks_the_production_approval_fails_and_the_approval_is_restored_byte_for_byte() {
    let ws = workspace("approve", json!({}));
    ws.run(&["run"]).status(1);
    assert_eq!(ws.read_string(APPROVAL), APPROVAL_TEXT, "the approval is as it was");
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed");
    assert_eq!(verdicts(&task), ["tampered"], "no second try for an agent that tampers");
    let problem = &attempts(&task)[0]["diagnostics"][0];
    assert_eq!(problem["file"], APPROVAL);
    assert_eq!(problem["rule"], "protected");
    assert!(problem["message"].as_str().unwrap().contains("changed, which decides the workflow"), "{problem:#}");
    // What it wrote is kept aside, not lost.
    let displaced =
        format!(".opsflow/runs/{}/attempt-1.displaced/{APPROVAL}", task["outcome"]["run_id"].as_str().unwrap());
    assert!(ws.read_string(&displaced).contains("- [x] Approved"));
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(requests.contains("QA-101") && requests.contains("changed files that decide the workflow"), "{requests}");
}

#[test]
fn an_agent_that_marks_its_own_task_done_fails_and_its_entry_is_set_back() {
    let ws = workspace("selfdone", json!({}));
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed", "opsflow's verdict, not the agent's: {task:#}");
    let problem = &attempts(&task)[0]["diagnostics"][0];
    assert!(problem["file"].as_str().unwrap().contains("tasks.json (task QA-101)"), "{problem:#}");
    assert!(problem["message"].as_str().unwrap().contains("`status` \"in_progress\" -> \"done\""), "{problem:#}");
}

#[test]
fn an_agent_that_writes_a_valid_but_empty_report_or_a_placeholder_is_refused_with_the_rule() {
    for (mode, rule) in [("empty", "output.empty"), ("placeholder", "output.placeholder")] {
        let ws = workspace(mode, json!({"max_attempts": 1}));
        ws.run(&["run"]).status(1);
        let task = the_task(&ws);
        let problem = &attempts(&task)[0]["diagnostics"][0];
        assert_eq!(problem["rule"], rule, "{mode}: {problem:#}");
        assert_eq!(problem["file"], REPORT, "{mode}");
    }
}

#[test]
fn a_command_that_cannot_start_is_retried_with_backoff_and_counted_apart() {
    let ws = workspace("missing", json!({"max_attempts": 1, "transient_retries": 2}));
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(verdicts(&task), ["transient", "transient", "transient"], "{task:#}");
    let message = attempts(&task)[0]["diagnostics"][0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("could not start (exit code 127"), "{message}");
}

#[test]
fn a_running_agent_shows_in_status_and_its_attempts_tokens_and_cost_on_metrics() {
    let ws = workspace("wait", json!({}));
    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(Duration::from_secs(30), "status to show the running agent", || {
        let status = ws.run(&["status", "--json"]).json();
        let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
        tasks.iter().any(|t| t["id"] == "QA-101" && t["agent"]["attempt"] == 1 && t["agent"]["node"] == "QA_Testing")
    });
    let text = ws.run(&["status"]).stdout();
    assert!(text.contains("agent: QA_Testing attempt 1 of 3, running"), "{text}");
    assert!(text.contains("tasks owned by DevOps-Engineer and, through agent nodes, by QA-Engineer"), "{text}");
    ws.write("go", "");
    wait_until(Duration::from_secs(30), "the task to be done", || the_task(&ws)["status"] == "done");
    wait_until(Duration::from_secs(10), "the metrics to count the attempt", || {
        daemon.get_metrics().contains("opsflow_agent_attempts_total{node=\"QA_Testing\",verdict=\"passed\"} 1")
    });
    assert_eq!(daemon.metric("opsflow_agent_tokens_total{node=\"QA_Testing\"}"), 1234.0);
    assert_eq!(daemon.metric("opsflow_agent_cost_usd_total{node=\"QA_Testing\"}"), 0.25);
    assert_eq!(attempts(&the_task(&ws))[0]["usage"]["output_tokens"], 234);
    daemon.terminate(Duration::from_secs(10));
    // One runner per agent it acts for: the QA agent's lock was held too, and is free again.
    assert!(ws.join(".opsflow/locks/instance-QA-Engineer.lock").is_file());
}

#[test]
fn the_agents_demo_runs_merge_and_qa_agents_then_the_devops_nodes_up_to_the_production_approval() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = std::process::Command::new(crate::util::opsflow_bin())
        .args(["demo", "--agents", "--dir"])
        .arg(&target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("QA-001       QA_Testing     invalid, passed"), "{stdout}");
    let tasks = crate::util::tasks_of(&std::fs::read(target.join(TASKS)).unwrap());
    let status = |id: &str| task(&tasks, id)["status"].as_str().unwrap().to_owned();
    assert_eq!(status("MERGE-001"), "done");
    assert_eq!(status("QA-001"), "done");
    assert_eq!(verdicts(task(&tasks, "QA-001")), ["invalid", "passed"]);
    assert_eq!(status("DEVOPS-006"), "deployed");
    assert_eq!(status("DEVOPS-007"), "blocked");
    // The reports the QA agent wrote are the ones the gates read.
    let report = std::fs::read_to_string(target.join(REPORT)).unwrap();
    assert!(report.contains("status: approved"), "{report}");
    // One audit log: the agents' attempts and the DevOps nodes' runs.
    let audit = std::fs::read_to_string(target.join(".opsflow/audit.jsonl")).unwrap();
    let events: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |event: &str| events.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("agent_attempt"), 3, "{audit}");
    assert!(count("deployed") >= 1, "{audit}");
    // A person approves; production follows.
    let approve = std::process::Command::new(crate::util::opsflow_bin())
        .arg("-C")
        .arg(&target)
        .args(["approve", "--as", "alice"])
        .output()
        .unwrap();
    assert_eq!(approve.status.code(), Some(0), "{}", String::from_utf8_lossy(&approve.stderr));
    let tasks = crate::util::tasks_of(&std::fs::read(target.join(TASKS)).unwrap());
    assert_eq!(task(&tasks, "DEVOPS-007")["status"], "deployed", "{:#}", task(&tasks, "DEVOPS-007"));
}

#[test]
fn valid_outputs_still_fail_the_attempt_while_a_verify_command_fails() {
    let verify = json!({"verify": ["echo '3 tests failed' && exit 1"], "max_attempts": 2});
    let ws = workspace("fix", verify);
    ws.run(&["run"]).status(1);
    let task = the_task(&ws);
    assert_eq!(verdicts(&task), ["invalid", "verify_failed"], "{task:#}");
    let problem = &attempts(&task)[1]["diagnostics"][0];
    assert_eq!(problem["rule"], "verify");
    assert!(problem["message"].as_str().unwrap().contains("3 tests failed"), "{problem:#}");
    // With a verify command that passes, the same agent's task is done.
    let ws = workspace("fix", json!({"verify": ["test -s QA/QA-Report-UNIT-001.md"]}));
    ws.run(&["run"]).status(0);
    assert_eq!(verdicts(&the_task(&ws)), ["invalid", "passed"]);
}

#[test]
fn validate_names_an_agent_nodes_missing_schema_and_template_and_a_forbidden_output_at_their_keys() {
    let agent = json!({
        "prompt": "qa-prompt.md",
        "outputs": [
            {"path": "QA/QA-Report-{{unit_id}}.md", "schema": "qa-report-v2.schema.json"},
            {"path": "docs/workflow/tasks.json"}
        ]
    });
    let ws = workspace("fix", agent);
    let out = ws.run(&["validate"]);
    out.status(2);
    let text = out.stdout() + &out.stderr();
    for expected in [
        "docs/workflow/workflow.json:25:19: at /nodes/0/agent/prompt: the prompt template templates/qa-prompt.md.hbs does not exist",
        "at /nodes/0/agent/outputs/0/schema: the schema `qa-report-v2.schema.json` is neither built in nor in schemas/qa-report-v2.schema.json",
        "at /nodes/0/agent/outputs/1/path: `docs/workflow/tasks.json` decides the workflow: an agent node may not declare it as an output",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    // The engine runs nothing on such a workflow, and says why.
    let run = ws.run(&["run"]);
    assert_ne!(run.code(), Some(0));
    assert!(run.stderr().contains("qa-prompt.md.hbs does not exist"), "{}", run.stderr());
    assert_eq!(the_task(&ws)["status"], "pending");
}

#[test]
fn a_runner_killed_mid_attempt_leaves_its_snapshot_and_the_next_run_puts_the_approval_back() {
    let ws = workspace("approve_then_hang", json!({}));
    let mut runner =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(30), "the agent to tick the approval", || ws.join("ticked").exists());
    assert!(ws.read_string(APPROVAL).contains("status: approved"));
    runner.kill().unwrap();
    runner.wait().unwrap();
    let run = ws.run(&["run"]);
    assert_eq!(ws.read_string(APPROVAL), APPROVAL_TEXT, "the approval is put back: {}", run.stdout());
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed", "{task:#}");
    let reason = task["outcome"]["summary"].as_str().unwrap();
    assert!(reason.contains("interrupted"), "{reason}");
    assert!(reason.contains("ended its process group"), "the agent left running is ended: {reason}");
    assert!(
        reason.contains(&format!(
            "put back what its agent changed of files that decide the workflow: {APPROVAL} (changed)"
        )),
        "{reason}"
    );
}

#[test]
fn a_task_an_agent_files_with_tasks_add_stays_and_is_on_record_with_its_run() {
    let ws = workspace("files_followup", json!({}));
    ws.run_with(&["run"], &[("OPSFLOW_BIN", crate::util::opsflow_bin())]).status(0);
    let tasks = ws.tasks();
    assert_eq!(task(&tasks, "BUG-7")["agent"], "Task-Coder");
    assert_eq!(task(&tasks, "QA-101")["status"], "done");
    let run_id = task(&tasks, "QA-101")["run_id"].as_str().unwrap().to_owned();
    let audit = ws.read_string(".opsflow/audit.jsonl");
    let added: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "task_added")
        .collect();
    assert_eq!(added.len(), 1, "{audit}");
    assert_eq!(added[0]["run_id"], run_id.as_str());
    assert_eq!(added[0]["subject"], "BUG-7");
}

#[test]
fn an_agent_that_forges_another_owned_task_is_undone_and_what_it_filed_is_cancelled_unless_pending() {
    let ws = workspace("forge", json!({}));
    let tasks = json!({"tasks": [
        {"id": "QA-101", "title": "Test the landing page", "agent": "QA-Engineer", "type": "qa_testing",
         "status": "pending", "unit_id": "UNIT-001", "version": "1.0.0"},
        {"id": "DEVOPS-7", "title": "Ship it", "agent": "DevOps-Engineer", "type": "deployment_production",
         "status": "pending", "unit_id": "UNIT-001", "version": "1.0.0", "depends_on": ["QA-101"]}
    ]});
    ws.write(TASKS, serde_json::to_string_pretty(&tasks).unwrap() + "\n");
    ws.run(&["run"]);
    let tasks = ws.tasks();
    assert_eq!(task(&tasks, "QA-101")["status"], "failed");
    assert_eq!(task(&tasks, "DEVOPS-7")["status"], "pending", "set back");
    assert_eq!(task(&tasks, "DEVOPS-8")["status"], "cancelled", "a finished task an agent filed does not count");
    assert_eq!(task(&tasks, "DEVOPS-9")["status"], "pending", "a pending one waits for its gates like any other");
    let problems: Vec<String> = attempts(task(&tasks, "QA-101"))[0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}: {}", d["file"].as_str().unwrap(), d["message"].as_str().unwrap()))
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("(task DEVOPS-7): set `status` \"pending\" -> \"deployed\"")),
        "{problems:#?}"
    );
    assert!(problems.iter().any(|p| p.contains("(task DEVOPS-8): filed a task with status `done`")), "{problems:#?}");
    assert!(!problems.iter().any(|p| p.contains("DEVOPS-9")), "{problems:#?}");
}

#[test]
fn other_agents_writing_tasks_json_during_an_attempt_keep_their_changes_and_the_attempt_passes() {
    let ws = workspace("wait", json!({}));
    let mut daemon = Daemon::start(&ws, &[], false);
    wait_until(Duration::from_secs(30), "the attempt to start", || ws.join("prompts.log").exists());
    // Another agent, not run by opsflow, edits the list meanwhile: its entry and a new one.
    let mut tasks: Value = serde_json::from_slice(&ws.read(TASKS)).unwrap();
    tasks["tasks"].as_array_mut().unwrap().push(json!({
        "id": "BE-9", "title": "Checkout page", "agent": "Backend-Engineer", "type": "implementation", "status": "in_progress"
    }));
    ws.write(TASKS, serde_json::to_string_pretty(&tasks).unwrap() + "\n");
    ws.write("go", "");
    wait_until(Duration::from_secs(30), "the task to be done", || the_task(&ws)["status"] == "done");
    daemon.terminate(Duration::from_secs(10));
    assert_eq!(task(&ws.tasks(), "BE-9")["status"], "in_progress", "another agent's entry is theirs");
    assert_eq!(verdicts(&the_task(&ws)), ["passed"]);
}

#[test]
fn a_daemon_stopped_during_an_attempt_kills_the_agent_after_its_grace_and_starts_no_other() {
    let ws = workspace("wait", json!({}));
    ws.write("project-config.json", r#"{"devops": {"shutdown_grace": "1s"}}"#);
    let mut daemon = Daemon::start(&ws, &[], false);
    wait_until(Duration::from_secs(30), "the attempt to start", || ws.join("prompts.log").exists());
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.code().is_some(), "{status:?}\n{}", daemon.log());
    let task = the_task(&ws);
    assert_eq!(task["status"], "failed", "{task:#}");
    assert_eq!(attempts(&task).len(), 1, "no attempt after the shutdown: {task:#}");
    let reason = task["outcome"]["summary"].as_str().unwrap();
    assert!(reason.contains("attempt 1 was stopped by opsflow's shutdown"), "{reason}");
    assert_eq!(ws.read_string("prompts.log").matches("=== attempt").count(), 1);
}
