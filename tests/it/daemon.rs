//! `opsflow watch`, the daemon, on temporary workspaces: in-process (`opsflow::daemon::run` on
//! a runtime the test builds, stopped by a oneshot the test fires, its figures read through
//! [`Handles`]) and as a real process (its address read from its `-v` log, stopped by
//! SIGTERM, scraped over loopback).
//!
//! Every test waits for what a user would see (a task's status in `tasks.json`, a file, a line
//! on stderr, a figure on `/metrics`) with a deadline; none sleeps and hopes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opsflow::Exit;
use opsflow::daemon::{Handles, Settings};
use serde_json::{Value, json};

use crate::util::{TASKS, Workspace, is_rfc3339_utc, task, tasks_of, wait_for_exit, wait_until};

const STATE: &str = "docs/workflow/state.json";
const CONFIG: &str = "project-config.json";
const APPROVAL: &str = "docs/workflow/artifacts/R12-prod-approval.md";

/// Long enough that only a hang fails, on a loaded two-core CI machine too; the tests finish
/// far sooner when it is not.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

// --- workspaces ---------------------------------------------------------------------------

fn json_file(ws: &Workspace, relative: &str) -> Value {
    serde_json::from_slice(&ws.read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Rewrites a JSON file in place (truncate and write), as most scripts and agents do.
fn edit_json(ws: &Workspace, relative: &str, edit: impl FnOnce(&mut Value)) {
    let mut value = json_file(ws, relative);
    edit(&mut value);
    ws.write(relative, serde_json::to_string_pretty(&value).unwrap());
}

/// Writes `contents` to a temporary name beside `relative`, then renames it over `relative`,
/// as vim and most editors save.
fn save_by_rename(ws: &Workspace, relative: &str, temporary_name: &str, contents: &[u8]) {
    let target = ws.join(relative);
    let temporary = target.with_file_name(temporary_name);
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, &target).unwrap();
}

/// The sample workspace with no owned task and no current node: nothing to do until a test
/// writes work, so each reconcile is quick.
fn quiet_workspace() -> Workspace {
    let ws = Workspace::new().sample();
    ws.write(TASKS, "{\"tasks\": []}\n");
    edit_json(&ws, STATE, |state| state["current_nodes"] = json!([]));
    ws
}

/// A task for the configured DevOps agent (or an alias) that runs `Environment_Design`.
fn design_task(id: &str, agent: &str) -> Value {
    json!({
        "id": id,
        "title": format!("Design the environments ({id})"),
        "agent": agent,
        "type": "infrastructure_design",
        "status": "pending",
        "priority": "high",
        "unit_id": "UNIT-001"
    })
}

fn status(ws: &Workspace, id: &str) -> Option<String> {
    ws.tasks().iter().find(|t| t["id"] == id).and_then(|t| t["status"].as_str()).map(str::to_owned)
}

#[track_caller]
fn wait_for_status(ws: &Workspace, id: &str, expected: &str) {
    wait_until(DEADLINE, &format!("{id} to be `{expected}`"), || status(ws, id).as_deref() == Some(expected));
}

/// Every file under `dir` whose name ends with `.opsflow-tmp`.
fn temporary_files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".opsflow-tmp"))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Polls `condition` until it holds or `within` has passed; unlike `wait_until` it returns
/// `false` instead of failing, for a condition that is retried with a new attempt.
fn holds_within(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// --- HTTP and the Prometheus text format --------------------------------------------------

struct Response {
    status: u16,
    head: String,
    body: String,
}

/// A plain HTTP/1.1 GET over a std `TcpStream`, independent of the product's HTTP code.
fn http_get(address: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap_or_else(|e| panic!("read the response to GET {path}: {e}"));
    let text = String::from_utf8(bytes).expect("the response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {head}"));
    Response { status, head: head.to_owned(), body: body.to_owned() }
}

/// One sample of the exposition: `series` is the name with its labels as written.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .map(|(_, value)| value.parse().unwrap_or_else(|e| panic!("{series} has the value {value:?}: {e}")))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Label names and values of one sample, in order.
type Labels = Vec<(String, String)>;

/// Parses `{a="x",b="y"}` (escapes `\\`, `\"`, `\n`) and returns the labels and the rest.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with `{`")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or_else(|| format!("no `=\"` in labels at {rest:?}"))?;
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {other:?} in label {name}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("label {name} is not closed")),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Checks the Prometheus text exposition format 0.0.4: every sample is `name{labels} value`
/// (an optional timestamp after it), its family has exactly one `# TYPE` line before its first
/// sample, a family's lines are not interleaved with another's, and no series repeats.
/// Returns the families and their types.
fn check_exposition(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (number, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        let family = if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_metric_name(name) {
                        return Err(at(format!("invalid metric name {name:?}")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(at(format!("unknown type {kind:?}")));
                    }
                    if types.insert((*name).to_owned(), (*kind).to_owned()).is_some() {
                        return Err(at(format!("a second TYPE line for {name}")));
                    }
                    (*name).to_owned()
                }
                ["TYPE", ..] => return Err(at("a TYPE line needs a name and a type".into())),
                ["HELP", name, ..] if !is_metric_name(name) => {
                    return Err(at(format!("invalid metric name {name:?}")));
                }
                ["HELP", name, ..] => (*name).to_owned(),
                _ => continue, // A plain comment.
            }
        } else {
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(at(format!("invalid metric name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let mut fields = rest.split_whitespace();
            let value = fields.next().ok_or_else(|| at("no value".into()))?;
            if value.parse::<f64>().is_err() && !["NaN", "+Inf", "-Inf"].contains(&value) {
                return Err(at(format!("the value {value:?} is not a number")));
            }
            if let Some(timestamp) = fields.next()
                && timestamp.parse::<i64>().is_err()
            {
                return Err(at(format!("the timestamp {timestamp:?} is not an integer")));
            }
            if fields.next().is_some() {
                return Err(at("text after the value and timestamp".into()));
            }
            // `_sum`, `_count` and `_bucket` samples belong to their summary or histogram.
            let family = ["_sum", "_count", "_bucket"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| types.get(*base).is_some_and(|kind| kind == "summary" || kind == "histogram"))
                .unwrap_or(name)
                .to_owned();
            if !types.contains_key(&family) {
                return Err(at(format!("a sample of {family} before its # TYPE line")));
            }
            if !series.insert((name.to_owned(), labels)) {
                return Err(at("a series that repeats".into()));
            }
            family
        };
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                return Err(at(format!("the lines of {family} are interleaved with another family's")));
            }
            if let Some(previous) = current.replace(family) {
                finished.insert(previous);
            }
        }
    }
    Ok(types)
}

// --- the daemon in-process ----------------------------------------------------------------

/// `opsflow::daemon::run` on a current-thread runtime of its own (as `opsflow watch` builds
/// it), on a thread of its own, until [`InProcess::stop`] fires its shutdown.
struct InProcess {
    handles: Handles,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<Exit>>>,
}

impl InProcess {
    /// Starts the daemon and waits until its watcher reports a change to a probe file.
    fn start(ws: &Workspace, http: bool) -> InProcess {
        let settings = Settings {
            dir: ws.path().to_owned(),
            config_file: None,
            agent: None,
            http: http.then(|| "127.0.0.1:0".parse().unwrap()),
        };
        let handles = Handles::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let handles = handles.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(opsflow::daemon::run(settings, handles, async {
                    let _ = stopped.await;
                }))
            })
        };
        let mut daemon = InProcess { handles, stop: Some(stop), thread: Some(thread) };
        daemon.wait_watching(ws);
        daemon
    }

    fn metrics(&self) -> &opsflow::daemon::metrics::Metrics {
        &self.handles.metrics
    }

    fn reconciles(&self) -> u64 {
        self.metrics().reconciles.get()
    }

    fn address(&self) -> SocketAddr {
        *self.handles.http_address.get().expect("the daemon serves HTTP")
    }

    /// Writes a probe file until the watcher counts an event: from then on no change is
    /// missed. A daemon that failed to start fails the test with its error.
    fn wait_watching(&mut self, ws: &Workspace) {
        let end = Instant::now() + DEADLINE;
        for attempt in 0.. {
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                let ended = self.thread.take().unwrap().join().expect("the daemon thread does not panic");
                panic!("the daemon ended before it watched: {ended:?}");
            }
            ws.write("watch-probe.txt", format!("{attempt}\n"));
            if holds_within(Duration::from_millis(200), || self.metrics().watcher_events.get() > 0) {
                return;
            }
            assert!(Instant::now() < end, "the watcher reported no event within {DEADLINE:?}");
        }
    }

    /// Waits until a reconcile that started after this call has ended, and returns the
    /// number of reconciles then. Each probe write wakes a reconcile; reconciles run one at a
    /// time, so of two that end after the first probe, the second started after it: whatever
    /// the workspace held before this call, that reconcile read, and any reconcile still
    /// running started after it.
    fn fresh_reconcile(&self, ws: &Workspace) -> u64 {
        let start = self.reconciles();
        for probe in 1..=2 {
            ws.write("watch-probe.txt", format!("fresh reconcile {start}+{probe}\n"));
            wait_until(DEADLINE, &format!("reconcile {} to end", start + probe), || self.reconciles() >= start + probe);
        }
        self.reconciles()
    }

    /// Fires the shutdown and waits for `run` to return.
    fn stop(mut self, deadline: Duration) -> Exit {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        wait_until(deadline, "the in-process daemon to return after its shutdown", || thread.is_finished());
        thread.join().expect("the daemon thread does not panic").expect("the daemon ends without an error")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A failed test still stops its daemon (dropping the sender is a shutdown too).
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// --- the daemon as a process --------------------------------------------------------------

/// `opsflow -v watch` as a child process, its stderr collected as it comes.
pub(crate) struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    address: Option<SocketAddr>,
}

