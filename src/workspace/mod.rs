//! The workspace: a directory (normally a repository root) and the config that names its files.
//!
//! [`Workspace`] resolves configured paths, reads inputs without following symlinks out of
//! the workspace, and carries the compiled [`Schemas`]. Everything that reads a workflow file
//! goes through here so that the same checks apply everywhere.

pub mod diagnostic;
pub mod read;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{self, Config};
use crate::schema::Schemas;
use diagnostic::{Diagnostic, Kind};

pub struct Workspace {
    /// The workspace directory, canonical.
    pub root: PathBuf,
    pub config: Config,
    /// The config file as shown to users.
    pub config_label: String,
    /// Problems with the config; when not empty, `config` holds the defaults.
    pub config_problems: Vec<Diagnostic>,
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
        let (mut config, config_problems) = Config::load(&config_path, &config_label, &bootstrap, required);
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
        Ok(Workspace { root, config, config_label, config_problems, schemas })
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

    /// Checks that `relative`, with symlinks resolved, is inside the workspace.
    pub fn inside(&self, relative: &str) -> Result<PathBuf, Diagnostic> {
        let path = self.root.join(relative);
        match fs::canonicalize(&path) {
            Ok(resolved) if resolved.starts_with(&self.root) => Ok(path),
            Ok(resolved) => Err(Diagnostic::new(
                relative,
                Kind::OutsideWorkspace,
                format!(
                    "leads outside the workspace (to {}) through a symlink; opsflow does not follow it",
                    resolved.display()
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    Err(Diagnostic::new(relative, Kind::Io, "is a symlink to a file that does not exist"))
                } else {
                    Ok(path)
                }
            }
            Err(e) => Err(Diagnostic::new(relative, Kind::Io, format!("cannot resolve: {e}"))),
        }
    }
}

fn label_of(root: &Path, path: &Path) -> String {
    let shown = path.strip_prefix(root).unwrap_or(path);
    shown.to_string_lossy().replace('\\', "/")
}

/// A name from the config (an agent, an environment) made safe to use in a runtime file name:
/// anything but ASCII letters, digits, `-` and `_` becomes `_`.
pub fn file_name_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Checks a value from a workflow file (a unit id, a version) before it becomes part of a file
/// name: no separators, no `..`, no control characters.
pub fn check_path_component(value: &str) -> Result<(), String> {
    if value.is_empty() || value == "." {
        return Err(format!("`{value}` cannot be part of a file name"));
    }
    if value.contains("..") || value.contains(['/', '\\']) {
        return Err(format!("`{value}` would name a path outside its directory (contains `..`, `/` or `\\`)"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("{value:?} contains the control character U+{:04X}", c as u32));
    }
    Ok(())
}
