//! Checking the whole workspace: every workflow file, every problem, not only the first.
//!
//! Each file is read defensively (size, encoding, conflict markers, symlinks), parsed, and
//! checked against its schema; `tasks.json` also gets the checks a schema cannot express
//! (unique ids, known `depends_on`, no cycles). Problems in one file never stop the others.

use std::collections::HashMap;
use std::fs;

use serde_json::Value;

use crate::schema::SchemaName;
use crate::store::tasks::{FxMap, LayoutError};
use crate::workspace::Workspace;
use crate::workspace::diagnostic::{Diagnostic, Kind};
use crate::workspace::read;

/// What `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files that exist and were checked, in order.
    pub checked: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// Things worth fixing that do not make the workspace invalid (the exit code stays).
    pub warnings: Vec<String>,
}

/// A JSON input, loaded and checked.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The parsed value when the file exists and parses (even if the schema rejects parts).
    pub value: Option<Value>,
    pub text: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    fn failed(diagnostic: Diagnostic) -> Loaded {
        Loaded { diagnostics: vec![diagnostic], ..Loaded::default() }
    }
}

/// Reads, parses and schema-checks a JSON file; a missing file gives an empty `Loaded`.
pub fn load_json(ws: &Workspace, relative: &str, schema: SchemaName) -> Loaded {
    match ws.read_text(relative) {
        Ok(Some(text)) => check_json(ws, relative, text, schema),
        Ok(None) => Loaded::default(),
        Err(diagnostic) => Loaded::failed(diagnostic),
    }
}

/// Parses and schema-checks the text of a JSON file.
fn check_json(ws: &Workspace, relative: &str, text: String, schema: SchemaName) -> Loaded {
    let value = match read::parse_json(relative, &text) {
        Ok(value) => value,
        Err(diagnostic) => return Loaded { text: Some(text), ..Loaded::failed(diagnostic) },
    };
    let diagnostics = ws.schemas.validate(schema, relative, &value).into_iter().map(|d| d.locate_in(&text)).collect();
    Loaded { value: Some(value), text: Some(text), diagnostics }
}

/// Loads `tasks.json` with the schema and the cross-entry checks (read again once settled if
/// it is being rewritten in place, see [`Workspace::read_text_settled`]).
pub fn load_tasks(ws: &Workspace) -> Loaded {
    let relative = ws.config.paths.tasks.clone();
    match ws.read_text_settled(&relative, |text| read::parse_json(&relative, text).is_ok()) {
        Ok(Some(text)) => check_tasks(ws, text),
        Ok(None) => Loaded::default(),
        Err(diagnostic) => Loaded::failed(diagnostic),
    }
}

/// [`load_tasks`] on text already read.
fn check_tasks(ws: &Workspace, text: String) -> Loaded {
    let relative = ws.config.paths.tasks.clone();
    let mut loaded = check_json(ws, &relative, text, SchemaName::Tasks);
    if let (Some(value), Some(text)) = (&loaded.value, &loaded.text) {
        let selection = ws.task_selection();
        if loaded.diagnostics.is_empty()
            && let Err(error @ LayoutError::Shape(_)) = crate::store::tasks::scan_in(text, &selection, |_| false)
        {
            // A shape the schema allows but opsflow cannot work in: a Task Master tag that is
            // not in the file, or whose current tag cannot be read.
            loaded.diagnostics.push(layout_diagnostic(&relative, text, error));
            return loaded;
        }
        let Some(entries) = crate::task::entries(value, &selection) else { return loaded };
        let beads = crate::integrations::beads::load(ws);
        let mut found =
            task_graph_problems(&relative, &entries.prefix, &entries.list, entries.subtasks.as_ref(), &|id| {
                beads.get(id).is_some()
            });
        if entries.subtasks.is_some() {
            // Task Master's tasks pass its own shape; those of this runner must also be tasks
            // opsflow can run, as they read once decoded.
            for (index, entry) in entries.list.iter().enumerate() {
                if crate::task::owned_entry(&ws.config, entry) {
                    found.extend(ws.schemas.validate(SchemaName::Task, &relative, entry).into_iter().map(|mut d| {
                        d.pointer = Some(format!("{}/{index}{}", entries.prefix, d.pointer.as_deref().unwrap_or("")));
                        d
                    }));
                }
            }
        }
        loaded.diagnostics.extend(found.into_iter().map(|d| d.locate_in(text)));
    }
    loaded
}

/// Duplicate ids, `depends_on` naming unknown tasks, and dependency cycles.
/// `subtasks` holds the subtask ids of a Task Master file, which a dependency may name too;
/// `elsewhere` says whether an id is known outside the file (a beads issue).
fn task_graph_problems(
    file: &str,
    prefix: &str,
    tasks: &[Value],
    subtasks: Option<&HashMap<String, String>>,
    elsewhere: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let id = |at: usize| tasks.get(at)?.get("id")?.as_str();
    let hashes: Vec<u32> = (0..tasks.len()).map(|at| id_hash(id(at))).collect();
    let ids = IdOrder::new(&hashes, &id);
    let mut problems = ids.problems(file, prefix);
    let entries: Vec<(usize, &Value)> = tasks.iter().enumerate().collect();
    problems.extend(dependency_problems(file, prefix, &entries, &|id| ids.find(id), subtasks, elsewhere));
    problems
}

/// Every entry that has an id, ordered by the id's hash ([`id_hash`]) and then by position:
/// 8 bytes an entry where a map of the ids takes 25 or more, for the duplicate check and the
/// lookups by id. `id` reads the id of an entry.
struct IdOrder<'a> {
    order: Vec<(u32, u32)>,
    id: &'a dyn Fn(usize) -> Option<&'a str>,
}

impl<'a> IdOrder<'a> {
    /// `hashes[i]` is the hash of the id of entry `i`.
    fn new(hashes: &[u32], id: &'a dyn Fn(usize) -> Option<&'a str>) -> Self {
        let mut order: Vec<(u32, u32)> =
            hashes.iter().zip(0u32..).filter(|(h, _)| **h != 0).map(|(h, i)| (*h, i)).collect();
        order.sort_unstable();
        IdOrder { order, id }
    }