impl Daemon {
    /// Starts `opsflow [global] -v watch [--http 127.0.0.1:0]` and waits until it watches
    /// (and, with `http`, until it says where it listens).
    pub(crate) fn start(ws: &Workspace, global: &[&str], http: bool) -> Daemon {
        Daemon::start_with(ws, global, http.then_some("127.0.0.1:0"), &[])
    }

    /// [`Daemon::start`] with `env` added to its environment.
    pub(crate) fn start_with_env(ws: &Workspace, global: &[&str], http: bool, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(ws, global, http.then_some("127.0.0.1:0"), env)
    }

    /// [`Daemon::start`] serving HTTP on `http` when given, with `env` added to its environment.
    fn start_with(ws: &Workspace, global: &[&str], http: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let mut args = global.to_vec();
        args.extend(["-v", "watch"]);
        if let Some(address) = http {
            args.extend(["--http", address]);
        }
        let mut child = ws
            .command(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn opsflow watch");
        let log = Arc::new(Mutex::new(String::new()));
        let reader = {
            let log = Arc::clone(&log);
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let mut daemon = Daemon { child, log, reader: Some(reader), address: None };
        wait_until(DEADLINE, "`opsflow watch` to say that it watches", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("`opsflow watch` exited with {status} before it watched:\n{}", daemon.log());
            }
            daemon.log().contains("watching ")
        });
        if http.is_some() {
            let log = daemon.log();
            let address = log
                .lines()
                .find_map(|line| line.split_once("on http://").map(|(_, address)| address.trim()))
                .unwrap_or_else(|| panic!("no `on http://ADDR` line in the log:\n{log}"));
            daemon.address = Some(address.parse().unwrap_or_else(|e| panic!("the address {address:?}: {e}")));
        }
        daemon
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn get(&self, path: &str) -> Response {
        http_get(self.address.expect("started with --http"), path)
    }

    /// The exposition of `/metrics`.
    pub(crate) fn get_metrics(&self) -> String {
        self.get("/metrics").body
    }

    pub(crate) fn metric(&self, series: &str) -> f64 {
        let exposition = self.get("/metrics").body;
        sample(&exposition, series).unwrap_or_else(|| panic!("no sample {series} in /metrics:\n{exposition}"))
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0, "send SIGTERM");
        let status = wait_for_exit(&mut self.child, deadline, "`opsflow watch` after SIGTERM");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

// --- tests --------------------------------------------------------------------------------

#[test]
fn tasks_written_while_watching_are_claimed_and_done() {
    let ws = quiet_workspace();
    let daemon = InProcess::start(&ws, false);

    // An agent rewrites the whole file in place (truncate and write), with an alias as agent.
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "devops")]})).unwrap());
    wait_for_status(&ws, "DEVOPS-100", "done");
    let done = task(&ws.tasks(), "DEVOPS-100").clone();
    assert_eq!(done["claimed_by"], "DevOps-Engineer", "{done:#}");
    assert!(is_rfc3339_utc(done["claimed_at"].as_str().unwrap_or_default()), "{done:#}");
    assert_eq!(done["run_id"], done["outcome"]["run_id"], "{done:#}");
    let artifacts = done["outcome"]["artifacts"].as_array().unwrap();
    assert!(artifacts.contains(&json!("docs/workflow/artifacts/INFRA04-env-specs.md")), "{done:#}");
    let specs = ws.read_string("docs/workflow/artifacts/INFRA04-env-specs.md");
    assert!(specs.contains(&format!("run_id: {}", done["run_id"])), "{specs}");

    // Another agent uses the safe writer.
    ws.run(&[
        "tasks",
        "add",
        "--id",
        "DEVOPS-101",
        "--title",
        "Check the dev tools again",
        "--agent",
        "DevOps-Engineer",
        "--type",
        "infrastructure_dev_env",
        "--set",
        "unit_id=UNIT-001",
    ])
    .status(0);
    wait_for_status(&ws, "DEVOPS-101", "done");
    assert_eq!(task(&ws.tasks(), "DEVOPS-101")["claimed_by"], "DevOps-Engineer");

    let exit = daemon.stop(DEADLINE);
    assert_eq!(exit, Exit::Ok);
}

#[test]
fn an_approval_saved_by_rename_ships_production() {
    let ws = Workspace::new().sample();
    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "production to wait for its approval", || {
        status(&ws, "DEVOPS-007").as_deref() == Some("blocked") && ws.join(APPROVAL).exists()
    });
    assert_eq!(status(&ws, "DEVOPS-006").as_deref(), Some("deployed"));
    assert!(!ws.join(".opsflow/envs/production/active").exists());

    // The human saves the request like vim: a new file, renamed over the old one. Its
    // temporary name is one the watcher ignores, so only the rename can wake the daemon.
    let request = ws.read_string(APPROVAL);
    let signed = request.replacen("status: \"pending\"", "status: \"approved\"", 1).replacen(
        "approved_by: null",
        "approved_by: \"alice\"",
        1,
    );
    assert_ne!(signed, request, "the request has the fields a human edits:\n{request}");
    save_by_rename(&ws, APPROVAL, ".R12-prod-approval.md.swp", signed.as_bytes());

    wait_for_status(&ws, "DEVOPS-007", "deployed");
    wait_for_status(&ws, "DEVOPS-009", "done");
    assert_eq!(status(&ws, "DEVOPS-008").as_deref(), Some("done"));
    assert_eq!(
        std::fs::read_to_string(ws.join(".opsflow/envs/production/active/index.html")).unwrap(),
        ws.read_string("app/index.html")
    );
    assert_eq!(ws.read_string(APPROVAL), signed, "opsflow touched the human's approval");
    // Figures are recorded when a reconcile ends, just after its last write.
    wait_until(DEADLINE, "the production deployment on /metrics", || {
        sample(
            &daemon.get("/metrics").body,
            "opsflow_deployments_total{environment=\"production\",outcome=\"deployed\"}",
        ) == Some(1.0)
    });

    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

/// Regression: `opsflow_deployments_total` matched the built-in node names, so a production
/// deploy node renamed in `workflow.json` shipped without being counted. The environment a
/// node changes follows its action, for the engine's approval and for the figures alike.
#[test]
fn deploy_and_verification_nodes_renamed_in_workflow_json_keep_their_environment_and_are_counted() {
    let ws = Workspace::new().sample();
    let mut graph = serde_json::to_value(opsflow::workflow::graph::Graph::built_in()).unwrap();
    let renamed = |name: &Value| match name.as_str() {
        Some("Deploy_To_Production") => json!("Ship_To_Prod"),
        Some("Post_Deploy_Verification") => json!("Watch_Prod"),
        _ => name.clone(),
    };
    for node in graph["nodes"].as_array_mut().unwrap() {
        node["name"] = renamed(&node["name"]);
        node["next"] = node["next"].as_array().unwrap().iter().map(renamed).collect();
    }
    ws.write("docs/workflow/workflow.json", serde_json::to_string_pretty(&graph).unwrap());
    edit_json(&ws, STATE, |state| {
        let nodes = state["nodes"].as_object_mut().unwrap();
        let production = nodes.remove("Deploy_To_Production").unwrap();
        nodes.insert("Ship_To_Prod".into(), production);
        let verification = nodes.remove("Post_Deploy_Verification").unwrap();
        nodes.insert("Watch_Prod".into(), verification);
    });
    ws.run(&["validate"]).status(0);

    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the renamed production node to wait for its approval", || {
        status(&ws, "DEVOPS-007").as_deref() == Some("blocked") && ws.join(APPROVAL).exists()
    });
    let blocked = task(&ws.tasks(), "DEVOPS-007").clone();
    assert!(blocked.to_string().contains("approv"), "blocked for another reason than its approval: {blocked:#}");
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "production changed before its approval");

    approve_in_place(&ws);
    wait_for_status(&ws, "DEVOPS-007", "deployed");
    wait_until(DEADLINE, "the renamed node's production deployment on /metrics", || {
        let exposition = daemon.get("/metrics").body;
        sample(&exposition, "opsflow_deployments_total{environment=\"production\",outcome=\"deployed\"}") == Some(1.0)
            && sample(&exposition, "opsflow_node_runs_total{node=\"Ship_To_Prod\",outcome=\"deployed\"}") == Some(1.0)
    });
    let exposition = daemon.get("/metrics").body;
    assert_eq!(
        sample(&exposition, "opsflow_deployments_total{environment=\"staging\",outcome=\"deployed\"}"),
        Some(1.0),
        "{exposition}"
    );
    assert!(!exposition.contains("node=\"Deploy_To_Production\""), "{exposition}");
    // The deploy verified production on its way: the renamed verification node is complete.
    let state: Value = serde_json::from_slice(&ws.read(STATE)).unwrap();
    assert_eq!(state["nodes"]["Watch_Prod"]["status"], "completed", "{state:#}");
    assert!(state["nodes"].get("Post_Deploy_Verification").is_none(), "{state:#}");

    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

