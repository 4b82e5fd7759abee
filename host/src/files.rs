//! Data directories a function reads files from, when the analysis cannot
//! tell which files: every file under the directory counts (a miss when any
//! changes), within limits; beyond them the call is refused with
//! `code_unavailable` naming the directory, never served from a stale graph.

use std::path::{Path, PathBuf};

use crate::error::{HitSaveError, Result};

/// Most files a directory counted as a whole may hold.
pub const DIRECTORY_MAX_FILES: usize = 4096;
/// Most bytes its files may hold together (each first call of a process
/// hashes them).
pub const DIRECTORY_MAX_BYTES: u64 = 256 << 20;

/// Entries never counted: hidden ones (`.git`, `.venv`), bytecode caches and
/// installed packages, which no data-reading code names.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__" || name == "node_modules"
}

/// A HitSave store (its index and blobs): written by every call, never an input.
fn is_store(dir: &Path) -> bool {
    dir.join("index.sqlite").is_file() && dir.join("blobs").is_dir()
}

/// The files under `root` (recursively, sorted; symbolic links followed,
/// a link loop ending at the directory limit) and the directories walked (whose listings change when a
/// file is added or removed). `code_unavailable` when it holds more than
/// [`DIRECTORY_MAX_FILES`] files or [`DIRECTORY_MAX_BYTES`] bytes, or
/// cannot be read; `reader` names the function for the message.
pub fn directory_files(root: &Path, reader: &str) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    walk(root).map(|(files, dirs, _)| (files, dirs)).map_err(|why| {
        HitSaveError::CodeUnavailable(format!(
            "{reader} reads files from the directory {} and the analysis cannot tell which ({why}); pass the files \
             it reads as File(path) arguments (docs/python.md, docs/node.md: data files)",
            root.display()
        ))
    })
}

/// [`directory_files`]' walk, with the files' total size; why it stopped as text.
fn walk(root: &Path) -> std::result::Result<(Vec<PathBuf>, Vec<PathBuf>, u64), String> {
    let (mut files, mut dirs, mut bytes) = (Vec::new(), vec![root.to_path_buf()], 0u64);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|error| format!("{}: {error}", dir.display()))?;
            let name = entry.file_name();
            if name.to_str().is_none_or(skipped) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else { continue }; // a dangling link holds nothing
            if meta.is_dir() {
                if !is_store(&path) {
                    dirs.push(path.clone());
                    pending.push(path);
                }
            } else if meta.is_file() {
                bytes += meta.len();
                files.push(path);
                if files.len() > DIRECTORY_MAX_FILES {
                    return Err(format!("more than {DIRECTORY_MAX_FILES} files"));
                }
                if bytes > DIRECTORY_MAX_BYTES {
                    return Err(format!("more than {} MiB", DIRECTORY_MAX_BYTES >> 20));
                }
            }
        }
        if dirs.len() > DIRECTORY_MAX_FILES {
            return Err(format!("more than {DIRECTORY_MAX_FILES} directories"));
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs, bytes))
}

/// Arguments longer than this are no paths (a document, a payload).
const ARGUMENT_PATH_MAX: usize = 4096;