    /// `(index, earlier)` for every entry whose id an earlier entry has (`earlier`: the first
    /// of them), in the order of `index`.
    fn duplicates(&self) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for same_hash in self.order.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            // Positions in order, so the first entry of an id is met before the others.
            let mut first: FxMap<&str, usize> = FxMap::default();
            for &(_, at) in same_hash {
                let at = at as usize;
                let Some(id) = (self.id)(at) else { continue };
                let earlier = *first.entry(id).or_insert(at);
                if earlier != at {
                    found.push((at, earlier));
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// A problem for every entry whose id an earlier entry has, in the order of the entries.
    fn problems(&self, file: &str, prefix: &str) -> Vec<Diagnostic> {
        let problem = |(index, earlier): (usize, usize)| {
            let id = (self.id)(index).unwrap_or_default();
            Diagnostic::new(
                file,
                Kind::DuplicateId,
                format!("duplicate task id `{id}` (also used at {prefix}/{earlier})"),
            )
            .pointer(format!("{prefix}/{index}/id"))
        };
        self.duplicates().into_iter().map(problem).collect()
    }

    /// The first entry with `id`.
    fn find(&self, id: &str) -> Option<usize> {
        let hash = id_hash(Some(id));
        let start = self.order.partition_point(|(h, _)| *h < hash);
        let same_hash = self.order[start..].iter().take_while(|(h, _)| *h == hash);
        same_hash.map(|&(_, at)| at as usize).find(|&at| (self.id)(at) == Some(id))
    }
}

/// `depends_on` entries naming no task (nor anything `elsewhere` knows: a beads issue), and
/// dependency cycles, among `entries` (entry index in the file, entry); `first` gives the entry
/// of every id in the file. Every dependency of an entry that is in the file must be among
/// `entries` for its cycles to be found. In a Task Master file (`subtasks` is its subtasks'
/// ids) a dependency may name a subtask, and the place of a dependency is in `dependencies`,
/// the field Task Master writes.
fn dependency_problems(
    file: &str,
    prefix: &str,
    entries: &[(usize, &Value)],
    first: &dyn Fn(&str) -> Option<usize>,
    subtasks: Option<&HashMap<String, String>>,
    elsewhere: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let field = if subtasks.is_some() { "dependencies" } else { "depends_on" };
    let mut problems = Vec::new();
    let deps = |task: &Value| -> Vec<String> {
        task.get("depends_on")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let id_of = |task: &Value| task.get("id").and_then(Value::as_str).map(str::to_owned);
    for (index, task) in entries {
        for (k, dep) in deps(task).iter().enumerate() {
            if first(dep.as_str()).is_none() && !subtasks.is_some_and(|s| s.contains_key(dep)) && !elsewhere(dep) {
                problems.push(
                    Diagnostic::new(
                        file,
                        Kind::UnknownDependency,
                        format!("depends on `{dep}`, which no task in this file has as its id"),
                    )
                    .pointer(format!("{prefix}/{index}/{field}/{k}")),
                );
            }
        }
    }
    // Depth-first search for cycles, iterative so a long chain cannot overflow the stack.
    // Nodes are positions in `entries`.
    let position: HashMap<usize, usize> = entries.iter().enumerate().map(|(at, (index, _))| (*index, at)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; entries.len()];
    let children = |at: usize| {
        deps(entries[at].1)
            .iter()
            .filter_map(|d| first(d.as_str()).and_then(|index| position.get(&index)).copied())
            .rev()
            .collect::<Vec<_>>()
    };
    for root in 0..entries.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>)> = Vec::new();
        marks[root] = Mark::Open;
        stack.push((root, children(root)));
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) if marks[next] == Mark::New => {
                    marks[next] = Mark::Open;
                    stack.push((next, children(next)));
                }
                Some(next) if marks[next] == Mark::Open => {
                    let start = stack.iter().position(|(n, _)| *n == next).expect("an open node is on the stack");
                    let mut names: Vec<String> =
                        stack[start..].iter().map(|(n, _)| id_of(entries[*n].1).unwrap_or_default()).collect();
                    names.push(id_of(entries[next].1).unwrap_or_default());
                    problems.push(
                        Diagnostic::new(
                            file,
                            Kind::DependencyCycle,
                            format!("dependency cycle: {}", names.join(" -> ")),
                        )
                        .pointer(format!("{prefix}/{}/{field}", entries[next].0)),
                    );
                }
                Some(_) => {}
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    problems
}

/// `tasks.json` as the engine reads it on every pass: without decoding the whole file.
#[derive(Debug, Default)]
pub struct TaskList {
    /// Whether the file is a task list that can be acted on; when not, nothing may run and
    /// `diagnostics` says why (nothing at all when the file does not exist).
    pub readable: bool,
    /// `/tasks`, `` (a bare array) or `/TAG/tasks` (Task Master): entry `i` is at `{prefix}/{i}`.
    pub prefix: String,
    /// The status, by id (the first entry of an id), of what the kept entries and those they
    /// reach name in `depends_on`, and of the ids `remember` asked for: not of every entry,
    /// so that what a pass holds grows with the work it may do, not with the file.
    pub statuses: HashMap<String, String>,
    /// The entries `keep` selected, decoded: (entry index, entry).
    pub kept: Vec<(usize, Value)>,
    /// How many entries this runner owns (`workflow::owns`) have each status, for `/metrics`.
    pub owned_by_status: std::collections::BTreeMap<String, u64>,
    /// Problems of the file as a whole (no pointer into an entry) and of the kept entries
    /// and what they depend on; the pointers say which.
    pub diagnostics: Vec<Diagnostic>,
    /// The file's version just before it was read: whoever compares it with the file's
    /// version later knows whether the file was written since.
    pub stamp: Option<crate::store::file::Stamp>,
    /// The text as read, with where the kept entries are in it, when it may stand for the
    /// file's version (`store::file::Known`): an edit of a kept entry made while the file is
    /// still at that version starts from it instead of reading and scanning the file again.
    pub known: Option<KnownTasks>,
}

/// `tasks.json` as one pass read it (see [`TaskList::known`]).
#[derive(Debug)]
pub struct KnownTasks {
    pub file: crate::store::file::Known,
    pub layout: crate::store::tasks::Layout,
    pub selection: crate::store::tasks::Selection,
    /// The id, entry index and span of each kept entry.
    pub entries: Vec<(String, usize, crate::store::json::Span)>,
}

/// Reads `tasks.json` with the span scanner (every byte checked as JSON, no tree built) and
/// decodes and checks only the entries `keep` selects: the task schema, their `depends_on`,
/// cycles through them. Duplicate ids are found among all entries. The cost of a pass thus
/// grows with the entries an agent owns, not with the file. A file that is not a task list
/// goes through the full loader, so its problems read exactly as `validate` says them.
/// `remember` names the ids, besides those the kept entries depend on, whose status the
/// caller looks up in [`TaskList::statuses`].
pub fn load_task_list(
    ws: &Workspace,
    keep: impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync,
    remember: impl Fn(&str) -> bool,
) -> TaskList {
    load_task_list_indexed(ws, keep, remember, None)
}

/// [`load_task_list`] for a caller that loads the same file pass after pass with the same
/// `keep` and `remember`: `index` holds what the previous load left of the file
/// ([`TaskIndex`]), and a new version of a large file is scanned only from where it changed.
/// What it returns is what [`load_task_list`] returns.
pub fn load_task_list_indexed(
    ws: &Workspace,
    keep: impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync,
    remember: impl Fn(&str) -> bool,
    mut index: Option<&mut TaskIndex>,
) -> TaskList {
    let relative = ws.config.paths.tasks.clone();
    let selection = ws.task_selection();
    let stamp = crate::store::file::Stamp::of(&ws.path(&relative));
    let (read, known) = match crate::store::file::Known::read(&ws.path(&relative), || ws.read_text(&relative)) {
        Ok((read, known)) => (read::Recycled(read), known),
        Err(diagnostic) => return TaskList { diagnostics: vec![diagnostic], ..TaskList::default() },
    };
    let Some(text) = known.as_ref().map(|k| k.text.as_str()).or(read.0.as_deref()) else {
        if let Some(index) = index {
            *index = TaskIndex::default();
        }
        return TaskList::default();
    };
    let key = index.as_ref().map(|_| TaskIndex::key(ws));
    let resumed = match (index.as_deref_mut(), &key) {
        (Some(index), Some(key)) if index.key == *key => {
            task_list_resumed(ws, &relative, &selection, text, &keep, &remember, index)
        }
        _ => None,
    };
    let loaded = match resumed {
        Some(loaded) => {
            if let Some(index) = index.as_deref_mut() {
                index.resumes += 1;
            }
            Ok(loaded)
        }
        None => {
            // A resume that gave way may have left the index half updated: it is built again.
            if let Some(index) = index.as_deref_mut() {
                *index = TaskIndex::default();
            }
            task_list_from(ws, &relative, &selection, text, &keep, &remember, index.as_deref_mut())
        }
    };
    if let (Some(index), Some(key)) = (index.as_deref_mut(), key) {
        index.key = key;
    }
    if let Ok((mut list, layout, spans)) = loaded {
        list.known = known.map(|file| {
            let entries = list
                .kept
                .iter()
                .zip(spans)
                .filter_map(|((index, task), span)| Some((task.get("id")?.as_str()?.to_owned(), *index, span)))
                .collect();
            KnownTasks { file, layout, selection: selection.clone(), entries }
        });
        list.stamp = stamp;
        return list;
    }
    if let Some(index) = index {
        *index = TaskIndex::default();
    }
    // Not a task list as read: it may be being rewritten in place, so it is read again once
    // it has settled (only here, so a valid file is scanned once).
    let text = match ws
        .read_text_settled(&relative, |text| crate::store::tasks::scan_in(text, &selection, |_| false).is_ok())
    {
        Ok(Some(text)) => text,
        Ok(None) => return TaskList::default(),
        Err(diagnostic) => return TaskList { diagnostics: vec![diagnostic], ..TaskList::default() },
    };
    match task_list_from(ws, &relative, &selection, &text, &keep, &remember, None) {
        Ok((list, _, _)) => list,
        Err(error) => TaskList { diagnostics: unreadable_tasks(ws, &text, error), ..TaskList::default() },
    }
}

/// A load's list, the file's layout and the spans of the kept entries.
type LoadedList = (TaskList, crate::store::tasks::Layout, Vec<crate::store::json::Span>);

/// Whether this runner owns the entry (`workflow::owns`).
fn owned_entry(ws: &Workspace, head: &crate::store::tasks::TaskHead<'_>) -> bool {
    crate::workflow::owns(&ws.config, head.agent.as_deref(), head.kind.as_deref())
}

/// [`load_task_list`] on text already read; the scan error when it is not a task list.
/// With `index`, the index of this version is left in it for the next pass.
fn task_list_from(
    ws: &Workspace,
    relative: &str,
    selection: &crate::store::tasks::Selection,
    text: &str,
    keep: &(impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync),
    remember: &impl Fn(&str) -> bool,
    index: Option<&mut TaskIndex>,
) -> Result<LoadedList, LayoutError> {
    let owns = |head: &crate::store::tasks::TaskHead<'_>| owned_entry(ws, head);
    // One walk: every entry's id and span, the heads of the kept entries and the statuses of
    // the other owned ones.
    let crate::store::tasks::Index { layout, heads, statuses, entries: all } =
        crate::store::tasks::scan_index(text, selection, keep, owns)?;
    let owned = || {
        let kept = heads.iter().filter(|h| owns(h)).map(|h| (h.index, h.status.as_deref()));
        kept.chain(statuses.iter().map(|(index, status)| (*index, status.as_deref())))
    };
    let prefix_text = layout.prefix(text);
    let prefix = prefix_text.as_str();
    let file = relative;
    let id = |at: usize| all.get(at)?.id.as_deref();
    let hashes: Vec<u32> = all.iter().map(|e| id_hash(e.id.as_deref())).collect();
    let ids = IdOrder::new(&hashes, &id);
    let diagnostics = ids.problems(file, prefix);
    if !diagnostics.is_empty() {
        // Two tasks with one id make every edit by id ambiguous: nothing acts on such a file.
        let diagnostics = diagnostics.into_iter().map(|d| d.locate_in(text)).collect();
        return Ok((TaskList { diagnostics, ..TaskList::default() }, layout, Vec::new()));
    }
    if let Some(index) = index {
        let kept = heads.iter().map(|h| h.index);
        *index = TaskIndex::of(text, &layout, &all, hashes, owned(), kept, remember).unwrap_or_default();
    } else {
        drop(hashes);
    }
    let owned_by_status = count_by_status(owned().map(|(_, status)| status));
    drop(statuses);
    let kept_heads = heads;
    // A Task Master task may depend on a subtask (`12.1`): its status is read from its task.
    let subtasks = |entries: &[(usize, &Value)]| {
        layout.taskmaster().then(|| {
            let decoded: Vec<Value> = entries
                .iter()
                .flat_map(|(_, task)| task.get("depends_on").and_then(Value::as_array).into_iter().flatten())
                .filter_map(|dep| dep.as_str()?.split_once('.'))
                .filter_map(|(parent, _)| ids.find(parent).and_then(|index| all.get(index)))
                .filter_map(|entry| serde_json::from_str(entry.span.of(text)).ok())
                .collect();
            crate::task::subtask_statuses(&decoded)
        })
    };
    // No id is used twice, so every entry with an id is its first.
    let remembered =
        all.iter().enumerate().filter(|(_, e)| e.id.as_deref().is_some_and(remember)).map(|(at, _)| at).collect();
    let entries = Entries {
        text,
        layout: &layout,
        selection,
        lookup: &|id| ids.find(id),
        span: &|index| all.get(index).map(|e| e.span),
    };
    let (list, spans) = finish_task_list(ws, file, prefix_text, &entries, kept_heads, remembered, &subtasks);
    Ok((TaskList { owned_by_status, ..list }, layout, spans))
}

/// [`task_list_from`] from where `index` (of an earlier version) says the text changed, for
/// the same `keep` and `remember`; `None` when it cannot (then the whole text is scanned).
/// The index is left for this version.
fn task_list_resumed(
    ws: &Workspace,
    relative: &str,
    selection: &crate::store::tasks::Selection,
    text: &str,
    keep: &(impl Fn(&crate::store::tasks::TaskHead<'_>) -> bool + Sync),
    remember: &impl Fn(&str) -> bool,
    index: &mut TaskIndex,
) -> Option<LoadedList> {
    let owns = |head: &crate::store::tasks::TaskHead<'_>| owned_entry(ws, head);
    let (resumed, checkpoint) =
        crate::store::tasks::resume::scan_resume(text, |h| owns(h) || keep(h), index.checkpoint.as_ref()?)?;
    let from = resumed.from;
    let layout = resumed.layout;
    let span = |at: usize| checkpoint.span(text, at);
    let head = |at: usize| Some(crate::store::tasks::head_at(text, &layout, selection, at, span(at)?));
    index.forget_from(from);
    // An id walked that another entry has is a duplicate, which the whole scan reports as it
    // always does.
    let walked_ids: Vec<Option<&str>> = resumed.entries.iter().map(|e| e.id.as_deref()).collect();
    if walked_duplicate(&index.ids, &walked_ids, &head)? {
        return None;
    }
    for (at, id) in (from..).zip(&walked_ids) {
        if id.is_some_and(remember) {
            index.remembered.push(at as u32);
        }
        index.ids.push(id_hash(*id));
    }
    for walked in &resumed.heads {
        if owns(walked) {
            index.note_owned(walked.index, walked.status.as_deref());
        }
        if keep(walked) {
            index.kept.push(walked.index as u32);
        }
    }
    let ids = IdLookup::new(&index.ids, &head);
    let lookup = |id: &str| ids.find(id);
    let mut walked = resumed.heads.into_iter().filter(|h| keep(h)).peekable();
    let mut kept_heads = Vec::with_capacity(index.kept.len());
    for &at in &index.kept {
        let at = at as usize;
        if at < from {
            kept_heads.push(head(at)?);
        } else if let Some(next) = walked.next_if(|h| h.index == at) {
            kept_heads.push(next);
        }
    }
    let remembered = index.remembered.iter().map(|&at| at as usize).collect();
    let prefix = layout.prefix(text);
    let entries = Entries { text, layout: &layout, selection, lookup: &lookup, span: &span };
    let (list, spans) = finish_task_list(ws, relative, prefix, &entries, kept_heads, remembered, &|_| None);
    let owned_by_status = index.owned_by_status();
    index.checkpoint = Some(checkpoint);
    Some((TaskList { owned_by_status, ..list }, layout, spans))
}

/// Whether an id of the entries walked (`walked`) is also the id of an entry before them
/// (`before`: their id hashes, the entry read back by `head`) or of another walked; `None`
/// when an entry cannot be read back. One pass over `before`, whatever the number walked: a
/// bit per hash of the walked ids (at least 16 bits per id walked, 4096 or more) rules out
/// nearly every entry without a lookup.
fn walked_duplicate<'t>(
    before: &[u32],
    walked: &[Option<&str>],
    head: &dyn Fn(usize) -> Option<crate::store::tasks::TaskHead<'t>>,
) -> Option<bool> {
    let words = (walked.len() / 4).max(64).next_power_of_two();
    let mut bits = vec![0u64; words];
    let slot = |hash: u32| ((hash as usize >> 6) & (words - 1), 1u64 << (hash & 63));
    let mut by_hash: FxMap<u32, Vec<&str>> = FxMap::default();
    for id in walked.iter().flatten() {
        let hash = id_hash(Some(id));
        let same = by_hash.entry(hash).or_default();
        if same.contains(id) {
            return Some(true);
        }
        same.push(id);
        let (word, bit) = slot(hash);
        bits[word] |= bit;
    }
    for (at, hash) in before.iter().enumerate() {
        let (word, bit) = slot(*hash);
        if bits[word] & bit == 0 {
            continue;
        }
        if let Some(same) = by_hash.get(hash)
            && head(at)?.id.is_some_and(|id| same.contains(&id.as_ref()))
        {
            return Some(true);
        }
    }
    Some(false)
}

/// The entry of an id in a task list without duplicate ids, from the 32-bit hash of every
/// entry's id (`ids`) and the entry read back (`head`) to tell apart ids that share a hash.
/// The first few lookups go over `ids`; past [`IdLookup::SCANS`] a map of the hashes is made
/// once, so a pass that looks up many dependencies does not go over every id for each.
struct IdLookup<'a, 't> {
    ids: &'a [u32],
    head: &'a dyn Fn(usize) -> Option<crate::store::tasks::TaskHead<'t>>,
    scans: std::cell::Cell<usize>,
    by_hash: std::cell::OnceCell<FxMap<u32, Vec<u32>>>,
}

impl<'a, 't> IdLookup<'a, 't> {
    const SCANS: usize = 16;

    fn new(ids: &'a [u32], head: &'a dyn Fn(usize) -> Option<crate::store::tasks::TaskHead<'t>>) -> Self {
        IdLookup { ids, head, scans: Default::default(), by_hash: Default::default() }
    }

    fn find(&self, id: &str) -> Option<usize> {
        let hash = id_hash(Some(id));
        let is_it = |at: &usize| (self.head)(*at).is_some_and(|h| h.id.as_deref() == Some(id));
        if self.scans.get() < Self::SCANS && self.by_hash.get().is_none() {
            self.scans.set(self.scans.get() + 1);
            return self.ids.iter().enumerate().filter(|(_, h)| **h == hash).map(|(at, _)| at).find(is_it);
        }
        let by_hash = self.by_hash.get_or_init(|| {
            let mut map: FxMap<u32, Vec<u32>> = FxMap::with_capacity_and_hasher(self.ids.len(), Default::default());
            for (at, h) in (0u32..).zip(self.ids) {
                map.entry(*h).or_default().push(at);
            }
            map
        });
        by_hash.get(&hash)?.iter().map(|&at| at as usize).find(is_it)
    }
}

/// How [`finish_task_list`] reads the entries of one version of the file.
struct Entries<'a, 't> {
    text: &'t str,
    layout: &'a crate::store::tasks::Layout,
    selection: &'a crate::store::tasks::Selection,
    /// The entry of an id (there are no duplicates).
    lookup: &'a dyn Fn(&str) -> Option<usize>,
    /// Where entry `index` is.
    span: &'a dyn Fn(usize) -> Option<crate::store::json::Span>,
}

impl<'t> Entries<'_, 't> {
    fn head(&self, index: usize) -> Option<crate::store::tasks::TaskHead<'t>> {
        Some(crate::store::tasks::head_at(self.text, self.layout, self.selection, index, (self.span)(index)?))
    }
}