/// A human approves the production request by editing it in place.
fn approve_in_place(ws: &Workspace) {
    let request = ws.read_string(APPROVAL);
    let signed = request.replacen("status: \"pending\"", "status: \"approved\"", 1).replacen(
        "approved_by: null",
        "approved_by: \"alice\"",
        1,
    );
    assert_ne!(signed, request, "the request has the fields a human edits:\n{request}");
    ws.write(APPROVAL, signed);
}

#[test]
fn a_broken_tasks_file_is_reported_left_alone_and_its_fix_is_picked_up() {
    let ws = quiet_workspace();
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    let last_success = daemon.metric("opsflow_last_successful_reconcile_timestamp_seconds");
    assert!(last_success > 0.0);

    // An agent killed in the middle of a truncate-and-write leaves half a file.
    let fixed =
        serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "DevOps-Engineer")]})).unwrap();
    let broken = &fixed[..fixed.len() / 2];
    ws.write(TASKS, broken);
    wait_until(DEADLINE, "the broken tasks.json to be reported", || {
        daemon.log().contains("docs/workflow/tasks.json:") && daemon.metric("opsflow_reconcile_errors_total") >= 1.0
    });
    let log = daemon.log();
    let report = log.lines().find(|l| l.contains("docs/workflow/tasks.json:")).unwrap();
    assert!(report.contains("invalid JSON"), "{report}");
    // It is read again once settled; still broken, still not touched.
    wait_until(DEADLINE, "a second look at the broken file", || daemon.metric("opsflow_reconcile_errors_total") >= 2.0);
    assert_eq!(ws.read_string(TASKS), broken, "the broken file was written to");
    // Nothing can be reconciled while the task list cannot be read: /healthz says so at once.
    let health = daemon.get("/healthz");
    assert_eq!(health.status, 503);
    assert!(health.body.contains("the workspace cannot be reconciled"), "{}", health.body);
    assert_eq!(daemon.metric("opsflow_up"), 1.0);
    assert_eq!(
        daemon.metric("opsflow_last_successful_reconcile_timestamp_seconds"),
        last_success,
        "a reconcile on a broken file counted as successful"
    );

    // The agent writes the file again, this time by rename.
    save_by_rename(&ws, TASKS, "tasks.json.new", fixed.as_bytes());
    wait_for_status(&ws, "DEVOPS-100", "done");
    wait_until(DEADLINE, "a successful reconcile after the fix", || {
        daemon.metric("opsflow_last_successful_reconcile_timestamp_seconds") > last_success
    });
    wait_until(DEADLINE, "/healthz to be 200 again", || daemon.get("/healthz").status == 200);
}

/// A task list of `count` finished tasks of another agent and then `more`, as an agent writes
/// it (pretty-printed, so each version repeats the bytes of the entries it keeps).
fn large_list(count: usize, more: &[Value]) -> String {
    let mut tasks: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "id": format!("OLD-{i}"),
                "title": format!("Earlier work {i}, described at some length as agents do"),
                "agent": "Backend-Developer",
                "type": "feature",
                "status": "done"
            })
        })
        .collect();
    tasks.extend(more.iter().cloned());
    serde_json::to_string_pretty(&json!({"tasks": tasks})).unwrap()
}

/// `tasks.json` as it is now, changed by `edit` and saved by rename, as an agent writes it.
fn rewrite_tasks(ws: &Workspace, edit: impl FnOnce(&mut Vec<Value>)) -> String {
    let mut value = json_file(ws, TASKS);
    edit(value["tasks"].as_array_mut().unwrap());
    let text = serde_json::to_string_pretty(&value).unwrap();
    save_by_rename(ws, TASKS, "tasks.json.new", text.as_bytes());
    text
}

#[test]
fn a_large_task_list_rewritten_task_by_task_is_followed_and_a_late_duplicate_id_stops_it() {
    // Large enough that a pass scans each new version only from where it changed.
    let ws = quiet_workspace();
    ws.write(TASKS, large_list(3000, &[]));
    assert!(ws.read(TASKS).len() > 400_000);
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);

    // Agents append tasks one version after the other; the second waits for the first.
    rewrite_tasks(&ws, |tasks| tasks.push(design_task("DEVOPS-100", "DevOps-Engineer")));
    wait_for_status(&ws, "DEVOPS-100", "done");
    rewrite_tasks(&ws, |tasks| {
        let mut next = design_task("DEVOPS-101", "DevOps-Engineer");
        next["depends_on"] = json!(["DEVOPS-100", "OLD-2999"]);
        tasks.push(next);
    });
    wait_for_status(&ws, "DEVOPS-101", "done");

    // A task appended with the id of one near the start of the file: nothing acts on the file.
    let errors = daemon.metric("opsflow_reconcile_errors_total");
    let written = rewrite_tasks(&ws, |tasks| {
        tasks.push(json!({"id": "OLD-7", "title": "Again", "agent": "Backend-Developer", "type": "feature", "status": "pending"}));
        tasks.push(design_task("DEVOPS-102", "DevOps-Engineer"));
    });
    wait_until(DEADLINE, "the duplicate id to be reported", || {
        daemon.log().contains("duplicate task id `OLD-7` (also used at /tasks/7)")
            && daemon.metric("opsflow_reconcile_errors_total") > errors
    });
    assert_eq!(status(&ws, "DEVOPS-102").as_deref(), Some("pending"));
    assert_eq!(ws.read_string(TASKS), written, "a file with a duplicate id was written to");

    // Without it, the waiting task runs.
    rewrite_tasks(&ws, |tasks| tasks.retain(|t| !(t["id"] == "OLD-7" && t["status"] == "pending")));
    wait_for_status(&ws, "DEVOPS-102", "done");

    // A change near the start of the file is seen too.
    rewrite_tasks(&ws, |tasks| tasks[3] = design_task("DEVOPS-103", "DevOps-Engineer"));
    wait_for_status(&ws, "DEVOPS-103", "done");
    let tasks = ws.tasks();
    assert_eq!(tasks.len(), 3003);
    assert!(tasks.iter().filter(|t| t["agent"] == "Backend-Developer").all(|t| t["status"] == "done"));
    for id in ["DEVOPS-100", "DEVOPS-101", "DEVOPS-102", "DEVOPS-103"] {
        assert_eq!(task(&tasks, id)["claimed_by"], "DevOps-Engineer", "{id}");
    }
}

/// A figure of `/proc/PID/status`, in bytes.
fn proc_status_bytes(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in:\n{status}"));
    let kib: u64 = line[key.len() + 1..].trim().trim_end_matches(" kB").trim().parse().unwrap();
    kib * 1024
}

/// An idle daemon holds no copy of any file: the memory its passes read a large `tasks.json`
/// into is given back once it has been idle for a moment.
#[test]
fn an_idle_daemon_gives_back_the_memory_of_a_large_task_list() {
    let ws = quiet_workspace();
    // Few, long entries: the file's text is nearly all of what a pass holds.
    let notes = "a long description of earlier work, as agents write them. ".repeat(40);
    let tasks: Vec<Value> = (0..5000)
        .map(|i| {
            json!({"id": format!("OLD-{i}"), "title": "Earlier work", "agent": "Backend-Developer",
                        "type": "feature", "status": "done", "details": notes})
        })
        .collect();
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": tasks})).unwrap());
    let size = ws.read(TASKS).len() as u64;
    assert!(size > 10_000_000, "{size}");
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    rewrite_tasks(&ws, |tasks| tasks.push(design_task("DEVOPS-100", "DevOps-Engineer")));
    wait_for_status(&ws, "DEVOPS-100", "done");
    let peak = proc_status_bytes(daemon.pid(), "VmHWM");
    wait_until(DEADLINE, "the idle daemon to give back the memory of its reads", || {
        proc_status_bytes(daemon.pid(), "VmRSS") + size * 9 / 10 <= peak
    });
}

