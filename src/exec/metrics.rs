//! Metrics for deploy analysis and the monitoring period: one [`Sample`] of the error rate
//! and the latencies of an environment, read from the source its `metrics` config names.
//!
//! Three sources, exactly one per environment:
//! - `http`: a URL answering JSON; each figure is a JSON Pointer into it (`"/error_rate"`);
//! - `command`: a shell command printing one JSON document on stdout, run through
//!   [`Runner`] so it is logged, masked and time-limited like every step; figures are JSON
//!   Pointers as for `http`;
//! - `prometheus`: the base URL of a Prometheus server; each figure is a PromQL expression
//!   sent to `GET <base>/api/v1/query?query=...`, whose answer must be a single value (an
//!   instant vector of one series, or a scalar).
//!
//! A figure that cannot be read is `None` with a reason, never a zero: an unreachable source,
//! a timeout, a missing pointer, a value that is not a number, an empty Prometheus result,
//! `NaN` or an infinity, a Prometheus error. The analysis treats a missing figure as no data
//! (inconclusive), so a broken metrics pipeline can never pass a rollout.
//! Numbers may also be JSON strings (`"0.5"`), as many stats endpoints and Prometheus itself
//! write them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::Runner;
use super::http::{self, HttpError, percent_encode};
use crate::duration::{defaults, duration_text};

/// How long one sample may take, all queries together, unless `metrics.timeout` says otherwise.
pub const DEFAULT_SAMPLE_TIMEOUT: Duration = defaults::METRICS_SAMPLE_TIMEOUT;

/// The figures the rollback triggers judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Percent of requests that failed.
    ErrorRate,
    /// 95th percentile latency in milliseconds.
    LatencyP95Ms,
    /// 99th percentile latency in milliseconds.
    LatencyP99Ms,
}

impl Figure {
    pub const ALL: [Figure; 3] = [Figure::ErrorRate, Figure::LatencyP95Ms, Figure::LatencyP99Ms];

    /// The name in the config and in reports.
    pub fn key(self) -> &'static str {
        match self {
            Figure::ErrorRate => "error_rate",
            Figure::LatencyP95Ms => "latency_p95_ms",
            Figure::LatencyP99Ms => "latency_p99_ms",
        }
    }

    /// Formats a value of this figure with its unit: `12.5%`, `340 ms`.
    pub fn show(self, value: f64) -> String {
        let number = format_number(value);
        match self {
            Figure::ErrorRate => format!("{number}%"),
            Figure::LatencyP95Ms | Figure::LatencyP99Ms => format!("{number} ms"),
        }
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A number as people read it: no trailing `.0`, at most three decimals.
pub fn format_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// `environments.<env>.metrics`: where the figures come from and how to find each one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// URL of an endpoint returning JSON.
    #[serde(default)]
    pub http: Option<String>,
    /// Shell command printing a JSON document.
    #[serde(default)]
    pub command: Option<String>,
    /// Base URL of a Prometheus server.
    #[serde(default)]
    pub prometheus: Option<String>,
    /// JSON Pointer or PromQL for the error rate, in percent.
    #[serde(default)]
    pub error_rate: Option<String>,
    /// JSON Pointer or PromQL for the p95 latency, in milliseconds.
    #[serde(default)]
    pub latency_p95_ms: Option<String>,
    /// JSON Pointer or PromQL for the p99 latency, in milliseconds.
    #[serde(default)]
    pub latency_p99_ms: Option<String>,
    /// Extra figures reported with each sample (no trigger judges them), by name.
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
    /// How long one sample may take, all queries together (default 10s).
    #[serde(default, with = "duration_text::option")]
    pub timeout: Option<Duration>,
    /// A PEM file of the CA certificates to trust for an `https` source instead of the
    /// system's, relative to the workspace.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// An environment's `metrics` that cannot be used, in the words of the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsSpecError {
    /// Not the shape of a `metrics` block (an unknown key, a wrong type, a bad duration).
    #[error("cannot read `metrics`: {0}")]
    Unreadable(String),
    #[error("expected one of `http`, `command` or `prometheus` in `metrics`, found none")]
    NoSource,
    #[error("expected exactly one of `http`, `command` or `prometheus` in `metrics`, found {}", .0.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", "))]
    ManySources(Vec<&'static str>),
    #[error(
        "expected at least one figure in `metrics` (error_rate, latency_p95_ms, latency_p99_ms or queries), found none"
    )]
    NoFigure,
}

