//! Agent nodes: opsflow runs another agent of the workflow (an LLM command line or any
//! program) and decides itself whether the agent succeeded.
//!
//! Each attempt renders the prompt (`prompt.rs`), snapshots the files that decide the
//! workflow (`guard.rs`), runs the command with `sh -c` in its own process group (the prompt
//! on stdin and in `$OPSFLOW_PROMPT_FILE`, logs in `runs/<run>/attempt-N.{prompt,stdout,
//! stderr}`), then judges: protected files unchanged (else they are restored and the task
//! fails), every declared output written and valid (`verdict.rs`), every `verify` command
//! passing. A failed attempt is tried again with its diagnostics in the next prompt; a
//! transient one (could not start, a signal, a non-zero exit that touched no output) is
//! retried with backoff and counted apart; a budget (`usage.rs` reads what was spent) that
//! runs out stops the task. What the command printed about itself never counts.

pub mod guard;
mod prompt;
pub mod usage;
pub mod verdict;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::Audit;
use crate::nodes::{NodeError, NodeRun, Outcome};
use crate::workflow::agent::{AgentSpec, OnExceed};
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::write;
use usage::Usage;
use verdict::Output;

/// How an attempt ended, as the task's outcome and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every output valid, every verify command passed, nothing protected touched.
    Passed,
    /// An output missing, unchanged, invalid, empty or a placeholder.
    Invalid,
    /// A verify command failed.
    VerifyFailed,
    /// The attempt ran past its timeout; its process group was killed.
    TimedOut,
    /// The command could not start, was killed by a signal, or failed without touching any
    /// output: tried again apart from the attempts.
    Transient,
    /// The agent changed a file that decides the workflow; the change was undone.
    Tampered,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Invalid => "invalid",
            Verdict::VerifyFailed => "verify_failed",
            Verdict::TimedOut => "timed_out",
            Verdict::Transient => "transient",
            Verdict::Tampered => "tampered",
        }
    }
}

/// One attempt, as the task's `outcome.attempts` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub verdict: Verdict,
    pub diagnostics: Vec<Diagnostic>,
    /// The attempt's files: `prompt`, `stdout`, `stderr` (workspace-relative).
    pub logs: Value,
    /// Stopped by opsflow's shutdown (past its grace period), not by the agent or its timeout.
    #[serde(skip)]
    pub aborted: bool,
}

/// The progress of a running agent node, in `runs/<run>/agent.json`, for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Progress {
    pub node: String,
    pub task: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub started_at: String,
    pub attempt_started_at: String,
    pub pid: u32,
    #[serde(default)]
    pub finished: bool,
}

/// The file that holds a run's [`Progress`].
pub const PROGRESS_FILE: &str = "agent.json";

