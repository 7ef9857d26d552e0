//! Running a script on another host through the OpenSSH client, as one step of the runner.
//!
//! There is no SSH library here: the real `ssh` binary is driven, so the user's agent, keys,
//! `~/.ssh/config` (jump hosts, ciphers) and host key checks apply as they do in a terminal.
//! Every call is `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes ...`: a host whose key
//! is unknown or changed is refused, never accepted, and no prompt can hang a deploy.
//!
//! A remote call goes through [`Runner::run`] like every local step (its own timeout, its
//! output streamed to the run log and masked), as the local command line
//! `ssh OPTIONS -- DESTINATION "$OPSFLOW_SSH_COMMAND"`, whose only variable part is the
//! environment variable. That variable holds the remote command line,
//! `env 'OPSFLOW_VERSION=1.0.0' ... sh -c 'SCRIPT'`, built by [`remote_command`]: values from
//! workflow files reach the remote shell only as quoted environment assignments, never as
//! code, and the script is text of opsflow's or of the config.

use std::path::PathBuf;
use std::time::Duration;

use super::command::{Runner, StepResult};

/// The environment variable of the local `ssh` command line that holds the remote command.
pub const REMOTE_COMMAND_VAR: &str = "OPSFLOW_SSH_COMMAND";

/// How long `ssh` waits for a host to answer before it gives up, when not configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `value` as one word of a POSIX shell: in single quotes, each `'` written as `'\''`. Every
/// byte but NUL means itself inside single quotes (newlines, `$`, backquotes, `\`), so the
/// shell reads back exactly `value`.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// Whether `word` is opsflow's own and means itself to a shell unquoted (letters, digits, `-`
/// and `=`): a path is always quoted.
fn plain_word(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '=')
}

/// `value` as one argument of rsync's own splitting of its `-e` command: in single quotes,
/// each `'` doubled (rsync knows no backslash escapes there).
pub fn rsync_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The command line a remote login shell runs: `env 'NAME=value' ... sh -c 'script'`. The
/// names are opsflow's (`OPSFLOW_*`, checked here); the values may be anything a workflow
/// file holds.
pub fn remote_command(vars: &[(String, String)], script: &str) -> String {
    let mut line = String::from("env");
    for (name, value) in vars {
        debug_assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "environment variable names are opsflow's own: {name:?}"
        );
        line.push(' ');
        line.push_str(&quote(&format!("{name}={value}")));
    }
    line.push_str(" sh -c ");
    line.push_str(&quote(script));
    line
}

/// Where to connect: `user@address -p port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub address: String,
    pub port: Option<u16>,
}

impl Destination {
    /// `user@address`, or the address alone.
    pub fn login(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.address),
            None => self.address.clone(),
        }
    }
}

/// The client's options, with paths already resolved against the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

impl ClientOptions {
    /// The `ssh` command line up to (without) the destination, one unquoted argument each:
    /// strict host key checking always, batch mode (no prompt), and the configured key, known
    /// hosts and port.
    pub fn ssh_args(&self, port: Option<u16>) -> Vec<String> {
        let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT).as_secs().max(1);
        let mut words: Vec<String> = vec![
            "ssh".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={timeout}"),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
        ];
        if let Some(file) = &self.known_hosts_file {
            words.push("-o".into());
            words.push(format!("UserKnownHostsFile={}", file.display()));
        }
        if let Some(identity) = &self.identity_file {
            words.push("-o".into());
            words.push("IdentitiesOnly=yes".into());
            words.push("-i".into());
            words.push(identity.display().to_string());
        }
        if let Some(port) = port {
            words.push("-p".into());
            words.push(port.to_string());
        }
        words
    }

    /// [`ClientOptions::ssh_args`] as words of a POSIX shell (a word that needs no quotes is
    /// left as it is).
    pub fn ssh_words(&self, port: Option<u16>) -> Vec<String> {
        self.ssh_args(port).into_iter().map(|w| if plain_word(&w) { w } else { quote(&w) }).collect()
    }

    /// The value of `rsync -e`: the same `ssh` command line as every other call (host keys,
    /// batch mode, key, known hosts, port, timeout), quoted the way rsync splits it (rsync
    /// reads `-e` itself, not through a shell: single quotes, a `'` inside written `''`).
    pub fn rsync_shell(&self, port: Option<u16>) -> String {
        self.ssh_args(port).iter().map(|w| rsync_quote(w)).collect::<Vec<_>>().join(" ")
    }

    /// The local command line that runs [`REMOTE_COMMAND_VAR`] on `destination`.
    pub fn command_line(&self, destination: &Destination) -> String {
        let mut words = self.ssh_words(destination.port);
        words.push("--".into());
        words.push(quote(&destination.login()));
        words.push(format!("\"${REMOTE_COMMAND_VAR}\""));
        words.join(" ")
    }
}

