//! The markdown reader on arbitrary text: front matter of any shape, alias bombs included,
//! must give a document or a diagnostic, never a panic or unbounded memory (run with
//! `-rss_limit_mb` to catch the latter).

#![no_main]

use libfuzzer_sys::fuzz_target;
use opsflow::workspace::read::parse_markdown;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Give most inputs a front matter block so the YAML reader is what gets exercised.
    let text = if text.starts_with("---\n") { text.to_owned() } else { format!("---\n{text}\n---\nbody\n") };
    let _ = parse_markdown("fuzz.md", &text);
});
