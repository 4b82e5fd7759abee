//! `hitsave-host`: the native side of HitSave that every language binding
//! and the CLI link.
//!
//! ```text
//!   bindings/python   bindings/node   CLI
//!            \             |          /
//!             hitsave-host (this crate)  -- native BLAKE3 for big buffers
//!                      |
//!              wasmtime + the core component (hitsave-core, compiled to wasm)
//! ```
//!
//! The semantics (canonical bytes, keys, fingerprints, policy) come from the
//! core component that [`Core`] runs, so every language gets the same answers
//! from the same compiled bytes. This crate adds what a sandboxed, pure
//! component cannot do: hash big buffers and files natively on all cores
//! ([`hash`]), cache the compiled component, pool instances, and report
//! everything through one error type with stable codes ([`HitSaveError`]).
//!
//! ```no_run
//! use hitsave_core::keys::FunctionIdentity;
//! use hitsave_core::stream::StreamWriter;
//! use hitsave_host::Core;
//!
//! let core = Core::shared()?;
//! let mut args = StreamWriter::new();
//! args.list(2).int(3).str("x");
//! let arguments = core.value_digest(args.as_bytes())?;
//! let identity = FunctionIdentity::Explicit { name: "train".into(), version: "1".into() };
//! let key = core.derive_key(&identity, &arguments)?;
//! println!("{key}");
//! # Ok::<(), hitsave_host::HitSaveError>(())
//! ```

pub mod cache;
pub mod cloud;
pub mod config;
pub mod error;
pub mod files;
pub(crate) mod fork;
pub mod function;
pub mod hash;
pub mod memo;
pub mod paths;
pub mod payload;
pub mod place;
pub mod portable;
pub mod runtime;
pub mod store;
pub mod warn;
pub mod why;

pub use cache::Cache;
pub use config::{Config, Mode};
pub use error::{HitSaveError, Result};
pub use payload::Payload;
pub use runtime::{Core, LoadOptions, LoadSource};
pub use store::Store;
