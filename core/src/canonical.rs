//! Canonical encoding: from a value stream to canonical bytes and a `val2` digest.
//!
//! The rule (`docs/spec/values.md`): two values share canonical bytes only
//! when a function cannot tell them apart by ordinary means. So the kind is
//! part of the value (an integer never equals a float, `-0.0` never equals
//! `0.0`), a `typed` value carries its language type's name, map entries keep
//! their order; only what is not observable is normalised: one NaN, set
//! members sorted by their canonical bytes, record fields sorted by name, and
//! bytes, arrays and files entering by the BLAKE3 of their content.

use crate::digest::{Digest, DigestKind, VALUE_CONTEXT, hasher};
use crate::error::{CoreError, ErrorCode};
use crate::stream::{dtype_size, token};

/// Tags of the canonical encoding.
pub mod tag {
    /// null
    pub const NULL: u8 = 0x00;
    /// false
    pub const FALSE: u8 = 0x01;
    /// true
    pub const TRUE: u8 = 0x02;
    /// integer: u32 BE length, minimal two's complement BE
    pub const INT: u8 = 0x03;
    /// float: 8 bytes BE binary64 (integral values too; one NaN)
    pub const FLOAT: u8 = 0x04;
    /// string: u64 BE length, UTF-8
    pub const STR: u8 = 0x05;
    /// bytes: u64 BE length, BLAKE3 of content
    pub const BYTES: u8 = 0x06;
    /// list: u64 BE count, items
    pub const LIST: u8 = 0x07;
    /// map: u64 BE count, entries in the order given
    pub const MAP: u8 = 0x08;
    /// set: u64 BE count, sorted distinct members
    pub const SET: u8 = 0x09;
    /// record: name, u64 BE count, sorted fields
    pub const RECORD: u8 = 0x0A;
    /// array: dtype, u64 ndim, dims, u64 byte length, BLAKE3 of data
    pub const ARRAY: u8 = 0x0B;
    /// file: u64 BE length, BLAKE3 of content
    pub const FILE: u8 = 0x0C;
    /// function: version byte, 32-byte code fingerprint
    pub const FUNCTION: u8 = 0x0D;
    /// typed: u64 BE length, UTF-8 type name, then the value
    pub const TYPED: u8 = 0x0F;
}

/// How deep values may nest. Deeper streams fail with `too_deep`.
pub const MAX_DEPTH: usize = 256;

/// The canonical NaN bit pattern.
pub const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

/// Canonical bytes and their digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Canonical bytes.
    pub canonical: Vec<u8>,
    /// `val2` digest of the canonical bytes.
    pub digest: Digest,
}

/// Canonicalises one value stream.
pub fn encode(stream: &[u8]) -> Result<Encoded, CoreError> {
    let canonical = canonical_bytes(stream)?;
    let digest = digest_canonical(&canonical);
    Ok(Encoded { canonical, digest })
}

/// The `val2` digest of one value stream.
pub fn digest(stream: &[u8]) -> Result<Digest, CoreError> {
    Ok(digest_canonical(&canonical_bytes(stream)?))
}

/// The `val2` digest of canonical bytes.
pub fn digest_canonical(canonical: &[u8]) -> Digest {
    let mut hasher = hasher(VALUE_CONTEXT);
    hasher.update(canonical);
    Digest::new(DigestKind::Value, *hasher.finalize().as_bytes())
}

/// The canonical bytes of one value stream.
pub fn canonical_bytes(stream: &[u8]) -> Result<Vec<u8>, CoreError> {
    let mut parser = Parser { input: stream, pos: 0, path: Vec::new() };
    let mut out = Vec::with_capacity(stream.len() + 16);
    parser.value(&mut out)?;
    if parser.pos != stream.len() {
        return Err(parser.error(
            ErrorCode::MalformedStream,
            format!("{} trailing bytes after the value", stream.len() - parser.pos),
        ));
    }
    Ok(out)
}

/// One step of the path from the root to where an error arose.
#[derive(Clone, Copy)]
enum Segment {
    /// Item of a list.
    Index(u32),
    /// Value of a map entry whose key token starts at this stream offset.
    Value { entry: u32, key_at: usize },
    /// Key of the n-th map entry.
    Key(u32),
    /// The n-th member of a set, in stream order.
    Member(u32),
    /// A record field; its name spans these stream bytes.
    Field { at: usize, len: usize },
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    path: Vec<Segment>,
}

