//! The workspace: a directory (normally a repository root) and the config that names its files.
//!
//! [`Workspace`] resolves configured paths, reads inputs without following symlinks out of
//! the workspace, and carries the compiled [`Schemas`]. Everything that reads a workflow file
//! goes through here so that the same checks apply everywhere.

pub mod beneath;
pub mod diagnostic;
pub mod read;
pub mod write;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{self, Config};
use crate::rollout::deploy::{EnvConfig, EnvError, Environments};
use crate::schema::Schemas;
use diagnostic::{Diagnostic, Kind};
pub use write::WriteError;

pub struct Workspace {
    /// The workspace directory, canonical.
    pub root: PathBuf,
    pub config: Config,
    /// The config file as shown to users.
    pub config_label: String,
    /// Problems with the config; when not empty, `config` holds the defaults.
    pub config_problems: Vec<Diagnostic>,
    /// The config's environments, each read once with the config (none when it has problems).
    pub environments: Environments,
    pub schemas: Schemas,
}

impl Workspace {
    /// Opens the workspace at `dir` with its config (`config_file` overrides the default).
    pub fn open(dir: &Path, config_file: Option<&Path>, agent: Option<&str>) -> anyhow::Result<Workspace> {
        let root = fs::canonicalize(dir).with_context(|| format!("workspace directory {}", dir.display()))?;
        anyhow::ensure!(root.is_dir(), "workspace {} is not a directory", dir.display());
        let (config_path, required) = match config_file {
            Some(file) => (root.join(file), true),
            None => (root.join(config::DEFAULT_CONFIG_FILE), false),
        };
        let config_label = label_of(&root, &config_path);
        let default_paths = config::Paths::default();
        let bootstrap =
            Schemas::new(root.join(&default_paths.schemas), &default_paths.schemas, config::DEFAULT_MAX_FILE_BYTES);
        // The default config file is found, not chosen: like every input it may not lead out
        // of the workspace through a symlink. A `--config` the user names is read where it is.
        let (mut config, environments, mut config_problems) = match config_file {
            None => match inside(&root, &config_path, &config_label) {
                Ok(_) => load_config(&config_path, &config_label, &bootstrap, required),
                Err(problem) => (Config::default(), Environments::default(), vec![problem]),
            },
            Some(_) => load_config(&config_path, &config_label, &bootstrap, required),
        };
        if config_problems.is_empty() {
            config_problems = escaping_paths(&root, &config, &environments);
        }
        if let Some(agent) = agent
            && agent != config.agent.name
        {
            config.agent.name = agent.to_owned();
            config.agent.aliases.clear();
        }
        let schemas = if config.paths.schemas == default_paths.schemas
            && config.limits.max_file_bytes == config::DEFAULT_MAX_FILE_BYTES
        {
            bootstrap
        } else {
            Schemas::new(root.join(&config.paths.schemas), &config.paths.schemas, config.limits.max_file_bytes)
        };
        let mut ws = Workspace { root, config, config_label, config_problems, environments, schemas };
        ws.config.agent_nodes = crate::workflow::agent_owners(&ws);
        Ok(ws)
    }

    /// The environment `name` of the config, as read when the config loaded.
    pub fn environment(&self, name: &str) -> Result<&EnvConfig, EnvError> {
        self.environments.get(name)
    }