/// Where a sample is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Http(&'a str),
    Command(&'a str),
    Prometheus(&'a str),
}

impl MetricsSpec {
    /// Reads an environment's `metrics` value and checks what the schema cannot say well:
    /// exactly one source, at least one figure, a valid timeout.
    pub fn from_value(value: &Value) -> Result<MetricsSpec, MetricsSpecError> {
        let spec: MetricsSpec =
            serde_json::from_value(value.clone()).map_err(|e| MetricsSpecError::Unreadable(e.to_string()))?;
        spec.source()?;
        if Figure::ALL.iter().all(|&figure| spec.query(figure).is_none()) && spec.queries.is_empty() {
            return Err(MetricsSpecError::NoFigure);
        }
        Ok(spec)
    }

    /// The one configured source.
    pub fn source(&self) -> Result<Source<'_>, MetricsSpecError> {
        let sources: Vec<(&str, Source<'_>)> = [
            self.http.as_deref().map(|url| ("http", Source::Http(url))),
            self.command.as_deref().map(|command| ("command", Source::Command(command))),
            self.prometheus.as_deref().map(|url| ("prometheus", Source::Prometheus(url))),
        ]
        .into_iter()
        .flatten()
        .collect();
        match sources.as_slice() {
            [(_, source)] => Ok(*source),
            [] => Err(MetricsSpecError::NoSource),
            many => Err(MetricsSpecError::ManySources(many.iter().map(|(name, _)| *name).collect())),
        }
    }

    /// The JSON Pointer or PromQL configured for `figure`.
    pub fn query(&self, figure: Figure) -> Option<&str> {
        match figure {
            Figure::ErrorRate => self.error_rate.as_deref(),
            Figure::LatencyP95Ms => self.latency_p95_ms.as_deref(),
            Figure::LatencyP99Ms => self.latency_p99_ms.as_deref(),
        }
    }

    /// The figures this config reads.
    pub fn figures(&self) -> Vec<Figure> {
        Figure::ALL.into_iter().filter(|&figure| self.query(figure).is_some()).collect()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_SAMPLE_TIMEOUT)
    }
}

/// One reading of the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// Percent of requests that failed.
    pub error_rate: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// The extra figures of `queries` that could be read, by name.
    pub queries: BTreeMap<String, f64>,
    /// What was read, masked: `GET http://...`, `command `...``, `prometheus http://...`.
    pub source: String,
    /// Why figures are missing, `figure: reason` joined with `; `; `None` when every
    /// configured figure was read.
    pub error: Option<String>,
    /// Why each configured figure without a value has none, by figure or query name.
    pub missing: BTreeMap<String, String>,
    /// The log of the metrics command, relative to the workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl Sample {
    /// A sample in which every configured figure is missing for the same reason.
    pub fn unavailable(spec: &MetricsSpec, source: String, reason: &str) -> Sample {
        let mut sample = Sample { source, ..Sample::default() };
        for (name, _) in wanted(spec) {
            sample.missing.insert(name, reason.to_owned());
        }
        sample.finish();
        sample
    }

    pub fn get(&self, figure: Figure) -> Option<f64> {
        match figure {
            Figure::ErrorRate => self.error_rate,
            Figure::LatencyP95Ms => self.latency_p95_ms,
            Figure::LatencyP99Ms => self.latency_p99_ms,
        }
    }

    /// Why `figure` has no value, when it has none.
    pub fn why_missing(&self, figure: Figure) -> Option<&str> {
        self.missing.get(figure.key()).map(String::as_str)
    }

    /// The figures read, for a report: `error_rate 0.4%, latency_p95_ms 42 ms`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Figure::ALL
            .into_iter()
            .filter_map(|figure| self.get(figure).map(|value| format!("{figure} {}", figure.show(value))))
            .collect();
        parts.extend(self.queries.iter().map(|(name, value)| format!("{name} {}", format_number(*value))));
        if parts.is_empty() { "no figures".to_owned() } else { parts.join(", ") }
    }

    fn set(&mut self, name: &str, value: f64) {
        match name {
            "error_rate" => self.error_rate = Some(value),
            "latency_p95_ms" => self.latency_p95_ms = Some(value),
            "latency_p99_ms" => self.latency_p99_ms = Some(value),
            _ => {
                self.queries.insert(name.to_owned(), value);
            }
        }
    }

    fn finish(&mut self) {
        self.error = (!self.missing.is_empty())
            .then(|| self.missing.iter().map(|(name, why)| format!("{name}: {why}")).collect::<Vec<_>>().join("; "));
    }
}

