//! Running one step: `sh -c` in its own process group, with a timeout, logged and masked.
//!
//! Values from workflow files reach commands only as `OPSFLOW_*` environment variables; the
//! command string itself comes from the config, which humans write. Output (stdout and
//! stderr, interleaved by line) is masked for secrets and written to
//! `.opsflow/runs/<run_id>/<step>.log`. On timeout the whole process group gets SIGTERM,
//! then SIGKILL after a grace period, so no grandchild is left behind.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use super::secrets::Secrets;

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How many trailing output lines a result keeps for reports.
const TAIL_LINES: usize = 20;

/// Where and how the steps of one run execute.
#[derive(Debug, Clone)]
pub struct Runner {
    pub run_dir: PathBuf,
    pub workspace: PathBuf,
    pub env: Vec<(String, String)>,
    pub secrets: Secrets,
    pub default_timeout: Duration,
    /// Set on shutdown once the grace period is over: running commands are killed.
    pub abort: Arc<AtomicBool>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepResult {
    pub name: String,
    pub command: String,
    pub success: bool,
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did (a timeout's is not counted here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Stopped because opsflow was shutting down (past its grace period), not by its timeout.
    pub aborted: bool,
    pub duration_ms: u64,
    /// The log file, relative to the workspace.
    pub log: String,
    /// The last lines of output, masked.
    pub tail: String,
    /// [`StepResult::summary`], for reports and templates.
    pub summary: String,
}

impl StepResult {
    fn summarized(mut self) -> StepResult {
        self.summary = self.summary();
        self
    }

    /// One line for a report: what ran and how it ended.
    pub fn summary(&self) -> String {
        if self.success {
            format!("{} passed in {} ms", self.name, self.duration_ms)
        } else if self.aborted {
            format!("{} was stopped by shutdown after {} ms (log: {})", self.name, self.duration_ms, self.log)
        } else if self.timed_out {
            format!("{} timed out after {} ms (log: {})", self.name, self.duration_ms, self.log)
        } else {
            let code = self.exit_code.map_or("a signal".to_owned(), |c| format!("exit code {c}"));
            format!("{} failed with {code} (log: {})", self.name, self.log)
        }
    }
}

/// The standard output of a step whose output is data (a metrics command), as it came:
/// unmasked, so secrets in it must be masked before anything derived from it is written.
#[derive(Debug, Clone, Default)]
pub struct CapturedStdout {
    pub bytes: Vec<u8>,
    /// The output was longer than [`STDOUT_CAPTURE_LIMIT`]; `bytes` holds its beginning.
    pub truncated: bool,
}

/// The most standard output [`Runner::run_capturing_stdout`] keeps.
pub const STDOUT_CAPTURE_LIMIT: usize = 4 * 1024 * 1024;

impl Runner {
    /// The same runner, deaf to a shutdown's abort: for undoing a rollout, which must run to
    /// its end (each command still has its timeout) so no environment is left half-switched.
    pub fn detached(&self) -> Runner {
        Runner { abort: Arc::default(), ..self.clone() }
    }

    /// Runs `command` with `sh -c` in `cwd` (default: the workspace).
    pub fn run(
        &self,
        step: &str,
        command: &str,
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        extra_env: &[(String, String)],
    ) -> StepResult {
        self.run_inner(step, command, cwd, timeout, extra_env, Io::default())
    }

    /// Like [`Runner::run`], with `stdin` written to the command's standard input (then
    /// closed): for a notification command, which reads the event as JSON there.
    pub fn run_with_stdin(
        &self,
        step: &str,
        command: &str,
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        extra_env: &[(String, String)],
        stdin: Vec<u8>,
    ) -> StepResult {
        self.run_inner(step, command, cwd, timeout, extra_env, Io { stdin: Some(stdin), ..Io::default() })
    }

    /// Like [`Runner::run`] (logged, masked, time-limited), and also keeps the whole standard
    /// output, not only the tail, for steps whose output is data.
    pub fn run_capturing_stdout(
        &self,
        step: &str,
        command: &str,
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        extra_env: &[(String, String)],
    ) -> (StepResult, CapturedStdout) {
        let capture = Arc::new(Mutex::new(CapturedStdout::default()));
        let io = Io { capture: Some(Arc::clone(&capture)), ..Io::default() };
        let result = self.run_inner(step, command, cwd, timeout, extra_env, io);
        let captured = std::mem::take(&mut *capture.lock().expect("capture lock"));
        (result, captured)
    }

    /// For a program that reads a prompt and answers (an agent): `stdin` written to it, its
    /// standard output kept whole (up to [`STDOUT_CAPTURE_LIMIT`]) and logged apart from its
    /// standard error, in `<step>.stdout` and `<step>.stderr` (which also holds the command
    /// line and how it ended; `log` names it).
    pub fn run_split(
        &self,
        step: &str,
        command: &str,
        timeout: Option<Duration>,
        extra_env: &[(String, String)],
        stdin: Vec<u8>,
    ) -> (StepResult, CapturedStdout) {
        let capture = Arc::new(Mutex::new(CapturedStdout::default()));
        let io = Io { stdin: Some(stdin), capture: Some(Arc::clone(&capture)), split: true };
        let result = self.run_inner(step, command, None, timeout, extra_env, io);
        let captured = std::mem::take(&mut *capture.lock().expect("capture lock"));
        (result, captured)
    }

    fn run_inner(
        &self,
        step: &str,
        command: &str,
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        extra_env: &[(String, String)],
        io: Io,
    ) -> StepResult {
        let Io { stdin, capture, split } = io;
        let started = Instant::now();
        let log_path =
            if split { self.run_dir.join(format!("{}.stderr", safe_name(step))) } else { self.log_path(step) };
        let log_label = log_path.strip_prefix(&self.workspace).unwrap_or(&log_path).to_string_lossy().into_owned();
        let timeout = timeout.unwrap_or(self.default_timeout);
        let fail = |message: String| {
            StepResult {
                name: step.to_owned(),
                command: self.secrets.mask(command),
                success: false,
                exit_code: None,
                signal: None,
                timed_out: false,
                aborted: false,
                duration_ms: started.elapsed().as_millis() as u64,
                log: log_label.clone(),
                tail: self.secrets.mask(&message),
                summary: String::new(),
            }
            .summarized()
        };
        // The run directory is resolved beneath the workspace once, and the log and the marker
        // are created relative to it and never through a symlink, so neither a planted link nor
        // a folder renamed meanwhile can redirect them.
        let run_dir = match crate::workspace::write::dir(&self.workspace, &self.run_dir, true) {
            Ok(dir) => dir,
            Err(e) => return fail(format!("cannot create the log {}: {e}", log_path.display())),
        };
        let log_name = log_path.file_name().unwrap_or_default();
        let opened = run_dir.open_file(log_name, OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY);
        let log = match opened {
            Ok(file) => Arc::new(Mutex::new(file)),
            Err(e) => return fail(format!("cannot create the log {}: {e}", log_path.display())),
        };
        // Split: standard output goes to a file of its own, as it came (masked).
        let out_log = if split {
            let name = format!("{}.stdout", safe_name(step));
            match run_dir.open_file(std::ffi::OsStr::new(&name), OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY) {
                Ok(file) => Arc::new(Mutex::new(file)),
                Err(e) => return fail(format!("cannot create the log {}: {e}", self.run_dir.join(name).display())),
            }
        } else {
            Arc::clone(&log)
        };
        let _ = writeln!(log.lock().expect("log lock"), "$ {}", self.secrets.mask(command));
        // The running group is written down so that a runner killed with `kill -9` can have
        // its orphaned group ended by the next one (see `kill_leftover_group`). The child
        // writes it itself, before the command starts: a runner killed right after the spawn
        // must not leave a command running that nobody knows about.
        let run_dir_fd = run_dir.as_raw_fd();
        let mut builder = Command::new("sh");
        builder
            .arg("-c")
            .arg(command)
            .current_dir(cwd.unwrap_or(&self.workspace))
            .envs(self.env.iter().cloned())
            .envs(extra_env.iter().cloned())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: runs in the child between fork and exec, and only calls getpid, openat, write
        // and close, which are async-signal-safe, on memory prepared before the fork; the run
        // directory's descriptor stays open in the parent until the child has been waited for.
        unsafe {
            builder.pre_exec(move || {
                write_pid_file(run_dir_fd);
                Ok(())
            });
        }
        let mut child = match builder.spawn() {
            Ok(child) => child,
            Err(e) => return fail(format!("cannot start sh: {e}")),
        };
        let pid = child.id() as i32;
        // The input is written by a thread of its own, so a command that does not read it
        // (or reads it slowly) cannot hold the runner past its timeout.
        let feeder = stdin.zip(child.stdin.take()).map(|(bytes, mut pipe)| {
            thread::spawn(move || {
                let _written = pipe.write_all(&bytes);
            })
        });
        let tail = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let readers: Vec<_> = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .enumerate()
        .filter_map(|(index, stream)| Some((stream?, if index == 0 { capture.clone() } else { None })))
        .map(|(stream, capture)| {
            let log = if capture.is_some() { Arc::clone(&out_log) } else { Arc::clone(&log) };
            let (tail, secrets) = (Arc::clone(&tail), self.secrets.clone());
            thread::spawn(move || {
                read_pieces(stream, &secrets, |piece, ended| {
                    if let Some(capture) = &capture {
                        let mut capture = capture.lock().expect("capture lock");
                        if capture.bytes.len() + piece.len() < STDOUT_CAPTURE_LIMIT {
                            capture.bytes.extend_from_slice(piece);
                            if ended {
                                capture.bytes.push(b'\n');
                            }
                        } else {
                            capture.truncated = true;
                        }
                    }
                    let line = secrets.mask(&String::from_utf8_lossy(piece));
                    let _ = writeln!(log.lock().expect("log lock"), "{line}");
                    let mut tail = tail.lock().expect("tail lock");
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                });
            })
        })
        .collect();
        let (sender, receiver) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = sender.send(());
            status
        });
        // Wait in slices so that an abort (shutdown past its grace period) is noticed.
        let deadline = Instant::now() + timeout;
        let mut aborted = false;
        let timed_out = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(()) => break false,
                Err(mpsc::RecvTimeoutError::Disconnected) => break false,
                Err(mpsc::RecvTimeoutError::Timeout) if self.abort.load(Ordering::SeqCst) => {
                    aborted = true;
                    break true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => break true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        if timed_out {
            kill_group(pid, libc::SIGTERM);
            if receiver.recv_timeout(KILL_GRACE).is_err() {
                kill_group(pid, libc::SIGKILL);
            }
        }
        let status = waiter.join().expect("the waiter thread does not panic");
        // The group may still hold the pipes open (a background grandchild); end it so the
        // readers see end of file.
        kill_group(pid, libc::SIGKILL);
        run_dir.remove_file(std::ffi::OsStr::from_bytes(RUNNING_MARKER.to_bytes())).ok();
        for reader in readers {
            let _ = reader.join();
        }
        if let Some(feeder) = feeder {
            let _joined = feeder.join();
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let (exit_code, success) = match &status {
            Ok(status) => (status.code(), status.success() && !timed_out),
            Err(_) => (None, false),
        };
        let signal = status.as_ref().ok().and_then(ExitStatusExt::signal).filter(|_| !timed_out);
        let mut log = log.lock().expect("log lock");
        let ending = match (&status, timed_out) {
            (_, true) if aborted => "aborted by shutdown; process group killed".to_owned(),
            (_, true) => format!("timed out after {} ms; process group killed", timeout.as_millis()),
            (Ok(status), _) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "ended".to_owned(),
            },
            (Err(e), _) => format!("cannot wait: {e}"),
        };
        let _ = writeln!(log, "# {ending} ({duration_ms} ms)");
        let tail = tail.lock().expect("tail lock").iter().cloned().collect::<Vec<_>>().join("\n");
        StepResult {
            name: step.to_owned(),
            command: self.secrets.mask(command),
            success,
            exit_code,
            signal,
            timed_out,
            aborted: timed_out && aborted,
            duration_ms,
            log: log_label,
            tail,
            summary: String::new(),
        }
        .summarized()
    }

    fn log_path(&self, step: &str) -> PathBuf {
        let safe = safe_name(step);
        let mut path = self.run_dir.join(format!("{safe}.log"));
        let mut n = 2;
        while path.exists() {
            path = self.run_dir.join(format!("{safe}-{n}.log"));
            n += 1;
        }
        path
    }
}

/// How a step's input and output are wired.
#[derive(Default)]
struct Io {
    stdin: Option<Vec<u8>>,
    /// Standard output kept whole, besides the log.
    capture: Option<Arc<Mutex<CapturedStdout>>>,
    /// Standard output logged apart from standard error.
    split: bool,
}

/// A step's name as a file name: letters, digits, `-` and `_`, anything else a `-`.
fn safe_name(step: &str) -> String {
    step.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// The longest piece of output kept in memory as one line: a longer line is logged in pieces
/// of this size, so a command printing hundreds of megabytes without a newline costs a
/// bounded buffer, not its whole output.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Reads `stream` to its end and hands each line (without its newline, `ended` true) to
/// `piece`, and a line longer than [`MAX_LINE_BYTES`] in pieces (`ended` false for all but the
/// last). A cut never splits a secret: the buffer keeps `longest` bytes past the cut, and a cut
/// that would fall inside an occurrence of a secret moves to its end, so each piece can be
/// masked on its own. A cut never splits a UTF-8 character either.
fn read_pieces(mut stream: impl Read, secrets: &Secrets, mut piece: impl FnMut(&[u8], bool)) {
    let longest = secrets.longest();
    let mut pending: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // What `pending` held before has no newline: only the new bytes are searched.
        let mut search_from = pending.len();
        pending.extend_from_slice(&chunk[..read]);
        let mut start = 0;
        while let Some(at) = pending[search_from..].iter().position(|b| *b == b'\n') {
            let end = search_from + at;
            piece(&pending[start..end], true);
            start = end + 1;
            search_from = start;
        }
        while pending.len() - start >= MAX_LINE_BYTES + longest {
            let cut = cut_point(&pending[start..], MAX_LINE_BYTES, secrets);
            piece(&pending[start..start + cut], false);
            start += cut;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        piece(&pending, true);
    }
}

/// Where to cut `buffer` (at least `limit` plus the longest secret long) near `limit`: back to
/// the start of a UTF-8 character, then forward past any occurrence of a secret that would
/// span the cut, so that the piece before the cut holds it whole.
fn cut_point(buffer: &[u8], limit: usize, secrets: &Secrets) -> usize {
    let mut cut = limit;
    while cut > 1 && cut < buffer.len() && buffer[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    while let Some(end) = secrets.end_of_spanning(buffer, cut) {
        cut = end;
    }
    cut
}

/// Writes the calling process's pid and a newline to `path`, without allocating: for a child
/// between fork and exec.
fn write_pid_file(dir: std::os::fd::RawFd) {
    let mut digits = [0u8; 24];
    let mut at = digits.len() - 1;
    digits[at] = b'\n';
    // SAFETY: getpid has no preconditions.
    let mut pid = unsafe { libc::getpid() } as u32;
    loop {
        at -= 1;
        digits[at] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    // SAFETY: `dir` is an open directory, the name a valid C string and `digits[at..]` a valid
    // buffer; a failure only means no marker.
    unsafe {
        let fd = libc::openat(
            dir,
            RUNNING_MARKER.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o644,
        );
        if fd >= 0 {
            libc::write(fd, digits[at..].as_ptr().cast(), digits.len() - at);
            libc::close(fd);
        }
    }
}

/// The file in a run directory that names the process group of the step running now.
const RUNNING_MARKER: &std::ffi::CStr = c"running.pgid";

/// Ends the process group a dead runner left running in `run_dir`, if any: the group named by
/// its marker, and only if its leader still carries `OPSFLOW_RUN_ID=<run_id>` in its
/// environment (a recycled pid is left alone). Returns the group it ended.
pub fn kill_leftover_group(root: &Path, run_dir: &Path, run_id: &str) -> Option<i32> {
    let marker = run_dir.join(std::ffi::OsStr::from_bytes(RUNNING_MARKER.to_bytes()));
    let pgid: i32 = fs::read_to_string(&marker).ok()?.trim().parse().ok()?;
    crate::workspace::write::remove_file(root, &marker).ok();
    let environ = fs::read(format!("/proc/{pgid}/environ")).ok()?;
    let wanted = format!("OPSFLOW_RUN_ID={run_id}");
    if !environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()) {
        return None;
    }
    kill_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + KILL_GRACE;
    while !ended(pgid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    kill_group(pgid, libc::SIGKILL);
    let deadline = Instant::now() + KILL_GRACE;
    while !ended(pgid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    Some(pgid)
}

/// Whether process `pid` has ended: gone, or a zombie waiting for its parent.
fn ended(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH, which is fine.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(dir: &Path) -> Runner {
        Runner {
            run_dir: dir.join("run"),
            workspace: dir.to_owned(),
            env: vec![("OPSFLOW_UNIT_ID".into(), "$(touch pwned)".into())],
            secrets: Secrets::from_vars([("X_TOKEN".to_owned(), "s3cr3t-value".to_owned())], &[]),
            default_timeout: Duration::from_secs(10),
            abort: Arc::default(),
        }
    }

    #[test]
    fn output_is_logged_and_masked_and_values_stay_data() {
        let dir = tempfile::tempdir().unwrap();
        let result = runner(dir.path()).run(
            "echo step",
            "echo \"unit=$OPSFLOW_UNIT_ID\"; echo s3cr3t-value >&2; exit 3",
            None,
            None,
            &[],
        );
        assert!(!result.success);
        assert_eq!(result.exit_code, Some(3));
        let log = fs::read_to_string(dir.path().join(&result.log)).unwrap();
        assert!(log.contains("unit=$(touch pwned)"), "{log}");
        assert!(log.contains("***") && !log.contains("s3cr3t-value"), "{log}");
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn a_long_line_is_cut_into_bounded_pieces_and_a_secret_across_a_cut_stays_whole() {
        let secrets = Secrets::from_vars([("X_TOKEN".to_owned(), "s3cr3t-value".to_owned())], &[]);
        // A secret across each place a naive cut would fall, and a character of three bytes.
        let mut line = String::new();
        while line.len() < 5 * MAX_LINE_BYTES {
            let next_cut = (line.len() / MAX_LINE_BYTES + 1) * MAX_LINE_BYTES;
            line.push_str(&"x€".repeat((next_cut - line.len() - 6) / 4));
            line.push_str(&"y".repeat(next_cut - 6 - line.len()));
            line.push_str("s3cr3t-value");
        }
        let input = format!("{line}\nshort\n{line}");
        let mut pieces = Vec::new();
        read_pieces(input.as_bytes(), &secrets, |piece, ended| pieces.push((piece.to_vec(), ended)));
        assert!(pieces.iter().all(|(p, _)| p.len() <= MAX_LINE_BYTES + secrets.longest()));
        let joined: Vec<u8> =
            pieces.iter().flat_map(|(p, ended)| p.iter().copied().chain(ended.then_some(b'\n'))).collect();
        assert_eq!(String::from_utf8(joined).unwrap(), format!("{input}\n"), "nothing lost or added");
        let occurrences = input.matches("s3cr3t-value").count();
        let masked: usize = pieces
            .iter()
            .map(|(p, _)| {
                let text = std::str::from_utf8(p).expect("no character is split");
                secrets.mask(text).matches("***").count()
            })
            .sum();
        assert_eq!(masked, occurrences, "every occurrence is whole in one piece");
    }

    #[test]
    fn captured_stdout_is_whole_and_apart_from_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (result, stdout) =
            runner(dir.path()).run_capturing_stdout("data", "seq 1 30; echo noise >&2; printf 'last'", None, None, &[]);
        assert!(result.success, "{}", result.summary());
        let text = String::from_utf8(stdout.bytes).unwrap();
        assert_eq!(text.lines().count(), 31, "{text}");
        assert!(text.starts_with("1\n2\n") && text.ends_with("30\nlast\n") && !text.contains("noise"), "{text}");
        assert!(!stdout.truncated);
        assert_eq!(result.tail.lines().count(), TAIL_LINES);
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        // A timeout that fires before the shell has started its background child (a loaded
        // machine can take that long to start a shell) leaves nothing to check: the step is
        // run again with a longer one.
        let (_dir, result, pid) = [300, 3_000, 30_000]
            .into_iter()
            .find_map(|timeout_ms| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().to_owned();
                // The step would sleep for ten minutes; it runs on a thread of its own so that
                // a timeout that does not fire fails the test at a deadline instead of hanging it.
                let (sender, receiver) = std::sync::mpsc::channel();
                thread::spawn(move || {
                    let result = runner(&path).run(
                        "sleepy",
                        "sleep 600 & echo $! > bg.pid; sleep 600",
                        None,
                        Some(Duration::from_millis(timeout_ms)),
                        &[],
                    );
                    let _ = sender.send(result);
                });
                let result = receiver.recv_timeout(Duration::from_secs(120)).expect("the step ends at its timeout");
                let pid = fs::read_to_string(dir.path().join("bg.pid")).ok()?.trim().parse::<i32>().ok()?;
                Some((dir, result, pid))
            })
            .expect("the shell started its background child within 30 s");
        assert!(result.timed_out && !result.success);
        assert!(result.summary().contains("timed out"), "{}", result.summary());
        // A zombie still answers kill(0); its state in /proc says whether it is really gone.
        let gone = || {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty() || state.contains(") Z")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gone() {
            assert!(Instant::now() < deadline, "the background child {pid} survived the timeout");
            thread::sleep(Duration::from_millis(5));
        }
    }

    // A step stopped by a shutdown past its grace period says so; "timed out" is only for a
    // step that ran out of its own timeout.
    #[test]
    fn a_step_stopped_by_shutdown_is_not_reported_as_timed_out() {
        let dir = tempfile::tempdir().unwrap();
        let runner = runner(dir.path());
        let abort = Arc::clone(&runner.abort);
        let (sender, receiver) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let result = runner.run(
                "deploy",
                "echo started > started; exec sleep 600",
                None,
                Some(Duration::from_secs(3600)),
                &[],
            );
            let _ = sender.send(result);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.path().join("started").exists() {
            assert!(Instant::now() < deadline, "the step never started");
            thread::sleep(Duration::from_millis(5));
        }
        abort.store(true, Ordering::SeqCst);
        let result = receiver.recv_timeout(Duration::from_secs(60)).expect("the step ends on abort");
        assert!(result.aborted && !result.success, "{result:?}");
        let summary = result.summary();
        assert!(summary.starts_with("deploy was stopped by shutdown after "), "{summary}");
        assert!(!summary.contains("timed out"), "{summary}");
        let log = fs::read_to_string(dir.path().join(&result.log)).unwrap_or_default();
        assert!(log.contains("# aborted by shutdown; process group killed"), "{}: {log}", result.log);
    }
}
