//! `opsflow merge-driver BASE OURS THEIRS [PATH]`: the git merge driver of PRODUCT.md §9.
//!
//! Git runs it as `opsflow merge-driver %O %A %B %P` and expects the result in the OURS file:
//! exit 0 for a clean merge, 1 when conflicts remain (each listed on stderr, OURS kept for
//! each, the file still valid JSON), 2 when an input cannot be merged at all (OURS is then
//! left exactly as it was). It needs no workspace: git may run it from any directory.

use std::path::{Path, PathBuf};

use crate::Exit;
use crate::merge::{self, FileKind};
use crate::store::file;
use crate::workspace::read;

/// Larger inputs than this are refused rather than read into memory.
const MAX_INPUT_BYTES: u64 = 1 << 30;

pub fn run(base: &Path, ours: &Path, theirs: &Path, path: Option<&Path>) -> anyhow::Result<Exit> {
    let label = path.map_or_else(|| ours.display().to_string(), |p| p.display().to_string());
    let read = |file: &PathBuf, side: &str| -> Result<String, String> {
        let shown = format!("{label} ({side}: {})", file.display());
        match read::read_bytes(file, &shown, MAX_INPUT_BYTES) {
            Ok(Some(bytes)) => read::check_text(&shown, bytes).map_err(|d| d.to_string()),
            Ok(None) if side == "base" => Ok(String::new()),
            Ok(None) => Err(format!("{shown}: does not exist")),
            Err(d) => Err(d.to_string()),
        }
    };
    let texts = [(base, "base"), (ours, "ours"), (theirs, "theirs")].map(|(file, side)| read(&file.to_owned(), side));
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
        file::write_atomic(ours, text.as_bytes()).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    }
    if merged.conflicts.is_empty() {
        return Ok(Exit::Ok);
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
