//! Hostile workspaces: folders that are symlinks to elsewhere, configured paths that climb
//! out, releases that hold symlinks, secrets that span lines or hold backslashes, commands
//! that print one endless line, ids that outgrow the schema.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::engine::{CONFIG, edit_json, status_of};
use crate::util::{Workspace, task};

/// Every file and folder under `dir`, for proving that nothing was written there.
fn entries_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            out.push(entry.path().display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(entries_under(&entry.path()));
            }
        }
    }
    out
}

// What broke: `Workspace::inside` resolved only the file, so with one of these folders a
// symlink to a directory outside the workspace, opsflow wrote its reports, its CI file, the
// environment's releases and even moved a release out of the workspace.
#[test]
fn a_symlinked_folder_that_leads_outside_is_never_written_through() {
    for folder in [
        "ARTIFACTS/system",
        "ARTIFACTS/devops-engineer",
        "docs/workflow/deployments",
        ".github/workflows",
        ".opsflow/envs/staging",
        "docs/workflow/artifacts/R06-release-artifacts",
        "docs/workflow/releases",
    ] {
        let outside = tempfile::tempdir().unwrap();
        let ws = Workspace::new().sample();
        let _ = fs::remove_dir_all(ws.join(folder));
        let ws = ws.symlink(folder, outside.path());
        let run = ws.run(&["run"]);
        assert!(matches!(run.code(), Some(1 | 2)), "{folder}: exit {:?}\n{}", run.code(), run.stderr());
        let said = format!("{}{}", run.stderr(), ws.read_string(crate::util::TASKS));
        assert!(said.contains(folder), "{folder}: the error names the folder\n{said}");
        assert!(said.contains("leads outside the workspace"), "{folder}: the error says why\n{said}");
        assert_eq!(entries_under(outside.path()), Vec::<String>::new(), "{folder}: written outside the workspace");
    }
}

#[test]
fn configured_paths_that_climb_out_fail_validate() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["ci"]["output"] = json!("../../../../tmp/x");
        c["environments"]["staging"]["path"] = json!("/srv/staging");
    });
    let run = ws.run(&["validate"]);
    run.status(2);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(out.contains("`ci.output` `../../../../tmp/x` climbs out of the workspace with `..`"), "{out}");
    assert!(out.contains("`environments.staging.path` `/srv/staging` is absolute"), "{out}");
    // Commands that act refuse to run on it.
    let run = ws.run(&["run"]);
    run.status(2);
    assert!(run.stderr().contains("`ci.output`"), "{}", run.stderr());
}

// What broke: a symlink in the build's output was followed into SHA256SUMS (the hash of
// /etc/passwd), copied into R06 and deployed.
#[test]
fn a_release_that_holds_a_symlink_is_refused() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["release"]["build"] = json!("mkdir -p dist && cp -R app/. dist/ && ln -s /etc/passwd dist/passwd.txt");
    });
    let run = ws.run(&["run"]);
    run.status(1);
    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "failed", "{build}");
    let summary = build["outcome"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("dist/passwd.txt is a symlink (to /etc/passwd)"), "{build}");
    assert!(!ws.join("docs/workflow/artifacts/R06-release-artifacts/1.0.0").exists());
    assert!(!ws.join(".opsflow/envs/staging/current").exists(), "nothing was deployed");
    assert_ne!(status_of(&ws, "DEVOPS-006"), "deployed");
}

const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu\nictGeurT8jNbvJZHtCSuYEvuNMoSfm76oqFvAp8Gy0iz5sxjZmSn\n-----END PRIVATE KEY-----\n";
const PASSWORD: &str = r"pa\ss\word-42";

/// Every file opsflow may have written (everything but the config a human wrote, which holds
/// the password literally in one health check), with the first secret form found in it.
fn leaks(ws: &Workspace, forms: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for path in entries_under(ws.path()) {
        let path = Path::new(&path);
        if !path.is_file() || path.ends_with(CONFIG) {
            continue;
        }
        let text = String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned();
        if let Some(form) = forms.iter().find(|form| text.contains(form.as_str())) {
            found.push((path.strip_prefix(ws.path()).unwrap().display().to_string(), form.clone()));
        }
    }
    found
}

