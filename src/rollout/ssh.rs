//! The `ssh` provider: releases on remote hosts, each switched by an atomic `current` link.
//!
//! Every host has, under its `path` (default `/srv/<project>`):
//! `releases/<UNIT_ID>/<version>/` (one directory per release, uploaded with rsync over the
//! same `ssh` options when this machine and the host both have it, else as a tar stream
//! through `ssh`, into a temporary directory, then renamed into place), `shared/` (the
//! `shared_dirs` and `shared_files` linked into every release, as Deployer's `shared`),
//! `current -> releases/<UNIT_ID>/<version>` (made under a temporary name with `ln -sfn` and
//! renamed over the old one with `mv -T`, which is atomic) and `.opsflow-lock/` (the host's
//! deploy lock, a directory made with `mkdir`, holding who took it and when).
//!
//! A deploy first reads every host's `current` (an unreachable host stops it before anything
//! changes), uploads the release to every host (a full disk on one host stops it before any
//! switch), then switches hosts stage by stage: `recreate` all at once, `rolling` a batch at a
//! time, `canary` the first host(s) first with an analysis after each step. Each stage is
//! restarted (`restart`) and health-checked on its hosts (`OPSFLOW_HOST` names the host); a
//! failure switches every host already switched back to what it ran before. The environment's
//! record notes what each host runs after every switch (`hosts`), so it says exactly which
//! hosts run what even when a host could not be switched back.
//!
//! Every remote step runs through [`crate::exec::ssh`], which runs the real `ssh` client
//! through the runner: timeout, run log, secrets masked, values as quoted environment
//! assignments only.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::analysis::Plan;
use super::deploy::{APPROVAL_STEP, CommandSpec, DeployReport, EnvConfig, Rollout, analyse, note_analysis};
use crate::environment::record::{HOST_NOTHING, HOST_UNKNOWN, Record, Status, host_label};
use crate::exec::checks::{CheckResult, CheckSpec, run_check};
use crate::exec::command::Runner;
use crate::exec::ssh::{self, Call, ClientOptions, Destination};

/// A host as the config gives it: `"user@host:port"`, or an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// How the record, messages and `OPSFLOW_HOST` name it (default: the address, with
    /// `:port` when a port is given).
    pub name: Option<String>,
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub roles: Vec<String>,
    pub restart: Option<CommandSpec>,
}

impl<'de> Deserialize<'de> for HostSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<HostSpec, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            name: Option<String>,
            host: String,
            #[serde(default)]
            user: Option<String>,
            #[serde(default)]
            port: Option<u16>,
            #[serde(default)]
            path: Option<String>,
            #[serde(default)]
            roles: Vec<String>,
            #[serde(default)]
            restart: Option<CommandSpec>,
        }
        match Value::deserialize(deserializer)? {
            Value::String(text) => parse_host(&text).map_err(serde::de::Error::custom),
            Value::Object(spec) => {
                let Full { name, host, user, port, path, roles, restart } =
                    serde_json::from_value(Value::Object(spec)).map_err(serde::de::Error::custom)?;
                Ok(HostSpec { name, host, user, port, path, roles, restart })
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a host as \"user@host:port\" or {{\"host\": ..., \"user\": ..., \"port\": ...}}, found {other}"
            ))),
        }
    }
}

/// `user@host:port`, `host:port`, `user@host`, `host`, or `[v6 address]:port`.
pub fn parse_host(text: &str) -> Result<HostSpec, String> {
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, text),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or_else(|| format!("host {text:?}: a `[` without its `]`"))?;
        match after.strip_prefix(':') {
            Some(port) => (address.to_owned(), Some(port)),
            None if after.is_empty() => (address.to_owned(), None),
            None => return Err(format!("host {text:?}: expected `:port` after `]`")),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        }
    };
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("host {text:?}: {p:?} is not a port")))
        .transpose()?;
    Ok(HostSpec { name: None, host, user, port, path: None, roles: Vec::new(), restart: None })
}

/// How the `ssh` client connects, as the config gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshOptions {
    /// The private key (`ssh -i`), relative to the workspace or absolute.
    #[serde(default)]
    pub identity_file: Option<String>,
    /// The known hosts file (`-o UserKnownHostsFile=`), relative to the workspace or
    /// absolute; default the user's. Host keys are always checked strictly.
    #[serde(default)]
    pub known_hosts_file: Option<String>,
    #[serde(default, deserialize_with = "crate::duration::duration_text::option::deserialize")]
    pub connect_timeout: Option<std::time::Duration>,
}

/// The strategies the `ssh` provider carries out.
pub const STRATEGIES: [&str; 3] = ["recreate", "rolling", "canary"];

