//! The daemon's own figures, rendered in the Prometheus text format for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::Summary;

#[derive(Debug, Default)]
pub struct Metrics {
    pub alive: AtomicBool,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub watcher_events: AtomicU64,
    pub watcher_errors: AtomicU64,
    pub watcher_rescans: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    duration_sum: f64,
    last_duration: f64,
    last_success: f64,
    tasks_by_status: BTreeMap<String, u64>,
    blocked_by_gate: BTreeMap<String, u64>,
    node_runs: BTreeMap<(String, String), u64>,
    deployments: BTreeMap<(String, String), u64>,
    rollbacks: u64,
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Records one reconcile and what it found.
    pub fn record(&self, summary: &Summary, seconds: f64, tasks_by_status: BTreeMap<String, u64>, ok: bool) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.inner.lock().expect("metrics lock");
        inner.duration_sum += seconds;
        inner.last_duration = seconds;
        if ok {
            inner.last_success = now_seconds();
        }
        inner.tasks_by_status = tasks_by_status;
        inner.blocked_by_gate.clear();
        for blocked in &summary.blocked {
            for check in blocked.checks.iter().filter(|c| c.blocks()) {
                *inner.blocked_by_gate.entry(check.gate.to_owned()).or_default() += 1;
            }
        }
        for ran in &summary.ran {
            *inner.node_runs.entry((ran.node.clone(), ran.outcome.clone())).or_default() += 1;
            let environment = match ran.node.as_str() {
                "Deploy_To_Staging" => Some("staging"),
                "Deploy_To_Production" => Some("production"),
                _ => None,
            };
            if let Some(environment) = environment {
                *inner.deployments.entry((environment.to_owned(), ran.outcome.clone())).or_default() += 1;
            }
            if ran.outcome == "rolled_back" {
                inner.rollbacks += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().expect("metrics lock");
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |value: String| vec![(String::new(), value)];
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "opsflow_up",
            "gauge",
            "1 while the reconcile loop is alive",
            plain(u8::from(self.alive.load(Ordering::Relaxed)).to_string()),
        );
        metric("opsflow_reconciles_total", "counter", "Reconciles run", plain(load(&self.reconciles)));
        metric(
            "opsflow_reconcile_errors_total",
            "counter",
            "Reconciles that found invalid input",
            plain(load(&self.reconcile_errors)),
        );
        metric(
            "opsflow_reconcile_duration_seconds_sum",
            "counter",
            "Total time spent reconciling",
            plain(format!("{:.6}", inner.duration_sum)),
        );
        metric(
            "opsflow_reconcile_duration_seconds_count",
            "counter",
            "Reconciles timed",
            plain(load(&self.reconciles)),
        );
        metric(
            "opsflow_reconcile_last_duration_seconds",
            "gauge",
            "Duration of the last reconcile",
            plain(format!("{:.6}", inner.last_duration)),
        );
        metric(
            "opsflow_last_successful_reconcile_timestamp_seconds",
            "gauge",
            "Unix time of the last reconcile without invalid input",
            plain(format!("{:.3}", inner.last_success)),
        );
        metric(
            "opsflow_tasks",
            "gauge",
            "Owned tasks by status",
            inner
                .tasks_by_status
                .iter()
                .map(|(status, n)| (format!("{{status=\"{}\"}}", escape(status)), n.to_string()))
                .collect(),
        );
        metric(
            "opsflow_gate_blocks",
            "gauge",
            "Failed checks holding tasks back, by gate",
            inner
                .blocked_by_gate
                .iter()
                .map(|(gate, n)| (format!("{{gate=\"{}\"}}", escape(gate)), n.to_string()))
                .collect(),
        );
        metric(
            "opsflow_node_runs_total",
            "counter",
            "Nodes run, by node and outcome",
            inner
                .node_runs
                .iter()
                .map(|((node, outcome), n)| {
                    (format!("{{node=\"{}\",outcome=\"{}\"}}", escape(node), escape(outcome)), n.to_string())
                })
                .collect(),
        );
        metric(
            "opsflow_deployments_total",
            "counter",
            "Deployments, by environment and outcome",
            inner
                .deployments
                .iter()
                .map(|((env, outcome), n)| {
                    (format!("{{environment=\"{}\",outcome=\"{}\"}}", escape(env), escape(outcome)), n.to_string())
                })
                .collect(),
        );
        metric("opsflow_rollbacks_total", "counter", "Deployments rolled back", plain(inner.rollbacks.to_string()));
        metric("opsflow_watcher_events_total", "counter", "File events seen", plain(load(&self.watcher_events)));
        metric(
            "opsflow_watcher_errors_total",
            "counter",
            "Errors from the file watcher",
            plain(load(&self.watcher_errors)),
        );
        metric(
            "opsflow_watcher_rescans_total",
            "counter",
            "Event queue overflows that forced a full rescan",
            plain(load(&self.watcher_rescans)),
        );
        out
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