/// Runs the agent node of `run`.
pub fn run(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let spec = run
        .node
        .agent
        .clone()
        .ok_or_else(|| NodeError::new("agent", format!("node `{}` has no `agent` object", run.node.name)))?;
    let outputs = resolve_outputs(run, &spec)?;
    let output_paths: Vec<String> = outputs.iter().map(|o| o.path.clone()).collect();
    // What the outputs held before the first attempt: an output must be written in this run.
    let before: Vec<(Output, verdict::Before)> =
        outputs.iter().map(|o| (o.clone(), verdict::fingerprint(run.ws, &o.path))).collect();
    let audit = Audit::of(run.ws, run.runner.secrets.clone());
    let started = Instant::now();
    let started_at = crate::time::now_rfc3339();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut spent = Usage::default();
    let mut cost_known = false;
    let mut transient_left = spec.transient_retries;
    let mut backoff = spec.backoff;
    let mut number = 0u32;
    // Attempts that count against `max_attempts`: all but the transient failures retried.
    let mut counted = 0u32;
    let mut warned: Vec<String> = Vec::new();
    let ended = loop {
        if counted >= spec.max_attempts {
            break None;
        }
        number += 1;
        let time_left = spec.budget.time.map(|limit| limit.saturating_sub(started.elapsed()));
        if time_left.is_some_and(|left| left.is_zero()) {
            break Some(over_budget("time", &format!("{} spent", crate::duration::format_duration(started.elapsed()))));
        }
        if run.runner.abort.load(std::sync::atomic::Ordering::SeqCst) {
            break Some(Err("opsflow was shutting down; no attempt starts".to_owned()));
        }
        let previous = attempts.last();
        let attempt = match run_attempt(run, &spec, &before, &output_paths, number, previous, &started_at, time_left) {
            Ok(attempt) => attempt,
            Err(error) => {
                // The attempts so far stay on record with the failure that ended them.
                run.attempts = attempts.iter().map(|a| serde_json::to_value(a).unwrap_or(Value::Null)).collect();
                return Err(error);
            }
        };
        if let Some(usage) = attempt.usage {
            spent.input_tokens = spent.input_tokens.saturating_add(usage.input_tokens);
            spent.output_tokens = spent.output_tokens.saturating_add(usage.output_tokens);
            if let Some(cost) = usage.cost_usd {
                spent.cost_usd = Some(spent.cost_usd.unwrap_or(0.0) + cost);
                cost_known = true;
            }
        }
        let detail = format!(
            "{} attempt {number}: {}{}{}",
            run.node.name,
            attempt.verdict.as_str(),
            attempt.usage.map(|u| format!(", {} tokens", u.tokens())).unwrap_or_default(),
            attempt.diagnostics.first().map(|d| format!("; {d}")).unwrap_or_default(),
        );
        audit.record(&run.run_id, "agent_attempt", &run.task.id, &detail, &[]);
        let verdict = attempt.verdict;
        attempts.push(attempt);
        if attempts.last().is_some_and(|a| a.aborted) {
            break Some(Err(format!("attempt {number} was stopped by opsflow's shutdown")));
        }
        match verdict {
            Verdict::Passed => break Some(Ok(())),
            Verdict::Tampered => break Some(Err(format!("attempt {number} changed files that decide the workflow"))),
            Verdict::Transient if transient_left > 0 => {
                transient_left -= 1;
                // It does not count as an attempt: tried again after a pause that doubles.
                std::thread::sleep(backoff);
                backoff = backoff.saturating_mul(2);
            }
            _ => counted += 1,
        }
        // A budget checked after every attempt: the next one does not start past it.
        let over = [
            spec.budget
                .tokens
                .filter(|limit| spent.tokens() > *limit)
                .map(|limit| ("tokens", format!("{} tokens spent, the budget is {limit}", spent.tokens()))),
            spec.budget.cost_usd.filter(|limit| cost_known && spent.cost_usd.unwrap_or(0.0) > *limit).map(|limit| {
                ("cost_usd", format!("${:.4} spent, the budget is ${limit}", spent.cost_usd.unwrap_or(0.0)))
            }),
            spec.budget.time.filter(|limit| started.elapsed() > *limit).map(|limit| {
                (
                    "time",
                    format!(
                        "{} spent, the budget is {}",
                        crate::duration::format_duration(started.elapsed()),
                        crate::duration::format_duration(limit)
                    ),
                )
            }),
        ];
        if let Some((what, why)) = over.into_iter().flatten().next() {
            match spec.budget.on_exceed {
                OnExceed::Stop => break Some(over_budget(what, &why)),
                OnExceed::Warn if !warned.iter().any(|w| w == what) => {
                    tracing::warn!("{}: over its {what} budget ({why}); going on (`on_exceed: warn`)", run.task.id);
                    audit.record(&run.run_id, "agent_over_budget", &run.task.id, &why, &[]);
                    warned.push(what.to_owned());
                }
                OnExceed::Warn => {}
            }
        }
    };
    let progress_path = crate::nodes::run_dir(run.ws, &run.run_id).join(PROGRESS_FILE);
    write::remove_file(&run.ws.root, &progress_path).ok();
    run.attempts = attempts.iter().map(|a| serde_json::to_value(a).unwrap_or(Value::Null)).collect();
    run.agent_usage = Some((spent, cost_known));
    let said = attempts
        .iter()
        .map(|a| {
            let why = a.diagnostics.first().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("attempt {}: {}{why}", a.attempt, a.verdict.as_str())
        })
        .collect::<Vec<_>>()
        .join("; ");
    let last_log =
        attempts.last().and_then(|a| a.logs.get("stderr")).and_then(Value::as_str).unwrap_or_default().to_owned();
    match ended {
        Some(Ok(())) => {
            run.artifacts.extend(output_paths);
            let transient = number - (counted + 1);
            run.summary = if transient == 0 {
                format!("{} passed opsflow's checks on attempt {number} of {}", run.node.name, spec.max_attempts)
            } else {
                format!(
                    "{} passed opsflow's checks on attempt {} of {} (after {transient} transient failures retried)",
                    run.node.name,
                    counted + 1,
                    spec.max_attempts
                )
            };
            Ok(Outcome::Done)
        }
        Some(Err(reason)) => Err(NodeError::Agent { reason: format!("{reason}: {said}"), log: last_log }),
        None => Err(NodeError::Agent {
            reason: format!(
                "no attempt of {} passed opsflow's checks ({} of {}): {said}",
                run.node.name, spec.max_attempts, spec.max_attempts
            ),
            log: last_log,
        }),
    }
}