    /// The tag of a Task Master tasks file opsflow works in and the tag's default agent:
    /// `paths.tasks_tag`, else Task Master's current tag (`currentTag` of the `state.json` in
    /// the `.taskmaster/` folder that holds `tasks/tasks.json`), else `master`. Read afresh on
    /// every call, so a `task-master use-tag` is followed by the next pass. A `state.json`
    /// that cannot be read leaves the tag unknown, with the reason, which a tagged file then
    /// reports instead of working in a tag it guessed.
    pub fn task_selection(&self) -> crate::store::tasks::Selection {
        use crate::store::taskmaster::DEFAULT_TAG;
        let default_agent = self.config.taskmaster.default_agent.clone();
        if let Some(tag) = &self.config.paths.tasks_tag {
            return crate::store::tasks::Selection { tag: Ok(tag.clone()), default_agent };
        }
        let state = Path::new(&self.config.paths.tasks)
            .parent()
            .filter(|tasks_dir| tasks_dir.file_name() == Some("tasks".as_ref()))
            .and_then(Path::parent)
            .map(|folder| folder.join("state.json").to_string_lossy().replace('\\', "/"));
        let tag = match state.as_deref().map(|state| (state, self.read_text(state))) {
            None | Some((_, Ok(None))) => Ok(DEFAULT_TAG.to_owned()),
            Some((_, Err(diagnostic))) => Err(format!("Task Master's current tag cannot be read ({diagnostic})")),
            Some((state, Ok(Some(text)))) => match read::parse_json(state, &text) {
                Err(diagnostic) => Err(format!("Task Master's current tag cannot be read ({diagnostic})")),
                Ok(value) => match value.get("currentTag") {
                    None => Ok(DEFAULT_TAG.to_owned()),
                    Some(serde_json::Value::String(tag)) if !tag.is_empty() => Ok(tag.clone()),
                    Some(other) => Err(format!(
                        "Task Master's current tag cannot be read ({state}: `currentTag` must be a tag name, found {other})"
                    )),
                },
            },
        };
        crate::store::tasks::Selection { tag, default_agent }
    }

    /// The absolute path of a workspace-relative path.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// How `path` is shown to users: relative to the workspace, with `/`.
    pub fn label(&self, path: &Path) -> String {
        label_of(&self.root, path)
    }

    /// Reads a text input, refusing symlinks that lead outside the workspace. `Ok(None)`: missing.
    pub fn read_text(&self, relative: &str) -> Result<Option<String>, Diagnostic> {
        let path = self.inside(relative)?;
        read::read_text(&path, relative, self.config.limits.max_file_bytes)
    }

    /// [`Workspace::read_text`] for a file that another program may be rewriting in place:
    /// when the text fails `valid` and the file's size or modification time changed while it
    /// was read, or changes within [`SETTLE_QUIET`] after, it is read again once it has
    /// stopped changing (a few tries, a bounded wait), so a writer that truncates and
    /// rewrites is not taken for a broken file. A valid file is returned at once, an invalid
    /// one that stayed the same after [`SETTLE_QUIET`].
    pub fn read_text_settled(
        &self,
        relative: &str,
        valid: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, Diagnostic> {
        let path = self.inside(relative)?;
        let mut tries = 0;
        loop {
            let before = stamp(&path);
            let text = read::read_text(&path, relative, self.config.limits.max_file_bytes);
            if matches!(&text, Ok(Some(text)) if valid(text)) || matches!(&text, Ok(None)) {
                return text;
            }
            tries += 1;
            if tries >= SETTLE_TRIES {
                return text;
            }
            let after = stamp(&path);
            if after == before {
                // Unchanged during the read, but a writer between two of its writes changes
                // the file again within this time.
                std::thread::sleep(SETTLE_QUIET);
                if stamp(&path) == after {
                    return text;
                }
            }
            wait_until_stable(&path);
        }
    }

    /// Checks that `relative`, with every symlink on the way resolved, is inside the
    /// workspace: the file and each folder above it (see [`write::confine`]). Reads and
    /// writes both go through here.
    pub fn inside(&self, relative: &str) -> Result<PathBuf, Diagnostic> {
        inside(&self.root, Path::new(relative), relative)
    }

    /// Checks an absolute path (or one relative to the root) for writing, like [`Workspace::inside`].
    pub fn confine(&self, path: &Path) -> Result<PathBuf, WriteError> {
        write::confine(&self.root, path)
    }
}

/// The configured output paths (and each local environment's folder) that lead outside the workspace
/// through a symlink, as problems of the config: opsflow would refuse every read and write
/// there, and an escalation to `human-requests.md` would be lost, so nothing runs until a
/// human fixes the link.
/// Loads the config at `path` (`label` as shown to users): read into its types
/// (`Config::read`), then each environment read as a deployment reads it
/// (`Environments::read`). Returns the config, its environments and the problems found; with
/// problems, the defaults and no environment. The problems are masked (`exec::secrets`): a
/// secret given where another value belongs is not repeated into stderr, `validate --json` or
/// `/healthz`.
fn load_config(path: &Path, label: &str, schemas: &Schemas, required: bool) -> (Config, Environments, Vec<Diagnostic>) {
    let text = match read::read_text(path, label, config::DEFAULT_MAX_FILE_BYTES) {
        Ok(Some(text)) => text,
        Ok(None) if !required => return (Config::default(), Environments::default(), Vec::new()),
        Ok(None) => {
            let missing = Diagnostic::new(label, Kind::Io, "config file does not exist");
            return (Config::default(), Environments::default(), vec![missing]);
        }
        Err(diagnostic) => return (Config::default(), Environments::default(), vec![diagnostic]),
    };
    let mut problems = match Config::read(label, &text, schemas) {
        Ok((config, mut problems)) => {
            let environments = Environments::read(&config, &text, &mut problems);
            if problems.is_empty() {
                return (config, environments, problems);
            }
            problems
        }
        Err(problems) => problems,
    };
    // The config's own list of secret names, when it can be read at all.
    let named: Vec<String> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|value| value.get("secrets").cloned())
        .and_then(|names| serde_json::from_value(names).ok())
        .unwrap_or_default();
    let secrets = crate::exec::secrets::Secrets::from_env(&named);
    for problem in &mut problems {
        problem.message = secrets.mask(&problem.message);
    }
    (Config::default(), Environments::default(), problems)
}

