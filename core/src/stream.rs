//! The value stream: how a binding hands a language value to the core.
//!
//! WIT types cannot be recursive, so a value crosses the component boundary as
//! a flat, framed byte buffer written in pre-order. `docs/spec/values.md`
//! specifies it; [`StreamWriter`] writes it. Integers in the stream are
//! little-endian (the host's native order); the canonical bytes the core
//! produces from it are big-endian.

use crate::digest::Digest;

/// Token bytes of the value stream.
pub mod token {
    /// `null` / `None` / `undefined` (see the spec for `undefined`).
    pub const NULL: u8 = 0x00;
    /// `false`.
    pub const FALSE: u8 = 0x01;
    /// `true`.
    pub const TRUE: u8 = 0x02;
    /// A signed 64-bit integer: 8 bytes LE.
    pub const INT: u8 = 0x03;
    /// An integer of any size: sign byte (0 or 1), u32 length, magnitude LE.
    pub const BIGINT: u8 = 0x04;
    /// An IEEE-754 binary64: 8 bytes LE.
    pub const FLOAT: u8 = 0x05;
    /// A UTF-8 string: u32 length, bytes.
    pub const STR: u8 = 0x06;
    /// Bytes given inline: u32 length, bytes. The core hashes them.
    pub const BYTES: u8 = 0x07;
    /// Bytes hashed by the host: u64 length, 32-byte BLAKE3 of the content.
    pub const BYTES_DIGEST: u8 = 0x08;
    /// A list (or tuple): u32 count, then `count` values.
    pub const LIST: u8 = 0x09;
    /// A map: u32 count, then `count` key/value pairs.
    pub const MAP: u8 = 0x0A;
    /// A set: u32 count, then `count` members.
    pub const SET: u8 = 0x0B;
    /// A record: u32 name length, name, u32 field count, then per field
    /// u32 name length, field name, value.
    pub const RECORD: u8 = 0x0C;
    /// A numeric array with inline data: u8 dtype length, dtype, u8 ndim,
    /// ndim × u64 dims, u64 byte length, C-order little-endian data.
    pub const ARRAY: u8 = 0x0D;
    /// A numeric array hashed by the host: as `ARRAY` but the data replaced by
    /// its 32-byte BLAKE3.
    pub const ARRAY_DIGEST: u8 = 0x0E;
    /// File contents, hashed by the host: u64 length, 32-byte BLAKE3.
    pub const FILE_DIGEST: u8 = 0x0F;
    /// A function, by its code fingerprint: 1 byte version, 32 bytes.
    pub const FUNCTION: u8 = 0x10;
    /// A value of a named language type: u32 length, UTF-8 type name, then
    /// the value (`py:builtins.tuple` around a list, `js:Date` around a float).
    pub const TYPED: u8 = 0x12;
    /// Padding, only in portable results (the core rejects it in a stream):
    /// u8 length, that many zero bytes. It puts array data on an
    /// [`super::ARRAY_ALIGN`] boundary so a memory-mapped result's arrays are
    /// used in place.
    pub const PADDING: u8 = 0x1F;
    /// A value the binding cannot hash faithfully: u32 length, type name.
    /// The core answers with an `unhashable_value` error naming its path.
    pub const UNHASHABLE: u8 = 0x7F;
}

/// [`StreamWriter::array_aligned`] starts array data at a multiple of this
/// many bytes from the start of the stream (a cache line; any dtype's alignment).
pub const ARRAY_ALIGN: usize = 64;

/// Arrays with less data than this are not aligned (the padding would cost
/// more than copying them).
pub const ARRAY_ALIGN_MIN: usize = 4096;

/// Numeric array dtypes and their item sizes in bytes.
pub const DTYPES: [(&str, u64); 14] = [
    ("bool", 1),
    ("int8", 1),
    ("int16", 2),
    ("int32", 4),
    ("int64", 8),
    ("uint8", 1),
    ("uint16", 2),
    ("uint32", 4),
    ("uint64", 8),
    ("float16", 2),
    ("float32", 4),
    ("float64", 8),
    ("complex64", 8),
    ("complex128", 16),
];

