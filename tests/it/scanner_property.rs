//! The span scanner against `serde_json`, on generated text: they must agree on what is valid
//! JSON, hostile numbers, escapes, nesting and duplicate keys included, and a splice of the
//! store must give what `serde_json` gives for the same change.
//!
//! The reference is `workspace::read::parse_json`: `serde_json` with duplicate keys refused,
//! the rule every reader of workflow files follows. A span the scanner passes is decoded with
//! `serde_json` later, so where they disagree a reader panics or acts on a file that
//! `validate` rejects.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use opsflow::store::edit::FieldOp;
use opsflow::store::json;
use opsflow::store::tasks::{self, TaskEdits};
use opsflow::workspace::read::parse_json;

/// Numbers near every edge: past `f64` both ways, underflow, long integers, and malformed ones.
fn number() -> impl Strategy<Value = String> {
    let fixed = prop_oneof![
        Just("0".to_owned()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("1e-400".to_owned()),
        Just("0e999999999999".to_owned()),
        Just("1e999999999999".to_owned()),
        Just("1.7976931348623157e308".to_owned()),
        Just("1.7976931348623159e308".to_owned()),
        Just("17976931348623157e292".to_owned()),
        Just("179769313486231580000000000000e279".to_owned()),
        Just("9".repeat(309)),
        Just("9".repeat(400)),
        Just(format!("0.{}1", "0".repeat(400))),
        Just(format!("{}.5e-100", "9".repeat(400))),
        Just("01".to_owned()),
        Just("1.".to_owned()),
        Just(".5".to_owned()),
        Just("-".to_owned()),
        Just("1e".to_owned()),
        Just("+1".to_owned()),
    ];
    let built =
        (any::<bool>(), "[1-9][0-9]{0,24}", proptest::option::of("[0-9]{1,20}"), proptest::option::of(-420i32..420))
            .prop_map(|(negative, int, fraction, exponent)| {
                let mut n = String::new();
                if negative {
                    n.push('-');
                }
                n.push_str(&int);
                if let Some(f) = fraction {
                    n.push('.');
                    n.push_str(&f);
                }
                if let Some(e) = exponent {
                    n.push_str(&format!("e{e}"));
                }
                n
            });
    prop_oneof![fixed, built]
}

/// String literals built from pieces that include every escape, lone surrogates in both
/// orders, invalid escapes and raw control characters.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a"),
        Just("id"),
        Just("é🚀"),
        Just("\\n"),
        Just("\\\""),
        Just("\\\\"),
        Just("\\/"),
        Just("\\u00e9"),
        Just("\\u0041"),
        Just("\\ud83d\\ude80"),
        Just("\\ud83d"),
        Just("\\udc00"),
        Just("\\ude80\\ud83d"),
        Just("\\ud83d\\u0041"),
        Just("\\ud83d\\n"),
        Just("\\ud83d\\ud83d\\ude80"),
        Just("\\uD83D\\uDE80"),
        Just("\\uzzzz"),
        Just("\\x"),
        Just("\t"),
        Just("\u{1}"),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

/// Keys from a small set so that objects often repeat one, sometimes only after unescaping.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"id\"".to_owned()),
        Just("\"status\"".to_owned()),
        Just("\"\\u0069d\"".to_owned()),
        Just("\"x\"".to_owned()),
        Just("\"y\"".to_owned()),
        Just("\"\\ud83d\"".to_owned()),
        string(),
    ]
}

/// A JSON-like text: mostly valid, with every hostile leaf, and now and then broken syntax.
fn text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => number(),
        4 => string(),
        1 => Just("true".to_owned()),
        1 => Just("null".to_owned()),
        1 => Just("nul".to_owned()),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec((key(), inner), 0..6).prop_map(|members| {
                let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{\n  {}\n}}", members.join(",\n  "))
            }),
            // Trailing commas and missing separators.
            proptest::collection::vec(any::<u8>(), 1..3).prop_map(|_| "[1,]".to_owned()),
        ]
    })
}

/// `value` wrapped in `levels` arrays: around `serde_json`'s limit of 128.
fn nested() -> impl Strategy<Value = String> {
    (115usize..140, prop_oneof![Just("[]"), Just("{}"), Just("1")], any::<bool>()).prop_map(
        |(levels, inner, objects)| {
            let mut text = inner.to_owned();
            for level in 0..levels {
                text = if objects && level % 2 == 0 { format!("{{\"k\": {text}}}") } else { format!("[{text}]") };
            }
            text
        },
    )
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() })
}

