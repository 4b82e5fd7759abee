//! The JSON notation of values used by `tests/vectors`, and its translation
//! to a value stream. Every language's test suite reads the same notation
//! and builds its own native values from it; `docs/spec/values.md` ("Test
//! vector notation") describes it.
//!
//! | JSON | value |
//! |---|---|
//! | `null`, `true`, `false` | null, booleans |
//! | a JSON integer, or `{"int": "<decimal>"}` | integer of any size |
//! | `{"bigint": "<decimal>"}` | integer, written with the stream's bigint token (the same integer) |
//! | a JSON number with a fraction, or `{"float": 1.5}`, `{"float": "nan" \| "inf" \| "-inf" \| "-0.0" \| "1.0"}`, `{"float_bits": "<16 hex>"}` | float (integral ones too) |
//! | a JSON string | string |
//! | `{"bytes": "<hex>"}` | bytes |
//! | a JSON array | list |
//! | `{"map": [[key, value], ...]}` | map, in the given order |
//! | `{"set": [...]}` | set |
//! | `{"record": "Name", "fields": [["field", value], ...]}` | record |
//! | `{"array": {"dtype": "float64", "shape": [2, 3], "data": "<hex, little-endian>"}}` | numeric array |
//! | `{"file": "<hex content>"}` | file contents |
//! | `{"typed": "py:builtins.tuple", "value": ...}` | a value of a named language type |
//! | `{"function": "code2_<hex>"}` | function by fingerprint |
//! | `{"unhashable": "TypeName"}` | a value that cannot be hashed |

use serde_json::Value;

use crate::digest::Digest;
use crate::stream::StreamWriter;

/// Whether `bytes`, array data and files are written inline (hashed by the
/// core) or as host-computed digests. Both must give the same canonical bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// Inline, hashed by the core.
    Inline,
    /// BLAKE3 computed here, as a host does for big buffers.
    Digest,
}

