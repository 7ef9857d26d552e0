//! Metrics and analysis against real components: a test HTTP app on a loopback port, real
//! `sh` processes for metrics commands, and a real Prometheus server scraping the app.
//!
//! [`TestApp`] serves `/health`, `/stats` (JSON, chunked) and `/metrics` (Prometheus text
//! format) and is switched between healthy, failing, silent (up and healthy but with no
//! metrics) and down (every connection closed without an answer). [`Prometheus`] runs the
//! Debian `prometheus` binary on a free loopback port with a generated config and a
//! temporary storage directory, and is killed when dropped. Both are `pub(crate)` so other
//! test modules (canary and monitoring tests) can use them.
//!
//! The Prometheus tests fail, not skip, when the binary is missing: `.ci/run` installs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use opsflow::exec::checks::{CheckSpec, run_check};
use opsflow::exec::command::Runner;
use opsflow::exec::http;
use opsflow::exec::metrics::{Figure, MetricsSpec, Sample, sample};
use opsflow::exec::secrets::Secrets;
use opsflow::rollout::analysis::{Analysis, Baseline, Health, Measurement, Outcome, Plan, Thresholds, Verdict};
use serde_json::json;

/// What the test app does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Health 200, 0.4% errors and 42 ms p95 in `/stats`, no 500s in `/metrics`.
    Healthy = 0,
    /// Health 500, 37.5% errors and 900 ms p95 in `/stats`, 40% 500s and slow requests in `/metrics`.
    Failing = 1,
    /// Health 200, but `/stats` is 404 and `/metrics` has no request series: no data.
    Silent = 2,
    /// Every connection is closed without an answer.
    Down = 3,
    /// Alive (health 200) but serving errors: `/stats` and `/metrics` as in `Failing`, as a
    /// bad canary does while its health endpoint still answers.
    Degraded = 4,
}

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        Some(match text.trim() {
            "healthy" => Mode::Healthy,
            "failing" => Mode::Failing,
            "silent" => Mode::Silent,
            "down" => Mode::Down,
            "degraded" => Mode::Degraded,
            _ => return None,
        })
    }
}

/// The traffic the app pretends to have served: each scrape of `/metrics` stands for 100
/// requests since the previous one, so counters rise with Prometheus's own clock.
#[derive(Debug, Default)]
struct Traffic {
    ok: u64,
    errors: u64,
    /// Cumulative histogram of request durations, by [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    seconds: f64,
}

const BUCKETS: [&str; 6] = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];

impl Traffic {
    fn serve(&mut self, mode: Mode) {
        let (ok, errors, duration, first_bucket) = match mode {
            Mode::Healthy => (100, 0, 0.03, 0),
            Mode::Failing | Mode::Degraded => (60, 40, 0.8, 4),
            Mode::Silent | Mode::Down => return,
        };
        self.ok += ok;
        self.errors += errors;
        self.seconds += duration * (ok + errors) as f64;
        for bucket in &mut self.buckets[first_bucket..] {
            *bucket += ok + errors;
        }
    }

    fn exposition(&self) -> String {
        let mut text =
            String::from("# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n");
        text.push_str(&format!("http_requests_total{{code=\"200\"}} {}\n", self.ok));
        text.push_str(&format!("http_requests_total{{code=\"500\"}} {}\n", self.errors));
        text.push_str("# HELP http_request_duration_seconds Request durations.\n");
        text.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (le, count) in BUCKETS.iter().zip(self.buckets) {
            text.push_str(&format!("http_request_duration_seconds_bucket{{le=\"{le}\"}} {count}\n"));
        }
        text.push_str(&format!("http_request_duration_seconds_sum {}\n", self.seconds));
        text.push_str(&format!("http_request_duration_seconds_count {}\n", self.ok + self.errors));
        text
    }
}

