//! Reading workspace files defensively: size, encoding, conflict markers, symlinks, syntax.
//!
//! Every file here may have been written by a careless agent or left by a half-finished
//! `git checkout`. Each check turns into a [`Diagnostic`] that names the file and the place;
//! nothing in this module writes.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde_json::Value;

use super::diagnostic::{Diagnostic, Kind};
use crate::store::json;

/// Reads `path` (shown to users as `label`) if it exists, refusing files over `limit` bytes.
pub fn read_bytes(path: &Path, label: &str, limit: u64) -> Result<Option<Vec<u8>>, Diagnostic> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Diagnostic::new(label, Kind::Io, format!("cannot open: {e}"))),
    };
    let io_error = |e: io::Error| Diagnostic::new(label, Kind::Io, format!("cannot read: {e}"));
    let metadata = file.metadata().map_err(io_error)?;
    if metadata.is_dir() {
        return Err(Diagnostic::new(label, Kind::Io, "is a directory, expected a file"));
    }
    if metadata.len() > limit {
        return Err(too_large(label, metadata.len(), limit));
    }
    if metadata.len() >= PARALLEL_MIN_BYTES
        && let Some(read) = read_halves(&file, metadata.len())
    {
        return read.map(Some).map_err(io_error);
    }
    // A small file, or one whose size changed while its halves were read: one pass from the
    // start (`read_at` does not move the file's position).
    let mut bytes = Vec::with_capacity(metadata.len() as usize + 1);
    advise_huge_pages(&mut bytes);
    // Read one byte past the limit so a file that grows while it is read is still caught.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(label, bytes.len() as u64, limit));
    }
    Ok(Some(bytes))
}

/// Files at least this large are read, and checked for UTF-8, by two threads at once, each
/// taking one half: on a 27 MB `tasks.json` that halves the time both take. On a 2.7 MB file
/// one thread checks UTF-8 faster (0.21 against 0.24 ms, `cargo bench --bench store`).
const PARALLEL_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the `len` bytes of `file` with two threads, one per half. `None` when the file no
/// longer has `len` bytes (a writer that ignores the lock truncated or extended it in place),
/// for the caller to read it again in one pass.
fn read_halves(file: &fs::File, len: u64) -> Option<io::Result<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    let size = usize::try_from(len).ok()?;
    // Zeroed memory from the allocator is fresh pages, not written twice.
    let mut bytes = vec![0u8; size];
    advise_huge_pages(&mut bytes);
    let (first, second) = bytes.split_at_mut(size / 2);
    let second_offset = first.len() as u64;
    let read_exact = |part: &mut [u8], offset: u64| match file.read_exact_at(part, offset) {
        Ok(()) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
        Err(e) => Some(Err(e)),
    };
    let (a, b) = std::thread::scope(|scope| {
        let second_half = scope.spawn(|| read_exact(second, second_offset));
        let a = read_exact(first, 0);
        (a, second_half.join().expect("reading does not panic"))
    });
    if let Err(e) = a?.and(b?) {
        return Some(Err(e));
    }
    match file.read_at(&mut [0u8], len) {
        Ok(0) => Some(Ok(bytes)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

/// `str::from_utf8(bytes).is_ok()`, with two threads for a large buffer: each checks one
/// part, split at a character boundary.
fn is_utf8(bytes: &[u8]) -> bool {
    if (bytes.len() as u64) < PARALLEL_MIN_BYTES {
        return std::str::from_utf8(bytes).is_ok();
    }
    let mut mid = bytes.len() / 2;
    // A character is at most four bytes: past three continuation bytes the text is invalid,
    // and the split may then fall anywhere.
    for _ in 0..3 {
        if bytes[mid] & 0xC0 != 0x80 {
            break;
        }
        mid += 1;
    }
    let (first, second) = bytes.split_at(mid);
    std::thread::scope(|scope| {
        let second_ok = scope.spawn(|| std::str::from_utf8(second).is_ok());
        let first_ok = std::str::from_utf8(first).is_ok();
        second_ok.join().expect("checking does not panic") && first_ok
    })
}

/// Asks for transparent huge pages for a large read buffer: a 25 MB `tasks.json` then costs a
/// dozen page faults instead of six thousand. Only advice; the read works either way.
fn advise_huge_pages(buffer: &mut Vec<u8>) {
    const HUGE: usize = 2 * 1024 * 1024;
    if buffer.capacity() < 2 * HUGE {
        return;
    }
    let start = buffer.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + buffer.capacity()) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: the range lies inside the vector's own allocation; madvise only advises.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
        }
    }
}

fn too_large(label: &str, size: u64, limit: u64) -> Diagnostic {
    Diagnostic::new(
        label,
        Kind::TooLarge,
        format!(
            "file is {size} bytes, over the limit of {limit} bytes (raise `limits.max_file_bytes` if this is intended)"
        ),
    )
}

