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
    let refuse = |why: String| {
        HitSaveError::CodeUnavailable(format!(
            "{reader} reads files from the directory {} and the analysis cannot tell which ({why}); pass the files \
             it reads as File(path) arguments (docs/python.md, docs/node.md: data files)",
            root.display()
        ))
    };
    let (mut files, mut dirs, mut bytes) = (Vec::new(), vec![root.to_path_buf()], 0u64);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| refuse(format!("{}: {error}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|error| refuse(format!("{}: {error}", dir.display())))?;
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
                    return Err(refuse(format!("more than {DIRECTORY_MAX_FILES} files")));
                }
                if bytes > DIRECTORY_MAX_BYTES {
                    return Err(refuse(format!("more than {} MiB", DIRECTORY_MAX_BYTES >> 20)));
                }
            }
        }
        if dirs.len() > DIRECTORY_MAX_FILES {
            return Err(refuse(format!("more than {DIRECTORY_MAX_FILES} directories")));
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// Arguments longer than this are no paths (a document, a payload).
const ARGUMENT_PATH_MAX: usize = 4096;

/// The files text arguments of a call name, by contents: for a function
/// whose code reads or writes files (`def load(path): return
/// open(path).read()`, `(p) => readFileSync(p)`), or that has an explicit
/// identity (its code is not analysed), each
/// text that names an existing regular file (relative to the working
/// directory, or absolute) as `(text, "<length>:<digest>")`; an unreadable
/// one as `(text, "unreadable")`. The bindings add them to the call's key,
/// so editing the file misses where the text alone would hit. Digests are
/// kept per file while its size, time and inode hold ([`FileState`]).
pub fn argument_files(texts: &[String]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for text in texts {
        if text.is_empty() || text.len() > ARGUMENT_PATH_MAX || text.contains('\0') {
            continue;
        }
        let text = text.strip_prefix("file://").unwrap_or(text);
        let path = Path::new(text);
        if !path.is_file() || found.iter().any(|(seen, _)| seen == text) {
            continue;
        }
        let digest = match crate::hash::file_digest_cached(path) {
            Ok((len, digest)) => format!("{len}:{digest}"),
            Err(_) => "unreadable".to_owned(),
        };
        found.push((text.to_owned(), digest));
    }
    found
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
        let first = argument_files(&texts);
        // Only the file, once; the directory and the missing name are no files.
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, text);
        assert!(first[0].1.starts_with("1:blob1_"), "{}", first[0].1);
        std::fs::write(&file, b"22").unwrap();
        let second = argument_files(&texts);
        assert_ne!(first[0].1, second[0].1, "an edit (a new size, and racy for two seconds) is seen");
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
