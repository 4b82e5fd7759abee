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
//! let mut float = StreamWriter::new();
//! float.list(2).str("a").float(2.0);
//! let mut int = StreamWriter::new();
//! int.list(2).str("a").int(2);
//! // A function can tell 2.0 from 2, so the two never share a digest.
//! assert_ne!(canonical::digest(float.as_bytes())?, canonical::digest(int.as_bytes())?);
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