/// The figures to read: the three named ones first, then `queries`, as (name, query).
fn wanted(spec: &MetricsSpec) -> Vec<(String, String)> {
    let named =
        Figure::ALL.into_iter().filter_map(|figure| Some((figure.key().to_owned(), spec.query(figure)?.to_owned())));
    let extra = spec.queries.iter().filter(|(name, _)| Figure::ALL.iter().all(|f| f.key() != name.as_str()));
    named.chain(extra.map(|(name, query)| (name.clone(), query.clone()))).collect()
}

/// Takes one sample, commands running in the workspace. See [`sample_in`].
pub fn sample(runner: &Runner, spec: &MetricsSpec, env: &[(String, String)]) -> Sample {
    sample_in(runner, spec, None, env)
}

/// Takes one sample from the source `spec` names; a `command` runs in `cwd` (default: the
/// workspace) with `env` added to its environment. Never fails: what cannot be read is a
/// missing figure with its reason, and every reason is masked for secrets.
pub fn sample_in(runner: &Runner, spec: &MetricsSpec, cwd: Option<&Path>, env: &[(String, String)]) -> Sample {
    let deadline = Instant::now() + spec.timeout();
    let ca_file = spec.ca_file.as_deref().map(|file| runner.workspace.join(file));
    let ca_file = ca_file.as_deref();
    let mask = |text: &str| runner.secrets.mask(text);
    let source = match spec.source() {
        Ok(source) => source,
        Err(why) => return Sample::unavailable(spec, "none".to_owned(), &why.to_string()),
    };
    let mut sample = match source {
        Source::Http(url) => {
            let label = mask(&format!("GET {url}"));
            match fetch_json(url, deadline, ca_file) {
                Ok(document) => from_document(spec, label, &document),
                Err(why) => Sample::unavailable(spec, label, &mask(&why.to_string())),
            }
        }
        Source::Command(command) => {
            let label = format!("command `{}`", mask(command));
            let (result, stdout) = runner.run_capturing_stdout("metrics", command, cwd, Some(spec.timeout()), env);
            let mut sample = if !result.success {
                Sample::unavailable(spec, label, &format!("the metrics command {}", result.summary()))
            } else if stdout.truncated {
                Sample::unavailable(
                    spec,
                    label,
                    &format!(
                        "expected a JSON document of at most {} bytes on stdout, found more",
                        super::command::STDOUT_CAPTURE_LIMIT
                    ),
                )
            } else {
                match parse_command_output(&stdout.bytes) {
                    Ok(document) => from_document(spec, label, &document),
                    Err(why) => Sample::unavailable(spec, label, &mask(&why.to_string())),
                }
            };
            sample.log = Some(result.log);
            sample
        }
        Source::Prometheus(base) => {
            let mut sample = Sample { source: mask(&format!("prometheus {base}")), ..Sample::default() };
            for (name, promql) in wanted(spec) {
                match prometheus_query(base, &promql, deadline, ca_file) {
                    Ok(value) => sample.set(&name, value),
                    Err(why) => {
                        sample.missing.insert(name, mask(&why.to_string()));
                    }
                }
            }
            sample.finish();
            sample
        }
    };
    sample.source = mask(&sample.source);
    sample
}