#[test]
fn the_scanner_accepts_exactly_what_the_strict_serde_reader_accepts() {
    runner()
        .run(&prop_oneof![4 => text(), 1 => nested()], |text| {
            let scanner = json::root(&text);
            let serde = parse_json("t.json", &text);
            prop_assert_eq!(scanner.is_ok(), serde.is_ok(), "scanner {:?}, serde {:?}, on {}", scanner, serde, text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_task_list_scan_accepts_exactly_what_the_strict_serde_reader_accepts() {
    let entry = proptest::collection::vec((key(), prop_oneof![text(), nested()]), 0..5);
    // 0: a bare array, 1: `{"tasks": [...]}`, 2 and 3: Task Master's tagged form, with the
    // entry in the tag read (2) or in another tag, walked as JSON only (3).
    runner()
        .run(&(entry, 0..4u8), |(members, shape)| {
            let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let entry = format!("{{{}}}", members.join(", "));
            let text = match shape {
                0 => format!("[{entry}]"),
                1 => format!("{{\"version\": 1, \"tasks\": [\n  {{\"id\": \"A\"}},\n  {entry}\n]}}\n"),
                2 => format!("{{\"master\": {{\"tasks\": [{{\"id\": 1}}, {entry}], \"metadata\": {{}}}}}}"),
                _ => format!(
                    "{{\"master\": {{\"tasks\": [{{\"id\": 1}}]}}, \"other\": {{\"tasks\": [{entry}], \"metadata\": {entry}}}}}"
                ),
            };
            let selection = tasks::Selection::tag("master");
            let scanned = tasks::scan_in(&text, &selection, |_| true).map(|(_, heads)| heads.len());
            let serde = parse_json("tasks.json", &text);
            prop_assert_eq!(scanned.is_ok(), serde.is_ok(), "scan {:?}, serde {:?}, on {}", scanned, serde, text);
            Ok(())
        })
        .unwrap();
}

/// Valid JSON values for the edits.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        "[a-z\u{e9}\"\\\\ \n\u{1F680}]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn a_splice_gives_what_serde_json_gives_for_the_same_change() {
    let task = proptest::collection::btree_map("(title|status|notes|agent|x)", value(), 0..5);
    let style = prop_oneof![Just(0usize), Just(2), Just(4)];
    let op = prop_oneof![
        ("(title|status|notes|extra|x)", value()).prop_map(|(k, v)| FieldOp::Set(k, v)),
        "(title|status|notes|x)".prop_map(FieldOp::Remove),
    ];
    runner()
        .run(
            &(
                proptest::collection::vec(task, 1..4),
                0usize..4,
                proptest::collection::vec(op, 1..4),
                style,
                any::<bool>(),
            ),
            |(entries, pick, ops, indent, wrapped)| {
                let tasks: Vec<Value> = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, fields)| {
                        let mut task = serde_json::Map::new();
                        task.insert("id".into(), format!("T-{i}").into());
                        task.extend(fields);
                        Value::Object(task)
                    })
                    .collect();
                let pick = pick % tasks.len();
                let document = if wrapped { serde_json::json!({ "tasks": tasks }) } else { Value::from(tasks.clone()) };
                let text = if indent == 0 {
                    serde_json::to_string(&document).unwrap()
                } else {
                    let mut out = Vec::new();
                    let indent = " ".repeat(indent);
                    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
                    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
                    serde::Serialize::serialize(&document, &mut serializer).unwrap();
                    String::from_utf8(out).unwrap()
                };
                let id = format!("T-{pick}");
                let edits = TaskEdits { updates: vec![(id.clone(), ops.clone())], appends: vec![] };
                let spliced = tasks::apply(&text, &edits).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let mut expected = tasks.clone();
                let target = expected[pick].as_object_mut().unwrap();
                for op in &ops {
                    match op {
                        FieldOp::Set(key, value) => {
                            target.insert(key.clone(), value.clone());
                        }
                        FieldOp::Remove(key) => {
                            target.shift_remove(key);
                        }
                    }
                }
                let got = parse_json("tasks.json", &spliced)
                    .map_err(|d| TestCaseError::fail(format!("the splice is not valid JSON: {d}\n{spliced}")))?;
                let got_tasks = if wrapped { got["tasks"].clone() } else { got };
                prop_assert_eq!(got_tasks, Value::from(expected), "{} -> {}", text, spliced);
                prop_assert!(json::root(&spliced).is_ok());
                Ok(())
            },
        )
        .unwrap();
}
