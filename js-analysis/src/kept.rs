//! Module summaries kept across processes.
//!
//! A fresh process would parse every module a graph reaches; most did not
//! change since the last process summarised them. The summaries of a
//! project (and the content digests of the units graphs reached) are kept
//! in the store's analysis directory, one file per project root
//! (`analysis/js-modules-<build>-<project>.bin`), and a module is parsed
//! again only when its file changed: after one file is edited, that file.
//! The summaries made around a class (an instance's key holds its class's
//! fingerprint) are kept the same way, under the class's text ([`rooted`]).
//!
//! A summary is used again only while its file has the exact state it had
//! before it was read (size, modification and change times, inode, device:
//! the change time moves with every write, even one that restores the
//! modification time), never for a file modified in the last two seconds
//! (a second edit within a timestamp's granularity could look the same),
//! and only if making it read nothing but the file itself: a module whose
//! summary asked the file system (whether a path is a directory), the
//! working directory or the environment ([`situated`]) is parsed again in
//! every process. The build is part of the file's name (this crate's
//! source, the core component), and the file's first line is the digest of
//! the rest, so a damaged file is read as empty.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::Module;

/// A file's state, compared whole: any difference is another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    size: u64,
    modified: i128,
    changed: i128,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// The state of `path`, or `None` when it is missing or was modified or
    /// changed in the last two seconds (it may change again unseen).
    pub(crate) fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        let nanos = |at: std::time::SystemTime| -> Option<i128> {
            Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128)
        };
        let modified = nanos(meta.modified().ok()?)?;
        #[cfg(unix)]
        let (changed, inode, device) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128, meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (changed, inode, device) = (modified, 0, 0);
        let now = nanos(std::time::SystemTime::now())?;
        if now - modified.max(changed) < 2_000_000_000 {
            return None;
        }
        Some(Stamp { size: meta.len(), modified, changed, inode, device })
    }

    /// The host's state of the same file (what the module records as read).
    pub(crate) fn file_state(&self) -> hitsave_host::files::FileState {
        hitsave_host::files::FileState::Seen(self.size, self.modified, self.inode)
    }
}

thread_local! {
    static SITUATED: Cell<bool> = const { Cell::new(false) };
}

/// Called where a summary asks something besides its file's text (the file
/// system, the working directory, an environment variable): the module
/// being summarised is then not kept.
pub(crate) fn situated() {
    SITUATED.with(|flag| flag.set(true));
}

/// Runs `summarize` and says whether it called [`situated`].
pub(crate) fn watching<T>(summarize: impl FnOnce() -> T) -> (T, bool) {
    let before = SITUATED.with(|flag| flag.replace(false));
    let out = summarize();
    let situated = SITUATED.with(|flag| flag.replace(before));
    (out, situated)
}

/// One module as kept: its file's state before it was read, and its summary.
#[derive(Serialize, Deserialize)]
struct Entry<M> {
    path: PathBuf,
    root: String,
    stamp: Stamp,
    module: M,
}

/// What a summary is kept under: its file, and the root it was made for
/// (empty for a module's own summary; [`rooted`] for one made around a
/// class an instance has, which a fresh process would parse again).
type Key = (PathBuf, String);

/// The root key of a summary made around `source` (`what`: "class").
pub(crate) fn rooted(what: &str, source: &str) -> String {
    format!("{what}:{}", digest_hex(source.as_bytes()))
}

/// The kept summaries of one project, as this process knows them.
pub(crate) struct Kept {
    file: PathBuf,
    entries: HashMap<Key, (Stamp, Arc<Module>)>,
    /// Summaries this process used (looked up or added): what a full file keeps.
    used: std::collections::HashSet<Key>,
}

/// Modules a file keeps beyond those the writing process used.
const LIMIT: usize = 20_000;

/// The layout of the file's entries: a new layout is a new file name.
const FORMAT: u32 = 2;

static KEPT: Mutex<Option<HashMap<PathBuf, Arc<Mutex<Kept>>>>> = Mutex::new(None);

/// The kept summaries of the project at `project`, from `directory` (read
/// once per process).
pub(crate) fn for_project(directory: &Path, project: &Path) -> Arc<Mutex<Kept>> {
    let file = directory.join(format!(
        "js-modules-{}-{}.bin",
        build(),
        &digest_hex(project.as_os_str().as_encoded_bytes())[..24]
    ));
    let mut all = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    all.get_or_insert_with(HashMap::new)
        .entry(file.clone())
        .or_insert_with(|| {
            let entries = read(&file);
            Arc::new(Mutex::new(Kept { file, entries, used: Default::default() }))
        })
        .clone()
}

/// Forgets what this process read of the kept files (`forget_process_summaries`).
pub(crate) fn forget() {
    *KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
}

