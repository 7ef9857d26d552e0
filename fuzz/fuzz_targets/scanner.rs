//! The span scanner against the strict `serde_json` reader on arbitrary bytes: they must agree
//! on what is valid, a task list the scan accepts must decode entry by entry, and nothing may
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opsflow::store::{json, tasks};
use opsflow::workspace::read::parse_json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let scanner = json::root(text).is_ok();
    let serde = parse_json("fuzz.json", text).is_ok();
    assert_eq!(scanner, serde, "the scanner and serde_json disagree on {text:?}");
    if let Ok((_, heads)) = tasks::heads(text) {
        for head in &heads {
            assert!(head.try_value(text).is_ok(), "entry {} passed the scan but does not decode", head.index);
        }
    }
});
