//! A validating JSON scanner that works on byte spans instead of building a tree.
//!
//! The store edits `tasks.json` and `state.json` by splicing new bytes into the original
//! text, so it needs to know where each value starts and ends, not what the whole file
//! means. Every function here takes the text and a byte offset and returns offsets; nothing
//! allocates per value. Walking the members of every task this way visits each byte once,
//! which is what keeps `tasks list --mine` on a 100,000-task file fast and small.
//!
//! The hottest walks (to the end of a string here, over a task's members in `tasks.rs`) have
//! a fast form that returns `None` on any error, and a checked form, run only then, that says
//! what is wrong.
//!
//! The scanner accepts exactly what `serde_json` accepts, so that a span it passed can always
//! be decoded: numbers that overflow a 64-bit float, lone UTF-16 surrogates in `\u` escapes,
//! nesting of 128 levels or more, and (stricter than `serde_json`, which keeps the last)
//! duplicate keys in an object are all errors with an offset.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The deepest nesting accepted: `serde_json` refuses the 128th level of arrays and objects
/// (its recursion limit), and what it cannot decode the scanner must not pass.
pub const MAX_DEPTH: usize = 127;

/// A half-open byte range `[start, end)` in the scanned text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn of<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }
}

/// A syntax error at a byte offset; [`SyntaxError::line_col`] turns it into what users read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

impl SyntaxError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        SyntaxError { offset, message: message.into() }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

/// One-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut col_end = offset;
    while !text.is_char_boundary(col_end) {
        col_end -= 1;
    }
    let column = text[line_start..col_end].chars().count() + 1;
    (line, column)
}

/// One member of an object: the key (with its quotes) and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub key: Span,
    pub value: Span,
}

impl Member {
    /// The key's text, unescaped only when it has escapes.
    pub fn key<'t>(&self, text: &'t str) -> Cow<'t, str> {
        decode_string(self.key.of(text))
    }

    /// True when the key is `name`; cheap for the common case of a key without escapes.
    pub fn key_is(&self, text: &str, name: &str) -> bool {
        let raw = self.key.of(text);
        let inner = &raw[1..raw.len() - 1];
        if inner.contains('\\') { decode_string(raw) == name } else { inner == name }
    }
}

/// The first byte at or after `pos` that is not whitespace (or the end).
#[inline]
pub fn skip_ws(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = pos;
    while let Some(&byte) = bytes.get(i) {
        if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        i += 1;
        // Indentation: the spaces that follow are counted eight at a time, a zero byte of
        // `word ^ SPACES` for each space.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let other = u64::from_le_bytes(chunk.try_into().expect("eight bytes")) ^ SPACES;
            let spaces = (other.trailing_zeros() / 8) as usize;
            i += spaces;
            if spaces < 8 {
                break;
            }
        }
    }
    i
}

const SPACES: u64 = 0x2020_2020_2020_2020;

/// Checks that `text` is exactly one JSON value surrounded by whitespace and returns its span.
pub fn root(text: &str) -> Result<Span, SyntaxError> {
    let start = skip_ws(text, 0);
    if start == text.len() {
        return Err(SyntaxError::new(start, "expected a JSON value, found end of file"));
    }
    let end = value_end(text, start)?;
    let rest = skip_ws(text, end);
    if rest != text.len() {
        return Err(SyntaxError::new(rest, "expected end of file after the JSON value"));
    }
    Ok(Span { start, end })
}

/// The end of the value that starts at `pos` (which must not be whitespace).
pub fn value_end(text: &str, pos: usize) -> Result<usize, SyntaxError> {
    value_end_depth(text, pos, 0)
}

/// [`value_end`] for a value inside `depth` levels of arrays and objects.
pub(crate) fn value_end_depth(text: &str, pos: usize, depth: usize) -> Result<usize, SyntaxError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.get(pos) else {
        return Err(SyntaxError::new(pos, "expected a value, found end of file"));
    };
    match first {
        b'"' => string_end(text, pos),
        b'{' | b'[' => {
            if depth >= MAX_DEPTH {
                return Err(SyntaxError::new(
                    pos,
                    format!("nesting deeper than {MAX_DEPTH} levels of arrays and objects"),
                ));
            }
            if first == b'{' {
                let mut members = Members::with_depth(text, pos, depth + 1);
                for member in &mut members {
                    member?;
                }
                Ok(members.end)
            } else {
                let mut elements = Elements::with_depth(text, pos, depth + 1);
                for element in &mut elements {
                    element?;
                }
                Ok(elements.end)
            }
        }
        b't' => literal_end(text, pos, "true"),
        b'f' => literal_end(text, pos, "false"),
        b'n' => literal_end(text, pos, "null"),
        b'-' | b'0'..=b'9' => number_end(text, pos),
        _ => Err(SyntaxError::new(pos, format!("expected a value, found {}", describe(text, pos)))),
    }
}

