//! `tasks.json` seen through spans: find entries, read their key fields, edit and append.
//!
//! The file is `{"tasks": [...]}` or a bare array, kept in whichever form it has. Reading the
//! tasks this runner owns walks every entry's members once and decodes only the few fields a
//! filter needs ([`TaskHead`]); no entry is turned into a `serde_json::Value` unless asked.

use std::borrow::Cow;

use serde_json::Value;

use super::edit::{self, FieldOp, Splice, Style};
use super::json::{self, Member, Span, SyntaxError};
use super::taskmaster;

pub mod resume;

/// FxHash (rustc's hasher), for maps that hold every id of a large task list (the merge
/// driver's three versions, a pass's duplicate check), where SipHash's cost shows. The keys
/// come from files in the user's own repository, so hash flooding is not a concern here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Where the task array is and how the file wraps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub array_start: usize,
    /// `{"tasks": [...]}`.
    pub wrapped: bool,
    /// Task Master's tagged form: the key (with its quotes) of the tag whose `tasks` array
    /// this is.
    pub tag: Option<Span>,
    /// The array's first, second and last entries and its end, as the scan walked it, so that
    /// an append needs no second walk; `None`: not known, an append walks the array.
    pub shape: Option<edit::ArrayShape>,
}

impl Layout {
    /// The JSON Pointer of the array: entry `i` is at `{prefix}/{i}`.
    pub fn prefix(&self, text: &str) -> String {
        match self.tag {
            Some(tag) => {
                let name = json::decode_string(tag.of(text));
                format!("/{}/tasks", name.replace('~', "~0").replace('/', "~1"))
            }
            None if self.wrapped => "/tasks".to_owned(),
            None => String::new(),
        }
    }

    /// The JSON Pointer of the entry at `index`.
    pub fn pointer(&self, text: &str, index: usize) -> String {
        format!("{}/{index}", self.prefix(text))
    }

    /// Whether the entries are Task Master's (the tagged form).
    pub fn taskmaster(&self) -> bool {
        self.tag.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    Syntax(SyntaxError),
    /// The file is JSON but not a task list.
    Shape(String),
}

impl From<SyntaxError> for LayoutError {
    fn from(error: SyntaxError) -> Self {
        LayoutError::Syntax(error)
    }
}

/// The fields of one entry that filters and lookups need, borrowed from the text.
#[derive(Debug, Clone, Default)]
pub struct TaskHead<'t> {
    pub index: usize,
    pub span: Span,
    pub id: Option<Cow<'t, str>>,
    pub agent: Option<Cow<'t, str>>,
    pub kind: Option<Cow<'t, str>>,
    /// In opsflow's words: for a Task Master entry, its status read through
    /// [`taskmaster::effective_status`].
    pub status: Option<Cow<'t, str>>,
    /// [`taskmaster::FINE_STATUS_FIELD`], read in Task Master entries only.
    pub fine_status: Option<Cow<'t, str>>,
    /// An entry of Task Master's tagged file, in its dialect ([`taskmaster`]).
    pub taskmaster: bool,
}

impl TaskHead<'_> {
    /// The whole entry as a value (allocates; use for the entries you keep). The scanner
    /// accepts only what `serde_json` decodes, so this fails only if they ever disagree.
    /// A Task Master entry is read as opsflow reads its own ([`taskmaster::normalize`]).
    pub fn try_value(&self, text: &str) -> Result<Value, SyntaxError> {
        let value = serde_json::from_str(self.span.of(text)).map_err(|e| SyntaxError {
            offset: self.span.start,
            message: format!("task entry {} cannot be decoded: {e}", self.index),
        })?;
        Ok(if self.taskmaster { taskmaster::normalize(value, self.agent.as_deref()) } else { value })
    }

    /// [`TaskHead::try_value`], with `null` for an entry that cannot be decoded (which the
    /// scanner never passes); for readers that only look for fields.
    pub fn value(&self, text: &str) -> Value {
        self.try_value(text).unwrap_or(Value::Null)
    }
}

fn string_value<'t>(text: &'t str, member: &Member) -> Option<Cow<'t, str>> {
    let raw = member.value.of(text);
    raw.starts_with('"').then(|| json::decode_string(raw))
}

/// Every entry's head, in order, once the whole file is known to be a valid task list.
pub fn heads(text: &str) -> Result<(Layout, Vec<TaskHead<'_>>), LayoutError> {
    scan(text, |_| true)
}

fn syntax(offset: usize, message: &str) -> SyntaxError {
    SyntaxError { offset, message: message.to_owned() }
}

/// Files larger than this are scanned by two threads (see [`scan_array`]). Measured with
/// `cargo bench --bench store`: on a 2.7 MB list (10,000 tasks) two threads take 1.2 ms where
/// one takes 1.9 ms; below a megabyte, starting the thread costs about what it saves.
const PARALLEL_MIN_BYTES: usize = 1024 * 1024;

/// Which tag of a tagged (Task Master) file opsflow works in, and who its tasks are for
/// when they name no agent. A file of the other two shapes ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The tag, or why none could be chosen (said when the file turns out to be tagged).
    pub tag: Result<String, String>,
    /// The agent of the tag's tasks that have no `agent` field.
    pub default_agent: Option<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection { tag: Err("no Task Master tag was chosen for this file".to_owned()), default_agent: None }
    }
}

impl Selection {
    /// The tag `tag`, with no default agent.
    pub fn tag(tag: &str) -> Selection {
        Selection { tag: Ok(tag.to_owned()), default_agent: None }
    }
}

/// How many tag names a shape error lists.
const TAGS_NAMED: usize = 10;

