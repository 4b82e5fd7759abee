//! The portable result codec: results every language reads back as equal values.
//!
//! A portable result is a value stream (`docs/spec/values.md`) restricted to
//! inline tokens a language can rebuild exactly: null, booleans, integers,
//! floats, strings, bytes, lists, maps and numeric arrays, plus zero padding
//! that writers put before large arrays
//! ([`StreamWriter::array_aligned`](hitsave_core::stream::StreamWriter::array_aligned)) so a
//! memory-mapped result's array data is aligned and can be used in place. Unlike canonical
//! bytes it keeps what the writer had (a float stays a float, map entries
//! keep their order), so a Python writer and a Node reader see the same
//! value. Each binding rebuilds native values through [`Build`]; the parsing
//! and its checks live here once.
//!
//! Codec name in the store: [`CODEC`].

use hitsave_core::stream::{dtype_size, token};

use crate::error::HitSaveError;

/// The codec name stored with portable results.
pub const CODEC: &str = "portable";

/// How deep a portable result may nest (the same limit as arguments).
pub const MAX_DEPTH: usize = hitsave_core::canonical::MAX_DEPTH;

/// Builds native values while [`decode`] walks a portable result.
pub trait Build {
    /// A native value.
    type Value;
    /// The binding's error type.
    type Error: From<HitSaveError>;
    /// `null`.
    fn null(&mut self) -> Result<Self::Value, Self::Error>;
    /// A boolean.
    fn bool(&mut self, value: bool) -> Result<Self::Value, Self::Error>;
    /// A 64-bit integer.
    fn int(&mut self, value: i64) -> Result<Self::Value, Self::Error>;
    /// A larger integer: sign and little-endian magnitude.
    fn bigint(&mut self, negative: bool, magnitude_le: &[u8]) -> Result<Self::Value, Self::Error>;
    /// A float.
    fn float(&mut self, value: f64) -> Result<Self::Value, Self::Error>;
    /// A string.
    fn str(&mut self, value: &str) -> Result<Self::Value, Self::Error>;
    /// Bytes.
    fn bytes(&mut self, value: &[u8]) -> Result<Self::Value, Self::Error>;
    /// A list of already built items.
    fn list(&mut self, items: Vec<Self::Value>) -> Result<Self::Value, Self::Error>;
    /// A map of already built entries, in stored order.
    fn map(&mut self, entries: Vec<(Self::Value, Self::Value)>) -> Result<Self::Value, Self::Error>;
    /// A numeric array: dtype, shape, C-order little-endian data.
    fn array(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> Result<Self::Value, Self::Error>;
}

fn malformed(message: impl Into<String>) -> HitSaveError {
    HitSaveError::Core(hitsave_core::CoreError::new(
        hitsave_core::ErrorCode::MalformedStream,
        format!("not a portable result: {}", message.into()),
    ))
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], HitSaveError> {
        let end =
            self.pos.checked_add(len).filter(|&end| end <= self.input.len()).ok_or_else(|| malformed("truncated"))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, HitSaveError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, HitSaveError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, HitSaveError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(le))
    }
    fn count(&mut self) -> Result<usize, HitSaveError> {
        let count = self.u32()?;
        if count > self.input.len() - self.pos {
            return Err(malformed("a count larger than the data"));
        }
        Ok(count)
    }
}

/// Where a decoded array's data can be used in place: its offset from
/// `start` (the first byte of a memory-mapped result) when the array is large
/// enough to be worth a view ([`hitsave_core::stream::ARRAY_ALIGN_MIN`]) and
/// aligned for its dtype; `None` means copy it. Both bindings ask this, so
/// Python and Node view the same arrays.
pub fn view_offset(start: usize, dtype: &str, data: &[u8]) -> Option<usize> {
    let item = dtype_size(dtype).unwrap_or(1) as usize;
    let address = data.as_ptr() as usize;
    (data.len() >= hitsave_core::stream::ARRAY_ALIGN_MIN && address.is_multiple_of(item) && address >= start)
        .then(|| address - start)
}

/// Checks that `bytes` is a whole portable result, building nothing: what a
/// result from elsewhere (the cloud) must pass before it is stored, so a
/// record that claims the portable codec but holds anything else is never
/// served as one.
pub fn check(bytes: &[u8]) -> Result<(), HitSaveError> {
    struct Check;
    impl Build for Check {
        type Value = ();
        type Error = HitSaveError;
        fn null(&mut self) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn bool(&mut self, _: bool) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn int(&mut self, _: i64) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn bigint(&mut self, _: bool, _: &[u8]) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn float(&mut self, _: f64) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn str(&mut self, _: &str) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn bytes(&mut self, _: &[u8]) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn list(&mut self, _: Vec<()>) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn map(&mut self, _: Vec<((), ())>) -> Result<(), HitSaveError> {
            Ok(())
        }
        fn array(&mut self, _: &str, _: &[u64], _: &[u8]) -> Result<(), HitSaveError> {
            Ok(())
        }
    }
    decode(bytes, &mut Check)
}