/// Whether an `ssh` environment can be deployed as configured; the sentence says what to
/// change. Called when the config is loaded, so a mistake is a config error at its key.
pub fn check_config(env: &EnvConfig) -> Result<(), String> {
    let strategy = env.strategy();
    if strategy == "blue-green" {
        return Err("the `ssh` provider does not do blue-green (it would need a proxy to switch between two sets of hosts): use `rolling` or `canary`, or a `command` environment whose `switch` moves the proxy".to_owned());
    }
    if !STRATEGIES.contains(&strategy) {
        return Err(format!("the `ssh` provider supports {}, not `{strategy}`", STRATEGIES.join(", ")));
    }
    if env.hosts.is_empty() {
        return Err("`hosts` is empty: the `ssh` provider needs at least one host".to_owned());
    }
    let word = |what: &str, value: &str| -> Result<(), String> {
        if value.is_empty() || value.starts_with('-') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err(format!("{what} {value:?} cannot be empty, start with `-` or hold whitespace"))
        } else {
            Ok(())
        }
    };
    let mut names: Vec<String> = Vec::new();
    for spec in &env.hosts {
        word("host", &spec.host)?;
        if let Some(user) = &spec.user {
            word("user", user)?;
            if user.contains(':') || user.contains('@') {
                return Err(format!("user {user:?} cannot hold `:` or `@`"));
            }
        }
        let name = host_name(spec);
        word("host name", &name)?;
        if name.contains('/') {
            return Err(format!("host name {name:?} cannot hold `/`"));
        }
        if names.contains(&name) {
            return Err(format!("two hosts are named {name:?}: give each its own `name`"));
        }
        names.push(name);
        if let Some(path) = &spec.path {
            check_path(path)?;
        }
    }
    if let Some(path) = &env.path {
        check_path(path)?;
    }
    for entry in env.shared_dirs.iter().chain(&env.shared_files) {
        let bad = entry.is_empty()
            || entry.starts_with('/')
            || entry.split('/').any(|part| part == ".." || part == "." || part.is_empty())
            || entry.chars().any(char::is_control);
        if bad {
            return Err(format!(
                "shared entry {entry:?} must be a relative path inside the release, without `..`, `.` or empty parts"
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.chars().any(char::is_control) {
        return Err(format!("path {path:?} cannot be empty or hold control characters"));
    }
    Ok(())
}

/// The name of a host: its `name`, else its address (with `:port` when one is given).
pub fn host_name(spec: &HostSpec) -> String {
    match (&spec.name, spec.port) {
        (Some(name), _) => name.clone(),
        (None, Some(port)) => format!("{}:{port}", spec.host),
        (None, None) => spec.host.clone(),
    }
}

/// One host, resolved: its name, where to connect, its root on the host.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub destination: Destination,
    pub root: String,
    pub roles: Vec<String>,
    pub restart: Option<CommandSpec>,
}

/// The hosts of an `ssh` environment and how to reach them.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub options: ClientOptions,
    pub shared_dirs: Vec<String>,
    pub shared_files: Vec<String>,
}

impl Fleet {
    pub fn new(workspace: &Path, env: &EnvConfig) -> Fleet {
        let default_root = env.path.clone().unwrap_or_else(|| {
            format!("/srv/{}", if env.project.is_empty() { env.name.as_str() } else { env.project.as_str() })
        });
        let hosts = env
            .hosts
            .iter()
            .map(|spec| Host {
                name: host_name(spec),
                destination: Destination { user: spec.user.clone(), address: spec.host.clone(), port: spec.port },
                root: spec.path.clone().unwrap_or_else(|| default_root.clone()),
                roles: spec.roles.clone(),
                restart: spec.restart.clone().or_else(|| env.restart.clone()),
            })
            .collect();
        let options = ClientOptions {
            identity_file: env.ssh_options.identity_file.as_ref().map(|f| workspace.join(f)),
            known_hosts_file: env.ssh_options.known_hosts_file.as_ref().map(|f| workspace.join(f)),
            connect_timeout: env.ssh_options.connect_timeout,
        };
        Fleet { hosts, options, shared_dirs: env.shared_dirs.clone(), shared_files: env.shared_files.clone() }
    }

    pub fn names(&self, members: &[usize]) -> String {
        members.iter().map(|&i| self.hosts[i].name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The remote environment of a step on `host`: the run's `OPSFLOW_*` values (not the
    /// local paths), the host's name, address and root, and `extra`.
    fn vars(
        &self,
        runner: &Runner,
        host: &Host,
        vars: &[(String, String)],
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let local_only = ["OPSFLOW_WORKSPACE", "OPSFLOW_RELEASE_DIR", ssh::REMOTE_COMMAND_VAR];
        for (name, value) in runner.env.iter().chain(vars) {
            if name.starts_with("OPSFLOW_") && !local_only.contains(&name.as_str()) {
                out.retain(|(n, _)| n != name);
                out.push((name.clone(), value.clone()));
            }
        }
        out.push(("OPSFLOW_HOST".into(), host.name.clone()));
        out.push(("OPSFLOW_HOST_ADDRESS".into(), host.destination.address.clone()));
        out.push(("OPSFLOW_ROOT".into(), host.root.clone()));
        for (name, value) in extra {
            out.push(((*name).to_owned(), (*value).to_owned()));
        }
        out
    }

    /// Runs `script` on host `index`; `Ok` is its standard output, `Err` the reason in
    /// words naming the host.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        runner: &Runner,
        index: usize,
        step: &str,
        what: &str,
        script: &str,
        vars: &[(String, String)],
        extra: &[(&str, &str)],
        feed: Option<&str>,
    ) -> Result<String, String> {
        let host = &self.hosts[index];
        let remote = self.vars(runner, host, vars, extra);
        let step = format!("ssh-{step}-{}", host.name);
        let call = Call {
            step: &step,
            destination: &host.destination,
            script,
            vars: &remote,
            timeout: None,
            feed,
            local_vars: vars,
        };
        let (result, stdout) = ssh::run(runner, &self.options, &call);
        if result.success { Ok(stdout) } else { Err(ssh::explain(&host.name, what, &result, &self.options)) }
    }

    /// Where `current` points on host `index`, relative to its root; `None` without one.
    pub fn current(&self, runner: &Runner, index: usize, vars: &[(String, String)]) -> Result<Option<String>, String> {
        let out = self.call(runner, index, "read", "reading `current`", READ_CURRENT, vars, &[], None)?;
        let target = out.lines().next().unwrap_or_default().trim_end().to_owned();
        Ok((!target.is_empty()).then_some(target))
    }

    /// Uploads `release_dir` to `dir` (relative to the root) on host `index` and links the
    /// shared entries into it; nothing live changes. With rsync on this machine
    /// (`local_rsync`) and on the host (asked once, in the upload's first call), rsync sends
    /// it over the same `ssh` options as every call, hard linking what the live release
    /// already has; otherwise a tar stream goes through `ssh`. Either way it lands in a
    /// temporary directory that is renamed into place. `Ok` says which was used.
    pub fn upload(
        &self,
        runner: &Runner,
        index: usize,
        release_dir: &Path,
        dir: &str,
        vars: &[(String, String)],
        local_rsync: bool,
    ) -> Result<Transfer, String> {
        let host = &self.hosts[index];
        let run_id = runner
            .env
            .iter()
            .chain(vars)
            .rev()
            .find(|(name, _)| name == "OPSFLOW_RUN_ID")
            .map_or("upload", |(_, value)| value.as_str());
        let incoming = format!(".incoming-{}-{index}", crate::workspace::file_name_part(run_id));
        let mut local = vars.to_vec();
        local.push(("OPSFLOW_RELEASE_DIR".into(), release_dir.to_string_lossy().into_owned()));
        let shared_dirs = self.shared_dirs.join("\n");
        let shared_files = self.shared_files.join("\n");
        let mut transfer = Transfer::Tar;
        if local_rsync {
            let extra = [("OPSFLOW_INCOMING", incoming.as_str())];
            let out = self.call(runner, index, "prepare", "preparing the upload", PREPARE_RSYNC, vars, &extra, None)?;
            let mut lines = out.lines();
            if lines.next() == Some("rsync") {
                let live = lines.any(|l| l == "live");
                let mut rsync_vars = local.clone();
                rsync_vars.push((ssh::RSYNC_SSH_VAR.into(), self.options.rsync_shell(host.destination.port)));
                let path = format!("{}/{incoming}/", host.root.trim_end_matches('/'));
                rsync_vars.push((ssh::RSYNC_DEST_VAR.into(), ssh::rsync_destination(&host.destination, &path)));
                let step = format!("upload-rsync-{}", host.name);
                let result = runner.run(&step, &ssh::rsync_command(live), None, None, &rsync_vars);
                if !result.success {
                    let _ = self.call(runner, index, "clean", "cleaning up", CLEAN_INCOMING, vars, &extra, None);
                    return Err(ssh::explain(&host.name, "uploading the release with rsync", &result, &self.options));
                }
                transfer = Transfer::Rsync;
            }
        }
        let uploaded = if transfer == Transfer::Rsync { "1" } else { "" };
        let extra = [
            ("OPSFLOW_RELEASE", dir),
            ("OPSFLOW_INCOMING", incoming.as_str()),
            ("OPSFLOW_UPLOADED", uploaded),
            ("OPSFLOW_SHARED_DIRS", &shared_dirs),
            ("OPSFLOW_SHARED_FILES", &shared_files),
        ];
        let feed = (transfer == Transfer::Tar).then_some(TAR_FEED);
        self.call(runner, index, "upload", "uploading the release", UPLOAD, &local, &extra, feed)?;
        Ok(transfer)
    }

    /// Points `current` at `dir` on host `index` atomically, or removes it (`None`).
    pub fn switch(
        &self,
        runner: &Runner,
        index: usize,
        dir: Option<&str>,
        vars: &[(String, String)],
    ) -> Result<(), String> {
        match dir {
            Some(dir) => self
                .call(runner, index, "switch", "switching `current`", SWITCH, vars, &[("OPSFLOW_RELEASE", dir)], None)
                .map(|_| ()),
            None => self.call(runner, index, "take-down", "removing `current`", TAKE_DOWN, vars, &[], None).map(|_| ()),
        }
    }

    /// Runs the host's `restart` in its live release, when one is set.
    pub fn restart(&self, runner: &Runner, index: usize, vars: &[(String, String)]) -> Result<(), String> {
        let host = &self.hosts[index];
        let Some(restart) = &host.restart else { return Ok(()) };
        let script =
            format!("cd \"$OPSFLOW_ROOT/current\" 2>/dev/null || cd \"$OPSFLOW_ROOT\" || exit 1\n{}", restart.run);
        let remote = self.vars(runner, host, vars, &[]);
        let step = format!("ssh-restart-{}", host.name);
        let call = Call {
            step: &step,
            destination: &host.destination,
            script: &script,
            vars: &remote,
            timeout: restart.timeout,
            feed: None,
            local_vars: vars,
        };
        let (result, _) = ssh::run(runner, &self.options, &call);
        if result.success { Ok(()) } else { Err(ssh::explain(&host.name, "`restart`", &result, &self.options)) }
    }

    /// Removes release directories `dirs` on host `index`, never the one `current` names.
    pub fn prune(
        &self,
        runner: &Runner,
        index: usize,
        dirs: &[String],
        vars: &[(String, String)],
    ) -> Result<(), String> {
        let list = dirs.join("\n");
        self.call(runner, index, "prune", "removing old releases", PRUNE, vars, &[("OPSFLOW_PRUNE", &list)], None)
            .map(|_| ())
    }

    /// Runs `specs` on the hosts `members`: a command check on each host over ssh (in its
    /// live release, with `OPSFLOW_HOST`), an `http` check with `{host}` in its URL once per
    /// host, any other `http` check once. The first failure says which check on which host.
    pub fn checks(
        &self,
        runner: &Runner,
        members: &[usize],
        prefix: &str,
        specs: &[CheckSpec],
        vars: &[(String, String)],
    ) -> (Vec<CheckResult>, Option<String>) {
        let mut results = Vec::new();
        for spec in specs {
            match (&spec.command, &spec.http) {
                (Some(command), _) => {
                    for &i in members {
                        results.push(self.command_check(runner, i, prefix, spec, command, vars));
                    }
                }
                (None, Some(url)) if url.contains(HOST_PLACEHOLDER) => {
                    for &i in members {
                        let host = &self.hosts[i];
                        let mut spec = spec.clone();
                        spec.http = Some(url.replace(HOST_PLACEHOLDER, &host.destination.address));
                        let mut host_vars = vars.to_vec();
                        host_vars.push(("OPSFLOW_HOST".into(), host.name.clone()));
                        let mut result = run_check(runner, prefix, &spec, &runner.workspace, &host_vars);
                        result.name = format!("{} on {}", result.name, host.name);
                        results.push(result);
                    }
                }
                _ => results.push(run_check(runner, prefix, spec, &runner.workspace, vars)),
            }
        }
        let failure = results.iter().find(|r| !r.passed).map(|r| format!("{prefix} `{}` failed: {}", r.name, r.detail));
        (results, failure)
    }

    /// One command check on one host, with its retries.
    fn command_check(
        &self,
        runner: &Runner,
        index: usize,
        prefix: &str,
        spec: &CheckSpec,
        command: &str,
        vars: &[(String, String)],
    ) -> CheckResult {
        let host = &self.hosts[index];
        let started = std::time::Instant::now();
        let script = format!("cd \"$OPSFLOW_ROOT/current\" || exit 1\n{command}");
        let remote = self.vars(runner, host, vars, &[]);
        let step = format!("{prefix}-{}-{}", spec.name, host.name);
        let allowed = spec.retries.unwrap_or(0) + 1;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let call = Call {
                step: &step,
                destination: &host.destination,
                script: &script,
                vars: &remote,
                timeout: spec.timeout,
                feed: None,
                local_vars: vars,
            };
            let (result, _) = ssh::run(runner, &self.options, &call);
            if result.success || attempts >= allowed {
                let detail = if result.success {
                    result.summary()
                } else {
                    ssh::explain(&host.name, &format!("check `{}`", spec.name), &result, &self.options)
                };
                return CheckResult {
                    name: format!("{} on {}", spec.name, host.name),
                    kind: "command".to_owned(),
                    target: format!("{}: {}", host.name, runner.secrets.mask(command)),
                    passed: result.success,
                    attempts,
                    duration_ms: started.elapsed().as_millis() as u64,
                    detail,
                    log: result.log,
                };
            }
            std::thread::sleep(spec.interval.unwrap_or(crate::duration::defaults::CHECK_INTERVAL));
        }
    }
}

/// How a release was sent to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Rsync,
    Tar,
}