/// Walks the members of the object at `start`, refusing
/// duplicate keys; `member` gets each raw key (with its quotes) and value offset and returns
/// the value's end. Returns the end of the object.
fn object_members<'t>(
    text: &'t str,
    start: usize,
    mut member: impl FnMut(&'t str, usize) -> Result<usize, LayoutError>,
) -> Result<usize, LayoutError> {
    let bytes = text.as_bytes();
    let mut keys = json::KeySet::default();
    let mut pos = json::skip_ws(text, start + 1);
    if bytes.get(pos) == Some(&b'}') {
        return Ok(pos + 1);
    }
    loop {
        let key_end = json::string_end(text, pos)?;
        let colon = json::skip_ws(text, key_end);
        if bytes.get(colon) != Some(&b':') {
            return Err(syntax(colon, "expected `:` after the key").into());
        }
        if !keys.insert(&text[pos..key_end]) {
            return Err(json::duplicate_key(&text[pos..key_end], pos).into());
        }
        let value = json::skip_ws(text, colon + 1);
        let value_end = member(&text[pos..key_end], value)?;
        pos = json::skip_ws(text, value_end);
        match bytes.get(pos) {
            Some(b',') => pos = json::skip_ws(text, pos + 1),
            Some(b'}') => return Ok(pos + 1),
            _ => return Err(syntax(pos, "expected `,` or `}`").into()),
        }
    }
}

/// One pass over the whole file: checks its syntax and shape, and returns the heads of the
/// entries `keep` accepts, in order. `keep` sees every entry (and may be called from two
/// threads); nothing is returned unless the whole file is valid. A tagged file is read in
/// the tag of [`Selection::default`], which names none: see [`scan_in`].
pub fn scan<'t>(
    text: &'t str,
    keep: impl Fn(&TaskHead<'t>) -> bool + Sync,
) -> Result<(Layout, Vec<TaskHead<'t>>), LayoutError> {
    scan_in(text, &Selection::default(), keep)
}

/// [`scan`] in the tag and with the default agent of `selection`.
pub fn scan_in<'t>(
    text: &'t str,
    selection: &Selection,
    keep: impl Fn(&TaskHead<'t>) -> bool + Sync,
) -> Result<(Layout, Vec<TaskHead<'t>>), LayoutError> {
    let mut found = Found { heads: Vec::new(), statuses: Vec::new(), entries: None, shape: Default::default() };
    let layout = scan_found(text, selection, &keep, &mut found)?;
    Ok((layout, found.heads))
}

/// One entry of the task list as [`scan_index`] lists them all: where it is and its id,
/// borrowed from the text unless it holds escapes. 40 bytes, one per entry of the file, so
/// nothing else is kept: the few entries whose status a reader needs are read again with
/// [`head_at`].
#[derive(Debug, Clone, Default)]
pub struct Entry<'t> {
    pub span: Span,
    pub id: Option<Cow<'t, str>>,
}

/// [`scan_in`], also listing every entry (see [`Entry`]) in order: entry `i` of the file is
/// `entries[i]`. For readers that need every id (duplicates, what a dependency names) but
/// the heads of only a few entries. Of the entries `keep` does not accept but `status`
/// does, only the index and status are kept ([`Index::statuses`]): a head is 150 bytes.
pub fn scan_index<'t>(
    text: &'t str,
    selection: &Selection,
    keep: impl Fn(&TaskHead<'t>) -> bool + Sync,
    status: impl Fn(&TaskHead<'t>) -> bool + Sync,
) -> Result<Index<'t>, LayoutError> {
    // Room for an entry per 128 bytes (agents' entries are about 250): the list of a large
    // file is not copied as it grows, and the pages of the room it does not use are never
    // touched, so they cost no memory.
    let mut found = Found {
        heads: Vec::new(),
        statuses: Vec::new(),
        entries: Some(Vec::with_capacity(text.len() / 128)),
        shape: Default::default(),
    };
    let layout = scan_found(text, selection, &KeepOrStatus { keep, status }, &mut found)?;
    Ok(Index { layout, heads: found.heads, statuses: found.statuses, entries: found.entries.unwrap_or_default() })
}

/// What [`scan_index`] found.
#[derive(Debug)]
pub struct Index<'t> {
    pub layout: Layout,
    /// The heads of the entries `keep` accepted, in order.
    pub heads: Vec<TaskHead<'t>>,
    /// The index and status of the entries only `status` accepted, in order.
    pub statuses: Vec<(usize, Option<Cow<'t, str>>)>,
    /// Every entry, in order.
    pub entries: Vec<Entry<'t>>,
}

/// What a walk keeps of an entry.
pub(crate) enum Picked {
    Head,
    /// Its index and status only.
    Status,
    No,
}

/// Decides what a walk keeps of each entry; a `keep` predicate keeps heads or nothing. Called
/// from two threads when a large file is split between them.
pub(crate) trait Pick<'t>: Sync {
    fn pick(&self, head: &TaskHead<'t>) -> Picked;
}

impl<'t, F: Fn(&TaskHead<'t>) -> bool + Sync> Pick<'t> for F {
    fn pick(&self, head: &TaskHead<'t>) -> Picked {
        if self(head) { Picked::Head } else { Picked::No }
    }
}

/// The head where `keep` accepts, else the status where `status` does.
struct KeepOrStatus<K, S> {
    keep: K,
    status: S,
}

impl<'t, K: Fn(&TaskHead<'t>) -> bool + Sync, S: Fn(&TaskHead<'t>) -> bool + Sync> Pick<'t> for KeepOrStatus<K, S> {
    fn pick(&self, head: &TaskHead<'t>) -> Picked {
        if (self.keep)(head) {
            Picked::Head
        } else if (self.status)(head) {
            Picked::Status
        } else {
            Picked::No
        }
    }
}

/// The head of the entry at `span` (an entry [`scan_index`] listed at `index`), read as the
/// scan read it, for the few entries that are looked at after the scan.
pub fn head_at<'t>(text: &'t str, layout: &Layout, selection: &Selection, index: usize, span: Span) -> TaskHead<'t> {
    let mut head = TaskHead { index, span, ..TaskHead::default() };
    let taskmaster = layout.taskmaster();
    // The array's level of nesting, as the scan walked it.
    let depth = if taskmaster {
        3
    } else if layout.wrapped {
        2
    } else {
        1
    };
    if text.as_bytes().get(span.start) == Some(&b'{') {
        // The whole file was valid when it was scanned, so the checked walk only reads.
        let _ = entry_members_checked(text, span.start, depth + 1, taskmaster, &mut head);
    }
    let dialect = Dialect { taskmaster, default_agent: selection.default_agent.as_deref() };
    dialect.finish(&mut head);
    head
}