fn describe(text: &str, pos: usize) -> String {
    match text[pos..].chars().next() {
        None => "end of file".to_owned(),
        Some(c) if c.is_control() => format!("control character U+{:04X}", c as u32),
        Some(c) => format!("`{c}`"),
    }
}

fn literal_end(text: &str, pos: usize, literal: &str) -> Result<usize, SyntaxError> {
    if text[pos..].starts_with(literal) {
        Ok(pos + literal.len())
    } else {
        Err(SyntaxError::new(pos, format!("expected `{literal}`")))
    }
}

fn number_end(text: &str, pos: usize) -> Result<usize, SyntaxError> {
    let bytes = text.as_bytes();
    let mut i = pos;
    if bytes[i] == b'-' {
        i += 1;
    }
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i),
        _ => return Err(SyntaxError::new(i, "expected a digit")),
    }
    if bytes.get(i) == Some(&b'.') {
        let after = digits(i + 1);
        if after == i + 1 {
            return Err(SyntaxError::new(after, "expected a digit after the decimal point"));
        }
        i = after;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let after = digits(i);
        if after == i {
            return Err(SyntaxError::new(after, "expected a digit in the exponent"));
        }
        i = after;
        return check_number_range(text, pos, i);
    }
    // Without an exponent only a very long integer part can overflow (past 308 digits).
    if i - pos > 300 {
        return check_number_range(text, pos, i);
    }
    Ok(i)
}

/// Refuses a number that `serde_json` refuses as out of range (one that overflows a 64-bit
/// float). Its own parser decides, so the two can never disagree on where the range ends.
#[cold]
fn check_number_range(text: &str, pos: usize, end: usize) -> Result<usize, SyntaxError> {
    match serde_json::from_str::<serde_json::Number>(&text[pos..end]) {
        Ok(_) => Ok(end),
        Err(_) => Err(SyntaxError::new(pos, "number out of range: it does not fit a 64-bit float")),
    }
}

/// The end (after the closing quote) of the string that starts at `pos`.
#[inline]
pub fn string_end(text: &str, pos: usize) -> Result<usize, SyntaxError> {
    match closing_quote(text.as_bytes(), pos) {
        Some(end) => Ok(end),
        None => string_end_checked(text, pos),
    }
}

/// The end of a valid string at `pos`, or `None`: the hot path, which leaves saying what is
/// wrong to [`string_end_checked`].
#[inline(always)]
pub(super) fn closing_quote(bytes: &[u8], pos: usize) -> Option<usize> {
    closing_quote_escaped(bytes, pos).map(|(end, _)| end)
}

/// [`closing_quote`], and whether the string has escapes (and so must be decoded).
#[inline(always)]
pub(super) fn closing_quote_escaped(bytes: &[u8], pos: usize) -> Option<(usize, bool)> {
    if bytes.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    let mut escaped = false;
    loop {
        i = skip_plain_string_bytes(bytes, i);
        match bytes.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match bytes.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => i += unicode_escape_len(bytes, i).ok()?,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// [`closing_quote`] with an error that says what is wrong: the same walk, run again when the
/// fast one fails.
#[cold]
#[inline(never)]
fn string_end_checked(text: &str, pos: usize) -> Result<usize, SyntaxError> {
    let bytes = text.as_bytes();
    if bytes.get(pos) != Some(&b'"') {
        return Err(SyntaxError::new(pos, format!("expected a string, found {}", describe(text, pos))));
    }
    let mut i = pos + 1;
    loop {
        i = skip_plain_string_bytes(bytes, i);
        match bytes.get(i) {
            None => return Err(SyntaxError::new(pos, "string is not closed before the end of file")),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match bytes.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => match unicode_escape_len(bytes, i) {
                    Ok(len) => i += len,
                    Err(message) => return Err(SyntaxError::new(i, message)),
                },
                _ => return Err(SyntaxError::new(i, "invalid escape in string")),
            },
            Some(_) => {
                let message = if bytes[i] == b'\n' {
                    "string is not closed before the end of the line".to_owned()
                } else {
                    format!("control character U+{:04X} inside a string", bytes[i])
                };
                return Err(SyntaxError::new(i, message));
            }
        }
    }
}

/// The four hex digits at `at` as a number.
#[inline]
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let hex = bytes.get(at..at + 4)?;
    hex.iter().try_fold(0u32, |n, &b| Some(n * 16 + char::from(b).to_digit(16)?))
}

