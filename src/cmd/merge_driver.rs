//! `opsflow merge-driver BASE OURS THEIRS [PATH]`: the git merge driver (docs/merge-driver.md).
//!
//! Git runs it as `opsflow merge-driver %O %A %B %P` and expects the result in the OURS file:
//! exit 0 for a clean merge, 1 when conflicts remain (each listed on stderr, OURS kept for
//! each, the file still valid JSON), 2 when an input cannot be merged at all (OURS is then
//! left exactly as it was). It needs no workspace: git may run it from any directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Exit;
use crate::merge::{self, FileKind, MergeError, Side};
use crate::schema::{SchemaName, Schemas};
use crate::store::file;
use crate::workspace::read;

/// Larger inputs than this are refused rather than read into memory.
const MAX_INPUT_BYTES: u64 = 1 << 30;

pub fn run(base: &Path, ours: &Path, theirs: &Path, path: Option<&Path>) -> anyhow::Result<Exit> {
    let label = path.map_or_else(|| ours.display().to_string(), |p| p.display().to_string());
    let read = |file: &Path, side: Side| -> Result<String, MergeError> {
        let shown = format!("{label} ({side}: {})", file.display());
        let unreadable = |d| MergeError::Unreadable(Box::new(d));
        match read::read_bytes(file, &shown, MAX_INPUT_BYTES) {
            Ok(Some(bytes)) => read::check_text(&shown, bytes).map_err(unreadable),
            Ok(None) if side == Side::Base => Ok(String::new()),
            Ok(None) => Err(MergeError::Missing { label: label.clone(), side, file: file.to_owned() }),
            Err(d) => Err(unreadable(d)),
        }
    };
    let texts = [(base, Side::Base), (ours, Side::Ours), (theirs, Side::Theirs)].map(|(file, side)| read(file, side));
    let [base_text, ours_text, theirs_text] = match texts {
        [Ok(b), Ok(o), Ok(t)] => [b, o, t],
        failed => {
            for problem in failed.into_iter().filter_map(Result::err) {
                eprintln!("opsflow merge-driver: {problem}");
            }
            return Ok(Exit::Invalid);
        }
    };
    let kind = path
        .and_then(|p| FileKind::from_path(&p.to_string_lossy()))
        .or_else(|| FileKind::detect(&ours_text))
        .or_else(|| FileKind::detect(&theirs_text))
        .or_else(|| FileKind::detect(&base_text));
    let Some(kind) = kind else {
        eprintln!(
            "opsflow merge-driver: {label}: neither a task list (an array, or an object with `tasks`) nor a state file (an object with `nodes`); nothing was merged"
        );
        return Ok(Exit::Invalid);
    };
    let merged = match merge::merge(kind, &base_text, &ours_text, &theirs_text) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("opsflow merge-driver: {label}: {error}; nothing was merged, the file is left as ours");
            return Ok(Exit::Invalid);
        }
    };
    if let Some(text) = &merged.text {
        // A failed write is a failure (exit 1), whatever context it carries.
        // `%A` is a file of the work tree git runs the driver in.
        let top = std::env::current_dir().and_then(std::fs::canonicalize)?;
        file::write_atomic(&top, ours, text.as_bytes()).map_err(|e| anyhow::Error::new(e).context(label.clone()))?;
    }
    let invalid = merged
        .text
        .as_deref()
        .map(|text| introduced_problems(kind, &label, [&ours_text, &theirs_text, text], &merged.touched));
    let invalid = invalid.unwrap_or_default();
    if merged.conflicts.is_empty() && invalid.is_empty() {
        return Ok(Exit::Ok);
    }
    if !invalid.is_empty() {
        eprintln!("opsflow merge-driver: {label}: the merged file does not validate; fix these before committing it:");
        for problem in &invalid {
            eprintln!("{problem}");
        }
    }
    if merged.conflicts.is_empty() {
        return Ok(Exit::Failed);
    }
    eprintln!(
        "opsflow merge-driver: {label}: {} conflict{}; ours is kept for each and the file is valid JSON:",
        merged.conflicts.len(),
        if merged.conflicts.len() == 1 { "" } else { "s" }
    );
    for conflict in &merged.conflicts {
        eprintln!("{label}: {conflict}");
    }
    Ok(Exit::Failed)
}

/// The schema problems the merge itself introduced: in `state.json`, the merged file's
/// problems when OURS and THEIRS both validated; in `tasks.json`, the problems of each task
/// merged field by field whose OURS and THEIRS versions both validated. A problem one side
/// already had is that side's, and `validate` reports it. The built-in schemas are used, with
/// the overrides in `schemas/` of the directory git runs the driver from (the top of the work
/// tree).
fn introduced_problems(
    kind: FileKind,
    label: &str,
    [ours, theirs, merged]: [&str; 3],
    touched: &[String],
) -> Vec<String> {
    let schemas = Schemas::new(PathBuf::from("schemas"), "schemas", MAX_INPUT_BYTES);
    let problems = match kind {
        FileKind::State => {
            let problems = |text: &str| match serde_json::from_str(text) {
                Ok(value) => schemas.validate(SchemaName::State, label, &value),
                Err(_) => Vec::new(),
            };
            if problems(ours).is_empty() && problems(theirs).is_empty() { problems(merged) } else { Vec::new() }
        }
        FileKind::Tasks if touched.is_empty() => Vec::new(),
        FileKind::Tasks => {
            let ids: Vec<&str> = touched.iter().map(String::as_str).collect();
            let entries = |text: &'_ str| -> Vec<(String, String, Value)> {
                let Ok((layout, heads)) = crate::store::tasks::scan_ids(text, &ids) else { return Vec::new() };
                heads
                    .iter()
                    .map(|h| {
                        (h.id.as_deref().unwrap_or_default().to_owned(), layout.pointer(text, h.index), h.value(text))
                    })
                    .collect()
            };
            let valid_before = |text: &str| -> Vec<String> {
                entries(text)
                    .into_iter()
                    .filter(|(_, _, value)| schemas.validate(SchemaName::Task, label, value).is_empty())
                    .map(|(id, _, _)| id)
                    .collect()
            };
            let (valid_ours, valid_theirs) = (valid_before(ours), valid_before(theirs));
            entries(merged)
                .into_iter()
                .filter(|(id, _, _)| valid_ours.contains(id) && valid_theirs.contains(id))
                .flat_map(|(_, pointer, value)| {
                    schemas.validate(SchemaName::Task, label, &value).into_iter().map(move |mut d| {
                        d.pointer = Some(format!("{pointer}{}", d.pointer.as_deref().unwrap_or("")));
                        d
                    })
                })
                .collect()
        }
    };
    problems.into_iter().map(|d| d.locate_in(merged).to_string()).collect()
}