#[test]
fn a_config_change_takes_effect_and_an_invalid_one_keeps_the_last_good() {
    let ws = quiet_workspace();
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "ops-bot")]})).unwrap());
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    assert_eq!(status(&ws, "DEVOPS-100").as_deref(), Some("pending"), "`ops-bot` is not one of this runner's names");

    // Without a restart, `ops-bot` becomes an alias: its task runs.
    edit_json(&ws, CONFIG, |c| c["agent"]["aliases"] = json!(["devops", "ops-bot"]));
    wait_for_status(&ws, "DEVOPS-100", "done");

    // An invalid config (a bare number for a duration) that would also drop the alias.
    edit_json(&ws, CONFIG, |c| {
        c["devops"]["poll_interval"] = json!(300);
        c["agent"]["aliases"] = json!(["devops"]);
    });
    wait_until(DEADLINE, "the invalid config to be reported", || daemon.log().contains("bare number 300"));
    let log = daemon.log();
    let report = log.lines().find(|l| l.contains("bare number 300")).unwrap().to_owned();
    assert!(report.contains("project-config.json"), "{report}");
    assert!(report.contains("/devops/poll_interval"), "{report}");
    assert!(report.contains("\"300s\""), "the report suggests a unit: {report}");
    assert!(report.contains("the last good config stays in force"), "{report}");
    // The last good config, with the alias, still decides: a new `ops-bot` task runs. (The
    // agent edits the file itself: `opsflow tasks add` refuses to work on an invalid config.)
    let mut tasks = json_file(&ws, TASKS);
    let mut dev_tools = design_task("DEVOPS-101", "ops-bot");
    dev_tools["type"] = json!("infrastructure_dev_env");
    tasks["tasks"].as_array_mut().unwrap().push(dev_tools);
    save_by_rename(&ws, TASKS, "tasks.json.tmp", serde_json::to_string_pretty(&tasks).unwrap().as_bytes());
    wait_for_status(&ws, "DEVOPS-101", "done");
    assert_eq!(daemon.get("/healthz").status, 200);
    assert_eq!(daemon.log().matches("bare number 300").count(), 1, "reported once, not on every reconcile");

    // A valid config with another alias takes over.
    edit_json(&ws, CONFIG, |c| {
        c["devops"]["poll_interval"] = json!("300s");
        c["agent"]["aliases"] = json!(["devops", "release-bot"]);
    });
    ws.run(&[
        "tasks",
        "add",
        "--id",
        "DEVOPS-102",
        "--title",
        "Staging",
        "--agent",
        "release-bot",
        "--type",
        "infrastructure_staging",
        "--set",
        "unit_id=UNIT-001",
    ])
    .status(0);
    wait_for_status(&ws, "DEVOPS-102", "done");
}

#[test]
fn a_second_runner_for_the_same_agent_is_refused_and_names_the_holder() {
    let ws = quiet_workspace();
    let mut first = Daemon::start(&ws, &[], false);
    let holder = format!("pid {} on host ", first.pid());

    for command in [&["watch"][..], &["run"][..]] {
        let second = ws.run(command);
        second.status(2);
        let stderr = second.stderr();
        assert!(stderr.contains("another opsflow runner for agent DevOps-Engineer"), "{command:?}: {stderr}");
        assert!(stderr.contains(&holder), "{command:?} names the holder ({holder}): {stderr}");
        assert!(stderr.contains(" since "), "{command:?}: {stderr}");
    }

    // A runner for another agent shares the workspace.
    ws.run(&["--agent", "Release-Bot", "run"]).status(0);
    let mut other = Daemon::start(&ws, &["--agent", "Release-Bot"], false);
    let status = other.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", other.log());

    // The lock dies with its holder.
    let status = first.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", first.log());
    ws.run(&["run"]).status(0);
}

/// A staging smoke test that writes its pid and then sleeps: a deploy that is still running
/// when the daemon is told to stop.
fn with_a_slow_staging_deploy(ws: &Workspace, grace: &str) {
    edit_json(ws, CONFIG, |c| {
        c["devops"]["shutdown_grace"] = json!(grace);
        c["environments"]["staging"]["smoke_tests"] =
            json!([{"name": "slow", "command": "echo $$ > \"$OPSFLOW_WORKSPACE/smoke.pid\"; exec sleep 30"}]);
    });
}

fn smoke_pid(ws: &Workspace) -> Option<i32> {
    std::fs::read_to_string(ws.join("smoke.pid")).ok().and_then(|s| s.trim().parse().ok())
}

/// What a stop in the middle of the staging deploy leaves: the running step killed (its
/// process gone), no temporary file, the environment whole, and the task not left running.
fn assert_clean_after_an_aborted_deploy(ws: &Workspace, sleeper: i32) {
    wait_until(DEADLINE, "the smoke test's process to be gone", || !opsflow::process_alive(sleeper));
    assert_eq!(temporary_files(ws.path()), Vec::<String>::new(), "temporary files were left behind");
    // The product ends the interrupted task `failed` at the step it stopped; the step's log
    // and the outcome say why: stopped by shutdown, not timed out.
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    let summary = staging["outcome"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("stopped by shutdown") && !summary.contains("timed out"), "{summary}");
    assert_eq!(
        (staging["status"].as_str(), staging["outcome"]["failed_step"].as_str()),
        (Some("failed"), Some("smoke"))
    );
    let log = ws.read_string(staging["outcome"]["log"].as_str().expect("the outcome names the step's log"));
    assert!(log.contains("# aborted by shutdown; process group killed"), "{log}");
    let state = json_file(ws, STATE);
    assert_eq!(state["nodes"]["Deploy_To_Staging"]["status"], "failed", "{state:#}");
    assert_eq!(status(ws, "DEVOPS-007").as_deref(), Some("pending"), "no work started after the stop");
    // Recreate switches `current` by an atomic rename: it is absent or a whole release.
    let current = ws.join(".opsflow/envs/staging/current");
    if current.symlink_metadata().is_ok() {
        assert!(current.join("index.html").is_file() && current.join("style.css").is_file());
    }
}

#[test]
fn sigterm_during_a_deploy_exits_0_after_the_grace_period_and_leaves_a_clean_state() {
    let ws = Workspace::new().sample();
    with_a_slow_staging_deploy(&ws, "2s");
    let mut daemon = Daemon::start(&ws, &[], false);
    wait_until(DEADLINE, "the staging smoke test to run", || smoke_pid(&ws).is_some());
    let sleeper = smoke_pid(&ws).unwrap();
    assert_eq!(status(&ws, "DEVOPS-006").as_deref(), Some("in_progress"));

    let status = daemon.terminate(DEADLINE);
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    // The step gets the grace period to finish; it does not, so it is killed, and the daemon
    // says so after it said it was shutting down.
    let shutting_down = log.find("shutting down").unwrap_or_else(|| panic!("no `shutting down` in the log:\n{log}"));
    let killed = log
        .find("the running step did not finish within the grace period of 2s; stopping it")
        .unwrap_or_else(|| panic!("no word of the grace period in the log:\n{log}"));
    assert!(shutting_down < killed, "{log}");
    assert_clean_after_an_aborted_deploy(&ws, sleeper);
    // The instance lock went with the process: the next run is not refused, and it finds the
    // failed staging deploy and its fix task as they were left.
    let next = ws.run(&["run", "--json"]);
    assert!(!next.stderr().contains("another opsflow runner"), "{}", next.stderr());
    // Nothing runs again by itself (the fix task is the coder's), and nothing waits on a
    // gate, so the run exits 0 and shows production waiting on the failed staging task.
    next.status(0);
    let report = next.json();
    assert_eq!(report["ran"], json!([]), "{report:#}");
    let waiting = report["waiting"].as_array().expect("a `waiting` list");
    assert!(waiting.iter().any(|w| w["task"] == "DEVOPS-007" && w["on"] == json!(["DEVOPS-006"])), "{report:#}");
}

#[test]
fn an_in_process_shutdown_during_a_deploy_returns_ok_after_the_grace_period() {
    let ws = Workspace::new().sample();
    with_a_slow_staging_deploy(&ws, "1s");
    let daemon = InProcess::start(&ws, false);
    wait_until(DEADLINE, "the staging smoke test to run", || smoke_pid(&ws).is_some());
    let sleeper = smoke_pid(&ws).unwrap();
    let exit = daemon.stop(DEADLINE);
    assert_eq!(exit, Exit::Ok);
    assert_clean_after_an_aborted_deploy(&ws, sleeper);
}