/// Turns bytes into text, refusing a byte-order mark, invalid UTF-8 and git conflict markers.
pub fn check_text(label: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(Diagnostic::new(
            label,
            Kind::ByteOrderMark,
            "starts with a UTF-8 byte-order mark; save the file as UTF-8 without BOM",
        )
        .at(1, 1));
    }
    if is_utf8(&bytes) {
        // SAFETY: `is_utf8` checked every byte: both of its parts are valid UTF-8, and two
        // valid UTF-8 sequences one after the other are one valid sequence.
        let text = unsafe { String::from_utf8_unchecked(bytes) };
        return check_markers(label, text);
    }
    // The exact place of the error comes from one pass over the whole.
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).expect("valid up to here");
            let (line, column) = json::line_col(prefix, valid);
            return Err(Diagnostic::new(
                label,
                Kind::InvalidUtf8,
                format!("invalid UTF-8 at byte {valid}: the file is not UTF-8 text (binary or another encoding)"),
            )
            .at(line, column));
        }
    };
    check_markers(label, text)
}

fn check_markers(label: &str, text: String) -> Result<String, Diagnostic> {
    // A JSON file with conflict markers never parses (a line cannot start inside a JSON
    // string), so for JSON the markers are looked for only when parsing fails, to say why.
    if !label.ends_with(".json")
        && let Some(diagnostic) = conflict_diagnostic(label, &text)
    {
        return Err(diagnostic);
    }
    Ok(text)
}

/// The diagnostic for unresolved git conflict markers in `text`, if it has any.
pub fn conflict_diagnostic(label: &str, text: &str) -> Option<Diagnostic> {
    conflict_marker_line(text).map(|line| {
        Diagnostic::new(
            label,
            Kind::ConflictMarkers,
            "has unresolved git conflict markers (`<<<<<<<`); finish the merge before opsflow reads it",
        )
        .at(line, 1)
    })
}

/// The line of the first git conflict marker, if any.
fn conflict_marker_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            ["<<<<<<<", ">>>>>>>", "|||||||"]
                .iter()
                .any(|marker| line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with(' ')))
        })
        .map(|index| index + 1)
}

/// Reads and checks a text file; `Ok(None)` when it does not exist.
pub fn read_text(path: &Path, label: &str, limit: u64) -> Result<Option<String>, Diagnostic> {
    read_bytes(path, label, limit)?.map(|bytes| check_text(label, bytes)).transpose()
}

/// Parses JSON text, with the line and column of a syntax error.
pub fn parse_json(label: &str, text: &str) -> Result<Value, Diagnostic> {
    serde_json::from_str(text).map_err(|e| {
        if let Some(conflict) = conflict_diagnostic(label, text) {
            return conflict;
        }
        let message = e.to_string();
        // serde_json appends " at line L column C"; the diagnostic carries those separately.
        let message = message.rfind(" at line ").map_or(message.as_str(), |i| &message[..i]).to_owned();
        // serde_json says column 0 at the very start of a line (an empty file, an end of
        // file after a newline); places are one-based here, as everywhere else.
        Diagnostic::new(label, Kind::Syntax, format!("invalid JSON: {message}")).at(e.line().max(1), e.column().max(1))
    })
}

/// A YAML error in the front matter, placed in the file: the parser counts lines from the
/// first line after the opening `---` (file line 2) and appends `at byte B line L column C`
/// to its message, which goes into the place instead.
fn yaml_diagnostic(label: &str, error: &str) -> Diagnostic {
    let error = error.strip_prefix("Deserialize error: ").unwrap_or(error);
    let place = error.rfind(" at byte ").and_then(|at| {
        let mut words = error[at..].split_whitespace().skip(2);
        let (_byte, line_word, line, column_word, column) =
            (words.next()?, words.next()?, words.next()?, words.next()?, words.next()?);
        let (line, column) = (line.parse::<usize>().ok()?, column.parse::<usize>().ok()?);
        (line_word == "line" && column_word == "column").then_some((at, line + 1, column.max(1)))
    });
    match place {
        Some((at, line, column)) => {
            Diagnostic::new(label, Kind::FrontMatter, format!("front matter is not valid YAML: {}", &error[..at]))
                .at(line, column)
        }
        None => Diagnostic::new(label, Kind::FrontMatter, format!("front matter is not valid YAML: {error}")).at(2, 1),
    }
}

/// A markdown file split into its front matter (as JSON) and body.
#[derive(Debug, Clone)]
pub struct MarkdownDoc {
    /// The front matter as the JSON value of its YAML; `None` when the file has none.
    pub front_matter: Option<Value>,
    pub body: String,
    /// The one-based line of the file where `body` starts.
    pub body_line: usize,
}

