//! Who approved, as git proves it (`devops.approval_identity`, docs/reference.md).
//!
//! `approved_by` is free text: anyone who can write the file can type a name. With
//! `approval_identity: "git"` an approval counts only when the newest commit that touched the
//! approval file is authored by an approver (matched by email) and that commit's file is the
//! file as read, so an edit not yet committed never counts. `"git-signed"` also asks `git
//! verify-commit` whether the commit is signed by an SSH key of the allowed signers (the
//! approvers' `ssh_key`s, written to `<runtime>/allowed_signers`, or `devops.allowed_signers`),
//! and whether the key's principal is the author. `devops.prevent_self_approval` refuses an
//! approval by the author of the commit the release was built from (R07's `commit`). Each
//! refusal is a sentence saying whose commit it was, for the block reason and `status`.
//!
//! Nothing here writes, except the allowed-signers file opsflow derives from the config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ApprovalIdentity, Approver};
use crate::workspace::Workspace;

const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The author of a commit, as git recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub commit: String,
    pub name: String,
    pub email: String,
    pub subject: String,
}

impl Commit {
    /// `1a2b3c4 by alice <alice@example.com>`.
    pub fn label(&self) -> String {
        format!("commit {} by {} <{}>", short(&self.commit), self.name, self.email)
    }
}

/// The first 7 characters of a commit id.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

fn git(root: &Path, args: &[&str]) -> Option<crate::git::GitOutput> {
    crate::git::run(root, args, GIT_TIMEOUT).ok()
}

/// Parses lines of `%H%x00%an%x00%ae%x00%s`.
fn commits_of(text: &str) -> Vec<Commit> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('\0');
            Some(Commit {
                commit: parts.next()?.to_owned(),
                name: parts.next()?.to_owned(),
                email: parts.next()?.to_owned(),
                subject: parts.next().unwrap_or("").to_owned(),
            })
        })
        .filter(|c| !c.commit.is_empty())
        .collect()
}

const FORMAT: &str = "--format=%H%x00%an%x00%ae%x00%s";

/// The author of `commit`.
pub fn author_of(root: &Path, commit: &str) -> Option<Commit> {
    let out = git(root, &["log", "-1", FORMAT, commit, "--"]).filter(|o| o.success)?;
    commits_of(&out.stdout).into_iter().next()
}

/// The commits of `range` (`OLD..NEW`) that touched `file`, newest first.
pub fn commits_touching(root: &Path, range: &str, file: &str) -> Vec<Commit> {
    git(root, &["log", FORMAT, range, "--", file])
        .filter(|o| o.success)
        .map(|o| commits_of(&o.stdout))
        .unwrap_or_default()
}

/// The newest commit that touched `file` (relative to the workspace), when the file at HEAD
/// is the text read (`sha256` of it); else why the file's approval is not committed.
pub fn committed_by(root: &Path, file: &str, sha256: &str) -> Result<Commit, String> {
    let log = git(root, &["log", "-1", FORMAT, "HEAD", "--", file]).filter(|o| o.success);
    let Some(commit) = log.and_then(|o| commits_of(&o.stdout).into_iter().next()) else {
        return Err(format!("{file} is not committed: an approval counts once its approver commits it"));
    };
    let at_head = git(root, &["show", &format!("HEAD:./{file}")]).filter(|o| o.success);
    match at_head {
        Some(head) if crate::sha256::hex(head.stdout.as_bytes()) == sha256 => Ok(commit),
        _ => Err(format!(
            "{file} has an edit that is not committed (its last commit is {}): an approval counts once its approver commits it",
            commit.label()
        )),
    }
}

/// The approver whose email is the commit's author's.
pub fn approver_of<'a>(people: &'a [Approver], commit: &Commit) -> Option<&'a Approver> {
    people.iter().find(|a| a.email.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(commit.email.trim())))
}

