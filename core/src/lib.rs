//! `hitsave-core`: the semantics every HitSave language shares.
//!
//! This crate is the single place where HitSave decides what a value's
//! canonical bytes are ([`canonical`]), what key a call has ([`keys`]), how a
//! code change propagates through a dependency graph ([`graph`]) and what the
//! cache keeps ([`policy`]). It is pure: no I/O, no clock, no randomness.
//!
//! It builds twice from one source:
//! - for `wasm32-unknown-unknown`, as the WebAssembly component that
//!   `hitsave-host` runs in wasmtime for Python, Node and the CLI (the
//!   `component` module implements the WIT world in `wit/core.wit`);
//! - natively, so its unit and property tests run under `cargo test` and the
//!   host's tests can check that the component answers exactly as this code.
//!
//! ```
//! use hitsave_core::{canonical, stream::StreamWriter};
//!
//! let mut one = StreamWriter::new();
//! one.map(2).str("b").float(2.0).str("a").int(1);
//! let mut other = StreamWriter::new();
//! other.map(2).str("a").float(1.0).str("b").int(2);
//! // Map order and int/float spelling do not change the digest.
//! assert_eq!(canonical::digest(one.as_bytes())?, canonical::digest(other.as_bytes())?);
//! # Ok::<(), hitsave_core::error::CoreError>(())
//! ```

pub mod canonical;
pub mod digest;
pub mod error;
pub mod graph;
pub mod keys;
#[cfg(feature = "notation")]
pub mod notation;
pub mod policy;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod component;

pub use digest::{Digest, DigestKind};
pub use error::{CoreError, ErrorCode};
