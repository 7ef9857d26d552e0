//! The prompt of an attempt: the node's template (`templates/<prompt>.hbs` of the workspace,
//! else the built-in `agent-prompt.md`) rendered with the task, the node, its inputs (paths
//! and contents), the declared outputs with their schemas, and from the second attempt on the
//! previous attempt's verdict and diagnostics. Plain text: nothing is escaped, secrets are
//! masked by the caller.

use serde_json::{Value, json};

use super::verdict::Output;
use super::{Attempt, Verdict};
use crate::nodes::{NodeError, NodeRun};
use crate::workflow::agent::{AgentSpec, DEFAULT_PROMPT};

/// The built-in prompt template.
pub const BUILT_IN: &str = include_str!("../../templates/agent-prompt.md.hbs");

pub fn render(
    run: &NodeRun<'_>,
    spec: &AgentSpec,
    outputs: &[Output],
    attempt: u32,
    previous: Option<&Attempt>,
) -> Result<String, NodeError> {
    let ws = run.ws;
    let relative = format!("{}/{}.hbs", ws.config.paths.templates.trim_end_matches('/'), spec.prompt);
    let source = match ws.read_text(&relative) {
        Ok(Some(text)) => text,
        Ok(None) if spec.prompt == DEFAULT_PROMPT => BUILT_IN.to_owned(),
        Ok(None) => {
            return Err(NodeError::new(
                "prompt",
                format!("the prompt template {relative} does not exist (the built-in one is `{DEFAULT_PROMPT}`)"),
            ));
        }
        Err(problem) => return Err(NodeError::Input { step: "prompt", source: Box::new(problem) }),
    };
    let mut engine = handlebars::Handlebars::new();
    engine.set_strict_mode(false);
    engine.register_escape_fn(handlebars::no_escape);
    let inputs: Vec<Value> = run
        .inputs
        .iter()
        .map(|a| json!({"file": a.file, "sha256": a.sha256, "front_matter": a.front_matter, "body": a.body}))
        .collect();
    let outputs: Vec<Value> = outputs
        .iter()
        .map(|o| {
            let schema_text = o.schema.as_deref().and_then(|file| ws.schemas.source(file).ok()).map(|(_, text)| text);
            json!({"path": o.path, "schema": o.schema, "schema_text": schema_text})
        })
        .collect();
    let previous = previous.filter(|p| p.verdict != Verdict::Passed).map(|p| {
        json!({
            "attempt": p.attempt,
            "verdict": p.verdict.as_str(),
            "diagnostics": p.diagnostics,
            "diagnostics_json": serde_json::to_string_pretty(&p.diagnostics).unwrap_or_default(),
            "messages": p.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    let context = json!({
        "task": run.task.raw,
        "task_json": serde_json::to_string_pretty(&run.task.raw).unwrap_or_default(),
        "task_id": run.task.id,
        "title": run.task.title,
        "unit_id": run.release.unit,
        "version": run.release.version.as_str(),
        "node": {"name": run.node.name, "owner": run.node.owner},
        "attempt": attempt,
        "max_attempts": spec.max_attempts,
        "inputs": inputs,
        "outputs": outputs,
        "verify": spec.verify,
        "previous": previous,
    });
    engine
        .render_template(&source, &context)
        .map_err(|e| NodeError::new("prompt", format!("the prompt template {relative} does not render: {e}")))
}
