//! Property tests of the canonical encoding against a reference model.
//!
//! The model is the *logical* value under the `val2` rule: what a function
//! can observe. Integers are integers however the stream spells them (int or
//! bigint), floats are floats (integral ones and `-0.0` too, one NaN), maps
//! keep their entry order, sets and record fields are unordered, a typed
//! value is its type name and its value. Each model value is written into a
//! stream in many ways (int or bigint; sets and record fields in any order;
//! sets with repeated members; buffers inline or host-hashed). The
//! properties: every spelling of one value gets one digest, and two values
//! get one digest only if they are equal.

use std::collections::{BTreeMap, BTreeSet};

use hitsave_core::canonical;
use hitsave_core::stream::StreamWriter;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Model {
    Null,
    Bool(bool),
    Int(i128),
    /// Bits of a float (the canonical NaN for every NaN).
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Model>),
    /// Entries in order, keys distinct.
    Map(Vec<(Model, Model)>),
    Typed(String, Box<Model>),
    Set(BTreeSet<Model>),
    Record(String, BTreeMap<String, Model>),
}

/// A tiny deterministic generator for the spelling choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.pick(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

fn write_int(value: i128, choices: &mut Choices, out: &mut StreamWriter) {
    match choices.pick(2) {
        0 if i64::try_from(value).is_ok() => {
            out.int(value as i64);
        }
        _ => {
            let mut magnitude = value.unsigned_abs().to_le_bytes().to_vec();
            // Sometimes with redundant high zero bytes.
            if choices.pick(2) == 0 {
                magnitude.extend_from_slice(&[0, 0]);
            }
            out.bigint(value < 0, &magnitude);
        }
    }
}

fn write(model: &Model, choices: &mut Choices, out: &mut StreamWriter) {
    match model {
        Model::Null => {
            out.null();
        }
        Model::Bool(flag) => {
            out.bool(*flag);
        }
        Model::Int(value) => write_int(*value, choices, out),
        Model::Float(bits) => {
            let value = f64::from_bits(*bits);
            if value.is_nan() {
                // Any NaN will do.
                let nans =
                    [0x7ff8_0000_0000_0000u64, 0xfff8_0000_0000_0000, 0x7ff0_0000_0000_0001, 0x7fff_ffff_ffff_ffff];
                out.float(f64::from_bits(nans[choices.pick(4) as usize]));
            } else {
                out.float(value);
            }
        }
        Model::Str(text) => {
            out.str(text);
        }
        Model::Typed(name, value) => {
            out.typed(name);
            write(value, choices, out);
        }
        Model::Bytes(data) => {
            if choices.pick(2) == 0 {
                out.bytes(data);
            } else {
                out.bytes_digest(data.len() as u64, blake3::hash(data).as_bytes());
            }
        }
        Model::List(items) => {
            out.list(items.len());
            for item in items {
                write(item, choices, out);
            }
        }
        Model::Map(entries) => {
            out.map(entries.len());
            for (key, value) in entries {
                write(key, choices, out);
                write(value, choices, out);
            }
        }
        Model::Set(members) => {
            let mut members: Vec<_> = members.iter().collect();
            if let Some(&first) = members.first()
                && choices.pick(2) == 0
            {
                members.push(first);
            }
            choices.shuffle(&mut members);
            out.set(members.len());
            for member in members {
                write(member, choices, out);
            }
        }
        Model::Record(name, fields) => {
            let mut fields: Vec<_> = fields.iter().collect();
            choices.shuffle(&mut fields);
            out.record(name, fields.len());
            for (field, value) in fields {
                out.field(field);
                write(value, choices, out);
            }
        }
    }
}

fn digest_of(model: &Model, seed: u64) -> hitsave_core::Digest {
    let mut out = StreamWriter::new();
    write(model, &mut Choices(seed | 1), &mut out);
    canonical::digest(out.as_bytes()).expect("every model value is a valid stream")
}