impl Transfer {
    pub fn name(self) -> &'static str {
        match self {
            Transfer::Rsync => "rsync",
            Transfer::Tar => "tar",
        }
    }
}

/// The placeholder of a host's address in an `http` check's URL.
pub const HOST_PLACEHOLDER: &str = "{host}";

/// Prints where `current` points, relative to the root, or nothing.
const READ_CURRENT: &str = r#"readlink "$OPSFLOW_ROOT/current" 2>/dev/null || true"#;

/// The local side of an upload: the release as a tar stream on standard output.
const TAR_FEED: &str = r#"tar -C "$OPSFLOW_RELEASE_DIR" -cf - ."#;

/// Whether the host has rsync (`command -v rsync`): if so, makes the upload's empty
/// temporary directory (`$OPSFLOW_INCOMING` under the root) and prints `rsync`, then `live`
/// when a live release is there to hard link from; else prints `tar` and changes nothing.
const PREPARE_RSYNC: &str = r#"root="$OPSFLOW_ROOT"
if command -v rsync >/dev/null 2>&1; then
  mkdir -p "$root/releases" "$root/shared" || exit 1
  rm -rf "$root/$OPSFLOW_INCOMING"
  mkdir "$root/$OPSFLOW_INCOMING" || exit 1
  echo rsync
  if [ -d "$root/current/" ]; then echo live; fi