// What broke: a PEM key in TLS_KEY appeared in clear in run logs (masked line by line, a
// multi-line value never matched), and a secret holding `\` reached markdown escaped as
// `\\` before it was masked, so it leaked in escaped form.
#[test]
fn multi_line_and_backslash_secrets_are_absent_from_every_file_written() {
    let ws = Workspace::new().sample();
    let check = json!({"name": "password-set", "command": format!("test \"$DB_PASSWORD\" = '{PASSWORD}'")});
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["staging"]["smoke_tests"].as_array_mut().unwrap().push(json!({
            "name": "echo-secrets",
            "command": "printf '%s\\n' \"$TLS_KEY\" \"$DB_PASSWORD\"; printf '%s\\n' \"$TLS_KEY\" >&2"
        }));
        c["environments"]["staging"]["health_checks"].as_array_mut().unwrap().push(check.clone());
        c["environments"]["production"]["health_checks"].as_array_mut().unwrap().push(check.clone());
    });
    let output = ws.command(&["run"]).env("TLS_KEY", PEM).env("DB_PASSWORD", PASSWORD).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed", "the deploy that echoes the secrets ran");
    let logs = entries_under(&ws.join(".opsflow/runs"));
    let echoed = logs.iter().find(|l| l.contains("echo-secrets")).expect("the echoing step has a log");
    let log = fs::read_to_string(echoed).unwrap();
    assert!(log.matches("***").count() >= 6, "the echoed lines are masked:\n{log}");
    let mut forms: Vec<String> = PEM.lines().filter(|l| l.len() > 30).map(str::to_owned).collect();
    forms.push(PASSWORD.to_owned());
    forms.push(PASSWORD.replace('\\', r"\\"));
    let found = leaks(&ws, &forms);
    assert!(found.is_empty(), "secrets in files opsflow wrote: {found:?}");
    assert!(!forms.iter().any(|f| stderr.contains(f.as_str())), "{stderr}");
}

// What broke: a command's output was read line by line into memory, so one 300 MB line
// without a newline drove the runner's memory to 872 MB. Under a data limit of 100 MB the
// runner now streams a 200 MB line to its log in bounded pieces and the run completes.
#[test]
fn a_200_mb_line_without_newline_is_logged_in_bounded_memory() {
    use std::io::BufRead;
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["release"]["build"] = json!("head -c 200000000 /dev/zero | tr '\\0' x; mkdir -p dist && cp -R app/. dist/");
    });
    let output = std::process::Command::new("prlimit")
        .arg("--data=100000000")
        .arg(crate::util::opsflow_bin())
        .arg("-C")
        .arg(ws.path())
        .arg("run")
        .env_remove("OPSFLOW_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "the run completes up to the approval\n{stderr}");
    assert_eq!(status_of(&ws, "DEVOPS-005"), "done");
    let log = task(&ws.tasks(), "DEVOPS-005")["outcome"]["steps"][0]["log"].as_str().map(str::to_owned);
    let log = log.unwrap_or_else(|| {
        entries_under(&ws.join(".opsflow/runs")).into_iter().find(|p| p.ends_with("build.log")).unwrap()
    });
    let mut reader = std::io::BufReader::new(fs::File::open(ws.join(&log)).unwrap());
    let (mut xs, mut longest, mut line) = (0usize, 0usize, Vec::new());
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        longest = longest.max(line.len());
        if line.iter().all(|b| matches!(b, b'x' | b'\n')) {
            xs += line.iter().filter(|b| **b == b'x').count();
        }
        line.clear();
    }
    assert_eq!(xs, 200_000_000, "every byte of the line is in the log");
    assert!(longest <= 64 * 1024 + 1, "the line was logged in pieces, the longest {longest} bytes");
}

/// The sample workspace with only `tasks` and no current node.
fn with_tasks(tasks: serde_json::Value) -> Workspace {
    let ws = Workspace::new().sample();
    ws.write(crate::util::TASKS, serde_json::to_string_pretty(&json!({ "tasks": tasks })).unwrap());
    edit_json(&ws, "docs/workflow/state.json", |state| state["current_nodes"] = json!([]));
    ws
}