/// Item size of a dtype, or `None` when it is unknown.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    DTYPES.iter().find(|(name, _)| *name == dtype).map(|(_, size)| *size)
}

/// Writes a value stream. Containers are announced with their count and
/// followed by that many values (pairs for maps, named fields for records).
#[derive(Clone, Debug, Default)]
pub struct StreamWriter {
    buffer: Vec<u8>,
}

impl StreamWriter {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer
    }

    /// The finished stream.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buffer
    }

    /// Forget everything written, keeping the allocation.
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// The longest inline `str`, `bytes` or `bigint` item, and the most items
    /// of a list, map, set or record: lengths are 32-bit (`docs/spec/values.md`).
    /// Writers check it before writing; a larger byte item goes by digest.
    pub const MAX_LEN: usize = u32::MAX as usize;

    fn len32(&mut self, len: usize) {
        let len = u32::try_from(len).expect("value stream items are limited to 4 GiB; hash larger ones by digest");
        self.buffer.extend_from_slice(&len.to_le_bytes());
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.buffer.push(token::NULL);
        self
    }

    /// A boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.buffer.push(if value { token::TRUE } else { token::FALSE });
        self
    }

    /// A 64-bit integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.buffer.push(token::INT);
        self.buffer.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// An integer of any size by sign and little-endian magnitude.
    pub fn bigint(&mut self, negative: bool, magnitude_le: &[u8]) -> &mut Self {
        self.buffer.push(token::BIGINT);
        self.buffer.push(u8::from(negative));
        self.len32(magnitude_le.len());
        self.buffer.extend_from_slice(magnitude_le);
        self
    }

    /// A binary64 float.
    pub fn float(&mut self, value: f64) -> &mut Self {
        self.buffer.push(token::FLOAT);
        self.buffer.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A string.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.buffer.push(token::STR);
        self.len32(value.len());
        self.buffer.extend_from_slice(value.as_bytes());
        self
    }

    /// Raw bytes as a string token, unchecked: the same bytes as [`StreamWriter::str`]
    /// for UTF-8, and the core reports anything else (a text with lone
    /// surrogates a binding passes through, tests of invalid input) with its path.
    pub fn str_bytes(&mut self, value: &[u8]) -> &mut Self {
        self.buffer.push(token::STR);
        self.len32(value.len());
        self.buffer.extend_from_slice(value);
        self
    }

    /// Bytes, inline: the core hashes them.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.bytes_head(value.len());
        self.buffer.extend_from_slice(value);
        self
    }

    /// The head of [`StreamWriter::bytes`] without the content, which the
    /// caller places right after these bytes (a result written in parts).
    pub fn bytes_head(&mut self, len: usize) -> &mut Self {
        self.buffer.push(token::BYTES);
        self.len32(len);
        self
    }

    /// Bytes the host already hashed: length and BLAKE3 of the content.
    pub fn bytes_digest(&mut self, len: u64, blake3: &[u8; 32]) -> &mut Self {
        self.buffer.push(token::BYTES_DIGEST);
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(blake3);
        self
    }

    /// Starts a list of `count` values.
    pub fn list(&mut self, count: usize) -> &mut Self {
        self.buffer.push(token::LIST);
        self.len32(count);
        self
    }

    /// Starts a map of `count` key/value pairs.
    pub fn map(&mut self, count: usize) -> &mut Self {
        self.buffer.push(token::MAP);
        self.len32(count);
        self
    }

    /// Starts a set of `count` members.
    pub fn set(&mut self, count: usize) -> &mut Self {
        self.buffer.push(token::SET);
        self.len32(count);
        self
    }

    /// Starts a record: follow with `count` × ([`Self::field`], value).
    pub fn record(&mut self, name: &str, count: usize) -> &mut Self {
        self.buffer.push(token::RECORD);
        self.len32(name.len());
        self.buffer.extend_from_slice(name.as_bytes());
        self.len32(count);
        self
    }

    /// A record field name; the field's value follows.
    pub fn field(&mut self, name: &str) -> &mut Self {
        self.len32(name.len());
        self.buffer.extend_from_slice(name.as_bytes());
        self
    }

    fn array_head(&mut self, token: u8, dtype: &str, shape: &[u64], byte_len: u64) {
        self.buffer.push(token);
        let dtype_len = u8::try_from(dtype.len()).expect("dtype names are short");
        self.buffer.push(dtype_len);
        self.buffer.extend_from_slice(dtype.as_bytes());
        let ndim = u8::try_from(shape.len()).expect("arrays have at most 255 dimensions");
        self.buffer.push(ndim);
        for dim in shape {
            self.buffer.extend_from_slice(&dim.to_le_bytes());
        }
        self.buffer.extend_from_slice(&byte_len.to_le_bytes());
    }

    /// A numeric array with inline C-order little-endian data.
    pub fn array(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> &mut Self {
        self.array_head(token::ARRAY, dtype, shape, data.len() as u64);
        self.buffer.extend_from_slice(data);
        self
    }

    /// [`StreamWriter::array`] for a portable result: when the data is at
    /// least [`ARRAY_ALIGN_MIN`] bytes, [`token::PADDING`] first so that the
    /// data starts at a multiple of [`ARRAY_ALIGN`] bytes from the start of the
    /// stream. Never for a stream handed to the core, which rejects padding.
    pub fn array_aligned(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> &mut Self {
        self.pad_array(0, dtype, shape, data.len() as u64);
        self.array(dtype, shape, data)
    }

    /// The padding and head of [`StreamWriter::array_aligned`] without the
    /// data, which the caller places right after these bytes (a result
    /// written in parts, the data from where it lies). `at` is where this
    /// writer's bytes start in the whole stream.
    pub fn array_aligned_head(&mut self, at: u64, dtype: &str, shape: &[u64], byte_len: u64) -> &mut Self {
        self.pad_array(at, dtype, shape, byte_len);
        self.array_head(token::ARRAY, dtype, shape, byte_len);
        self
    }

    fn pad_array(&mut self, at: u64, dtype: &str, shape: &[u64], byte_len: u64) {
        let head = 1 + 1 + dtype.len() + 1 + 8 * shape.len() + 8;
        let misaligned = ((at % ARRAY_ALIGN as u64) as usize + self.buffer.len() + head) % ARRAY_ALIGN;
        if byte_len >= ARRAY_ALIGN_MIN as u64 && misaligned != 0 {
            // The padding token and its length byte are two of the bytes.
            let pad = (ARRAY_ALIGN - (misaligned + 2) % ARRAY_ALIGN) % ARRAY_ALIGN;
            self.buffer.push(token::PADDING);
            self.buffer.push(pad as u8);
            self.buffer.resize(self.buffer.len() + pad, 0);
        }
    }

    /// A numeric array whose data the host hashed.
    pub fn array_digest(&mut self, dtype: &str, shape: &[u64], byte_len: u64, blake3: &[u8; 32]) -> &mut Self {
        self.array_head(token::ARRAY_DIGEST, dtype, shape, byte_len);
        self.buffer.extend_from_slice(blake3);
        self
    }

    /// File contents the host hashed.
    pub fn file_digest(&mut self, len: u64, blake3: &[u8; 32]) -> &mut Self {
        self.buffer.push(token::FILE_DIGEST);
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer.extend_from_slice(blake3);
        self
    }

    /// A function, by its `code` fingerprint.
    pub fn function(&mut self, fingerprint: &Digest) -> &mut Self {
        self.buffer.push(token::FUNCTION);
        self.buffer.push(fingerprint.version);
        self.buffer.extend_from_slice(&fingerprint.bytes);
        self
    }

    /// Announces a value of the named language type; the value follows.
    pub fn typed(&mut self, type_name: &str) -> &mut Self {
        self.buffer.push(token::TYPED);
        self.len32(type_name.len());
        self.buffer.extend_from_slice(type_name.as_bytes());
        self
    }

    /// A value that cannot be hashed faithfully, by its type name.
    pub fn unhashable(&mut self, type_name: &str) -> &mut Self {
        self.buffer.push(token::UNHASHABLE);
        self.len32(type_name.len());
        self.buffer.extend_from_slice(type_name.as_bytes());
        self
    }
}