/// The statuses of the subtasks that the entries given depend on, in a Task Master file.
type Subtasks<'a> = dyn Fn(&[(usize, &Value)]) -> Option<HashMap<String, String>> + 'a;

/// The rest of a load once the file is known to be a valid task list without duplicate ids:
/// the kept entries decoded and checked, what they depend on, the statuses a pass looks up.
/// Also the spans of the kept entries.
fn finish_task_list(
    ws: &Workspace,
    file: &str,
    prefix_text: String,
    entries: &Entries<'_, '_>,
    kept_heads: Vec<crate::store::tasks::TaskHead<'_>>,
    remembered: Vec<usize>,
    subtasks: &Subtasks<'_>,
) -> (TaskList, Vec<crate::store::json::Span>) {
    let text = entries.text;
    let prefix = prefix_text.as_str();
    let mut kept: Vec<(usize, Value)> = Vec::new();
    let mut spans = Vec::new();
    for head in &kept_heads {
        match head.try_value(text) {
            Ok(task) => kept.push((head.index, task)),
            Err(error) => return (undecodable(file, text, error), Vec::new()),
        }
        spans.push(head.span);
    }
    drop(kept_heads);
    let mut diagnostics = Vec::new();
    for (index, task) in &kept {
        diagnostics.extend(ws.schemas.validate(SchemaName::Task, file, task).into_iter().map(|mut d| {
            d.pointer = Some(format!("{prefix}/{index}{}", d.pointer.as_deref().unwrap_or("")));
            d
        }));
    }
    // What the kept entries depend on, directly or not, decoded for the cycle search.
    let decode = |index: usize| -> Option<Result<Value, crate::store::json::SyntaxError>> {
        Some(entries.head(index)?.try_value(text))
    };
    let mut reached: Vec<(usize, Value)> = Vec::new();
    let mut seen: std::collections::HashSet<usize> = kept.iter().map(|(i, _)| *i).collect();
    let mut queue: Vec<usize> = Vec::new();
    let dependencies = |task: &Value| -> Vec<usize> {
        task.get("depends_on")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).filter_map(|d| (entries.lookup)(d)).collect())
            .unwrap_or_default()
    };
    for (_, task) in &kept {
        queue.extend(dependencies(task));
    }
    while let Some(index) = queue.pop() {
        if !seen.insert(index) {
            continue;
        }
        let task = match decode(index) {
            Some(Ok(task)) => task,
            Some(Err(error)) => return (undecodable(file, text, error), Vec::new()),
            None => continue,
        };
        queue.extend(dependencies(&task));
        reached.push((index, task));
    }
    let all: Vec<(usize, &Value)> = kept.iter().chain(&reached).map(|(i, t)| (*i, t)).collect();
    let subtasks = subtasks(&all);
    let beads = crate::integrations::beads::load(ws);
    diagnostics.extend(dependency_problems(file, prefix, &all, entries.lookup, subtasks.as_ref(), &|id| {
        beads.get(id).is_some()
    }));
    // The statuses a pass looks up: what the entries above depend on, and what `remember` names.
    let mut statuses = HashMap::new();
    let mut note = |index: usize| {
        if let Some(head) = entries.head(index)
            && let Some(id) = head.id
        {
            statuses.insert(id.into_owned(), head.status.as_deref().unwrap_or_default().to_owned());
        }
    };
    for (_, task) in &all {
        for dep in task.get("depends_on").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if let Some(index) = (entries.lookup)(dep) {
                note(index);
            }
        }
    }
    for index in remembered {
        note(index);
    }
    statuses.extend(subtasks.into_iter().flatten());
    let diagnostics = diagnostics.into_iter().map(|d| d.locate_in(text)).collect();
    let list = TaskList {
        readable: true,
        prefix: prefix_text,
        statuses,
        kept,
        owned_by_status: Default::default(),
        diagnostics,
        stamp: None,
        known: None,
    };
    (list, spans)
}