/// The length of the `\u` escape whose backslash is at `i`: 6, or 12 for a surrogate pair.
/// A lone surrogate is an error, as in `serde_json`, which cannot decode it into a string.
#[inline]
fn unicode_escape_len(bytes: &[u8], i: usize) -> Result<usize, &'static str> {
    let Some(unit) = hex4(bytes, i + 2) else { return Err("expected four hex digits after \\u") };
    match unit {
        0xDC00..=0xDFFF => Err("lone UTF-16 surrogate in a \\u escape (a low surrogate without a high one)"),
        0xD800..=0xDBFF => {
            if bytes.get(i + 6..i + 8) == Some(&b"\\u"[..])
                && hex4(bytes, i + 8).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low))
            {
                Ok(12)
            } else {
                Err("lone UTF-16 surrogate in a \\u escape (a high surrogate without a low one)")
            }
        }
        _ => Ok(6),
    }
}

/// The keys seen so far in one object, to refuse duplicates. `serde_json` keeps the last of
/// two equal keys, other readers the first; a file that says two things is refused instead.
/// The first few keys without escapes are compared in place, without allocating.
#[derive(Default)]
pub(crate) struct KeySet<'t> {
    inline: [&'t str; 8],
    len: usize,
    spilled: Option<HashSet<Cow<'t, str>>>,
}

impl<'t> KeySet<'t> {
    /// Adds the key literal `raw` (with its quotes); false when the object already has it.
    #[inline]
    pub(crate) fn insert(&mut self, raw: &'t str) -> bool {
        let inner = &raw[1..raw.len() - 1];
        if self.spilled.is_none() && self.len < self.inline.len() && !inner.contains('\\') {
            if self.inline[..self.len].contains(&inner) {
                return false;
            }
            self.inline[self.len] = inner;
            self.len += 1;
            return true;
        }
        let inline = &self.inline[..self.len];
        let set = self.spilled.get_or_insert_with(|| inline.iter().map(|k| Cow::Borrowed(*k)).collect());
        set.insert(decode_string(raw))
    }
}

/// The error for a second key `raw` at `offset`: `duplicate key "name"`.
pub(crate) fn duplicate_key(raw: &str, offset: usize) -> SyntaxError {
    let key = serde_json::to_string(&decode_string(raw)).unwrap_or_else(|_| raw.to_owned());
    SyntaxError::new(offset, format!("duplicate key {key}"))
}