/// What a call's arguments name on disk, counted by contents, for a
/// function whose code reads or writes files (`def load(path): return
/// open(path).read()`, `(p) => readFileSync(p)`), or that has an explicit
/// identity (its code is not analysed): for each text argument, in order,
/// once,
/// - an existing regular file (relative to the working directory, or
///   absolute; `file://` allowed): `(text, "<length>:<digest>")`, or
///   `(text, "unreadable")`;
/// - an existing directory (`total("data")` listing and reading it):
///   `(text, "dir:<files>:<digest>")` over its files' relative paths and
///   contents and its subdirectories, as [`directory_files`] walks them;
/// - a glob pattern (`*`, `?`, `[…]`, `{a,b}`, `**`: `load_all("data/*.csv")`),
///   matching something or nothing: `(text, "glob:<matches>:<digest>")` over
///   the paths it matches and their contents (a directory matched by its
///   files), so a file added, removed or edited changes it. Matching follows
///   Python's `glob` and Node's glob packages (`*` skips a leading dot, `**`
///   hidden directories), with braces from the latter; `**` descends like
///   [`directory_files`].
/// - the start of file names beside it, naming no path itself
///   (`load("train")` reading `train.csv`): `(text, "stem:<files>:<digest>")`
///   over the files whose names continue it with `.`, `_` or `-`, when
///   there are any (at most [`STEM_MAX_FILES`]).
///
/// The bindings add them to the call's key, so editing what the text names
/// misses where the text alone would hit. `unhashable_value` when a
/// directory or a pattern's matches exceed [`DIRECTORY_MAX_FILES`] files or
/// [`DIRECTORY_MAX_BYTES`] bytes. File digests are kept per file while its
/// size, time and inode hold ([`FileState`]).
pub fn argument_files(texts: &[String]) -> Result<Vec<(String, String)>> {
    let mut found: Vec<(String, String)> = Vec::new();
    for text in texts {
        if text.is_empty() || text.len() > ARGUMENT_PATH_MAX || text.contains('\0') {
            continue;
        }
        let text = text.strip_prefix("file://").unwrap_or(text);
        if found.iter().any(|(seen, _)| seen == text) {
            continue;
        }
        let path = Path::new(text);
        let digest = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => file_entry(path),
            Ok(meta) if meta.is_dir() => directory_entry(path, text)?,
            _ => match glob_entry(text)? {
                Some(entry) => entry,
                None => match stem_entry(text) {
                    Some(entry) => entry,
                    None => continue,
                },
            },
        };
        found.push((text.to_owned(), digest));
    }
    Ok(found)
}

/// Most files a text's stem may name (`load("train")` reading
/// `train.csv`); more, and the text is taken for no stem.
const STEM_MAX_FILES: usize = 64;