fn escaping_paths(root: &Path, config: &Config, environments: &Environments) -> Vec<Diagnostic> {
    // Inputs (tasks, state, QA reports, schemas, templates) are reported when they are read;
    // these are the places opsflow only writes to.
    const WRITTEN: [&str; 7] =
        ["artifacts", "releases", "human_requests", "deployments", "deployment_report", "completion_signal", "runtime"];
    let mut paths: Vec<String> = config
        .paths
        .entries()
        .iter()
        .filter(|(key, _)| WRITTEN.contains(key))
        .map(|(_, path)| (*path).to_owned())
        .collect();
    paths.push(config.ci.output.clone());
    paths.extend(environments.iter().filter_map(EnvConfig::local_dir));
    let mut problems = Vec::new();
    for path in paths {
        match write::confine(root, Path::new(&path)) {
            Ok(_) | Err(WriteError::Resolve { .. }) => {}
            Err(e) => {
                let message = e.to_string();
                let message = message.strip_prefix(&format!("{path}: ")).unwrap_or(&message).to_owned();
                problems.push(Diagnostic::new(path, Kind::OutsideWorkspace, message));
            }
        }
    }
    problems
}

/// How many times [`Workspace::read_text_settled`] reads a file that keeps changing.
const SETTLE_TRIES: u32 = 4;
/// How long it waits at most for a file to stop changing before each new read.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a file must keep its size and modification time to count as settled.
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a decision file (an approval, an R17) must have kept its size and modification
/// time before a gate acts on it: editors that truncate a file and write it in chunks leave it
/// half written for up to a few hundred milliseconds.
pub const DECISION_QUIET: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a gate waits at most for a decision file to settle.
const DECISION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Workspace {
    /// Waits until the decision file `relative` has not changed for [`DECISION_QUIET`] (at
    /// most [`DECISION_WAIT`]). Returns whether it waited, so that the caller reads it again.
    pub fn settle_decision(&self, relative: &str) -> bool {
        let Ok(path) = self.inside(relative) else { return false };
        let deadline = std::time::Instant::now() + DECISION_WAIT;
        let mut waited = false;
        loop {
            let Ok(metadata) = fs::metadata(&path) else { return waited };
            let age = metadata.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or(DECISION_QUIET);
            if age >= DECISION_QUIET || std::time::Instant::now() >= deadline {
                return waited;
            }
            waited = true;
            std::thread::sleep((DECISION_QUIET - age).max(std::time::Duration::from_millis(20)));
        }
    }
}