/// Where rsync writes on `destination`: `user@address:path` (an IPv6 address in brackets).
/// The path reaches the remote rsync through its protocol (`-s`), never a remote shell.
pub fn rsync_destination(destination: &Destination, path: &str) -> String {
    let address = if destination.address.contains(':') {
        format!("[{}]", destination.address)
    } else {
        destination.address.clone()
    };
    match &destination.user {
        Some(user) => format!("{user}@{address}:{path}"),
        None => format!("{address}:{path}"),
    }
}

/// The environment variable of an rsync upload's `-e` value ([`ClientOptions::rsync_shell`]).
pub const RSYNC_SSH_VAR: &str = "OPSFLOW_RSYNC_SSH";
/// The environment variable of an rsync upload's destination ([`rsync_destination`]).
pub const RSYNC_DEST_VAR: &str = "OPSFLOW_RSYNC_DEST";

/// The local command line of an rsync upload of `$OPSFLOW_RELEASE_DIR`: every variable part
/// is an environment variable, and `--` comes before the paths. With `link_dest`, files the
/// live release (`../current`, beside the upload's directory) already has unchanged are hard
/// linked from it instead of sent.
pub fn rsync_command(link_dest: bool) -> String {
    format!(
        "rsync -a -s {}-e \"${RSYNC_SSH_VAR}\" -- \"$OPSFLOW_RELEASE_DIR/\" \"${RSYNC_DEST_VAR}\"",
        if link_dest { "--link-dest=../current " } else { "" }
    )
}

/// Whether this machine has `rsync` (`command -v rsync`).
pub fn local_rsync() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v rsync"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One remote call: what runs, where, and what it gets.
pub struct Call<'a> {
    /// The step's name in the run log (`ssh-switch-h1`).
    pub step: &'a str,
    pub destination: &'a Destination,
    /// The script the remote `sh -c` runs.
    pub script: &'a str,
    /// The remote environment: values from workflow files go here, never into `script`.
    pub vars: &'a [(String, String)],
    pub timeout: Option<Duration>,
    /// A local command whose standard output is piped into the remote script's standard input
    /// (`tar -C "$OPSFLOW_RELEASE_DIR" -cf - .`); it sees `local_vars`.
    pub feed: Option<&'a str>,
    /// Variables of the local side (the feed's).
    pub local_vars: &'a [(String, String)],
}

/// Runs `call` through `runner`, keeping its standard output (for a script that answers).
pub fn run(runner: &Runner, options: &ClientOptions, call: &Call<'_>) -> (StepResult, String) {
    let ssh = options.command_line(call.destination);
    let command = match call.feed {
        Some(feed) => format!("{feed} | {ssh}"),
        None => ssh,
    };
    let mut vars = call.local_vars.to_vec();
    vars.push((REMOTE_COMMAND_VAR.to_owned(), remote_command(call.vars, call.script)));
    let (result, stdout) = runner.run_capturing_stdout(call.step, &command, None, call.timeout, &vars);
    (result, String::from_utf8_lossy(&stdout.bytes).into_owned())
}