#[test]
fn a_checkout_of_500_files_costs_a_few_reconciles_and_every_change_is_seen() {
    let ws = quiet_workspace();
    // A debounce of a second: the burst is coalesced unless this machine stalls for a second
    // between two writes, far more than a loaded one does, so the count below does not depend
    // on how fast it writes.
    edit_json(&ws, CONFIG, |c| c["devops"]["debounce"] = json!("1s"));
    let daemon = InProcess::start(&ws, false);
    let before = daemon.fresh_reconcile(&ws);
    let events_before = daemon.metrics().watcher_events.get();

    // Like a checkout: 500 files written one after the other, tasks.json among them.
    let tasks =
        serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "DevOps-Engineer")]})).unwrap();
    for n in 0..500 {
        if n == 250 {
            ws.write(TASKS, &tasks);
        } else {
            ws.write(&format!("docs/workflow/artifacts/note-{n:03}.md"), format!("# Note {n}\n"));
        }
    }
    wait_for_status(&ws, "DEVOPS-100", "done");
    // A reconcile still running is counted when it ends, and a stop waits for it.
    let metrics = Arc::clone(&daemon.handles.metrics);
    let exit = daemon.stop(DEADLINE);
    assert_eq!(exit, Exit::Ok);
    let after = metrics.reconciles.get();
    let events = metrics.watcher_events.get() - events_before;
    let rescans = metrics.watcher_rescans.get();
    // The burst is coalesced: a handful of reconciles, far fewer than the files written. A
    // reconcile waits at most ten debounce periods, so 50 reconciles would take 500 s of writes.
    let reconciles = after - before;
    assert!(
        (1..=50).contains(&reconciles),
        "{reconciles} reconciles for one burst of 500 files ({events} events, {rescans} rescans)"
    );
    assert!(rescans > 0 || events >= reconciles, "{events} events, {reconciles} reconciles");
    // Every change was seen: the task ran once, and no note was touched.
    assert_eq!(task(&ws.tasks(), "DEVOPS-100")["status"], "done");
    for n in (0..500).filter(|n| *n != 250) {
        assert_eq!(ws.read_string(&format!("docs/workflow/artifacts/note-{n:03}.md")), format!("# Note {n}\n"));
    }
}

/// Regression: the debounce waited for a quiet moment with no upper bound, so a file written
/// every 20 ms (an application's log in the repository, a dev server) postponed every
/// reconcile, and the resync too, for as long as it kept writing.
#[test]
fn a_file_written_continuously_does_not_starve_the_reconciler() {
    let ws = quiet_workspace();
    let daemon = InProcess::start(&ws, false);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut log = std::fs::File::create(ws.join("app/server.log")).unwrap();
            while !stop.load(Ordering::SeqCst) {
                writeln!(log, "GET / 200").unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ws.write(
            TASKS,
            serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "devops")]})).unwrap(),
        );
        // While the writer still writes: it only stops once the task is done (or the wait
        // fails), so a reconciler it starves never gets there.
        let claimed = holds_within(DEADLINE, || status(&ws, "DEVOPS-100").as_deref() == Some("done"));
        let lines_meanwhile = std::fs::read_to_string(ws.join("app/server.log")).unwrap().lines().count();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(claimed, "the task was not run while a log file was being written ({lines_meanwhile} lines)");
        assert!(lines_meanwhile > 0, "the log was being written");
    });
    daemon.stop(DEADLINE);
}

#[test]
fn healthz_and_metrics_are_served_over_loopback() {
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let test_started = unix_now();
    let ws = Workspace::new().sample();
    let daemon = InProcess::start(&ws, true);
    let address = daemon.address();
    // Figures are recorded when a reconcile ends, just after its last write.
    wait_until(DEADLINE, "/metrics to show production blocked", || {
        sample(&http_get(address, "/metrics").body, "opsflow_tasks{status=\"blocked\"}") == Some(1.0)
    });
    assert!(address.ip().is_loopback(), "{address}");

    let health = http_get(address, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(address, "/nothing-here").status, 404);

    let metrics = http_get(address, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{}", metrics.head);
    let text = metrics.body;
    let types = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let expected_types = BTreeMap::from(
        [
            ("opsflow_up", "gauge"),
            ("opsflow_reconciles_total", "counter"),
            ("opsflow_reconcile_errors_total", "counter"),
            ("opsflow_reconcile_duration_seconds", "histogram"),
            ("opsflow_reconcile_last_duration_seconds", "gauge"),
            ("opsflow_last_successful_reconcile_timestamp_seconds", "gauge"),
            ("opsflow_tasks", "gauge"),
            ("opsflow_gate_blocks", "gauge"),
            ("opsflow_node_runs_total", "counter"),
            ("opsflow_agent_attempts_total", "counter"),
            ("opsflow_agent_tokens_total", "counter"),
            ("opsflow_agent_cost_usd_total", "counter"),
            ("opsflow_deployments_total", "counter"),
            ("opsflow_rollbacks_total", "counter"),
            ("opsflow_watcher_events_total", "counter"),
            ("opsflow_watcher_errors_total", "counter"),
            ("opsflow_watcher_rescans_total", "counter"),
            ("opsflow_watcher_up", "gauge"),
            ("opsflow_watcher_restarts_total", "counter"),
            ("opsflow_notifications_total", "counter"),
            ("opsflow_notifications_pending", "gauge"),
        ]
        .map(|(name, kind)| (name.to_owned(), kind.to_owned())),
    );
    assert_eq!(types, expected_types, "{text}");
    // The histogram's series keep the names of the two counters it replaced.
    let count = sample(&text, "opsflow_reconcile_duration_seconds_count").unwrap();
    assert_eq!(Some(count), sample(&text, "opsflow_reconciles_total"), "{text}");
    assert_eq!(Some(count), sample(&text, "opsflow_reconcile_duration_seconds_bucket{le=\"+Inf\"}"), "{text}");
    assert!(sample(&text, "opsflow_reconcile_duration_seconds_sum").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "opsflow_reconciles_total").unwrap() >= 1.0);
    assert_eq!(sample(&text, "opsflow_watcher_errors_total"), Some(0.0));
    // Where the sample workspace stands: five setup and build tasks done, staging deployed,
    // production blocked on its approval, verification and feedback waiting.
    assert_eq!(sample(&text, "opsflow_tasks{status=\"done\"}"), Some(5.0), "{text}");
    assert_eq!(sample(&text, "opsflow_tasks{status=\"deployed\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "opsflow_tasks{status=\"blocked\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "opsflow_tasks{status=\"pending\"}"), Some(2.0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("opsflow_gate_blocks{gate=") && !l.ends_with(" 0")),
        "the approval gate holds production back:\n{text}"
    );
    assert_eq!(
        sample(&text, "opsflow_deployments_total{environment=\"staging\",outcome=\"deployed\"}"),
        Some(1.0),
        "{text}"
    );
    // A reconcile of this test's daemon: after the test started, and not after now.
    let last = sample(&text, "opsflow_last_successful_reconcile_timestamp_seconds").unwrap();
    let now = unix_now();
    assert!(
        test_started <= last && last <= now,
        "last successful reconcile at {last}, the test started at {test_started}, now {now}"
    );

    // The checker itself catches what a scraper would reject.
    for bad in [
        "opsflow_x 1\n",
        "# TYPE opsflow_x counter\nopsflow_x one\n",
        "# TYPE opsflow_x counter\nopsflow_x{a=\"1} 1\n",
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"y\"} 2\n",
        "# TYPE opsflow_x counter\nopsflow_x 1\nopsflow_x 2\n",
    ] {
        assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
    }
    daemon.stop(DEADLINE);
}

/// Compiled templates are kept between reconciles; a template override saved while the
/// daemon runs must still take effect on the next reconcile.
#[test]
fn a_template_override_saved_while_watching_takes_effect() {
    let ws = quiet_workspace();
    let daemon = InProcess::start(&ws, false);
    ws.write(
        TASKS,
        serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "DevOps-Engineer")]})).unwrap(),
    );
    wait_for_status(&ws, "DEVOPS-100", "done");
    let specs = "docs/workflow/artifacts/INFRA04-env-specs.md";
    assert!(!ws.read_string(specs).contains("House layout"));

    std::fs::create_dir_all(ws.join("templates")).unwrap();
    save_by_rename(&ws, "templates/INFRA04-env-specs.md.hbs", ".INFRA04.swp", b"# House layout for {{unit_id}}\n");
    // A reconcile uses the templates as they were when it started: the new task is written
    // once every reconcile that could still see it started after the save.
    daemon.fresh_reconcile(&ws);
    let mut tasks = json_file(&ws, TASKS);
    tasks["tasks"].as_array_mut().unwrap().push(design_task("DEVOPS-101", "DevOps-Engineer"));
    save_by_rename(&ws, TASKS, "tasks.json.tmp", serde_json::to_string_pretty(&tasks).unwrap().as_bytes());
    wait_for_status(&ws, "DEVOPS-101", "done");
    let text = ws.read_string(specs);
    assert!(text.contains("# House layout for UNIT-001"), "the new template was used:\n{text}");
    daemon.stop(DEADLINE);
}

// --- what the README promises of the daemon -------------------------------------------------

#[test]
fn sigint_stops_the_daemon_like_sigterm() {
    let ws = quiet_workspace();
    let mut daemon = Daemon::start(&ws, &[], false);
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGINT) }, 0, "send SIGINT");
    let status = wait_for_exit(&mut daemon.child, DEADLINE, "`opsflow watch` after SIGINT");
    if let Some(reader) = daemon.reader.take() {
        let _ = reader.join();
    }
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    // The instance lock went with it.
    ws.run(&["run"]).status(0);
}

