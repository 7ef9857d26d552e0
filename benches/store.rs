//! Throughput of the store's hot paths on a 100,000-task `tasks.json` (about 27 MB): the
//! UTF-8 check, the validating scan, finding one task, filtering the owned pending ones,
//! and writing one update (of the task in the middle) as splices.
//!
//! The file is the one `scripts/gen-tasks.py` writes (Python 3), generated once into
//! `target/bench-tasks-100000.json`; `OPSFLOW_BENCH_TASKS=PATH` uses another file instead.
//! Run: `cargo bench --bench store`. Figures are recorded in docs/benchmarks.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opsflow::store::edit::{FieldOp, write_spliced};
use opsflow::store::{json, tasks};
use opsflow::workspace::read;
use serde_json::json;

const TASKS: usize = 100_000;

fn tasks_file() -> PathBuf {
    if let Some(path) = std::env::var_os("OPSFLOW_BENCH_TASKS") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(format!("target/bench-tasks-{TASKS}.json"));
    if !path.exists() {
        let status = Command::new("python3")
            .arg(root.join("scripts/gen-tasks.py"))
            .arg(&path)
            .arg(TASKS.to_string())
            .status()
            .expect("python3 runs scripts/gen-tasks.py");
        assert!(status.success(), "scripts/gen-tasks.py failed");
    }
    path
}

fn store(c: &mut Criterion) {
    let path = tasks_file();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = read::check_text("tasks.json", bytes.clone()).expect("the generated file is UTF-8");
    let (_, heads) = tasks::heads(&text).expect("the generated file is a task list");
    let middle = heads[heads.len() / 2].id.as_deref().expect("every generated task has an id").to_owned();
    drop(heads);

    let mut group = c.benchmark_group("tasks.json");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("UTF-8 check (check_text, two threads)", |b| {
        b.iter_batched(|| bytes.clone(), |bytes| read::check_text("tasks.json", bytes), BatchSize::LargeInput)
    });
    group.bench_function("validate as JSON (json::root, one thread)", |b| b.iter(|| json::root(black_box(&text))));
    group.bench_function("find one task (tasks::scan_ids, two threads)", |b| {
        b.iter(|| tasks::scan_ids(black_box(&text), &[middle.as_str()]).expect("valid"))
    });
    group.bench_function("owned pending tasks (tasks::scan, two threads)", |b| {
        b.iter(|| {
            tasks::scan(black_box(&text), |head| {
                head.agent.as_deref() == Some("DevOps-Engineer") && head.status.as_deref() == Some("pending")
            })
            .expect("valid")
        })
    });
    group.bench_function("one update as splices, written to a sink", |b| {
        let edits = tasks::TaskEdits {
            updates: vec![(middle.clone(), vec![FieldOp::Set("status".into(), json!("in_progress"))])],
            appends: vec![],
        };
        b.iter(|| {
            let splices = tasks::splices(black_box(&text), &edits).expect("the task exists");
            write_spliced(&text, &splices, &mut std::io::sink()).expect("a sink takes everything");
        })
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
