//! The daemon's own figures for `/metrics`, kept and rendered by the `prometheus-client` crate
//! in the Prometheus text format (0.0.4), and the health `/healthz` reports.
//!
//! Every figure is a field of [`Metrics`] registered once in [`Metrics::new`]: adding one is a
//! field and one [`add`] line there. [`add`] registers a family under its name and HELP text as
//! written (the crate's own `Registry::register` would end each HELP text with a period), and
//! the encoder adds a counter's `_total`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::Summary;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The upper bounds of the reconcile duration buckets, in seconds: a reconcile with nothing to
/// do takes milliseconds, one that deploys to production can take the monitoring period.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabel {
    gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeOutcome {
    node: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeVerdict {
    node: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabel {
    channel: String,
    event: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvironmentOutcome {
    environment: String,
    outcome: String,
}

/// A float gauge (timestamps, durations).
type FloatGauge = Gauge<f64, AtomicU64>;

/// The daemon's figures. The counters a test or the watcher needs are public; the rest change
/// only through [`Metrics::record`] and the health methods.
#[derive(Debug)]
pub struct Metrics {
    alive: AtomicBool,
    up: Gauge,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    reconcile_duration: Histogram,
    last_duration: FloatGauge,
    last_success: FloatGauge,
    tasks: Family<StatusLabel, Gauge>,
    gate_blocks: Family<GateLabel, Gauge>,
    node_runs: Family<NodeOutcome, Counter>,
    agent_attempts: Family<NodeVerdict, Counter>,
    agent_tokens: Family<NodeLabel, Counter>,
    agent_cost: Family<NodeLabel, Counter<f64, AtomicU64>>,
    deployments: Family<EnvironmentOutcome, Counter>,
    rollbacks: Counter,
    pub watcher_events: Counter,
    pub watcher_errors: Counter,
    pub watcher_rescans: Counter,
    watcher_up: Gauge,
    pub watcher_restarts: Counter,
    notifications: Family<NotificationLabel, Counter>,
    notifications_pending: Family<ChannelLabel, Gauge>,
    /// With `git.sync`: the sync whose remote state `/metrics` shows (see [`GitRemote`]).
    pub git_sync: Arc<OnceLock<Arc<crate::sync::GitSync>>>,
    registry: Registry,
    /// Held while a reconcile's figures are replaced and while they are rendered, so a scrape
    /// never sees half of one reconcile.
    health: Mutex<Health>,
}

/// A family registered under its own name and HELP text.
#[derive(Debug)]
struct Described<M> {
    name: &'static str,
    help: &'static str,
    metric: M,
}

impl<M: EncodeMetric + std::fmt::Debug + Send + Sync + 'static> Collector for Described<M> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric_encoder = encoder.encode_descriptor(self.name, self.help, None, self.metric.metric_type())?;
        self.metric.encode(metric_encoder)
    }
}

/// Registers `metric` as `name` (a counter's without `_total`) with `help`, and returns the
/// handle to update it by. Families appear on `/metrics` in the order they are added.
fn add<M>(registry: &mut Registry, name: &'static str, help: &'static str, metric: M) -> M
where
    M: EncodeMetric + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    registry.register_collector(Box::new(Described { name, help, metric: metric.clone() }));
    metric
}

/// The git remote's gauges, read from the sync when `/metrics` is rendered, and only with
/// `git.sync`: `opsflow_git_remote_reachable` and, while it is not, since when.
#[derive(Debug)]
struct GitRemote {
    sync: Arc<OnceLock<Arc<crate::sync::GitSync>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemoteLabel {
    remote: String,
}

impl Collector for GitRemote {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sync) = self.sync.get() else { return Ok(()) };
        let status = sync.status();
        let label = RemoteLabel { remote: status.remote.clone() };
        let since = i64::try_from(status.unreachable_since_unix.unwrap_or(0)).unwrap_or(i64::MAX);
        for (name, help, value) in [
            (
                "opsflow_git_remote_reachable",
                "1 while the git remote answers fetches and takes pushes",
                i64::from(status.reachable),
            ),
            (
                "opsflow_git_remote_unreachable_since_seconds",
                "Unix time since which the git remote is unreachable (0 while it is reachable)",
                since,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
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
    /// Why the file watcher is down, while the supervisor restarts it (and the reconciler
    /// polls meanwhile). `None`: it watches.
    watcher_down: Option<String>,
    /// Why the last reconcile could not reconcile the workspace at all (`tasks.json` or
    /// `state.json` unreadable, a record it could not write): unhealthy at once, not after
    /// [`FAILING_AFTER`] reconciles, since no event may come to run another.
    unreconcilable: Option<String>,
}

/// After this many failed reconciles in a row, `/healthz` says the daemon is unhealthy.
pub const FAILING_AFTER: u64 = 3;

fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Why the daemon is not healthy, as `/healthz` says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("the reconcile loop has stopped")]
    Stopped,
    /// Why the watcher is down.
    #[error(
        "the file watcher is down ({0}); it is being started again, and a reconcile runs every devops.poll_interval meanwhile"
    )]
    WatcherDown(String),
    /// `limit` in seconds.
    #[error("stalled: {stall} (the limit is {limit} s)")]
    Stalled { stall: Stall, limit: u64 },
    /// The first problem of the latest failed reconcile.
    #[error("the last {count} reconciles failed; the latest: {latest}")]
    Failing { count: u64, latest: String },
    /// The last reconcile could not reconcile the workspace at all.
    #[error("the workspace cannot be reconciled: {0}")]
    Unreconcilable(String),
}