impl<'a> Parser<'a> {
    fn error(&self, code: ErrorCode, message: impl Into<String>) -> CoreError {
        CoreError { code, message: message.into(), path: Some(self.render_path()) }
    }

    fn render_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match *segment {
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
                Segment::Value { entry, key_at } => out.push_str(&format!("[{}]", self.render_key(entry, key_at))),
                Segment::Key(entry) => out.push_str(&format!("{{key #{entry}}}")),
                Segment::Member(index) => out.push_str(&format!("{{member #{index}}}")),
                Segment::Field { at, len } => {
                    out.push('.');
                    out.push_str(&String::from_utf8_lossy(&self.input[at..at + len]));
                }
            }
        }
        out
    }

    /// A map key as it appears in a path: quoted strings, plain integers,
    /// `#n` (the entry's position) for anything else.
    fn render_key(&self, entry: u32, at: usize) -> String {
        let input = self.input;
        match input.get(at) {
            Some(&token::STR) => {
                let len = input.get(at + 1..at + 5).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
                if let Some(text) =
                    len.and_then(|len| input.get(at + 5..at + 5 + len)).and_then(|b| std::str::from_utf8(b).ok())
                {
                    return json_quote(text);
                }
            }
            Some(&token::INT) => {
                if let Some(bytes) = input.get(at + 1..at + 9) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(bytes);
                    return i64::from_le_bytes(le).to_string();
                }
            }
            _ => {}
        }
        format!("#{entry}")
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], CoreError> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.input.len());
        match end {
            Some(end) => {
                let bytes = &self.input[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(self.error(ErrorCode::MalformedStream, "the stream ends inside a value")),
        }
    }

    fn u8(&mut self) -> Result<u8, CoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CoreError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, CoreError> {
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    fn digest32(&mut self) -> Result<&'a [u8], CoreError> {
        self.take(32)
    }

    fn utf8(&mut self, len: usize) -> Result<&'a str, CoreError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|err| self.error(ErrorCode::InvalidUtf8, format!("a string is not UTF-8: {err}")))
    }

    /// A count of items that each take at least one stream byte: a count the
    /// remaining input cannot hold is malformed (and never allocated for).
    fn count(&mut self) -> Result<u32, CoreError> {
        let count = self.u32()?;
        if count as usize > self.input.len() - self.pos {
            return Err(self.error(
                ErrorCode::MalformedStream,
                format!("a container announces {count} items but the stream is shorter"),
            ));
        }
        Ok(count)
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        if self.path.len() >= MAX_DEPTH {
            return Err(self.error(ErrorCode::TooDeep, format!("values may nest at most {MAX_DEPTH} levels deep")));
        }
        let token = self.u8()?;
        match token {
            token::NULL => out.push(tag::NULL),
            token::FALSE => out.push(tag::FALSE),
            token::TRUE => out.push(tag::TRUE),
            token::INT => {
                let value = self.u64()? as i64;
                write_int(out, value < 0, &value.unsigned_abs().to_le_bytes());
            }
            token::BIGINT => {
                let sign = self.u8()?;
                if sign > 1 {
                    return Err(
                        self.error(ErrorCode::MalformedStream, format!("bigint sign byte must be 0 or 1, got {sign}"))
                    );
                }
                let len = self.u32()? as usize;
                let magnitude = self.take(len)?;
                write_int(out, sign == 1, magnitude);
            }
            token::FLOAT => {
                let value = f64::from_bits(self.u64()?);
                write_float(out, value);
            }
            token::STR => {
                let len = self.u32()? as usize;
                let text = self.utf8(len)?;
                out.push(tag::STR);
                write_bytes(out, text.as_bytes());
            }
            token::TYPED => {
                let len = self.u32()? as usize;
                let name = self.utf8(len)?;
                if name.is_empty() {
                    return Err(self.error(ErrorCode::MalformedStream, "a typed value needs a type name"));
                }
                out.push(tag::TYPED);
                write_bytes(out, name.as_bytes());
                self.value(out)?;
            }
            token::BYTES => {
                let len = self.u32()? as usize;
                let data = self.take(len)?;
                out.push(tag::BYTES);
                out.extend_from_slice(&(len as u64).to_be_bytes());
                out.extend_from_slice(blake3::hash(data).as_bytes());
            }
            token::BYTES_DIGEST | token::FILE_DIGEST => {
                let len = self.u64()?;
                let digest = self.digest32()?;
                out.push(if token == token::BYTES_DIGEST { tag::BYTES } else { tag::FILE });
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(digest);
            }
            token::LIST => {
                let count = self.count()?;
                out.push(tag::LIST);
                out.extend_from_slice(&u64::from(count).to_be_bytes());
                for index in 0..count {
                    self.path.push(Segment::Index(index));
                    self.value(out)?;
                    self.path.pop();
                }
            }
            token::MAP => self.map(out)?,
            token::SET => self.set(out)?,
            token::RECORD => self.record(out)?,
            token::ARRAY | token::ARRAY_DIGEST => self.array(out, token == token::ARRAY)?,
            token::FUNCTION => {
                let version = self.u8()?;
                let digest = self.digest32()?;
                let expected = DigestKind::Code.version();
                if version != expected {
                    return Err(self.error(
                        ErrorCode::InvalidDigest,
                        format!("a function fingerprint must be code{expected}, got code{version}"),
                    ));
                }
                out.push(tag::FUNCTION);
                out.push(version);
                out.extend_from_slice(digest);
            }
            token::UNHASHABLE => {
                let len = self.u32()? as usize;
                let type_name = String::from_utf8_lossy(self.take(len)?).into_owned();
                return Err(self.error(
                    ErrorCode::UnhashableValue,
                    format!("a value of type {type_name} cannot be hashed faithfully; pass something that describes it (its contents, a path, a version) instead"),
                ));
            }
            other => {
                self.pos -= 1;
                return Err(self.error(ErrorCode::MalformedStream, format!("unknown stream token 0x{other:02x}")));
            }
        }
        Ok(())
    }

    fn map(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        let count = self.count()?;
        out.push(tag::MAP);
        out.extend_from_slice(&u64::from(count).to_be_bytes());
        // Entries keep their order (a function iterating a dict or Map sees it);
        // only a repeated key is an error, found by sorting the keys' spans.
        let mut keys: Vec<(usize, usize)> = Vec::with_capacity(count as usize);
        for entry in 0..count {
            let key_at = self.pos;
            let key_start = out.len();
            self.path.push(Segment::Key(entry));
            self.value(out)?;
            self.path.pop();
            keys.push((key_start, out.len()));
            self.path.push(Segment::Value { entry, key_at });
            self.value(out)?;
            self.path.pop();
        }
        keys.sort_unstable_by(|a, b| out[a.0..a.1].cmp(&out[b.0..b.1]));
        if keys.windows(2).any(|pair| out[pair[0].0..pair[0].1] == out[pair[1].0..pair[1].1]) {
            return Err(self.error(ErrorCode::DuplicateKey, "two keys of this map are equal"));
        }
        Ok(())
    }

    fn set(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        let count = self.count()?;
        let mut scratch = Vec::new();
        let mut members: Vec<(usize, usize)> = Vec::with_capacity(count as usize);
        for index in 0..count {
            let start = scratch.len();
            self.path.push(Segment::Member(index));
            self.value(&mut scratch)?;
            self.path.pop();
            members.push((start, scratch.len()));
        }
        members.sort_unstable_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        members.dedup_by(|a, b| scratch[a.0..a.1] == scratch[b.0..b.1]);
        out.push(tag::SET);
        out.extend_from_slice(&(members.len() as u64).to_be_bytes());
        for (start, end) in members {
            out.extend_from_slice(&scratch[start..end]);
        }
        Ok(())
    }

    fn record(&mut self, out: &mut Vec<u8>) -> Result<(), CoreError> {
        let name_len = self.u32()? as usize;
        let name = self.utf8(name_len)?;
        let count = self.count()?;
        let mut scratch = Vec::new();
        // (name start, name len in the stream, value start, value end in scratch)
        let mut fields: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let field_len = self.u32()? as usize;
            let field_at = self.pos;
            self.utf8(field_len)?;
            let start = scratch.len();
            self.path.push(Segment::Field { at: field_at, len: field_len });
            self.value(&mut scratch)?;
            self.path.pop();
            fields.push((field_at, field_len, start, scratch.len()));
        }
        let input = self.input;
        fields.sort_unstable_by(|a, b| input[a.0..a.0 + a.1].cmp(&input[b.0..b.0 + b.1]));
        if let Some(pair) = fields
            .windows(2)
            .find(|pair| input[pair[0].0..pair[0].0 + pair[0].1] == input[pair[1].0..pair[1].0 + pair[1].1])
        {
            let field = String::from_utf8_lossy(&input[pair[0].0..pair[0].0 + pair[0].1]).into_owned();
            return Err(self.error(ErrorCode::DuplicateKey, format!("record {name} repeats the field {field}")));
        }
        out.push(tag::RECORD);
        write_bytes(out, name.as_bytes());
        out.extend_from_slice(&u64::from(count).to_be_bytes());
        for (at, len, start, end) in fields {
            write_bytes(out, &input[at..at + len]);
            out.extend_from_slice(&scratch[start..end]);
        }
        Ok(())
    }

    fn array(&mut self, out: &mut Vec<u8>, inline: bool) -> Result<(), CoreError> {
        let dtype_len = self.u8()? as usize;
        let dtype = self.utf8(dtype_len)?;
        let Some(item_size) = dtype_size(dtype) else {
            return Err(self.error(ErrorCode::InvalidArray, format!("unknown dtype {dtype:?}")));
        };
        let ndim = self.u8()?;
        let mut dims = Vec::with_capacity(ndim as usize);
        let mut items: Option<u64> = Some(1);
        for _ in 0..ndim {
            let dim = self.u64()?;
            items = items.and_then(|items| items.checked_mul(dim));
            dims.push(dim);
        }
        let byte_len = self.u64()?;
        if items.and_then(|items| items.checked_mul(item_size)) != Some(byte_len) {
            return Err(self.error(
                ErrorCode::InvalidArray,
                format!("an array of {dtype} with shape {dims:?} cannot have {byte_len} bytes"),
            ));
        }
        let digest: [u8; 32] = if inline {
            let len = usize::try_from(byte_len)
                .map_err(|_| self.error(ErrorCode::MalformedStream, "array too large to inline"))?;
            *blake3::hash(self.take(len)?).as_bytes()
        } else {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(self.digest32()?);
            digest
        };
        out.push(tag::ARRAY);
        write_bytes(out, dtype.as_bytes());
        out.extend_from_slice(&u64::from(ndim).to_be_bytes());
        for dim in dims {
            out.extend_from_slice(&dim.to_be_bytes());
        }
        out.extend_from_slice(&byte_len.to_be_bytes());
        out.extend_from_slice(&digest);
        Ok(())
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Writes an integer given by sign and little-endian magnitude as
/// `INT, u32 BE length, minimal two's complement big-endian`.
pub(crate) fn write_int(out: &mut Vec<u8>, negative: bool, magnitude_le: &[u8]) {
    let significant = magnitude_le.iter().rposition(|&byte| byte != 0).map_or(0, |index| index + 1);
    let magnitude = &magnitude_le[..significant];
    out.push(tag::INT);
    if magnitude.is_empty() {
        out.extend_from_slice(&0u32.to_be_bytes());
        return;
    }
    let mut be: Vec<u8> = if negative {
        // Two's complement of -m is the bitwise complement of m - 1.
        let mut less = magnitude.to_vec();
        for byte in less.iter_mut() {
            let (value, borrow) = byte.overflowing_sub(1);
            *byte = value;
            if !borrow {
                break;
            }
        }
        let significant = less.iter().rposition(|&byte| byte != 0).map_or(0, |index| index + 1);
        less.truncate(significant);
        less.reverse();
        if less.first().is_none_or(|&byte| byte & 0x80 != 0) {
            less.insert(0, 0);
        }
        less.iter_mut().for_each(|byte| *byte = !*byte);
        less
    } else {
        let mut be = magnitude.to_vec();
        be.reverse();
        if be[0] & 0x80 != 0 {
            be.insert(0, 0);
        }
        be
    };
    out.extend_from_slice(&(be.len() as u32).to_be_bytes());
    out.append(&mut be);
}

/// Writes a float: its binary64 bits, every NaN as the one canonical NaN.
/// Integral floats stay floats and `-0.0` stays `-0.0`: a function can tell
/// them from the integer (`1.0 / 0` and `1 / 0`, `math.copysign(1, -0.0)`).
pub(crate) fn write_float(out: &mut Vec<u8>, value: f64) {
    let bits = if value.is_nan() { CANONICAL_NAN } else { value.to_bits() };
    out.push(tag::FLOAT);
    out.extend_from_slice(&bits.to_be_bytes());
}

fn json_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
