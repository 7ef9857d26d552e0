//! Analysis of a rollout: after each canary step or rolling batch, and over the monitoring
//! period, decide from measurements whether the release goes on, rolls back, or waits for a
//! human. Pure logic with Argo Rollouts' semantics: the caller owns the clock and the IO
//! (metrics from `exec::metrics`, health checks from `exec::checks`), so every rule here is
//! tested without a network.
//!
//! # Semantics
//!
//! An analysis ([`Plan`]) takes `count` measurements, the first at once and measurement *k*
//! (from 0) `k × interval` after the start. A [`Measurement`] is a metrics [`Sample`] and,
//! when the environment has health checks, their result. Each measurement is judged in this
//! order, and the first rule that ends the analysis wins:
//!
//! 1. **Health.** A failed health check extends the streak of consecutive failures; a passed
//!    one resets it to 0. When the streak reaches `rollback_triggers.health_check_failures`
//!    (default 3), the analysis is **Failed**. Health failures count only toward this
//!    streak, never toward `failure_limit`, and a failed health check is data, not "no data".
//! 2. **Breach.** A trigger is breached when its figure is strictly above its limit:
//!    `error_rate` > `rollback_triggers.error_rate` (percent, default 5);
//!    `latency_p95_ms` > `rollback_triggers.latency_p95_ratio` (default 2.0) × the baseline's
//!    p95; `latency_p99_ms` > `rollback_triggers.response_time_p99` (ms, only when set).
//!    A measurement that breaches any trigger counts as one failure; the analysis is
//!    **Failed** as soon as failures exceed `failure_limit` (`analysis.failure_limit` of the
//!    environment, else `rollback_triggers.failure_limit`, default 0: the first breach fails).
//!    The reason names each breached figure, its value and its limit.
//! 3. **No data.** A measurement with no breach and no failed health check in which a judged
//!    figure is missing (no data, `NaN`, an infinity, an unreachable or timed-out source), or
//!    which has nothing to judge at all (no judged figure and no health check), is
//!    inconclusive. The analysis is **Inconclusive** as soon as inconclusive measurements
//!    exceed `inconclusive_limit` (`analysis.inconclusive_limit`, default 0: the first one).
//!    Inconclusive means: the rollout pauses and a human decides. It is never a pass.
//! 4. **Count.** After the `count`-th measurement without a verdict the analysis is
//!    **Passed**, except when the last health check failed (a streak still open below its
//!    trigger: Inconclusive) or no measurement was conclusive (Inconclusive).
//!
//! Otherwise the verdict is **Continue**: take the next measurement when it is due. Once an
//! analysis has a verdict other than Continue, further measurements change nothing.
//!
//! A trigger judges only a figure the metrics config reads. The p95 trigger also needs a
//! baseline p95 above 0 (a [`Baseline`] sample taken before the deploy); without one it is
//! skipped, and every verdict's reason says so. A figure read but judged by no trigger (p99
//! without `response_time_p99`) is only reported, and its absence is not "no data".
//! The monitoring period is the same analysis with `interval = monitoring_interval` and
//! `count = monitoring_period / monitoring_interval + 1` (see [`Plan::monitoring`]).

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Devops, RollbackTriggers};
use crate::duration::duration_text;
use crate::exec::metrics::{Figure, MetricsSpec, Sample, format_number};

/// `environments.<env>.analysis`: how the analysis after a canary step or rolling batch runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Time between measurements (default `devops.monitoring_interval`).
    #[serde(default, with = "duration_text::option")]
    pub interval: Option<Duration>,
    /// Measurements per analysis (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// Breaching measurements tolerated (default `rollback_triggers.failure_limit`).
    #[serde(default)]
    pub failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated (default 0).
    #[serde(default)]
    pub inconclusive_limit: Option<u32>,
}

/// An environment's `analysis` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisSpecError {
    /// Not the shape of an `analysis` block (an unknown key, a wrong type, a bad duration).
    #[error("cannot read `analysis`: {0}")]
    Unreadable(String),
    #[error("expected `analysis.count` of at least 1, found 0")]
    NoMeasurement,
}

impl AnalysisSpec {
    pub fn from_value(value: &Value) -> Result<AnalysisSpec, AnalysisSpecError> {
        let spec: AnalysisSpec =
            serde_json::from_value(value.clone()).map_err(|e| AnalysisSpecError::Unreadable(e.to_string()))?;
        if spec.count == Some(0) {
            return Err(AnalysisSpecError::NoMeasurement);
        }
        Ok(spec)
    }
}