/// How the reconcile loop stalled, with the seconds it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stall {
    #[error("a reconcile has been running for {0} s")]
    Running(u64),
    #[error("no reconcile has finished for {0} s")]
    Idle(u64),
}

impl Metrics {
    /// Every figure at zero, registered in the order `/metrics` shows them.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let git_sync: Arc<OnceLock<Arc<crate::sync::GitSync>>> = Arc::default();
        registry.register_collector(Box::new(GitRemote { sync: Arc::clone(&git_sync) }));
        let r = &mut registry;
        Metrics {
            alive: AtomicBool::new(false),
            up: add(r, "opsflow_up", "1 while the reconcile loop is alive", Gauge::default()),
            reconciles: add(r, "opsflow_reconciles", "Reconciles run", Counter::default()),
            reconcile_errors: add(
                r,
                "opsflow_reconcile_errors",
                "Reconciles that found invalid input",
                Counter::default(),
            ),
            reconcile_duration: add(
                r,
                "opsflow_reconcile_duration_seconds",
                "Time spent reconciling",
                Histogram::new(DURATION_BUCKETS),
            ),
            last_duration: add(
                r,
                "opsflow_reconcile_last_duration_seconds",
                "Duration of the last reconcile",
                FloatGauge::default(),
            ),
            last_success: add(
                r,
                "opsflow_last_successful_reconcile_timestamp_seconds",
                "Unix time of the last reconcile without invalid input",
                FloatGauge::default(),
            ),
            tasks: add(r, "opsflow_tasks", "Owned tasks by status", Family::default()),
            gate_blocks: add(r, "opsflow_gate_blocks", "Failed checks holding tasks back, by gate", Family::default()),
            node_runs: add(r, "opsflow_node_runs", "Nodes run, by node and outcome", Family::default()),
            agent_attempts: add(
                r,
                "opsflow_agent_attempts",
                "Attempts of agent nodes, by node and opsflow's verdict",
                Family::default(),
            ),
            agent_tokens: add(
                r,
                "opsflow_agent_tokens",
                "Tokens agent nodes reported spending, by node",
                Family::default(),
            ),
            agent_cost: add(
                r,
                "opsflow_agent_cost_usd",
                "Cost in US dollars agent nodes reported, by node",
                Family::default(),
            ),
            deployments: add(r, "opsflow_deployments", "Deployments, by environment and outcome", Family::default()),
            rollbacks: add(r, "opsflow_rollbacks", "Deployments rolled back", Counter::default()),
            watcher_events: add(r, "opsflow_watcher_events", "File events seen", Counter::default()),
            watcher_errors: add(r, "opsflow_watcher_errors", "Errors from the file watcher", Counter::default()),
            watcher_rescans: add(
                r,
                "opsflow_watcher_rescans",
                "Event queue overflows that forced a full rescan",
                Counter::default(),
            ),
            watcher_up: add(
                r,
                "opsflow_watcher_up",
                "1 while the file watcher runs, 0 while it is restarted and the daemon polls",
                Gauge::default(),
            ),
            watcher_restarts: add(
                r,
                "opsflow_watcher_restarts",
                "Times the file watcher failed and was started again",
                Counter::default(),
            ),
            notifications: add(
                r,
                "opsflow_notifications",
                "Notification delivery attempts, by channel, event and result (delivered or failed)",
                Family::default(),
            ),
            notifications_pending: add(
                r,
                "opsflow_notifications_pending",
                "Notifications waiting in the outbox, by channel",
                Family::default(),
            ),
            git_sync,
            registry,
            health: Mutex::default(),
        }
    }

    fn health_state(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while the lock was held leaves plain figures behind, still worth serving.
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The reconcile loop started (`true`) or stopped (`false`).
    pub fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::SeqCst);
        self.up.set(i64::from(alive));
    }

    /// The file watcher runs; returns why it was down, if it was.
    pub fn watcher_running(&self) -> Option<String> {
        self.watcher_up.set(1);
        self.health_state().watcher_down.take()
    }

    /// True while the file watcher is down (failed, and not running again yet).
    pub fn watcher_is_down(&self) -> bool {
        self.health_state().watcher_down.is_some()
    }

    /// The file watcher failed for `reason`; `/healthz` says so until [`Self::watcher_running`].
    pub fn watcher_failed(&self, reason: &str) {
        self.health_state().watcher_down = Some(reason.to_owned());
        self.watcher_up.set(0);
    }

    /// Sets how long a reconcile may run, or the loop go without one, before `/healthz` calls
    /// the daemon stalled; the loop starts counting now if it has not reconciled yet.
    pub fn set_stall_limit(&self, limit: Duration) {
        let mut health = self.health_state();
        health.stall_after = Some(limit);
        health.last_finished.get_or_insert_with(Instant::now);
    }

    /// A reconcile starts now.
    pub fn reconcile_started(&self) {
        self.health_state().running_since = Some(Instant::now());
    }

    /// Whether the last reconcile could reconcile the workspace at all; `Some` says why not.
    pub fn set_unreconcilable(&self, why: Option<String>) {
        self.health_state().unreconcilable = why;
    }

    /// The first problem of a reconcile that failed, for `/healthz` to name.
    pub fn note_problem(&self, problem: &str) {
        self.health_state().last_problem = problem.to_owned();
    }

    /// `Ok` when the daemon is healthy, else why not: the reconcile loop stopped, the file
    /// watcher is down, its last [`FAILING_AFTER`] reconciles or more all failed, or it stalled
    /// (a reconcile running, or none finished, for longer than the stall limit).
    pub fn health(&self) -> Result<(), Unhealthy> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(Unhealthy::Stopped);
        }
        let health = self.health_state();
        if let Some(reason) = &health.watcher_down {
            return Err(Unhealthy::WatcherDown(reason.clone()));
        }
        let now = Instant::now();
        if let Some(limit) = health.stall_after {
            let stalled = match (health.running_since, health.last_finished) {
                (Some(since), _) if now.duration_since(since) > limit => {
                    Some(Stall::Running(now.duration_since(since).as_secs()))
                }
                (None, Some(last)) if now.duration_since(last) > limit => {
                    Some(Stall::Idle(now.duration_since(last).as_secs()))
                }
                _ => None,
            };
            if let Some(stall) = stalled {
                return Err(Unhealthy::Stalled { stall, limit: limit.as_secs() });
            }
        }
        if let Some(why) = &health.unreconcilable {
            return Err(Unhealthy::Unreconcilable(why.clone()));
        }
        if health.failures_in_a_row >= FAILING_AFTER {
            return Err(Unhealthy::Failing { count: health.failures_in_a_row, latest: health.last_problem.clone() });
        }
        Ok(())
    }

    /// Counts one node that ended: as it ends, so that a long reconcile's progress shows.
    pub fn count_ran(&self, ran: &crate::engine::Ran) {
        let _consistent = self.health_state();
        self.node_runs.get_or_create(&NodeOutcome { node: ran.node.clone(), outcome: ran.outcome.to_string() }).inc();
        if let Some(environment) = ran.deployed_to {
            let labels =
                EnvironmentOutcome { environment: environment.name().to_owned(), outcome: ran.outcome.to_string() };
            self.deployments.get_or_create(&labels).inc();
        }
        if ran.outcome == crate::nodes::OutcomeKind::RolledBack || ran.switched_back {
            self.rollbacks.inc();
        }
        if let Some(agent) = &ran.agent {
            for verdict in &agent.verdicts {
                self.agent_attempts
                    .get_or_create(&NodeVerdict { node: ran.node.clone(), verdict: verdict.clone() })
                    .inc();
            }
            let node = NodeLabel { node: ran.node.clone() };
            self.agent_tokens.get_or_create(&node).inc_by(agent.tokens);
            if let Some(cost) = agent.cost_usd {
                self.agent_cost.get_or_create(&node).inc_by(cost);
            }
        }
    }

    /// Counts delivery attempts of notifications and sets the outbox's figures.
    pub fn count_deliveries(&self, deliveries: &[crate::notify::Delivery], outbox: &crate::notify::OutboxStatus) {
        let _consistent = self.health_state();
        for delivery in deliveries {
            let labels = NotificationLabel {
                channel: delivery.channel.clone(),
                event: delivery.event.to_string(),
                result: if delivery.accepted { "delivered" } else { "failed" }.to_owned(),
            };
            self.notifications.get_or_create(&labels).inc();
        }
        self.notifications_pending.clear();
        for channel in &outbox.channels {
            self.notifications_pending
                .get_or_create(&ChannelLabel { channel: channel.channel.clone() })
                .set(gauge_value(channel.pending as u64));
        }
    }

    /// Records one reconcile and what it found.
    pub fn record(&self, summary: &Summary, seconds: f64, tasks_by_status: BTreeMap<String, u64>, ok: bool) {
        let mut health = self.health_state();
        self.reconciles.inc();
        if !ok {
            self.reconcile_errors.inc();
        }
        health.running_since = None;
        health.last_finished = Some(Instant::now());
        health.failures_in_a_row = if ok { 0 } else { health.failures_in_a_row + 1 };
        self.reconcile_duration.observe(seconds);
        self.last_duration.set(seconds);
        if ok {
            self.last_success.set(now_seconds());
        }
        self.tasks.clear();
        for (status, count) in tasks_by_status {
            self.tasks.get_or_create(&StatusLabel { status }).set(gauge_value(count));
        }
        let mut blocked_by_gate: BTreeMap<&str, u64> = BTreeMap::new();
        for blocked in &summary.blocked {
            for check in blocked.checks.iter().filter(|c| c.blocks()) {
                *blocked_by_gate.entry(check.gate).or_default() += 1;
            }
        }
        self.gate_blocks.clear();
        for (gate, count) in blocked_by_gate {
            self.gate_blocks.get_or_create(&GateLabel { gate: gate.to_owned() }).set(gauge_value(count));
        }
        // The nodes that ran were counted as each ended (`count_ran`), unless the engine ran
        // without a progress callback.
        if !summary.counted {
            for ran in &summary.ran {
                self.count_ran(ran);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let _consistent = self.health_state();
        let mut out = String::new();
        // Writing into a String cannot fail, and no figure of ours fails to encode.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!("cannot render the metrics: {e}");
        }
        out
    }
}