/// How many entries have each status.
fn count_by_status<'s>(statuses: impl Iterator<Item = Option<&'s str>>) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        *counts.entry(status.unwrap_or("").to_owned()).or_default() += 1;
    }
    counts
}

/// The hash of an id that a [`TaskIndex`] keeps; 0 for an entry without one.
fn id_hash(id: Option<&str>) -> u32 {
    use std::hash::Hasher;
    let Some(id) = id else { return 0 };
    let mut hasher = crate::store::tasks::FxHasher::default();
    hasher.write(id.as_bytes());
    let hash = hasher.finish();
    ((hash >> 32) as u32 ^ hash as u32).max(1)
}

/// What one pass of the engine keeps of `tasks.json` for the next, so that the next version
/// of the file is scanned only from where it changed ([`crate::store::tasks::resume`]): the
/// checkpoint of the version, a 32-bit hash of every entry's id, and which entries the
/// runner owns (with their status), keeps, or remembers. A few bytes per entry, never the
/// text; it stands for one workspace, configuration and pair of filters (see [`TaskIndex::key`]).
#[derive(Debug, Default)]
pub struct TaskIndex {
    key: String,
    checkpoint: Option<crate::store::tasks::resume::Checkpoint>,
    ids: Vec<u32>,
    owned: Vec<(u32, u32)>,
    status_names: Vec<String>,
    kept: Vec<u32>,
    remembered: Vec<u32>,
    /// How many loads in a row were resumed from this index (0 after a whole scan).
    pub resumes: u64,
}

