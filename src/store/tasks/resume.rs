//! A scan of a new version of `tasks.json` that starts where it stopped matching the last one.
//!
//! An agent that adds a task writes the whole file again with one more entry at the end, and a
//! claim rewrites the same file with one status changed; at 100,000 tasks every such version
//! is 27 MB, and validating all of it again is most of what a pass costs. A [`Checkpoint`]
//! keeps, of a version that was scanned whole and found valid, a keyed hash of each
//! [`BLOCK`]-byte block and where each entry starts. The next version is hashed block by
//! block; the entries wholly inside the blocks that did not change are taken as they were,
//! and only the rest of the file is walked (entry members included, as a full scan walks
//! them). What is kept is a few bytes per entry, never the text.
//!
//! The hash ([`block_hash`]) is keyed with a secret drawn once per process, so a file cannot
//! be written to collide with the version before it. A resume that meets anything it does not
//! expect (a Task Master file, members after the task array, a syntax error, a change in the
//! first half of the file) declines, and the caller scans the whole file, which also says
//! what is wrong in the same words as always.

use super::{Dialect, Entry, Found, Layout, Pick, TaskHead, Walk, walk};
use crate::store::edit::ArrayShape;
use crate::store::json::{self, Span};

/// Bytes hashed together: a changed byte makes the scan start at most this far before it.
pub const BLOCK: usize = 16 * 1024;

/// What a scan of one valid version of the file leaves for the scan of the next.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The hash of each whole block of the version, in order.
    blocks: Vec<u64>,
    /// Where the array is and whether an object wraps it (never a Task Master tag).
    array_start: usize,
    wrapped: bool,
    /// Where each entry starts, in order.
    starts: Vec<u32>,
}

impl Checkpoint {
    /// The checkpoint of `text`, a valid task list whose entries a full scan found at
    /// `entries`; `None` for a Task Master file or a file of 4 GiB or more.
    pub fn new(text: &str, layout: &Layout, entries: &[Entry<'_>]) -> Option<Checkpoint> {
        if layout.tag.is_some() || u32::try_from(text.len()).is_err() {
            return None;
        }
        let starts = entries.iter().map(|e| e.span.start as u32).collect();
        let blocks = block_hashes(text.as_bytes());
        Some(Checkpoint { blocks, array_start: layout.array_start, wrapped: layout.wrapped, starts })
    }

    /// How many entries the version had.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the version had no entries.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Where entry `index` starts.
    pub fn start(&self, index: usize) -> Option<usize> {
        self.starts.get(index).map(|&s| s as usize)
    }

    /// The nesting depth of the array's entries, as [`walk`] counts it.
    fn depth(&self) -> usize {
        if self.wrapped { 2 } else { 1 }
    }

    /// The span of entry `index` of `text` (a version this checkpoint stands for).
    pub fn span(&self, text: &str, index: usize) -> Option<Span> {
        let start = self.start(index)?;
        let end = json::value_end_depth(text, start, self.depth()).ok()?;
        Some(Span { start, end })
    }
}

/// What a resume ([`scan_resume`], [`scan_after`]) found in the part of the file it walked.
#[derive(Debug)]
pub struct Tail<'t> {
    pub layout: Layout,
    /// The index of the first entry walked: the entries before it are as they were.
    pub from: usize,
    /// The heads `keep` accepted among the entries walked (indexes from `from` on).
    pub heads: Vec<TaskHead<'t>>,
    /// Every entry walked, in order: entry `from + i` is `entries[i]`.
    pub entries: Vec<Entry<'t>>,
}

/// Scans `text`, a new version of the file `previous` was made from, from the first entry
/// that is not wholly inside the blocks that stayed the same; `None` when it cannot (then the
/// whole file must be scanned): see the module's comment. Returns what it walked and the
/// checkpoint of `text`.
pub fn scan_resume<'t>(
    text: &'t str,
    keep: impl Fn(&TaskHead<'t>) -> bool + Sync,
    previous: &Checkpoint,
) -> Option<(Tail<'t>, Checkpoint)> {
    if u32::try_from(text.len()).is_err() {
        return None;
    }
    let blocks = block_hashes(text.as_bytes());
    let same = blocks.iter().zip(&previous.blocks).take_while(|(new, old)| new == old).count() * BLOCK;
    let before = Before {
        count: previous.starts.len(),
        start: &|index| previous.starts[index] as usize,
        array_start: previous.array_start,
        wrapped: previous.wrapped,
    };
    let tail = walk_tail(text, &keep, &before, same)?;
    let mut starts = previous.starts[..tail.from].to_vec();
    starts.extend(tail.entries.iter().map(|e| e.span.start as u32));
    let checkpoint = Checkpoint { blocks, array_start: previous.array_start, wrapped: previous.wrapped, starts };
    Some((tail, checkpoint))
}