/// When measurements are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub interval: Duration,
    pub count: u32,
}

/// The shortest interval between measurements, so a typo cannot make a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

impl Plan {
    /// The analysis after a canary step or a rolling batch: `analysis.interval` (default
    /// `devops.monitoring_interval`) and `analysis.count` (default 1).
    pub fn step(spec: Option<&AnalysisSpec>, devops: &Devops) -> Plan {
        let interval = spec.and_then(|s| s.interval).unwrap_or(devops.monitoring_interval).max(MIN_INTERVAL);
        Plan { interval, count: spec.and_then(|s| s.count).unwrap_or(1).max(1) }
    }

    /// The monitoring period: a measurement at once and every `monitoring_interval` up to
    /// and including `monitoring_period`, as `engine::deploy::monitor` has always sampled.
    pub fn monitoring(devops: &Devops) -> Plan {
        let period = devops.monitoring_period;
        let interval = devops.monitoring_interval.max(MIN_INTERVAL);
        let steps = (period.as_nanos() / interval.as_nanos()).min(u32::MAX as u128 - 1) as u32;
        Plan { interval, count: steps + 1 }
    }

    /// When measurement `index` (from 0) is due, from the start of the analysis.
    pub fn due(&self, index: u32) -> Duration {
        self.interval.saturating_mul(index)
    }
}

/// The limits a measurement is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Percent; above it a measurement breaches.
    pub error_rate: f64,
    /// Times the baseline p95; above it a measurement breaches.
    pub latency_p95_ratio: f64,
    /// Milliseconds; above it a measurement breaches. No trigger when `None`.
    pub response_time_p99: Option<f64>,
    /// Consecutive failed health checks that fail the analysis (at least 1).
    pub health_check_failures: u32,
    /// Breaching measurements tolerated.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
}

impl Thresholds {
    /// `devops.rollback_triggers`, with the environment's `analysis` limits over them.
    pub fn new(triggers: &RollbackTriggers, spec: Option<&AnalysisSpec>) -> Thresholds {
        Thresholds {
            error_rate: triggers.error_rate,
            latency_p95_ratio: triggers.latency_p95_ratio,
            response_time_p99: triggers.response_time_p99,
            health_check_failures: triggers.health_check_failures.max(1),
            failure_limit: spec.and_then(|s| s.failure_limit).unwrap_or(triggers.failure_limit),
            inconclusive_limit: spec.and_then(|s| s.inconclusive_limit).unwrap_or(0),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::new(&RollbackTriggers::default(), None)
    }
}

/// Why the baseline has no p95 the ratio trigger can use; the text is the note the analysis
/// records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    /// `shown` is the p95 as the reports show it.
    #[error("the baseline p95 is {shown}, expected more than 0")]
    NotPositive { shown: String },
    /// Why the baseline sample missed the figure (the sample's reason names its source).
    #[error("baseline: {why}")]
    Unread { why: String },
    #[error("the baseline has no latency_p95_ms")]
    NotRead,
}

/// The metrics before the deploy, which the p95 trigger is relative to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Baseline {
    pub sample: Sample,
}

impl Baseline {
    pub fn new(sample: Sample) -> Baseline {
        Baseline { sample }
    }

    /// The baseline p95 the ratio trigger can use, or why there is none.
    pub fn latency_p95_ms(&self) -> Result<f64, BaselineError> {
        match self.sample.latency_p95_ms {
            Some(p95) if p95.is_finite() && p95 > 0.0 => Ok(p95),
            Some(p95) => Err(BaselineError::NotPositive { shown: Figure::LatencyP95Ms.show(p95) }),
            None => Err(self
                .sample
                .why_missing(Figure::LatencyP95Ms)
                .map_or(BaselineError::NotRead, |why| BaselineError::Unread { why: why.to_owned() })),
        }
    }
}

/// The result of the health checks at one measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub passed: bool,
    /// What failed, or how many passed.
    pub detail: String,
}

/// One measurement: the metrics (when the environment has any) and the health checks (when
/// it has any).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measurement {
    pub metrics: Option<Sample>,
    pub health: Option<Health>,
}

/// Where an analysis stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// No verdict yet: take the next measurement when it is due.
    Continue,
    /// Roll back: a trigger fired. The reason names the figures and their limits.
    Failed { reason: String },
    /// Pause for a human: the data does not allow a decision. Never a pass.
    Inconclusive { reason: String },
    /// Every measurement was taken and none ended the analysis.
    Passed { summary: String },
}

impl Verdict {
    pub fn is_final(&self) -> bool {
        !matches!(self, Verdict::Continue)
    }