/// Why a remote call failed, in words that name the host: its key refused, unreachable,
/// permission denied, its disk full, a timeout, or the script's own failure.
pub fn explain(host: &str, what: &str, result: &StepResult, options: &ClientOptions) -> String {
    let tail = &result.tail;
    let line = |needle: &str| tail.lines().find(|l| l.contains(needle)).map(str::trim).unwrap_or(needle).to_owned();
    let log = format!("log: {}", result.log);
    if result.timed_out {
        return format!("{what} on {host} timed out after {} ms ({log})", result.duration_ms);
    }
    if tail.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || tail.contains("Host key verification failed") {
        let file = options
            .known_hosts_file
            .as_ref()
            .map_or_else(|| "your known_hosts".to_owned(), |f| f.display().to_string());
        let changed = if tail.contains("HAS CHANGED") { "changed" } else { "is not known" };
        return format!(
            "the host key of {host} {changed}: it does not match {file}, so opsflow refused to connect and did nothing there; check the host's new key and update {file} ({log})"
        );
    }
    for needle in [
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Could not resolve hostname",
        "Network is unreachable",
        "closed by remote host",
        "Connection reset",
        "Broken pipe",
        "Connection closed",
        "Timeout, server",
    ] {
        if tail.contains(needle) && result.exit_code == Some(255) {
            return format!("{host} is unreachable while running {what}: {} ({log})", line(needle));
        }
    }
    if tail.contains("Permission denied") {
        return format!("permission denied on {host} while running {what}: {} ({log})", line("Permission denied"));
    }
    if tail.contains("No space left on device") {
        return format!("the disk of {host} is full: {what} failed: {} ({log})", line("No space left on device"));
    }
    if result.exit_code == Some(255) {
        let last = tail.lines().last().unwrap_or("ssh failed").trim();
        return format!("cannot reach {host} for {what}: {last} ({log})");
    }
    let last = tail.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim);
    match last {
        Some(last) => format!("{what} failed on {host}: {last} ({})", result.summary()),
        None => format!("{what} failed on {host}: {}", result.summary()),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// What `sh` reads back from a quoted word.
    fn shell_reads(word: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(format!("printf '%s' {word}")).output().unwrap();
        assert!(out.status.success(), "sh refused {word}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_quoted_word_is_read_back_exactly_whatever_it_holds() {
        for hostile in [
            "",
            "plain",
            "two words",
            "it's",
            "''",
            "'; rm -rf / #",
            "$(touch /tmp/opsflow-quote-pwned)",
            "`touch /tmp/opsflow-quote-pwned`",
            "${HOME}",
            "a\nb\n",
            "\\'\\",
            "\"double\" and 'single'",
            "tab\there",
            "ünïcode ✓",
            "-n",
            "*",
        ] {
            assert_eq!(shell_reads(&quote(hostile)), hostile, "{hostile:?}");
        }
        assert!(!std::path::Path::new("/tmp/opsflow-quote-pwned").exists());
    }

    #[test]
    fn a_remote_command_passes_values_as_environment_and_runs_only_its_script() {
        let vars = vec![
            ("OPSFLOW_UNIT_ID".to_owned(), "U-1'; touch /tmp/opsflow-remote-pwned; '".to_owned()),
            ("OPSFLOW_VERSION".to_owned(), "1.0.0 $(id)\nnext line".to_owned()),
        ];
        let line = remote_command(&vars, "printf '%s|%s' \"$OPSFLOW_UNIT_ID\" \"$OPSFLOW_VERSION\"");
        // The line is what a remote login shell parses.
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert!(out.status.success(), "{line}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "U-1'; touch /tmp/opsflow-remote-pwned; '|1.0.0 $(id)\nnext line"
        );
        assert!(!std::path::Path::new("/tmp/opsflow-remote-pwned").exists());
    }

    /// rsync splits its `-e` value itself: each argument arrives whole, whatever it holds.
    #[test]
    fn rsync_reads_back_every_argument_of_its_ssh_command_exactly() {
        if !local_rsync() {
            eprintln!("skipped: rsync is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let fake = dir.path().join("fake ssh");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done > '{}'\nexit 1\n", seen.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let hostile = ["it's", "two words", "$(touch pwned)", "\"dq\"", "back\\slash", "''"];
        let e = std::iter::once(fake.display().to_string())
            .chain(hostile.iter().map(|s| (*s).to_owned()))
            .map(|w| rsync_quote(&w))
            .collect::<Vec<_>>()
            .join(" ");
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        let _ = Command::new("rsync")
            .args(["-a", "-s", "-e", &e, "--"])
            .arg(format!("{}/", source.display()))
            .arg("host:dest/")
            .output()
            .unwrap();
        let args = std::fs::read_to_string(&seen).unwrap();
        let expected: String = hostile.iter().map(|h| format!("[{h}]\n")).collect();
        assert!(args.starts_with(&expected), "{args}");
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn an_rsync_destination_brackets_an_ipv6_address() {
        let d = Destination { user: Some("deploy".into()), address: "::1".into(), port: Some(22) };
        assert_eq!(rsync_destination(&d, "/srv/x/.incoming/"), "deploy@[::1]:/srv/x/.incoming/");
        let d = Destination { user: None, address: "web-1".into(), port: None };
        assert_eq!(rsync_destination(&d, "srv/"), "web-1:srv/");
    }

    #[test]
    fn the_ssh_command_line_checks_host_keys_and_never_prompts() {
        let options = ClientOptions {
            identity_file: Some("/keys/id ed25519".into()),
            known_hosts_file: Some("/keys/known_hosts".into()),
            connect_timeout: None,
        };
        let destination = Destination { user: Some("deploy".into()), address: "web-1".into(), port: Some(2222) };
        let line = options.command_line(&destination);
        assert!(line.starts_with("ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10"), "{line}");
        assert!(line.contains("-o 'UserKnownHostsFile=/keys/known_hosts'"), "{line}");
        assert!(line.contains("-i '/keys/id ed25519'"), "{line}");
        assert!(line.ends_with("-p 2222 -- 'deploy@web-1' \"$OPSFLOW_SSH_COMMAND\""), "{line}");
    }
}