/// A file's size and modification time, or nothing when it cannot be read.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let metadata = fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// Waits (at most [`SETTLE_WAIT`]) until the file's size and modification time have stayed
/// the same for [`SETTLE_QUIET`].
fn wait_until_stable(path: &Path) {
    let deadline = std::time::Instant::now() + SETTLE_WAIT;
    let mut last = stamp(path);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(SETTLE_QUIET);
        let now = stamp(path);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Checks that `path` (shown as `relative`), with every symlink on the way resolved, is inside
/// `root`, as a diagnostic.
fn inside(root: &Path, path: &Path, relative: &str) -> Result<PathBuf, Diagnostic> {
    write::confine(root, path).map_err(|e| {
        let kind = match e {
            WriteError::Resolve { .. } => Kind::Io,
            _ => Kind::OutsideWorkspace,
        };
        let message = e.to_string();
        let message = message.strip_prefix(&format!("{relative}: ")).unwrap_or(&message).to_owned();
        Diagnostic::new(relative, kind, message)
    })
}

fn label_of(root: &Path, path: &Path) -> String {
    let shown = path.strip_prefix(root).unwrap_or(path);
    shown.to_string_lossy().replace('\\', "/")
}

/// Whether a file name is an editor's dropping rather than a workflow file: a lock, swap,
/// backup, auto-save or temporary file an editor keeps beside the file being edited. Every
/// directory walk of workflow files and the daemon's watcher skip these, so a file open in an
/// editor neither fails `validate` nor wakes a reconcile. The list (docs/reference.md,
/// "Editor files"):
///
/// - Emacs: `.#NAME` (a lock, often a symlink to a name that does not exist), `#NAME#`
///   (auto-save), `NAME~` (backup, also Vim's and nano's);
/// - Vim: `.NAME.swp` and the further swap names `.NAME.swo` ... `.NAME.swa`, `.NAME.swx`, and
///   `4913` (the file Vim creates to test whether a directory is writable);
/// - JetBrains IDEs ("safe write"): `NAME___jb_tmp___` and `NAME___jb_old___`;
/// - VS Code (atomic writes of its settings and state, and of saves where enabled):
///   `NAME.vsctmp`;
/// - any tool's atomic write (an agent writing `tasks.json` to a temporary file it then
///   renames over it): a name that ends in `.tmp`, `-tmp`, `_tmp` or `.temp`, in any case. The
///   rename that follows is the change; the temporary file's own writes, which go on for as
///   long as a large file takes to write, must not start a reconcile that reads the file before
///   the rename.
pub fn editor_dropping(name: &str) -> bool {
    let vim_swap = || {
        name.starts_with('.')
            && name.len() > 4
            && name.rsplit_once('.').is_some_and(|(_, extension)| {
                let bytes = extension.as_bytes();
                bytes.len() == 3 && bytes.starts_with(b"sw") && (matches!(bytes[2], b'a'..=b'p') || bytes[2] == b'x')
            })
    };
    name.starts_with(".#")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name.ends_with('~')
        || name == "4913"
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name.ends_with(".vsctmp")
        || atomic_write_temporary(name)
        || vim_swap()
}

/// `NAME.tmp`, `.NAME.agent-tmp`, `NAME_tmp`, `NAME.TEMP`: see [`editor_dropping`].
fn atomic_write_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tmp", "-tmp", "_tmp", ".temp"].iter().any(|suffix| lower.len() > suffix.len() && lower.ends_with(suffix))
}

/// A name from the config (an agent, an environment) made safe to use in a runtime file name:
/// anything but ASCII letters, digits, `-` and `_` becomes `_`.
pub fn file_name_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// A value that cannot be part of a file name; each names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathComponentError {
    #[error("`{0}` cannot be part of a file name")]
    Empty(String),
    #[error("`{0}` would name a path outside its directory (contains `..`, `/` or `\\`)")]
    Escapes(String),
    #[error("{value:?} contains the control character U+{:04X}", *character as u32)]
    Control { value: String, character: char },
    /// `value` has its bidirectional controls escaped ([`escape_bidi`]).
    #[error(
        "`{value}` contains the bidirectional control character U+{:04X}, which makes a name display in another order than it is stored",
        *character as u32
    )]
    Bidi { value: String, character: char },
}

