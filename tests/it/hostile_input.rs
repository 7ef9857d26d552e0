//! Hostile files: a corpus of inputs written to hurt a reader (alias bombs, FIFOs, directories,
//! symlinks in and out, duplicate keys, numbers past `f64`, lone surrogates, deep nesting,
//! durations that overflow), each put into the sample workspace and run through every command
//! that reads it.
//!
//! Every command must refuse with a message that names the file and exit non-zero, and must
//! not panic (exit 101), hang (each run has a deadline), use unbounded memory (each runs under
//! `prlimit --as`, so an alias bomb that expands dies instead of passing) or write anything:
//! the workspace is compared byte for byte before and after, lock files aside.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{TASKS, Workspace, opsflow_bin, wait_for_exit, wait_until};

/// The address-space limit each command runs under: far above what any of them needs on
/// these small files, far below what an expanded alias bomb takes.
const MEMORY_LIMIT: &str = "--as=1073741824";
/// How long one command may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(60);

const CONFIG: &str = "project-config.json";
const STATE: &str = "docs/workflow/state.json";
const QA_REPORT: &str = "QA/QA-Report-UNIT-001.md";
const APPROVAL: &str = "docs/workflow/artifacts/R12-prod-approval.md";
const ROLLBACK: &str = "docs/workflow/artifacts/R17-rollback-decision.md";
const QA_TEST_REPORT: &str = "ARTIFACTS/qa-engineer/qa-test-report.json";

/// Which commands read the hostile file, and so run against it.
#[derive(Clone, Copy, PartialEq)]
enum Reader {
    /// `tasks.json` and the config: every command, the daemon included.
    Everything,
    /// `state.json`: what the engine reads on every pass, the `tasks` commands never.
    Engine,
    /// A workflow file that `validate` and `status` check and the engine reads only when a
    /// task reaches the node that needs it.
    Checked,
}

struct Case {
    name: &'static str,
    /// The file the messages must name.
    file: &'static str,
    reader: Reader,
    setup: Box<dyn Fn(&Workspace)>,
    /// Commands (by their first words) that may succeed on this input.
    may_succeed: &'static [&'static str],
}

fn case(name: &'static str, file: &'static str, reader: Reader, setup: impl Fn(&Workspace) + 'static) -> Case {
    Case { name, file, reader, setup: Box::new(setup), may_succeed: &[] }
}

/// The sample's task list with `entry` as the first task (another agent's, in the cases).
fn tasks_with(ws: &Workspace, entry: &str) {
    let text = ws.read_string(TASKS);
    ws.write(TASKS, text.replacen("\"tasks\": [", &format!("\"tasks\": [\n    {entry},"), 1));
}

/// Another agent's task with `extra` members.
fn foreign_task(extra: &str) -> String {
    format!(
        r#"{{"id": "X-1", "title": "t", "agent": "Backend-Engineer", "type": "implementation", "status": "pending", {extra}}}"#
    )
}

/// Nine levels of nine aliases in a front matter: about 600 bytes that would expand to 387
/// million strings.
fn alias_bomb(front: &str) -> String {
    let mut yaml = format!("---\n{front}a1: &a1 [x,x,x,x,x,x,x,x,x]\n");
    for level in 2..=9 {
        let previous = format!("*a{}", level - 1);
        yaml.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 9].join(",")));
    }
    yaml.push_str("---\n# Report\n");
    yaml
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

fn replace_with_dir(ws: &Workspace, relative: &str) {
    let path = ws.join(relative);
    let _ = fs::remove_file(&path);
    fs::create_dir_all(path.join("inside")).unwrap();
}

fn replace_with_symlink(ws: &Workspace, relative: &str, target: &Path) {
    let path = ws.join(relative);
    let _ = fs::remove_file(&path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &path).unwrap();
}