/// A text naming no path that is the start of file names beside it
/// (`load("train")` reading `f"{name}.csv"`, `` `${name}.json` ``,
/// `name + "_x.npy"`): `"stem:<files>:<hex>"` over those files (the name
/// followed by `.`, `_` or `-`: `train.csv`, `train_2.csv`, not
/// `trainer.py`) and their contents; `None` when there are none.
fn stem_entry(text: &str) -> Option<String> {
    let path = Path::new(text);
    let stem = path.file_name()?.to_str()?;
    if stem.is_empty() || stem.starts_with('.') || text.ends_with('/') || text.contains(|c: char| c.is_control()) {
        return None;
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut names: Vec<&String> = Vec::new();
    let listed = listing(&parent);
    for name in listed.iter() {
        let Some(rest) = name.strip_prefix(stem) else { continue };
        if rest.starts_with(['.', '_', '-']) && parent.join(name).is_file() {
            names.push(name);
            if names.len() > STEM_MAX_FILES {
                return None;
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    names.sort();
    let mut hasher = blake3::Hasher::new();
    for name in &names {
        feed(&mut hasher, "f", name, &file_entry(&parent.join(name)));
    }
    Some(format!("stem:{}:{}", names.len(), hasher.finalize().to_hex()))
}

/// A file's `"<length>:<digest>"`, or `"unreadable"`.
fn file_entry(path: &Path) -> String {
    match crate::hash::file_digest_cached(path) {
        Ok((len, digest)) => format!("{len}:{digest}"),
        Err(_) => "unreadable".to_owned(),
    }
}

/// The refusal when what an argument names is too large to count: the
/// argument cannot be hashed faithfully (`unhashable_value`).
fn too_large(text: &str, why: String) -> HitSaveError {
    HitSaveError::Core(hitsave_core::CoreError::new(
        hitsave_core::ErrorCode::UnhashableValue,
        format!(
            "the argument {text:?} names {why}, too many to count by contents at every call; pass the files the \
             call reads as File(path) arguments, or list the argument in ignore= (docs/python.md, docs/node.md: \
             data files)"
        ),
    ))
}

/// A directory's `"dir:<files>:<digest>"`: its subdirectories' and files'
/// paths relative to it (`/`-separated, so the same data hits on every
/// machine) with the files' contents.
fn directory_entry(path: &Path, text: &str) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let (files, _) =
        hash_tree(&mut hasher, path, "").map_err(|why| too_large(text, format!("a directory with {why}")))?;
    Ok(format!("dir:{files}:{}", hasher.finalize().to_hex()))
}

/// Feeds a directory's listing (recursively) and its files' contents into
/// `hasher`, each path under `prefix`; how many files and bytes, or why not.
fn hash_tree(hasher: &mut blake3::Hasher, root: &Path, prefix: &str) -> std::result::Result<(usize, u64), String> {
    let (files, dirs, bytes) = walk(root)?;
    let relative = |path: &Path| {
        let inner = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        match (prefix.is_empty(), inner.is_empty()) {
            (true, _) => inner,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}/{inner}"),
        }
    };
    for dir in &dirs {
        feed(hasher, "d", &relative(dir), "");
    }
    for file in &files {
        feed(hasher, "f", &relative(file), &file_entry(file));
    }
    Ok((files.len(), bytes))
}

/// One length-prefixed record of a listing digest.
fn feed(hasher: &mut blake3::Hasher, kind: &str, path: &str, digest: &str) {
    for part in [kind, path, digest] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
}

/// Directory listings by directory, kept while its size, time and inode
/// hold (an entry added, removed or renamed changes its time): a function
/// given a pattern at every call (or a text that only looks like one, a
/// JSON document) costs a stat, not a listing.
static LISTINGS: StateCache<std::sync::Arc<Vec<String>>> = StateCache::new(4096);

/// The names in a directory (empty when it cannot be read).
fn listing(dir: &Path) -> std::sync::Arc<Vec<String>> {
    let Ok(names) = LISTINGS.get_or_derive(dir, || {
        let names = match std::fs::read_dir(dir) {
            Ok(entries) => {
                entries.flatten().filter_map(|entry| entry.file_name().to_str().map(str::to_owned)).collect()
            }
            Err(_) => Vec::new(),
        };
        Ok::<_, std::convert::Infallible>(std::sync::Arc::new(names))
    });
    names
}

/// Whether a text is a glob pattern rather than a plain name (a text with
/// a quote or a control character, a JSON document or a sentence, is no
/// pattern code passes to a glob function).
fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '[', '{']) && !text.contains(|c: char| c == '"' || c.is_control())
}

/// A glob component's matcher, compiled once per process (a function given
/// the same pattern at every call does not compile it again); `None` when
/// the glob syntax does not accept it.
fn matcher(component: &str) -> Option<globset::GlobMatcher> {
    type Compiled = std::collections::HashMap<String, Option<globset::GlobMatcher>>;
    static COMPILED: std::sync::Mutex<Option<Compiled>> = std::sync::Mutex::new(None);
    let mut compiled = COMPILED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let compiled = compiled.get_or_insert_with(Default::default);
    if let Some(known) = compiled.get(component) {
        return known.clone();
    }
    if compiled.len() >= 1024 {
        compiled.clear();
    }
    let made =
        globset::GlobBuilder::new(component).literal_separator(true).build().ok().map(|glob| glob.compile_matcher());
    compiled.insert(component.to_owned(), made.clone());
    made
}