    /// The reason or summary; empty for Continue.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Continue => "",
            Verdict::Failed { reason } | Verdict::Inconclusive { reason } => reason,
            Verdict::Passed { summary } => summary,
        }
    }
}

/// How one measurement was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every judged figure within its limit, health checks (if any) passing.
    Ok,
    /// At least one trigger breached.
    Breached,
    /// A health check failed (and no trigger breached).
    Unhealthy,
    /// A judged figure missing, or nothing to judge.
    NoData,
}

/// One judged measurement, for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// From 0.
    pub index: u32,
    pub outcome: Outcome,
    /// What was seen: figures, breaches, missing data, health.
    pub detail: String,
    pub measurement: Measurement,
}

/// A trigger that judges a figure, with its limit.
#[derive(Debug, Clone, PartialEq)]
struct Trigger {
    figure: Figure,
    limit: f64,
    /// How the limit reads in a reason: `5%`, `2 × baseline 40 ms = 80 ms`.
    limit_text: String,
}

/// An analysis in progress. Feed it with [`Analysis::measure`] or drive it with
/// [`Analysis::run`].
#[derive(Debug, Clone)]
pub struct Analysis {
    plan: Plan,
    thresholds: Thresholds,
    triggers: Vec<Trigger>,
    notes: Vec<String>,
    taken: u32,
    failures: u32,
    inconclusive: u32,
    conclusive: u32,
    health_streak: u32,
    verdict: Option<Verdict>,
    records: Vec<Record>,
}

impl Analysis {
    /// An analysis of the figures `metrics` reads (none when the environment has no
    /// metrics), relative to `baseline` (none when no baseline could be taken).
    pub fn new(
        plan: Plan,
        thresholds: Thresholds,
        metrics: Option<&MetricsSpec>,
        baseline: Option<&Baseline>,
    ) -> Analysis {
        let mut triggers = Vec::new();
        let mut notes = Vec::new();
        let reads = |figure: Figure| metrics.is_some_and(|m| m.query(figure).is_some());
        match metrics {
            None => notes.push("no metrics configured: only health checks judge the rollout".to_owned()),
            Some(_) => {
                if reads(Figure::ErrorRate) {
                    triggers.push(Trigger {
                        figure: Figure::ErrorRate,
                        limit: thresholds.error_rate,
                        limit_text: Figure::ErrorRate.show(thresholds.error_rate),
                    });
                } else {
                    notes.push("error_rate trigger skipped: the metrics read no error_rate".to_owned());
                }
                let ratio = thresholds.latency_p95_ratio;
                match (reads(Figure::LatencyP95Ms), baseline.map(Baseline::latency_p95_ms)) {
                    (false, _) => {
                        notes.push("latency_p95_ratio trigger skipped: the metrics read no latency_p95_ms".to_owned())
                    }
                    (true, None) => notes
                        .push("latency_p95_ratio trigger skipped: no baseline p95 (no baseline was taken)".to_owned()),
                    (true, Some(Err(why))) => {
                        notes.push(format!("latency_p95_ratio trigger skipped: no baseline p95 ({why})"))
                    }
                    (true, Some(Ok(p95))) => triggers.push(Trigger {
                        figure: Figure::LatencyP95Ms,
                        limit: ratio * p95,
                        limit_text: format!(
                            "{} × baseline {} = {}",
                            format_number(ratio),
                            Figure::LatencyP95Ms.show(p95),
                            Figure::LatencyP95Ms.show(ratio * p95)
                        ),
                    }),
                }
                match (reads(Figure::LatencyP99Ms), thresholds.response_time_p99) {
                    (true, Some(limit)) => triggers.push(Trigger {
                        figure: Figure::LatencyP99Ms,
                        limit,
                        limit_text: Figure::LatencyP99Ms.show(limit),
                    }),
                    (false, Some(_)) => {
                        notes.push("response_time_p99 trigger skipped: the metrics read no latency_p99_ms".to_owned())
                    }
                    (_, None) => {}
                }
            }
        }
        Analysis {
            plan,
            thresholds,
            triggers,
            notes,
            taken: 0,
            failures: 0,
            inconclusive: 0,
            conclusive: 0,
            health_streak: 0,
            verdict: None,
            records: Vec::new(),
        }
    }

    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// The final verdict, once there is one.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Every measurement judged so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Triggers that cannot judge this analysis, and why (each verdict repeats them).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Measurements taken so far.
    pub fn taken(&self) -> u32 {
        self.taken
    }