fn over_budget(what: &str, why: &str) -> Result<(), String> {
    Err(format!("the task's {what} budget ran out ({why})"))
}

/// The declared outputs with their paths rendered for this task, each checked to stay in the
/// workspace.
fn resolve_outputs(run: &NodeRun<'_>, spec: &AgentSpec) -> Result<Vec<Output>, NodeError> {
    let mut engine = handlebars::Handlebars::new();
    engine.set_strict_mode(true);
    engine.register_escape_fn(handlebars::no_escape);
    let context = json!({
        "unit_id": run.release.unit,
        "version": run.release.version.as_str(),
        "task_id": run.task.id,
        "run_id": run.run_id,
        "node": run.node.name,
    });
    spec.outputs
        .iter()
        .map(|output| {
            let path = engine.render_template(&output.path, &context).map_err(|e| {
                NodeError::new("outputs", format!("the output path `{}` does not render: {e}", output.path))
            })?;
            crate::config::relative_inside(&path).map_err(|why| {
                NodeError::new("outputs", format!("the output path `{path}` (from `{}`) {why}", output.path))
            })?;
            Ok(Output { path, schema: output.schema.clone() })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_attempt(
    run: &NodeRun<'_>,
    spec: &AgentSpec,
    before: &[(Output, verdict::Before)],
    output_paths: &[String],
    number: u32,
    previous: Option<&Attempt>,
    started_at: &str,
    time_left: Option<Duration>,
) -> Result<Attempt, NodeError> {
    let ws = run.ws;
    let run_dir = crate::nodes::run_dir(ws, &run.run_id);
    let step = format!("attempt-{number}");
    let attempt_started = crate::time::now_rfc3339();
    let progress = Progress {
        node: run.node.name.clone(),
        task: run.task.id.clone(),
        attempt: number,
        max_attempts: spec.max_attempts,
        started_at: started_at.to_owned(),
        attempt_started_at: attempt_started.clone(),
        pid: std::process::id(),
        finished: false,
    };
    let progress_json = serde_json::to_vec_pretty(&progress).unwrap_or_default();
    write::write_file(&ws.root, &run_dir.join(PROGRESS_FILE), &progress_json)
        .map_err(|source| NodeError::Io { step: "agent", source })?;
    let outputs: Vec<Output> = before.iter().map(|(o, _)| o.clone()).collect();
    let prompt = prompt::render(run, spec, &outputs, number, previous)?;
    let prompt = run.runner.secrets.mask(&prompt);
    let prompt_path = run_dir.join(format!("{step}.prompt"));
    write::write_file(&ws.root, &prompt_path, prompt.as_bytes())
        .map_err(|source| NodeError::Io { step: "prompt", source })?;
    let label = |path: &std::path::Path| path.strip_prefix(&ws.root).unwrap_or(path).to_string_lossy().into_owned();
    // Outputs as this attempt found them, to tell whether it touched any.
    let found: Vec<verdict::Before> = outputs.iter().map(|o| verdict::fingerprint(ws, &o.path)).collect();
    let clock_started = std::time::SystemTime::now();
    let snapshot = guard::Snapshot::take(ws, output_paths);
    // Saved while the attempt runs: a runner killed meanwhile leaves it for recovery.
    let guard_dir = run_dir.join(format!("{step}.guard"));
    snapshot.save(ws, &guard_dir).map_err(|source| NodeError::Io { step: "agent", source })?;
    let env = vec![
        ("OPSFLOW_PROMPT_FILE".to_owned(), prompt_path.to_string_lossy().into_owned()),
        ("OPSFLOW_ATTEMPT".to_owned(), number.to_string()),
        ("OPSFLOW_MAX_ATTEMPTS".to_owned(), spec.max_attempts.to_string()),
        ("OPSFLOW_NODE".to_owned(), run.node.name.clone()),
        ("OPSFLOW_OUTPUTS".to_owned(), output_paths.join("\n")),
    ];
    let timeout = time_left.map_or(spec.timeout, |left| left.min(spec.timeout));
    let (result, stdout) = run.runner.run_split(&step, &spec.command, Some(timeout), &env, prompt.clone().into_bytes());
    let usage = usage::parse(&stdout.bytes);
    let logs = json!({
        "prompt": label(&prompt_path),
        "stdout": label(&run_dir.join(format!("{step}.stdout"))),
        "stderr": result.log,
    });
    let finish = |verdict: Verdict, diagnostics: Vec<Diagnostic>| Attempt {
        attempt: number,
        started_at: attempt_started.clone(),
        ended_at: crate::time::now_rfc3339(),
        duration_ms: result.duration_ms,
        exit_code: result.exit_code,
        signal: result.signal,
        timed_out: result.timed_out,
        usage,
        verdict,
        diagnostics,
        logs: logs.clone(),
        aborted: result.aborted,
    };
    // First what the agent may not touch: undone whatever else happened.
    let changes = snapshot.restore(ws, &run_dir.join(format!("{step}.displaced")));
    if let Err(e) = write::remove_tree(&ws.root, &guard_dir) {
        tracing::warn!("cannot remove {}: {e}", guard_dir.display());
    }
    if !changes.is_empty() {
        let diagnostics = changes
            .iter()
            .map(|change| {
                let undone = match &change.not_restored {
                    None => "opsflow put it back".to_owned(),
                    Some(why) => format!("opsflow could not put it back: {why}"),
                };
                Diagnostic::new(
                    &change.file,
                    Kind::Protected,
                    format!("{}, which decides the workflow and is not an output of this node; {undone}", change.what),
                )
                .rule("protected")
            })
            .collect();
        return Ok(finish(Verdict::Tampered, diagnostics));
    }
    if result.timed_out {
        let message = format!(
            "the attempt ran past its timeout of {}; its process group was killed",
            crate::duration::format_duration(timeout)
        );
        return Ok(finish(
            Verdict::TimedOut,
            vec![Diagnostic::new(&result.log, Kind::Verify, message).rule("timeout")],
        ));
    }
    let touched = outputs.iter().zip(&found).any(|(output, was)| verdict::fingerprint(ws, &output.path) != *was);
    let could_not_start = result.exit_code == Some(127)
        || result.exit_code == Some(126)
        || (result.exit_code.is_none() && result.signal.is_none());
    let transient = could_not_start || result.signal.is_some() || (result.exit_code != Some(0) && !touched);
    if transient {
        let how = match (result.exit_code, result.signal) {
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            (Some(127), _) => "could not start (exit code 127: command not found)".to_owned(),
            (Some(126), _) => "could not start (exit code 126: not executable)".to_owned(),
            (Some(code), _) => format!("exited with code {code} without writing any output"),
            (None, None) => format!("could not start: {}", result.tail),
        };
        let message = format!("the command {how} (log: {})", result.log);
        return Ok(finish(
            Verdict::Transient,
            vec![Diagnostic::new(&result.log, Kind::Verify, message).rule("transient")],
        ));
    }
    let problems = verdict::check(ws, before, clock_started);
    if !problems.is_empty() {
        return Ok(finish(Verdict::Invalid, problems));
    }
    for (index, command) in spec.verify.iter().enumerate() {
        let check = run.runner.run(&format!("{step}-verify-{}", index + 1), command, None, None, &[]);
        if !check.success {
            let message = format!("`{}`: {}; last output:\n{}", check.command, check.summary(), check.tail);
            return Ok(finish(
                Verdict::VerifyFailed,
                vec![Diagnostic::new(&check.log, Kind::Verify, message).rule("verify")],
            ));
        }
    }
    Ok(finish(Verdict::Passed, Vec::new()))
}
