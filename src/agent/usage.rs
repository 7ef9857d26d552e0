//! What an attempt spent, as the agent's command line reported it on its standard output.
//!
//! Three shapes are read: Claude Code's `--output-format json` result object (`usage` with
//! `input_tokens` and `output_tokens`, and `total_cost_usd`), codex's `exec --json` event
//! stream (the `usage` of every `turn.completed` event, summed), and generically the last
//! line of standard output that is a JSON object with `usage.input_tokens` /
//! `usage.output_tokens` (and `cost_usd` or `total_cost_usd` when it knows its cost). A
//! command that reports nothing spent nothing opsflow can count.

use serde::Serialize;
use serde_json::Value;

/// Tokens and cost of one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Usage {
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// The usage `stdout` reports, if it reports any.
pub fn parse(stdout: &[u8]) -> Option<Usage> {
    let text = String::from_utf8_lossy(stdout);
    let objects: Vec<Value> = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect();
    // codex: one `turn.completed` event per turn, each with that turn's usage.
    let turns: Vec<&Value> = objects.iter().filter(|o| o["type"] == "turn.completed").collect();
    if !turns.is_empty() {
        let mut total = Usage::default();
        for turn in turns {
            let usage = of(turn)?;
            total.input_tokens = total.input_tokens.saturating_add(usage.input_tokens);
            total.output_tokens = total.output_tokens.saturating_add(usage.output_tokens);
        }
        return Some(total);
    }
    if let Some(usage) = objects.iter().rev().find_map(of) {
        return Some(usage);
    }
    // A result printed over several lines (pretty-printed JSON).
    serde_json::from_str::<Value>(text.trim()).ok().as_ref().and_then(of)
}

fn of(object: &Value) -> Option<Usage> {
    let usage = object.get("usage")?;
    let count = |key: &str| usage.get(key).and_then(Value::as_u64);
    let (input, output) = (count("input_tokens"), count("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let cost = ["total_cost_usd", "cost_usd"]
        .iter()
        .find_map(|key| object.get(*key).or_else(|| usage.get(*key)).and_then(Value::as_f64));
    Some(Usage { input_tokens: input.unwrap_or(0), output_tokens: output.unwrap_or(0), cost_usd: cost })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_codes_result_object_gives_tokens_and_cost() {
        let out = br#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.0421,"usage":{"input_tokens":1200,"cache_read_input_tokens":5000,"output_tokens":340}}"#;
        assert_eq!(parse(out), Some(Usage { input_tokens: 1200, output_tokens: 340, cost_usd: Some(0.0421) }));
    }

    #[test]
    fn codex_events_are_summed_over_turns() {
        let out = b"{\"type\":\"thread.started\",\"thread_id\":\"t\"}\n{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":100,\"cached_input_tokens\":20,\"output_tokens\":10}}\nsome text\n{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":50,\"output_tokens\":5}}\n";
        assert_eq!(parse(out), Some(Usage { input_tokens: 150, output_tokens: 15, cost_usd: None }));
    }

    #[test]
    fn a_last_json_line_with_usage_counts_and_plain_text_does_not() {
        let out = b"working...\n{\"usage\":{\"input_tokens\":7,\"output_tokens\":3},\"cost_usd\":0.5}\n";
        assert_eq!(parse(out), Some(Usage { input_tokens: 7, output_tokens: 3, cost_usd: Some(0.5) }));
        assert_eq!(parse(b"all tests pass, task complete\n"), None);
        assert_eq!(parse(b"{\"usage\":\"lots\"}\n"), None);
    }

    #[test]
    fn pretty_printed_result_is_read_whole() {
        let out = b"{\n  \"usage\": {\n    \"input_tokens\": 9,\n    \"output_tokens\": 1\n  }\n}\n";
        assert_eq!(parse(out).map(|u| u.tokens()), Some(10));
    }
}