/// The allowed-signers file `git verify-commit` checks against: `devops.allowed_signers`, or
/// one written into the runtime directory from the approvers' `ssh_key`s (rewritten only when
/// its text changes).
pub fn allowed_signers(ws: &Workspace) -> Result<PathBuf, String> {
    if let Some(file) = &ws.config.devops.allowed_signers {
        return ws.inside(file).map_err(|d| d.to_string());
    }
    let text: String = ws
        .config
        .devops
        .people
        .iter()
        .filter_map(|a| {
            Some(format!("{} namespaces=\"git\" {}\n", a.email.as_deref()?.trim(), a.ssh_key.as_deref()?.trim()))
        })
        .collect();
    let relative = format!("{}/allowed_signers", ws.config.paths.runtime.trim_end_matches('/'));
    let path = ws.inside(&relative).map_err(|d| d.to_string())?;
    if ws.read_text(&relative).ok().flatten().as_deref() != Some(text.as_str()) {
        if let Some(parent) = path.parent() {
            crate::workspace::write::create_dir_all(&ws.root, parent).map_err(|e| e.to_string())?;
        }
        crate::workspace::write::write_file(&ws.root, &path, text.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// Whether `commit` is signed by an allowed key whose principal is `email`: `Ok` with the
/// principal, else git's reason in words.
pub fn verify_signed(root: &Path, commit: &Commit, signers: &Path) -> Result<String, String> {
    let file = format!("gpg.ssh.allowedSignersFile={}", signers.display());
    let Some(out) = git(root, &["-c", "gpg.format=ssh", "-c", &file, "verify-commit", "-v", &commit.commit]) else {
        return Err(format!("git verify-commit could not run on {}", commit.label()));
    };
    let said = out.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
    if !out.success {
        let why = if out.stderr.contains("no signature") || !out.stderr.contains("signature") {
            "it is not signed".to_owned()
        } else {
            format!("its signature is not from an allowed key ({said})")
        };
        return Err(why);
    }
    // `Good "git" signature for alice@example.com with ED25519 key SHA256:...`
    let principal = out
        .stderr
        .lines()
        .find_map(|l| l.split("signature for ").nth(1))
        .and_then(|rest| rest.split(" with ").next())
        .unwrap_or("")
        .trim()
        .to_owned();
    if principal.eq_ignore_ascii_case(commit.email.trim()) {
        Ok(principal)
    } else {
        Err(format!("it is signed by the key of {principal}, not of its author {}", commit.email))
    }
}

/// What the identity rules say about an approval that the file itself says is given.
pub enum Verdict {
    /// It counts: the sentence says by whom, and proven how.
    Approved(String),
    /// It does not count yet: why.
    Refused(String),
}

/// Applies `devops.approval_identity` and `devops.prevent_self_approval` to the approval
/// `file` (its text's `sha256`) of the release built from `release_commit`, which names
/// `approved_by`.
pub fn confirm(ws: &Workspace, file: &str, sha256: &str, approved_by: &str, release_commit: Option<&str>) -> Verdict {
    let devops = &ws.config.devops;
    let identity = devops.approval_identity;
    let mut proven = None;
    if identity.by_git() {
        let commit = match committed_by(&ws.root, file, sha256) {
            Ok(commit) => commit,
            Err(why) => return Verdict::Refused(why),
        };
        let listed = devops.people.iter().map(Approver::label).collect::<Vec<_>>().join(", ");
        let Some(approver) = approver_of(&devops.people, &commit) else {
            return Verdict::Refused(format!(
                "{file} was made approving by {}, who is not one of devops.approvers ({listed})",
                commit.label()
            ));
        };
        if !approved_by.is_empty() && approved_by != approver.name {
            return Verdict::Refused(format!(
                "{file} says `approved_by: {approved_by}`, but its {} is {}'s",
                commit.label(),
                approver.name
            ));
        }
        let mut how = commit.label();
        if identity == ApprovalIdentity::GitSigned {
            let signers = match allowed_signers(ws) {
                Ok(path) => path,
                Err(why) => return Verdict::Refused(format!("cannot write the allowed signers file: {why}")),
            };
            if let Err(why) = verify_signed(&ws.root, &commit, &signers) {
                return Verdict::Refused(format!(
                    "{file} was made approving by {}, but {why}; with devops.approval_identity \"git-signed\" the commit must be signed by the approver's key",
                    commit.label()
                ));
            }
            how.push_str(", signed");
        }
        proven = Some((approver.clone(), commit, how));
    }
    if devops.prevent_self_approval {
        let Some(release_commit) = release_commit.filter(|c| !c.trim().is_empty()) else {
            return Verdict::Refused(format!(
                "{file}: devops.prevent_self_approval is on, but the release records no commit (R07-version-tag.md `commit`), so who authored it is unknown"
            ));
        };
        let Some(author) = author_of(&ws.root, release_commit) else {
            return Verdict::Refused(format!(
                "{file}: devops.prevent_self_approval is on, but git does not know the release's commit {}",
                short(release_commit)
            ));
        };
        let same = match &proven {
            Some((_, commit, _)) => commit.email.trim().eq_ignore_ascii_case(author.email.trim()),
            None => {
                let person = devops.people.iter().find(|a| a.name == approved_by);
                approved_by == author.name
                    || person.and_then(|p| p.email.as_deref()).is_some_and(|e| e.eq_ignore_ascii_case(&author.email))
            }
        };
        if same {
            let who = proven.as_ref().map(|(a, _, _)| a.name.clone()).unwrap_or_else(|| approved_by.to_owned());
            return Verdict::Refused(format!(
                "{file}: {who} authored the release's {} and may not approve it (devops.prevent_self_approval): another approver must",
                author.label()
            ));
        }
    }
    match proven {
        Some((approver, _, how)) => Verdict::Approved(format!("{file}: approved by {} ({how})", approver.name)),
        None => Verdict::Approved(String::new()),
    }
}