/// A small HTTP app on `127.0.0.1:0`, one thread per connection, stopped when dropped.
pub(crate) struct TestApp {
    pub address: SocketAddr,
    mode: Arc<AtomicU8>,
    /// When set, a file whose content (`healthy`, `failing`, `silent`, `down`, `degraded`)
    /// overrides the mode at each request: what a deploy command writes when the version it
    /// rolls out changes how the app behaves.
    mode_file: Arc<Mutex<Option<std::path::PathBuf>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestApp {
    pub fn start(mode: Mode) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test app to a loopback port");
        let address = listener.local_addr().unwrap();
        let mode_cell = Arc::new(AtomicU8::new(mode as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let mode_file: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
        let acceptor = {
            let (mode, stop, file) = (Arc::clone(&mode_cell), Arc::clone(&stop), Arc::clone(&mode_file));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (mode, traffic) = (Arc::clone(&mode), Arc::clone(&traffic));
                    let from_file = file
                        .lock()
                        .unwrap()
                        .as_ref()
                        .and_then(|path| std::fs::read_to_string(path).ok())
                        .and_then(|text| Mode::parse(&text));
                    thread::spawn(move || handle(stream, from_file.unwrap_or_else(|| mode_of(&mode)), &traffic));
                }
            })
        };
        TestApp { address, mode: mode_cell, mode_file, stop, acceptor: Some(acceptor) }
    }

    /// Lets the file at `path` override the mode from now on (see `mode_file`).
    pub fn follow(&self, path: &std::path::Path) {
        *self.mode_file.lock().unwrap() = Some(path.to_owned());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn mode_of(cell: &AtomicU8) -> Mode {
    match cell.load(Ordering::SeqCst) {
        0 => Mode::Healthy,
        1 => Mode::Failing,
        2 => Mode::Silent,
        4 => Mode::Degraded,
        _ => Mode::Down,
    }
}

fn handle(mut stream: TcpStream, mode: Mode, traffic: &Mutex<Traffic>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    if mode == Mode::Down {
        // The request was read, so dropping the stream closes it cleanly (FIN, not a reset)
        // without a byte of answer.
        return;
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let respond = |stream: &mut TcpStream, status: &str, content_type: &str, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    match (path.as_str(), mode) {
        ("/health", Mode::Failing) => respond(&mut stream, "500 Internal Server Error", "text/plain", "failing"),
        ("/health", _) => respond(&mut stream, "200 OK", "text/plain", "ok"),
        ("/stats", Mode::Healthy | Mode::Failing | Mode::Degraded) => {
            let (error_rate, p95, p99) = if mode == Mode::Healthy { (0.4, 42.0, 80.0) } else { (37.5, 900.0, 1500.0) };
            let body = json!({
                "error_rate": error_rate,
                "latency": {"p95": p95, "p99": p99},
                "status": if mode == Mode::Healthy { "ok" } else { "degraded" },
            })
            .to_string();
            // Chunked, in two chunks, as many real servers answer.
            let (first, second) = body.split_at(body.len() / 2);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                 {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
                first.len(),
                second.len()
            );
        }
        ("/metrics", Mode::Healthy | Mode::Failing | Mode::Degraded) => {
            let mut traffic = traffic.lock().unwrap();
            traffic.serve(mode);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &traffic.exposition());
        }
        ("/metrics", _) => respond(&mut stream, "200 OK", "text/plain; version=0.0.4", "# no traffic data\n"),
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found"),
    }
}

/// A real Prometheus server scraping one target every second; killed when dropped.
pub(crate) struct Prometheus {
    pub url: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        let binary = find_in_path("prometheus").unwrap_or_else(|| {
            panic!(
                "expected the `prometheus` binary in PATH, found none: install it (`apt-get install -y prometheus`, \
                 as .ci/run does) to run the Prometheus tests"
            )
        });
        let mut dir = tempfile::Builder::new().prefix("opsflow-prometheus-").tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        // The port is free when chosen, but another process may take it before Prometheus
        // binds it: then Prometheus exits at once and another port is tried.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log_file = std::fs::File::create(&log).unwrap();
            let mut command = Command::new(&binary);
            // SAFETY: prctl is async-signal-safe; it makes the kernel kill Prometheus if the
            // test process dies without running `Drop` (a kill -9), so no server outlives it.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let url = format!("http://127.0.0.1:{port}");
            let ready = wait_ready(&mut child, &url, &log, PROMETHEUS_DEADLINE);
            let server = Prometheus { url, child: Some(child), _dir: dir };
            if ready {
                return server;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(text.contains("address already in use"), "Prometheus exited before it was ready:\n{text}");
            dir = server.into_dir();
        }
        panic!(
            "Prometheus could not bind a free port in 3 tries:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// Kills the server now (the tests of an unreachable Prometheus use this).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and keeps its directory for another try.
    fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long the tests give Prometheus to start, to scrape and to answer: long enough that only
/// a hang fails, on a loaded two-core CI machine too. Each wait ends as soon as its condition
/// holds.
pub(crate) const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(90);

/// Waits for `/-/ready`; false when Prometheus exited first.
fn wait_ready(child: &mut Child, url: &str, log: &std::path::Path, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    loop {
        let request = http::Request { timeout: Duration::from_secs(1), max_body: http::MAX_CHECK_BODY, ca_file: None };
        if let Ok((200, _)) = http::get(&format!("{url}/-/ready"), &request) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {deadline:?} waiting for Prometheus at {url} to be ready:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()))?
}

/// Calls `probe` until it returns a value, failing the test with `what` at the deadline.
#[track_caller]
pub(crate) fn poll<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        // The condition decides; the pause only keeps the loop from hammering the servers.
        thread::sleep(Duration::from_millis(100));
    }
}

