//! `opsflow demo [--dir DIR]`: the whole pipeline on the built-in sample workspace.
//!
//! Copies the sample (embedded in the binary) to DIR, runs the engine until production waits
//! for a human, signs the approval request visibly as `demo`, and runs again to the end.
//! Prints what each node did and where to look.
//!
//! With `--agents` the workflow's other agents run too, as agent nodes of a `workflow.json`
//! the demo writes: a scripted merge agent writes R04, a scripted QA agent writes the QA
//! report and `qa-test-report.json` (its first report is refused and it fixes it from the
//! diagnostics in its second prompt), and the DevOps nodes follow, all in one run, up to the
//! production approval, which is left to the person trying it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use super::run::print_summary;
use crate::Exit;
use crate::engine::{Engine, Options, Summary};
use crate::workspace::Workspace;

pub fn run(dir: Option<&Path>, agents: bool) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => fresh_temp_dir()?,
    };
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        bail!("{} is not empty; the demo needs an empty or new directory", dir.display());
    }
    for (relative, content) in crate::sample::FILES {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().expect("sample files are in the workspace"))?;
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if agents {
        with_agents(&dir)?;
    }
    println!("opsflow demo: sample workspace copied to {}\n", dir.display());
    let ws = Workspace::open(&dir, None, None)?;
    super::require_valid_config(&ws)?;
    let _lock = crate::instance::acquire(&ws)?;
    let engine = match Engine::new(&ws, Options::default()) {
        Ok(engine) => engine,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return Ok(Exit::Invalid);
        }
    };
    println!("== first run: everything up to the production approval");
    let first = engine.run();
    print_summary(&first, false);
    let approval = dir.join(&ws.config.paths.artifacts).join("R12-prod-approval.md");
    if first.blocked.is_empty() || !approval.exists() {
        println!("\nthe pipeline did not stop at the production approval as expected");
        return Ok(first.exit());
    }
    if agents {
        print_nodes(&ws, &first, &Summary::default())?;
        println!("\nthe agents' attempts, as opsflow judged them:");
        for ran in first.ran.iter().filter(|r| r.agent.is_some()) {
            let verdicts = ran.agent.as_ref().map(|a| a.verdicts.join(", ")).unwrap_or_default();
            println!("  {:<12} {:<14} {verdicts}", ran.task, ran.node);
        }
        println!(
            "\nproduction waits for a person: `opsflow -C {} approve --as YOU` (or edit {}), then `opsflow -C {} run`",
            dir.display(),
            ws.label(&approval),
            dir.display()
        );
        println!(
            "prompts, outputs and verdicts of every attempt: .opsflow/runs/<run>/attempt-N.*; audit log: .opsflow/audit.jsonl"
        );
        println!("\ndemo finished in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(Exit::Ok);
    }
    println!("\n== a human approves production: the demo signs {} as `demo`", ws.label(&approval));
    sign(&approval)?;
    println!("\n== second run: production, verification, feedback");
    let second = engine.run();
    print_summary(&second, false);
    print_nodes(&ws, &first, &second)?;
    println!("\nwhere to look (in {}):", dir.display());
    for (what, path) in [
        ("tasks and their outcomes", ws.config.paths.tasks.as_str()),
        ("workflow position", ws.config.paths.state.as_str()),
        ("artifacts (INFRA, R, D series)", ws.config.paths.artifacts.as_str()),
        ("deployment report", ws.config.paths.deployment_report.as_str()),
        ("hand-off signal", ws.config.paths.completion_signal.as_str()),
        ("human requests", ws.config.paths.human_requests.as_str()),
        ("audit log", ".opsflow/audit.jsonl"),
        ("run logs", ".opsflow/runs/"),
        ("production (blue-green)", ".opsflow/envs/production/active"),
    ] {
        println!("  {what:<32} {path}");
    }
    println!("\ndemo finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(second.exit())
}

/// The scripted merge agent: writes the sample's R04, whatever its prompt says.
const MERGE_AGENT: &str = "#!/bin/sh
# A scripted stand-in for the agent that merges the code: reads its prompt, writes R04.
cat > /dev/null
cat > docs/workflow/artifacts/R04-merge-result.md <<'OPSFLOW_DEMO_END'
@R04@OPSFLOW_DEMO_END
echo 'merged feature/landing-page into main'
";

/// The scripted QA agent: its first report lacks the `status` its schema requires; once its
/// prompt carries the diagnostics of that attempt, it writes the report in full.
const QA_AGENT: &str = "#!/bin/sh
# A scripted stand-in for the QA agent: reads its prompt on stdin and writes the QA reports.
prompt=$(cat)
mkdir -p QA ARTIFACTS/qa-engineer
cat > ARTIFACTS/qa-engineer/qa-test-report.json <<'OPSFLOW_DEMO_END'
@TEST_REPORT@OPSFLOW_DEMO_END
case \"$prompt\" in
*'previous attempt'*)
cat > QA/QA-Report-UNIT-001.md <<'OPSFLOW_DEMO_END'
@QA_REPORT@OPSFLOW_DEMO_END
echo 'QA report fixed from the diagnostics' ;;
*)
printf -- '---\\nunit_id: \"UNIT-001\"\\nversion: \"1.0.0\"\\n---\\n\\n# QA Report\\n\\nAll suites pass.\\n' > QA/QA-Report-UNIT-001.md
echo 'QA complete, all tests pass' ;;
esac
";