/// Rebuilds a portable result with `builder`.
pub fn decode<B: Build>(bytes: &[u8], builder: &mut B) -> Result<B::Value, B::Error> {
    let mut reader = Reader { input: bytes, pos: 0 };
    let value = value(&mut reader, builder, 0)?;
    if reader.pos != bytes.len() {
        return Err(malformed("trailing bytes").into());
    }
    Ok(value)
}

fn value<B: Build>(reader: &mut Reader<'_>, builder: &mut B, depth: usize) -> Result<B::Value, B::Error> {
    if depth >= MAX_DEPTH {
        return Err(malformed("nested too deep").into());
    }
    let mut tag = reader.u8()?;
    while tag == token::PADDING {
        // Writers align array data with zero padding; anything else is damage.
        let len = reader.u8()? as usize;
        if reader.take(len)?.iter().any(|&byte| byte != 0) {
            return Err(malformed("padding that is not zero").into());
        }
        tag = reader.u8()?;
    }
    match tag {
        token::NULL => builder.null(),
        token::FALSE => builder.bool(false),
        token::TRUE => builder.bool(true),
        token::INT => builder.int(reader.u64()? as i64),
        token::BIGINT => {
            let sign = reader.u8()?;
            if sign > 1 {
                return Err(malformed("bad bigint sign").into());
            }
            let len = reader.u32()?;
            let magnitude = reader.take(len)?;
            builder.bigint(sign == 1, magnitude)
        }
        token::FLOAT => builder.float(f64::from_bits(reader.u64()?)),
        token::STR => {
            let len = reader.u32()?;
            let text = std::str::from_utf8(reader.take(len)?).map_err(|_| malformed("a string is not UTF-8"))?;
            builder.str(text)
        }
        token::BYTES => {
            let len = reader.u32()?;
            let data = reader.take(len)?;
            builder.bytes(data)
        }
        token::LIST => {
            let count = reader.count()?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(value(reader, builder, depth + 1)?);
            }
            builder.list(items)
        }
        token::MAP => {
            let count = reader.count()?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let key = value(reader, builder, depth + 1)?;
                entries.push((key, value(reader, builder, depth + 1)?));
            }
            builder.map(entries)
        }
        token::ARRAY => {
            let dtype_len = reader.u8()? as usize;
            let dtype = std::str::from_utf8(reader.take(dtype_len)?).map_err(|_| malformed("bad dtype"))?.to_owned();
            let item_size = dtype_size(&dtype).ok_or_else(|| malformed(format!("unknown dtype {dtype:?}")))?;
            let ndim = reader.u8()? as usize;
            let mut shape = Vec::with_capacity(ndim);
            let mut items: Option<u64> = Some(1);
            for _ in 0..ndim {
                let dim = reader.u64()?;
                items = items.and_then(|items| items.checked_mul(dim));
                shape.push(dim);
            }
            let len = reader.u64()?;
            if items.and_then(|items| items.checked_mul(item_size)) != Some(len) {
                return Err(malformed("array length does not match its shape").into());
            }
            let data = reader.take(usize::try_from(len).map_err(|_| malformed("array too large"))?)?;
            builder.array(&dtype, &shape, data)
        }
        other => Err(malformed(format!("token 0x{other:02x} has no portable form")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitsave_core::stream::StreamWriter;

    /// Rebuilds values as JSON-ish text, to check decoding.
    struct Text;
    impl Build for Text {
        type Value = String;
        type Error = HitSaveError;
        fn null(&mut self) -> Result<String, HitSaveError> {
            Ok("null".into())
        }
        fn bool(&mut self, value: bool) -> Result<String, HitSaveError> {
            Ok(value.to_string())
        }
        fn int(&mut self, value: i64) -> Result<String, HitSaveError> {
            Ok(value.to_string())
        }
        fn bigint(&mut self, negative: bool, magnitude: &[u8]) -> Result<String, HitSaveError> {
            Ok(format!(
                "{}0x{}",
                if negative { "-" } else { "" },
                magnitude.iter().rev().map(|b| format!("{b:02x}")).collect::<String>()
            ))
        }
        fn float(&mut self, value: f64) -> Result<String, HitSaveError> {
            Ok(format!("{value:?}"))
        }
        fn str(&mut self, value: &str) -> Result<String, HitSaveError> {
            Ok(format!("{value:?}"))
        }
        fn bytes(&mut self, value: &[u8]) -> Result<String, HitSaveError> {
            Ok(format!("b{value:?}"))
        }
        fn list(&mut self, items: Vec<String>) -> Result<String, HitSaveError> {
            Ok(format!("[{}]", items.join(", ")))
        }
        fn map(&mut self, entries: Vec<(String, String)>) -> Result<String, HitSaveError> {
            Ok(format!("{{{}}}", entries.into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")))
        }
        fn array(&mut self, dtype: &str, shape: &[u64], data: &[u8]) -> Result<String, HitSaveError> {
            Ok(format!("array({dtype}, {shape:?}, {} bytes)", data.len()))
        }
    }

    #[test]
    fn decodes_what_was_written_keeping_floats_and_order() {
        let mut stream = StreamWriter::new();
        stream.map(3).str("b").float(1.0).str("a").list(2).int(1).null().str("c").array("int32", &[2], &[0; 8]);
        assert_eq!(
            decode(stream.as_bytes(), &mut Text).unwrap(),
            r#"{"b": 1.0, "a": [1, null], "c": array(int32, [2], 8 bytes)}"#
        );
    }

    #[test]
    fn rejects_what_has_no_portable_form() {
        for stream in [vec![0x08], vec![0x42], vec![0x00, 0x00], vec![0x09, 0xff, 0xff, 0xff, 0x0f]] {
            assert_eq!(decode(&stream, &mut Text).unwrap_err().code(), "malformed_stream", "{stream:?}");
        }
        let mut digest_bytes = StreamWriter::new();
        digest_bytes.bytes_digest(3, &[0; 32]);
        assert!(decode(digest_bytes.as_bytes(), &mut Text).is_err(), "a digest cannot be decoded back to bytes");
    }

    #[test]
    fn large_arrays_are_aligned_and_padding_is_skipped() {
        use hitsave_core::stream::{ARRAY_ALIGN, ARRAY_ALIGN_MIN};
        let data: Vec<u8> = (0..ARRAY_ALIGN_MIN as u32 * 2).map(|i| i as u8).collect();
        // Every position the array can start at, and dtype names of several lengths.
        let mut padded = 0;
        for prefix in 0..ARRAY_ALIGN + 3 {
            for dtype in ["int8", "float64", "complex128"] {
                let mut stream = StreamWriter::new();
                let columns = data.len() as u64 / 2 / dtype_size(dtype).unwrap();
                stream.list(2).str(&"x".repeat(prefix)).array_aligned(dtype, &[2, columns], &data);
                let bytes = stream.as_bytes();
                let start = bytes.windows(data.len()).position(|window| window == data.as_slice()).unwrap();
                assert_eq!(start % ARRAY_ALIGN, 0, "prefix {prefix}, {dtype}");
                assert_eq!(
                    decode(bytes, &mut Text).unwrap(),
                    format!("[{:?}, array({dtype}, [2, {columns}], {} bytes)]", "x".repeat(prefix), data.len())
                );
                // The core never accepts padding in a stream it hashes.
                let mut plain = StreamWriter::new();
                plain.list(2).str(&"x".repeat(prefix)).array(dtype, &[2, columns], &data);
                if plain.as_bytes() != bytes {
                    padded += 1;
                    assert_eq!(hitsave_core::canonical::digest(bytes).unwrap_err().code.as_str(), "malformed_stream");
                }
            }
        }
        assert!(padded > 3 * ARRAY_ALIGN / 2, "most positions need padding: {padded}");
        // Written in parts (the head where the stream stood, the data kept
        // where it lies, then more values), the bytes are the same.
        for before in 0..ARRAY_ALIGN as u64 * 2 + 5 {
            let mut whole = StreamWriter::new();
            whole.list(3).str(&"y".repeat(before as usize)).array_aligned("int16", &[data.len() as u64 / 2], &data);
            whole.bytes(&data).null();
            let mut first = StreamWriter::new();
            first.list(3).str(&"y".repeat(before as usize));
            let first = first.into_bytes();
            let mut head = StreamWriter::new();
            head.array_aligned_head(first.len() as u64, "int16", &[data.len() as u64 / 2], data.len() as u64);
            let mut bytes_head = StreamWriter::new();
            bytes_head.bytes_head(data.len());
            let mut tail = StreamWriter::new();
            tail.null();
            let parts = [&first[..], head.as_bytes(), &data, bytes_head.as_bytes(), &data, tail.as_bytes()];
            assert_eq!(parts.concat(), whole.as_bytes(), "{before} bytes before the array");
        }
        // Small arrays are written as they are.
        let mut small = StreamWriter::new();
        small.str("x").array_aligned("int8", &[3], &[1, 2, 3]);
        let mut plain = StreamWriter::new();
        plain.str("x").array("int8", &[3], &[1, 2, 3]);
        assert_eq!(small.as_bytes(), plain.as_bytes());
        // Padding must be zero.
        assert_eq!(decode(&[token::PADDING, 2, 0, 1, token::NULL], &mut Text).unwrap_err().code(), "malformed_stream");
        assert_eq!(decode(&[token::PADDING, 2, 0, 0, token::NULL], &mut Text).unwrap(), "null");
    }
}
