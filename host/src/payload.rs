//! A result's bytes as the store writes them: one slice, or consecutive
//! parts stored as their concatenation without ever being joined.
//!
//! A binding that encodes a large result (a numpy array's data, a Buffer, a
//! pickle's out-of-band buffers) hands the store the stream's own bytes and
//! the array data where it already lies; the store writes and hashes the
//! parts in order, so a 1 GiB result is never held twice in memory.

use hitsave_core::stream::StreamWriter;
use hitsave_core::{Digest, DigestKind};

/// Array and bytes data at least this large is stored from where it lies:
/// written after the stream's bytes before it, never copied into the stream.
pub const IN_PLACE_MIN: usize = 64 * 1024;

/// One part of a result being encoded: bytes of its own, or a binding's
/// handle on memory it does not copy (a numpy buffer export, a TypedArray),
/// kept alive and unchanged until the result is stored.
pub enum Part<T> {
    /// Bytes of the stream itself.
    Bytes(Vec<u8>),
    /// Data stored from where it lies.
    View(T),
}

/// A portable stream written as parts (both bindings' result encoders): its
/// own bytes, and large array and bytes data by a handle on where it lies.
/// Derefs to the [`StreamWriter`] for every other token.
pub struct PartsWriter<T> {
    out: StreamWriter,
    parts: Vec<Part<T>>,
    /// Bytes in `parts` (where `out` starts in the whole stream).
    before: u64,
}

impl<T> Default for PartsWriter<T> {
    fn default() -> Self {
        Self { out: StreamWriter::new(), parts: Vec::new(), before: 0 }
    }
}

impl<T> PartsWriter<T> {
    /// A numeric array with C-order little-endian `data`; `view` (asked for
    /// only when the data is kept in place) holds that memory.
    pub fn array<E>(
        &mut self,
        dtype: &str,
        shape: &[u64],
        data: &[u8],
        view: impl FnOnce() -> Result<T, E>,
    ) -> Result<(), E> {
        if data.len() < IN_PLACE_MIN {
            self.out.array_aligned(dtype, shape, data);
        } else {
            self.out.array_aligned_head(self.before, dtype, shape, data.len() as u64);
            self.in_place(view()?, data.len());
        }
        Ok(())
    }

    /// Bytes `data`; `view` as for [`PartsWriter::array`]. `false` (nothing
    /// written) when `data` is longer than a stream's bytes item can be
    /// ([`StreamWriter::MAX_LEN`]): such a value has no portable form.
    pub fn bytes<E>(&mut self, data: &[u8], view: impl FnOnce() -> Result<T, E>) -> Result<bool, E> {
        if data.len() > StreamWriter::MAX_LEN {
            return Ok(false);
        }
        if data.len() < IN_PLACE_MIN {
            self.out.bytes(data);
        } else {
            self.out.bytes_head(data.len());
            self.in_place(view()?, data.len());
        }
        Ok(true)
    }

    fn in_place(&mut self, view: T, len: usize) {
        let head = std::mem::take(&mut self.out).into_bytes();
        self.before += (head.len() + len) as u64;
        self.parts.push(Part::Bytes(head));
        self.parts.push(Part::View(view));
    }

    /// The parts, in order (one `Bytes` part when nothing was kept in place).
    pub fn finish(mut self) -> Vec<Part<T>> {
        let rest = self.out.into_bytes();
        if !rest.is_empty() || self.parts.is_empty() {
            self.parts.push(Part::Bytes(rest));
        }
        self.parts
    }
}

impl<T> std::ops::Deref for PartsWriter<T> {
    type Target = StreamWriter;

    fn deref(&self) -> &StreamWriter {
        &self.out
    }
}

impl<T> std::ops::DerefMut for PartsWriter<T> {
    fn deref_mut(&mut self) -> &mut StreamWriter {
        &mut self.out
    }
}

/// A result's bytes: the concatenation of its parts.
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// One contiguous slice.
    One(&'a [u8]),
    /// Consecutive parts, in order.
    Parts(&'a [&'a [u8]]),
}

impl<'a> Payload<'a> {
    /// The parts, in order (empty ones included).
    pub fn parts(&self) -> &[&'a [u8]] {
        match self {
            Self::One(data) => std::slice::from_ref(data),
            Self::Parts(parts) => parts,
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.parts().iter().map(|part| part.len() as u64).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes joined (for a small result kept in the index).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }

    /// The bytes as one slice when they are one already.
    pub fn as_one(&self) -> Option<&'a [u8]> {
        match self {
            Self::One(data) => Some(data),
            Self::Parts([data]) => Some(data),
            Self::Parts(_) => None,
        }
    }