/// The index of the first byte at or after `i` that ends a run of plain string bytes: a quote,
/// a backslash or a control character (or the end).
#[inline(always)]
fn skip_plain_string_bytes(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // Sixteen bytes at a time with SSE2, which every x86-64 processor has.
        while i + 16 <= bytes.len() {
            // SAFETY: SSE2 is part of x86-64 itself; `i + 16 <= bytes.len()`, so the unaligned
            // 16-byte load stays inside the slice.
            let hits = unsafe {
                let chunk = _mm_loadu_si128(bytes.as_ptr().add(i).cast());
                let quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'\\' as i8));
                // Bytes up to 0x1F are the ones that `max(byte, 0x1F)` leaves at 0x1F (unsigned).
                let control = _mm_cmpeq_epi8(_mm_max_epu8(chunk, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
            };
            if hits != 0 {
                return i + hits.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero exactly where this sets its high bit (no false positives for the
    // first such byte, which is the one that matters).
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        // Bytes below 0x20: subtracting 0x20 borrows into the high bit, unless the byte was
        // already >= 0x80 (UTF-8 continuation and lead bytes, which are plain).
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let hits = quote | backslash | control;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\\' && bytes[i] >= 0x20 {
        i += 1;
    }
    i
}

/// The value of a JSON string literal (with its quotes), borrowed when it has no escapes.
pub fn decode_string(raw: &str) -> Cow<'_, str> {
    let inner = &raw[1..raw.len() - 1];
    // In a checked literal the first byte that ends a plain run is the closing quote, unless
    // there is an escape.
    if skip_plain_string_bytes(raw.as_bytes(), 1) == raw.len() - 1 {
        return Cow::Borrowed(inner);
    }
    // The scanner already checked the escapes, so this only fails on lone surrogates.
    Cow::Owned(serde_json::from_str::<String>(raw).unwrap_or_else(|_| inner.to_owned()))
}

/// Iterates the members of the object that starts at `pos`; `end` is valid once it is exhausted.
pub struct Members<'t> {
    text: &'t str,
    pos: usize,
    state: ListState,
    depth: usize,
    keys: KeySet<'t>,
    pub end: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListState {
    First,
    Next,
    Done,
}

impl<'t> Members<'t> {
    pub fn new(text: &'t str, pos: usize) -> Self {
        Self::with_depth(text, pos, 1)
    }

    /// The members of an object that is the `depth`-th level of nesting (the root is 1).
    pub(crate) fn with_depth(text: &'t str, pos: usize, depth: usize) -> Self {
        Members { text, pos: pos + 1, state: ListState::First, depth, keys: KeySet::default(), end: pos }
    }

    fn fail(&mut self, error: SyntaxError) -> Option<Result<Member, SyntaxError>> {
        self.state = ListState::Done;
        Some(Err(error))
    }
}

impl Iterator for Members<'_> {
    type Item = Result<Member, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut pos = skip_ws(text, self.pos);
        match self.state {
            ListState::Done => return None,
            ListState::First => {
                if bytes.get(pos) == Some(&b'}') {
                    self.state = ListState::Done;
                    self.end = pos + 1;
                    return None;
                }
            }
            ListState::Next => match bytes.get(pos) {
                Some(b',') => pos = skip_ws(text, pos + 1),
                Some(b'}') => {
                    self.state = ListState::Done;
                    self.end = pos + 1;
                    return None;
                }
                _ => {
                    let found = describe(text, pos);
                    return self.fail(SyntaxError::new(pos, format!("expected `,` or `}}`, found {found}")));
                }
            },
        }
        if bytes.get(pos) != Some(&b'"') {
            let found = describe(text, pos);
            return self.fail(SyntaxError::new(pos, format!("expected a quoted key, found {found}")));
        }
        let key_end = match string_end(text, pos) {
            Ok(end) => end,
            Err(e) => return self.fail(e),
        };
        let colon = skip_ws(text, key_end);
        if bytes.get(colon) != Some(&b':') {
            let found = describe(text, colon);
            return self.fail(SyntaxError::new(colon, format!("expected `:` after the key, found {found}")));
        }
        if !self.keys.insert(&text[pos..key_end]) {
            return self.fail(duplicate_key(&text[pos..key_end], pos));
        }
        let value_start = skip_ws(text, colon + 1);
        let value_end = match value_end_depth(text, value_start, self.depth) {
            Ok(end) => end,
            Err(e) => return self.fail(e),
        };
        self.pos = value_end;
        self.state = ListState::Next;
        Some(Ok(Member { key: Span { start: pos, end: key_end }, value: Span { start: value_start, end: value_end } }))
    }
}

/// Iterates the elements of the array that starts at `pos`; `end` is valid once it is exhausted.
pub struct Elements<'t> {
    text: &'t str,
    pos: usize,
    state: ListState,
    depth: usize,
    pub end: usize,
}

impl<'t> Elements<'t> {
    pub fn new(text: &'t str, pos: usize) -> Self {
        Self::with_depth(text, pos, 1)
    }

    /// The elements of an array that is the `depth`-th level of nesting (the root is 1).
    pub(crate) fn with_depth(text: &'t str, pos: usize, depth: usize) -> Self {
        Elements { text, pos: pos + 1, state: ListState::First, depth, end: pos }
    }
}

impl Iterator for Elements<'_> {
    type Item = Result<Span, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut pos = skip_ws(text, self.pos);
        match self.state {
            ListState::Done => return None,
            ListState::First => {
                if bytes.get(pos) == Some(&b']') {
                    self.state = ListState::Done;
                    self.end = pos + 1;
                    return None;
                }
            }
            ListState::Next => match bytes.get(pos) {
                Some(b',') => pos = skip_ws(text, pos + 1),
                Some(b']') => {
                    self.state = ListState::Done;
                    self.end = pos + 1;
                    return None;
                }
                _ => {
                    self.state = ListState::Done;
                    let found = describe(text, pos);
                    return Some(Err(SyntaxError::new(pos, format!("expected `,` or `]`, found {found}"))));
                }
            },
        }
        match value_end_depth(text, pos, self.depth) {
            Ok(end) => {
                self.pos = end;
                self.state = ListState::Next;
                Some(Ok(Span { start: pos, end }))
            }
            Err(e) => {
                self.state = ListState::Done;
                Some(Err(e))
            }
        }
    }
}