    /// Judges one measurement and returns where the analysis stands.
    pub fn measure(&mut self, measurement: Measurement) -> Verdict {
        if let Some(verdict) = &self.verdict {
            return verdict.clone();
        }
        let index = self.taken;
        self.taken += 1;
        let at = format!("measurement {} of {}", index + 1, self.plan.count);

        let unhealthy = measurement.health.as_ref().is_some_and(|h| !h.passed);
        if let Some(health) = &measurement.health {
            self.health_streak = if health.passed { 0 } else { self.health_streak + 1 };
        }
        let mut breaches = Vec::new();
        let mut missing = Vec::new();
        let mut seen = Vec::new();
        for trigger in &self.triggers {
            let value = measurement.metrics.as_ref().and_then(|s| s.get(trigger.figure)).filter(|v| v.is_finite());
            match value {
                Some(value) => {
                    seen.push(format!("{} {}", trigger.figure, trigger.figure.show(value)));
                    if value > trigger.limit {
                        breaches.push(format!(
                            "{} {} is above the trigger {}",
                            trigger.figure,
                            trigger.figure.show(value),
                            trigger.limit_text
                        ));
                    }
                }
                None => {
                    let why = match &measurement.metrics {
                        None => "no metrics sample was taken".to_owned(),
                        Some(sample) => sample
                            .why_missing(trigger.figure)
                            .map_or_else(|| "no data (not a finite number)".to_owned(), str::to_owned),
                    };
                    missing.push(format!("{}: {why}", trigger.figure));
                }
            }
        }
        let nothing_judged = self.triggers.is_empty() && measurement.health.is_none();
        let outcome = if !breaches.is_empty() {
            Outcome::Breached
        } else if unhealthy {
            Outcome::Unhealthy
        } else if !missing.is_empty() || nothing_judged {
            Outcome::NoData
        } else {
            Outcome::Ok
        };

        // What was seen apart from the breaches, which a Failed reason names first.
        let mut context = seen.join(", ");
        let mut add = |part: String| {
            if !context.is_empty() {
                context.push_str("; ");
            }
            context.push_str(&part);
        };
        for missing in &missing {
            add(format!("missing {missing}"));
        }
        if nothing_judged {
            add("nothing to judge: no metrics trigger applies and no health check ran".to_owned());
        }
        if let Some(health) = &measurement.health {
            add(if health.passed {
                format!("health checks pass ({})", health.detail)
            } else {
                format!("health check failed ({} in a row): {}", self.health_streak, health.detail)
            });
        }
        if let Some(source) = measurement.metrics.as_ref().map(|s| s.source.as_str()).filter(|s| !s.is_empty()) {
            add(format!("source: {source}"));
        }
        let detail = if breaches.is_empty() { context.clone() } else { format!("{}; {context}", breaches.join(", ")) };
        self.records.push(Record { index, outcome, detail: detail.clone(), measurement });

        let verdict = if self.health_streak >= self.thresholds.health_check_failures {
            self.conclusive += 1;
            Verdict::Failed {
                reason: format!(
                    "health checks failed {} times in a row (trigger: health_check_failures {}) at {at}: {detail}",
                    self.health_streak, self.thresholds.health_check_failures
                ),
            }
        } else {
            match outcome {
                Outcome::Breached => {
                    self.conclusive += 1;
                    self.failures += 1;
                    if self.failures > self.thresholds.failure_limit {
                        Verdict::Failed {
                            reason: format!(
                                "{} at {at} ({} breaching measurement{}, failure_limit {}; {context})",
                                breaches.join(", "),
                                self.failures,
                                plural(self.failures),
                                self.thresholds.failure_limit
                            ),
                        }
                    } else {
                        Verdict::Continue
                    }
                }
                Outcome::NoData => {
                    self.inconclusive += 1;
                    if self.inconclusive > self.thresholds.inconclusive_limit {
                        Verdict::Inconclusive {
                            reason: format!(
                                "no data at {at} ({} inconclusive measurement{}, inconclusive_limit {}): {detail}; \
                                 the rollout pauses until a human decides",
                                self.inconclusive,
                                plural(self.inconclusive),
                                self.thresholds.inconclusive_limit
                            ),
                        }
                    } else {
                        Verdict::Continue
                    }
                }
                Outcome::Ok | Outcome::Unhealthy => {
                    self.conclusive += 1;
                    Verdict::Continue
                }
            }
        };
        let verdict = match verdict {
            Verdict::Continue if self.taken >= self.plan.count => self.complete(&detail),
            other => other,
        };
        let verdict = self.with_notes(verdict);
        if verdict.is_final() {
            self.verdict = Some(verdict.clone());
        }
        verdict
    }

