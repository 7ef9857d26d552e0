//! Real OpenSSH servers on loopback for the `ssh` provider's tests: each an unprivileged-config
//! `sshd -D` on a free port of 127.0.0.1 with its own host key, its own root directory (the
//! host's `path`), the test's client key authorized, killed with every session it started
//! when dropped.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian and most distributions put the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long a server gets to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The client side of a test: a key pair and a known hosts file the servers are added to.
pub struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        let dir = tempfile::Builder::new().prefix("opsflow-ssh-client-").tempdir().unwrap();
        keygen(&dir.path().join("id_ed25519"));
        fs::write(dir.path().join("known_hosts"), "").unwrap();
        Client { dir }
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Trusts `key` (a public key line) for `port` on 127.0.0.1.
    pub fn trust(&self, port: u16, key: &str) {
        let mut text = fs::read_to_string(self.known_hosts()).unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        text.push_str(&format!("[127.0.0.1]:{port} {}\n", key.join(" ")));
        fs::write(self.known_hosts(), text).unwrap();
    }

    /// The `ssh_options` of an environment that reaches the servers with this client.
    pub fn options(&self) -> serde_json::Value {
        serde_json::json!({
            "identity_file": self.identity().display().to_string(),
            "known_hosts_file": self.known_hosts().display().to_string(),
            "connect_timeout": "5s",
        })
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "opsflow-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// One host: a running `sshd` and the directory that stands for the host's disk.
pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    /// The host's public key line.
    pub host_key: String,
    dir: tempfile::TempDir,
    /// Other directories the server uses, removed with it.
    keep: Vec<tempfile::TempDir>,
}

impl Sshd {
    /// Starts a server that lets `client` in as the current user; its key is added to the
    /// client's known hosts.
    pub fn start(client: &Client) -> Sshd {
        Sshd::start_with(client, client, "")
    }

    /// A server whose `PATH` has every command of `/usr/bin` and `/bin` but `rsync`: each
    /// session runs through a `ForceCommand` that sets it, as on a host where rsync is not
    /// installed.
    pub fn start_without_rsync(client: &Client) -> Sshd {
        let bin_dir = tempfile::Builder::new().prefix("opsflow-ssh-bin-").tempdir().unwrap();
        let bin = bin_dir.path();
        for dir in ["/usr/bin", "/bin"] {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                if name != "rsync" && !bin.join(&name).exists() {
                    let _ = std::os::unix::fs::symlink(entry.path(), bin.join(&name));
                }
            }
        }
        let config = format!("ForceCommand PATH={} exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n", bin.display());
        let mut sshd = Sshd::start_with(client, client, &config);
        sshd.keep.push(bin_dir);
        sshd
    }

    /// Starts a server whose key `client` trusts but which lets in only `authorized`'s key,
    /// with `extra` lines appended to its `sshd_config`.
    pub fn start_with(client: &Client, authorized: &Client, extra: &str) -> Sshd {
        let dir = tempfile::Builder::new().prefix("opsflow-ssh-host-").tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        fs::copy(authorized.identity().with_extension("pub"), dir.path().join("authorized_keys")).unwrap();
        fs::create_dir_all(dir.path().join("root")).unwrap();
        // sshd refuses to start as root without its privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let host_key = fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
                     PidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUseDNS no\nMaxStartups 100\nMaxSessions 100\n\
                     LogLevel ERROR\n{extra}",
                    dir = dir.path().display()
                ),
            )
            .unwrap();
            let log = fs::File::create(dir.path().join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("start sshd");
            if wait_for_banner(port, &mut child) {
                client.trust(port, &host_key);
                return Sshd { child: Some(child), port, host_key, dir, keep: Vec::new() };
            }
            // The port was taken by someone else between the probe and sshd's bind.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start: {}", fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default());
    }

    /// The host's disk: the directory its `path` names.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Where `current` points on this host, if it is there.
    pub fn current(&self) -> Option<String> {
        fs::read_link(self.root().join("current")).ok().map(|p| p.to_string_lossy().into_owned())
    }

    /// The host goes away: the server and every session it runs are killed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            for descendant in descendants(pid) {
                // SAFETY: kill(2) on processes this test started (the server's sessions).
                unsafe { libc::kill(descendant, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every process below `pid`, from `/proc`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the command's closing parenthesis: state, ppid, ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(child, _)| *child));
        i += 1;
    }
    found.remove(0);
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until the server on `port` greets with its `SSH-` banner; false when it exited.
fn wait_for_banner(port: u16, child: &mut Child) -> bool {
    let end = Instant::now() + START_DEADLINE;
    while Instant::now() < end {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut banner = [0u8; 4];
            if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The current user's name, as `ssh` logs in.
pub fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
