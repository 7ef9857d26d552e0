//! `state.json`: byte-preserving edits of one node's entry and of `current_nodes`.

use serde_json::{Map, Value, json};

use super::edit::{self, FieldOp, Style};
use super::json::{self, SyntaxError};

/// Changes to `state.json` in one write.
#[derive(Debug, Clone, Default)]
pub struct StateEdit {
    pub node: String,
    pub fields: Vec<FieldOp>,
    /// The new `current_nodes`, when it changes.
    pub current_nodes: Option<Vec<String>>,
}

/// Applies `change` to the text of `state.json` (`None`: the file does not exist yet).
pub fn apply(text: Option<&str>, workflow: &str, change: &StateEdit) -> Result<String, SyntaxError> {
    let Some(text) = text else {
        let mut node = Map::new();
        FieldOp::apply_all(&change.fields, &mut node);
        let state = json!({
            "workflow": workflow,
            "current_nodes": change.current_nodes.clone().unwrap_or_default(),
            "nodes": { change.node.clone(): node },
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&state).expect("a Value serializes")));
    };
    let style = Style::detect(text);
    let root = json::root(text)?;
    let mut splices = Vec::new();
    let mut root_ops = Vec::new();
    match json::find_member(text, root.start, "nodes")? {
        Some(nodes) if text.as_bytes()[nodes.value.start] == b'{' => {
            match json::find_member(text, nodes.value.start, &change.node)? {
                Some(node) if text.as_bytes()[node.value.start] == b'{' => {
                    splices.extend(edit::edit_object(text, node.value.start, &change.fields, &style)?);
                }
                _ => {
                    let mut node = Map::new();
                    FieldOp::apply_all(&change.fields, &mut node);
                    let op = FieldOp::Set(change.node.clone(), Value::Object(node));
                    splices.extend(edit::edit_object(text, nodes.value.start, &[op], &style)?);
                }
            }
        }
        _ => {
            let mut node = Map::new();
            FieldOp::apply_all(&change.fields, &mut node);
            root_ops.push(FieldOp::Set("nodes".into(), json!({ change.node.clone(): node })));
        }
    }
    if let Some(current) = &change.current_nodes {
        root_ops.push(FieldOp::Set("current_nodes".into(), json!(current)));
    }
    if !root_ops.is_empty() {
        splices.extend(edit::edit_object(text, root.start, &root_ops, &style)?);
    }
    Ok(edit::apply(text, splices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_one_node_and_current_nodes_only() {
        let text = "{\n  \"workflow\": \"devops\",\n  \"current_nodes\": [\"A\"],\n  \"nodes\": {\n    \"A\": {\"status\": \"pending\", \"note\": 1},\n    \"B\": {\"status\": \"pending\"}\n  },\n  \"x\": true\n}\n";
        let change = StateEdit {
            node: "A".into(),
            fields: vec![FieldOp::Set("status".into(), json!("completed"))],
            current_nodes: Some(vec!["B".into()]),
        };
        let out = apply(Some(text), "devops", &change).unwrap();
        assert_eq!(
            out,
            text.replace("[\"A\"]", "[\n    \"B\"\n  ]")
                .replace("\"status\": \"pending\", \"note\"", "\"status\": \"completed\", \"note\"")
        );
        let change = StateEdit {
            node: "C".into(),
            fields: vec![FieldOp::Set("status".into(), json!("blocked"))],
            current_nodes: None,
        };
        let out = apply(Some(text), "devops", &change).unwrap();
        assert!(
            out.contains("\"B\": {\"status\": \"pending\"},\n    \"C\": {\n      \"status\": \"blocked\"\n    }\n  },"),
            "{out}"
        );
    }
}