/// `target/` is not watched, so a task list kept there is only ever seen by the resync.
#[test]
fn the_poll_interval_resync_finds_a_change_no_event_reported() {
    let ws = quiet_workspace();
    edit_json(&ws, CONFIG, |c| {
        c["paths"]["tasks"] = json!("target/tasks.json");
        c["devops"]["poll_interval"] = json!("1s");
    });
    ws.write("target/tasks.json", "{\"tasks\": []}\n");
    // With the harness's own `-v`, at trace: the debug lines say why each reconcile ran.
    let daemon = Daemon::start(&ws, &["-v"], true);
    // The first reconcile, at the start, is over before the task is written.
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    ws.write(
        "target/tasks.json",
        serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "DevOps-Engineer")]})).unwrap(),
    );
    wait_until(DEADLINE, "the resync to run DEVOPS-100", || {
        tasks_of(&ws.read("target/tasks.json")).iter().any(|t| t["id"] == "DEVOPS-100" && t["status"] == "done")
    });
    let mut daemon = daemon;
    let status = daemon.terminate(DEADLINE);
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.lines().any(|l| l.contains("DEVOPS-100 Environment_Design done")), "{log}");
    let resync = log.find("periodic resync").unwrap_or_else(|| panic!("no resync in the log:\n{log}"));
    assert!(resync < log.find("DEVOPS-100 Environment_Design done").unwrap(), "{log}");
}

#[test]
fn at_its_start_the_daemon_finishes_what_a_killed_runner_left() {
    let ws = Workspace::new().sample();
    with_a_slow_staging_deploy(&ws, "1s");
    let mut first = ws.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_until(DEADLINE, "the staging smoke test to run", || smoke_pid(&ws).is_some());
    let sleeper = smoke_pid(&ws).unwrap();
    // SIGKILL: the runner leaves its task in progress and its step running.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(status(&ws, "DEVOPS-006").as_deref(), Some("in_progress"));

    let mut daemon = Daemon::start(&ws, &[], false);
    wait_for_status(&ws, "DEVOPS-006", "failed");
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(staging["outcome"]["failed_step"], "interrupted", "{staging:#}");
    wait_until(DEADLINE, "the orphaned smoke test to be ended", || !opsflow::process_alive(sleeper));
    assert_eq!(status(&ws, "DEVOPS-007").as_deref(), Some("pending"), "nothing after the failed deploy ran");
    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

/// The loopback address `pid` listens on, found in the kernel's socket table (its socket
/// descriptors matched with `/proc/<pid>/net/tcp`): for a daemon bound to `127.0.0.1:0` that
/// does not log where it listens. `None` until it listens.
fn listening_address(pid: u32) -> Option<SocketAddr> {
    let sockets: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        if *state != "0A" || !sockets.contains(*inode) {
            return None; // Not listening, or not this process's socket.
        }
        let port = u16::from_str_radix(local.split_once(':')?.1, 16).ok()?;
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    })
}

/// `opsflow [global] watch --http 127.0.0.1:0` on a workspace whose tasks.json is broken,
/// until `/metrics` counts a reconcile; returns its stderr. The port is the kernel's choice,
/// read back from the process: a port picked free beforehand may be taken by another test
/// before the daemon binds it.
fn stderr_of_a_daemon_that_reconciled_a_broken_file(global: &[&str]) -> String {
    let ws = quiet_workspace();
    ws.write(TASKS, "{\"tasks\": [");
    let mut args = global.to_vec();
    args.extend(["watch", "--http", "127.0.0.1:0"]);
    let mut child = ws.command(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut address = None;
    wait_until(DEADLINE, "a reconcile on /metrics", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("`opsflow watch` exited with {status}");
        }
        address = address.or_else(|| listening_address(child.id()));
        address.is_some_and(|address| {
            TcpStream::connect(address).is_ok()
                && sample(&http_get(address, "/metrics").body, "opsflow_reconciles_total").is_some_and(|n| n >= 1.0)
        })
    });
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_for_exit(&mut child, DEADLINE, "`opsflow watch` after SIGTERM");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn quiet_hides_warnings_that_are_shown_by_default() {
    let shown = stderr_of_a_daemon_that_reconciled_a_broken_file(&[]);
    assert!(shown.contains("docs/workflow/tasks.json:1:"), "the default level shows the problem:\n{shown}");
    let quiet = stderr_of_a_daemon_that_reconciled_a_broken_file(&["-q"]);
    assert_eq!(quiet, "", "-q shows only errors");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let ws = quiet_workspace();
    let mut daemon = Daemon::start(&ws, &["--log-format", "json"], false);
    let status = daemon.terminate(DEADLINE);
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string(), "{line}");
    }
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.starts_with("watching ")), "{messages:?}");
    assert!(messages.contains(&"shutting down"), "{messages:?}");
}

#[test]
fn a_step_that_finishes_within_the_grace_period_is_not_killed() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["devops"]["shutdown_grace"] = json!("10m");
        c["environments"]["staging"]["smoke_tests"] = json!([{
            "name": "waits",
            "command": "echo $$ > \"$OPSFLOW_WORKSPACE/smoke.pid\"; while [ ! -f \"$OPSFLOW_WORKSPACE/go\" ]; do sleep 0.05; done; echo finished"
        }]);
    });
    let mut daemon = Daemon::start(&ws, &[], false);
    wait_until(DEADLINE, "the staging smoke test to run", || smoke_pid(&ws).is_some());
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGTERM) }, 0, "send SIGTERM");
    wait_until(DEADLINE, "the daemon to say it is shutting down", || daemon.log().contains("shutting down"));
    // The step is still given its time: it finishes now, on its own.
    ws.write("go", "");
    let exit = wait_for_exit(&mut daemon.child, DEADLINE, "`opsflow watch` after its step finished");
    if let Some(reader) = daemon.reader.take() {
        let _ = reader.join();
    }
    let log = daemon.log();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(!log.contains("did not finish within the grace period"), "{log}");
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    let step_log = walkdir::WalkDir::new(ws.join(".opsflow/runs"))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().contains("smoke-waits"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_else(|| panic!("no log of the smoke step: {staging:#}"));
    assert!(step_log.contains("finished"), "{step_log}");
    assert!(!step_log.contains("aborted by shutdown"), "{step_log}");
    // The deploy it belonged to completed; nothing new started after the stop.
    assert_eq!(staging["status"], "deployed", "{staging:#}");
    assert_eq!(status(&ws, "DEVOPS-007").as_deref(), Some("pending"));
}

// --- hostile clients and signals ----------------------------------------------------------

/// The CPU time a process has used, in clock ticks (user + system, from /proc/<pid>/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon is running");
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("a stat line").1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Whether the server closed `stream` (end of file or a reset) within `deadline`.
fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted),
    }
}

// What broke: with descriptors exhausted, `accept` failed in a loop that logged each failure
// and retried at once (a core at 100% and a log growing by the megabyte), and connections that
// sent nothing were held forever.
#[test]
fn a_slowloris_flood_under_64_descriptors_costs_little_cpu_and_few_log_lines_and_reconciles_go_on() {
    let ws = quiet_workspace();
    let daemon = Daemon::start(&ws, &[], true);
    let address = daemon.address.unwrap();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &daemon.pid().to_string(), "--nofile=64:64"])
        .status()
        .expect("run prlimit");
    assert!(limited.success(), "prlimit --pid failed");
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);

    let ticks_before = cpu_ticks(daemon.pid());
    let lines_before = daemon.log().lines().count();
    // One idle connection first, served within the limit, then a flood of idle ones: more
    // than the descriptors the process has.
    let mut first = TcpStream::connect(address).unwrap();
    // A connect the server's backlog has no room for waits for SYN retries: the flood stops
    // at the first that does not complete promptly.
    let flood: Vec<TcpStream> =
        (0..300).map_while(|_| TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()).collect();
    assert!(flood.len() > 64, "only {} connections could be opened", flood.len());
    assert!(closed_by_server(&mut first, DEADLINE), "an idle connection was not closed by the server");
    let ticks = cpu_ticks(daemon.pid()) - ticks_before;
    let log = daemon.log();
    let new_lines: Vec<&str> = log.lines().skip(lines_before).collect();
    // A spinning accept loop burns every tick of the several seconds this takes (100 a
    // second); a server that waits uses a few.
    assert!(ticks < 150, "the daemon used {ticks} clock ticks of CPU during the flood");
    assert!(new_lines.len() < 40, "{} log lines during the flood:\n{}", new_lines.len(), new_lines.join("\n"));
    drop(flood);

    // The daemon still serves and still reconciles.
    wait_until(DEADLINE, "/healthz to answer", || {
        TcpStream::connect(address).is_ok() && daemon.get("/healthz").status == 200
    });
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "devops")]})).unwrap());
    wait_for_status(&ws, "DEVOPS-100", "done");
}

