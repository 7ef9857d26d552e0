//! Rules of the code that matter, held by a test (as rust-analyzer's tidy does): workflow
//! files are read only through the workspace's defensive readers, and no write is dropped
//! with `let _ =`.

use std::path::Path;

/// Files that may open files directly, each with why: they read opsflow's own runtime files,
/// logs, git's temporary files or release contents, never a workflow file another hand wrote.
const DIRECT_READS: &[(&str, &str)] = &[
    ("src/workspace/read.rs", "the defensive readers themselves"),
    ("src/workspace/write.rs", "the write side compares what it displaced"),
    ("src/store/file.rs", "the store reads under its lock through read_bytes"),
    ("src/cmd/demo.rs", "the demo reads the sample it just copied"),
    ("src/cmd/init.rs", "init reads the .gitignore files it writes"),
    ("src/cmd/status.rs", "status reads opsflow's own audit log"),
    ("src/daemon/git_busy.rs", "git's index.lock"),
    ("src/engine/kept.rs", "opsflow's own kept outcomes in the runtime directory"),
    ("src/environment/freeze.rs", "environment locks and wait timer starts in the runtime directory"),
    ("src/environment/record.rs", "the environment's record in the runtime directory"),
    ("src/exec/command.rs", "run logs and process-group markers"),
    ("src/exec/http.rs", "a check's CA file from the config"),
    ("src/instance.rs", "the instance lock file"),
    ("src/notify/outbox.rs", "opsflow's own notification outbox in the runtime directory"),
    ("src/lib.rs", "the sha256 of release files"),
    ("src/merge/setup.rs", "git's .gitattributes"),
    ("src/nodes/build.rs", "a release's own SHA256SUMS and files"),
    ("src/rollout/deploy_lock.rs", "the deploy lock file"),
    ("src/rollout/journal.rs", "the rollout journal in the runtime directory"),
    ("src/rollout/local.rs", "release directories"),
    ("src/rollout/ssh.rs", "the machine's host name, for a host lock's holder"),
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn workflow_files_are_read_only_through_the_readers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        if DIRECT_READS.iter().any(|(allowed, _)| *allowed == relative) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests read the files they set up.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if ["fs::read_to_string(", "fs::read(", "File::open("].iter().any(|p| code.contains(p)) {
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "read through Workspace::read_text or workspace::read (or add the file to DIRECT_READS with why):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_write_of_a_record_is_dropped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    // Writes whose failure must reach a record of failures; removing a temporary file or
    // writing to a log line is not among them.
    let writes = ["write_atomic(", "write_file(", "run.write(", "keep_in_history(", ".save(", "write_all("];
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("let _ =") && writes.iter().any(|w| code.contains(w)) {
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "a write's error is dropped:\n{}", found.join("\n"));
}

/// Files that may create, write, rename or remove by path, each with why. Everything else goes
/// through `workspace::write` (or `workspace::beneath`), which acts through directory
/// descriptors resolved beneath the workspace root.
const DIRECT_WRITES: &[(&str, &str)] = &[
    ("src/workspace/write.rs", "the write helpers themselves"),
    ("src/workspace/beneath.rs", "the descriptor-relative primitives"),
    ("src/workspace/read.rs", "opens for reading only"),
    ("src/cmd/demo.rs", "the demo writes its sample into a directory it just made"),
    ("src/cmd/init.rs", "init creates the workspace directory it was given"),
    ("src/rollout/deploy_lock.rs", "probes an existing lock file without creating it"),
    ("src/cmd/tasks.rs", "probes an existing lock file without creating it"),
];

#[test]
fn writes_go_through_the_workspace_write_helpers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let direct = [
        "fs::write(",
        "fs::create_dir(",
        "fs::create_dir_all(",
        "fs::rename(",
        "fs::copy(",
        "fs::remove_file(",
        "fs::remove_dir(",
        "fs::remove_dir_all(",
        "fs::hard_link(",
        "File::create(",
        "OpenOptions::new(",
        "unix::fs::symlink(",
    ];
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        if DIRECT_WRITES.iter().any(|(allowed, _)| *allowed == relative) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests set up their own files.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            if direct.iter().any(|p| line.contains(p)) {
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "write through workspace::write, so a folder renamed meanwhile cannot send it outside (or add the file to DIRECT_WRITES with why):\n{}",
        found.join("\n")
    );
}

/// The code of `file` (under the crate root), comments left out, as (line number, code).
fn code_lines(root: &Path, file: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split("//").next().unwrap_or_default().to_owned()))
        .filter(|(_, code)| !code.trim().is_empty())
        .collect()
}

/// The config is read below the runner: `config.rs` names nothing of `rollout` or `exec`, which
/// read their own settings from it (an environment is read by `rollout::deploy::Environments`
/// when the workspace loads the config), and `duration.rs`, which every layer reads durations
/// with, names nothing of the crate but the diagnostics' `excerpt`.
#[test]
fn the_config_depends_on_neither_the_rollout_nor_the_runner() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = vec![root.join("src/config.rs")];
    if root.join("src/config").is_dir() {
        sources(&root.join("src/config"), &mut config);
    }
    let mut found = Vec::new();
    for file in config {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        for (n, code) in code_lines(root, &relative) {
            if ["rollout::", "exec::", "rollout,", "exec,", "rollout}", "exec}"].iter().any(|p| code.contains(p)) {
                found.push(format!("{relative}:{n}: {}", code.trim()));
            }
        }
    }
    for (n, code) in code_lines(root, "src/duration.rs") {
        if code.contains("crate::") && !code.contains("use crate::workspace::diagnostic::{QUOTE_WHOLE, excerpt};") {
            found.push(format!("src/duration.rs:{n}: {}", code.trim()));
        }
    }
    assert!(
        found.is_empty(),
        "the config and durations are read below the rollout and the runner (ARCHITECTURE.md, `config.rs`); move what needs them up:\n{}",
        found.join("\n")
    );
}