/// A glob pattern's `"glob:<matches>:<digest>"` (`None`: no pattern, or not
/// one the glob syntax accepts, then it is only a text).
fn glob_entry(text: &str) -> Result<Option<String>> {
    if !is_pattern(text) {
        return Ok(None);
    }
    let absolute = text.starts_with('/');
    let mut components: Vec<&str> = text.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    if components.is_empty() {
        return Ok(None);
    }
    // Each component a matcher, or its literal name.
    enum Step {
        Name(String),
        Match(globset::GlobMatcher, bool),
        Any,
    }
    let mut steps = Vec::with_capacity(components.len());
    for part in components.drain(..) {
        if part == "**" {
            steps.push(Step::Any);
        } else if is_pattern(part) {
            let Some(matcher) = matcher(part) else { return Ok(None) };
            steps.push(Step::Match(matcher, part.starts_with('.')));
        } else {
            steps.push(Step::Name(part.to_owned()));
        }
    }
    // Candidates: (the path as the pattern writes it, the path on disk).
    let start = if absolute { (String::from("/"), PathBuf::from("/")) } else { (String::new(), PathBuf::from(".")) };
    let join = |shown: &str, name: &str| {
        if shown.is_empty() {
            name.to_owned()
        } else if shown.ends_with('/') {
            format!("{shown}{name}")
        } else {
            format!("{shown}/{name}")
        }
    };
    let mut current = vec![start];
    let mut listed = 0usize;
    for step in &steps {
        let mut next = Vec::new();
        for (shown, path) in &current {
            match step {
                Step::Name(name) => {
                    let path = path.join(name);
                    if std::fs::symlink_metadata(&path).is_ok() {
                        next.push((join(shown, name), path));
                    }
                }
                Step::Match(matcher, hidden) => {
                    for name in listing(path).iter() {
                        // `*` skips hidden entries unless the pattern names them (Python's glob, Node's).
                        if matcher.is_match(name) && (!name.starts_with('.') || *hidden) {
                            next.push((join(shown, name), path.join(name)));
                        }
                    }
                }
                Step::Any => {
                    // Itself and every directory under it.
                    next.push((shown.clone(), path.clone()));
                    if std::fs::metadata(path).is_ok_and(|meta| meta.is_dir()) {
                        let (_, dirs, _) = walk(path).map_err(|why| too_large(text, format!("a tree with {why}")))?;
                        for dir in dirs.into_iter().skip(1) {
                            let inner = dir.strip_prefix(path).unwrap_or(&dir).to_string_lossy().replace('\\', "/");
                            next.push((join(shown, &inner), dir));
                        }
                    }
                }
            }
            listed += 1;
        }
        if next.len() > DIRECTORY_MAX_FILES || listed > DIRECTORY_MAX_FILES {
            return Err(too_large(text, format!("more than {DIRECTORY_MAX_FILES} paths")));
        }
        next.sort();
        next.dedup();
        current = next;
    }
    let mut hasher = blake3::Hasher::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    for (shown, path) in &current {
        let Ok(meta) = std::fs::metadata(path) else { continue }; // a dangling link holds nothing
        if meta.is_dir() {
            let (tree_files, tree_bytes) =
                hash_tree(&mut hasher, path, shown).map_err(|why| too_large(text, format!("matches with {why}")))?;
            files += tree_files;
            bytes += tree_bytes;
        } else {
            bytes += meta.len();
            files += 1;
            feed(&mut hasher, "f", shown, &file_entry(path));
        }
        if files > DIRECTORY_MAX_FILES || bytes > DIRECTORY_MAX_BYTES {
            return Err(too_large(
                text,
                format!("more than {DIRECTORY_MAX_FILES} files or {} MiB", DIRECTORY_MAX_BYTES >> 20),
            ));
        }
    }
    Ok(Some(format!("glob:{}:{}", current.len(), hasher.finalize().to_hex())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_files_names_existing_files_by_contents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dir")).unwrap();
        let file = root.join("data.txt");
        std::fs::write(&file, b"1").unwrap();
        let text = file.to_string_lossy().into_owned();
        let texts =
            vec![text.clone(), root.join("dir").to_string_lossy().into_owned(), "no such file".into(), text.clone()];
        let first = argument_files(&texts).unwrap();
        // The file, once, and the (empty) directory; the missing name is nothing.
        assert_eq!(first.len(), 2);
        assert!(first[1].1.starts_with("dir:0:"), "{}", first[1].1);
        assert_eq!(first[0].0, text);
        assert!(first[0].1.starts_with("1:blob1_"), "{}", first[0].1);
        std::fs::write(&file, b"22").unwrap();
        let second = argument_files(&texts).unwrap();
        assert_ne!(first[0].1, second[0].1, "an edit (a new size, and racy for two seconds) is seen");
    }

    #[test]
    fn argument_files_count_directories_and_glob_patterns_by_what_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in ["data/a.txt", "data/b.csv", "data/.hidden.txt", "data/sub/c.txt", "data/sub/deep/d.txt"] {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), b"1").unwrap();
        }
        let at = |text: &str| root.join(text).to_string_lossy().into_owned();
        let digests = |texts: &[String]| -> Vec<String> {
            argument_files(texts).unwrap().into_iter().map(|(_, digest)| digest).collect()
        };
        let texts = [
            at("data"),
            at("data/*.txt"),
            at("data/**/*.txt"),
            at("data/{a,b}.*"),
            at("data/[ab].txt"),
            at("data/*.json"),
            at("nowhere/*.txt"),
        ];
        let first = digests(&texts);
        let counts: Vec<&str> = first.iter().map(|digest| digest.rsplit_once(':').unwrap().0).collect();
        // The directory: its four files, not the hidden one. `*` skips it
        // too; `**` descends; a pattern matching nothing still counts.
        assert_eq!(counts, ["dir:4", "glob:1", "glob:3", "glob:2", "glob:1", "glob:0", "glob:0"]);
        assert_eq!(first[5], first[6], "nothing matched, wherever");
        // A new file the pattern matches changes it (and the directory), not the others.
        std::fs::write(root.join("data/sub/e.txt"), b"2").unwrap();
        let second = digests(&texts);
        let changed: Vec<bool> = first.iter().zip(&second).map(|(a, b)| a != b).collect();
        assert_eq!(changed, [true, false, true, false, false, false, false]);
        // An edit (a new size) changes what reads the file.
        std::fs::write(root.join("data/a.txt"), b"22").unwrap();
        let third = digests(&texts);
        let changed: Vec<bool> = second.iter().zip(&third).map(|(a, b)| a != b).collect();
        assert_eq!(changed, [true, true, true, true, true, false, false]);
        // Relative names digest by relative paths: the same tree elsewhere gives the same digests.
        let copy = tempfile::tempdir().unwrap();
        for file in ["data/a.txt", "data/b.csv"] {
            std::fs::create_dir_all(copy.path().join(file).parent().unwrap()).unwrap();
            std::fs::write(copy.path().join(file), b"1").unwrap();
            std::fs::create_dir_all(dir.path().join("other").join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join("other").join(file), b"1").unwrap();
        }
        let a = argument_files(&[copy.path().join("data").to_string_lossy().into_owned()]).unwrap();
        let b = argument_files(&[root.join("other/data").to_string_lossy().into_owned()]).unwrap();
        assert_eq!(a[0].1, b[0].1);
        // Too many files: refused, naming the argument.
        for index in 0..=DIRECTORY_MAX_FILES {
            std::fs::write(root.join(format!("data/sub/{index}.txt")), b"1").unwrap();
        }
        for text in [at("data"), at("data/**/*.txt")] {
            let refused = argument_files(std::slice::from_ref(&text)).unwrap_err();
            assert_eq!(refused.code(), "unhashable_value");
            assert!(refused.to_string().contains(&format!("{text:?}")), "{refused}");
        }
    }

    #[test]
    fn a_stem_counts_the_files_it_begins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (file, text) in [("train.csv", "1"), ("train_2.csv", "2"), ("trainer.py", "3"), ("other.csv", "4")] {
            std::fs::write(root.join(file), text).unwrap();
        }
        let stem = root.join("train").to_string_lossy().into_owned();
        let first = argument_files(std::slice::from_ref(&stem)).unwrap();
        assert!(first[0].1.starts_with("stem:2:"), "{first:?}");
        std::fs::write(root.join("trainer.py"), "33").unwrap();
        assert_eq!(argument_files(std::slice::from_ref(&stem)).unwrap(), first, "not a file the stem begins");
        std::fs::write(root.join("train.csv"), "11").unwrap();
        assert_ne!(argument_files(std::slice::from_ref(&stem)).unwrap(), first);
        let nothing = root.join("missing").to_string_lossy().into_owned();
        assert!(argument_files(&[nothing, "plain words".into()]).unwrap().is_empty());
    }

    #[test]
    fn lists_data_files_and_skips_hidden_entries_caches_and_stores() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("raw/2024")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("__pycache__")).unwrap();
        std::fs::create_dir_all(root.join("cache/blobs")).unwrap();
        std::fs::write(root.join("cache/index.sqlite"), b"").unwrap();
        for file in ["a.csv", "raw/b.csv", "raw/2024/c.csv", ".git/HEAD", "__pycache__/x.pyc", ".hidden"] {
            std::fs::write(root.join(file), b"1").unwrap();
        }
        let (files, dirs) = directory_files(root, "app:f").unwrap();
        let relative = |paths: &[PathBuf]| -> Vec<String> {
            paths.iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect()
        };
        assert_eq!(relative(&files), ["a.csv", "raw/2024/c.csv", "raw/b.csv"]);
        assert_eq!(relative(&dirs), ["", "raw", "raw/2024"]);
        for index in 0..DIRECTORY_MAX_FILES {
            std::fs::write(root.join(format!("raw/{index}.csv")), b"1").unwrap();
        }
        let refused = directory_files(root, "app:f").unwrap_err();
        assert_eq!(refused.code(), "code_unavailable");
        assert!(refused.to_string().contains("app:f reads files from the directory"), "{refused}");
    }
}

