//! Digests that name their kind and scheme version.

use std::fmt;

use crate::error::{CoreError, ErrorCode};

/// What a digest names. See `wit/core.wit` (`digest-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DigestKind {
    /// The digest of a canonical value.
    Value,
    /// An eval key.
    Key,
    /// A code fingerprint.
    Code,
    /// Plain BLAKE3 of raw content.
    Blob,
}

impl DigestKind {
    /// All kinds, in their wire order.
    pub const ALL: [DigestKind; 4] = [Self::Value, Self::Key, Self::Code, Self::Blob];

    /// The text prefix of this kind (`val`, `key`, `code`, `blob`).
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Value => "val",
            Self::Key => "key",
            Self::Code => "code",
            Self::Blob => "blob",
        }
    }

    /// The current scheme version of this kind: 2 for values, keys and code
    /// (`val2`, `key2`, `code2`: kinds and order count, see
    /// `docs/spec/values.md`), 1 for blobs (plain BLAKE3 never changes).
    pub const fn version(self) -> u8 {
        match self {
            Self::Value | Self::Key | Self::Code => 2,
            Self::Blob => 1,
        }
    }

    /// The one byte that stands for this kind inside canonical bytes and key material.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Value => 1,
            Self::Key => 2,
            Self::Code => 3,
            Self::Blob => 4,
        }
    }
}

/// BLAKE3 derive-key context for `val2` digests.
pub const VALUE_CONTEXT: &str = "hitsave 2026-12 value v2";
/// BLAKE3 derive-key context for `key2` digests.
pub const KEY_CONTEXT: &str = "hitsave 2026-12 key v2";
/// BLAKE3 derive-key context for `code2` digests.
pub const CODE_CONTEXT: &str = "hitsave 2026-12 code v2";

/// A 32-byte BLAKE3 digest with its kind and scheme version.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    /// What was hashed.
    pub kind: DigestKind,
    /// Scheme version of the kind.
    pub version: u8,
    /// The BLAKE3 output.
    pub bytes: [u8; 32],
}

impl Digest {
    /// A digest of the current scheme version of its kind.
    pub const fn new(kind: DigestKind, bytes: [u8; 32]) -> Self {
        Self { kind, version: kind.version(), bytes }
    }

    /// Plain BLAKE3 of content bytes (`blob1`).
    pub fn blob(content: &[u8]) -> Self {
        Self::new(DigestKind::Blob, *blake3::hash(content).as_bytes())
    }

    /// Builds a digest from parts crossing a boundary, checking the length.
    pub fn from_parts(kind: DigestKind, version: u8, bytes: &[u8]) -> Result<Self, CoreError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            CoreError::new(ErrorCode::InvalidDigest, format!("a digest has 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self { kind, version, bytes })
    }

    /// Fails unless this digest has the given kind and the current version.
    pub fn expect(&self, kind: DigestKind, what: &str) -> Result<(), CoreError> {
        if self.kind != kind || self.version != kind.version() {
            return Err(CoreError::new(
                ErrorCode::InvalidDigest,
                format!(
                    "{what} must be a {}{} digest, got {}{}",
                    kind.prefix(),
                    kind.version(),
                    self.kind.prefix(),
                    self.version
                ),
            ));
        }
        Ok(())
    }

    /// Lowercase hex of the 32 bytes.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.bytes {
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(byte & 15), 16).unwrap_or('0'));
        }
        out
    }

    /// Parses the text form `{prefix}{version}_{hex}`.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::new(ErrorCode::InvalidDigest, format!("not a digest: {text:?}"));
        let (head, hex) = text.split_once('_').ok_or_else(bad)?;
        let kind = DigestKind::ALL
            .into_iter()
            .find(|kind| {
                head.strip_prefix(kind.prefix())
                    .is_some_and(|version| !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
            })
            .ok_or_else(bad)?;
        let version: u8 = head[kind.prefix().len()..].parse().map_err(|_| bad())?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self { kind, version, bytes })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}_{}", self.kind.prefix(), self.version, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A BLAKE3 hasher in derive-key mode for one of the contexts above.
///
/// Identical to `blake3::Hasher::new_derive_key(context)`, but the context
/// is hashed once per process rather than once per digest: for a small key
/// derivation that is a third of the work.
pub(crate) fn hasher(context: &'static str) -> blake3::Hasher {
    use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};
    use std::sync::OnceLock;
    static VALUE: OnceLock<ContextKey> = OnceLock::new();
    static KEY: OnceLock<ContextKey> = OnceLock::new();
    static CODE: OnceLock<ContextKey> = OnceLock::new();
    let cell = match context {
        VALUE_CONTEXT => &VALUE,
        KEY_CONTEXT => &KEY,
        CODE_CONTEXT => &CODE,
        other => return blake3::Hasher::new_derive_key(other),
    };
    blake3::Hasher::new_from_context_key(cell.get_or_init(|| hash_derive_key_context(context)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let digest = Digest::new(DigestKind::Code, [0xab; 32]);
        let text = digest.to_string();
        assert_eq!(text, format!("code2_{}", "ab".repeat(32)));
        assert_eq!(Digest::parse(&text).unwrap(), digest);
    }

    #[test]
    fn cached_context_keys_hash_like_derive_key() {
        for context in [VALUE_CONTEXT, KEY_CONTEXT, CODE_CONTEXT] {
            let mut cached = hasher(context);
            cached.update(b"material");
            let mut plain = blake3::Hasher::new_derive_key(context);
            plain.update(b"material");
            assert_eq!(cached.finalize(), plain.finalize());
        }
    }

    #[test]
    fn parse_rejects_wrong_shapes() {
        for text in [
            "",
            "val1",
            "val_00",
            "valx_00",
            &format!("val1_{}", "AB".repeat(32)),
            &format!("nope1_{}", "0".repeat(64)),
        ] {
            assert_eq!(Digest::parse(text).unwrap_err().code, ErrorCode::InvalidDigest, "{text}");
        }
    }
}