// What broke: the fix task of a task whose id has 200 characters was `FIX-` + the id, 204
// characters, over the schema's limit, so tasks.json no longer validated.
#[test]
fn the_fix_task_of_a_task_with_a_200_character_id_keeps_tasks_json_valid() {
    let id = format!("DEVOPS-{}", "x".repeat(193));
    let ws = with_tasks(json!([
        {
            "id": "DEVOPS-001", "title": "Design the environments", "agent": "DevOps-Engineer",
            "type": "infrastructure_design", "status": "pending", "priority": "high", "unit_id": "UNIT-001"
        },
        {
            "id": id, "title": "Set up the dev environment", "agent": "DevOps-Engineer",
            "type": "infrastructure_dev_env", "status": "pending", "priority": "high", "unit_id": "UNIT-001",
            "depends_on": ["DEVOPS-001"]
        }
    ]));
    edit_json(&ws, CONFIG, |c| c["dev"]["setup"] = json!("echo broken >&2; exit 1"));
    ws.run(&["run"]).status(1);
    let tasks = ws.tasks();
    let fix = tasks.iter().find(|t| t["type"] == "bug_fix").expect("a fix task was filed");
    let fix_id = fix["id"].as_str().unwrap();
    assert_eq!(fix_id.chars().count(), 200, "{fix_id}");
    assert!(fix_id.starts_with(&format!("FIX-{}", &id[..150])), "{fix_id}");
    assert_eq!(fix["source_task"], json!(id));
    ws.run(&["validate"]).status(0);
    // The same id on the next pass: the fix task is not filed twice.
    ws.run(&["run"]).status(0);
    assert_eq!(ws.tasks().iter().filter(|t| t["type"] == "bug_fix").count(), 1);
}

// What broke: `human-requests.md` as a symlink out of the workspace made every escalation
// fail with only a log line, and `run` exited 0.
#[test]
fn a_human_requests_file_that_leads_outside_is_an_error_not_a_lost_escalation() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("requests.md");
    fs::write(&target, "# theirs\n").unwrap();
    let ws = Workspace::new().sample();
    fs::remove_file(ws.join("docs/workflow/human-requests.md")).ok();
    let ws = ws.symlink("docs/workflow/human-requests.md", &target);
    let run = ws.run(&["run"]);
    run.status(2);
    assert!(run.stderr().contains("docs/workflow/human-requests.md: leads outside the workspace"), "{}", run.stderr());
    assert_eq!(fs::read_to_string(&target).unwrap(), "# theirs\n");
    assert_eq!(status_of(&ws, "DEVOPS-001"), "pending", "nothing ran that could need a human");
}

// What broke: a first blue-green deploy killed with SIGKILL while its idle slot was health
// checked left `"status": "deploying"` in the environment's releases.json for ever.
#[test]
fn an_interrupted_first_blue_green_deploy_is_not_left_deploying() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["staging"]["strategy"] = json!("blue-green");
        c["environments"]["staging"]["health_checks"] =
            json!([{"name": "slow", "command": "echo $$ > \"$OPSFLOW_WORKSPACE/health.pid\"; exec sleep 30"}]);
    });
    let mut runner =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid_file = ws.join("health.pid");
    crate::util::wait_until(std::time::Duration::from_secs(60), "the staging health check to run", || {
        fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty())
    });
    runner.kill().unwrap();
    runner.wait().unwrap();
    let history = ".opsflow/envs/staging/releases.json";
    let statuses = |ws: &Workspace| -> Vec<String> {
        crate::engine::json_file(ws, history)["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(statuses(&ws), ["deploying"], "the kill came while the deploy was under way");
    let next = ws.run(&["run"]);
    assert!(next.stderr().contains("interrupted"), "{}", next.stderr());
    assert_eq!(statuses(&ws), ["bad"], "the next run's recovery settles the interrupted deploy");
    let sleeper: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    crate::util::wait_until(std::time::Duration::from_secs(60), "the health check's process to be ended", || {
        !opsflow::process_alive(sleeper)
    });
}

// What broke: files opsflow opens in place (the instance lock, whose holder line it writes,
// and the audit log it appends to) were opened through a planted symlink.
#[test]
fn runtime_files_opened_in_place_are_never_opened_through_a_symlink() {
    for file in [".opsflow/locks/instance-DevOps-Engineer.lock", ".opsflow/audit.jsonl"] {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("theirs.txt");
        fs::write(&target, "theirs\n").unwrap();
        let ws = Workspace::new().sample().symlink(file, &target);
        let _ = ws.run(&["run"]);
        assert_eq!(fs::read_to_string(&target).unwrap(), "theirs\n", "{file} was written through its symlink");
    }
}

/// A secret with characters that URL encoding, hex and base64 all change.
const TOKEN: &str = "tok/3n+Secret value!42";

/// The forms of [`TOKEN`] the commands below print, each without the characters that also
/// carry bits of what surrounds it (a base64 prefix shifts the alignment).
fn token_forms() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let inner = |text: String| text[4..text.len() - 4].to_owned();
    vec![
        b64(TOKEN).trim_end_matches('=').to_owned(),
        inner(b64(&format!("c:{TOKEN}"))),
        inner(b64(&format!("{TOKEN}\n"))),
        TOKEN.bytes().map(|b| format!("{b:02x}")).collect(),
        "tok%2F3n%2BSecret%20value%2142".to_owned(),
        "tok%2F3n%2BSecret+value%2142".to_owned(),
    ]
}