/// What a walk collects: the heads `keep` accepts, the statuses of those it picks for their
/// status alone ([`Picked::Status`]), and every entry when asked.
struct Found<'t> {
    heads: Vec<TaskHead<'t>>,
    statuses: Vec<(usize, Option<Cow<'t, str>>)>,
    entries: Option<Vec<Entry<'t>>>,
    /// The shape of the array walked, for an append (see [`Layout::shape`]).
    shape: edit::ArrayShape,
}

fn scan_found<'t>(
    text: &'t str,
    selection: &Selection,
    keep: &impl Pick<'t>,
    kept: &mut Found<'t>,
) -> Result<Layout, LayoutError> {
    let bytes = text.as_bytes();
    let start = json::skip_ws(text, 0);
    let own = Dialect { taskmaster: false, default_agent: None };
    let theirs = Dialect { taskmaster: true, default_agent: selection.default_agent.as_deref() };
    match bytes.get(start) {
        Some(b'[') => {
            let end = scan_array(text, start, 1, own, keep, kept)?;
            check_trailing(text, end)?;
            Ok(Layout { array_start: start, wrapped: false, tag: None, shape: Some(kept.shape) })
        }
        Some(b'{') => {
            let mut array_start = None;
            let mut tagged = None;
            let mut tag_names: Vec<String> = Vec::new();
            let wanted = selection.tag.as_deref().ok();
            let end = object_members(text, start, |raw_key, value| {
                let key = json::decode_string(raw_key);
                if key == "tasks" {
                    if bytes.get(value) != Some(&b'[') {
                        json::value_end_depth(text, value, 1)?;
                        return Err(LayoutError::Shape("`tasks` must be an array".to_owned()));
                    }
                    array_start = Some(value);
                    return Ok(scan_array(text, value, 2, own, keep, kept)?);
                }
                if bytes.get(value) != Some(&b'{') {
                    return Ok(json::value_end_depth(text, value, 1)?);
                }
                if tag_names.len() <= TAGS_NAMED {
                    tag_names.push(key.clone().into_owned());
                }
                if wanted != Some(key.as_ref()) {
                    return Ok(json::value_end_depth(text, value, 1)?);
                }
                let key_start = raw_key.as_ptr() as usize - text.as_ptr() as usize;
                let mut tag_array = None;
                let end = object_members(text, value, |raw_key, value| {
                    if json::decode_string(raw_key) != "tasks" {
                        return Ok(json::value_end_depth(text, value, 2)?);
                    }
                    if bytes.get(value) != Some(&b'[') {
                        json::value_end_depth(text, value, 2)?;
                        return Err(LayoutError::Shape(format!("`tasks` of the tag `{key}` must be an array")));
                    }
                    tag_array = Some(value);
                    Ok(scan_array(text, value, 3, theirs, keep, kept)?)
                })?;
                let Some(tag_array) = tag_array else {
                    return Err(LayoutError::Shape(format!("the tag `{key}` has no `tasks` array")));
                };
                tagged = Some((tag_array, Span { start: key_start, end: key_start + raw_key.len() }));
                Ok(end)
            })?;
            check_trailing(text, end)?;
            match (array_start, tagged) {
                (Some(array_start), None) => {
                    Ok(Layout { array_start, wrapped: true, tag: None, shape: Some(kept.shape) })
                }
                (None, Some((array_start, tag))) => {
                    Ok(Layout { array_start, wrapped: false, tag: Some(tag), shape: Some(kept.shape) })
                }
                (Some(_), Some(_)) => Err(LayoutError::Shape(format!(
                    "the top-level object has both a `tasks` array and the Task Master tag `{}`; keep one",
                    wanted.unwrap_or_default()
                ))),
                (None, None) if !tag_names.is_empty() => {
                    let mut names: Vec<String> = tag_names.iter().take(TAGS_NAMED).map(|t| format!("`{t}`")).collect();
                    if tag_names.len() > TAGS_NAMED {
                        names.push("...".to_owned());
                    }
                    let why = match &selection.tag {
                        Ok(tag) => format!("the Task Master tag `{tag}` is not in the file"),
                        Err(why) => why.clone(),
                    };
                    Err(LayoutError::Shape(format!(
                        "the top-level object has no `tasks` array, and {why} (its tags: {}); set `paths.tasks_tag`",
                        names.join(", ")
                    )))
                }
                (None, None) => Err(LayoutError::Shape("the top-level object has no `tasks` array".to_owned())),
            }
        }
        _ => {
            json::root(text)?;
            Err(LayoutError::Shape("the top level must be an object with a `tasks` array, or an array".to_owned()))
        }
    }
}

fn check_trailing(text: &str, end: usize) -> Result<(), SyntaxError> {
    let rest = json::skip_ws(text, end);
    if rest == text.len() { Ok(()) } else { Err(syntax(rest, "expected end of file after the JSON value")) }
}

/// How the entries of the array are read: opsflow's own, or Task Master's with the tag's
/// default agent.
#[derive(Debug, Clone, Copy)]
struct Dialect<'s> {
    taskmaster: bool,
    default_agent: Option<&'s str>,
}

impl Dialect<'_> {
    /// Completes a head walked in this dialect: a Task Master entry's status in opsflow's
    /// words, and its agent the default one when it names none.
    fn finish(&self, head: &mut TaskHead<'_>) {
        if !self.taskmaster {
            return;
        }
        head.taskmaster = true;
        let effective = taskmaster::effective_status(head.status.as_deref(), head.fine_status.as_deref());
        if effective != head.status.as_deref() {
            head.status = effective.map(|s| Cow::Owned(s.to_owned()));
        }
        if head.agent.is_none() {
            head.agent = self.default_agent.map(|a| Cow::Owned(a.to_owned()));
        }
    }
}