/// [`scan_resume`] for a reader that still holds the version before, `previous`, and the
/// entries its scan listed (`layout`, `entries`, as [`super::scan_index`] returns them): the
/// bytes the two versions share from the start are compared, not hashed. `None` when it
/// cannot follow the change, as [`scan_resume`].
pub fn scan_after<'t>(
    text: &'t str,
    keep: impl Fn(&TaskHead<'t>) -> bool + Sync,
    previous: &str,
    layout: &Layout,
    entries: &[Entry<'_>],
) -> Option<Tail<'t>> {
    if layout.tag.is_some() {
        return None;
    }
    let before = Before {
        count: entries.len(),
        start: &|index| entries[index].span.start,
        array_start: layout.array_start,
        wrapped: layout.wrapped,
    };
    walk_tail(text, &keep, &before, common_prefix(text.as_bytes(), previous.as_bytes()))
}

/// How many bytes `a` and `b` share from the start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 4096;
    let whole = a.chunks(CHUNK).zip(b.chunks(CHUNK)).take_while(|(x, y)| x == y).count() * CHUNK;
    let whole = whole.min(a.len()).min(b.len());
    whole + a[whole..].iter().zip(&b[whole..]).take_while(|(x, y)| x == y).count()
}

/// What a resume needs of the version before: where its `count` entries started, and where
/// its array was.
struct Before<'p> {
    count: usize,
    start: &'p dyn Fn(usize) -> usize,
    array_start: usize,
    wrapped: bool,
}

impl Before<'_> {
    /// The nesting depth of the array's entries, as [`walk`] counts it.
    fn depth(&self) -> usize {
        if self.wrapped { 2 } else { 1 }
    }

    /// The number of entries that start at or before `offset`.
    fn starting_by(&self, offset: usize) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            if (self.start)(middle) <= offset { low = middle + 1 } else { high = middle }
        }
        low
    }

    /// The span in `text` of entry `index`, which starts where it started before.
    fn span(&self, text: &str, index: usize) -> Option<Span> {
        let start = (self.start)(index);
        let end = json::value_end_depth(text, start, self.depth()).ok()?;
        Some(Span { start, end })
    }
}

/// Walks `text` from the first entry of `before` that is not wholly inside its first `same`
/// bytes, which are those of the version before, to the end of the file.
fn walk_tail<'t>(text: &'t str, keep: &impl Pick<'t>, before: &Before<'_>, same: usize) -> Option<Tail<'t>> {
    if u32::try_from(text.len()).is_err() {
        return None;
    }
    let bytes = text.as_bytes();
    // The first entry that may have changed: the entries before it, and the separator after
    // the last of them, are in the bytes that did not.
    let from = before.starting_by(same).saturating_sub(1);
    if from == 0 || from >= before.count {
        return None;
    }
    let start = (before.start)(from);
    if text.len() - start > text.len() / 2 {
        return None;
    }
    let dialect = Dialect { taskmaster: false, default_agent: None };
    let mut found =
        Found { heads: Vec::new(), statuses: Vec::new(), entries: Some(Vec::new()), shape: ArrayShape::default() };
    // The shape's first two entries are in the part that did not change.
    found.shape.note(before.span(text, 0)?);
    if from > 1 {
        found.shape.note(before.span(text, 1)?);
    }
    let end = match walk(text, start, from, (before.depth(), dialect), None, keep, &mut found).ok()? {
        Walk::Closed(end) => end,
        Walk::Stopped(_) => return None,
    };
    found.shape.end = end;
    let after = if before.wrapped {
        let close = json::skip_ws(text, end);
        (bytes.get(close) == Some(&b'}')).then_some(close + 1)?
    } else {
        end
    };
    if json::skip_ws(text, after) != text.len() {
        return None;
    }
    let layout =
        Layout { array_start: before.array_start, wrapped: before.wrapped, tag: None, shape: Some(found.shape) };
    Some(Tail { layout, from, heads: found.heads, entries: found.entries.take().unwrap_or_default() })
}

/// Files at least this large are hashed by two threads, one half each.
const PARALLEL_MIN_BYTES: usize = 4 * 1024 * 1024;

/// The hash of every whole block of `bytes`, in order.
fn block_hashes(bytes: &[u8]) -> Vec<u64> {
    let whole = bytes.len() / BLOCK;
    if bytes.len() < PARALLEL_MIN_BYTES {
        return bytes.chunks_exact(BLOCK).map(block_hash).collect();
    }
    let (first, second) = bytes[..whole * BLOCK].split_at(whole / 2 * BLOCK);
    std::thread::scope(|scope| {
        let later = scope.spawn(|| second.chunks_exact(BLOCK).map(block_hash).collect::<Vec<u64>>());
        let mut hashes: Vec<u64> = Vec::with_capacity(whole);
        hashes.extend(first.chunks_exact(BLOCK).map(block_hash));
        hashes.extend(later.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        hashes
    })
}

/// The process's secret key for [`block_hash`].
fn key() -> [u64; 2] {
    static KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let draw = || std::collections::hash_map::RandomState::new().build_hasher().finish();
        [draw() | 1, draw()]
    })
}

