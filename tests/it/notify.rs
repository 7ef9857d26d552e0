//! Notifications against a real HTTP receiver on 127.0.0.1 and real command channels: one
//! delivery per event across repeated runs, a receiver that fails and then recovers (same
//! idempotency key, the deployment unaffected), a runner killed between enqueue and send,
//! Slack's payload, a command's environment, a secret header that never reaches a file or a
//! log, the escalation's Contacts Notified line, and the daemon's `/metrics` counters.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::{CONFIG, REQUESTS, edit_json};
use crate::life::{approval_file, approve, life_workspace, step};
use crate::util::{Workspace, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "hook-token-5b1f0c9e7d";
const OUTBOX: &str = ".opsflow/outbox";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Value,
    /// The status it answered.
    answered: u16,
}

/// A plain HTTP/1.1 receiver on 127.0.0.1 that records every request and answers with the
/// status it is set to.
struct Receiver {
    address: SocketAddr,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (Arc::clone(&status), Arc::clone(&received));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let code = answer.load(Ordering::SeqCst);
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(Received { headers, body, answered: code });
                let _ = write!(stream, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        Receiver { address, status, received }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests it accepted, by event id.
    fn accepted(&self) -> BTreeMap<String, Vec<Received>> {
        let mut by_id: BTreeMap<String, Vec<Received>> = BTreeMap::new();
        for request in self.received().into_iter().filter(|r| r.answered == 200) {
            by_id.entry(request.body["event_id"].as_str().unwrap_or_default().to_owned()).or_default().push(request);
        }
        by_id
    }
}

/// The life workspace with `channels` as its `notifications`.
fn notified_workspace(channels: Value) -> Workspace {
    let ws = life_workspace();
    edit_json(&ws, CONFIG, |config| config["notifications"] = channels);
    ws
}

fn hook(receiver: &Receiver) -> Value {
    json!({
        "name": "hook",
        "webhook": {"url": receiver.url(), "headers": {"Authorization": {"env": "HOOK_TOKEN", "prefix": "Bearer "}}},
        "timeout": "2s",
        "retry": {"initial": "100ms", "max": "200ms"}
    })
}

/// `opsflow run --json` with the hook's token in the environment: exit code and output.
fn run(ws: &Workspace) -> (i32, String) {
    let output = ws.command(&["run", "--json"]).env("HOOK_TOKEN", TOKEN).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap(), text)
}