/// Checks a value from a workflow file (a unit id, a version) before it becomes part of a file
/// name: no separators, no `..`, no control characters, no bidirectional controls.
pub fn check_path_component(value: &str) -> Result<(), PathComponentError> {
    if value.is_empty() || value == "." {
        return Err(PathComponentError::Empty(value.to_owned()));
    }
    if value.contains("..") || value.contains(['/', '\\']) {
        return Err(PathComponentError::Escapes(value.to_owned()));
    }
    if let Some(character) = value.chars().find(|c| c.is_control()) {
        return Err(PathComponentError::Control { value: value.to_owned(), character });
    }
    if let Some(character) = value.chars().find(|&c| bidi_control(c)) {
        return Err(PathComponentError::Bidi { value: escape_bidi(value), character });
    }
    Ok(())
}

/// The Unicode bidirectional controls: embeddings and overrides (U+202A to U+202E), isolates
/// (U+2066 to U+2069), and the marks (U+200E, U+200F, U+061C). They are not control
/// characters to `char::is_control`, yet they make a name display in another order than it is
/// stored (`R12-\u{202E}dm.exe` shows as `R12-exe.md`), so identifiers may not hold them.
pub const BIDI_CONTROLS: [char; 12] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    '\u{200E}', '\u{200F}', '\u{061C}',
];

/// Whether `c` is one of the [`BIDI_CONTROLS`].
pub fn bidi_control(c: char) -> bool {
    BIDI_CONTROLS.contains(&c)
}

/// `text` with each bidirectional control written as `\u{XXXX}`, so a message that quotes it
/// shows it as it is stored, not reordered.
pub fn escape_bidi(text: &str) -> String {
    if !text.chars().any(bidi_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if bidi_control(c) { format!("\\u{{{:04X}}}", c as u32) } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_droppings_are_told_from_workflow_files() {
        for name in [
            ".#R12-prod-approval.md",
            "#R12-prod-approval.md#",
            "R12-prod-approval.md~",
            ".R12-prod-approval.md.swp",
            ".R12-prod-approval.md.swo",
            ".R12-prod-approval.md.swx",
            "4913",
            "R12-prod-approval.md___jb_tmp___",
            "R12-prod-approval.md___jb_old___",
            "tasks.json.vsctmp",
            ".tasks.json.tmp",
            ".tasks.json.agent-tmp",
            "tasks.json_tmp",
            "state.json.TMP",
            "R12-prod-approval.md.temp",
        ] {
            assert!(editor_dropping(name), "{name}");
        }
        for name in [
            "R12-prod-approval.md",
            "tasks.json",
            "QA-Report-U.md",
            "#",
            "swp",
            "R12.swp.md",
            "49130",
            ".swp",
            "notes.sw",
            "tmp",
            ".tmp",
            "R12-tmp-notes.md",
            "attempt.md",
            "contemp",
        ] {
            assert!(!editor_dropping(name), "{name}");
        }
    }

    /// A unit id with U+202E (right-to-left override) went raw into directory names, which
    /// then displayed in another order than they were stored.
    #[test]
    fn a_bidi_control_in_an_identifier_is_refused_and_named() {
        for c in BIDI_CONTROLS {
            let value = format!("UNIT-{c}1");
            let error = check_path_component(&value).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(&format!("U+{:04X}", c as u32)), "{message}");
            assert!(!message.contains(c), "the message shows the character escaped: {message}");
        }
        assert_eq!(
            check_path_component("R12-\u{202E}dm.exe").unwrap_err().to_string(),
            "`R12-\\u{202E}dm.exe` contains the bidirectional control character U+202E, which makes a name display in \
             another order than it is stored"
        );
        assert!(check_path_component("UNIT-é-日本").is_ok());
    }
}