// What broke: a secret printed by a command as base64 (`printf %s "$T" | base64`, at any
// alignment), hex (`xxd -p`) or URL-encoded reached INFRA08, INFRA09 and the run logs in
// clear: only its raw and escaped forms were masked.
#[test]
fn a_secret_printed_as_base64_hex_or_url_encoded_is_masked_in_logs_and_artifacts() {
    let ws = Workspace::new().sample();
    let python = |quote: &str| {
        format!(
            "python3 -c 'import os, urllib.parse; print(urllib.parse.{quote}(os.environ[\"DEPLOY_TOKEN\"], safe=\"\"))'"
        )
    };
    edit_json(&ws, CONFIG, |c| {
        c["dev"]["tools"] = json!([
            {"name": "base64", "version": "printf %s \"$DEPLOY_TOKEN\" | base64"},
            {"name": "base64-shifted", "version": "printf 'c:%s' \"$DEPLOY_TOKEN\" | base64"},
            {"name": "base64-newline", "version": "echo \"$DEPLOY_TOKEN\" | base64"},
            {"name": "hex", "version": "printf %s \"$DEPLOY_TOKEN\" | xxd -p"},
            {"name": "url", "version": python("quote")},
        ]);
        c["dev"]["setup"] = json!(format!(
            "printf %s \"$DEPLOY_TOKEN\" | base64; printf 'c:%s' \"$DEPLOY_TOKEN\" | base64; {}",
            python("quote_plus")
        ));
    });
    let output = ws.command(&["run"]).env("DEPLOY_TOKEN", TOKEN).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let infra08 = ws.read_string("docs/workflow/artifacts/INFRA08-dev-env.md");
    for tool in ["base64", "base64-shifted", "base64-newline", "hex", "url"] {
        let row = infra08.lines().find(|l| l.starts_with(&format!("| {tool} | yes |"))).unwrap_or_else(|| {
            panic!("INFRA08 lists {tool} as found:\n{infra08}");
        });
        assert!(row.replace('\\', "").contains("***"), "{tool}'s version is masked: {row}");
    }
    let logs = entries_under(&ws.join(".opsflow/runs"));
    let setup = logs.iter().find(|l| l.contains("setup")).expect("the setup step has a log");
    let log = fs::read_to_string(setup).unwrap();
    assert!(log.matches("***").count() >= 3, "the setup's lines are masked:\n{log}");
    let forms = token_forms();
    let found = leaks(&ws, &forms);
    assert!(found.is_empty(), "secret forms in files opsflow wrote: {found:?}");
    assert!(!forms.iter().any(|f| stderr.contains(f.as_str())), "{stderr}");
}

// What broke: a secret of 1 to 3 characters was silently left unmasked (masking it would
// garble every log), so nobody learnt that it could appear in clear.
#[test]
fn a_secret_too_short_to_mask_is_named_in_one_warning() {
    let ws = Workspace::new().sample();
    let output = ws.command(&["run"]).env("DEPLOY_TOKEN", "abc").env("SHORT_PASSWORD", "x1").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for name in ["DEPLOY_TOKEN", "SHORT_PASSWORD"] {
        let warning = format!("the secret {name} is shorter than 4 characters and cannot be masked safely");
        assert_eq!(stderr.matches(&warning).count(), 1, "one warning names {name}:\n{stderr}");
    }
    assert!(!stderr.contains("abc"), "the warning names the secret, not its value:\n{stderr}");
}