fn status_text(ws: &Workspace) -> String {
    let output = ws.command(&["status"]).env("HOOK_TOKEN", TOKEN).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every file under `relative`, with its text.
fn files_under(ws: &Workspace, relative: &str) -> Vec<(String, String)> {
    crate::util::snapshot_of(&ws.join(relative))
        .into_iter()
        .filter_map(|(path, entry)| match entry {
            crate::util::Entry::File(bytes) => {
                Some((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()))
            }
            _ => None,
        })
        .collect()
}

fn pending(ws: &Workspace) -> Vec<String> {
    ws.list_dir(OUTBOX).into_iter().filter(|name| name.ends_with(".json")).collect()
}

#[test]
fn every_event_is_delivered_once_across_repeated_runs_with_its_key_and_secret_header() {
    let receiver = Receiver::start();
    let ws = notified_workspace(json!([hook(&receiver)]));
    let (code, output) = run(&ws);
    assert_eq!(code, 3, "the release waits for its approval as without notifications: {output}");
    // Runs with nothing new raise nothing new.
    assert_eq!(run(&ws).0, 3);
    assert_eq!(run(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, output) = run(&ws);
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(TOKEN), "{output}");
    assert_eq!(run(&ws).0, 0);

    let accepted = receiver.accepted();
    assert_eq!(receiver.received().len(), accepted.len(), "one request per event: {:#?}", receiver.received());
    let events: Vec<(String, String)> = accepted
        .values()
        .map(|r| {
            (r[0].body["event"].as_str().unwrap().to_owned(), r[0].body["environment"].as_str().unwrap().to_owned())
        })
        .collect();
    for wanted in [
        ("approval_waiting", "production"),
        ("deploy_started", "production"),
        ("deployed", "production"),
        ("deployed", "staging"),
    ] {
        assert!(events.iter().any(|(e, env)| e == wanted.0 && env == wanted.1), "{wanted:?} in {events:?}");
    }
    assert!(events.iter().any(|(e, _)| e == "escalation"), "{events:?}");
    for (id, requests) in &accepted {
        let request = &requests[0];
        assert_eq!(request.headers["idempotency-key"], *id);
        assert_eq!(request.headers["authorization"], format!("Bearer {TOKEN}"));
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.body["channel"], "hook");
        assert!(request.body["run_id"].as_str().is_some_and(|r| !r.is_empty()), "{}", request.body);
    }
    let waiting = accepted.values().map(|r| &r[0].body).find(|b| b["event"] == "approval_waiting").unwrap();
    assert_eq!(waiting["unit_id"], "UNIT-001");
    assert_eq!(waiting["version"], "1.0.0");
    assert_eq!(waiting["command"], "opsflow approve UNIT-001 1.0.0");
    assert!(waiting["file"].as_str().unwrap().contains("R12-prod-approval"), "{waiting}");

    // The escalation's line names the channel that accepted it, and nothing else.
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Contacts Notified:** hook (accepted "), "{requests}");
    assert!(!requests.contains("devops.approvers (accepted"), "{requests}");
    // The token is in no file opsflow keeps, nor in status.
    assert!(pending(&ws).is_empty(), "{:?}", pending(&ws));
    let sent = files_under(&ws, OUTBOX);
    assert!(sent.len() >= 5, "{sent:?}");
    for (path, text) in sent.iter().chain(files_under(&ws, ".opsflow").iter()).chain(files_under(&ws, "docs").iter()) {
        assert!(!text.contains(TOKEN), "{path} holds the token:\n{text}");
    }
    let status = status_text(&ws);
    assert!(status.contains("nothing pending: every notification was delivered"), "{status}");
    assert!(!status.contains(TOKEN), "{status}");
}

#[test]
fn a_failing_receiver_gets_the_events_later_with_the_same_keys_and_the_deployment_goes_on() {
    let receiver = Receiver::start();
    receiver.answer(500);
    let ws = notified_workspace(json!([hook(&receiver)]));
    let (code, output) = run(&ws);
    assert_eq!(code, 3, "{output}");
    assert!(output.contains("cannot notify hook of"), "the failure is logged: {output}");
    assert!(output.contains("answered 500"), "{output}");
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, output) = run(&ws);
    assert_eq!(code, 0, "the deployment is not held by its notifications: {output}");
    assert!(crate::life::live_index(&ws).contains("UNIT-001 1.0.0"));
    let failed: std::collections::BTreeSet<String> =
        receiver.received().iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert!(!failed.is_empty());
    let status = status_text(&ws);
    assert!(status.contains("pending in the outbox"), "{status}");
    assert!(status.contains("hook: ") && status.contains("failing since "), "{status}");
    assert!(status.contains("answered 500"), "{status}");
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Contacts Notified:** hook (queued; delivery failing since "), "{requests}");
    // An entry says how often it was tried and when it is tried again.
    // (A channel that failed gets no second attempt in the same step: some entries wait untried.)
    let entries: Vec<Value> = pending(&ws)
        .iter()
        .map(|name| serde_json::from_str(&ws.read_string(&format!("{OUTBOX}/{name}"))).unwrap())
        .collect();
    let tried = entries.iter().find(|e| e["attempts"].as_u64() >= Some(1)).unwrap_or_else(|| panic!("{entries:?}"));
    assert!(tried["next_attempt_at"].as_str().is_some() && tried["last_error"].as_str().is_some(), "{tried}");

    receiver.answer(200);
    wait_until(DEADLINE, "the outbox to empty once the receiver answers", || {
        run(&ws);
        pending(&ws).is_empty()
    });
    let accepted = receiver.accepted();
    for key in &failed {
        assert_eq!(accepted.get(key).map(Vec::len), Some(1), "{key} delivered once, with the key it failed with");
    }
    let status = status_text(&ws);
    assert!(status.contains("nothing pending"), "{status}");
    assert!(!status.contains("failing since"), "{status}");
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Contacts Notified:** hook (accepted "), "{requests}");
}

#[test]
fn a_runner_killed_between_enqueue_and_send_leaves_the_event_for_the_next_run() {
    let out = tempfile::tempdir().unwrap();
    let (gate, dir) = (out.path().join("gate"), out.path().display().to_string());
    let ws = notified_workspace(json!([{
        "name": "pager",
        "events": ["approval_waiting"],
        "command": format!(
            "if [ -f '{}' ]; then cat > '{dir}/'$OPSFLOW_EVENT_ID.json; else touch '{dir}/started'; sleep 30; fi",
            gate.display()
        ),
        "timeout": "60s"
    }]));
    let mut child =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_until(DEADLINE, "the command channel to start", || out.path().join("started").exists());
    // SAFETY: a plain kill(2) of our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let queued = pending(&ws);
    assert_eq!(queued.len(), 1, "the event is in the outbox: {queued:?}");

    std::fs::write(&gate, "").unwrap();
    assert_eq!(run(&ws).0, 3);
    let id = queued[0].trim_end_matches(".json");
    let body: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(body["event"], "approval_waiting");
    assert_eq!(body["event_id"], id);
    assert!(pending(&ws).is_empty());
}

#[test]
fn slack_gets_text_and_blocks_and_a_command_gets_the_event_in_its_environment() {
    let receiver = Receiver::start();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let ws = notified_workspace(json!([
        {"name": "ops-slack", "events": ["approval_waiting"], "webhook": {"url": receiver.url(), "format": "slack"}},
        {"name": "script", "events": ["approval_waiting"],
         "command": format!("cat > '{dir}/'$OPSFLOW_EVENT_ID.json && env | grep ^OPSFLOW_ > '{dir}/'$OPSFLOW_EVENT_ID.env")}
    ]));
    assert_eq!(run(&ws).0, 3);
    let slack = receiver.accepted().into_values().next().map(|r| r[0].body.clone()).unwrap_or(Value::Null);
    let text = slack["text"].as_str().unwrap_or_else(|| panic!("a text: {slack}"));
    assert!(text.contains("Approval waiting: UNIT-001 1.0.0 in production"), "{text}");
    let blocks = slack["blocks"].as_array().unwrap_or_else(|| panic!("blocks: {slack}"));
    assert!(blocks.iter().any(|b| b.to_string().contains("opsflow approve UNIT-001 1.0.0")), "{slack}");

    let env_file = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "env"))
        .unwrap();
    let env = std::fs::read_to_string(env_file.path()).unwrap();
    let id = env_file.path().file_stem().unwrap().to_string_lossy().into_owned();
    for line in [
        "OPSFLOW_EVENT=approval_waiting".to_owned(),
        format!("OPSFLOW_EVENT_ID={id}"),
        "OPSFLOW_UNIT_ID=UNIT-001".to_owned(),
        "OPSFLOW_VERSION=1.0.0".to_owned(),
        "OPSFLOW_ENVIRONMENT=production".to_owned(),
        "OPSFLOW_CHANNEL=script".to_owned(),
        "OPSFLOW_COMMAND=opsflow approve UNIT-001 1.0.0".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    assert!(
        env.lines().any(|l| l.starts_with("OPSFLOW_MESSAGE=") && l.contains("waits for a human approval")),
        "{env}"
    );
    let stdin: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(stdin["event_id"], id.as_str());
    assert_eq!(stdin["unit_id"], "UNIT-001");
}

#[test]
fn without_channels_an_escalation_says_none_configured() {
    let ws = life_workspace();
    assert_eq!(step(&ws).0, 3);
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Contacts Notified:** none configured"), "{requests}");
    assert!(requests.contains("- **Escalated To:** devops.approvers"), "{requests}");
    assert!(!ws.join(OUTBOX).exists(), "no outbox without channels");
}

#[test]
fn the_daemon_counts_failed_and_delivered_notifications_on_metrics() {
    let receiver = Receiver::start();
    receiver.answer(500);
    let ws = notified_workspace(json!([hook(&receiver)]));
    let daemon = crate::daemon::Daemon::start_with_env(&ws, &[], true, &[("HOOK_TOKEN", TOKEN)]);
    let series = |result: &str| {
        format!("opsflow_notifications_total{{channel=\"hook\",event=\"approval_waiting\",result=\"{result}\"}}")
    };
    let has = |series: &str| {
        let exposition = crate::daemon::Daemon::get_metrics(&daemon);
        exposition.lines().any(|line| line.starts_with(series))
    };
    wait_until(DEADLINE, "a failed delivery on /metrics", || has(&series("failed")));
    assert!(daemon.metric("opsflow_notifications_pending{channel=\"hook\"}") >= 1.0);
    // The timer retries between reconciles: no file change is needed.
    receiver.answer(200);
    wait_until(DEADLINE, "a delivery on /metrics", || has(&series("delivered")));
    assert_eq!(daemon.metric(&series("delivered")), 1.0);
    wait_until(DEADLINE, "the outbox to empty", || pending(&ws).is_empty());
    assert!(!daemon.log().contains(TOKEN), "{}", daemon.log());
}