impl TaskIndex {
    /// What an index is good for: the task file of this workspace, read with this
    /// configuration's ownership and Task Master selection.
    fn key(ws: &Workspace) -> String {
        format!(
            "{} | {:?} | {:?} | {:?} | {:?}",
            ws.path(&ws.config.paths.tasks).display(),
            ws.config.agent.name,
            ws.config.agent.aliases,
            ws.config.agent_nodes,
            ws.task_selection()
        )
    }

    /// The index of a version a full scan found valid; `None` when it cannot be resumed from.
    /// `ids`: the hash of each entry's id ([`id_hash`]); `owned`: the index and status of each
    /// owned entry; `kept`: the index of each kept one.
    fn of<'s>(
        text: &str,
        layout: &crate::store::tasks::Layout,
        all: &[crate::store::tasks::Entry<'_>],
        ids: Vec<u32>,
        owned: impl Iterator<Item = (usize, Option<&'s str>)>,
        kept: impl Iterator<Item = usize>,
        remember: &impl Fn(&str) -> bool,
    ) -> Option<TaskIndex> {
        if text.len() < RESUME_MIN_BYTES {
            return None;
        }
        let checkpoint = crate::store::tasks::resume::Checkpoint::new(text, layout, all)?;
        let mut index = TaskIndex {
            resumes: 0,
            checkpoint: Some(checkpoint),
            ids,
            remembered: (0u32..)
                .zip(all)
                .filter(|(_, e)| e.id.as_deref().is_some_and(remember))
                .map(|(i, _)| i)
                .collect(),
            ..TaskIndex::default()
        };
        for (at, status) in owned {
            index.note_owned(at, status);
        }
        index.kept.extend(kept.map(|at| at as u32));
        Some(index)
    }

    fn note_owned(&mut self, index: usize, status: Option<&str>) {
        let status = status.unwrap_or("");
        let slot = match self.status_names.iter().position(|s| s == status) {
            Some(slot) => slot,
            None => {
                self.status_names.push(status.to_owned());
                self.status_names.len() - 1
            }
        };
        self.owned.push((index as u32, slot as u32));
    }

    /// Drops what it knows of the entries from `index` on.
    fn forget_from(&mut self, index: usize) {
        self.ids.truncate(index);
        let before = |at: &u32| (*at as usize) < index;
        self.owned.retain(|(at, _)| before(at));
        self.kept.retain(before);
        self.remembered.retain(before);
    }

    fn owned_by_status(&self) -> std::collections::BTreeMap<String, u64> {
        count_by_status(self.owned.iter().map(|(_, slot)| self.status_names.get(*slot as usize).map(String::as_str)))
    }
}

/// The layout of `text` (a version of `tasks.json` read under its lock) and the heads of the
/// entries with the ids `wanted`, found from `index` (left by a pass of the engine) as
/// [`crate::store::tasks::scan_ids_in`] finds them, without walking the part of the file
/// that did not change since; `None` when the index cannot say (then the file is scanned).
/// The index is not changed: it stays the pass's. Also `None` when any two entries share an
/// id, so that the scan reports it as it always does.
pub fn indexed_heads<'t>(
    ws: &Workspace,
    index: &TaskIndex,
    text: &'t str,
    wanted: &[&str],
) -> Option<(crate::store::tasks::Layout, Vec<crate::store::tasks::TaskHead<'t>>)> {
    if index.key != TaskIndex::key(ws) {
        return None;
    }
    let (resumed, checkpoint) = crate::store::tasks::resume::scan_resume(text, |_| false, index.checkpoint.as_ref()?)?;
    let (from, layout) = (resumed.from, resumed.layout);
    let selection = ws.task_selection();
    let head =
        |at: usize| Some(crate::store::tasks::head_at(text, &layout, &selection, at, checkpoint.span(text, at)?));
    let before = index.ids.get(..from)?;
    let walked_ids: Vec<Option<&str>> = resumed.entries.iter().map(|e| e.id.as_deref()).collect();
    if walked_duplicate(before, &walked_ids, &head)? {
        return None;
    }
    let mut all = before.to_vec();
    all.extend(walked_ids.iter().map(|id| id_hash(*id)));
    let ids = IdLookup::new(&all, &head);
    let mut heads = Vec::new();
    for id in wanted {
        if let Some(at) = ids.find(id) {
            heads.push(head(at)?);
        }
    }
    heads.sort_by_key(|h| h.index);
    heads.dedup_by_key(|h| h.index);
    Some((layout, heads))
}

/// Smaller files are scanned whole on every pass: it costs less than a millisecond.
const RESUME_MIN_BYTES: usize = 256 * 1024;
/// A task list none of which may be acted on, because an entry the scanner passed could not
/// be decoded.
fn undecodable(file: &str, text: &str, error: crate::store::json::SyntaxError) -> TaskList {
    TaskList { diagnostics: vec![layout_diagnostic(file, text, LayoutError::Syntax(error))], ..TaskList::default() }
}

/// What is wrong with a `tasks.json` the span scanner refused (`error`), said as `validate`
/// says it: the full loader runs on the same text, so `validate`, `status`, `run` and
/// `tasks list` report one broken file with the same diagnostics. The scanner's own error
/// stands in should the loader find nothing wrong.
pub fn unreadable_tasks(ws: &Workspace, text: &str, error: LayoutError) -> Vec<Diagnostic> {
    let mut diagnostics = check_tasks(ws, text.to_owned()).diagnostics;
    if diagnostics.is_empty() {
        diagnostics.push(layout_diagnostic(&ws.config.paths.tasks, text, error));
    }
    diagnostics
}

