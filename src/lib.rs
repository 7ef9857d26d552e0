//! opsflow: the DevOps stage of a file-based multi-agent software workflow.
//!
//! The binary is a thin shell around [`run`]. The data flows from [`cli`] (what the user
//! asked) through [`workspace`] (which files, read defensively) and [`schema`] (are they
//! valid) to [`store`] (locked, byte-preserving edits of `tasks.json` and `state.json`).
//! [`validate`] checks the whole workspace; [`cmd`] holds one module per command.

pub mod agent;
pub mod audit;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod engine;
pub mod environment;
pub mod exec;
pub mod exit;
pub mod git;
pub mod identity;
pub mod instance;
pub mod integrations;
pub mod merge;
pub mod nodes;
pub mod notify;
pub mod release;
pub mod render;
pub mod rollout;
pub mod sample;
pub mod schema;
pub mod store;
pub mod sync;
pub mod task;
pub mod trust;
pub mod validate;
pub mod workflow;
pub mod workspace;

pub use exit::Exit;

/// RFC 3339 timestamps in UTC to the second (`2026-11-25T07:50:27Z`), the one format opsflow
/// writes into workflow files, the audit log and run ids. The calendar work is `jiff`'s.
pub mod time {
    use std::sync::OnceLock;

    /// The environment variable that sets what time it is, for tests: see [`Clock`].
    pub const NOW_VARIABLE: &str = "OPSFLOW_NOW";

    /// What time opsflow takes it to be when it decides on a deploy window or a wait timer.
    ///
    /// The wall clock, unless `OPSFLOW_NOW` (a testing aid, docs/reference.md) sets the time
    /// the process starts at, such as `2026-12-07T08:59:00Z`; time then runs on from there at
    /// the wall clock's pace, so a daemon started just before a window opens sees it open.
    /// The variable is read in [`Clock::from_env`] and nowhere else; the engine takes the
    /// time once per pass from the clock its options carry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Clock {
        /// How far ahead of (or behind) the wall clock this clock runs.
        offset: jiff::SignedDuration,
    }

    /// `OPSFLOW_NOW` does not hold a time.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{NOW_VARIABLE} is {text:?}: expected an RFC 3339 time such as 2026-12-07T08:59:00Z ({why})")]
    pub struct ClockError {
        pub text: String,
        pub why: String,
    }

    impl Clock {
        /// The wall clock.
        pub const WALL: Clock = Clock { offset: jiff::SignedDuration::ZERO };

        /// The process's clock: `OPSFLOW_NOW` as of the first call, else the wall clock. An
        /// invalid value is the wall clock here; [`Clock::check_env`] refuses it at the start
        /// of every command.
        pub fn from_env() -> Clock {
            static CLOCK: OnceLock<Clock> = OnceLock::new();
            *CLOCK.get_or_init(|| Clock::parse_env().ok().flatten().unwrap_or(Clock::WALL))
        }

        /// Refuses an `OPSFLOW_NOW` that holds no time.
        pub fn check_env() -> Result<(), ClockError> {
            Clock::parse_env().map(|_| ())
        }

        fn parse_env() -> Result<Option<Clock>, ClockError> {
            let Some(text) = std::env::var_os(NOW_VARIABLE) else { return Ok(None) };
            let text = text.to_string_lossy().into_owned();
            if text.trim().is_empty() {
                return Ok(None);
            }
            let at: jiff::Timestamp =
                text.trim().parse().map_err(|e: jiff::Error| ClockError { text: text.clone(), why: e.to_string() })?;
            Ok(Some(Clock::starting_at(at)))
        }

        /// A clock that reads `at` now and runs on from there.
        pub fn starting_at(at: jiff::Timestamp) -> Clock {
            Clock { offset: jiff::Timestamp::now().duration_until(at) }
        }

        /// What time it is by this clock.
        pub fn now(&self) -> jiff::Timestamp {
            let wall = jiff::Timestamp::now();
            wall.checked_add(self.offset).unwrap_or(wall)
        }
    }

    impl Default for Clock {
        /// The process's clock ([`Clock::from_env`]).
        fn default() -> Clock {
            Clock::from_env()
        }
    }

    /// `at` as opsflow writes times: `2026-11-25T07:50:27Z`.
    pub fn stamp(at: jiff::Timestamp) -> String {
        format!("{at:.0}")
    }

    /// Now, as `2026-11-25T07:50:27Z`.
    pub fn now_rfc3339() -> String {
        // A precision of 0 truncates the fraction, so every stamp has the same length.
        format!("{:.0}", jiff::Timestamp::now())
    }

    /// Seconds since the Unix epoch, as RFC 3339 UTC; beyond the years -9999 and 9999 (which
    /// jiff cannot represent) the nearest time it can.
    pub fn rfc3339(seconds: i64) -> String {
        let seconds = seconds.clamp(jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second());
        let stamp = jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        format!("{stamp:.0}")
    }

    /// True for the `2026-11-25T07:50:27Z` form opsflow writes, which orders as text.
    pub fn is_rfc3339_utc(text: &str) -> bool {
        let b = text.as_bytes();
        b.len() == 20
            && b.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'Z',
                _ => c.is_ascii_digit(),
            })
    }
}

