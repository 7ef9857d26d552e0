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

/// What a file that is not a regular file is, for the message that refuses it; `None` for a
/// regular file.
pub fn not_regular(metadata: &fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("is a directory, expected a file")
    } else if kind.is_fifo() {
        Some("is a named pipe (FIFO), not a regular file; opsflow does not read from it")
    } else if kind.is_socket() {
        Some("is a socket, not a regular file; opsflow does not read from it")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("is a device, not a regular file; opsflow does not read from it")
    } else {
        Some("is not a regular file; opsflow does not read from it")
    }
}

/// Opens `path` for reading only if it is a regular file. The type is checked before opening
/// (opening a FIFO for reading would wait for a writer) and again on the opened file, which is
/// opened non-blocking in case something else was put in its place in between.
pub fn open_regular(path: &Path, label: &str) -> Result<Option<fs::File>, Diagnostic> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::metadata(path) {
        Ok(metadata) => {
            if let Some(why) = not_regular(&metadata) {
                return Err(Diagnostic::new(label, Kind::Io, why));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A symlink to nothing is a mistake to report, not a missing file.
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Diagnostic::new(label, Kind::Io, "is a symlink to a file that does not exist"));
            }
            return Ok(None);
        }
        Err(e) => return Err(Diagnostic::new(label, Kind::Io, format!("cannot open: {e}"))),
    }
    let file = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Diagnostic::new(label, Kind::Io, format!("cannot open: {e}"))),
    };
    let metadata = file.metadata().map_err(|e| Diagnostic::new(label, Kind::Io, format!("cannot read: {e}")))?;
    if let Some(why) = not_regular(&metadata) {
        return Err(Diagnostic::new(label, Kind::Io, why));
    }
    Ok(Some(file))
}

/// Reads `path` (shown to users as `label`) if it exists, refusing files over `limit` bytes
/// and anything but a regular file.
pub fn read_bytes(path: &Path, label: &str, limit: u64) -> Result<Option<Vec<u8>>, Diagnostic> {
    let Some(file) = open_regular(path, label)? else { return Ok(None) };
    read_opened(file, label, limit).map(Some)
}

/// Reads a file already opened (non-blocking, never through a symlink: see
/// [`Dir::open_read`](super::beneath::Dir::open_read)) with the checks of [`read_bytes`].
pub fn read_opened(file: fs::File, label: &str, limit: u64) -> Result<Vec<u8>, Diagnostic> {
    let io_error = |e: io::Error| Diagnostic::new(label, Kind::Io, format!("cannot read: {e}"));
    let metadata = file.metadata().map_err(io_error)?;
    if let Some(why) = not_regular(&metadata) {
        return Err(Diagnostic::new(label, Kind::Io, why));
    }
    if metadata.len() > limit {
        return Err(too_large(label, metadata.len(), limit));
    }
    if metadata.len() >= PARALLEL_MIN_BYTES
        && let Some(read) = read_halves(&file, metadata.len())
    {
        return read.map_err(io_error);
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
    Ok(bytes)
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
    let mut bytes = match take_spare(size) {
        Some(bytes) => bytes,
        None => {
            // Zeroed memory from the allocator is fresh pages, not written twice. A little
            // room past the end, which costs nothing until it is written, lets the next
            // version of the file (a task longer) be read into this memory too.
            let mut bytes = vec![0u8; size + size / 32];
            bytes.truncate(size);
            advise_huge_pages(&mut bytes);
            bytes
        }
    };
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
        (a, second_half.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
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
        second_ok.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)) && first_ok
    })
}

/// The memory of the last large read its reader gave back ([`recycle`]), for the next one.
/// A large allocation is fresh pages from the kernel, each faulted in and zeroed as the read
/// first writes it: on a 27 MB `tasks.json` that was two thirds of the read. The daemon lets
/// go of it once it has been idle for a moment ([`release_spare`]), so it costs memory only
/// while passes follow each other.
static SPARE: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