fn runner(dir: &std::path::Path) -> Runner {
    Runner {
        run_dir: dir.join(".opsflow/runs/test"),
        workspace: dir.to_owned(),
        env: Vec::new(),
        secrets: Secrets::from_vars([("METRICS_TOKEN".to_owned(), "tok-7f3a9c".to_owned())], &[]),
        default_timeout: Duration::from_secs(30),
        abort: Arc::default(),
    }
}

fn spec(value: serde_json::Value) -> MetricsSpec {
    MetricsSpec::from_value(&value).unwrap_or_else(|e| panic!("{e}"))
}

/// The timeout of the tests' health checks and samples of the test app and of Prometheus:
/// an answer that comes late on a loaded machine is still an answer. Where a test is about a
/// timeout it sets a short one itself; a source that is down or refuses answers at once.
pub(crate) const SOURCE_TIMEOUT: &str = "30s";

/// One measurement as a deploy takes it: a metrics sample and the app's health check.
fn measure(runner: &Runner, metrics: &MetricsSpec, app: &TestApp) -> Measurement {
    let check: CheckSpec =
        serde_json::from_value(json!({"name": "api", "http": app.url("/health"), "timeout": SOURCE_TIMEOUT})).unwrap();
    let result = run_check(runner, "health", &check, &runner.workspace, &[]);
    Measurement {
        metrics: Some(sample(runner, metrics, &[])),
        health: Some(Health { passed: result.passed, detail: result.detail }),
    }
}

fn stats_spec(app: &TestApp) -> MetricsSpec {
    spec(json!({
        "http": app.url("/stats"),
        "error_rate": "/error_rate",
        "latency_p95_ms": "/latency/p95",
        "latency_p99_ms": "/latency/p99",
        "queries": {"status": "/status", "absent": "/nope"},
        "timeout": SOURCE_TIMEOUT,
    }))
}

#[test]
fn http_json_figures_follow_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let app = TestApp::start(Mode::Healthy);
    let metrics = stats_spec(&app);

    let healthy = sample(&runner, &metrics, &[]);
    assert_eq!(
        (healthy.error_rate, healthy.latency_p95_ms, healthy.latency_p99_ms),
        (Some(0.4), Some(42.0), Some(80.0))
    );
    assert_eq!(healthy.source, format!("GET {}", app.url("/stats")));
    // Extra queries: a non-numeric value and a missing pointer are reported, not zeros.
    assert!(healthy.queries.is_empty(), "{:?}", healthy.queries);
    assert_eq!(healthy.missing["status"], "expected a number at `/status`, found the string \"ok\"");
    assert_eq!(healthy.missing["absent"], "nothing at JSON Pointer `/nope`");

    app.set(Mode::Failing);
    let failing = sample(&runner, &metrics, &[]);
    assert_eq!((failing.error_rate, failing.latency_p95_ms), (Some(37.5), Some(900.0)));

    app.set(Mode::Silent);
    let silent = sample(&runner, &metrics, &[]);
    assert_eq!((silent.error_rate, silent.latency_p95_ms, silent.latency_p99_ms), (None, None, None));
    let why = silent.why_missing(Figure::ErrorRate).unwrap();
    assert!(why.ends_with("expected a 2xx status, found 404"), "{why}");

    app.set(Mode::Down);
    let down = sample(&runner, &metrics, &[]);
    let why = down.why_missing(Figure::LatencyP95Ms).unwrap();
    assert!(why.contains("the server closed the connection without a response"), "{why}");
    assert!(down.error.as_deref().unwrap().contains("error_rate: GET "), "{:?}", down.error);
}