/// What a later check compares to see that a file, or a directory's listing,
/// changed since it was read: its size, modification time and inode (taken
/// before the contents are read, so an edit during the read is seen later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    /// Not there (or not readable).
    Missing,
    /// Size, modification time in nanoseconds, inode.
    Seen(u64, i128, u64),
    /// Modified in the last two seconds: a second edit within a timestamp's
    /// granularity could leave it looking the same, so it equals nothing
    /// (git's "racy" case; read again until it is older).
    Racy,
}

impl FileState {
    /// The state of `path` now.
    pub fn of(path: &Path) -> Self {
        let Ok(meta) = std::fs::metadata(path) else { return Self::Missing };
        let modified = meta.modified().ok().and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
        let Some(modified) = modified else { return Self::Racy };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if now.saturating_sub(modified) < std::time::Duration::from_secs(2) {
            return Self::Racy;
        }
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Self::Seen(meta.len(), modified.as_nanos() as i128, inode)
    }

    /// Whether `path` still has this state (never for `Racy`).
    pub fn still(&self, path: &Path) -> bool {
        !matches!(self, Self::Racy) && *self == Self::of(path)
    }
}

/// Values derived from what is at a path (a file's digest, a directory's
/// listing), by absolute path, kept while its [`FileState`] holds: never for
/// a path missing or modified in the last two seconds, nor when it changed
/// while the value was derived. Emptied when it holds `limit` entries.
pub struct StateCache<T> {
    entries: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, (FileState, T)>>>,
    limit: usize,
}

impl<T: Clone> StateCache<T> {
    /// An empty cache of at most `limit` entries.
    pub const fn new(limit: usize) -> Self {
        Self { entries: std::sync::Mutex::new(None), limit }
    }

    /// The value kept for `path` while it is unchanged, else `derive`'s (kept when it may be).
    pub fn get_or_derive<E>(
        &self,
        path: &Path,
        derive: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let state = FileState::of(path);
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let lock = || self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !matches!(state, FileState::Racy | FileState::Missing)
            && let Some((seen, value)) = lock().as_ref().and_then(|entries| entries.get(&key))
            && *seen == state
        {
            return Ok(value.clone());
        }
        let value = derive()?;
        if !matches!(state, FileState::Racy | FileState::Missing) && FileState::of(path) == state {
            let mut entries = lock();
            let entries = entries.get_or_insert_with(Default::default);
            if entries.len() >= self.limit {
                entries.clear();
            }
            entries.insert(key, (state, value.clone()));
        }
        Ok(value)
    }
}