/// Why a figure could not be read. The text is the reason a sample, and so the analysis
/// records and reports, give for the figure; each names the URL, the JSON Pointer or the
/// PromQL query it concerns.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The `http` source gave no answer.
    #[error("GET {url}: {source}")]
    Unreachable { url: String, source: GetError },
    #[error("GET {url}: expected a 2xx status, found {code}")]
    Status { url: String, code: u16 },
    /// `found` is the start of the body, `error` the parser's.
    #[error("GET {url}: expected a JSON body, found {found} ({error})")]
    NotJson { url: String, found: String, error: String },
    /// The metrics command's stdout holds no JSON document.
    #[error("expected a JSON document on stdout, found {found} ({error})")]
    NoDocument { found: String, error: String },
    #[error("expected a JSON Pointer starting with `/`, found `{pointer}`")]
    NotAPointer { pointer: String },
    #[error("nothing at JSON Pointer `{pointer}`")]
    NoValue { pointer: String },
    /// `found` describes the value there.
    #[error("expected a number at `{pointer}`, found {found}")]
    NotANumber { pointer: String, found: String },
    #[error("{why} at `{pointer}`")]
    NotFinite { pointer: String, why: NoData },
    /// A Prometheus query that gave no single value.
    #[error("query `{query}`: {problem}")]
    Query { query: String, problem: QueryError },
}

/// Why a GET of the metrics source gave no response (the caller names the URL).
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("no time left in the sample's timeout")]
    NoTimeLeft,
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// A value that is a number but no figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoData {
    #[error("no data: the value is NaN")]
    NaN,
    #[error("no data: the value is +Inf")]
    PlusInf,
    #[error("no data: the value is -Inf")]
    MinusInf,
}

/// Why a Prometheus query gave no single value (the caller names the query).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("GET {base}: {source}")]
    Unreachable { base: String, source: GetError },
    #[error("expected a Prometheus API answer (JSON), found HTTP {status} with {found} ({error})")]
    NotAnAnswer { status: u16, found: String, error: String },
    /// `answer` is the API's `status` field, `kind` its `errorType`.
    #[error("Prometheus answered HTTP {status}, status {answer:?}, {kind}: {error}")]
    Refused { status: u16, answer: String, kind: String, error: String },
    #[error("expected `data` in the answer, found none")]
    NoData,
    #[error("no data: the result is an empty vector")]
    EmptyVector,
    #[error("expected one series, found {found} (aggregate them, e.g. with sum() or max())")]
    Series { found: usize },
    #[error("expected an instant vector or a scalar, found result type `{kind}`")]
    ResultType { kind: String },
    #[error("expected a [time, \"value\"] pair in the result, found none")]
    NoPair,
    #[error("expected a number, found {text:?}")]
    NotANumber { text: String },
    #[error(transparent)]
    NotFinite(NoData),
}

/// A GET within what is left of the sample's timeout, with the metrics body cap.
fn metrics_get(url: &str, deadline: Instant, ca_file: Option<&Path>) -> Result<(u16, String), GetError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(GetError::NoTimeLeft);
    }
    Ok(http::get(url, &http::Request { timeout: left, max_body: http::MAX_METRICS_BODY, ca_file })?)
}

fn fetch_json(url: &str, deadline: Instant, ca_file: Option<&Path>) -> Result<Value, MetricsError> {
    let (status, body) = metrics_get(url, deadline, ca_file)
        .map_err(|source| MetricsError::Unreachable { url: url.to_owned(), source })?;
    if !(200..300).contains(&status) {
        return Err(MetricsError::Status { url: url.to_owned(), code: status });
    }
    serde_json::from_str(&body).map_err(|e| MetricsError::NotJson {
        url: url.to_owned(),
        found: excerpt(&body),
        error: e.to_string(),
    })
}