fn corpus() -> Vec<Case> {
    use Reader::*;
    let deep = |levels: usize| format!("\"deep\": {}1{}", "[".repeat(levels), "]".repeat(levels));
    vec![
        case("a number past f64 in another agent's task", TASKS, Everything, |ws| {
            tasks_with(ws, &foreign_task(r#""estimate_hours": 1e400"#))
        }),
        case("a negative number past f64", TASKS, Everything, |ws| {
            tasks_with(ws, &foreign_task(r#""estimate_hours": -1e400"#))
        }),
        case("an integer of 400 digits", TASKS, Everything, |ws| {
            tasks_with(ws, &foreign_task(&format!("\"estimate_hours\": {}", "9".repeat(400))))
        }),
        case("a lone high surrogate", TASKS, Everything, |ws| tasks_with(ws, &foreign_task(r#""notes": "\ud83d""#))),
        case("a lone low surrogate in a key", TASKS, Everything, |ws| tasks_with(ws, &foreign_task(r#""\udc00": 1"#))),
        case("nesting past serde_json's limit", TASKS, Everything, move |ws| tasks_with(ws, &foreign_task(&deep(130)))),
        case("nesting of 100,000 levels", TASKS, Everything, move |ws| tasks_with(ws, &foreign_task(&deep(100_000)))),
        case("a duplicate key in a task", TASKS, Everything, |ws| tasks_with(ws, &foreign_task(r#""status": "done""#))),
        case("a duplicate tasks key", TASKS, Everything, |ws| {
            let text = ws.read_string(TASKS);
            let end = text.rfind('}').unwrap();
            ws.write(TASKS, format!("{},\n  \"tasks\": []\n}}\n", text[..end].trim_end()));
        }),
        Case {
            // Editing or listing tasks by a unique id is unambiguous; acting on the list is not.
            may_succeed: &["tasks"],
            ..case("two tasks with one id", TASKS, Everything, |ws| {
                tasks_with(
                    ws,
                    r#"{"id": "DEVOPS-009", "title": "t", "agent": "Backend-Engineer", "type": "implementation", "status": "pending"}"#,
                )
            })
        },
        case("a FIFO as tasks.json", TASKS, Everything, |ws| mkfifo(&ws.join(TASKS))),
        case("a directory as tasks.json", TASKS, Everything, |ws| replace_with_dir(ws, TASKS)),
        case("tasks.json linked to /etc/passwd", TASKS, Everything, |ws| {
            replace_with_symlink(ws, TASKS, Path::new("/etc/passwd"))
        }),
        case("tasks.json linked to nothing", TASKS, Everything, |ws| {
            replace_with_symlink(ws, TASKS, &ws.join("docs/workflow/missing.json"))
        }),
        case("the config linked to /etc/passwd", CONFIG, Everything, |ws| {
            replace_with_symlink(ws, CONFIG, Path::new("/etc/passwd"))
        }),
        case("the config linked to nothing", CONFIG, Everything, |ws| {
            replace_with_symlink(ws, CONFIG, &ws.join("missing-config.json"))
        }),
        case("a FIFO as the config", CONFIG, Everything, |ws| mkfifo(&ws.join(CONFIG))),
        case("a duration that overflows", CONFIG, Everything, |ws| {
            let text = ws
                .read_string(CONFIG)
                .replace("\"poll_interval\": \"5m\"", "\"poll_interval\": \"99999999999999999999h\"");
            assert!(text.contains("99999999999999999999h"));
            ws.write(CONFIG, text);
        }),
        case("a day count that overflows", CONFIG, Everything, |ws| {
            let text =
                ws.read_string(CONFIG).replace("\"debounce\": \"50ms\"", "\"debounce\": \"99999999999999999999999d\"");
            assert!(text.contains("99999999999999999999999d"));
            ws.write(CONFIG, text);
        }),
        case("a duplicate key in the config", CONFIG, Everything, |ws| {
            let text = ws.read_string(CONFIG).replacen("{", "{\n  \"project\": \"other\",", 1);
            ws.write(CONFIG, text);
        }),
        case("a duplicate key in state.json", STATE, Engine, |ws| {
            let text = ws.read_string(STATE).replacen("{", "{\n  \"workflow\": \"x\",", 1);
            ws.write(STATE, text);
        }),
        case("an alias bomb in a QA report", QA_REPORT, Checked, |ws| {
            ws.write(QA_REPORT, alias_bomb("unit_id: UNIT-001\nstatus: approved\n"))
        }),
        case("an alias bomb in an approval", APPROVAL, Checked, |ws| {
            ws.write(APPROVAL, alias_bomb("status: approved\n"))
        }),
        case("an alias bomb in a rollback decision", ROLLBACK, Checked, |ws| {
            ws.write(ROLLBACK, alias_bomb("decision: rollback\n"))
        }),
        case("a QA report that says rejected and approved", QA_REPORT, Checked, |ws| {
            ws.write(QA_REPORT, "---\nunit_id: UNIT-001\nstatus: rejected\nstatus: approved\n---\n# QA\n")
        }),
        case("a directory as a QA report", QA_REPORT, Checked, |ws| replace_with_dir(ws, QA_REPORT)),
        case("a FIFO as an approval", APPROVAL, Checked, |ws| mkfifo(&ws.join(APPROVAL))),
        case("a QA report linked to /dev/zero", QA_REPORT, Checked, |ws| {
            replace_with_symlink(ws, QA_REPORT, Path::new("/dev/zero"))
        }),
        case("a recommendation given twice", QA_TEST_REPORT, Checked, |ws| {
            let text = ws.read_string(QA_TEST_REPORT);
            let end = text.rfind('}').unwrap();
            ws.write(
                QA_TEST_REPORT,
                format!(
                    "{},\n  \"recommendation\": \"reject\",\n  \"recommendation\": \"approve_for_deployment\"\n}}\n",
                    text[..end].trim_end()
                ),
            );
        }),
    ]
}

/// What a workspace holds, without reading FIFOs or following symlinks; lock files (the
/// store's sidecar and the runtime's) are left out, since taking a lock is not a write.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_owned();
            let name = relative.to_string_lossy().into_owned();
            if name.ends_with(".lock") || name == ".opsflow/.gitignore" {
                continue;
            }
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            let value = if kind.is_symlink() {
                format!("symlink to {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                walk(root, &path, out);
                if name == ".opsflow" || name == ".opsflow/locks" {
                    continue;
                }
                "directory".to_owned()
            } else if kind.is_fifo() {
                "fifo".to_owned()
            } else {
                format!("{:?}", fs::read(&path).unwrap())
            };
            out.insert(relative, value);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs opsflow under the memory limit with a deadline: (exit code, stdout and stderr).
fn run_limited(ws: &Workspace, args: &[&str]) -> (Option<i32>, String) {
    let mut child = limited(ws, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run prlimit");
    let (output, readers) = collect(&mut child);
    let status = wait_for_exit(&mut child, DEADLINE, &format!("opsflow {}", args.join(" ")));
    for reader in readers {
        reader.join().unwrap();
    }
    let text = output.lock().unwrap().clone();
    (status.code(), text)
}

fn limited(ws: &Workspace, args: &[&str]) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(MEMORY_LIMIT)
        .arg("--")
        .arg(opsflow_bin())
        .arg("-C")
        .arg(ws.path())
        .args(args)
        .env_remove("OPSFLOW_LOG")
        .stdin(Stdio::null());
    command
}

/// Reads the child's stdout and stderr into one buffer as they come; the threads end when
/// the child's ends of the pipes close.
fn collect(child: &mut std::process::Child) -> (Arc<Mutex<String>>, Vec<std::thread::JoinHandle<()>>) {
    let buffer = Arc::new(Mutex::new(String::new()));
    let streams: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    let readers = streams
        .into_iter()
        .map(|mut stream| {
            let buffer = Arc::clone(&buffer);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stream.read(&mut chunk) {
                    if read == 0 {
                        break;
                    }
                    buffer.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..read]));
                }
            })
        })
        .collect();
    (buffer, readers)
}

/// Starts `watch`, waits until it names the file (or exits), then stops it.
fn watch_limited(ws: &Workspace, file: &str) -> (Option<i32>, String) {
    let mut child = limited(ws, &["watch"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run prlimit");
    let (output, readers) = collect(&mut child);
    let mut exited = None;
    wait_until(DEADLINE, &format!("watch to report {file} or exit"), || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
        }
        exited.is_some() || output.lock().unwrap().contains(file)
    });
    let code = match exited {
        Some(status) => status.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // Stopped by the test while it went on reporting the file: a refusal.
            Some(2)
        }
    };
    for reader in readers {
        reader.join().unwrap();
    }
    let text = output.lock().unwrap().clone();
    (code, text)
}

#[test]
fn hostile_files_are_refused_by_every_command_that_reads_them() {
    let mut failures = Vec::new();
    for case in corpus() {
        let ws = Workspace::new().sample();
        (case.setup)(&ws);
        let mut commands: Vec<Vec<&str>> = vec![vec!["validate"], vec!["status"]];
        match case.reader {
            Reader::Everything => commands.extend([
                vec!["run"],
                vec!["tasks", "list"],
                vec!["tasks", "list", "--json"],
                vec!["tasks", "add", "--title", "t", "--owner", "devops", "--type", "deployment_staging"],
                vec!["tasks", "update", "DEVOPS-001", "--set", "status=done"],
                vec!["watch"],
            ]),
            Reader::Engine => commands.extend([vec!["run"], vec!["watch"]]),
            Reader::Checked => {}
        }
        for args in commands {
            let before = snapshot(ws.path());
            let shown = args.join(" ");
            let (code, output) =
                if args == ["watch"] { watch_limited(&ws, case.file) } else { run_limited(&ws, &args) };
            let may_succeed = case.may_succeed.iter().any(|prefix| shown.starts_with(prefix));
            let mut problems = Vec::new();
            if code == Some(101) || output.contains("panicked") {
                problems.push("panicked".to_owned());
            }
            if code.is_none() {
                problems.push("was killed by a signal (over the memory limit?)".to_owned());
            }
            if !may_succeed && code == Some(0) {
                problems.push("exited 0".to_owned());
            }
            if !may_succeed && !output.contains(case.file) {
                problems.push(format!("did not name {}", case.file));
            }
            if !may_succeed && snapshot(ws.path()) != before {
                problems.push("changed the workspace".to_owned());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "--- {}: `opsflow {shown}` exited {code:?}: {}\n{output}",
                    case.name,
                    problems.join(", ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn tasks_list_json_prints_no_list_when_it_fails() {
    let ws = Workspace::new().sample();
    tasks_with(&ws, &foreign_task(r#""estimate_hours": 1e400"#));
    let run = ws.run(&["tasks", "list", "--json"]);
    run.status(2);
    let printed = run.json();
    assert_eq!(printed["ok"], false, "{printed}");
    assert_eq!(printed["diagnostics"][0]["file"], "docs/workflow/tasks.json", "{printed}");
    assert!(printed["diagnostics"][0]["message"].as_str().unwrap().contains("number out of range"), "{printed}");
    assert!(run.stderr().starts_with("docs/workflow/tasks.json:3:"), "{}", run.stderr());
    assert!(run.stderr().contains("number out of range"), "{}", run.stderr());
}

#[test]
fn a_qa_test_report_that_says_reject_and_approve_is_invalid() {
    let ws = Workspace::new().sample();
    let text = ws.read_string(QA_TEST_REPORT);
    let end = text.rfind('}').unwrap();
    ws.write(
        QA_TEST_REPORT,
        format!(
            "{},\n  \"recommendation\": \"reject\",\n  \"recommendation\": \"approve_for_deployment\"\n}}\n",
            text[..end].trim_end()
        ),
    );
    let run = ws.run(&["validate"]);
    run.status(2);
    let line = run.stdout().lines().find(|l| l.starts_with(QA_TEST_REPORT)).unwrap_or_default().to_owned();
    assert!(line.ends_with(": invalid JSON: duplicate key \"recommendation\""), "{}", run.stdout());
    // file:line:column
    assert_eq!(line.split(':').take(3).count(), 3);
    assert!(line.split(':').nth(1).is_some_and(|l| l.parse::<u32>().is_ok()), "{line}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // Enough lines that the pipe's buffer fills after the reader has gone.
    let ws = Workspace::new().sample();
    let mut text = String::from("{\"tasks\": [\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "  {{\"id\": \"T-{i}\", \"title\": \"task {i}\", \"agent\": \"Backend-Engineer\", \"type\": \"implementation\", \"status\": \"pending\"}}{}\n",
            if i == 19_999 { "" } else { "," }
        ));
    }
    text.push_str("]}\n");
    ws.write(TASKS, text);
    for args in [&["tasks", "list"][..], &["tasks", "list", "--json"], &["validate"], &["status"]] {
        let mut child = ws.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Close the reading end at once, as `head -0` would.
        drop(child.stdout.take());
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = wait_for_exit(&mut child, DEADLINE, "opsflow into a closed pipe");
        assert!(!stderr.contains("Broken pipe") && !stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(status.code(), Some(101), "{args:?}: {stderr}");
        if args[0] == "tasks" {
            assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        }
    }
}

/// What the product counts as a settled file: one whose size and modification time stayed
/// the same for 50 ms (`SETTLE_QUIET`), after at most four reads with up to 2 s of waiting
/// before each new one (`SETTLE_TRIES`, `SETTLE_WAIT`, in `src/workspace/mod.rs`).
const SETTLE_QUIET: Duration = Duration::from_millis(50);
const SETTLE_GIVES_UP_AFTER: Duration = Duration::from_secs(6);

/// A writer that truncates `tasks.json` and writes it again in small pieces, as `echo > file`
/// or a JSON library's `save()` does, while opsflow reads it: the reader must wait for the
/// file to settle and read it whole, not report it broken or act on half of it.
///
/// A writer that pauses for longer than the quiet period (a loaded machine can stall this
/// test's thread that long) cannot be told from one that stopped for good: a round in which
/// the writer itself stalled so, or wrote for longer than the reader waits, says nothing
/// about the reader and is tried again. A round with a steady writer judges the reader.
#[test]
fn a_task_list_rewritten_in_place_is_read_once_it_settles() {
    use std::io::Write;
    use std::time::Instant;
    let ws = Workspace::new().sample();
    let whole = ws.read(TASKS);
    for args in [&["tasks", "list", "--json"][..], &["validate"], &["run", "--dry-run"], &["status"]] {
        let mut stalled = Vec::new();
        let run = loop {
            let mut file = fs::OpenOptions::new().write(true).truncate(true).open(ws.join(TASKS)).unwrap();
            file.write_all(&whole[..64]).unwrap();
            let started = Instant::now();
            let rest = whole[64..].to_vec();
            let writer = std::thread::spawn(move || {
                // Paced like a writer producing its output as it goes, 300 pieces in all.
                let (mut last, mut longest_pause) = (started, Duration::ZERO);
                for piece in rest.chunks(rest.len() / 300 + 1) {
                    std::thread::sleep(Duration::from_millis(2));
                    file.write_all(piece).unwrap();
                    longest_pause = longest_pause.max(last.elapsed());
                    last = Instant::now();
                }
                (longest_pause, started.elapsed())
            });
            let run = ws.run(args);
            let (longest_pause, took) = writer.join().unwrap();
            assert_eq!(ws.read(TASKS), whole);
            let read_whole = run.code() == Some(0) && !run.stderr().contains("invalid JSON");
            if read_whole || (longest_pause < SETTLE_QUIET && took < SETTLE_GIVES_UP_AFTER) {
                break run;
            }
            stalled.push(format!("paused {longest_pause:?}, wrote for {took:?}"));
            assert!(
                stalled.len() < 20,
                "{args:?}: the writer never wrote steadily enough to judge the reader: {stalled:?}"
            );
        };
        run.status(0);
        assert!(!run.stderr().contains("invalid JSON"), "{args:?}: {}", run.stderr());
        if args[0] == "tasks" {
            assert_eq!(run.json().as_array().map(Vec::len), Some(crate::util::tasks_of(&whole).len()));
        }
    }
}

/// `status` reads the end of the audit log; a FIFO in its place blocked it for good.
#[test]
fn status_does_not_wait_on_a_fifo_as_the_audit_log() {
    let ws = Workspace::new().sample();
    mkfifo(&ws.join(".opsflow/audit.jsonl"));
    let (code, output) = run_limited(&ws, &["status"]);
    assert_eq!(code, Some(0), "{output}");
}