/// Where a task-list scan error is, as users read it.
pub fn layout_diagnostic(file: &str, text: &str, error: LayoutError) -> Diagnostic {
    match error {
        LayoutError::Syntax(e) => {
            if let Some(conflict) = read::conflict_diagnostic(file, text) {
                return conflict;
            }
            let (line, column) = crate::store::json::line_col(text, e.offset);
            Diagnostic::new(file, Kind::Syntax, format!("invalid JSON: {}", e.message)).at(line, column)
        }
        LayoutError::Shape(message) => Diagnostic::new(file, Kind::Schema, message).pointer(""),
    }
}

/// A markdown input, loaded and checked.
#[derive(Debug, Default)]
pub struct LoadedMarkdown {
    pub doc: Option<read::MarkdownDoc>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads a markdown file and checks its front matter against `schema` when given.
pub fn load_markdown(ws: &Workspace, relative: &str, schema: Option<SchemaName>) -> LoadedMarkdown {
    let text = match ws.read_text(relative) {
        Ok(Some(text)) => text,
        Ok(None) => return LoadedMarkdown::default(),
        Err(diagnostic) => return LoadedMarkdown { doc: None, diagnostics: vec![diagnostic] },
    };
    let doc = match read::parse_markdown(relative, &text) {
        Ok(doc) => doc,
        Err(diagnostic) => return LoadedMarkdown { doc: None, diagnostics: vec![diagnostic] },
    };
    let mut diagnostics = Vec::new();
    if let Some(schema) = schema {
        match &doc.front_matter {
            Some(front_matter) => {
                for mut d in ws.schemas.validate(schema, relative, front_matter) {
                    d.message = format!("front matter: {}", d.message);
                    // The line of the offending key (a missing one: the opening `---`).
                    if d.line.is_none()
                        && let Some(pointer) = d.pointer.clone()
                    {
                        let (line, column) = read::front_matter_position(&text, &pointer)
                            .or_else(|| read::front_matter_position(&text, ""))
                            .unwrap_or((1, 1));
                        d = d.at(line, column);
                    }
                    diagnostics.push(d);
                }
            }
            None => diagnostics.push(
                Diagnostic::new(relative, Kind::FrontMatter, "has no front matter; it needs a `---` block at the top")
                    .at(1, 1),
            ),
        }
    }
    LoadedMarkdown { doc: Some(doc), diagnostics }
}

/// The schema an artifact's front matter is checked against, from its file name.
pub fn artifact_schema(file_name: &str) -> Option<SchemaName> {
    let stem = file_name.strip_suffix(".md")?;
    if stem.starts_with("R17-rollback-decision") {
        Some(SchemaName::RollbackDecision)
    } else if stem.contains("-approval") {
        Some(SchemaName::Approval)
    } else {
        None
    }
}

/// Markdown files directly in `dir` (relative), sorted by name, without editors' droppings
/// (an Emacs lock `.#R12-prod-approval.md` is no approval).
fn markdown_files(ws: &Workspace, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(ws.path(dir))
        .into_iter()
        .flatten()
        .flatten()
        // Directories, FIFOs and the like with a markdown name are kept: reading them fails,
        // and that is reported where a report or an approval was expected.
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md") && !crate::workspace::editor_dropping(name))
        .collect();
    names.sort();
    names.into_iter().map(|name| format!("{}/{name}", dir.trim_end_matches('/'))).collect()
}

/// Checks every workflow file in the workspace.
pub fn validate_workspace(ws: &Workspace) -> Report {
    let mut report = Report::default();
    let paths = &ws.config.paths;
    if ws.path(&ws.config_label).exists() {
        report.checked.push(ws.config_label.clone());
    }
    report.diagnostics.extend(ws.config_problems.iter().cloned());

    let note = |report: &mut Report, file: &str, exists: bool, diagnostics: Vec<Diagnostic>| {
        if exists || !diagnostics.is_empty() {
            report.checked.push(file.to_owned());
        }
        report.diagnostics.extend(diagnostics);
    };

    let tasks = load_tasks(ws);
    report.warnings.extend(task_warnings(ws, &tasks));
    note(&mut report, &paths.tasks, tasks.text.is_some(), tasks.diagnostics);
    let beads = crate::integrations::beads::load(ws);
    report.warnings.extend(beads.warnings.iter().map(ToString::to_string));
    note(&mut report, &beads.file, beads.present, beads.problems);
    for file in crate::integrations::bmad::files(ws) {
        let problems = crate::integrations::bmad::load_file(ws, &file).err().unwrap_or_default();
        note(&mut report, &file, true, problems);
    }
    for (file, schema) in [
        (&paths.state, SchemaName::State),
        (&paths.workflow, SchemaName::Workflow),
        (&paths.qa_test_report, SchemaName::QaTestReport),
        (&paths.deployment_report, SchemaName::DeploymentReport),
        (&paths.completion_signal, SchemaName::CompletionSignal),
    ] {
        let mut loaded = load_json(ws, file, schema);
        if schema == SchemaName::Workflow && loaded.value.is_some() && loaded.diagnostics.is_empty() {
            // What the schema cannot say: the agent nodes' schemas, templates and output paths.
            loaded.diagnostics.extend(crate::workflow::graph::Graph::load(ws).err().unwrap_or_default());
        }
        note(&mut report, file, loaded.text.is_some(), loaded.diagnostics);
    }
    for file in markdown_files(ws, &paths.qa_reports) {
        let Some(unit) =
            file.rsplit('/').next().and_then(|n| n.strip_prefix("QA-Report-")).and_then(|n| n.strip_suffix(".md"))
        else {
            continue;
        };
        let mut loaded = load_markdown(ws, &file, Some(SchemaName::QaReport));
        if let Some(front_unit) = loaded
            .doc
            .as_ref()
            .and_then(|d| d.front_matter.as_ref())
            .and_then(|f| f.get("unit_id"))
            .and_then(Value::as_str)
            && front_unit != unit
            && !per_release_name(unit, front_unit, loaded.doc.as_ref().and_then(|d| d.front_matter.as_ref()))
            && loaded.diagnostics.is_empty()
        {
            loaded.diagnostics.push(
                Diagnostic::new(
                    &file,
                    Kind::Schema,
                    format!("front matter `unit_id` is `{front_unit}` but the file name says `{unit}`"),
                )
                .pointer("/unit_id"),
            );
        }
        note(&mut report, &file, true, loaded.diagnostics);
    }
    for dir in [&paths.artifacts, &paths.deployments] {
        for file in markdown_files(ws, dir) {
            let name = file.rsplit('/').next().unwrap_or_default();
            let loaded = load_markdown(ws, &file, artifact_schema(name));
            note(&mut report, &file, true, loaded.diagnostics);
        }
    }
    report.warnings.extend(crate::merge::setup::missing_driver(&ws.root));
    report
}

/// The warnings about `tasks.json` (see [`crate::engine::readiness::task_warnings`]) as
/// `validate` and `status` both print them, with the line and column of the field.
pub fn task_warnings(ws: &Workspace, tasks: &Loaded) -> Vec<String> {
    let selection = ws.task_selection();
    let Some(found) = tasks.value.as_ref().and_then(|v| crate::task::entries(v, &selection)) else {
        return Vec::new();
    };
    let (prefix, entries) = (found.prefix.as_str(), &found.list);
    // Only entries of a DevOps type can be warned about: only those are decoded.
    let decoded: Vec<(usize, crate::task::Task)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.get("type").and_then(Value::as_str).is_some_and(crate::task::owned_type))
        .map(|(index, entry)| (index, crate::task::Task::from_value(entry.clone())))
        .collect();
    let warnings = crate::engine::readiness::task_warnings(
        &ws.config,
        &ws.config.paths.tasks,
        prefix,
        decoded.iter().map(|(index, task)| (*index, task)),
    );
    let text = tasks.text.as_deref().unwrap_or_default();
    warnings.into_iter().map(|w| w.locate_in(text).to_string()).collect()
}