/// How a walk over the entries of the task array ended.
enum Walk {
    /// Reached the closing bracket; the array ends before this offset.
    Closed(usize),
    /// Reached `stop_at` as the start of an entry, after this many entries.
    Stopped(usize),
}

/// Walks the entries of the task array from the entry starting at `pos` (the `index`-th),
/// entry members included, until the closing bracket or the entry starting at `stop_at`.
/// The array is the `depth`-th level of nesting (1 for a bare array), its entries of `dialect`.
fn walk<'t>(
    text: &'t str,
    mut pos: usize,
    mut index: usize,
    (depth, dialect): (usize, Dialect<'_>),
    stop_at: Option<usize>,
    keep: &impl Pick<'t>,
    found: &mut Found<'t>,
) -> Result<Walk, SyntaxError> {
    let bytes = text.as_bytes();
    loop {
        if stop_at == Some(pos) {
            return Ok(Walk::Stopped(index));
        }
        let mut head = TaskHead { index, ..TaskHead::default() };
        let end = if bytes.get(pos) == Some(&b'{') {
            match entry_members(text, pos, depth + 1, dialect.taskmaster, &mut head) {
                Some(end) => end,
                None => {
                    head = TaskHead { index, ..TaskHead::default() };
                    entry_members_checked(text, pos, depth + 1, dialect.taskmaster, &mut head)?
                }
            }
        } else {
            json::value_end_depth(text, pos, depth)?
        };
        head.span = Span { start: pos, end };
        found.shape.note(head.span);
        dialect.finish(&mut head);
        if let Some(entries) = &mut found.entries {
            entries.push(Entry { span: head.span, id: head.id.clone() });
        }
        match keep.pick(&head) {
            Picked::Head => found.heads.push(head),
            Picked::Status => found.statuses.push((head.index, head.status)),
            Picked::No => {}
        }
        pos = json::skip_ws(text, end);
        match bytes.get(pos) {
            Some(b',') => pos = json::skip_ws(text, pos + 1),
            Some(b']') => return Ok(Walk::Closed(pos + 1)),
            _ => return Err(syntax(pos, "expected `,` or `]` in the task list")),
        }
        index += 1;
    }
}

/// How many keys of an entry the fast walk checks for duplicates in place (tasks have about
/// ten); an entry with more takes the checked walk, which keeps a set.
const INLINE_KEYS: usize = 24;

/// The slot of `head` that a member with this key (without its quotes) fills, if any.
#[inline(always)]
fn slot<'h, 't>(head: &'h mut TaskHead<'t>, key: &[u8]) -> Option<&'h mut Option<Cow<'t, str>>> {
    match key {
        b"id" => Some(&mut head.id),
        b"agent" => Some(&mut head.agent),
        b"type" => Some(&mut head.kind),
        b"status" => Some(&mut head.status),
        b"opsflow_status" => Some(&mut head.fine_status),
        _ => None,
    }
}

