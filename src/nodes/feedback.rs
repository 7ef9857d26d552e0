//! Deployment_And_Continuous_Feedback: what runs where, and the feedback channels (D22, D23).

#[allow(unused_imports)]
use super::*;

/// The `kind` (or `type`) of each feedback channel, in the order of [`feedback_list`].
pub(crate) fn feedback_kinds(feedback: &Value) -> Vec<String> {
    let kind = |item: &Value| {
        item.get("kind").or_else(|| item.get("type")).and_then(Value::as_str).unwrap_or_default().to_owned()
    };
    match feedback {
        Value::Array(items) => items.iter().map(kind).collect(),
        Value::Object(map) => map.values().map(kind).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn feedback_list(feedback: &Value) -> Vec<Value> {
    match feedback {
        Value::Array(items) => items.iter().map(|item| channel(item, None)).collect(),
        Value::Object(map) => map.iter().map(|(name, item)| channel(item, Some(name))).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn channel(item: &Value, name: Option<&str>) -> Value {
    let mut out = Map::new();
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    };
    let obj = item.as_object();
    let field = |key: &str| obj.and_then(|o| o.get(key));
    out.insert("name".into(), Value::String(name.map(str::to_owned).unwrap_or_else(|| text(field("name")))));
    out.insert("type".into(), Value::String(text(field("type"))));
    let target =
        if item.is_string() { text(Some(item)) } else { text(field("url").or(field("target")).or(field("command"))) };
    out.insert("target".into(), Value::String(target));
    out.insert("description".into(), Value::String(text(field("description"))));
    Value::Object(out)
}

pub(crate) fn feedback(run: &mut NodeRun<'_>) -> Result<Outcome, NodeError> {
    let mut running = Vec::new();
    for env in run.ws.environments.iter() {
        // What runs there is what the environment's record says is live.
        let record = env.history(run.ws).map_err(NodeError::Record)?;
        let deployment = env.live(run.ws, &record);
        let live = match env.local(&run.ws.root) {
            Some(local) => local.live_dir().unwrap_or_default(),
            None => deployment.as_ref().map(|d| d.label()).unwrap_or_default(),
        };
        let version = deployment.as_ref().map(|d| d.version.clone()).unwrap_or_default();
        let unit = deployment.as_ref().map(|d| d.unit_id.clone()).unwrap_or_default();
        running.push(json!({"environment": env.name, "provider": env.provider, "strategy": env.strategy(), "live": live, "version": version, "unit_id": unit}));
    }
    let candidate = run.inputs.iter().find(|a| a.file.contains("D21-release-candidate")).map(|a| a.file.clone());
    let extra = json!({"running": running, "release_candidate": candidate});
    run.write_markdown("D22-deployed-product.md", None, "completed", extra.clone())?;
    run.write_markdown("D23-feedback-channels.md", None, "completed", extra)?;
    run.summary = format!(
        "recorded {} environments and {} feedback channels",
        running.len(),
        feedback_list(&run.ws.config.feedback).len()
    );
    Ok(Outcome::Done)
}