/// The command's stdout as one JSON document; a command that logs lines before its JSON is
/// read from its last non-empty line.
fn parse_command_output(stdout: &[u8]) -> Result<Value, MetricsError> {
    let text = String::from_utf8_lossy(stdout);
    let whole = serde_json::from_str(text.trim());
    match whole {
        Ok(value) => Ok(value),
        Err(e) => text
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .and_then(|line| serde_json::from_str(line.trim()).ok())
            .ok_or_else(|| MetricsError::NoDocument { found: excerpt(&text), error: e.to_string() }),
    }
}

fn from_document(spec: &MetricsSpec, source: String, document: &Value) -> Sample {
    let mut sample = Sample { source, ..Sample::default() };
    for (name, pointer) in wanted(spec) {
        match read_pointer(document, &pointer) {
            Ok(value) => sample.set(&name, value),
            Err(why) => {
                sample.missing.insert(name, why.to_string());
            }
        }
    }
    sample.finish();
    sample
}

/// The finite number at `pointer`.
fn read_pointer(document: &Value, pointer: &str) -> Result<f64, MetricsError> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(MetricsError::NotAPointer { pointer: pointer.to_owned() });
    }
    let value = document.pointer(pointer).ok_or_else(|| MetricsError::NoValue { pointer: pointer.to_owned() })?;
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| MetricsError::NotANumber { pointer: pointer.to_owned(), found: describe_json(value) })?;
    finite(number).map_err(|why| MetricsError::NotFinite { pointer: pointer.to_owned(), why })
}

fn finite(number: f64) -> Result<f64, NoData> {
    if number.is_nan() {
        Err(NoData::NaN)
    } else if number.is_infinite() {
        Err(if number > 0.0 { NoData::PlusInf } else { NoData::MinusInf })
    } else {
        Ok(number)
    }
}

/// Runs one PromQL instant query and returns its single value.
fn prometheus_query(base: &str, promql: &str, deadline: Instant, ca_file: Option<&Path>) -> Result<f64, MetricsError> {
    let in_query = |problem: QueryError| MetricsError::Query { query: promql.to_owned(), problem };
    let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), percent_encode(promql));
    let (status, body) = metrics_get(&url, deadline, ca_file)
        .map_err(|source| in_query(QueryError::Unreachable { base: base.to_owned(), source }))?;
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| in_query(QueryError::NotAnAnswer { status, found: excerpt(&body), error: e.to_string() }))?;
    if answer.get("status").and_then(Value::as_str) != Some("success") || !(200..300).contains(&status) {
        let text = |field: &str, default: &str| answer.get(field).and_then(Value::as_str).unwrap_or(default).to_owned();
        return Err(in_query(QueryError::Refused {
            status,
            answer: text("status", "missing"),
            kind: text("errorType", "unknown"),
            error: text("error", "no error message"),
        }));
    }
    let data = answer.get("data").ok_or_else(|| in_query(QueryError::NoData))?;
    let result_type = data.get("resultType").and_then(Value::as_str).unwrap_or("missing");
    let result = data.get("result");
    let sample = match (result_type, result) {
        ("vector", Some(Value::Array(series))) => match series.as_slice() {
            [] => return Err(in_query(QueryError::EmptyVector)),
            [one] => one.get("value"),
            many => return Err(in_query(QueryError::Series { found: many.len() })),
        },
        ("scalar", Some(value)) => Some(value),
        (kind, _) => return Err(in_query(QueryError::ResultType { kind: kind.to_owned() })),
    };
    let text =
        sample.and_then(|pair| pair.get(1)).and_then(Value::as_str).ok_or_else(|| in_query(QueryError::NoPair))?;
    let number: f64 = text.parse().map_err(|_| in_query(QueryError::NotANumber { text: text.to_owned() }))?;
    finite(number).map_err(|why| in_query(QueryError::NotFinite(why)))
}