/// Turns the copied sample into one whose merge and QA work is done by agent nodes.
fn with_agents(dir: &Path) -> anyhow::Result<()> {
    let sample = |name: &str| {
        crate::sample::FILES.iter().find(|(path, _)| *path == name).map(|(_, text)| *text).unwrap_or_default()
    };
    let r04 = "docs/workflow/artifacts/R04-merge-result.md";
    let qa_report = "QA/QA-Report-UNIT-001.md";
    let test_report = "ARTIFACTS/qa-engineer/qa-test-report.json";
    let scripts = [
        ("agents/merge-agent.sh", MERGE_AGENT.replace("@R04@", sample(r04))),
        (
            "agents/qa-agent.sh",
            QA_AGENT.replace("@TEST_REPORT@", sample(test_report)).replace("@QA_REPORT@", sample(qa_report)),
        ),
    ];
    for (relative, text) in scripts {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().expect("in a folder"))?;
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The outputs the agents write are not there yet.
    for relative in [r04, qa_report, test_report] {
        fs::remove_file(dir.join(relative)).with_context(|| format!("cannot remove {relative}"))?;
    }
    let mut graph = serde_json::to_value(crate::workflow::graph::Graph::built_in())?;
    let agent_nodes = serde_json::json!([
        {
            "name": "Merge_Code",
            "action": "agent",
            "owner": "Code-Reviewer",
            "task_types": ["code_merge"],
            "agent": {
                "command": "sh agents/merge-agent.sh",
                "outputs": [{"path": r04}],
                "timeout": "1m"
            }
        },
        {
            "name": "QA_Testing",
            "action": "agent",
            "owner": "QA-Engineer",
            "task_types": ["qa_testing"],
            "inputs": ["R04-merge-result.md"],
            "agent": {
                "command": "sh agents/qa-agent.sh",
                "outputs": [
                    {"path": "QA/QA-Report-{{unit_id}}.md", "schema": "qa-report.schema.json"},
                    {"path": test_report, "schema": "qa-test-report.schema.json"}
                ],
                "max_attempts": 3,
                "timeout": "1m"
            }
        }
    ]);
    if let (Some(nodes), Value::Array(extra)) = (graph["nodes"].as_array_mut(), agent_nodes) {
        nodes.splice(0..0, extra);
    }
    let workflow = dir.join("docs/workflow/workflow.json");
    fs::write(&workflow, serde_json::to_string_pretty(&graph)? + "\n")?;
    let tasks_path = dir.join("docs/workflow/tasks.json");
    let mut tasks: Value = serde_json::from_str(&fs::read_to_string(&tasks_path)?)?;
    let list = tasks["tasks"].as_array_mut().context("the sample's tasks.json has a `tasks` list")?;
    for task in list.iter_mut().filter(|t| t["id"] == "QA-001") {
        task["status"] = "pending".into();
        task["depends_on"] = serde_json::json!(["MERGE-001"]);
        if let Some(task) = task.as_object_mut() {
            task.remove("completed_at");
        }
    }
    list.insert(
        1,
        serde_json::json!({
            "id": "MERGE-001",
            "title": "Merge the landing page into main",
            "agent": "Code-Reviewer",
            "type": "code_merge",
            "status": "pending",
            "priority": "high",
            "unit_id": "UNIT-001",
            "version": "1.0.0",
            "depends_on": ["BE-001"]
        }),
    );
    fs::write(&tasks_path, serde_json::to_string_pretty(&tasks)? + "\n")?;
    Ok(())
}

fn fresh_temp_dir() -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("opsflow-demo-{}-{:x}", std::process::id(), stamp & 0xffff_ffff));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Approves the request the way a human would: front matter and the ticked box.
fn sign(path: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(path)?;
    let signed = text
        .replacen("status: \"pending\"", "status: \"approved\"", 1)
        .replacen("approved_by: null", "approved_by: \"demo\"", 1)
        .replacen("- [ ] Approved", "- [x] Approved", 1);
    if signed == text {
        bail!("{} does not look like opsflow's approval request", path.display());
    }
    fs::write(path, signed)?;
    Ok(())
}

fn print_nodes(ws: &Workspace, first: &Summary, second: &Summary) -> anyhow::Result<()> {
    let state_path = ws.path(&ws.config.paths.state);
    let state_text =
        fs::read_to_string(&state_path).with_context(|| format!("cannot read {}", state_path.display()))?;
    let state: Value = serde_json::from_str(&state_text).with_context(|| ws.config.paths.state.clone())?;
    println!("\n{:<36} {:<11} {:>8}  artifacts", "node", "status", "time");
    let graph = crate::workflow::graph::Graph::load(ws).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the workflow is invalid: {}", problems.join("; "))
    })?;
    for node in &graph.nodes {
        let status =
            state.pointer(&format!("/nodes/{}/status", node.name)).and_then(Value::as_str).unwrap_or("pending");
        let ran = first.ran.iter().chain(&second.ran).rfind(|r| r.node == node.name);
        let time = ran.map(|r| format!("{} ms", r.duration_ms)).unwrap_or_else(|| "-".into());
        let artifacts = ran
            .map(|r| {
                r.artifacts
                    .iter()
                    .map(|a| a.rsplit('/').find(|s| !s.is_empty()).unwrap_or(a).to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!("{:<36} {:<11} {:>8}  {}", node.name, status, time, artifacts);
    }
    Ok(())
}