/// The entries of `tasks.json` that fail the task schema, from a [`load_tasks`]: what `run`,
/// `status` and `tasks list` say on stderr, so that a file none of whose entries is valid is
/// never read as a list with nothing to do.
#[derive(Debug, Default)]
pub struct FailingEntries {
    pub file: String,
    /// `/tasks` or `` (a bare array).
    pub prefix: String,
    /// How many entries the file has.
    pub total: usize,
    /// Each failing entry: its index and the line of its first problem, in file order.
    pub entries: Vec<(usize, Option<u32>)>,
    /// The failing entries this runner owns (by agent and type), by index.
    pub owned: Vec<usize>,
    /// The schema problems of the failing entries this runner owns, as `validate` says them.
    pub owned_problems: Vec<Diagnostic>,
}

/// How many failing entries [`FailingEntries::sentence`] names before "and N more".
const FAILING_ENTRIES_NAMED: usize = 5;

impl FailingEntries {
    pub fn of(ws: &Workspace, tasks: &Loaded) -> FailingEntries {
        let file = ws.config.paths.tasks.clone();
        let selection = ws.task_selection();
        let Some(found) = tasks.value.as_ref().and_then(|v| crate::task::entries(v, &selection)) else {
            return FailingEntries { file, ..FailingEntries::default() };
        };
        let (prefix, list) = (found.prefix.as_str(), &found.list);
        let mut failing = FailingEntries { file, prefix: prefix.to_owned(), total: list.len(), ..Default::default() };
        for diagnostic in tasks.diagnostics.iter().filter(|d| d.kind == Kind::Schema) {
            let Some(index) = crate::engine::readiness::entry_of(diagnostic, prefix) else { continue };
            if failing.entries.last().is_none_or(|(last, _)| *last != index) {
                failing.entries.push((index, diagnostic.line));
            }
            if list.get(index).is_some_and(|entry| crate::task::owned_entry(&ws.config, entry)) {
                if failing.owned.last() != Some(&index) {
                    failing.owned.push(index);
                }
                failing.owned_problems.push(diagnostic.clone());
            }
        }
        failing.entries.sort_unstable();
        failing.entries.dedup_by_key(|(index, _)| *index);
        failing.owned.sort_unstable();
        failing.owned.dedup();
        failing
    }

    /// [`FailingEntries::of`] the text of `tasks.json` already read.
    pub fn of_text(ws: &Workspace, text: &str) -> FailingEntries {
        FailingEntries::of(ws, &check_tasks(ws, text.to_owned()))
    }

    /// One line for stderr: how many entries fail and where, or `None` when every entry passes.
    pub fn sentence(&self, agent: &str) -> Option<String> {
        let count = self.entries.len();
        if count == 0 {
            return None;
        }
        let mut places: Vec<String> = self
            .entries
            .iter()
            .take(FAILING_ENTRIES_NAMED)
            .map(|(index, line)| match line {
                Some(line) => format!("{}/{index} (line {line})", self.prefix),
                None => format!("{}/{index}", self.prefix),
            })
            .collect();
        let places = if count > FAILING_ENTRIES_NAMED {
            format!("{} and {} more", places.join(", "), count - FAILING_ENTRIES_NAMED)
        } else {
            let last = places.pop().unwrap_or_default();
            if places.is_empty() { last } else { format!("{} and {last}", places.join(", ")) }
        };
        let entries = if self.total == 1 { "entry" } else { "entries" };
        let fail = if count == 1 { "fails" } else { "fail" };
        let owned = match (self.owned.len(), count) {
            (0, _) => String::new(),
            (1, 1) => format!("; it is this runner's (`{agent}`) and cannot run"),
            (1, _) => format!("; one of them is this runner's (`{agent}`) and cannot run"),
            (n, _) => format!("; {n} of them are this runner's (`{agent}`) and cannot run"),
        };
        Some(format!(
            "warning: {count} of {} {entries} of {} {fail} the task schema, at {places}{owned}; `opsflow validate` lists every problem",
            self.total, self.file
        ))
    }
}