/// A keyed 64-bit hash of one block, several gigabytes a second: four lanes of 64x64->128-bit
/// multiplications (as wyhash mixes), each word combined with the secret key so that no input
/// can zero a lane without knowing it.
pub fn block_hash(bytes: &[u8]) -> u64 {
    let [k0, k1] = key();
    let mix = |a: u64, b: u64| {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    };
    let word = |chunk: &[u8], at: usize| u64::from_le_bytes(chunk[at..at + 8].try_into().expect("eight bytes"));
    let mut lanes = [k0, k1, k0.rotate_left(17), k1.rotate_left(41)];
    let round = |lanes: &mut [u64; 4], chunk: &[u8]| {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = mix(word(chunk, l * 16) ^ k0, word(chunk, l * 16 + 8) ^ *lane ^ k1);
        }
    };
    let mut chunks = bytes.chunks_exact(64);
    for chunk in &mut chunks {
        round(&mut lanes, chunk);
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 64];
    last[..rest.len()].copy_from_slice(rest);
    round(&mut lanes, &last);
    let folded = mix(lanes[0] ^ lanes[2], lanes[1] ^ lanes[3] ^ k1);
    mix(folded ^ bytes.len() as u64, k0)
}

#[cfg(test)]
mod tests {
    use super::super::{Index, Selection, scan_index};
    use super::*;

    fn list(ids: impl Iterator<Item = usize>, wrapped: bool) -> String {
        let entries: Vec<String> = ids
            .map(|i| {
                let agent = if i % 5 == 0 { "DevOps-Engineer" } else { "Backend" };
                format!(
                    "  {{\"id\": \"T-{i}\", \"agent\": \"{agent}\", \"type\": \"deployment_x\", \"status\": \"done\", \"title\": \"{}\"}}",
                    "t".repeat(i % 200)
                )
            })
            .collect();
        let array = format!("[\n{}\n]", entries.join(",\n"));
        if wrapped { format!("{{\"tasks\": {array}}}\n") } else { format!("{array}\n") }
    }

    fn checkpoint(text: &str) -> Checkpoint {
        let Index { layout, entries, .. } = scan_index(text, &Selection::default(), |_| false, |_| false).unwrap();
        Checkpoint::new(text, &layout, &entries).unwrap()
    }

    fn owned(head: &TaskHead<'_>) -> bool {
        head.agent.as_deref() == Some("DevOps-Engineer")
    }