/// Collects the members of the object at `pos`, or says what else is there.
pub fn object_members(text: &str, pos: usize) -> Result<(Vec<Member>, usize), SyntaxError> {
    if text.as_bytes().get(pos) != Some(&b'{') {
        return Err(SyntaxError::new(pos, format!("expected an object, found {}", describe(text, pos))));
    }
    let mut members = Members::new(text, pos);
    let list = (&mut members).collect::<Result<Vec<_>, _>>()?;
    Ok((list, members.end))
}

/// The member named `name` of the object at `pos` (an object with duplicate keys is an error).
pub fn find_member(text: &str, pos: usize, name: &str) -> Result<Option<Member>, SyntaxError> {
    let (members, _) = object_members(text, pos)?;
    Ok(members.into_iter().rev().find(|m| m.key_is(text, name)))
}

/// The span of the value a JSON Pointer names, if it exists. Used to give schema errors a line.
pub fn resolve_pointer(text: &str, pointer: &str) -> Option<Span> {
    let mut span = root(text).ok()?;
    if pointer.is_empty() {
        return Some(span);
    }
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        span = match text.as_bytes()[span.start] {
            b'{' => find_member(text, span.start, &token).ok()??.value,
            b'[' => {
                let index: usize = token.parse().ok()?;
                Elements::new(text, span.start).nth(index)?.ok()?
            }
            _ => return None,
        };
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_serde_json_accepts() {
        let cases = [
            r#"{"a": [1, -2.5e+3, true, false, null, "x\"y\u00e9"], "b": {}}"#,
            "[]",
            "  \"just a string\"  ",
            "0",
            r#"{"emoji": "🚀", "esc": "\ud83d\ude80"}"#,
        ];
        for case in cases {
            assert!(root(case).is_ok(), "{case}");
            assert!(serde_json::from_str::<serde_json::Value>(case).is_ok());
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects_with_an_offset() {
        let cases = [
            ("{\"a\": 1,}", 8),
            ("[1 2]", 3),
            ("{\"a\" 1}", 5),
            ("[01]", 2),
            ("\"abc", 0),
            ("{\"a\": tru}", 6),
            ("[1.]", 3),
            ("{} {}", 3),
            ("", 0),
            ("\"a\tb\"", 2),
        ];
        for (case, offset) in cases {
            let error = root(case).unwrap_err();
            assert_eq!(error.offset, offset, "{case}: {error}");
            assert!(serde_json::from_str::<serde_json::Value>(case).is_err(), "{case}");
        }
    }

    #[test]
    fn the_fast_string_skip_stops_exactly_where_the_slow_one_does() {
        let samples: Vec<&[u8]> = vec![
            b"abcdefghijklmnop\"",
            b"abcdefgh\\ijk",
            b"a\x01bcdefghijkl",
            "h\u{e9}llo w\u{f6}rld \u{1F680} and more text\"".as_bytes(),
            b"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x1f",
            b"12345678",
            b"",
        ];
        // Every stop byte at every place of runs long enough for the 16- and 8-byte steps,
        // among plain bytes either side of the thresholds (space, DEL, UTF-8 bytes).
        let mut generated = Vec::new();
        for len in [15, 16, 17, 31, 33, 40] {
            for (n, plain) in [b' ', b'a', 0x7F, 0x80, 0xFF].into_iter().enumerate() {
                for stop in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
                    for at in (0..len).step_by(n + 1) {
                        let mut sample = vec![plain; len];
                        sample[at] = stop;
                        generated.push(sample);
                    }
                }
                generated.push(vec![plain; len]);
            }
        }
        for sample in samples.into_iter().chain(generated.iter().map(Vec::as_slice)) {
            for start in 0..sample.len().max(1) {
                let slow = (start..sample.len())
                    .find(|&i| sample[i] == b'"' || sample[i] == b'\\' || sample[i] < 0x20)
                    .unwrap_or(sample.len());
                assert_eq!(
                    skip_plain_string_bytes(sample, start.min(sample.len())),
                    slow.max(start.min(sample.len())),
                    "{sample:?} from {start}"
                );
            }
        }
    }

    #[test]
    fn the_fast_whitespace_skip_stops_exactly_where_the_slow_one_does() {
        let mut samples = vec![String::new(), "x".to_owned(), "\t\r\n x".to_owned()];
        for spaces in 0..20 {
            for before in ["", "\n", ",\n", "\r\n", "\t"] {
                for after in ["", "x", "\t", "\n  y", " \t\"z\""] {
                    samples.push(format!("{before}{}{after}", " ".repeat(spaces)));
                }
            }
        }
        for sample in &samples {
            for start in 0..=sample.len() {
                let slow = (start..sample.len())
                    .find(|&i| !matches!(sample.as_bytes()[i], b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(sample.len());
                assert_eq!(skip_ws(sample, start), slow, "{sample:?} from {start}");
            }
        }
    }

    #[test]
    fn string_ends_and_escapes_are_found_by_the_fast_walk_as_by_the_checked_one() {
        let cases = [
            (r#""plain""#, false),
            (r#""a \"quoted\" word""#, true),
            (r#""\u00e9t\u00e9 and a long tail past sixteen bytes""#, true),
            ("\"h\u{e9}llo w\u{f6}rld \u{1F680}, no escapes at all here\"", false),
            (r#""ends with a backslash \\""#, true),
        ];
        for (literal, has_escapes) in cases {
            let text = format!("{literal} ,");
            assert_eq!(closing_quote_escaped(text.as_bytes(), 0), Some((literal.len(), has_escapes)), "{literal}");
            assert_eq!(string_end(&text, 0), Ok(literal.len()));
            assert_eq!(decode_string(literal), serde_json::from_str::<String>(literal).unwrap());
        }
        for broken in ["\"no end", "\"bad \\x escape\"", "\"short \\u12\"", "\"tab\there\"", "nope"] {
            assert_eq!(closing_quote(broken.as_bytes(), 0), None, "{broken}");
            assert!(string_end(broken, 0).is_err(), "{broken}");
        }
    }

    /// Values the scanner used to pass and `serde_json` refuses, so decoding a span the
    /// scanner had checked panicked (exit 101) in every command that read the task.
    #[test]
    fn refuses_what_serde_json_cannot_decode() {
        let deepest_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let too_deep = format!("[{deepest_ok}]");
        assert!(root(&deepest_ok).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&deepest_ok).is_ok());
        let long = "9".repeat(400);
        for (case, offset, message) in [
            ("[1e400]", 1, "number out of range"),
            ("[-1e400]", 1, "number out of range"),
            (long.as_str(), 0, "number out of range"),
            (r#"["\ud83d"]"#, 2, "lone UTF-16 surrogate"),
            (r#"["a\udc00"]"#, 3, "lone UTF-16 surrogate"),
            (r#"{"\ud83d\u0041": 1}"#, 2, "lone UTF-16 surrogate"),
            (too_deep.as_str(), MAX_DEPTH, "nesting deeper than 127"),
            (r#"{"a": 1, "b": {"a": 2, "a": 3}}"#, 23, "duplicate key \"a\""),
            (r#"{"id": 1, "\u0069d": 2}"#, 10, "duplicate key \"id\""),
        ] {
            let error = root(case).unwrap_err();
            assert!(error.message.starts_with(message), "{case}: {error}");
            assert_eq!(error.offset, offset, "{case}: {error}");
            assert!(crate::workspace::read::parse_json("t.json", case).is_err(), "{case}");
        }
        for fine in ["[1e308, -1e308, 1e-400, 0e99999]", r#"["\ud83d\ude80"]"#, r#"[{"a": 1}, {"a": 1}]"#] {
            assert!(root(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert!(root(&deep).unwrap_err().message.contains("nesting"));
    }

    #[test]
    fn members_and_pointers_give_spans() {
        let text = "{\n  \"tasks\": [\n    {\"id\": \"A\", \"x\\u0041\": 1}\n  ]\n}";
        let span = resolve_pointer(text, "/tasks/0/xA").unwrap();
        assert_eq!(span.of(text), "1");
        assert_eq!(line_col(text, span.start), (3, 28));
        assert!(resolve_pointer(text, "/tasks/1").is_none());
    }
}
