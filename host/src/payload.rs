//! A result's bytes as the store writes them: one slice, or consecutive
//! parts stored as their concatenation without ever being joined.
//!
//! A binding that encodes a large result (a numpy array's data, a Buffer, a
//! pickle's out-of-band buffers) hands the store the stream's own bytes and
//! the array data where it already lies; the store writes and hashes the
//! parts in order, so a 1 GiB result is never held twice in memory.

use hitsave_core::{Digest, DigestKind};

/// Parts at least this large are hashed on all cores when the store hashes
/// without writing (an inline result never is this large).
const PARALLEL_THRESHOLD: usize = crate::hash::PARALLEL_THRESHOLD;

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

    /// BLAKE3 of the concatenation (`blob1`), large parts on all cores.
    pub fn digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        for part in self.parts() {
            if part.len() >= PARALLEL_THRESHOLD {
                hasher.update_rayon(part);
            } else {
                hasher.update(part);
            }
        }
        Digest::new(DigestKind::Blob, *hasher.finalize().as_bytes())
    }

    /// BLAKE3 of the concatenation on the calling thread only (the store
    /// hashes on one thread while another writes).
    pub fn digest_serial(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        for part in self.parts() {
            hasher.update(part);
        }
        Digest::new(DigestKind::Blob, *hasher.finalize().as_bytes())
    }
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
    fn parts_hash_and_join_as_their_concatenation() {
        let big = vec![7u8; (PARALLEL_THRESHOLD * 2) + 3];
        let parts: Vec<&[u8]> = vec![b"head", &[], &big, b"tail"];
        let whole = parts.concat();
        let payload = Payload::Parts(&parts);
        assert_eq!(payload.len(), whole.len() as u64);
        assert_eq!(payload.to_vec(), whole);
        assert_eq!(payload.digest(), Digest::blob(&whole));
        assert_eq!(payload.digest_serial(), Digest::blob(&whole));
        assert_eq!(Payload::from(&whole[..]).digest(), Digest::blob(&whole));
        assert!(payload.as_one().is_none());
        assert!(Payload::One(&[]).is_empty());
    }
}