/// Walks the members of the entry object at `pos`, filling the key fields of `head`, and
/// returns the end of the object; `None` when the entry is not valid JSON, for
/// [`entry_members_checked`] to say why. This is the loop every byte of a task list goes
/// through, so it works on bytes and decodes only the strings that have escapes. The entry
/// is the `depth`-th level of nesting. Duplicate keys are looked for among the first
/// [`INLINE_KEYS`] plain keys; an entry with more, or with escaped keys, takes the checked walk.
#[inline]
fn entry_members<'t>(
    text: &'t str,
    pos: usize,
    depth: usize,
    taskmaster: bool,
    head: &mut TaskHead<'t>,
) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = json::skip_ws(text, pos + 1);
    if *bytes.get(i)? == b'}' {
        return Some(i + 1);
    }
    let mut seen: [&[u8]; INLINE_KEYS] = [&[]; INLINE_KEYS];
    let mut count = 0;
    loop {
        let (key_end, key_escaped) = json::closing_quote_escaped(bytes, i)?;
        let key = &bytes[i + 1..key_end - 1];
        if key_escaped || count == INLINE_KEYS || seen[..count].contains(&key) {
            return None;
        }
        seen[count] = key;
        count += 1;
        i = json::skip_ws(text, key_end);
        if *bytes.get(i)? != b':' {
            return None;
        }
        let value = json::skip_ws(text, i + 1);
        i = match slot(head, key) {
            Some(slot) if bytes.get(value) == Some(&b'"') => {
                let (end, escaped) = json::closing_quote_escaped(bytes, value)?;
                let raw = &text[value..end];
                *slot = Some(if escaped { json::decode_string(raw) } else { Cow::Borrowed(&raw[1..raw.len() - 1]) });
                end
            }
            slot => {
                let end = match bytes.get(value) {
                    Some(b'"') => json::closing_quote(bytes, value)?,
                    _ => json::value_end_depth(text, value, depth).ok()?,
                };
                if let Some(slot) = slot {
                    *slot = number_id(text, key, value, end, taskmaster);
                }
                end
            }
        };
        i = json::skip_ws(text, i);
        match *bytes.get(i)? {
            b',' => i = json::skip_ws(text, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The `id` of a Task Master entry that is an integer, as its digits (`None` for any other
/// value, and in opsflow's own files, where an id is a string).
fn number_id<'t>(text: &'t str, key: &[u8], start: usize, end: usize, taskmaster: bool) -> Option<Cow<'t, str>> {
    let raw = &text[start..end];
    (taskmaster && key == b"id" && !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .then_some(Cow::Borrowed(raw))
}

/// [`entry_members`] through [`json::Members`], which says what is wrong: run when the fast
/// walk fails.
#[cold]
fn entry_members_checked<'t>(
    text: &'t str,
    pos: usize,
    depth: usize,
    taskmaster: bool,
    head: &mut TaskHead<'t>,
) -> Result<usize, SyntaxError> {
    let mut members = json::Members::with_depth(text, pos, depth);
    for member in &mut members {
        let member = member?;
        let raw_key = member.key.of(text);
        let key = &raw_key.as_bytes()[1..raw_key.len() - 1];
        if let Some(slot) = slot(head, key) {
            *slot = string_value(text, &member)
                .or_else(|| number_id(text, key, member.value.start, member.value.end, taskmaster));
        }
    }
    Ok(members.end)
}

/// A likely start of an entry at or after `from`: a `{` that follows `}` and `,` with only
/// whitespace between. Only a guess: the text could be inside a string.
fn entry_boundary_after(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let limit = (from + 1024 * 1024).min(bytes.len());
    let mut at = from;
    while at < limit {
        let comma = at + bytes[at..limit].iter().position(|&b| b == b',')?;
        let before = bytes[..comma].iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
        let after = json::skip_ws(text, comma + 1);
        if bytes[before] == b'}' && bytes.get(after) == Some(&b'{') {
            return Some(after);
        }
        at = comma + 1;
    }
    None
}

/// Walks the array at `start` in one pass, entry members included; returns its end.
///
/// A large array is split between two threads: the second starts at a guessed entry boundary
/// in the middle, the first walks from the beginning. The second thread's work counts only if
/// the first one reaches the guessed offset as the start of an entry, which is exactly the
/// state the second one assumed; otherwise the first walks on to the end alone. Either way
/// every byte is validated by a walk that started from a known state.
/// Walks the task array at `start`; its shape is left in `kept.shape` (see [`Layout::shape`]).
fn scan_array<'t>(
    text: &'t str,
    start: usize,
    depth: usize,
    dialect: Dialect<'_>,
    keep: &impl Pick<'t>,
    kept: &mut Found<'t>,
) -> Result<usize, SyntaxError> {
    kept.shape = edit::ArrayShape::default();
    let end = scan_array_walk(text, start, depth, dialect, keep, kept)?;
    kept.shape.end = end;
    Ok(end)
}

fn scan_array_walk<'t>(
    text: &'t str,
    start: usize,
    depth: usize,
    dialect: Dialect<'_>,
    keep: &impl Pick<'t>,
    kept: &mut Found<'t>,
) -> Result<usize, SyntaxError> {
    let bytes = text.as_bytes();
    let first = json::skip_ws(text, start + 1);
    if bytes.get(first) == Some(&b']') {
        return Ok(first + 1);
    }
    let guess = (text.len() - start >= PARALLEL_MIN_BYTES)
        .then(|| entry_boundary_after(text, start + (text.len() - start) / 2))
        .flatten()
        .filter(|&guess| guess > first);
    let Some(guess) = guess else {
        return match walk(text, first, 0, (depth, dialect), None, keep, kept)? {
            Walk::Closed(end) => Ok(end),
            Walk::Stopped(_) => unreachable!("no stop was asked for"),
        };
    };
    std::thread::scope(|scope| {
        let entries = kept.entries.is_some();
        let second = scope.spawn(move || {
            // As in `scan_index`: room for an entry per 128 bytes of its half.
            let room = (text.len() - guess) / 128;
            let mut found = Found {
                heads: Vec::new(),
                statuses: Vec::new(),
                entries: entries.then(|| Vec::with_capacity(room)),
                shape: Default::default(),
            };
            let walked = walk(text, guess, 0, (depth, dialect), None, keep, &mut found);
            (walked, found)
        });
        match walk(text, first, 0, (depth, dialect), Some(guess), keep, kept)? {
            Walk::Closed(end) => Ok(end),
            Walk::Stopped(count) => {
                let (walked, found) = match second.join() {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                kept.heads.extend(found.heads.into_iter().map(|mut head| {
                    head.index += count;
                    head
                }));
                kept.statuses.extend(found.statuses.into_iter().map(|(index, status)| (index + count, status)));
                if let (Some(all), Some(more)) = (&mut kept.entries, found.entries) {
                    all.extend(more);
                }
                kept.shape = kept.shape.then(found.shape);
                match walked? {
                    Walk::Closed(end) => Ok(end),
                    Walk::Stopped(_) => unreachable!("no stop was asked for"),
                }
            }
        }
    })
}

/// Edits to apply to `tasks.json` in one write.
#[derive(Debug, Clone, Default)]
pub struct TaskEdits {
    /// Field changes per task id.
    pub updates: Vec<(String, Vec<FieldOp>)>,
    /// New entries, appended in order.
    pub appends: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("no task has the id `{0}`")]
    NoSuchTask(String),
    #[error("the id `{id}` is used by more than one task (entries {first} and {second}); fix tasks.json first")]
    DuplicateId { id: String, first: usize, second: usize },
    #[error("entry {index} (id `{id}`) is not an object")]
    NotAnObject { id: String, index: usize },
    #[error(
        "Task Master does not know the status `{0}`, and opsflow has no mapping for it; Task Master's statuses are {list}",
        list = taskmaster::STATUSES.map(|s| format!("`{s}`")).join(", ")
    )]
    UnknownToTaskMaster(String),
    #[error("{0}")]
    Layout(String),
}

/// Field changes of a Task Master entry, as its file takes them: a status in its words, with
/// opsflow's finer one in [`taskmaster::FINE_STATUS_FIELD`] (removed when the status says it
/// all), and `depends_on` as `dependencies`.
fn taskmaster_ops(ops: &[FieldOp]) -> Result<Vec<FieldOp>, EditError> {
    let mut out = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        match op {
            FieldOp::Set(key, value) if key == "status" => {
                let status = value.as_str().unwrap_or_default();
                let written = taskmaster::written_status(status)
                    .ok_or_else(|| EditError::UnknownToTaskMaster(status.to_owned()))?;
                out.push(FieldOp::Set(key.clone(), Value::String(written.to_owned())));
                out.push(if taskmaster::is_fine(status) {
                    FieldOp::Set(taskmaster::FINE_STATUS_FIELD.to_owned(), value.clone())
                } else {
                    FieldOp::Remove(taskmaster::FINE_STATUS_FIELD.to_owned())
                });
            }
            FieldOp::Set(key, value) if key == "depends_on" => {
                let entry = taskmaster::to_taskmaster(serde_json::json!({ "depends_on": value }));
                out.push(FieldOp::Set("dependencies".to_owned(), entry["dependencies"].clone()));
            }
            other => out.push(other.clone()),
        }
    }
    Ok(out)
}