// What broke: SIGHUP (a closed terminal) killed `watch` outright, without the grace period
// SIGTERM gives a running deploy.
#[test]
fn sighup_stops_watch_like_sigterm() {
    let ws = Workspace::new().sample();
    with_a_slow_staging_deploy(&ws, "1s");
    let mut daemon = Daemon::start(&ws, &[], false);
    wait_until(DEADLINE, "the staging smoke test to run", || smoke_pid(&ws).is_some());
    let sleeper = smoke_pid(&ws).unwrap();
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGHUP) }, 0, "send SIGHUP");
    let status = wait_for_exit(&mut daemon.child, DEADLINE, "`opsflow watch` after SIGHUP");
    if let Some(reader) = daemon.reader.take() {
        let _ = reader.join();
    }
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("did not finish within the grace period"), "{log}");
    assert_clean_after_an_aborted_deploy(&ws, sleeper);
}

// What broke: at the default level `watch` logged nothing at all, not even that it was
// watching, while it deployed to production.
#[test]
fn watch_says_at_the_default_level_what_it_watches_runs_and_what_blocks() {
    let ws = Workspace::new().sample();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("watch.log");
    let mut child = ws
        .command(&["watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_status(&ws, "DEVOPS-007", "blocked");
    let logged = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(DEADLINE, "the block to be logged", || logged().contains("DEVOPS-007 Deploy_To_Production blocked: "));
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_for_exit(&mut child, DEADLINE, "`opsflow watch` after SIGTERM");
    assert_eq!(status.code(), Some(0));
    let log = logged();
    assert!(log.contains(&format!("watching {}", ws.path().canonicalize().unwrap().display())), "{log}");
    assert!(log.contains("DEVOPS-001 Environment_Design done: "), "{log}");
    assert!(log.contains("DEVOPS-006 Deploy_To_Staging deployed: "), "{log}");
    // A block is logged once, not on every reconcile.
    assert_eq!(log.matches("DEVOPS-007 Deploy_To_Production blocked: ").count(), 1, "{log}");
    assert!(log.contains("shutting down"), "{log}");
}

/// Puts a moved workspace back where it was if a test fails before it does.
struct MovedAway<'a> {
    home: &'a Path,
    away: std::path::PathBuf,
}

impl MovedAway<'_> {
    fn back(self) {
        std::fs::rename(&self.away, self.home).unwrap_or_else(|e| panic!("move {} back: {e}", self.away.display()));
        std::mem::forget(self);
    }
}

impl Drop for MovedAway<'_> {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.away, self.home);
    }
}

/// A watcher that stops seeing changes is supervised: the workspace moved away (a restore, a
/// tool that swaps directories) leaves the kernel's watches on the old directory, where no
/// event of the workspace would ever come again. The daemon says so on `/healthz` and in its
/// log, starts a new watcher once the directory is back, and reacts to files dropped after.
#[test]
fn a_watcher_that_loses_the_workspace_is_restarted_and_healthz_says_so_meanwhile() {
    let ws = quiet_workspace();
    // No periodic resync during the test: only a watcher can wake the daemon.
    edit_json(&ws, CONFIG, |c| c["devops"]["poll_interval"] = json!("1h"));
    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    assert_eq!(daemon.get("/healthz").status, 200);
    assert_eq!(daemon.metric("opsflow_watcher_up"), 1.0);

    let away = ws.path().with_extension("away");
    std::fs::rename(ws.path(), &away).unwrap();
    let moved = MovedAway { home: ws.path(), away };
    wait_until(DEADLINE, "/healthz to report the watcher down", || {
        let health = daemon.get("/healthz");
        health.status == 503 && health.body.contains("the file watcher is down")
    });
    let health = daemon.get("/healthz").body;
    assert!(health.contains("was removed or moved away"), "{health}");
    // The daemon writes the line before it flips the health, but the test reads its stderr
    // through a pipe, on a thread of its own: the line may not have arrived yet.
    wait_until(DEADLINE, "the log to say the watcher failed", || daemon.log().contains("the file watcher failed: "));
    assert_eq!(daemon.metric("opsflow_watcher_up"), 0.0);

    moved.back();
    wait_until(DEADLINE, "/healthz to be 200 again", || daemon.get("/healthz").status == 200);
    // The log line follows the health flip on the watcher's thread.
    wait_until(DEADLINE, "the log to say the watcher runs again", || {
        daemon.log().contains("the file watcher runs again (it was down: ")
    });
    assert_eq!(daemon.metric("opsflow_watcher_up"), 1.0);
    assert!(daemon.metric("opsflow_watcher_restarts_total") >= 1.0);

    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-300", "devops")]})).unwrap());
    wait_for_status(&ws, "DEVOPS-300", "done");
    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

/// The value of a PromQL query `query` (a bare metric name) with one result, from the
/// Prometheus at `url`; `None` while it has no such series.
fn prometheus_value(url: &str, query: &str) -> Option<f64> {
    let address: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let response = http_get(address, &format!("/api/v1/query?query={query}"));
    assert_eq!(response.status, 200, "{}", response.body);
    let body: Value = serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.body));
    let results = body["data"]["result"].as_array()?;
    let [result] = results.as_slice() else { return None };
    result["value"][1].as_str().and_then(|value| value.parse().ok())
}

