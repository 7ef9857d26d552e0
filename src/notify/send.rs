//! One attempt to hand an outbox entry to its channel: a webhook's POST (through the HTTP
//! client of `exec::http`, with its TLS and `ca_file`) or a command (through `exec::command`'s
//! runner: its own process group, a timeout, a masked log in `<runtime>/outbox/runs/<id>/`).
//! Success is a 2xx answer or an exit code of 0; anything else is a sentence for the log.

use serde_json::{Value, json};

use super::outbox::Entry;
use super::{Channel, CommandSpec, Format, Notice, Target, Url, Webhook};
use crate::exec::command::{Runner, kill_leftover_group};
use crate::exec::http;
use crate::exec::secrets::Secrets;
use crate::workspace::Workspace;

/// The most of a receiver's answer that is read.
const MAX_ANSWER: u64 = 64 * 1024;

pub(super) fn send(ws: &Workspace, secrets: &Secrets, channel: &Channel, entry: &Entry) -> Result<(), String> {
    match &channel.target {
        Target::Webhook(hook) => post(ws, secrets, channel, hook, &entry.notice),
        Target::Command(command) => run(ws, secrets, channel, command, &entry.notice),
    }
}

fn post(ws: &Workspace, secrets: &Secrets, channel: &Channel, hook: &Webhook, notice: &Notice) -> Result<(), String> {
    let url = match &hook.url {
        Url::Plain(url) => url.clone(),
        Url::Env(from) => from.resolve()?,
    };
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("Idempotency-Key".to_owned(), notice.event_id.clone()),
    ];
    for (name, value) in &hook.headers {
        headers.push((name.clone(), value.resolve().map_err(|why| format!("header {name}: {why}"))?));
    }
    let body = match hook.format {
        Format::Json => serde_json::to_vec(notice).expect("a notice serializes"),
        Format::Slack => serde_json::to_vec(&slack(notice)).expect("a payload serializes"),
    };
    let ca_file = hook.ca_file.as_ref().map(|file| ws.path(file));
    let request = http::Request { timeout: channel.timeout, max_body: MAX_ANSWER, ca_file: ca_file.as_deref() };
    let shown = secrets.mask(&url);
    match http::post(&url, &headers, &body, &request) {
        Ok((status, _)) if (200..300).contains(&status) => Ok(()),
        Ok((status, answer)) => {
            let answer: String = answer.trim().chars().take(200).collect();
            Err(secrets.mask(&format!(
                "{shown} answered {status}{}",
                if answer.is_empty() { String::new() } else { format!(": {answer}") }
            )))
        }
        Err(e) => Err(secrets.mask(&format!("POST {shown}: {e}"))),
    }
}

fn run(
    ws: &Workspace,
    secrets: &Secrets,
    channel: &Channel,
    command: &CommandSpec,
    notice: &Notice,
) -> Result<(), String> {
    let (line, timeout, cwd) = match command {
        CommandSpec::Line(line) => (line.as_str(), None, None),
        CommandSpec::Full { run, timeout, cwd } => (run.as_str(), *timeout, cwd.as_deref()),
    };
    let run_dir = ws.path(&ws.config.paths.runtime).join("outbox").join("runs").join(&notice.event_id);
    // A runner killed while this command ran left it running: it is ended before the retry.
    kill_leftover_group(&ws.root, &run_dir, &notice.run_id);
    let runner = Runner {
        run_dir,
        workspace: ws.root.clone(),
        env: Vec::new(),
        secrets: secrets.clone(),
        default_timeout: channel.timeout,
        abort: Default::default(),
    };
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    let env: Vec<(String, String)> = [
        ("OPSFLOW_EVENT", notice.event.clone()),
        ("OPSFLOW_EVENT_ID", notice.event_id.clone()),
        ("OPSFLOW_CHANNEL", notice.channel.clone()),
        ("OPSFLOW_UNIT_ID", notice.unit_id.clone()),
        ("OPSFLOW_VERSION", notice.version.clone()),
        ("OPSFLOW_ENVIRONMENT", notice.environment.clone()),
        ("OPSFLOW_TASK_ID", notice.task_id.clone()),
        ("OPSFLOW_RUN_ID", notice.run_id.clone()),
        ("OPSFLOW_MESSAGE", notice.message.clone()),
        ("OPSFLOW_FILE", optional(&notice.file)),
        ("OPSFLOW_COMMAND", optional(&notice.command)),
        ("OPSFLOW_LINK", optional(&notice.link)),
        ("OPSFLOW_WORKSPACE", ws.root.to_string_lossy().into_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let body = serde_json::to_vec(notice).expect("a notice serializes");
    let cwd = cwd.map(|dir| ws.path(dir));
    let result = runner.run_with_stdin(&format!("notify-{}", channel.name), line, cwd.as_deref(), timeout, &env, body);
    if result.success { Ok(()) } else { Err(result.summary) }
}

/// `&`, `<` and `>` as Slack's mrkdwn wants them.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Slack's incoming-webhook payload: `text` (the notification's line, and the fallback) and
/// `blocks` (a header, the message, the release, what answers it, the ids).
fn slack(notice: &Notice) -> Value {
    let event = serde_json::from_value::<super::Event>(Value::String(notice.event.clone()))
        .map(|e| e.headline())
        .unwrap_or("Event");
    let release = match (notice.unit_id.as_str(), notice.version.as_str()) {
        ("", _) => String::new(),
        (unit, "") => unit.to_owned(),
        (unit, version) => format!("{unit} {version}"),
    };
    let place = if notice.environment.is_empty() { String::new() } else { format!(" in {}", notice.environment) };
    let headline = format!("{event}{}{place}", if release.is_empty() { String::new() } else { format!(": {release}") });
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": headline.chars().take(150).collect::<String>()}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&notice.message)}}),
    ];
    let mut answer = Vec::new();
    if let Some(command) = &notice.command {
        answer.push(format!("run `{}`", slack_escape(command)));
    }
    match (&notice.file, &notice.link) {
        (Some(file), Some(link)) => answer.push(format!("edit <{link}|{}>", slack_escape(file))),
        (Some(file), None) => answer.push(format!("edit `{}`", slack_escape(file))),
        _ => {}
    }
    if !answer.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*To answer:* {}", answer.join(" or "))}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
        "task `{}` · run `{}` · event_id `{}`", slack_escape(&notice.task_id), notice.run_id, notice.event_id
    )}]}));
    json!({"text": slack_escape(&format!("[opsflow] {headline}: {}", notice.message)), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_payload_has_text_and_blocks_and_escapes_markup() {
        let notice = Notice {
            event_id: "e1".into(),
            event: "approval_waiting".into(),
            unit_id: "UNIT-001".into(),
            version: "1.0.0".into(),
            environment: "production".into(),
            message: "waits for <you> & me".into(),
            command: Some("opsflow approve UNIT-001 1.0.0".into()),
            file: Some("docs/R12.md".into()),
            link: Some("https://git.example/blob/main/docs/R12.md".into()),
            ..Notice::default()
        };
        let payload = slack(&notice);
        let text = payload["text"].as_str().unwrap();
        assert!(text.starts_with("[opsflow] Approval waiting: UNIT-001 1.0.0 in production: "), "{text}");
        assert!(text.contains("&lt;you&gt; &amp; me"), "{text}");
        let blocks = payload["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let answer = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(answer.contains("`opsflow approve UNIT-001 1.0.0`"), "{answer}");
        assert!(answer.contains("<https://git.example/blob/main/docs/R12.md|docs/R12.md>"), "{answer}");
        assert!(blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap().contains("event_id `e1`"));
    }
}