/// Finds the single entry with `id`.
pub fn find<'t>(heads: &'t [TaskHead<'t>], id: &str) -> Result<&'t TaskHead<'t>, EditError> {
    let mut found = heads.iter().filter(|h| h.id.as_deref() == Some(id));
    let first = found.next().ok_or_else(|| EditError::NoSuchTask(id.to_owned()))?;
    if let Some(second) = found.next() {
        return Err(EditError::DuplicateId { id: id.to_owned(), first: first.index, second: second.index });
    }
    Ok(first)
}

/// The heads of the entries whose id is one of `ids` (every occurrence, so duplicates show),
/// in one pass that keeps nothing else.
pub fn scan_ids<'t>(text: &'t str, ids: &[&str]) -> Result<(Layout, Vec<TaskHead<'t>>), LayoutError> {
    scan_ids_in(text, &Selection::default(), ids)
}

/// [`scan_ids`] in the tag of `selection`.
pub fn scan_ids_in<'t>(
    text: &'t str,
    selection: &Selection,
    ids: &[&str],
) -> Result<(Layout, Vec<TaskHead<'t>>), LayoutError> {
    scan_in(text, selection, |head| head.id.as_deref().is_some_and(|id| ids.contains(&id)))
}

fn layout_error(error: LayoutError) -> EditError {
    match error {
        LayoutError::Syntax(e) => EditError::Layout(e.to_string()),
        LayoutError::Shape(s) => EditError::Layout(s),
    }
}