/// The exposition is what Prometheus itself accepts: `promtool check metrics` finds nothing to
/// say about it, and a real Prometheus scraping the daemon stores its figures under the names
/// dashboards use.
#[test]
fn promtool_accepts_the_exposition_and_prometheus_scrapes_the_daemon() {
    let ws = quiet_workspace();
    let daemon = InProcess::start(&ws, true);
    daemon.fresh_reconcile(&ws);
    let exposition = http_get(daemon.address(), "/metrics").body;

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (it comes with the `prometheus` package): {e}"));
    promtool.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{exposition}");

    let prometheus = crate::metrics::Prometheus::start(daemon.address());
    wait_until(DEADLINE, "Prometheus to store a scrape of the daemon", || {
        prometheus_value(&prometheus.url, "opsflow_reconciles_total").is_some_and(|n| n >= 1.0)
    });
    assert_eq!(prometheus_value(&prometheus.url, "opsflow_up"), Some(1.0));
    assert_eq!(prometheus_value(&prometheus.url, "opsflow_watcher_up"), Some(1.0));
    assert!(prometheus_value(&prometheus.url, "opsflow_reconcile_duration_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(prometheus_value(&prometheus.url, "opsflow_reconcile_duration_seconds_sum").is_some_and(|s| s > 0.0));
    assert_eq!(prometheus_value(&prometheus.url, "opsflow_watcher_errors_total"), Some(0.0));
    drop(prometheus);
    assert_eq!(daemon.stop(DEADLINE), Exit::Ok);
}

/// An overflow of the kernel's event queue loses events; the watcher asks for a full rescan,
/// which finds the change whose event was lost. The daemon is stopped (SIGSTOP) while more
/// events than its queue holds (`fs.inotify.max_queued_events`) arrive: files it ignores
/// (editor swap files, which wake no reconcile), then `tasks.json`, whose event no longer fits.
/// No resync runs during the test (`poll_interval` is an hour), so only the rescan can find
/// the task.
#[test]
fn after_an_event_queue_overflow_a_rescan_finds_the_change_whose_event_was_lost() {
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .expect("the inotify queue size in /proc/sys/fs/inotify/max_queued_events")
        .trim()
        .parse()
        .unwrap();
    let ws = quiet_workspace();
    edit_json(&ws, CONFIG, |c| c["devops"]["poll_interval"] = json!("1h"));
    std::fs::create_dir_all(ws.join("docs/flood")).unwrap();
    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    assert_eq!(daemon.metric("opsflow_watcher_rescans_total"), 0.0);

    // SAFETY: plain kill(2)s of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGSTOP) }, 0, "send SIGSTOP");
    // Each new file is at least one event (its creation).
    for n in 0..queue + 1000 {
        std::fs::write(ws.join(&format!("docs/flood/{n}.swp")), "x").unwrap();
    }
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-400", "devops")]})).unwrap());
    assert_eq!(unsafe { libc::kill(daemon.pid(), libc::SIGCONT) }, 0, "send SIGCONT");

    wait_for_status(&ws, "DEVOPS-400", "done");
    assert!(daemon.metric("opsflow_watcher_rescans_total") >= 1.0, "{}", daemon.get("/metrics").body);
    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

/// While its watcher is down the daemon still reconciles every `poll_interval`: with the
/// workspace moved away, each of those reconciles finds it gone and says so.
#[test]
fn while_the_watcher_is_down_reconciles_go_on_every_poll_interval() {
    let ws = quiet_workspace();
    edit_json(&ws, CONFIG, |c| c["devops"]["poll_interval"] = json!("1s"));
    let mut daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);

    let moved = MovedAway { home: ws.path(), away: ws.path().with_extension("away") };
    std::fs::rename(moved.home, &moved.away).unwrap();
    wait_until(DEADLINE, "/healthz to report the watcher down", || {
        daemon.get("/healthz").body.contains("the file watcher is down")
    });
    // Without a resync, at most four reconciles could fail from here: the events the watcher
    // saw before it failed wake at most two, and each failed one is read once more.
    let failed_before = daemon.metric("opsflow_reconcile_errors_total");
    wait_until(DEADLINE, "resyncs while the watcher is down", || {
        daemon.metric("opsflow_reconcile_errors_total") >= failed_before + 5.0
    });
    assert!(daemon.get("/healthz").body.contains("the file watcher is down"), "{}", daemon.log());
    assert_eq!(daemon.metric("opsflow_watcher_up"), 0.0, "{}", daemon.log());
    // Logged before the figures of its reconcile are recorded, but read through a pipe.
    wait_until(DEADLINE, "the log to say the workspace cannot be opened", || {
        daemon.log().contains("cannot open the workspace")
    });

    moved.back();
    wait_until(DEADLINE, "/healthz to be 200 again", || daemon.get("/healthz").status == 200);
    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

// What broke: a token pasted where a duration belongs went verbatim into the daemon's log
// and, once the reconciles had failed on it, into `/healthz`'s 503 text.
#[test]
fn a_secret_in_a_bad_config_value_is_masked_on_healthz_and_in_the_log() {
    const TOKEN: &str = "ghp_T0ken/For+The-Deploy";
    let ws = quiet_workspace();
    let mut daemon = Daemon::start_with_env(&ws, &[], true, &[("DEPLOY_TOKEN", TOKEN)]);
    wait_until(DEADLINE, "the first reconcile", || daemon.metric("opsflow_reconciles_total") >= 1.0);
    edit_json(&ws, CONFIG, |c| c["devops"]["debounce"] = json!(TOKEN));
    // Each probe wakes a reconcile, and each fails on the config.
    let mut probe = 0;
    wait_until(DEADLINE, "/healthz to answer 503", || {
        probe += 1;
        ws.write("watch-probe.txt", format!("{probe}\n"));
        daemon.get("/healthz").status == 503
    });
    let health = daemon.get("/healthz").body;
    assert!(health.contains("/devops/debounce") && health.contains("***"), "{health}");
    assert!(!health.contains("ghp_T0ken"), "{health}");
    let log = daemon.log();
    assert!(log.contains("/devops/debounce") && !log.contains("ghp_T0ken"), "{log}");
    daemon.terminate(DEADLINE);
}

// What broke: `--http 0.0.0.0:PORT` served the endpoints, which have no authentication, to
// the whole network without a word.
#[test]
fn http_on_a_non_loopback_address_is_warned_about_at_start() {
    let ws = quiet_workspace();
    const WARNING: &str = "is not a loopback address: /healthz and /metrics have no authentication";
    let mut open = Daemon::start_with(&ws, &[], Some("0.0.0.0:0"), &[]);
    wait_until(DEADLINE, "the first reconcile", || open.metric("opsflow_reconciles_total") >= 1.0);
    let log = open.log();
    let warning = log.lines().find(|l| l.contains(WARNING)).unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(warning.contains("WARN") && warning.contains("--http 0.0.0.0:"), "{warning}");
    assert_eq!(open.terminate(DEADLINE).code(), Some(0));

    let mut loopback = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the first reconcile", || loopback.metric("opsflow_reconciles_total") >= 1.0);
    assert!(!loopback.log().contains(WARNING), "{}", loopback.log());
    assert_eq!(loopback.terminate(DEADLINE).code(), Some(0));
}

#[test]
fn a_half_written_approval_is_read_once_it_settles_and_its_hold_wins() {
    // An editor that truncates the approval and writes it in two chunks, 60 to 300 ms apart
    // (VS Code and others do): the first chunk (`status: approved`, `- [ ] Approved`) parsed
    // and shipped to production, and the `- [x] Hold` of the second was ignored.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let approval = "docs/workflow/artifacts/R12-prod-approval.md";
    let full = ws
        .read_string(approval)
        .replacen("status: \"pending\"", "status: \"approved\"", 1)
        .replacen("approved_by: null", "approved_by: \"alice\"", 1)
        .replacen("- [ ] Hold", "- [x] Hold", 1);
    let cut = full.find("- [x] Hold").expect("the request has a Hold item");
    let daemon = Daemon::start(&ws, &[], false);
    // The editor's pause between its two writes: 200 ms.
    crate::faults::write_in_chunks(&ws.join(approval), &full, cut, Duration::from_millis(200));
    wait_until(DEADLINE, "the hold to be recorded", || {
        task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().is_some_and(|r| r.contains("on hold"))
    });
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "nothing shipped:\n{}", daemon.log());
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(!audit.lines().any(|l| l.contains("\"DEVOPS-007\"") && l.contains("\"claimed\"")), "{audit}");
}

#[test]
fn healthz_says_at_once_when_tasks_json_is_cut_short() {
    // `/healthz` stayed 200 after tasks.json was truncated until three reconciles had failed,
    // which, with no further file event, took until the poll interval (5 minutes).
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "/healthz to answer 200", || daemon.get("/healthz").status == 200);
    let text = ws.read_string(TASKS);
    ws.write(TASKS, &text[..text.len() / 3]);
    wait_until(DEADLINE, "/healthz to say the workspace cannot be reconciled", || {
        let health = daemon.get("/healthz");
        health.status == 503 && health.body.contains("the workspace cannot be reconciled")
    });
    ws.write(TASKS, text);
    wait_until(DEADLINE, "/healthz to be 200 again", || daemon.get("/healthz").status == 200);
}

#[test]
fn each_node_is_counted_and_logged_as_it_ends_not_when_the_reconcile_does() {
    // Under sustained work one reconcile kept going, and `/metrics` and the per-task log
    // lines moved only when it ended.
    let ws = quiet_workspace();
    edit_json(&ws, CONFIG, |c| {
        c["dev"]["setup"] = json!(
            "touch \"$OPSFLOW_WORKSPACE/setting-up\"; while [ ! -f \"$OPSFLOW_WORKSPACE/go\" ]; do sleep 0.05; done"
        );
    });
    let mut dev = design_task("DEVOPS-101", "DevOps-Engineer");
    dev["type"] = json!("infrastructure_dev_env");
    dev["depends_on"] = json!(["DEVOPS-100"]);
    ws.write(
        TASKS,
        serde_json::to_string_pretty(&json!({"tasks": [design_task("DEVOPS-100", "DevOps-Engineer"), dev]})).unwrap(),
    );
    let daemon = Daemon::start(&ws, &[], true);
    wait_until(DEADLINE, "the second node to start", || ws.join("setting-up").exists());
    // The first node's end is in the figures and the log while the same reconcile runs on.
    let series = "opsflow_node_runs_total{node=\"Environment_Design\",outcome=\"done\"}";
    wait_until(DEADLINE, "the design node to be counted", || {
        sample(&daemon.get("/metrics").body, series).is_some_and(|v| v >= 1.0)
    });
    assert!(daemon.log().contains("DEVOPS-100 Environment_Design done"), "{}", daemon.log());
    assert_eq!(daemon.metric("opsflow_reconciles_total"), 0.0, "the first reconcile has not ended yet");
    ws.write("go", "");
    wait_for_status(&ws, "DEVOPS-101", "done");
}

#[test]
fn a_finished_task_a_writer_puts_back_in_progress_gets_its_outcome_again() {
    // A writer that ignores the lock renamed an older copy of tasks.json into place after
    // opsflow finished a task: the task showed the claim again, `in_progress` for good, while
    // the audit log and /metrics counted it done.
    let ws = quiet_workspace();
    edit_json(&ws, CONFIG, |c| {
        c["dev"]["setup"] = json!(
            "touch \"$OPSFLOW_WORKSPACE/setting-up\"; while [ ! -f \"$OPSFLOW_WORKSPACE/go\" ]; do sleep 0.05; done"
        );
    });
    let design = ws.read_string("docs/workflow/artifacts/INFRA01-requirements.md");
    ws.write("docs/workflow/artifacts/INFRA04-env-specs.md", design);
    let mut dev = design_task("DEVOPS-101", "DevOps-Engineer");
    dev["type"] = json!("infrastructure_dev_env");
    ws.write(TASKS, serde_json::to_string_pretty(&json!({"tasks": [dev]})).unwrap());
    let daemon = Daemon::start(&ws, &[], false);
    wait_until(DEADLINE, "the node to start", || ws.join("setting-up").exists());
    let claimed = ws.read_string(TASKS);
    assert!(claimed.contains("in_progress"), "{claimed}");
    ws.write("go", "");
    wait_for_status(&ws, "DEVOPS-101", "done");
    // The older copy, with the claim, renamed into place.
    save_by_rename(&ws, TASKS, "tasks.json.agent", claimed.as_bytes());
    wait_for_status(&ws, "DEVOPS-101", "done");
    wait_until(DEADLINE, "the audit log to say the outcome was recorded again", || {
        ws.read_string(".opsflow/audit.jsonl").contains("recorded again")
    });
    assert!(!ws.tasks().iter().any(|t| t["id"] == "FIX-DEVOPS-101"), "no interruption was made up:\n{}", daemon.log());
}