else
  echo tar
fi
"#;

/// Removes an upload's temporary directory (after a failed rsync: a full disk gets its room
/// back).
const CLEAN_INCOMING: &str = r#"rm -rf "$OPSFLOW_ROOT/$OPSFLOW_INCOMING""#;

/// Unpacks the stream (or takes what rsync put there, `OPSFLOW_UPLOADED=1`) in a temporary
/// directory, links the shared entries, then renames it
/// into place (an earlier upload of the same release is moved aside first), so a half
/// uploaded release is never at its name.
const UPLOAD: &str = r#"set -e
root="$OPSFLOW_ROOT"
dir="$root/$OPSFLOW_RELEASE"
incoming="$root/$OPSFLOW_INCOMING"
mkdir -p "$root/releases" "$root/shared"
if [ "$OPSFLOW_UPLOADED" != 1 ]; then
  rm -rf "$incoming"
  mkdir -p "$incoming"
  if ! tar -C "$incoming" -xf -; then rm -rf "$incoming"; exit 1; fi
fi
test -d "$incoming" || { echo "$incoming is missing" >&2; exit 1; }
trap 'rm -rf "$incoming"' EXIT
printf '%s\n' "$OPSFLOW_SHARED_DIRS" | while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  mkdir -p "$root/shared/$entry"
  rm -rf "$incoming/$entry"
  mkdir -p "$(dirname "$incoming/$entry")"
  ln -s "$root/shared/$entry" "$incoming/$entry"
done
printf '%s\n' "$OPSFLOW_SHARED_FILES" | while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  mkdir -p "$(dirname "$root/shared/$entry")"
  [ -e "$root/shared/$entry" ] || { [ -f "$incoming/$entry" ] && cp "$incoming/$entry" "$root/shared/$entry" || : > "$root/shared/$entry"; }
  rm -rf "$incoming/$entry"
  mkdir -p "$(dirname "$incoming/$entry")"
  ln -s "$root/shared/$entry" "$incoming/$entry"
done
mkdir -p "$(dirname "$dir")"
if [ -e "$dir" ]; then
  mv "$dir" "$incoming.old"
  mv "$incoming" "$dir"
  rm -rf "$incoming.old"
else
  mv "$incoming" "$dir"
fi
"#;

/// Points `current` at the release: a new link under a temporary name, renamed over the
/// old one (`mv -T`, one `rename(2)`), so a reader sees the old release or the new one.
const SWITCH: &str = r#"set -e
cd "$OPSFLOW_ROOT"
test -d "$OPSFLOW_RELEASE" || { echo "$OPSFLOW_ROOT/$OPSFLOW_RELEASE is not on this host" >&2; exit 1; }
link=".current-$OPSFLOW_RUN_ID-$$"
ln -sfn "$OPSFLOW_RELEASE" "$link"
mv -T "$link" current
"#;

const TAKE_DOWN: &str = r#"rm -f "$OPSFLOW_ROOT/current""#;