/// SHA-256 as lowercase hex, for release checksums and the input hashes in the audit log.
/// The digest is the `sha2` crate's.
pub mod sha256 {
    use sha2::{Digest, Sha256};

    /// The SHA-256 of `data`.
    pub fn hex(data: &[u8]) -> String {
        format!("{:x}", Sha256::digest(data))
    }

    /// The SHA-256 of a file, streamed.
    pub fn file_hex(path: &std::path::Path) -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(format!("{:x}", hasher.finalize()))
    }
}

/// Runs one command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<Exit> {
    init_logging(&cli);
    cmd::dispatch(cli)
}

fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    // A daemon's log is what a person watching it reads: it says at info what it does; a
    // command that prints its own report on stdout stays quiet below warnings.
    let daemon = matches!(cli.command, cli::Command::Watch { .. });
    // Each `-v` is one level more than the command's default: `watch -v` logs at debug.
    const LEVELS: [&str; 4] = ["warn", "info", "debug", "trace"];
    let level = if cli.quiet {
        "error"
    } else {
        LEVELS[(usize::from(daemon) + usize::from(cli.verbose)).min(LEVELS.len() - 1)]
    };
    let filter = EnvFilter::try_from_env("OPSFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(format!("opsflow={level}")));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cli.log_format {
        cli::LogFormat::Text => builder.try_init(),
        cli::LogFormat::Json => builder.json().try_init(),
    };
}

/// True when `error` comes from writing to a closed pipe (`opsflow ... | head`): the reader
/// has what it wanted, so this is a quiet success, as in ripgrep.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Makes a `println!` into a closed pipe end the program quietly with status 0. Rust ignores
/// SIGPIPE, so such a write fails, and `println!` turns the failure into a panic (exit 101
/// with a message); restoring SIGPIPE instead would also let it kill the daemon when a
/// health-check connection closes early. Any other panic keeps the default report.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// True while a process with this pid exists (on this host).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::time::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::time::rfc3339(1_795_593_600), "2026-11-25T08:00:00Z");
        assert!(super::time::rfc3339(i64::MAX).starts_with("9999-12-30T"));
        assert!(super::time::rfc3339(i64::MIN).starts_with("-009999-01-02T"), "{}", super::time::rfc3339(i64::MIN));
        let now = super::time::now_rfc3339();
        assert_eq!(now.len(), "2026-11-25T08:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
    }

    #[test]
    fn sha256_standard_vectors() {
        use super::sha256::hex;
        assert_eq!(hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(hex(&million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("million");
        std::fs::write(&path, &million).unwrap();
        assert_eq!(
            super::sha256::file_hex(&path).unwrap(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }
}