/// A loopback port bound by a socket that does not listen: a connection to it is refused,
/// and no other test or server can bind it while the returned descriptor is open (a port
/// taken from a listener that was dropped may be handed to the next one that binds port 0).
fn a_port_bound_but_not_listening() -> (std::os::fd::OwnedFd, SocketAddr) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2), bind(2) and getsockname(2) calls on a descriptor this function
    // owns from its creation; the address structures live on this stack for each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let socket = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut address: libc::sockaddr_in = std::mem::zeroed();
        address.sin_family = libc::AF_INET as libc::sa_family_t;
        address.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let bound = libc::bind(fd, (&raw const address).cast(), size);
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        let mut length = size;
        let named = libc::getsockname(fd, (&raw mut address).cast(), &mut length);
        assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
        (socket, SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, u16::from_be(address.sin_port))))
    }
}

#[test]
fn an_unreachable_or_slow_http_source_is_no_data_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    // A port nobody listens on, and nobody can until the test ends: this test holds it.
    let (_holder, closed) = a_port_bound_but_not_listening();
    let refused = sample(&runner, &spec(json!({"http": format!("http://{closed}/stats"), "error_rate": "/e"})), &[]);
    assert!(refused.why_missing(Figure::ErrorRate).unwrap().contains("cannot connect"), "{refused:?}");

    // A server that accepts and never answers.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stats", mute.local_addr().unwrap());
    let slow = returns(|| sample(&runner, &spec(json!({"http": url, "error_rate": "/e", "timeout": "300ms"})), &[]));
    assert!(slow.why_missing(Figure::ErrorRate).unwrap().contains("timed out"), "{slow:?}");
}

#[test]
fn command_json_is_read_whole_logged_and_masked() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    // A pretty-printed document longer than the 20-line tail a step result keeps, a secret on
    // stderr, and a figure taken from the environment the caller passes.
    let command = r#"echo "using $METRICS_TOKEN" >&2
printf '{\n'
for i in $(seq 1 30); do printf '  "filler_%s": %s,\n' "$i" "$i"; done
printf '  "http": {"error_rate": "%s", "p95": 120.5},\n  "p99": null\n}\n' "$RATE""#;
    let metrics = spec(json!({
        "command": command,
        "error_rate": "/http/error_rate",
        "latency_p95_ms": "/http/p95",
        "latency_p99_ms": "/p99",
        "queries": {"first": "/filler_1"},
    }));
    let env = [("RATE".to_owned(), "2.5".to_owned()), ("METRICS_TOKEN".to_owned(), "tok-7f3a9c".to_owned())];
    let sample = sample(&runner, &metrics, &env);
    assert_eq!((sample.error_rate, sample.latency_p95_ms), (Some(2.5), Some(120.5)), "{sample:?}");
    assert_eq!(sample.latency_p99_ms, None);
    assert_eq!(sample.why_missing(Figure::LatencyP99Ms), Some("expected a number at `/p99`, found null"));
    assert_eq!(sample.queries["first"], 1.0);
    let log = std::fs::read_to_string(dir.path().join(sample.log.as_deref().expect("the command's log"))).unwrap();
    assert!(log.contains("using ***") && !log.contains("tok-7f3a9c"), "{log}");
    assert!(log.contains("\"filler_30\": 30"), "{log}");

    let failing =
        self::sample(&runner, &spec(json!({"command": "echo '{\"e\": 1}'; exit 3", "error_rate": "/e"})), &[]);
    let why = failing.why_missing(Figure::ErrorRate).unwrap();
    assert!(why.starts_with("the metrics command metrics failed with exit code 3"), "{why}");

    // `sleep 30` would outlast the deadline below: the sample returns because of its timeout.
    let slow = returns(|| {
        self::sample(&runner, &spec(json!({"command": "sleep 30", "error_rate": "/e", "timeout": "300ms"})), &[])
    });
    assert!(slow.why_missing(Figure::ErrorRate).unwrap().contains("timed out"), "{slow:?}");

    let garbage = self::sample(&runner, &spec(json!({"command": "echo 'rate=5'", "error_rate": "/e"})), &[]);
    let why = garbage.why_missing(Figure::ErrorRate).unwrap();
    assert!(why.starts_with("expected a JSON document on stdout, found \"rate=5\""), "{why}");
}