/// A count as a gauge's value (which is signed).
fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_says_why_when_reconciles_fail_or_stall() {
        let metrics = Metrics::default();
        metrics.set_alive(true);
        metrics.set_stall_limit(Duration::from_secs(3600));
        assert_eq!(metrics.health(), Ok(()));
        for _ in 0..FAILING_AFTER {
            metrics.note_problem("docs/workflow/tasks.json:1:1: invalid JSON");
            metrics.record(&Summary::default(), 0.1, BTreeMap::new(), false);
        }
        assert_eq!(
            metrics.health().unwrap_err().to_string(),
            "the last 3 reconciles failed; the latest: docs/workflow/tasks.json:1:1: invalid JSON"
        );
        metrics.record(&Summary::default(), 0.1, BTreeMap::new(), true);
        assert_eq!(metrics.health(), Ok(()));
        metrics.set_stall_limit(Duration::ZERO);
        metrics.reconcile_started();
        std::thread::sleep(Duration::from_millis(2));
        let reason = metrics.health().unwrap_err().to_string();
        assert!(reason.starts_with("stalled: a reconcile has been running for"), "{reason}");
        metrics.set_alive(false);
        assert_eq!(metrics.health().unwrap_err().to_string(), "the reconcile loop has stopped");
    }

    /// Every family's HELP and TYPE lines as dashboards and alerts know them: the names,
    /// types and texts from before the figures were kept by `prometheus-client`. The one
    /// change: `opsflow_reconcile_duration_seconds` is a histogram, whose `_sum` and `_count`
    /// series are the two counters it replaced.
    #[test]
    fn the_exposition_keeps_every_name_type_and_help_text() {
        let expected = [
            ("opsflow_up", "gauge", "1 while the reconcile loop is alive"),
            ("opsflow_reconciles_total", "counter", "Reconciles run"),
            ("opsflow_reconcile_errors_total", "counter", "Reconciles that found invalid input"),
            ("opsflow_reconcile_duration_seconds", "histogram", "Time spent reconciling"),
            ("opsflow_reconcile_last_duration_seconds", "gauge", "Duration of the last reconcile"),
            (
                "opsflow_last_successful_reconcile_timestamp_seconds",
                "gauge",
                "Unix time of the last reconcile without invalid input",
            ),
            ("opsflow_tasks", "gauge", "Owned tasks by status"),
            ("opsflow_gate_blocks", "gauge", "Failed checks holding tasks back, by gate"),
            ("opsflow_node_runs_total", "counter", "Nodes run, by node and outcome"),
            ("opsflow_agent_attempts_total", "counter", "Attempts of agent nodes, by node and opsflow's verdict"),
            ("opsflow_agent_tokens_total", "counter", "Tokens agent nodes reported spending, by node"),
            ("opsflow_agent_cost_usd_total", "counter", "Cost in US dollars agent nodes reported, by node"),
            ("opsflow_deployments_total", "counter", "Deployments, by environment and outcome"),
            ("opsflow_rollbacks_total", "counter", "Deployments rolled back"),
            ("opsflow_watcher_events_total", "counter", "File events seen"),
            ("opsflow_watcher_errors_total", "counter", "Errors from the file watcher"),
            ("opsflow_watcher_rescans_total", "counter", "Event queue overflows that forced a full rescan"),
            (
                "opsflow_watcher_up",
                "gauge",
                "1 while the file watcher runs, 0 while it is restarted and the daemon polls",
            ),
            ("opsflow_watcher_restarts_total", "counter", "Times the file watcher failed and was started again"),
            (
                "opsflow_notifications_total",
                "counter",
                "Notification delivery attempts, by channel, event and result (delivered or failed)",
            ),
            ("opsflow_notifications_pending", "gauge", "Notifications waiting in the outbox, by channel"),
        ];
        let text = Metrics::new().render();
        let described: Vec<&str> = text.lines().filter(|line| line.starts_with('#')).collect();
        let wanted: Vec<String> = expected
            .iter()
            .flat_map(|(name, kind, help)| [format!("# HELP {name} {help}"), format!("# TYPE {name} {kind}")])
            .collect();
        assert_eq!(described, wanted, "{text}");
    }

    #[test]
    fn a_reconcile_shows_as_samples_with_escaped_labels() {
        let metrics = Metrics::new();
        metrics.set_alive(true);
        let tasks = BTreeMap::from([("in_progress".to_owned(), 2), ("we\\ird \"one\"\n".to_owned(), 1)]);
        metrics.record(&Summary::default(), 0.25, tasks, true);
        metrics.record(&Summary::default(), 0.5, BTreeMap::new(), false);
        let text = metrics.render();
        let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        for line in [
            "opsflow_up 1",
            "opsflow_reconciles_total 2",
            "opsflow_reconcile_errors_total 1",
            "opsflow_reconcile_duration_seconds_sum 0.75",
            "opsflow_reconcile_duration_seconds_count 2",
            "opsflow_reconcile_duration_seconds_bucket{le=\"0.5\"} 2",
            "opsflow_reconcile_duration_seconds_bucket{le=\"0.1\"} 0",
            "opsflow_reconcile_last_duration_seconds 0.5",
        ] {
            assert!(samples.contains(&line), "no `{line}` in:\n{text}");
        }
        // The last reconcile replaced the task counts; the failed one left the success time.
        assert!(!text.contains("opsflow_tasks{"), "{text}");
        let last_success = samples
            .iter()
            .find_map(|line| line.strip_prefix("opsflow_last_successful_reconcile_timestamp_seconds "))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(last_success > 1.0e9, "{text}");

        let tasks = BTreeMap::from([("we\\ird \"one\"\n".to_owned(), 1)]);
        metrics.record(&Summary::default(), 0.1, tasks, true);
        let text = metrics.render();
        assert!(text.contains("opsflow_tasks{status=\"we\\\\ird \\\"one\\\"\\n\"} 1\n"), "{text}");
    }

    #[test]
    fn healthz_names_a_watcher_that_is_down_until_it_runs_again() {
        let metrics = Metrics::new();
        metrics.set_alive(true);
        assert_eq!(metrics.watcher_running(), None);
        assert_eq!(metrics.health(), Ok(()));
        metrics.watcher_failed("the event stream ended");
        let reason = metrics.health().unwrap_err().to_string();
        assert!(reason.starts_with("the file watcher is down (the event stream ended)"), "{reason}");
        assert!(metrics.render().contains("\nopsflow_watcher_up 0\n"));
        assert_eq!(metrics.watcher_running().as_deref(), Some("the event stream ended"));
        assert_eq!(metrics.health(), Ok(()));
        assert!(metrics.render().contains("\nopsflow_watcher_up 1\n"));
    }
}