    /// The verdict after the last measurement when no rule ended the analysis earlier.
    fn complete(&self, last: &str) -> Verdict {
        let count = self.plan.count;
        if self.health_streak > 0 {
            return Verdict::Inconclusive {
                reason: format!(
                    "the last health check failed ({} in a row, trigger: health_check_failures {}) at the end of the \
                     analysis; a rollout whose health checks fail is not passed: {last}",
                    self.health_streak, self.thresholds.health_check_failures
                ),
            };
        }
        if self.conclusive == 0 {
            return Verdict::Inconclusive {
                reason: format!("none of the {count} measurements had data to judge (last: {last})"),
            };
        }
        let limits: Vec<String> =
            self.triggers.iter().map(|t| format!("{} at most {}", t.figure, t.limit_text)).collect();
        let mut summary = format!("{count} of {count} measurements taken");
        if !limits.is_empty() {
            let _ = write!(summary, " against {}", limits.join(", "));
        }
        let _ = write!(
            summary,
            "; {} breaching (failure_limit {}), {} inconclusive (inconclusive_limit {}); last: {last}",
            self.failures, self.thresholds.failure_limit, self.inconclusive, self.thresholds.inconclusive_limit
        );
        Verdict::Passed { summary }
    }

    fn with_notes(&self, verdict: Verdict) -> Verdict {
        if self.notes.is_empty() {
            return verdict;
        }
        let notes = self.notes.join("; ");
        match verdict {
            Verdict::Continue => Verdict::Continue,
            Verdict::Failed { reason } => Verdict::Failed { reason: format!("{reason} [{notes}]") },
            Verdict::Inconclusive { reason } => Verdict::Inconclusive { reason: format!("{reason} [{notes}]") },
            Verdict::Passed { summary } => Verdict::Passed { summary: format!("{summary} [{notes}]") },
        }
    }

    /// Ends the analysis early (a shutdown): Inconclusive, since not every measurement was
    /// taken. An analysis that already has a verdict keeps it.
    pub fn interrupt(&mut self, why: &str) -> Verdict {
        if let Some(verdict) = &self.verdict {
            return verdict.clone();
        }
        let verdict = self.with_notes(Verdict::Inconclusive {
            reason: format!(
                "the analysis was interrupted after {} of {} measurements: {why}",
                self.taken, self.plan.count
            ),
        });
        self.verdict = Some(verdict.clone());
        verdict
    }