/// The splices that apply `edits` to the text of `tasks.json`, given the layout and the heads
/// of (at least) the edited entries.
pub fn splices_for(
    text: &str,
    layout: Layout,
    heads: &[TaskHead<'_>],
    edits: &TaskEdits,
) -> Result<Vec<Splice>, EditError> {
    let style = Style::detect(text);
    let mut splices: Vec<Splice> = Vec::new();
    for (id, ops) in &edits.updates {
        let head = find(heads, id)?;
        if text.as_bytes()[head.span.start] != b'{' {
            return Err(EditError::NotAnObject { id: id.clone(), index: head.index });
        }
        let ops = if layout.taskmaster() { Cow::Owned(taskmaster_ops(ops)?) } else { Cow::Borrowed(ops) };
        splices.extend(
            edit::edit_object(text, head.span.start, &ops, &style).map_err(|e| EditError::Layout(e.to_string()))?,
        );
    }
    let appends = if layout.taskmaster() {
        Cow::Owned(edits.appends.iter().cloned().map(taskmaster::to_taskmaster).collect())
    } else {
        Cow::Borrowed(&edits.appends)
    };
    match &layout.shape {
        Some(shape) => splices.extend(edit::append_elements_in(text, layout.array_start, shape, &appends, &style)),
        None => splices.extend(
            edit::append_elements(text, layout.array_start, &appends, &style)
                .map_err(|e| EditError::Layout(e.to_string()))?,
        ),
    }
    Ok(splices)
}

/// The splices that apply `edits`, in one scan of the file.
pub fn splices(text: &str, edits: &TaskEdits) -> Result<Vec<Splice>, EditError> {
    let ids: Vec<&str> = edits.updates.iter().map(|(id, _)| id.as_str()).collect();
    let (layout, heads) = scan_ids(text, &ids).map_err(layout_error)?;
    splices_for(text, layout, &heads, edits)
}

/// Applies `edits` to the text of `tasks.json`, touching nothing else.
pub fn apply(text: &str, edits: &TaskEdits) -> Result<String, EditError> {
    Ok(edit::apply(text, splices(text, edits)?))
}

/// A fresh `tasks.json` holding `tasks`, in the wrapped form with two-space indentation.
pub fn new_file(tasks: &[Value]) -> String {
    let mut text =
        serde_json::to_string_pretty(&serde_json::json!({ "tasks": tasks })).expect("a Value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = r#"{
  "version": 3,
  "tasks": [
    {"id": "A", "agent": "DevOps-Engineer", "type": "deployment_staging", "status": "pending"},
    {
        "status":"done", "id":"B",
        "agent": "Backend", "x": {"nested": ["ok"]}
    }
  ]
}
"#;

    #[test]
    fn heads_read_key_fields_only() {
        let (layout, heads) = heads(FILE).unwrap();
        assert!(layout.wrapped);
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1].id.as_deref(), Some("B"));
        assert_eq!(heads[1].kind, None);
        assert_eq!(heads[0].value(FILE)["type"], "deployment_staging");
    }

    #[test]
    fn update_and_append_touch_nothing_else() {
        let edits = TaskEdits {
            updates: vec![("B".into(), vec![FieldOp::Set("status".into(), json!("failed"))])],
            appends: vec![json!({"id": "C"})],
        };
        let out = apply(FILE, &edits).unwrap();
        let expected = FILE.replace("\"status\":\"done\"", "\"status\":\"failed\"").replace(
            "\"x\": {\"nested\": [\"ok\"]}\n    }",
            "\"x\": {\"nested\": [\"ok\"]}\n    },\n    {\n        \"id\": \"C\"\n    }",
        );
        assert_eq!(out, expected);
    }

    /// A task list over the parallel threshold whose descriptions contain text that looks like
    /// an entry boundary (`}, {`), so some guesses land inside strings.
    fn big_list(entries: usize) -> String {
        let mut text = String::from("{\"tasks\": [\n");
        for i in 0..entries {
            let agent = if i % 7 == 0 { "DevOps-Engineer" } else { "Backend" };
            let description =
                if i % 2 == 0 { "looks like }, { a boundary" } else { "plain text with an escape \\\" and more" };
            text.push_str(&format!(
                "  {{\"id\": \"T-{i}\", \"agent\": \"{agent}\", \"type\": \"deployment_x\", \"status\": \"pending\", \"description\": \"{description} {}\"}}{}\n",
                "x".repeat(i % 300),
                if i + 1 == entries { "" } else { "," }
            ));
        }
        text.push_str("]}\n");
        text
    }

    #[test]
    fn the_two_thread_scan_agrees_with_a_parser() {
        let text = big_list(40_000);
        assert!(text.len() > PARALLEL_MIN_BYTES, "{}", text.len());
        let (_, kept) = scan(&text, |head| head.agent.as_deref() == Some("DevOps-Engineer")).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let expected: Vec<(usize, String)> = parsed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, t)| t["agent"] == "DevOps-Engineer")
            .map(|(i, t)| (i, t["id"].as_str().unwrap().to_owned()))
            .collect();
        let found: Vec<(usize, String)> = kept.iter().map(|h| (h.index, h.id.clone().unwrap().into_owned())).collect();
        assert_eq!(found, expected);
        for head in &kept {
            assert_eq!(head.value(&text)["id"], head.id.as_deref().unwrap());
        }
    }

    /// `scan_index` keeps a head where `keep` accepts and only the status where `status` alone
    /// does, with the indexes of the file, whichever thread walked the entry.
    #[test]
    fn an_index_scan_keeps_heads_or_statuses_as_picked_on_both_threads() {
        let text = big_list(40_000).replace(
            "\"status\": \"pending\", \"description\": \"plain",
            "\"status\": \"done\", \"description\": \"plain",
        );
        assert!(text.len() > PARALLEL_MIN_BYTES, "{}", text.len());
        let devops = |head: &TaskHead| head.agent.as_deref() == Some("DevOps-Engineer");
        let pending = |head: &TaskHead| head.status.as_deref() == Some("pending");
        let index = scan_index(&text, &Selection::default(), |h| devops(h) && pending(h), devops).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let tasks = parsed["tasks"].as_array().unwrap();
        let of = |agent_pending: bool| -> Vec<(usize, String)> {
            let entries = tasks.iter().enumerate().filter(|(_, t)| t["agent"] == "DevOps-Engineer");
            entries
                .filter(|(_, t)| (t["status"] == "pending") == agent_pending)
                .map(|(i, t)| (i, t["status"].as_str().unwrap().to_owned()))
                .collect()
        };
        let heads: Vec<(usize, String)> =
            index.heads.iter().map(|h| (h.index, h.status.as_deref().unwrap().to_owned())).collect();
        let statuses: Vec<(usize, String)> =
            index.statuses.iter().map(|(i, s)| (*i, s.as_deref().unwrap().to_owned())).collect();
        assert_eq!(heads, of(true));
        assert_eq!(statuses, of(false));
        assert!(!heads.is_empty() && !statuses.is_empty());
        assert!(heads.last().unwrap().0 > tasks.len() / 2 && statuses.last().unwrap().0 > tasks.len() / 2);
        assert_eq!(index.entries.len(), tasks.len());
    }

    /// An append takes the array's shape from the scan instead of walking the array again: the
    /// shape must be the one a walk finds, for every layout and on both threads of a large scan.
    #[test]
    fn the_scan_knows_the_array_shape_an_append_would_walk_for() {
        let big = big_list(40_000);
        let texts = [
            "[]".to_owned(),
            "[ ]\n".to_owned(),
            r#"[{"id": "A"}]"#.to_owned(),
            "[\n  {\"id\": \"A\"},\n  {\"id\": \"B\"}\n]\n".to_owned(),
            r#"{"tasks": [{"id": "A"}, {"id": "B"}, {"id": "C"}], "meta": {"x": [1, 2]}}"#.to_owned(),
            r#"{"master": {"tasks": [{"id": 1, "title": "t", "status": "pending"}, {"id": 2, "title": "u", "status": "done"}]}}"#.to_owned(),
            r#"{"tasks": []}"#.to_owned(),
            big.clone(),
            big_list(3),
        ];
        for text in &texts {
            let selection = Selection { tag: Ok("master".to_owned()), default_agent: None };
            let (layout, _) = scan_in(text, &selection, |_| false).unwrap();
            let walked = edit::ArrayShape::of(text, layout.array_start).unwrap();
            assert_eq!(layout.shape, Some(walked), "{}", &text[..text.len().min(200)]);
            // And an append from it writes what the walking append writes.
            let task = serde_json::json!({"id": "NEW", "status": "pending"});
            let style = Style::detect(text);
            let known =
                edit::append_elements_in(text, layout.array_start, &walked, std::slice::from_ref(&task), &style);
            let walking = edit::append_elements(text, layout.array_start, &[task], &style).unwrap();
            assert_eq!(edit::apply(text, known), edit::apply(text, walking));
        }
        let (layout, _) = scan(&big, |_| false).unwrap();
        let shape = layout.shape.unwrap();
        assert_eq!(shape.last.map(|s| &big[s.start..s.start + 16]), Some(r#"{"id": "T-39999""#));
    }

    #[test]
    fn the_two_thread_scan_finds_errors_in_either_half() {
        let text = big_list(40_000);
        let broken_late = text.replacen("\"T-39990\", \"agent\"", "\"T-39990\" \"agent\"", 1);
        assert!(matches!(scan(&broken_late, |_| true), Err(LayoutError::Syntax(_))));
        let broken_early = text.replacen("\"T-10\", \"agent\"", "\"T-10\" \"agent\"", 1);
        assert!(matches!(scan(&broken_early, |_| true), Err(LayoutError::Syntax(_))));
        let truncated = &text[..text.len() - 10];
        assert!(matches!(scan(truncated, |_| true), Err(LayoutError::Syntax(_))));
        // A boundary-looking sequence inside a string just before the middle makes the guess wrong.
        let (_, all) = scan(&text, |_| true).unwrap();
        assert_eq!(all.len(), 40_000);
        assert!(all.iter().enumerate().all(|(i, h)| h.index == i));
    }

    #[test]
    fn the_fast_entry_walk_reads_what_the_checked_one_reads() {
        let entries = [
            r#"{}"#,
            r#"{ "id" : "A", "agent":"x", "type": "deployment_x", "status": "pending" }"#,
            r#"{"id": "\u0041\"B", "agent": "Dev\u004fps", "nested": {"id": "not me", "a": [1, {"b": null}]}}"#,
            "{\n\t\"title\": \"tabs\\tand \\\"quotes\\\"\",\n\t\"id\": \"T\"\r\n}",
            r#"{"status": "done", "x": -1.5e3, "y": true, "z": false, "agent": "last"}"#,
            r#"{"id": 12, "status": "in-progress", "opsflow_status": "failed", "dependencies": [1, "3.2"]}"#,
        ];
        for entry in entries {
            let mut fast = TaskHead::default();
            let mut checked = TaskHead::default();
            for taskmaster in [false, true] {
                let end = entry_members(entry, 0, 3, taskmaster, &mut fast);
                assert_eq!(end, Some(entry.len()), "{entry}");
                assert_eq!(entry_members_checked(entry, 0, 3, taskmaster, &mut checked), Ok(entry.len()), "{entry}");
                let fields =
                    |h: &TaskHead| [&h.id, &h.agent, &h.kind, &h.status].map(|f| f.as_deref().map(str::to_owned));
                assert_eq!(fields(&fast), fields(&checked), "{entry}");
            }
        }
        for broken in [
            r#"{"id": "first", "id": "second"}"#,
            r#"{"id": "A",}"#,
            r#"{"id" "A"}"#,
            r#"{"id": "A""#,
            r#"{id: "A"}"#,
            "{\"id\": \"A\tB\"}",
        ] {
            assert_eq!(entry_members(broken, 0, 3, false, &mut TaskHead::default()), None, "{broken}");
            assert!(entry_members_checked(broken, 0, 3, false, &mut TaskHead::default()).is_err(), "{broken}");
        }
    }

    const TAGGED: &str = r#"{
  "master": {
    "tasks": [
      {"id": 1, "title": "a", "status": "done", "dependencies": []},
      {"id": 2, "title": "b", "status": "in-progress", "dependencies": [1, "1.2"], "agent": "devops", "type": "deployment_staging"}
    ],
    "metadata": {"created": "2026-01-01T00:00:00.000Z"}
  },
  "feature-x": {"tasks": [{"id": "1", "title": "c", "status": "pending"}], "metadata": {}}
}"#;

    #[test]
    fn a_tagged_file_is_read_in_the_chosen_tag_with_numeric_ids_and_task_masters_statuses() {
        let (layout, heads) = scan_in(TAGGED, &Selection::tag("master"), |_| true).unwrap();
        assert!(layout.taskmaster() && !layout.wrapped);
        assert_eq!(layout.prefix(TAGGED), "/master/tasks");
        let read: Vec<_> = heads.iter().map(|h| (h.id.as_deref().unwrap(), h.status.as_deref().unwrap())).collect();
        assert_eq!(read, [("1", "done"), ("2", "in_progress")]);
        assert_eq!(heads[1].value(TAGGED)["depends_on"], serde_json::json!(["1", "1.2"]));
        let (layout, heads) = scan_in(TAGGED, &Selection::tag("feature-x"), |_| true).unwrap();
        assert_eq!(layout.prefix(TAGGED), "/feature-x/tasks");
        assert_eq!(heads.len(), 1);
        // With no tag chosen, or one the file lacks, the error names the tags there are.
        for selection in [Selection::default(), Selection::tag("release")] {
            let Err(LayoutError::Shape(why)) = scan_in(TAGGED, &selection, |_| true) else { panic!() };
            assert!(why.contains("`master`, `feature-x`") && why.contains("paths.tasks_tag"), "{why}");
        }
        // The other tags are checked as JSON too: a broken byte anywhere is an error.
        let broken = TAGGED.replace(r#""metadata": {}"#, r#""metadata": {,}"#);
        assert!(matches!(scan_in(&broken, &Selection::tag("master"), |_| true), Err(LayoutError::Syntax(_))));
    }

    #[test]
    fn edits_of_a_task_master_entry_write_its_statuses_and_leave_the_other_tags_alone() {
        let (layout, heads) = scan_in(TAGGED, &Selection::tag("master"), |_| true).unwrap();
        let edits = TaskEdits {
            updates: vec![("2".into(), vec![FieldOp::Set("status".into(), json!("deployed"))])],
            appends: vec![json!({"id": "3", "title": "d", "status": "pending", "depends_on": ["2"]})],
        };
        let out = edit::apply(TAGGED, splices_for(TAGGED, layout, &heads, &edits).unwrap());
        let before: Value = serde_json::from_str(TAGGED).unwrap();
        let after: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(after["feature-x"], before["feature-x"]);
        assert_eq!(after["master"]["metadata"], before["master"]["metadata"]);
        assert_eq!(after["master"]["tasks"][1]["status"], "done");
        assert_eq!(after["master"]["tasks"][1]["opsflow_status"], "deployed");
        assert_eq!(
            after["master"]["tasks"][2],
            json!({"id": 3, "title": "d", "status": "pending", "dependencies": [2]})
        );
        let (_, heads) = scan_in(&out, &Selection::tag("master"), |_| true).unwrap();
        assert_eq!(heads[1].status.as_deref(), Some("deployed"));
        let unknown = TaskEdits {
            updates: vec![("2".into(), vec![FieldOp::Set("status".into(), json!("shipped"))])],
            appends: vec![],
        };
        assert_eq!(
            splices_for(TAGGED, layout, &heads, &unknown),
            Err(EditError::UnknownToTaskMaster("shipped".into()))
        );
    }

    #[test]
    fn duplicate_and_missing_ids_are_refused() {
        let text = r#"[{"id": "A"}, {"id": "A"}]"#;
        let edits = TaskEdits { updates: vec![("A".into(), vec![])], appends: vec![] };
        assert!(matches!(apply(text, &edits), Err(EditError::DuplicateId { .. })));
        let edits = TaskEdits { updates: vec![("Z".into(), vec![])], appends: vec![] };
        assert_eq!(apply(text, &edits), Err(EditError::NoSuchTask("Z".into())));
    }
}
