//! The daemon's own figures, rendered in the Prometheus text format for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    health: Health,
}

/// What `/healthz` judges by.
#[derive(Debug, Default)]
struct Health {
    /// Set by the supervisor: how long a reconcile may run, or the loop go without one,
    /// before it counts as stalled. `None`: never stalled.
    stall_after: Option<Duration>,
    /// When the limit was set (the loop's start), or the last reconcile finished.
    last_finished: Option<Instant>,
    running_since: Option<Instant>,
    failures_in_a_row: u64,
    last_problem: String,
}

/// After this many failed reconciles in a row, `/healthz` says the daemon is unhealthy.
pub const FAILING_AFTER: u64 = 3;

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Sets how long a reconcile may run, or the loop go without one, before `/healthz` calls
    /// the daemon stalled; the loop starts counting now if it has not reconciled yet.
    pub fn set_stall_limit(&self, limit: Duration) {
        let mut inner = self.inner.lock().expect("metrics lock");
        inner.health.stall_after = Some(limit);
        inner.health.last_finished.get_or_insert_with(Instant::now);
    }

    /// A reconcile starts now.
    pub fn reconcile_started(&self) {
        self.inner.lock().expect("metrics lock").health.running_since = Some(Instant::now());
    }

    /// The first problem of a reconcile that failed, for `/healthz` to name.
    pub fn note_problem(&self, problem: &str) {
        self.inner.lock().expect("metrics lock").health.last_problem = problem.to_owned();
    }

    /// `Ok` when the daemon is healthy, else why not: the reconcile loop stopped, its last
    /// [`FAILING_AFTER`] reconciles or more all failed, or it stalled (a reconcile running, or
    /// none finished, for longer than the stall limit).
    pub fn health(&self) -> Result<(), String> {
        if !self.alive.load(Ordering::Relaxed) {
            return Err("the reconcile loop has stopped".to_owned());
        }
        let inner = self.inner.lock().expect("metrics lock");
        let health = &inner.health;
        let now = Instant::now();
        if let Some(limit) = health.stall_after {
            let stalled = match (health.running_since, health.last_finished) {
                (Some(since), _) if now.duration_since(since) > limit => {
                    Some(format!("a reconcile has been running for {} s", now.duration_since(since).as_secs()))
                }
                (None, Some(last)) if now.duration_since(last) > limit => {
                    Some(format!("no reconcile has finished for {} s", now.duration_since(last).as_secs()))
                }
                _ => None,
            };
            if let Some(stalled) = stalled {
                return Err(format!("stalled: {stalled} (the limit is {} s)", limit.as_secs()));
            }
        }
        if health.failures_in_a_row >= FAILING_AFTER {
            return Err(format!(
                "the last {} reconciles failed; the latest: {}",
                health.failures_in_a_row, health.last_problem
            ));
        }
        Ok(())
    }

    /// Records one reconcile and what it found.
    pub fn record(&self, summary: &Summary, seconds: f64, tasks_by_status: BTreeMap<String, u64>, ok: bool) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.inner.lock().expect("metrics lock");
        inner.health.running_since = None;
        inner.health.last_finished = Some(Instant::now());
        inner.health.failures_in_a_row = if ok { 0 } else { inner.health.failures_in_a_row + 1 };
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
            *inner.node_runs.entry((ran.node.clone(), ran.outcome.to_string())).or_default() += 1;
            let environment = match ran.node.as_str() {
                "Deploy_To_Staging" => Some("staging"),
                "Deploy_To_Production" => Some("production"),
                _ => None,
            };
            if let Some(environment) = environment {
                *inner.deployments.entry((environment.to_owned(), ran.outcome.to_string())).or_default() += 1;
            }
            if ran.outcome == crate::nodes::OutcomeKind::RolledBack {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_says_why_when_reconciles_fail_or_stall() {
        let metrics = Metrics::default();
        metrics.alive.store(true, Ordering::SeqCst);
        metrics.set_stall_limit(Duration::from_secs(3600));
        assert_eq!(metrics.health(), Ok(()));
        for _ in 0..FAILING_AFTER {
            metrics.note_problem("docs/workflow/tasks.json:1:1: invalid JSON");
            metrics.record(&Summary::default(), 0.1, BTreeMap::new(), false);
        }
        assert_eq!(
            metrics.health(),
            Err("the last 3 reconciles failed; the latest: docs/workflow/tasks.json:1:1: invalid JSON".to_owned())
        );
        metrics.record(&Summary::default(), 0.1, BTreeMap::new(), true);
        assert_eq!(metrics.health(), Ok(()));
        metrics.set_stall_limit(Duration::ZERO);
        metrics.reconcile_started();
        std::thread::sleep(Duration::from_millis(2));
        let reason = metrics.health().unwrap_err();
        assert!(reason.starts_with("stalled: a reconcile has been running for"), "{reason}");
        metrics.alive.store(false, Ordering::SeqCst);
        assert_eq!(metrics.health(), Err("the reconcile loop has stopped".to_owned()));
    }
}
