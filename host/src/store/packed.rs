//! Digests as the index keeps them: 34-byte blobs (the kind's tag, the
//! scheme version, the 32 bytes) instead of their 64-hex text form.
//!
//! An index row names up to five digests (key, function, arguments, result,
//! graph); as text they were two thirds of a row (530 bytes for a 9-byte
//! result), so a million entries filled 530 MB and a put's random B-tree path
//! left SQLite's page cache (#17). Callers keep the text form: only SQL
//! parameters and columns see blobs. A text that is not a canonical digest
//! of the current scheme (an explicit `name@version` identity, a digest of an
//! older scheme) stays text, and reads accept both, so every text a caller
//! stores comes back as it was.

use hitsave_core::{Digest, DigestKind};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Value, ValueRef};

/// Bytes of a packed digest.
pub(super) const PACKED_LEN: usize = 34;

/// A digest, packed.
pub(super) fn pack_digest(digest: &Digest) -> [u8; PACKED_LEN] {
    let mut packed = [0u8; PACKED_LEN];
    packed[0] = digest.kind.tag();
    packed[1] = digest.version;
    packed[2..].copy_from_slice(&digest.bytes);
    packed
}

/// The packed form of a text, when it is a canonical digest of its kind's
/// current scheme (its text comes back exactly from [`unpack`]).
fn pack_text(text: &str) -> Option<[u8; PACKED_LEN]> {
    let digest = Digest::parse(text).ok()?;
    (digest.version == digest.kind.version() && digest.to_string() == text).then(|| pack_digest(&digest))
}

/// The text form of a packed digest.
fn unpack(bytes: &[u8]) -> Option<String> {
    let [tag, version, rest @ ..] = bytes else { return None };
    let kind = DigestKind::ALL.into_iter().find(|kind| kind.tag() == *tag)?;
    (bytes.len() == PACKED_LEN).then(|| Digest::from_parts(kind, *version, rest).ok()).flatten().map(|d| d.to_string())
}

/// A digest bound as an SQL parameter, packed.
pub(super) struct Packed<'a>(pub &'a Digest);

impl ToSql for Packed<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(Value::Blob(pack_digest(self.0).to_vec())))
    }
}

/// A digest's text (or an identity that is not one) bound as an SQL
/// parameter: packed when it is a canonical digest, as text otherwise.
pub(super) struct PackedText<'a>(pub &'a str);

impl ToSql for PackedText<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match pack_text(self.0) {
            Some(packed) => ToSqlOutput::Owned(Value::Blob(packed.to_vec())),
            None => ToSqlOutput::Borrowed(ValueRef::Text(self.0.as_bytes())),
        })
    }
}

/// A column holding a packed digest or a text, read as text.
pub(super) struct Unpacked(pub String);

impl FromSql for Unpacked {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(text) => {
                String::from_utf8(text.to_vec()).map(Self).map_err(|err| FromSqlError::Other(Box::new(err)))
            }
            ValueRef::Blob(bytes) => unpack(bytes)
                .map(Self)
                .ok_or(FromSqlError::InvalidBlobSize { expected_size: PACKED_LEN, blob_size: bytes.len() }),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// An SQL expression that packs the text column `column` as [`PackedText`]
/// does (for the migration that turned a store's digests into blobs):
/// NULL and anything that is not a canonical current digest stay as they are.
pub(super) fn pack_sql(column: &str) -> String {
    let mut cases = String::new();
    for kind in DigestKind::ALL {
        let head = format!("{}{}_", kind.prefix(), kind.version());
        cases.push_str(&format!(
            " WHEN typeof({column}) = 'text' AND length({column}) = {len} AND substr({column}, 1, {head_len}) = '{head}' \
               AND substr({column}, {start}) NOT GLOB '*[^0-9a-f]*' \
             THEN unhex('{tag:02x}{version:02x}' || substr({column}, {start}))",
            len = head.len() + 64,
            head_len = head.len(),
            start = head.len() + 1,
            tag = kind.tag(),
            version = kind.version(),
        ));
    }
    format!("(CASE{cases} ELSE {column} END)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn texts_come_back_as_they_were_and_sql_packs_as_rust_does() {
        let conn = Connection::open_in_memory().unwrap();
        let digests: Vec<String> = DigestKind::ALL
            .into_iter()
            .map(|kind| Digest::new(kind, *blake3::hash(kind.prefix().as_bytes()).as_bytes()).to_string())
            .collect();
        let others = [
            "f@1".to_owned(),
            "key1_".to_owned() + &"ab".repeat(32),  // an older scheme
            "key02_".to_owned() + &"ab".repeat(32), // not canonical
            "key2_".to_owned() + &"AB".repeat(32),  // uppercase: not canonical
            "key2_".to_owned() + &"ab".repeat(31),  // short
            String::new(),
        ];
        for text in digests.iter().chain(&others) {
            let packed: bool =
                conn.query_row("SELECT typeof(?1) = 'blob'", [PackedText(text)], |row| row.get(0)).unwrap();
            assert_eq!(packed, digests.contains(text), "{text}");
            let back: Unpacked = conn.query_row("SELECT ?1", [PackedText(text)], |row| row.get(0)).unwrap();
            assert_eq!(&back.0, text);
            let by_sql: bool = conn
                .query_row(
                    &format!("SELECT {} IS ?2 FROM (SELECT ?1 AS c)", pack_sql("c")),
                    (text, PackedText(text)),
                    |row| row.get(0),
                )
                .unwrap();
            assert!(by_sql, "SQL packs {text} as Rust does");
        }
        let digest = Digest::parse(&digests[1]).unwrap();
        let same: bool =
            conn.query_row("SELECT ?1 = ?2", (Packed(&digest), PackedText(&digests[1])), |row| row.get(0)).unwrap();
        assert!(same);
        let null: Option<Unpacked> =
            conn.query_row(&format!("SELECT {}", pack_sql("NULL")), [], |row| row.get(0)).unwrap();
        assert!(null.is_none());
    }
}