    /// Drives the analysis to its verdict. `measure(index)` takes measurement `index`;
    /// before every measurement after the first, `wait(due)` is called with its due time
    /// from the start ([`Plan::due`]) and returns once it has come, or `false` to stop (a
    /// shutdown), which ends the analysis Inconclusive.
    pub fn run(
        &mut self,
        mut measure: impl FnMut(u32) -> Measurement,
        mut wait: impl FnMut(Duration) -> bool,
    ) -> Verdict {
        loop {
            if let Some(verdict) = &self.verdict {
                return verdict.clone();
            }
            let index = self.taken;
            if index > 0 && !wait(self.plan.due(index)) {
                return self.interrupt("stopped while waiting for the next measurement");
            }
            self.measure(measure(index));
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn spec(figures: &[Figure]) -> MetricsSpec {
        let mut spec = MetricsSpec { http: Some("http://app/stats".into()), ..MetricsSpec::default() };
        for figure in figures {
            let pointer = Some(format!("/{}", figure.key()));
            match figure {
                Figure::ErrorRate => spec.error_rate = pointer,
                Figure::LatencyP95Ms => spec.latency_p95_ms = pointer,
                Figure::LatencyP99Ms => spec.latency_p99_ms = pointer,
            }
        }
        spec
    }

    fn sample(error_rate: Option<f64>, p95: Option<f64>, p99: Option<f64>) -> Sample {
        let mut missing = BTreeMap::new();
        for (figure, value) in
            [(Figure::ErrorRate, error_rate), (Figure::LatencyP95Ms, p95), (Figure::LatencyP99Ms, p99)]
        {
            if value.is_none() {
                missing.insert(figure.key().to_owned(), "cannot connect: connection refused".to_owned());
            }
        }
        Sample {
            error_rate,
            latency_p95_ms: p95,
            latency_p99_ms: p99,
            source: "GET http://app/stats".into(),
            missing,
            ..Sample::default()
        }
    }

    fn metrics(error_rate: f64, p95: f64) -> Measurement {
        Measurement { metrics: Some(sample(Some(error_rate), Some(p95), None)), health: None }
    }

    fn health(passed: bool) -> Measurement {
        Measurement {
            metrics: None,
            health: Some(Health { passed, detail: if passed { "1 passed" } else { "api: status 500" }.into() }),
        }
    }

    fn plan(count: u32) -> Plan {
        Plan { interval: Duration::from_secs(1), count }
    }

    fn baseline(p95: f64) -> Baseline {
        Baseline::new(sample(Some(0.1), Some(p95), None))
    }

    fn analysis(count: u32, thresholds: Thresholds) -> Analysis {
        let figures = [Figure::ErrorRate, Figure::LatencyP95Ms];
        Analysis::new(plan(count), thresholds, Some(&spec(&figures)), Some(&baseline(40.0)))
    }

    fn reason(verdict: &Verdict) -> &str {
        assert!(verdict.is_final(), "expected a final verdict, found {verdict:?}");
        verdict.text()
    }

    #[test]
    fn the_first_breach_fails_by_default_and_names_the_figure() {
        let mut analysis = analysis(5, Thresholds::default());
        assert_eq!(analysis.measure(metrics(0.5, 41.0)), Verdict::Continue);
        let verdict = analysis.measure(metrics(12.5, 41.0));
        let Verdict::Failed { reason } = &verdict else { panic!("expected Failed, found {verdict:?}") };
        assert!(reason.starts_with("error_rate 12.5% is above the trigger 5% at measurement 2 of 5"), "{reason}");
        assert!(reason.contains("1 breaching measurement, failure_limit 0"), "{reason}");
        assert!(reason.contains("source: GET http://app/stats"), "{reason}");
        // A verdict is final: later measurements change nothing.
        assert_eq!(analysis.measure(metrics(0.0, 1.0)), verdict);
        assert_eq!(analysis.taken(), 2);
        assert_eq!(analysis.records().iter().map(|r| r.outcome).collect::<Vec<_>>(), [Outcome::Ok, Outcome::Breached]);
    }

    #[test]
    fn failures_must_exceed_the_failure_limit() {
        let thresholds = Thresholds { failure_limit: 1, ..Thresholds::default() };
        let mut analysis = analysis(3, thresholds);
        assert_eq!(analysis.measure(metrics(9.0, 10.0)), Verdict::Continue);
        assert_eq!(analysis.measure(metrics(1.0, 10.0)), Verdict::Continue);
        let verdict = analysis.measure(metrics(6.0, 10.0));
        assert!(reason(&verdict).contains("2 breaching measurements, failure_limit 1"), "{verdict:?}");
        assert!(matches!(verdict, Verdict::Failed { .. }));

        // One tolerated breach, then a clean run to the end, passes and says so.
        let mut analysis = self::analysis(2, thresholds);
        analysis.measure(metrics(9.0, 10.0));
        let verdict = analysis.measure(metrics(1.0, 10.0));
        let Verdict::Passed { summary } = &verdict else { panic!("expected Passed, found {verdict:?}") };
        assert!(summary.contains("1 breaching (failure_limit 1)"), "{summary}");
    }

    #[test]
    fn limits_are_strict_and_p95_is_relative_to_the_baseline() {
        // Exactly at the limits: 5% and 2 × 40 ms.
        let mut at_limit = analysis(1, Thresholds::default());
        let verdict = at_limit.measure(metrics(5.0, 80.0));
        let Verdict::Passed { summary } = &verdict else { panic!("expected Passed, found {verdict:?}") };
        assert!(
            summary.contains("error_rate at most 5%, latency_p95_ms at most 2 × baseline 40 ms = 80 ms"),
            "{summary}"
        );
        assert!(summary.contains("last: error_rate 5%, latency_p95_ms 80 ms"), "{summary}");

        let mut above = analysis(1, Thresholds::default());
        let verdict = above.measure(metrics(0.0, 80.5));
        assert!(
            reason(&verdict).starts_with("latency_p95_ms 80.5 ms is above the trigger 2 × baseline 40 ms = 80 ms"),
            "{verdict:?}"
        );
    }

    #[test]
    fn p99_is_judged_only_with_a_limit() {
        let figures = [Figure::LatencyP99Ms];
        let p99 = |value| Measurement { metrics: Some(sample(None, None, Some(value))), health: None };
        let thresholds = Thresholds { response_time_p99: Some(300.0), ..Thresholds::default() };
        let mut judged = Analysis::new(plan(2), thresholds, Some(&spec(&figures)), None);
        assert_eq!(judged.measure(p99(299.0)), Verdict::Continue);
        assert!(reason(&judged.measure(p99(301.0))).starts_with("latency_p99_ms 301 ms is above the trigger 300 ms"));

        // Without `response_time_p99` nothing judges the only figure: nothing to judge.
        let mut unjudged = Analysis::new(plan(1), Thresholds::default(), Some(&spec(&figures)), None);
        let verdict = unjudged.measure(p99(5000.0));
        assert!(matches!(verdict, Verdict::Inconclusive { .. }), "{verdict:?}");
        assert!(verdict.text().contains("nothing to judge"), "{verdict:?}");
    }

    #[test]
    fn without_a_baseline_p95_the_ratio_trigger_is_skipped_and_said_so() {
        let figures = [Figure::ErrorRate, Figure::LatencyP95Ms];
        for (baseline, why) in [
            (None, "no baseline was taken"),
            (Some(Baseline::new(sample(Some(0.0), None, None))), "baseline: cannot connect: connection refused"),
            (Some(Baseline::new(sample(Some(0.0), Some(0.0), None))), "the baseline p95 is 0 ms, expected more than 0"),
        ] {
            let mut analysis = Analysis::new(plan(1), Thresholds::default(), Some(&spec(&figures)), baseline.as_ref());
            // A huge p95 breaches nothing, and a missing p95 is not "no data": no trigger reads it.
            let verdict = analysis.measure(Measurement { metrics: Some(sample(Some(1.0), None, None)), health: None });
            let Verdict::Passed { summary } = &verdict else { panic!("expected Passed, found {verdict:?}") };
            assert!(
                summary.ends_with(&format!("[latency_p95_ratio trigger skipped: no baseline p95 ({why})]")),
                "{summary}"
            );
            let mut failing = Analysis::new(plan(1), Thresholds::default(), Some(&spec(&figures)), baseline.as_ref());
            let verdict = failing.measure(metrics(50.0, 1.0));
            assert!(reason(&verdict).contains("latency_p95_ratio trigger skipped"), "{verdict:?}");
        }
    }

    #[test]
    fn no_data_is_inconclusive_never_a_pass() {
        let mut analysis = analysis(3, Thresholds::default());
        let verdict = analysis.measure(Measurement { metrics: Some(sample(None, None, None)), health: None });
        let Verdict::Inconclusive { reason } = &verdict else { panic!("expected Inconclusive, found {verdict:?}") };
        assert!(reason.starts_with("no data at measurement 1 of 3 (1 inconclusive measurement, inconclusive_limit 0)"));
        assert!(reason.contains("error_rate: cannot connect: connection refused"), "{reason}");
        assert!(reason.contains("a human decides"), "{reason}");

        // NaN slipped into a sample is no data too, and a missing sample is as well.
        let mut nan = self::analysis(1, Thresholds::default());
        assert!(matches!(nan.measure(metrics(f64::NAN, 10.0)), Verdict::Inconclusive { .. }));
        let mut absent = self::analysis(1, Thresholds::default());
        let verdict = absent.measure(Measurement::default());
        assert!(verdict.text().contains("no metrics sample was taken"), "{verdict:?}");
    }

    #[test]
    fn tolerated_no_data_still_needs_one_conclusive_measurement() {
        let thresholds = Thresholds { inconclusive_limit: 5, ..Thresholds::default() };
        let empty = || Measurement { metrics: Some(sample(None, None, None)), health: None };
        let mut analysis = analysis(2, thresholds);
        assert_eq!(analysis.measure(empty()), Verdict::Continue);
        let verdict = analysis.measure(empty());
        assert!(matches!(verdict, Verdict::Inconclusive { .. }), "{verdict:?}");
        assert!(verdict.text().starts_with("none of the 2 measurements had data"), "{verdict:?}");

        let mut mixed = self::analysis(2, thresholds);
        mixed.measure(empty());
        let verdict = mixed.measure(metrics(0.1, 10.0));
        assert!(verdict.text().contains("0 breaching (failure_limit 0), 1 inconclusive (inconclusive_limit 5)"));
    }

    #[test]
    fn consecutive_health_failures_fail_and_a_pass_resets_the_streak() {
        let mut analysis = Analysis::new(plan(10), Thresholds::default(), None, None);
        for passed in [false, false, true, false, false] {
            assert_eq!(analysis.measure(health(passed)), Verdict::Continue);
        }
        let verdict = analysis.measure(health(false));
        let Verdict::Failed { reason } = &verdict else { panic!("expected Failed, found {verdict:?}") };
        assert!(
            reason.starts_with(
                "health checks failed 3 times in a row (trigger: health_check_failures 3) at measurement 6 of 10"
            ),
            "{reason}"
        );
        assert!(reason.contains("api: status 500"), "{reason}");
        assert!(reason.ends_with("[no metrics configured: only health checks judge the rollout]"), "{reason}");
    }

    #[test]
    fn health_failures_do_not_count_toward_the_failure_limit_nor_as_no_data() {
        let mut analysis = analysis(5, Thresholds::default());
        let unhealthy_and_silent = Measurement {
            metrics: Some(sample(None, None, None)),
            health: Some(Health { passed: false, detail: "api: cannot connect".into() }),
        };
        assert_eq!(analysis.measure(unhealthy_and_silent.clone()), Verdict::Continue);
        assert_eq!(analysis.measure(unhealthy_and_silent.clone()), Verdict::Continue);
        assert!(matches!(analysis.measure(unhealthy_and_silent), Verdict::Failed { .. }));
        assert!(analysis.records().iter().all(|r| r.outcome == Outcome::Unhealthy));
    }

    #[test]
    fn a_failing_health_check_at_the_end_is_not_a_pass() {
        let mut analysis = Analysis::new(plan(2), Thresholds::default(), None, None);
        analysis.measure(health(true));
        let verdict = analysis.measure(health(false));
        assert!(matches!(verdict, Verdict::Inconclusive { .. }), "{verdict:?}");
        assert!(verdict.text().starts_with("the last health check failed (1 in a row"), "{verdict:?}");
    }

    #[test]
    fn nothing_to_judge_is_inconclusive() {
        let mut analysis = Analysis::new(plan(1), Thresholds::default(), None, None);
        let verdict = analysis.measure(Measurement::default());
        assert!(matches!(verdict, Verdict::Inconclusive { .. }), "{verdict:?}");
        assert!(verdict.text().contains("nothing to judge"), "{verdict:?}");
    }

    #[test]
    fn run_waits_for_each_due_time_and_stops_when_told() {
        let mut analysis = analysis(3, Thresholds::default());
        let mut waits = Vec::new();
        let verdict = analysis.run(
            |_| metrics(0.1, 10.0),
            |due| {
                waits.push(due);
                true
            },
        );
        assert!(matches!(verdict, Verdict::Passed { .. }), "{verdict:?}");
        assert_eq!(waits, [Duration::from_secs(1), Duration::from_secs(2)]);

        let mut stopped = self::analysis(3, Thresholds::default());
        let verdict = stopped.run(|_| metrics(0.1, 10.0), |_| false);
        assert!(verdict.text().starts_with("the analysis was interrupted after 1 of 3 measurements"), "{verdict:?}");
        assert!(matches!(verdict, Verdict::Inconclusive { .. }));
    }

    #[test]
    fn plans_and_thresholds_come_from_the_config() {
        let devops = Devops {
            monitoring_period: Duration::from_secs(2),
            monitoring_interval: Duration::from_millis(500),
            ..Devops::default()
        };
        assert_eq!(Plan::monitoring(&devops), Plan { interval: Duration::from_millis(500), count: 5 });
        assert_eq!(Plan::monitoring(&Devops::default()).count, 61);
        assert_eq!(Plan::step(None, &devops), Plan { interval: Duration::from_millis(500), count: 1 });
        let analysis_spec =
            AnalysisSpec::from_value(&json!({"interval": "2s", "count": 4, "failure_limit": 2})).unwrap();
        assert_eq!(Plan::step(Some(&analysis_spec), &devops), Plan { interval: Duration::from_secs(2), count: 4 });
        assert_eq!(Plan::step(Some(&analysis_spec), &devops).due(3), Duration::from_secs(6));

        let triggers = RollbackTriggers { failure_limit: 1, health_check_failures: 0, ..RollbackTriggers::default() };
        let thresholds = Thresholds::new(&triggers, None);
        assert_eq!((thresholds.failure_limit, thresholds.health_check_failures, thresholds.error_rate), (1, 1, 5.0));
        assert_eq!(Thresholds::new(&triggers, Some(&analysis_spec)).failure_limit, 2);

        assert!(AnalysisSpec::from_value(&json!({"interval": "5"})).unwrap_err().to_string().contains("no unit"));
        assert_eq!(AnalysisSpec::from_value(&json!({"count": 0})), Err(AnalysisSpecError::NoMeasurement));
        assert!(
            AnalysisSpec::from_value(&json!({"cont": 3})).unwrap_err().to_string().contains("unknown field `cont`")
        );
    }
}