// What broke: an identifier holding U+202E (right-to-left override) passed `safe_id` and
// went raw into directory names under releases/ and the environments, which then displayed
// in another order than they were stored.
#[test]
fn an_identifier_with_a_bidi_control_is_refused_naming_the_character() {
    let ws = Workspace::new().sample();
    edit_json(&ws, crate::util::TASKS, |t| {
        for task in t["tasks"].as_array_mut().unwrap() {
            if task.get("unit_id").is_some() {
                task["unit_id"] = json!("UNIT-\u{202E}100");
            }
        }
    });
    let validate = ws.run(&["validate"]);
    validate.status(2);
    let out = format!("{}{}", validate.stdout(), validate.stderr());
    let line = out.lines().find(|l| l.contains("/unit_id")).unwrap_or_else(|| panic!("no unit_id problem:\n{out}"));
    assert!(line.contains("U+202E") && line.contains("bidirectional control"), "{line}");
    assert!(line.contains(r"UNIT-\u{202E}100"), "the value is shown escaped: {line}");
    assert!(!out.contains('\u{202E}'), "the raw character reached the terminal:\n{out}");

    let run = ws.run(&["run"]);
    assert_eq!(run.code(), Some(2), "{}", run.stderr());
    let named: Vec<String> = entries_under(ws.path()).into_iter().filter(|p| p.contains('\u{202E}')).collect();
    assert!(named.is_empty(), "paths with U+202E: {named:?}");
}

/// Swaps the directory `dir` with a symlink to `outside` in a loop (`renameat2(RENAME_EXCHANGE)`),
/// as a hostile process on the machine could, until `stop`; leaves the directory in place.
fn swap_loop(
    dir: std::path::PathBuf,
    outside: &Path,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    let parent = dir.parent().unwrap().to_owned();
    let name = dir.file_name().unwrap().to_owned();
    let mut evil = name.clone();
    evil.push(".evil");
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(outside, parent.join(&evil)).unwrap();
    std::thread::spawn(move || {
        let fd = rustix::fs::open(&parent, rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if rustix::fs::renameat_with(&fd, &name, &fd, &evil, rustix::fs::RenameFlags::EXCHANGE).is_ok() {
                swaps += 1;
            }
            if swaps.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
        if !swaps.is_multiple_of(2) {
            rustix::fs::renameat_with(&fd, &name, &fd, &evil, rustix::fs::RenameFlags::EXCHANGE).unwrap();
            swaps += 1;
        }
        fs::remove_file(parent.join(&evil)).unwrap();
        swaps
    })
}

// What broke: with another process swapping a folder on opsflow's write path for a symlink to
// outside in a loop, R07 copies and temporary files landed under the history folder's target,
// run folders and build logs under `.opsflow/runs`'s, whole release copies under the
// artifacts folder's: the path was checked, then used by name.
#[test]
fn a_racing_rename_never_makes_a_write_land_outside_the_workspace() {
    use crate::life::{approve, life_workspace, new_release};
    use std::sync::atomic::{AtomicBool, Ordering};
    let ws = life_workspace();
    let folders = [
        ".opsflow/runs",
        "docs/workflow/releases/UNIT-001",
        "docs/workflow/artifacts/R06-release-artifacts/UNIT-001",
        "docs/workflow/deployments",
        ".opsflow/envs/staging/releases/UNIT-001",
    ];
    let outsides: Vec<tempfile::TempDir> = folders.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swappers: Vec<_> = folders
        .iter()
        .zip(&outsides)
        .map(|(folder, outside)| swap_loop(ws.join(folder), outside.path(), stop.clone()))
        .collect();
    // Releases of every kind of write: builds (copies, checksums, logs), reports and history
    // copies, staging deploys (release directories, links), approvals, records.
    let mut runs = 0;
    for n in 0..4 {
        let version = format!("1.{n}.0");
        new_release(&ws, "UNIT-001", &version, 0.1);
        for _ in 0..3 {
            // A run may fail (a write that met a swapped folder is refused); it never crashes.
            let run = ws.run(&["run"]);
            assert!(matches!(run.code(), Some(0..=3)), "exit {:?}\n{}", run.code(), run.stderr());
            runs += 1;
            for name in ws.list_dir(crate::life::ARTIFACTS) {
                let request = format!("{}/{name}", crate::life::ARTIFACTS);
                if name.starts_with("R12-prod-approval") && ws.read_string(&request).contains("status: \"pending\"") {
                    approve(&ws, &request);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps: Vec<u64> = swappers.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(swaps.iter().all(|n| *n > 10), "every swap loop ran: {swaps:?}");
    assert!(runs >= 12);
    for (folder, outside) in folders.iter().zip(&outsides) {
        assert_eq!(entries_under(outside.path()), Vec::<String>::new(), "written outside through `{folder}`");
    }
}