/// Removes the listed release directories, each only when it is under `releases/` and is
/// not what `current` names.
const PRUNE: &str = r#"set -e
cd "$OPSFLOW_ROOT"
live="$(readlink current 2>/dev/null || true)"
printf '%s\n' "$OPSFLOW_PRUNE" | while IFS= read -r dir; do
  case "$dir" in releases/*) ;; *) continue ;; esac
  case "$dir" in *..*) continue ;; esac
  [ "$dir" = "$live" ] && continue
  rm -rf "$dir"
done
"#;

/// The stages of a deploy over `hosts`: each a label and the hosts switched in it.
/// `recreate`: all hosts at once; `rolling`: `batches` batches (default one host at a time);
/// `canary`: hosts with the role `canary` first (else the first host), then by
/// `canary_steps` as shares of the hosts (`[10, 50, 100]` over 4 hosts: 1, 2, 4), each step
/// analysed before the next.
pub fn stages(strategy: &str, hosts: &[Host], batches: Option<u32>, canary_steps: &[u32]) -> Vec<(String, Vec<usize>)> {
    let n = hosts.len();
    if n == 0 {
        return Vec::new();
    }
    match strategy {
        "rolling" => {
            let batches = (batches.unwrap_or(n as u32).max(1) as usize).min(n);
            let size = n.div_ceil(batches);
            let chunks: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(size).map(<[usize]>::to_vec).collect();
            let count = chunks.len();
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, members)| (format!("batch {} of {count}", i + 1), members))
                .collect()
        }
        "canary" => {
            let mut order: Vec<usize> = (0..n).filter(|&i| hosts[i].roles.iter().any(|r| r == "canary")).collect();
            let canaries = order.len();
            order.extend((0..n).filter(|&i| !hosts[i].roles.iter().any(|r| r == "canary")));
            let mut counts: Vec<(usize, Option<u32>)> = Vec::new();
            if canary_steps.is_empty() {
                counts.push((canaries.max(1), None));
            } else {
                for &weight in canary_steps {
                    let count = ((weight as usize * n).div_ceil(100)).clamp(1, n).max(canaries.min(n));
                    if counts.last().is_none_or(|(last, _)| count > *last) {
                        counts.push((count, Some(weight)));
                    }
                }
            }
            if counts.last().is_none_or(|(last, _)| *last < n) {
                counts.push((n, None));
            }
            let steps = counts.len();
            let mut from = 0;
            counts
                .into_iter()
                .enumerate()
                .map(|(i, (count, weight))| {
                    let members = order[from..count].to_vec();
                    from = count;
                    let share = weight
                        .map_or_else(|| format!("{count} of {n} hosts"), |w| format!("{w}%, {count} of {n} hosts"));
                    (format!("canary step {} of {steps} ({share})", i + 1), members)
                })
                .collect()
        }
        _ => vec![("all hosts".to_owned(), (0..n).collect())],
    }
}

/// What the record calls the release in `dir` (`UNIT@version`), `none` for no link, else
/// the directory itself (a link the record does not know).
fn label_of_dir(record: &Record, dir: &str) -> String {
    if dir.is_empty() {
        return HOST_NOTHING.to_owned();
    }
    record
        .deployments
        .iter()
        .rev()
        .find(|d| d.dir == dir)
        .map_or_else(|| dir.to_owned(), |d| host_label(&d.unit_id, &d.version))
}

/// Notes in the record what each of `hosts` runs now, on the record's `hosts` and on the
/// deployment of `run_id`. A failed write is named in `errors`.
pub fn note_hosts(
    ws: &crate::workspace::Workspace,
    env: &EnvConfig,
    run_id: Option<&str>,
    hosts: &[(String, String)],
    errors: &mut Vec<String>,
) {
    let result = env.change_record(ws, |record| {
        for (name, value) in hosts {
            record.hosts.insert(name.clone(), value.clone());
        }
        if let Some(d) = run_id.and_then(|run| record.deployments.iter_mut().rev().find(|d| d.run_id == run)) {
            for (name, value) in hosts {
                d.hosts.insert(name.clone(), value.clone());
            }
        }
    });
    if let Err(e) = result {
        tracing::error!("{e}");
        errors.push(e.to_string());
    }
}

/// Deploys to an `ssh` environment (the module's comment says how).
pub(super) fn deploy(rollout: &mut Rollout<'_>, record: &Record, release_dir: &Path, report: &mut DeployReport) {
    let env = rollout.env;
    let runner = rollout.runner;
    let ws = rollout.ws;
    let fleet = Fleet::new(&ws.root, env);
    let all: Vec<usize> = (0..fleet.hosts.len()).collect();
    if report.previous_version.is_none() {
        rollout.set_previous(report, record.newest_good());
    } else if let Some(previous) = &report.previous_version {
        rollout.vars.push(("OPSFLOW_PREVIOUS_VERSION".into(), previous.clone()));
    }
    let version = crate::release::Version::new(rollout.journal.version.clone()).bare().to_owned();
    let unit = rollout.journal.unit_id.clone();
    let dir = if unit.is_empty() { format!("releases/{version}") } else { format!("releases/{unit}/{version}") };
    let live_label = host_label(&unit, &rollout.journal.version);
    report.target = format!("{dir} on {}", fleet.names(&all));
    rollout.journal.slot = Some(dir.clone());
    let stages = stages(env.strategy(), &fleet.hosts, env.batches, &env.canary_steps);
    let staged = env.strategy() != "recreate";
    let fresh = rollout.journal.next_step == 0 && !rollout.journal.changed;
    let vars = rollout.vars.clone();
    let run_id = rollout.journal.run_id.clone();
    if fresh {
        // Where every host stands, before anything changes: an unreachable host stops here.
        let mut before = BTreeMap::new();
        for &i in &all {
            match fleet.current(runner, i, &vars) {
                Ok(current) => {
                    before.insert(fleet.hosts[i].name.clone(), current.unwrap_or_default());
                }
                Err(why) => return report.fail("connect", format!("{why}; nothing was changed on any host")),
            }
        }
        rollout.journal.hosts_before = before;
        rollout.save();
    }
    let pending: Vec<usize> =
        stages.iter().skip(rollout.journal.next_step).flat_map(|(_, members)| members.iter().copied()).collect();
    let local_rsync = ssh::local_rsync();
    let mut sent = Vec::new();
    for &i in &pending {
        match fleet.upload(runner, i, release_dir, &dir, &vars, local_rsync) {
            Ok(transfer) => sent.push(format!("{} ({})", fleet.hosts[i].name, transfer.name())),
            Err(why) => {
                let why = format!("{why}; the release was not switched in on any host it was not switched in before");
                if !fresh {
                    return give_up(rollout, report, &fleet, "upload", why);
                }
                return report.fail("upload", why);
            }
        }
    }
    report.note(format!("Artifacts uploaded to {dir} on {}", sent.join(", ")), "SUCCESS");
    if fresh {
        if let Err(e) = env.record_deploying(ws, &rollout.journal, &dir, &rollout.provenance) {
            return report.fail("record", format!("{e}; nothing was switched"));
        }
        let before: Vec<(String, String)> =
            rollout.journal.hosts_before.iter().map(|(name, dir)| (name.clone(), label_of_dir(record, dir))).collect();
        note_hosts(ws, env, Some(&run_id), &before, &mut report.record_errors);
        if let Err(why) = rollout.still_let_through() {
            let why = format!("{why}; nothing was switched");
            rollout.mark(report, Status::Bad, &why);
            return report.fail(APPROVAL_STEP, why);
        }
    }
    let mut switched: Vec<usize> =
        stages.iter().take(rollout.journal.next_step).flat_map(|(_, members)| members.iter().copied()).collect();
    for (index, (label, members)) in stages.iter().enumerate().skip(rollout.journal.next_step) {
        rollout.journal.changed = true;
        rollout.journal.switched = true;
        rollout.save();
        for &i in members {
            switched.push(i);
            let name = fleet.hosts[i].name.clone();
            if let Err(why) = fleet.switch(runner, i, Some(&dir), &vars) {
                note_hosts(ws, env, Some(&run_id), &[(name, HOST_UNKNOWN.to_owned())], &mut report.record_errors);
                return give_up(rollout, report, &fleet, "switch", format!("{label}: {why}"));
            }
            note_hosts(ws, env, Some(&run_id), &[(name, live_label.clone())], &mut report.record_errors);
            if let Err(why) = fleet.restart(runner, i, &vars) {
                return give_up(rollout, report, &fleet, "restart", format!("{label}: {why}"));
            }
        }
        report.note(format!("{label}: `current` switched to {dir} on {}", fleet.names(members)), "SUCCESS");
        let (health, failure) = fleet.checks(runner, members, "health", &env.health_checks, &vars);
        report.extend_health(health);
        if let Some(failure) = failure {
            return give_up(rollout, report, &fleet, "health", format!("{label}: {failure}"));
        }
        let weight = (100 * switched.len()).div_ceil(all.len()) as u32;
        rollout.journal.weight = weight;
        report.weight = weight;
        if staged {
            let plan = Plan::step(env.analysis.as_ref(), &ws.config.devops);
            let baseline = rollout.journal.baseline.clone().map(super::analysis::Baseline::new);
            // The analysis judges the hosts that run the new release; the others may run
            // nothing yet.
            let mut switched_env = env.clone();
            switched_env.hosts = switched.iter().map(|&i| env.hosts[i].clone()).collect();
            let judged = analyse(runner, &switched_env, &ws.config, baseline.as_ref(), &vars, plan, "analysis");
            note_analysis(rollout, report, label, index, &judged);
            match judged.verdict.as_str() {
                "passed" => {}
                "failed" => return give_up(rollout, report, &fleet, "analysis", format!("{label}: {}", judged.reason)),
                _ => {
                    report.paused = Some((label.clone(), judged.reason.clone()));
                    report.success = false;
                    return;
                }
            }
        } else {
            rollout.journal.next_step = index + 1;
            rollout.save();
        }
    }
    let (smoke, failure) = fleet.checks(runner, &all, "smoke", &env.smoke_tests, &vars);
    report.set_smoke(smoke);
    if let Some(failure) = failure {
        return give_up(rollout, report, &fleet, "smoke", failure);
    }
    rollout.mark(report, Status::Good, "");
    prune(rollout, &fleet, &dir, report);
}

/// Ends a failed `ssh` deploy: every host it was switched in on goes back to what it ran
/// before (restarted), the record says what each host runs, and the release is marked bad.
/// A host that cannot be switched back is named in the reason.
fn give_up(rollout: &mut Rollout<'_>, report: &mut DeployReport, fleet: &Fleet, step: &str, reason: String) {
    let mut reason = reason;
    if rollout.journal.changed {
        let runner = rollout.runner.detached();
        let record = rollout.env.history(rollout.ws).unwrap_or_default();
        let mut noted = Vec::new();
        let mut stuck = Vec::new();
        // The hosts restart on what they ran before, and are told so.
        let mut vars = rollout.vars.clone();
        if let Some(previous) = &rollout.journal.previous_version {
            vars.push(("OPSFLOW_VERSION".into(), previous.clone()));
            vars.push(("OPSFLOW_UNIT_ID".into(), rollout.journal.previous_unit.clone()));
        }
        for (i, host) in fleet.hosts.iter().enumerate() {
            let before = rollout.journal.hosts_before.get(&host.name).cloned().unwrap_or_default();
            let now = record.hosts.get(&host.name).cloned();
            let before_label = label_of_dir(&record, &before);
            // A host this rollout never switched still runs what it ran.
            if now.as_deref() == Some(before_label.as_str()) {
                continue;
            }
            let target = (!before.is_empty()).then_some(before.as_str());
            match fleet.switch(&runner, i, target, &vars).and_then(|()| fleet.restart(&runner, i, &vars)) {
                Ok(()) => noted.push((host.name.clone(), before_label)),
                Err(why) => {
                    stuck.push(format!("{} could not be switched back ({why})", host.name));
                    if now.is_none() {
                        noted.push((host.name.clone(), HOST_UNKNOWN.to_owned()));
                    }
                }
            }
        }
        let run_id = rollout.journal.run_id.clone();
        note_hosts(rollout.ws, rollout.env, Some(&run_id), &noted, &mut report.record_errors);
        if !noted.is_empty() {
            report.note(
                format!("Switched back on {}", noted.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")),
                "SUCCESS",
            );
        }
        report.restored_previous = stuck.is_empty() && report.previous_version.is_some();
        if !stuck.is_empty() {
            reason = format!("{reason}; {}", stuck.join("; "));
        }
    }
    // Marked bad once the hosts are back, with the hosts that could not be switched back.
    rollout.mark(report, Status::Bad, &reason);
    report.fail(step, reason);
}

/// Removes release directories beyond `keep_releases` on every host: never the live one
/// (`dir`) nor the one a rollback would restore. A host that cannot be pruned is a warning.
fn prune(rollout: &mut Rollout<'_>, fleet: &Fleet, dir: &str, report: &mut DeployReport) {
    let env = rollout.env;
    let keep = env.keep_releases.unwrap_or(super::deploy::DEFAULT_KEEP_RELEASES);
    let Ok(record) = env.history(rollout.ws) else { return };
    let target = record.restorable(Some(&rollout.journal.run_id), |_| true).first().map(|d| d.dir.clone());
    let mut protected = vec![dir];
    protected.extend(target.as_deref());
    let dirs = record.prunable(keep, &protected);
    if dirs.is_empty() {
        return;
    }
    let mut all_pruned = true;
    for i in 0..fleet.hosts.len() {
        if let Err(why) = fleet.prune(rollout.runner, i, &dirs, &rollout.vars) {
            tracing::warn!("cannot remove old releases of {}: {why}", env.name);
            all_pruned = false;
        }
    }
    if !all_pruned {
        return;
    }
    let result = env.change_record(rollout.ws, |record| {
        for d in record.deployments.iter_mut().filter(|d| dirs.contains(&d.dir)) {
            d.pruned = true;
        }
    });
    if let Err(e) = result {
        report.record_errors.push(e.to_string());
    }
    report.pruned = dirs;
}

/// Switches every host of an `ssh` environment to `dir` (a rollback's target; `None` takes
/// each host down), restarting each, and notes what each host runs on the record's `hosts`
/// and on the deployment of `undone_run`. `Err` names the hosts that could not be switched.
pub fn switch_all(
    ws: &crate::workspace::Workspace,
    runner: &Runner,
    env: &EnvConfig,
    target: Option<&crate::environment::record::Deployment>,
    undone_run: Option<&str>,
    vars: &[(String, String)],
    errors: &mut Vec<String>,
) -> Result<(), String> {
    let fleet = Fleet::new(&runner.workspace, env);
    let runner = runner.detached();
    // The hosts restart on the restored release, and are told which it is.
    let mut vars = vars.to_vec();
    if let Some(d) = target {
        vars.push(("OPSFLOW_VERSION".into(), d.version.clone()));
        vars.push(("OPSFLOW_UNIT_ID".into(), d.unit_id.clone()));
    }
    let vars = vars.as_slice();
    let target = target.map(|d| (d.dir.as_str(), host_label(&d.unit_id, &d.version)));
    let mut noted = Vec::new();
    let mut stuck = Vec::new();
    for (i, host) in fleet.hosts.iter().enumerate() {
        let dir = target.as_ref().map(|(dir, _)| *dir);
        match fleet.switch(&runner, i, dir, vars).and_then(|()| fleet.restart(&runner, i, vars)) {
            Ok(()) => noted.push((
                host.name.clone(),
                target.as_ref().map_or_else(|| HOST_NOTHING.to_owned(), |(_, label)| label.clone()),
            )),
            Err(why) => stuck.push(why),
        }
    }
    note_hosts(ws, env, undone_run, &noted, errors);
    if stuck.is_empty() { Ok(()) } else { Err(stuck.join("; ")) }
}

/// The health checks of what every host of `env` runs now (monitoring, a rollback's check).
pub fn live_health(
    runner: &Runner,
    env: &EnvConfig,
    prefix: &str,
    specs: &[CheckSpec],
    vars: &[(String, String)],
) -> (Vec<CheckResult>, Option<String>) {
    let fleet = Fleet::new(&runner.workspace, env);
    let all: Vec<usize> = (0..fleet.hosts.len()).collect();
    fleet.checks(runner, &all, prefix, specs, vars)
}

/// The deploy locks of every host of an `ssh` environment, released when dropped.
pub struct HostLocks {
    runner: Runner,
    fleet: Fleet,
    holder: String,
    /// The hosts whose lock this value holds.
    held: Vec<usize>,
    /// Locks taken over from a holder that died on this machine, each named.
    pub taken_over: Vec<String>,
}

/// A host's deploy lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum HostLockError {
    #[error("the deploy lock of {environment} on {host} ({path}) is held by {holder}")]
    Held { environment: String, host: String, path: String, holder: String },
    #[error("cannot take the deploy lock of {environment} on {host}: {why}")]
    Failed { environment: String, host: String, why: String },
}

/// Who holds a lock, as its `holder` file says: `pid=`, `host=`, `agent=`, `run=`, `task=`,
/// `since=` lines.
fn describe_holder(text: &str) -> String {
    let field = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::trim).unwrap_or("?").to_owned()
    };
    if text.trim().is_empty() {
        return "another runner (it has not written its name yet)".to_owned();
    }
    format!(
        "pid {} on host {}, agent {}, run {}, task {}, since {}",
        field("pid"),
        field("host"),
        field("agent"),
        field("run"),
        field("task"),
        field("since")
    )
}

fn this_machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned()
}

/// Whether a lock's holder is dead: it says it ran on this machine, and its process is gone.
/// A holder on another machine is never judged from here: a person removes its lock.
fn holder_is_dead(text: &str) -> bool {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::trim);
    let (Some(host), Some(pid)) = (field("host"), field("pid").and_then(|p| p.parse::<i32>().ok())) else {
        return false;
    };
    if host != this_machine() || pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let alive =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// Takes the lock directory on the host, or prints `held` and who holds it. With
/// `OPSFLOW_STALE` set to the holder text read before, a lock still holding exactly that text
/// is moved aside first (its holder died).
const LOCK: &str = r#"root="$OPSFLOW_ROOT"
lock="$root/.opsflow-lock"
mkdir -p "$root" || exit 1
if [ -n "$OPSFLOW_STALE" ] && [ "$(cat "$lock/holder" 2>/dev/null)" = "$OPSFLOW_STALE" ]; then
  mv "$lock" "$lock.stale-$OPSFLOW_RUN_ID-$$" && rm -rf "$lock.stale-$OPSFLOW_RUN_ID-$$"
fi
if mkdir "$lock" 2>/dev/null; then
  # A lock whose holder cannot be written (a full disk) would be nobody's: given back.
  if ! printf '%s\n' "$OPSFLOW_LOCK_HOLDER" > "$lock/holder"; then rm -rf "$lock"; exit 1; fi
  echo acquired
else
  echo held
  cat "$lock/holder" 2>/dev/null || true
fi
"#;

/// Removes the lock directory when it is still this holder's.
const UNLOCK: &str = r#"lock="$OPSFLOW_ROOT/.opsflow-lock"
if [ "$(cat "$lock/holder" 2>/dev/null)" = "$OPSFLOW_LOCK_HOLDER" ]; then rm -rf "$lock"; fi
"#;

/// Takes the deploy lock of every host of `env`, in order; on a held or unreachable host the
/// locks taken so far are released and the error names the host.
pub fn lock_hosts(
    runner: &Runner,
    env: &EnvConfig,
    holder: &super::deploy_lock::Holder,
) -> Result<HostLocks, HostLockError> {
    let fleet = Fleet::new(&runner.workspace, env);
    let text = format!(
        "pid={}\nhost={}\nagent={}\nrun={}\ntask={}\nsince={}",
        std::process::id(),
        this_machine(),
        holder.agent,
        holder.run_id,
        holder.task,
        crate::time::now_rfc3339()
    );
    let mut locks = HostLocks {
        runner: runner.detached(),
        fleet: fleet.clone(),
        holder: text.clone(),
        held: Vec::new(),
        taken_over: Vec::new(),
    };
    let vars = [("OPSFLOW_RUN_ID".to_owned(), holder.run_id.clone())];
    for (i, host) in fleet.hosts.iter().enumerate() {
        let mut stale = String::new();
        loop {
            let extra = [("OPSFLOW_LOCK_HOLDER", text.as_str()), ("OPSFLOW_STALE", stale.as_str())];
            let out = fleet
                .call(runner, i, "lock", "taking the deploy lock", LOCK, &vars, &extra, None)
                .map_err(|why| HostLockError::Failed { environment: env.name.clone(), host: host.name.clone(), why })?;
            let mut lines = out.lines();
            match lines.next() {
                Some("acquired") => {
                    locks.held.push(i);
                    if !stale.is_empty() {
                        locks.taken_over.push(format!("{}: {}", host.name, describe_holder(&stale)));
                    }
                    break;
                }
                _ => {
                    let found = lines.collect::<Vec<_>>().join("\n");
                    if stale.is_empty() && holder_is_dead(&found) {
                        tracing::warn!(
                            "taking over the deploy lock on {} left by {}",
                            host.name,
                            describe_holder(&found)
                        );
                        stale = found;
                        continue;
                    }
                    return Err(HostLockError::Held {
                        environment: env.name.clone(),
                        host: host.name.clone(),
                        path: format!("{}/.opsflow-lock", host.root),
                        holder: describe_holder(&found),
                    });
                }
            }
        }
    }
    Ok(locks)
}

impl Drop for HostLocks {
    fn drop(&mut self) {
        for &i in &self.held {
            let extra = [("OPSFLOW_LOCK_HOLDER", self.holder.as_str())];
            if let Err(why) =
                self.fleet.call(&self.runner, i, "unlock", "releasing the deploy lock", UNLOCK, &[], &extra, None)
            {
                tracing::warn!("{why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize, canary: &[usize]) -> Vec<Host> {
        (0..n)
            .map(|i| Host {
                name: format!("h{}", i + 1),
                destination: Destination { user: None, address: "127.0.0.1".into(), port: None },
                root: "/srv/x".into(),
                roles: if canary.contains(&i) { vec!["canary".into()] } else { vec![] },
                restart: None,
            })
            .collect()
    }

    #[test]
    fn a_host_is_read_from_user_at_host_colon_port_and_named_by_its_address() {
        let spec = parse_host("deploy@web-1.example.com:2222").unwrap();
        assert_eq!(
            (spec.user.as_deref(), spec.host.as_str(), spec.port),
            (Some("deploy"), "web-1.example.com", Some(2222))
        );
        assert_eq!(host_name(&spec), "web-1.example.com:2222");
        let bare = parse_host("web-2").unwrap();
        assert_eq!((bare.user, bare.host.as_str(), bare.port), (None, "web-2", None));
        let v6 = parse_host("root@[::1]:22").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(22)));
        assert!(parse_host("web:http").unwrap_err().contains("is not a port"));
        assert!(parse_host("web:0").is_err());
    }

    #[test]
    fn rolling_goes_a_batch_at_a_time_and_canary_starts_with_its_canaries() {
        let three = hosts(3, &[]);
        let batches = |b| stages("rolling", &three, b, &[]).into_iter().map(|(_, m)| m).collect::<Vec<_>>();
        assert_eq!(batches(None), [vec![0], vec![1], vec![2]]);
        assert_eq!(batches(Some(2)), [vec![0, 1], vec![2]]);
        assert_eq!(batches(Some(9)), [vec![0], vec![1], vec![2]]);
        assert_eq!(stages("recreate", &three, None, &[])[0].1, [0, 1, 2]);
        let four = hosts(4, &[2]);
        let canary = stages("canary", &four, None, &[10, 50, 100]);
        let members: Vec<Vec<usize>> = canary.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(members, [vec![2], vec![0], vec![1, 3]]);
        assert_eq!(canary[0].0, "canary step 1 of 3 (10%, 1 of 4 hosts)");
        let default: Vec<Vec<usize>> = stages("canary", &three, None, &[]).into_iter().map(|(_, m)| m).collect();
        assert_eq!(default, [vec![0], vec![1, 2]]);
    }

    #[test]
    fn a_lock_holder_is_described_and_judged_dead_only_on_this_machine() {
        let here =
            format!("pid=999999999\nhost={}\nagent=a\nrun=r1\ntask=T-1\nsince=2026-01-01T00:00:00Z", this_machine());
        assert!(holder_is_dead(&here));
        let elsewhere = here.replace(&format!("host={}", this_machine()), "host=some-other-machine");
        assert!(!holder_is_dead(&elsewhere));
        let alive = format!("pid={}\nhost={}", std::process::id(), this_machine());
        assert!(!holder_is_dead(&alive));
        assert_eq!(
            describe_holder(&elsewhere),
            "pid 999999999 on host some-other-machine, agent a, run r1, task T-1, since 2026-01-01T00:00:00Z"
        );
    }
}