/// Writes the value a notation describes into a stream.
pub fn write(value: &Value, buffers: Buffers, out: &mut StreamWriter) -> Result<(), String> {
    match value {
        Value::Null => {
            out.null();
        }
        Value::Bool(flag) => {
            out.bool(*flag);
        }
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                out.int(int);
            } else if let Some(int) = number.as_u64() {
                let (negative, magnitude) = parse_decimal(&int.to_string())?;
                out.bigint(negative, &magnitude);
            } else {
                out.float(number.as_f64().ok_or("not a number")?);
            }
        }
        Value::String(text) => {
            out.str(text);
        }
        Value::Array(items) => {
            out.list(items.len());
            for item in items {
                write(item, buffers, out)?;
            }
        }
        Value::Object(object) => {
            // Records and typed values are the two-key forms; every other tagged form has one key.
            let (tag, body) = match object.get_key_value("record").or_else(|| object.get_key_value("typed")) {
                Some(pair) => pair,
                None if object.len() == 1 => object.iter().next().ok_or("an empty object is not a value")?,
                None => {
                    return Err(format!(
                        "a tagged value has exactly one key, got {:?}",
                        object.keys().collect::<Vec<_>>()
                    ));
                }
            };
            match (tag.as_str(), body) {
                ("int", Value::String(decimal)) => {
                    let (negative, magnitude) = parse_decimal(decimal)?;
                    match i64::try_from(to_i128(negative, &magnitude).unwrap_or(i128::MAX)) {
                        Ok(int) => out.int(int),
                        Err(_) => out.bigint(negative, &magnitude),
                    };
                }
                ("bigint", Value::String(decimal)) => {
                    let (negative, magnitude) = parse_decimal(decimal)?;
                    out.bigint(negative, &magnitude);
                }
                ("float", Value::Number(number)) => {
                    out.float(number.as_f64().ok_or("not a float")?);
                }
                ("float", Value::String(text)) => {
                    let float = match text.as_str() {
                        "nan" => f64::NAN,
                        "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        other => other.parse::<f64>().map_err(|err| format!("bad float {other:?}: {err}"))?,
                    };
                    out.float(float);
                }
                ("float_bits", Value::String(hex)) => {
                    let bits = u64::from_str_radix(hex, 16).map_err(|err| format!("bad float bits {hex:?}: {err}"))?;
                    out.float(f64::from_bits(bits));
                }
                ("bytes", Value::String(hex)) => {
                    let data = decode_hex(hex)?;
                    match buffers {
                        Buffers::Inline => out.bytes(&data),
                        Buffers::Digest => out.bytes_digest(data.len() as u64, blake3::hash(&data).as_bytes()),
                    };
                }
                ("map", Value::Array(entries)) => {
                    out.map(entries.len());
                    for entry in entries {
                        let pair =
                            entry.as_array().filter(|pair| pair.len() == 2).ok_or("a map entry is [key, value]")?;
                        write(&pair[0], buffers, out)?;
                        write(&pair[1], buffers, out)?;
                    }
                }
                ("set", Value::Array(members)) => {
                    out.set(members.len());
                    for member in members {
                        write(member, buffers, out)?;
                    }
                }
                ("record", Value::String(name)) => {
                    let fields = object
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or("a record has fields: [[name, value], ...]")?;
                    out.record(name, fields.len());
                    for field in fields {
                        let pair = field.as_array().filter(|pair| pair.len() == 2).ok_or("a field is [name, value]")?;
                        out.field(pair[0].as_str().ok_or("a field name is a string")?);
                        write(&pair[1], buffers, out)?;
                    }
                }
                ("array", Value::Object(array)) => {
                    let dtype = array.get("dtype").and_then(Value::as_str).ok_or("an array has a dtype")?;
                    let shape: Vec<u64> = array
                        .get("shape")
                        .and_then(Value::as_array)
                        .ok_or("an array has a shape")?
                        .iter()
                        .map(|dim| dim.as_u64().ok_or("dimensions are non-negative integers"))
                        .collect::<Result<_, _>>()?;
                    let data = decode_hex(array.get("data").and_then(Value::as_str).ok_or("an array has hex data")?)?;
                    match buffers {
                        Buffers::Inline => out.array(dtype, &shape, &data),
                        Buffers::Digest => {
                            out.array_digest(dtype, &shape, data.len() as u64, blake3::hash(&data).as_bytes())
                        }
                    };
                }
                ("file", Value::String(hex)) => {
                    let data = decode_hex(hex)?;
                    out.file_digest(data.len() as u64, blake3::hash(&data).as_bytes());
                }
                ("typed", Value::String(name)) => {
                    out.typed(name);
                    write(object.get("value").ok_or("a typed value has a value")?, buffers, out)?;
                }
                ("function", Value::String(text)) => {
                    let digest = Digest::parse(text).map_err(|err| err.to_string())?;
                    out.function(&digest);
                }
                ("unhashable", Value::String(type_name)) => {
                    out.unhashable(type_name);
                }
                (tag, _) => return Err(format!("unknown notation {tag:?}")),
            }
        }
    }
    Ok(())
}

/// The stream of one notation value.
pub fn to_stream(value: &Value, buffers: Buffers) -> Result<Vec<u8>, String> {
    let mut out = StreamWriter::new();
    write(value, buffers, &mut out)?;
    Ok(out.into_bytes())
}

/// Parses a decimal integer into sign and little-endian magnitude.
pub fn parse_decimal(text: &str) -> Result<(bool, Vec<u8>), String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a decimal integer: {text:?}"));
    }
    let mut magnitude: Vec<u8> = Vec::new();
    for digit in digits.bytes() {
        let mut carry = u32::from(digit - b'0');
        for byte in magnitude.iter_mut() {
            let value = u32::from(*byte) * 10 + carry;
            *byte = value as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            magnitude.push(carry as u8);
            carry >>= 8;
        }
    }
    Ok((negative, magnitude))
}

fn to_i128(negative: bool, magnitude: &[u8]) -> Option<i128> {
    if magnitude.iter().skip(15).any(|&byte| byte != 0) {
        return None;
    }
    let mut value: i128 = 0;
    for &byte in magnitude.iter().take(15).rev() {
        value = (value << 8) | i128::from(byte);
    }
    Some(if negative { -value } else { value })
}

/// Decodes lowercase or uppercase hex.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {text:?}"));
    }
    (0..text.len() / 2)
        .map(|index| {
            u8::from_str_radix(&text[2 * index..2 * index + 2], 16).map_err(|err| format!("bad hex {text:?}: {err}"))
        })
        .collect()
}