#[test]
fn analysis_of_real_http_samples_fails_on_errors_and_pauses_on_silence() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let app = TestApp::start(Mode::Healthy);
    let metrics = stats_spec(&app);
    let baseline = Baseline::new(sample(&runner, &metrics, &[]));
    let new = || {
        Analysis::new(
            Plan { interval: Duration::from_secs(1), count: 5 },
            Thresholds::default(),
            Some(&metrics),
            Some(&baseline),
        )
    };

    // Healthy, then errors rise: the first breach fails, naming the figures and values.
    let mut analysis = new();
    assert_eq!(analysis.measure(measure(&runner, &metrics, &app)), Verdict::Continue);
    app.set(Mode::Failing);
    let verdict = analysis.measure(measure(&runner, &metrics, &app));
    let Verdict::Failed { reason } = &verdict else { panic!("expected Failed, found {verdict:?}") };
    assert!(
        reason.starts_with(
            "error_rate 37.5% is above the trigger 5%, latency_p95_ms 900 ms is above the trigger 2 × baseline 42 ms = 84 ms \
             at measurement 2 of 5"
        ),
        "{reason}"
    );
    assert!(reason.contains("health check failed (1 in a row)"), "{reason}");

    // Up and healthy, but no metrics: inconclusive, never a pass.
    app.set(Mode::Silent);
    let mut analysis = new();
    let verdict = analysis.measure(measure(&runner, &metrics, &app));
    let Verdict::Inconclusive { reason } = &verdict else { panic!("expected Inconclusive, found {verdict:?}") };
    assert!(reason.contains("no data at measurement 1 of 5") && reason.contains("found 404"), "{reason}");
    assert!(reason.contains("health checks pass"), "{reason}");

    // Down: every health check fails, so the health trigger decides after 3 in a row.
    app.set(Mode::Down);
    let mut analysis = new();
    let verdicts: Vec<Verdict> = (0..3).map(|_| analysis.measure(measure(&runner, &metrics, &app))).collect();
    assert_eq!(verdicts[..2], [Verdict::Continue, Verdict::Continue]);
    assert!(verdicts[2].text().starts_with("health checks failed 3 times in a row"), "{:?}", verdicts[2]);
    assert!(analysis.records().iter().all(|r| r.outcome == Outcome::Unhealthy));
}

/// PromQL for the figures of the test app, over a window of a few scrapes.
pub(crate) fn prometheus_spec(prometheus: &Prometheus) -> MetricsSpec {
    spec(json!({
        "prometheus": prometheus.url,
        "error_rate": r#"100 * sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))"#,
        "latency_p95_ms": "1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5s])))",
        "queries": {"series": "http_requests_total"},
        "timeout": SOURCE_TIMEOUT,
    }))
}

pub(crate) fn has_error_rate(sample: &Sample) -> bool {
    sample.error_rate.is_some() && sample.latency_p95_ms.is_some()
}

#[test]
fn prometheus_sees_the_error_rate_rise_and_the_analysis_fails() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let app = TestApp::start(Mode::Healthy);
    let prometheus = Prometheus::start(app.address);
    let metrics = prometheus_spec(&prometheus);

    let baseline = poll(PROMETHEUS_DEADLINE, "Prometheus to have a healthy error rate", || {
        Some(sample(&runner, &metrics, &[])).filter(has_error_rate)
    });
    assert_eq!(baseline.error_rate, Some(0.0), "{baseline:?}");
    let p95 = baseline.latency_p95_ms.unwrap();
    assert!((p95 - 47.5).abs() < 0.01, "expected the p95 of the 50 ms bucket, found {p95}");
    // Two series match the bare selector: not a single value, so no figure.
    let why = &baseline.missing["series"];
    assert!(why.contains("expected one series, found 2"), "{why}");
    assert_eq!(baseline.source, format!("prometheus {}", prometheus.url));

    let mut analysis = Analysis::new(
        Plan { interval: Duration::from_secs(1), count: 1000 },
        Thresholds::default(),
        Some(&metrics),
        Some(&Baseline::new(baseline)),
    );
    // The healthy app's figures are within every trigger. (A sample taken while Prometheus
    // missed scrapes on a loaded machine may have no data: that is another test's verdict.)
    let healthy = poll(PROMETHEUS_DEADLINE, "a healthy sample with data", || {
        Some(sample(&runner, &metrics, &[])).filter(has_error_rate)
    });
    assert_eq!(analysis.measure(Measurement { metrics: Some(healthy), health: None }), Verdict::Continue);
    app.set(Mode::Failing);
    let mut seen = Vec::new();
    let (verdict, last) = poll(PROMETHEUS_DEADLINE, "the analysis to see the error rate rise", || {
        let sample = sample(&runner, &metrics, &[]);
        seen.push(sample.error_rate);
        if !has_error_rate(&sample) {
            return None; // No data this time (see above): not what this analysis judges.
        }
        let verdict = analysis.measure(Measurement { metrics: Some(sample.clone()), health: None });
        verdict.is_final().then_some((verdict, sample))
    });
    let Verdict::Failed { reason } = &verdict else { panic!("expected Failed, found {verdict:?} after {seen:?}") };
    // Which figures crossed first depends on when Prometheus scraped; whatever they are, the
    // reason names exactly the figures of the sample it judged that are over their trigger.
    let error_rate = last.error_rate.unwrap();
    let p95 = last.latency_p95_ms.unwrap();
    let error_rate_line = format!("error_rate {} is above the trigger 5%", Figure::ErrorRate.show(error_rate));
    let p95_line =
        format!("latency_p95_ms {} is above the trigger 2 × baseline 47.5 ms = 95 ms", Figure::LatencyP95Ms.show(p95));
    assert!(error_rate > 5.0 || p95 > 95.0, "failed on a sample under every trigger: {last:?}: {reason}");
    // The reason opens with the breaching figures; every figure's value follows in the context.
    let (breached, context) = reason.split_once(" at measurement ").expect(reason);
    assert_eq!(breached.contains(&error_rate_line), error_rate > 5.0, "{reason} ({last:?})");
    assert_eq!(breached.contains("error_rate"), error_rate > 5.0, "{reason} ({last:?})");
    assert_eq!(breached.contains(&p95_line), p95 > 95.0, "{reason} ({last:?})");
    assert_eq!(breached.contains("latency_p95_ms"), p95 > 95.0, "{reason} ({last:?})");
    assert!(context.contains("error_rate ") && context.contains("latency_p95_ms "), "{reason}");
    // The rate keeps rising to the failing app's 40% as the window fills with its scrapes.
    poll(PROMETHEUS_DEADLINE, "the error rate to reach 40%", || {
        let rate = sample(&runner, &metrics, &[]).error_rate?;
        seen.push(Some(rate));
        ((rate - 40.0).abs() < 0.01).then_some(())
    });
}