fn leaf() -> impl Strategy<Value = Model> {
    prop_oneof![
        Just(Model::Null),
        any::<bool>().prop_map(Model::Bool),
        (-3i128..3).prop_map(Model::Int),
        any::<i64>().prop_map(|v| Model::Int(v.into())),
        any::<i128>().prop_map(Model::Int),
        prop_oneof![
            Just(0.5f64),
            Just(-1.25),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e-300),
            Just(0.1),
            Just(0.0),
            Just(-0.0),
            Just(1.0),
            Just(-1.0),
            Just(2f64.powi(64))
        ]
        .prop_map(|v| Model::Float(if v.is_nan() { 0x7ff8_0000_0000_0000 } else { v.to_bits() })),
        prop_oneof![Just(""), Just("a"), Just("1"), Just("é")].prop_map(|s| Model::Str(s.to_owned())),
        prop_oneof![Just(vec![]), Just(b"a".to_vec()), Just(b"1".to_vec()), Just(vec![7u8; 5000])]
            .prop_map(Model::Bytes),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Model::List),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(|entries| {
                // Distinct keys, in the generated order.
                let mut seen = BTreeSet::new();
                Model::Map(entries.into_iter().filter(|(key, _)| seen.insert(key.clone())).collect())
            }),
            (prop_oneof![Just("py:builtins.tuple"), Just("js:Date")], inner.clone())
                .prop_map(|(name, value)| Model::Typed(name.to_owned(), Box::new(value))),
            prop::collection::btree_set(inner.clone(), 0..4).prop_map(Model::Set),
            (
                prop_oneof![Just("P"), Just("Q")],
                prop::collection::btree_map(
                    prop_oneof![Just("x".to_owned()), Just("y".to_owned()), Just("z".to_owned())],
                    inner,
                    0..3
                )
            )
                .prop_map(|(name, fields)| Model::Record(name.to_owned(), fields)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Set order and repeats, record field order, int/bigint spelling, NaN
    /// payloads and inline/hashed buffers never change a digest.
    #[test]
    fn every_spelling_of_a_value_has_one_digest(value in model(), seed_a in any::<u64>(), seed_b in any::<u64>()) {
        prop_assert_eq!(digest_of(&value, seed_a), digest_of(&value, seed_b));
    }

    /// Two values share a digest exactly when they are equal: in particular
    /// values of distinct types (str vs bytes, bool vs int vs float, list vs
    /// set vs map, record vs map, a typed value vs its plain value) and maps
    /// whose entries differ only in order never do.
    #[test]
    fn distinct_values_never_share_a_digest(a in model(), b in model(), seed in any::<u64>()) {
        prop_assert_eq!(a == b, digest_of(&a, seed) == digest_of(&b, seed.rotate_left(7)));
    }

    /// A float never equals an integer, at any magnitude, integral or not.
    #[test]
    fn floats_never_equal_integers(mantissa in -(1i64 << 53)..(1i64 << 53), exponent in 0u32..70) {
        let value = mantissa as f64 * 2f64.powi(exponent as i32);
        let exact = i128::from(mantissa) << exponent;
        let mut float = StreamWriter::new();
        float.float(value);
        let encoded = canonical::encode(float.as_bytes()).unwrap();
        prop_assert_eq!(encoded.canonical[0], canonical::tag::FLOAT);
        prop_assert_ne!(encoded.digest, digest_of(&Model::Int(exact), 3));
    }

    /// Arbitrary bytes are either a valid stream or a typed error: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = canonical::encode(&bytes);
    }
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let mut stream = StreamWriter::new();
    for _ in 0..canonical::MAX_DEPTH - 1 {
        stream.list(1);
    }
    stream.null();
    assert!(canonical::encode(stream.as_bytes()).is_ok());
    let mut deeper = StreamWriter::new();
    deeper.list(1);
    let mut bytes = deeper.into_bytes();
    bytes.extend_from_slice(stream.as_bytes());
    assert_eq!(canonical::encode(&bytes).unwrap_err().code, hitsave_core::ErrorCode::TooDeep);
}