fn spare() -> std::sync::MutexGuard<'static, Option<Vec<u8>>> {
    SPARE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The spare buffer as `size` initialized bytes, when it is large enough.
fn take_spare(size: usize) -> Option<Vec<u8>> {
    let mut spare = spare();
    let mut bytes = spare.take()?;
    if bytes.capacity() < size {
        // Too small: freed before a larger buffer is made, never held beside it.
        return None;
    }
    // Its bytes are overwritten by the read; only what it never held is zeroed.
    if bytes.len() >= size {
        bytes.truncate(size);
    } else {
        bytes.resize(size, 0);
    }
    Some(bytes)
}

/// Gives back the text of a large read once its reader is done with it: the next large read
/// fills that memory instead of faulting in new pages. Smaller texts are simply dropped.
pub fn recycle(text: String) {
    let bytes = text.into_bytes();
    if (bytes.capacity() as u64) < PARALLEL_MIN_BYTES {
        return;
    }
    let mut spare = spare();
    if spare.as_ref().is_none_or(|kept| kept.capacity() < bytes.capacity()) {
        *spare = Some(bytes);
    }
}

/// A text that is [`recycle`]d when dropped, for a reader that may return on many paths.
pub struct Recycled(pub Option<String>);

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(text) = self.0.take() {
            recycle(text);
        }
    }
}

/// Whether a buffer is kept for the next large read.
pub fn spare_held() -> bool {
    spare().is_some()
}