#[test]
fn prometheus_without_data_or_unreachable_is_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let app = TestApp::start(Mode::Healthy);
    let mut prometheus = Prometheus::start(app.address);
    let metrics = prometheus_spec(&prometheus);
    let baseline = poll(PROMETHEUS_DEADLINE, "Prometheus to have data", || {
        Some(sample(&runner, &metrics, &[])).filter(has_error_rate)
    });
    let baseline = Baseline::new(baseline);
    let new = || {
        Analysis::new(
            Plan { interval: Duration::from_secs(1), count: 3 },
            Thresholds::default(),
            Some(&metrics),
            Some(&baseline),
        )
    };

    // The app stops exposing its request series: once they leave the 5s window the queries
    // return an empty vector, which is no data.
    app.set(Mode::Silent);
    let silent = poll(PROMETHEUS_DEADLINE, "the error rate to vanish from Prometheus", || {
        Some(sample(&runner, &metrics, &[])).filter(|s| s.error_rate.is_none())
    });
    let why = silent.why_missing(Figure::ErrorRate).unwrap();
    assert!(why.ends_with("no data: the result is an empty vector"), "{why}");
    let verdict = new().measure(Measurement { metrics: Some(silent), health: None });
    let Verdict::Inconclusive { reason } = &verdict else { panic!("expected Inconclusive, found {verdict:?}") };
    assert!(reason.starts_with("no data at measurement 1 of 3"), "{reason}");
    assert!(reason.contains("error_rate: query `100 * sum(rate(http_requests_total{code=\"500\"}[5s]))"), "{reason}");

    // Prometheus itself is gone.
    prometheus.stop();
    let gone = sample(&runner, &metrics, &[]);
    let why = gone.why_missing(Figure::ErrorRate).unwrap();
    assert!(why.contains("cannot connect"), "{why}");
    let mut analysis = new();
    let verdict = analysis.measure(Measurement { metrics: Some(gone), health: None });
    assert!(matches!(verdict, Verdict::Inconclusive { .. }), "{verdict:?}");
    assert!(verdict.text().contains(&format!("GET {}", prometheus.url)), "{verdict:?}");
}

/// Runs `f` on a thread of its own and returns what it returns; fails the test if it has not
/// returned after a minute, so a sample that ignores its timeout fails instead of hanging.
fn returns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let job = scope.spawn(f);
        poll(Duration::from_secs(60), "the sample to return", || job.is_finished().then_some(()));
        job.join().expect("the sample does not panic")
    })
}