    /// BLAKE3 of the concatenation (`blob1`), on the calling thread only
    /// (the store hashes on one thread while another writes).
    pub fn digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        for part in self.parts() {
            hasher.update(part);
        }
        Digest::new(DigestKind::Blob, *hasher.finalize().as_bytes())
    }
}

/// Where a binding's bytes lie, `(address, length)`: carried onto a thread
/// that does not hold the language's lock, and made bytes again there by
/// [`span_slices`].
pub type Span = (usize, usize);

/// The [`Span`] of `bytes`.
pub fn span_of(bytes: &[u8]) -> Span {
    (bytes.as_ptr() as usize, bytes.len())
}

/// The bytes `spans` point at, in order.
///
/// # Safety
///
/// Each span comes from [`span_of`] of memory that stays alive and unchanged
/// for `'a` (a bindings' caller holds the objects that own it).
pub unsafe fn span_slices<'a>(spans: &[Span]) -> Vec<&'a [u8]> {
    spans
        .iter()
        .map(|&(address, len)| {
            if len == 0 {
                &[][..]
            } else {
                // SAFETY: the caller's guarantee.
                unsafe { std::slice::from_raw_parts(address as *const u8, len) }
            }
        })
        .collect()
}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(data: &'a [u8]) -> Self {
        Self::One(data)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Payload<'a> {
    fn from(data: &'a [u8; N]) -> Self {
        Self::One(data)
    }
}

impl<'a> From<&'a Vec<u8>> for Payload<'a> {
    fn from(data: &'a Vec<u8>) -> Self {
        Self::One(data)
    }
}

impl<'a> From<&'a [&'a [u8]]> for Payload<'a> {
    fn from(parts: &'a [&'a [u8]]) -> Self {
        Self::Parts(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parts_writer_keeps_large_data_in_place_and_writes_the_same_stream() {
        let big: Vec<u8> = (0..IN_PLACE_MIN as u32 + 13).map(|i| i as u8).collect();
        let mut writer = PartsWriter::<&[u8]>::default();
        writer.list(4).str("head");
        writer.array("uint8", &[big.len() as u64], &big, || Ok::<_, ()>(&big[..])).unwrap();
        writer.bytes(&big, || Ok::<_, ()>(&big[..])).unwrap();
        writer.bytes(b"small", || Err(())).unwrap(); // small: copied, the view never asked for
        let parts = writer.finish();
        assert_eq!(parts.iter().filter(|part| matches!(part, Part::View(_))).count(), 2);
        let joined: Vec<u8> = parts
            .iter()
            .flat_map(|part| match part {
                Part::Bytes(bytes) => bytes.clone(),
                Part::View(view) => view.to_vec(),
            })
            .collect();
        let mut whole = StreamWriter::new();
        whole.list(4).str("head").array_aligned("uint8", &[big.len() as u64], &big).bytes(&big).bytes(b"small");
        assert_eq!(joined, whole.as_bytes());
    }

    #[test]
    fn bytes_longer_than_a_stream_item_have_no_portable_form() {
        // Zeroed pages are mapped lazily: 4 GiB + 1 of them costs no memory untouched.
        let huge = vec![0u8; StreamWriter::MAX_LEN + 1];
        let mut writer = PartsWriter::<&[u8]>::default();
        writer.list(1);
        assert_eq!(writer.bytes(&huge, || Ok::<_, ()>(&huge[..])), Ok(false));
        assert_eq!(writer.bytes(b"small", || Err(())), Ok(true));
        let parts = writer.finish();
        let mut expected = StreamWriter::new();
        expected.list(1).bytes(b"small");
        assert!(matches!(&parts[..], [Part::Bytes(bytes)] if bytes == expected.as_bytes()));
    }

    #[test]
    fn parts_hash_and_join_as_their_concatenation() {
        let big = vec![7u8; (crate::hash::PARALLEL_THRESHOLD * 2) + 3];
        let parts: Vec<&[u8]> = vec![b"head", &[], &big, b"tail"];
        let whole = parts.concat();
        let payload = Payload::Parts(&parts);
        assert_eq!(payload.len(), whole.len() as u64);
        assert_eq!(payload.to_vec(), whole);
        assert_eq!(payload.digest(), Digest::blob(&whole));
        assert_eq!(Payload::from(&whole[..]).digest(), Digest::blob(&whole));
        let spans: Vec<Span> = parts.iter().map(|part| span_of(part)).collect();
        // SAFETY: `parts` is alive and unchanged.
        assert_eq!(unsafe { span_slices(&spans) }, parts);
        assert!(payload.as_one().is_none());
        assert!(Payload::One(&[]).is_empty());
    }
}