    /// Whatever the edit, a resume finds what a full scan of the new text finds: the same
    /// layout, the same heads and entries from where it started, the same checkpoint.
    fn agrees(old: &str, new: &str) -> Option<usize> {
        let (resumed, resumed_checkpoint) = scan_resume(new, owned, &checkpoint(old))?;
        let Index { layout, heads, entries, .. } = scan_index(new, &Selection::default(), owned, |_| false).unwrap();
        assert_eq!(resumed.layout, layout);
        let from = resumed.from;
        fn spans(heads: &[TaskHead<'_>]) -> Vec<(usize, Span, Option<String>)> {
            heads.iter().map(|h| (h.index, h.span, h.id.as_deref().map(str::to_owned))).collect()
        }
        let tail: Vec<TaskHead<'_>> = heads.into_iter().filter(|h| h.index >= from).collect();
        assert_eq!(spans(&resumed.heads), spans(&tail));
        fn ids(entries: &[Entry<'_>]) -> Vec<(Span, Option<String>)> {
            entries.iter().map(|e| (e.span, e.id.as_deref().map(str::to_owned))).collect()
        }
        assert_eq!(ids(&resumed.entries), ids(&entries[from..]));
        let full = checkpoint(new);
        assert_eq!((resumed_checkpoint.blocks, resumed_checkpoint.starts), (full.blocks, full.starts));
        Some(from)
    }

    #[test]
    fn an_appended_entry_is_walked_alone_and_found_as_a_full_scan_finds_it() {
        for wrapped in [true, false] {
            let old = list(0..3000, wrapped);
            let new = list(0..3001, wrapped);
            let from = agrees(&old, &new).expect("an append resumes");
            assert!(from > 2900, "{from}");
            // An edit near the end, and an entry removed at the end.
            let done = "\"T-2991\", \"agent\": \"Backend\", \"type\": \"deployment_x\", \"status\": \"done\"";
            let edited = old.replacen(done, &done.replace("done", "in_progress"), 1);
            assert!(edited != old, "the edit changed nothing");
            agrees(&old, &edited).expect("an edit near the end resumes");
            agrees(&old, &list(0..2999, wrapped)).expect("a removal at the end resumes");
            agrees(&old, &old).expect("the same text resumes");
        }
    }

    #[test]
    fn a_scan_after_the_text_before_finds_what_a_full_scan_finds() {
        for wrapped in [true, false] {
            let old = list(0..3000, wrapped);
            let Index { layout, entries, .. } = scan_index(&old, &Selection::default(), |_| false, |_| false).unwrap();
            let done = "\"T-2991\", \"agent\": \"Backend\", \"type\": \"deployment_x\", \"status\": \"done\"";
            let edited = old.replacen(done, &done.replace("done", "in_progress"), 1);
            for new in [list(0..3001, wrapped), list(0..3040, wrapped), edited, list(0..2999, wrapped), old.clone()] {
                let tail = scan_after(&new, owned, &old, &layout, &entries).expect("a change near the end");
                let Index { layout: full_layout, heads, entries: all, .. } =
                    scan_index(&new, &Selection::default(), owned, |_| false).unwrap();
                assert_eq!(tail.layout, full_layout);
                assert!(tail.from > 2900, "{}", tail.from);
                let walked: Vec<_> = tail.entries.iter().map(|e| (e.span, e.id.clone())).collect();
                let expected: Vec<_> = all[tail.from..].iter().map(|e| (e.span, e.id.clone())).collect();
                assert_eq!(walked, expected);
                let ids = |heads: &[TaskHead<'_>]| {
                    heads.iter().map(|h| (h.index, h.id.as_deref().map(str::to_owned))).collect::<Vec<_>>()
                };
                let tail_heads: Vec<_> = heads.into_iter().filter(|h| h.index >= tail.from).collect();
                assert_eq!(ids(&tail.heads), ids(&tail_heads));
            }
            // Early changes, a broken end and a Task Master file are left to the full scan.
            assert!(scan_after(&list(1..3000, wrapped), owned, &old, &layout, &entries).is_none());
            let broken = format!("{}, {{\"id\": }}]}}\n", old.trim_end().trim_end_matches("]}"));
            assert!(scan_after(&broken, owned, &old, &layout, &entries).is_none());
        }
    }

    #[test]
    fn the_common_prefix_is_counted_to_the_byte() {
        let a: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
        for at in [0, 1, 4095, 4096, 4097, 9999] {
            let mut b = a.clone();
            b[at] ^= 0x55;
            assert_eq!(common_prefix(&a, &b), at);
        }
        assert_eq!(common_prefix(&a, &a[..5000]), 5000);
        assert_eq!(common_prefix(&a[..4096], &a), 4096);
        assert_eq!(common_prefix(&a, &a), a.len());
    }

    #[test]
    fn a_change_it_cannot_follow_declines_so_the_whole_file_is_scanned() {
        let old = list(0..3000, true);
        // Early in the file: a full scan (two threads) costs no more.
        assert!(scan_resume(&list(1..3000, true), owned, &checkpoint(&old)).is_none());
        // Broken at the end, or members after the array: the full scan says what is wrong.
        let broken = format!("{}, {{\"id\": }}]}}\n", old.trim_end().trim_end_matches("]}"));
        assert!(scan_resume(&broken, owned, &checkpoint(&old)).is_none());
        let more = old.trim_end().trim_end_matches('}').to_owned() + ", \"extra\": 1}\n";
        assert!(scan_index(&more, &Selection::default(), |_| false, |_| false).is_ok());
        assert!(scan_resume(&more, owned, &checkpoint(&old)).is_none());
        // Too short to have a block: nothing to resume from.
        let small = list(0..3, true);
        assert!(scan_resume(&small, owned, &checkpoint(&small)).is_none());
    }

    #[test]
    fn two_threads_hash_the_blocks_one_thread_would() {
        let bytes: Vec<u8> = (0..PARALLEL_MIN_BYTES + 3 * BLOCK + 17).map(|i| (i % 253) as u8).collect();
        let one: Vec<u64> = bytes.chunks_exact(BLOCK).map(block_hash).collect();
        assert_eq!(block_hashes(&bytes), one);
        assert_eq!(one.len(), bytes.len() / BLOCK);
    }

    #[test]
    fn the_block_hash_tells_apart_every_single_byte_change_and_the_length() {
        let block: Vec<u8> = (0..BLOCK).map(|i| (i * 7 % 251) as u8).collect();
        let hash = block_hash(&block);
        for at in (0..BLOCK).step_by(97) {
            let mut changed = block.clone();
            changed[at] ^= 1;
            assert_ne!(block_hash(&changed), hash, "a change at {at}");
        }
        assert_ne!(block_hash(&[0; 10]), block_hash(&[0; 11]));
        assert_eq!(block_hash(&block), hash);
    }
}