/// Whether a QA report named `QA-Report-<name>.md` is one release's report: `<name>` is its
/// front matter's `<unit_id>-<version>` (QA may write one report per release).
fn per_release_name(name: &str, unit: &str, front_matter: Option<&Value>) -> bool {
    let version = front_matter.and_then(|f| f.get("version")).and_then(Value::as_str).unwrap_or_default();
    name.strip_prefix(unit)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|suffix| !version.is_empty() && crate::release::same_version(suffix, version))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The duplicate check and lookups by id find, for every id, its first entry, and every
    /// later entry of it in order; an id written with escapes is the same id.
    #[test]
    fn the_id_order_finds_the_first_entry_of_each_id_and_every_later_one() {
        let text = r#"{"tasks": [
            {"id": "A"}, {"id": "B"}, {"title": "no id"}, {"id": "\u0041"}, {"id": "C"},
            {"id": "B"}, {"id": "A"}, {"id": "D"}
        ]}"#;
        let all = crate::store::tasks::scan_index(text, &Default::default(), |_| false, |_| false).unwrap().entries;
        let id = |at: usize| all.get(at)?.id.as_deref();
        let hashes: Vec<u32> = all.iter().map(|e| id_hash(e.id.as_deref())).collect();
        let ids = IdOrder::new(&hashes, &id);
        assert_eq!(ids.duplicates(), [(3, 0), (5, 1), (6, 0)]);
        let problems: Vec<String> = ids.problems("t", "/tasks").iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "t: at /tasks/3/id: duplicate task id `A` (also used at /tasks/0)",
                "t: at /tasks/5/id: duplicate task id `B` (also used at /tasks/1)",
                "t: at /tasks/6/id: duplicate task id `A` (also used at /tasks/0)",
            ]
        );
        let found: Vec<Option<usize>> = ["A", "B", "C", "D", "E", ""].iter().map(|id| ids.find(id)).collect();
        assert_eq!(found, [Some(0), Some(1), Some(4), Some(7), None, None]);
    }

    #[test]
    fn graph_problems_are_each_reported() {
        let tasks = [
            json!({"id": "A", "depends_on": ["B"]}),
            json!({"id": "B", "depends_on": ["C", "Z"]}),
            json!({"id": "C", "depends_on": ["A"]}),
            json!({"id": "A"}),
        ];
        let problems = task_graph_problems("t.json", "/tasks", &tasks, None, &|_| false);
        let kinds: Vec<_> = problems.iter().map(|d| (d.kind, d.pointer.clone().unwrap())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::DuplicateId, "/tasks/3/id".to_owned()),
                (Kind::UnknownDependency, "/tasks/1/depends_on/1".to_owned()),
                (Kind::DependencyCycle, "/tasks/0/depends_on".to_owned()),
            ]
        );
        assert_eq!(problems[2].message, "dependency cycle: A -> B -> C -> A");
    }

    #[test]
    fn an_id_is_found_by_its_hash_and_its_text_before_and_after_the_map_is_made() {
        let names: Vec<String> = (0..100).map(|i| format!("T-{i}")).collect();
        let mut ids: Vec<u32> = names.iter().map(|n| id_hash(Some(n))).collect();
        // Two ids that share a hash are told apart by the entry's own id.
        ids[7] = ids[3];
        let head = |at: usize| {
            Some(crate::store::tasks::TaskHead {
                index: at,
                id: Some(std::borrow::Cow::Owned(names.get(at)?.clone())),
                ..Default::default()
            })
        };
        let lookup = IdLookup::new(&ids, &head);
        for _ in 0..2 {
            for (at, name) in names.iter().enumerate().filter(|(at, _)| *at != 7) {
                assert_eq!(lookup.find(name), Some(at), "{name}");
            }
            assert_eq!(lookup.find("T-7"), None, "its hash is another's");
            assert_eq!(lookup.find("ABSENT"), None);
        }
        assert!(lookup.by_hash.get().is_some(), "the map was made after {} scans", IdLookup::SCANS);
    }

    /// What a load returns, in a form two loads can be compared by.
    fn seen(list: &TaskList) -> String {
        let mut statuses: Vec<_> = list.statuses.iter().collect();
        statuses.sort();
        let diagnostics: Vec<_> = list.diagnostics.iter().map(ToString::to_string).collect();
        let known = list.known.as_ref().map(|k| (k.layout, k.entries.clone()));
        format!(
            "{} {} {:?} {:?} {:?} {:?} {:?}",
            list.readable, list.prefix, list.kept, statuses, list.owned_by_status, diagnostics, known
        )
    }

    #[test]
    fn a_load_resumed_from_the_last_version_returns_what_a_whole_scan_returns() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), None, None).unwrap();
        let path = ws.path(&ws.config.paths.tasks);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let keep = |head: &crate::store::tasks::TaskHead<'_>| {
            crate::task::TaskStatus::parse(head.status.as_deref().unwrap_or_default()).is_open()
                && crate::workflow::owns(&ws.config, head.agent.as_deref(), head.kind.as_deref())
        };
        let remember = |id: &str| id.starts_with("FIX-");
        let entry = |id: &str, agent: &str, status: &str, deps: &[&str]| {
            let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
            format!(
                "    {{\"id\": \"{id}\", \"agent\": \"{agent}\", \"type\": \"deployment_staging\", \"status\": \"{status}\", \"depends_on\": [{}], \"title\": \"{}\"}}",
                deps.join(", "),
                "a task of the file ".repeat(4)
            )
        };
        let mut entries: Vec<String> = (0..3000)
            .map(|i| {
                let agent = if i % 3 == 0 { "DevOps-Engineer" } else { "Backend-Developer" };
                entry(&format!("T-{i}"), agent, if i % 11 == 0 { "failed" } else { "done" }, &[])
            })
            .collect();
        entries.push(entry("FIX-T-33", "DevOps-Engineer", "pending", &["T-33"]));
        entries.push(entry("P-1", "DevOps-Engineer", "pending", &["T-5", "T-6"]));
        let file = |entries: &[String]| format!("{{\n  \"tasks\": [\n{}\n  ]\n}}\n", entries.join(",\n"));
        let mut index = TaskIndex::default();
        // Written a second ago, as a pass finds a file after the debounce: the text read may
        // stand for its version (`store::file::Known`), and both loads say where the kept are.
        let write = |text: String| {
            std::fs::write(&path, text).unwrap();
            let then = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(then).unwrap();
        };
        let check = |index: &mut TaskIndex, entries: &[String], resumed: bool| {
            write(file(entries));
            let before = index.resumes;
            let indexed = load_task_list_indexed(&ws, keep, remember, Some(index));
            let whole = load_task_list(&ws, keep, remember);
            assert_eq!(seen(&indexed), seen(&whole));
            assert!(indexed.known.is_some());
            assert_eq!(index.resumes > before, resumed, "resumed: {}", index.resumes);
            indexed
        };
        assert_eq!(check(&mut index, &entries, false).kept.len(), 2, "the first load scans the whole file");
        check(&mut index, &entries, true);
        // An agent appends a task that depends on one before it and on one that is not there.
        entries.push(entry("P-2", "DevOps-Engineer", "pending", &["P-1", "T-10", "NOPE"]));
        let loaded = check(&mut index, &entries, true);
        assert_eq!(loaded.kept.len(), 3);
        assert!(loaded.diagnostics.iter().any(|d| d.kind == Kind::UnknownDependency), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.statuses.get("T-10").map(String::as_str), Some("done"));
        assert_eq!(loaded.statuses.get("FIX-T-33").map(String::as_str), Some("pending"));
        // An edit under the lock finds its entries in a newer version through the index, as a
        // scan finds them; with a duplicate id anywhere it leaves the finding to the scan.
        let mut newer = entries.clone();
        newer.push(entry("P-3", "Backend-Developer", "pending", &[]));
        let text = file(&newer);
        let wanted = ["P-2", "T-10", "P-3", "ABSENT"];
        let by_index = indexed_heads(&ws, &index, &text, &wanted).expect("found through the index");
        let scanned = crate::store::tasks::scan_ids_in(&text, &ws.task_selection(), &wanted).unwrap();
        let heads = |found: &(crate::store::tasks::Layout, Vec<crate::store::tasks::TaskHead<'_>>)| {
            let heads: Vec<_> = found.1.iter().map(|h| (h.index, h.span, h.id.as_deref().map(str::to_owned))).collect();
            (found.0, heads)
        };
        assert_eq!(heads(&by_index), heads(&scanned));
        assert_eq!(by_index.1.len(), 3);
        newer.push(entry("T-12", "Backend-Developer", "pending", &[]));
        assert!(indexed_heads(&ws, &index, &file(&newer), &wanted).is_none());
        // The claim changes one status near the end; then the entry is done.
        let last = entries.len() - 1;
        entries[last] = entry("P-2", "DevOps-Engineer", "in_progress", &["P-1", "T-10"]);
        check(&mut index, &entries, true);
        entries[last] = entry("P-2", "DevOps-Engineer", "done", &["P-1", "T-10"]);
        assert_eq!(check(&mut index, &entries, true).kept.len(), 2);
        // A duplicate id near the end is found by the whole scan, with its usual message.
        entries.push(entry("T-7", "Backend-Developer", "pending", &[]));
        let duplicate = check(&mut index, &entries, false);
        assert!(!duplicate.readable);
        assert!(duplicate.diagnostics.iter().any(|d| d.kind == Kind::DuplicateId), "{:?}", duplicate.diagnostics);
        entries.pop();
        check(&mut index, &entries, false);
        check(&mut index, &entries, true);
        // Two new entries with one id between them.
        entries.push(entry("NEW", "Backend-Developer", "pending", &[]));
        entries.push(entry("NEW", "Backend-Developer", "pending", &[]));
        assert!(!check(&mut index, &entries, false).readable);
        entries.truncate(entries.len() - 2);
        check(&mut index, &entries, false);
        // Many entries appended at once (agents faster than the runner) are walked, not the file.
        let before_many = entries.len();
        entries.extend((0..600).map(|i| entry(&format!("MANY-{i}"), "DevOps-Engineer", "done", &["T-9"])));
        check(&mut index, &entries, true);
        entries.push(entry("MANY-599", "Backend-Developer", "pending", &[]));
        assert!(!check(&mut index, &entries, false).readable, "a duplicate among many walked");
        entries.truncate(before_many);
        check(&mut index, &entries, false);
        // A change early in the file: the whole file is scanned again.
        entries[4] = entry("T-4", "DevOps-Engineer", "pending", &[]);
        assert_eq!(check(&mut index, &entries, false).kept.len(), 3);
        // A broken end: the whole scan says what is wrong.
        write(file(&entries).replace("\n  ]\n}", ",\n  ]\n}"));
        let broken = load_task_list_indexed(&ws, keep, remember, Some(&mut index));
        assert!(!broken.readable && !broken.diagnostics.is_empty());
        check(&mut index, &entries, false);
        check(&mut index, &entries, true);
    }
}