/// Frees the buffer kept for the next large read, if any.
pub fn release_spare() {
    drop(spare().take());
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
            let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
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

/// Parses JSON text, with the line and column of a syntax error. An object with the same key
/// twice is an error (`serde_json` alone would keep the last one silently).
pub fn parse_json(label: &str, text: &str) -> Result<Value, Diagnostic> {
    serde_json::from_str::<Strict>(text).map(|strict| strict.0).map_err(|e| {
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

/// A JSON value read by the rules of [`parse_json`]: as `serde_json::Value`, but an object
/// with a duplicate key is an error at that key.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let quoted = serde_json::to_string(&key).unwrap_or(key);
                return Err(serde::de::Error::custom(format!("duplicate key {quoted}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// How much aliases may add to a front matter when expanded, in bytes of scalar text plus
/// [`NODE_WEIGHT`] for every value (about what a loaded value costs in memory). Real front
/// matter uses few or no aliases; nine levels of nine aliases each (a few hundred bytes), or
/// ten thousand aliases of one long string, would otherwise expand to gigabytes.
pub const MAX_ALIAS_EXPANSION: u64 = 4 * 1024 * 1024;
/// What one value counts for in [`MAX_ALIAS_EXPANSION`], besides its text.
const NODE_WEIGHT: u64 = 64;
/// The deepest nesting accepted in front matter (as for JSON).
const MAX_FRONT_MATTER_DEPTH: usize = json::MAX_DEPTH;

/// One collection open during [`check_front_matter`]'s walk.
#[derive(Default)]
struct Frame {
    /// Its anchor id (0: none).
    anchor: usize,
    /// The weight of what it holds so far.
    inside: u64,
    mapping: bool,
    /// For a mapping: the plain keys seen so far, and whether the next node is a key.
    keys: std::collections::HashSet<String>,
    at_key: bool,
}

/// Walks the YAML events of a front matter without building it, and refuses it when its
/// aliases would add more than [`MAX_ALIAS_EXPANSION`] when expanded, its nesting is too
/// deep, or a mapping has the same key twice: the loader copies an anchored node for every
/// alias, so the size has to be known before it runs, and it keeps the last of two equal keys
/// silently (`status: rejected` then `status: approved` would read as approved).
/// `first_line` is the file's line of the YAML's first line.
fn check_front_matter(label: &str, yaml: &str, first_line: usize) -> Result<(), Diagnostic> {
    check_yaml(label, yaml, first_line, "front matter", Kind::FrontMatter)
}

/// The walk of [`check_front_matter`] over a YAML text; `what` names it in messages.
fn check_yaml(label: &str, yaml: &str, first_line: usize, what: &str, kind: Kind) -> Result<(), Diagnostic> {
    use yaml_rust2::parser::{Event, Parser};
    let at = |line: usize, col: usize| (first_line + line.saturating_sub(1), col + 1);
    let refuse = |mark: yaml_rust2::scanner::Marker, message: String| {
        let (line, column) = at(mark.line(), mark.col());
        Diagnostic::new(label, kind, message).at(line, column)
    };
    let mut anchored: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut open: Vec<Frame> = vec![Frame::default()];
    let mut added: u64 = 0;
    let mut parser = Parser::new_from_str(yaml);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let (line, column) = at(e.marker().line(), e.marker().col());
            Diagnostic::new(label, kind, format!("{what} is not valid YAML: {}", e.info())).at(line, column)
        })?;
        let weight = match event {
            Event::StreamEnd => return Ok(()),
            Event::Alias(id) => {
                let size = anchored.get(&id).copied().unwrap_or(NODE_WEIGHT);
                added = added.saturating_add(size);
                if added > MAX_ALIAS_EXPANSION {
                    return Err(refuse(
                        mark,
                        format!(
                            "{what} aliases (`*name`) would expand to more than {} MiB; opsflow refuses to expand them",
                            MAX_ALIAS_EXPANSION / (1024 * 1024)
                        ),
                    ));
                }
                size
            }
            Event::Scalar(value, _, anchor, _) => {
                if let Some(parent) = open.last_mut().filter(|f| f.mapping && f.at_key)
                    && !parent.keys.insert(value.clone())
                {
                    return Err(refuse(mark, format!("{what} has the key `{value}` twice in one mapping")));
                }
                let weight = NODE_WEIGHT + value.len() as u64;
                if anchor != 0 {
                    anchored.insert(anchor, weight);
                }
                weight
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() > MAX_FRONT_MATTER_DEPTH {
                    return Err(refuse(mark, format!("{what} nests deeper than {MAX_FRONT_MATTER_DEPTH} levels")));
                }
                let mapping = matches!(event, Event::MappingStart(..));
                open.push(Frame { anchor, mapping, at_key: mapping, ..Frame::default() });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if open.len() < 2 {
                    continue;
                }
                let Some(frame) = open.pop() else { continue };
                let size = frame.inside.saturating_add(NODE_WEIGHT);
                if frame.anchor != 0 {
                    anchored.insert(frame.anchor, size);
                }
                size
            }
            _ => continue,
        };
        // A node is complete: it counts in its parent, and in a mapping keys and values take turns.
        if let Some(parent) = open.last_mut() {
            parent.inside = parent.inside.saturating_add(weight);
            if parent.mapping {
                parent.at_key = !parent.at_key;
            }
        }
    }
}

/// Where the value a JSON Pointer names sits in a markdown file's front matter, as a
/// one-based (line, column) of the file: the key's position for a mapping member, the item's
/// for a sequence item, the opening `---` for the whole front matter. `None` when the text
/// has no front matter or the pointer names nothing in it (a property that is missing).
pub fn front_matter_position(text: &str, pointer: &str) -> Option<(usize, usize)> {
    use yaml_rust2::parser::{Event, Parser};
    if text.lines().next()?.trim_end() != "---" {
        return None;
    }
    if pointer.is_empty() {
        return Some((1, 1));
    }
    let target: Vec<String> = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let start = text.find('\n')? + 1;
    let mut end = start;
    for line in text[start..].split_inclusive('\n') {
        if line.trim_end() == "---" {
            break;
        }
        end += line.len();
    }
    struct Frame {
        path: Vec<String>,
        mapping: bool,
        at_key: bool,
        key: String,
        index: usize,
    }
    let position = |mark: yaml_rust2::scanner::Marker| (mark.line() + 1, mark.col() + 1);
    let mut frames: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(&text[start..end]);
    loop {
        let (event, mark) = parser.next_token().ok()?;
        let container = match &event {
            Event::StreamEnd => return None,
            Event::MappingStart(..) => Some(true),
            Event::SequenceStart(..) => Some(false),
            Event::Scalar(..) | Event::Alias(_) => None,
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                if let Some(parent) = frames.last_mut().filter(|f| f.mapping) {
                    parent.at_key = true;
                }
                continue;
            }
            _ => continue,
        };
        // A key of a mapping: remember it; the key's own line is where a reader looks.
        if let Some(frame) = frames.last_mut().filter(|f| f.mapping && f.at_key) {
            frame.at_key = false;
            if let Event::Scalar(key, ..) = &event {
                frame.key = key.clone();
                let mut path = frame.path.clone();
                path.push(key.clone());
                if path == target {
                    return Some(position(mark));
                }
            }
            if let Some(mapping) = container {
                // A complex key: its contents name nothing a pointer can reach.
                frames.push(Frame { path: vec!["\0".into()], mapping, at_key: mapping, key: String::new(), index: 0 });
            }
            continue;
        }
        let path = match frames.last_mut() {
            None => Vec::new(),
            Some(frame) => {
                let mut path = frame.path.clone();
                if frame.mapping {
                    path.push(frame.key.clone());
                    frame.at_key = true;
                } else {
                    path.push(frame.index.to_string());
                    frame.index += 1;
                }
                path
            }
        };
        if !path.is_empty() && path == target {
            return Some(position(mark));
        }
        if let Some(mapping) = container {
            if let Some(frame) = frames.last_mut().filter(|f| f.mapping) {
                // The container is the value; its end gives the turn back to the keys.
                frame.at_key = false;
            }
            frames.push(Frame { path, mapping, at_key: mapping, key: String::new(), index: 0 });
        }
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

/// Parses a whole YAML file (one document) with the guards of front matter: aliases that
/// would expand too far, nesting too deep and a key given twice in one mapping are refused
/// before the loader runs, each at its line. An empty file is `Null`.
pub fn parse_yaml(label: &str, text: &str) -> Result<yaml_rust2::Yaml, Diagnostic> {
    if let Some(conflict) = conflict_diagnostic(label, text) {
        return Err(conflict);
    }
    check_yaml(label, text, 1, "the file", Kind::Syntax)?;
    let mut documents = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| {
        Diagnostic::new(label, Kind::Syntax, format!("the file is not valid YAML: {}", e.info()))
            .at(e.marker().line(), e.marker().col() + 1)
    })?;
    if documents.len() > 1 {
        return Err(Diagnostic::new(
            label,
            Kind::Syntax,
            format!("the file holds {} YAML documents; opsflow reads one", documents.len()),
        ));
    }
    Ok(documents.pop().unwrap_or(yaml_rust2::Yaml::Null))
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
    // The YAML between the two `---` lines: what `gray_matter` would take as the matter, and
    // exactly what is checked before its loader may expand it.
    let first_line_end = text.find('\n').map_or(text.len(), |i| i + 1);
    let yaml = &text[first_line_end..offset];
    check_front_matter(label, yaml, 2)?;
    use gray_matter::engine::Engine;
    let parsed =
        gray_matter::engine::YAML::parse(yaml.trim()).and_then(|pod| pod.deserialize::<Value>()).map_err(|e| {
            Diagnostic::new(label, Kind::FrontMatter, format!("front matter is not valid YAML: {e}")).at(2, 1)
        })?;
    let front_matter = match parsed {
        Value::Null => Value::Object(Default::default()),
        value => value,
    };
    Ok(MarkdownDoc { front_matter: Some(front_matter), body: text[body_start..].to_owned(), body_line: close_line + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_read_into_the_memory_of_an_earlier_one_holds_exactly_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mib = 1024 * 1024;
        let read = |byte: u8, len: usize| {
            let path = dir.path().join("big.json");
            std::fs::write(&path, vec![byte; len]).unwrap();
            read_text(&path, "big.json", u64::MAX).unwrap().unwrap()
        };
        // Larger, then smaller than the kept buffer, then between its length and its capacity.
        let first = read(b'a', 5 * mib);
        recycle(first);
        let second = read(b'b', 4 * mib + 1);
        assert!(second.len() == 4 * mib + 1 && second.bytes().all(|b| b == b'b'));
        recycle(second);
        let third = read(b'c', 4 * mib + 7);
        assert!(third.len() == 4 * mib + 7 && third.bytes().all(|b| b == b'c'));
        recycle(third);
        release_spare();
        let fourth = read(b'd', 4 * mib + 3);
        assert!(fourth.len() == 4 * mib + 3 && fourth.bytes().all(|b| b == b'd'));
    }

    #[test]
    fn front_matter_positions_follow_the_pointer() {
        let text =
            "---\nunit_id: U\nblocking_bugs:\n  - id: 3\n    title: [x, y]\nstatus: aproved\nmeta: {a: 1}\n---\nbody\n";
        let at = |pointer: &str| front_matter_position(text, pointer);
        assert_eq!(at(""), Some((1, 1)));
        assert_eq!(at("/unit_id"), Some((2, 1)));
        assert_eq!(at("/blocking_bugs"), Some((3, 1)));
        // A mapping item is where the parser marks it, on the item's line.
        assert_eq!(at("/blocking_bugs/0").map(|(line, _)| line), Some(4));
        assert_eq!(at("/blocking_bugs/0/title"), Some((5, 5)));
        assert_eq!(at("/blocking_bugs/0/title/1"), Some((5, 16)));
        assert_eq!(at("/status"), Some((6, 1)));
        assert_eq!(at("/meta/a"), Some((7, 8)));
        assert_eq!(at("/missing"), None);
        assert_eq!(front_matter_position("no front matter\n", "/status"), None);
    }

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

    /// Nine levels of nine aliases: about 500 bytes that the YAML loader would expand to 387
    /// million strings, and several gigabytes, before anything could look at them.
    pub(crate) fn alias_bomb() -> String {
        let mut yaml = String::from("---\nstatus: approved\na1: &a1 [x,x,x,x,x,x,x,x,x]\n");
        for level in 2..=9 {
            let previous = format!("*a{}", level - 1);
            yaml.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 9].join(",")));
        }
        yaml.push_str("---\n# Report\n");
        yaml
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_expands() {
        let error = parse_markdown("QA/QA-Report-U.md", &alias_bomb()).unwrap_err();
        assert_eq!(error.kind, Kind::FrontMatter);
        assert!(error.message.contains("aliases"), "{}", error.message);
        // The eighth `*a4` of a5 (line 7) takes what the aliases add past 4 MiB.
        assert_eq!((error.line, error.column), (Some(7), Some(38)), "{error}");
    }

    #[test]
    fn many_aliases_of_one_long_string_are_refused() {
        let long = "x".repeat(100_000);
        let text = format!("---\nbig: &big \"{long}\"\ncopies: [{}]\n---\n", vec!["*big"; 100].join(", "));
        let error = parse_markdown("a.md", &text).unwrap_err();
        assert!(error.message.contains("aliases"), "{}", error.message);
        assert_eq!(error.line, Some(3));
    }

    #[test]
    fn a_whole_yaml_file_gets_the_guards_of_front_matter() {
        let bomb = alias_bomb().replace("---\n# Report\n", "").replacen("---\n", "", 1);
        let error = parse_yaml("g.yml", &bomb).unwrap_err();
        assert!(error.message.starts_with("the file aliases (`*name`) would expand"), "{}", error.message);
        let error = parse_yaml("g.yml", "a: 1\nb:\n  c: 2\n  c: 3\n").unwrap_err();
        assert_eq!((error.line, error.message.as_str()), (Some(4), "the file has the key `c` twice in one mapping"));
        let error = parse_yaml("g.yml", "a: [1, 2\n").unwrap_err();
        assert!(error.message.starts_with("the file is not valid YAML"), "{}", error.message);
        assert!(parse_yaml("g.yml", "a: 1\n---\nb: 2\n").unwrap_err().message.contains("2 YAML documents"));
        assert_eq!(parse_yaml("g.yml", "").unwrap(), yaml_rust2::Yaml::Null);
    }

    #[test]
    fn a_few_aliases_and_quoted_stars_are_fine() {
        let text = "---\nbase: &base {owner: ops, level: 2}\ncopy: *base\nnote: \"*not an alias\"\nstar: '*x'\n---\n";
        let doc = parse_markdown("a.md", text).unwrap();
        let front = doc.front_matter.unwrap();
        assert_eq!(front["copy"], serde_json::json!({"owner": "ops", "level": 2}));
        assert_eq!(front["note"], "*not an alias");
        assert_eq!(front["star"], "*x");
    }

    #[test]
    fn a_key_given_twice_in_front_matter_is_refused() {
        let text = "---\nunit_id: U\nstatus: rejected\nnotes: {a: 1, b: 2}\nstatus: approved\n---\n";
        let error = parse_markdown("QA/QA-Report-U.md", text).unwrap_err();
        assert_eq!(error.to_string(), "QA/QA-Report-U.md:5:1: front matter has the key `status` twice in one mapping");
        // The same key in two mappings, and as a value, is fine.
        let fine = "---\na: {status: x}\nb: {status: y}\nstatus: status\nlist: [status, status]\n---\n";
        assert!(parse_markdown("a.md", fine).is_ok());
    }

    #[test]
    fn deeply_nested_front_matter_is_refused() {
        for depth in [200, 5000] {
            let text = format!("---\nx: {}{}\n---\n", "[".repeat(depth), "]".repeat(depth));
            let error = parse_markdown("a.md", &text).unwrap_err();
            assert_eq!(error.kind, Kind::FrontMatter);
            assert!(error.message.contains("deeper than") || error.message.contains("recursion limit"), "{error}");
            assert_eq!(error.line, Some(2));
        }
    }

    #[test]
    fn invalid_yaml_is_reported_on_its_line() {
        let error = parse_markdown("a.md", "---\nstatus: ok\nlist: [a, b\n---\nbody\n").unwrap_err();
        assert_eq!(error.kind, Kind::FrontMatter);
        assert!(error.message.starts_with("front matter is not valid YAML"), "{}", error.message);
        assert!(error.line.is_some_and(|line| line >= 3), "{error}");
    }

    #[test]
    fn duplicate_json_keys_are_an_error_at_the_second() {
        let text = "{\n  \"recommendation\": \"reject\",\n  \"recommendation\": \"approve_for_deployment\"\n}\n";
        let error = parse_json("qa.json", text).unwrap_err();
        assert_eq!(error.message, "invalid JSON: duplicate key \"recommendation\"");
        assert_eq!(error.line, Some(3));
        assert!(parse_json("qa.json", "{\"a\": {\"b\": 1}, \"c\": {\"b\": 2}}").is_ok());
        assert!(parse_json("qa.json", "[{\"a\": 1, \"a\": 1}]").is_err());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.json");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = read_bytes(&path, "tasks.json", 1024).unwrap_err();
        assert!(error.message.contains("named pipe"), "{}", error.message);
        let error = read_bytes(dir.path(), "QA", 1024).unwrap_err();
        assert!(error.message.contains("directory"), "{}", error.message);
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
