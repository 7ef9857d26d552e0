//! `opsflow graph [--format mermaid|dot]`: the workflow with the current position.

use crate::Exit;
use crate::cli::GraphFormat;
use crate::schema::SchemaName;
use crate::validate::load_json;
use crate::workflow::graph::Graph;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, format: GraphFormat) -> anyhow::Result<Exit> {
    let graph = match Graph::load(ws) {
        Ok(graph) => graph,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return Ok(Exit::Invalid);
        }
    };
    let state = load_json(ws, &ws.config.paths.state, SchemaName::State);
    for problem in &state.diagnostics {
        eprintln!("{problem}");
    }
    let state = state.value.unwrap_or(serde_json::Value::Null);
    print!(
        "{}",
        match format {
            GraphFormat::Mermaid => graph.mermaid(&state),
            GraphFormat::Dot => graph.dot(&state),
        }
    );
    Ok(Exit::Ok)
}