/// Splits and parses YAML front matter.
///
/// `gray_matter` finds the front matter and parses the YAML. Two of its habits need a guard:
/// an opening `---` that is never closed is silently treated as "no front matter" (a
/// half-written file would look like a plain document), and a body line ending in `---`
/// is taken as an excerpt separator, so the body is taken from the text here instead.
pub fn parse_markdown(label: &str, text: &str) -> Result<MarkdownDoc, Diagnostic> {
    let mut lines = text.split_inclusive('\n');
    let opens = lines.next().is_some_and(|first| first.trim_end() == "---");
    if !opens {
        return Ok(MarkdownDoc { front_matter: None, body: text.to_owned(), body_line: 1 });
    }
    let mut offset = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut close = None;
    for (index, line) in lines.enumerate() {
        if line.trim_end() == "---" {
            close = Some((index + 2, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((close_line, body_start)) = close else {
        return Err(Diagnostic::new(
            label,
            Kind::FrontMatter,
            "front matter opened with `---` is never closed by a second `---` line",
        )
        .at(1, 1));
    };
    let matter = gray_matter::Matter::<gray_matter::engine::YAML>::new();
    let parsed = matter.parse::<Value>(text).map_err(|e| yaml_diagnostic(label, &e.to_string()))?;
    let front_matter = match parsed.data {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(value) => value,
    };
    Ok(MarkdownDoc { front_matter: Some(front_matter), body: text[body_start..].to_owned(), body_line: close_line + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text over the two-thread threshold, with a character of every UTF-8 length at every
    /// offset around the middle across the lines.
    fn large_text() -> String {
        let mut text = String::new();
        let mut n = 0;
        while (text.len() as u64) < PARALLEL_MIN_BYTES + 1000 {
            text.push_str(&"x".repeat(n % 5));
            text.push_str(["a", "\u{e9}", "\u{20ac}", "\u{1F680}"][n % 4]);
            text.push('\n');
            n += 1;
        }
        text
    }

    #[test]
    fn a_large_file_is_read_and_checked_in_two_halves_as_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        let base = large_text();
        // Shifting the text moves the middle through every byte of the characters near it.
        for shift in 0..8 {
            let text = format!("{}{base}", "y".repeat(shift));
            fs::write(&path, &text).unwrap();
            let bytes = read_bytes(&path, "big.json", u64::MAX).unwrap().unwrap();
            assert!(bytes == text.as_bytes(), "shift {shift}");
            assert_eq!(check_text("big.json", bytes).unwrap(), text, "shift {shift}");
        }
    }

    #[test]
    fn invalid_utf8_in_either_half_of_a_large_file_is_found_where_it_is() {
        let text = large_text();
        for at in [10, text.len() / 2 - 1, text.len() / 2, text.len() / 2 + 1, text.len() - 2] {
            let mut bytes = text.clone().into_bytes();
            // A line-feed byte becomes a lone continuation byte, or a letter does.
            let at = (at..).find(|&i| bytes[i].is_ascii()).unwrap();
            bytes[at] = 0x80;
            let error = check_text("big.json", bytes).unwrap_err();
            assert_eq!(error.kind, Kind::InvalidUtf8);
            assert!(error.message.starts_with(&format!("invalid UTF-8 at byte {at}:")), "{}", error.message);
        }
    }

    #[test]
    fn a_file_whose_size_changed_is_read_again_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        let text = large_text();
        fs::write(&path, &text).unwrap();
        let file = fs::File::open(&path).unwrap();
        let len = text.len() as u64;
        assert!(read_halves(&file, len + 10).is_none(), "shorter than expected");
        assert!(read_halves(&file, len - 10).is_none(), "longer than expected");
        assert!(read_halves(&file, len).unwrap().unwrap() == text.as_bytes());
    }

    #[test]
    fn front_matter_and_body() {
        let doc = parse_markdown("a.md", "---\nstatus: approved\nn: 3\n---\n# Title\n\ntext ---\n---\nmore\n").unwrap();
        assert_eq!(doc.front_matter.unwrap(), serde_json::json!({"status": "approved", "n": 3}));
        assert_eq!(doc.body, "# Title\n\ntext ---\n---\nmore\n");
        assert_eq!(doc.body_line, 5);
    }

    #[test]
    fn unclosed_front_matter_is_an_error() {
        let error = parse_markdown("a.md", "---\nstatus: approved\n").unwrap_err();
        assert_eq!(error.kind, Kind::FrontMatter);
    }

    #[test]
    fn no_front_matter_is_fine() {
        let doc = parse_markdown("a.md", "# Title\n---\n").unwrap();
        assert!(doc.front_matter.is_none());
    }

    #[test]
    fn conflict_markers_are_found_by_line() {
        assert_eq!(conflict_marker_line("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> x\n"), Some(2));
        assert_eq!(conflict_marker_line("Title\n=======\n"), None);
    }
}