fn describe_json(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", excerpt(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The start of a text for an error message.
fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "nothing".to_owned();
    }
    let short: String = trimmed.chars().take(80).collect();
    if short.len() < trimmed.len() { format!("{short:?}...") } else { format!("{short:?}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn exactly_one_source_and_some_figure() {
        let ok = MetricsSpec::from_value(&json!({"http": "http://x/stats", "error_rate": "/e"})).unwrap();
        assert_eq!(ok.source().unwrap(), Source::Http("http://x/stats"));
        assert_eq!(ok.figures(), vec![Figure::ErrorRate]);
        let two = MetricsSpec::from_value(&json!({"http": "http://x", "prometheus": "http://p", "error_rate": "/e"}));
        assert_eq!(
            two.unwrap_err().to_string(),
            "expected exactly one of `http`, `command` or `prometheus` in `metrics`, found `http`, `prometheus`"
        );
        let none = MetricsSpec::from_value(&json!({"error_rate": "/e"})).unwrap_err().to_string();
        assert!(none.contains("found none"), "{none}");
        let empty = MetricsSpec::from_value(&json!({"command": "true"})).unwrap_err().to_string();
        assert!(empty.contains("at least one figure"), "{empty}");
        let typo = MetricsSpec::from_value(&json!({"command": "true", "eror_rate": "/e"})).unwrap_err().to_string();
        assert!(typo.contains("eror_rate"), "{typo}");
        let timeout = MetricsSpec::from_value(&json!({"command": "true", "error_rate": "/e", "timeout": "10"}));
        assert!(timeout.unwrap_err().to_string().contains("no unit"));
    }

    #[test]
    fn pointers_read_finite_numbers_only() {
        let document = json!({"e": 1.5, "s": "2.5", "n": null, "o": {}, "nan": "NaN", "inf": "+Inf", "t": true});
        let why = |pointer: &str| read_pointer(&document, pointer).unwrap_err().to_string();
        assert_eq!(read_pointer(&document, "/e").unwrap(), 1.5);
        assert_eq!(read_pointer(&document, "/s").unwrap(), 2.5);
        assert_eq!(why("/n"), "expected a number at `/n`, found null");
        assert_eq!(why("/o"), "expected a number at `/o`, found an object");
        assert_eq!(why("/t"), "expected a number at `/t`, found the boolean true");
        assert_eq!(why("/nan"), "no data: the value is NaN at `/nan`");
        assert_eq!(why("/inf"), "no data: the value is +Inf at `/inf`");
        assert_eq!(why("/missing"), "nothing at JSON Pointer `/missing`");
        assert!(why("e").contains("starting with `/`"));
    }

    #[test]
    fn command_output_may_log_before_its_json() {
        assert_eq!(parse_command_output(b"{\"a\": 1}\n").unwrap(), json!({"a": 1}));
        assert_eq!(parse_command_output(b"querying...\n{\"a\": 2}\n\n").unwrap(), json!({"a": 2}));
        let error = parse_command_output(b"oops\n").unwrap_err().to_string();
        assert!(error.starts_with("expected a JSON document on stdout, found \"oops\""), "{error}");
        assert!(parse_command_output(b"").unwrap_err().to_string().contains("found nothing"));
    }

    #[test]
    fn samples_describe_and_explain_themselves() {
        let spec = MetricsSpec {
            http: Some("http://x".into()),
            error_rate: Some("/e".into()),
            latency_p95_ms: Some("/p".into()),
            queries: BTreeMap::from([("rps".to_owned(), "/r".to_owned())]),
            ..MetricsSpec::default()
        };
        let sample = from_document(&spec, "GET http://x".into(), &json!({"e": 12.5, "r": 3}));
        assert_eq!(sample.error_rate, Some(12.5));
        assert_eq!(sample.latency_p95_ms, None);
        assert_eq!(sample.why_missing(Figure::LatencyP95Ms), Some("nothing at JSON Pointer `/p`"));
        assert_eq!(sample.error.as_deref(), Some("latency_p95_ms: nothing at JSON Pointer `/p`"));
        assert_eq!(sample.describe(), "error_rate 12.5%, rps 3");
        let down = Sample::unavailable(&spec, "GET http://x".into(), "cannot connect");
        assert_eq!(down.missing.len(), 3);
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(0.12345), "0.123");
    }
}
