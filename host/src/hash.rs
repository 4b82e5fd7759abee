//! Native hashing of big buffers.
//!
//! BLAKE3 inside the component runs at about a third of native speed, and
//! guest memory never shrinks, so bytes, array data and file contents are
//! hashed here, without copying and on all cores when large, and enter the
//! value stream as digests. The canonical bytes are the same either way.

use std::fs::File;
use std::path::Path;

use hitsave_core::Digest;
use hitsave_core::stream::StreamWriter;

use crate::error::{HitSaveError, Result};

/// Buffers at most this large go into the stream inline (the core hashes them);
/// larger ones are hashed natively.
pub const INLINE_LIMIT: usize = 4 * 1024;

/// Buffers at least this large are hashed on all cores.
pub const PARALLEL_THRESHOLD: usize = 1 << 20;

/// BLAKE3 of `data` (`blob1`), on all cores when it is large.
pub fn blob_digest(data: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    if data.len() >= PARALLEL_THRESHOLD {
        hasher.update_rayon(data);
    } else {
        hasher.update(data);
    }
    Digest::new(hitsave_core::DigestKind::Blob, *hasher.finalize().as_bytes())
}

/// Length and BLAKE3 of a file's contents, memory-mapped and on all cores
/// when large.
pub fn file_digest(path: &Path) -> Result<(u64, Digest)> {
    let io = |source| HitSaveError::Io { path: path.to_path_buf(), source };
    let len = File::open(path).and_then(|file| file.metadata()).map_err(io)?.len();
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path).map_err(io)?;
    Ok((len, Digest::new(hitsave_core::DigestKind::Blob, *hasher.finalize().as_bytes())))
}

/// Digests of files by path, kept while the file's size, time and inode
/// hold (never for a file modified in the last two seconds: `FileState::Racy`).
static FILE_DIGESTS: crate::files::StateCache<(u64, Digest)> = crate::files::StateCache::new(65_536);

/// [`file_digest`], reusing the digest of a file unchanged since it was last
/// hashed in this process (a call passing the same path again costs a stat).
pub fn file_digest_cached(path: &Path) -> Result<(u64, Digest)> {
    FILE_DIGESTS.get_or_derive(path, || file_digest(path))
}

/// Writes bytes into a stream: small ones inline, large ones by native digest.
pub fn write_bytes(out: &mut StreamWriter, data: &[u8]) {
    if data.len() <= INLINE_LIMIT {
        out.bytes(data);
    } else {
        out.bytes_digest(data.len() as u64, &blob_digest(data).bytes);
    }
}

/// Writes a numeric array (C-order, little-endian data) into a stream: small
/// ones inline, large ones by native digest.
pub fn write_array(out: &mut StreamWriter, dtype: &str, shape: &[u64], data: &[u8]) {
    if data.len() <= INLINE_LIMIT {
        out.array(dtype, shape, data);
    } else {
        out.array_digest(dtype, shape, data.len() as u64, &blob_digest(data).bytes);
    }
}

/// Writes a file's contents (by digest) into a stream.
pub fn write_file(out: &mut StreamWriter, path: &Path) -> Result<()> {
    let (len, digest) = file_digest(path)?;
    out.file_digest(len, &digest.bytes);
    Ok(())
}