impl Kept {
    /// The kept summary of `path` (made for `root`: empty, or [`rooted`]) while its file is as it was.
    pub(crate) fn get(&mut self, path: &Path, root: &str) -> Option<Arc<Module>> {
        let key = (path.to_path_buf(), root.to_owned());
        let (stamp, module) = self.entries.get(&key)?;
        if Stamp::of(path).as_ref() != Some(stamp) {
            return None;
        }
        let module = module.clone();
        self.used.insert(key);
        Some(module)
    }

    /// Keeps `module` (made from its file at `stamp`, for `root`).
    pub(crate) fn put(&mut self, stamp: Stamp, root: &str, module: Arc<Module>) {
        let key = (module.path.clone(), root.to_owned());
        self.used.insert(key.clone());
        self.entries.insert(key, (stamp, module));
    }

    /// Writes the file whole (a unit digest or a module was added): to a
    /// temporary file renamed over it, so readers see the old file or the
    /// new one. Nothing is lost but time when it cannot be written.
    pub(crate) fn save(&mut self) {
        if self.entries.len() > LIMIT {
            let used = &self.used;
            self.entries.retain(|key, _| used.contains(key));
        }
        let entries: Vec<Entry<&Module>> = self
            .entries
            .iter()
            .map(|((path, root), (stamp, module))| Entry {
                path: path.clone(),
                root: root.clone(),
                stamp: *stamp,
                module: module.as_ref(),
            })
            .collect();
        let Ok(payload) = postcard::to_allocvec(&entries) else { return };
        let mut data = digest_hex(&payload).into_bytes();
        data.push(b'\n');
        data.extend_from_slice(&payload);
        let Some(directory) = self.file.parent() else { return };
        if std::fs::create_dir_all(directory).is_err() {
            return;
        }
        let temporary = self.file.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&temporary, &data).is_ok() && std::fs::rename(&temporary, &self.file).is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }
}

fn read(file: &Path) -> HashMap<Key, (Stamp, Arc<Module>)> {
    let Ok(data) = std::fs::read(file) else { return HashMap::new() };
    let Some(cut) = data.iter().position(|&byte| byte == b'\n') else { return HashMap::new() };
    let (check, payload) = (&data[..cut], &data[cut + 1..]);
    if check != digest_hex(payload).as_bytes() {
        return HashMap::new();
    }
    let Ok(entries) = postcard::from_bytes::<Vec<Entry<Module>>>(payload) else { return HashMap::new() };
    entries
        .into_iter()
        .map(|Entry { path, root, stamp, mut module }| {
            module.read_state = stamp.file_state();
            module.source_type = crate::source_type_of(&path);
            module.path = path.clone();
            ((path, root), (stamp, Arc::new(module)))
        })
        .collect()
}

fn digest_hex(bytes: &[u8]) -> String {
    hitsave_host::hash::blob_digest(bytes).hex()
}

/// This build's analysis: its source (`build.rs`), the core component it
/// digests with, the layout of the entries.
fn build() -> &'static str {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        let text =
            format!("{}|{}|{FORMAT}", env!("HITSAVE_JS_ANALYSIS_SOURCE"), hitsave_host::runtime::component_digest());
        digest_hex(text.as_bytes())[..24].to_owned()
    })
}

/// `Module` fields that have no serde form of their own.
pub(crate) mod forms {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::OnceLock;

    use hitsave_core::Digest;
    use oxc_span::Span;

    pub(crate) mod span {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(span: &Span, s: S) -> Result<S::Ok, S::Error> {
            (span.start, span.end).serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
            let (start, end) = <(u32, u32)>::deserialize(d)?;
            Ok(Span::new(start, end))
        }
    }

    /// A `&'static str` from a fixed set (a unit's kind, a declaration's keyword).
    pub(crate) mod word {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(word: &&'static str, s: S) -> Result<S::Ok, S::Error> {
            word.serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
            known(&String::deserialize(d)?)
        }
    }

    pub(crate) mod optional_word {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(word: &Option<&'static str>, s: S) -> Result<S::Ok, S::Error> {
            word.serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
            Option::<String>::deserialize(d)?.map(|text| known(&text)).transpose()
        }
    }

    /// The words summaries use, as the static strings the analysis
    /// compares; another word fails the read (the file is read as none).
    fn known<E: serde::de::Error>(text: &str) -> Result<&'static str, E> {
        crate::WORDS
            .iter()
            .copied()
            .find(|word| *word == text)
            .ok_or_else(|| E::custom(format!("unknown word {text:?}")))
    }

    /// A unit's content digest, when a graph computed it.
    pub(crate) mod content {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(content: &OnceLock<Digest>, s: S) -> Result<S::Ok, S::Error> {
            content.get().map(|digest| digest.to_string()).serialize(s)
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OnceLock<Digest>, D::Error> {
            let lock = OnceLock::new();
            if let Some(text) = Option::<String>::deserialize(d)? {
                let digest = Digest::parse(&text).map_err(|err| serde::de::Error::custom(err.to_string()))?;
                let _ = lock.set(digest);
            }
            Ok(lock)
        }
    }
}
