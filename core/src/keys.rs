//! Eval keys: function identity + argument digest → `key2`.

use crate::digest::{Digest, DigestKind, KEY_CONTEXT, hasher};
use crate::error::{CoreError, ErrorCode};

/// Longest name or version, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

/// How a function is identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionIdentity {
    /// By its code fingerprint (`code2`).
    Fingerprint(Digest),
    /// By an explicit name and version, shared across languages.
    Explicit {
        /// Function name.
        name: String,
        /// Version the user bumps when behaviour changes.
        version: String,
    },
}

fn check_identity_part(what: &str, value: &str) -> Result<(), CoreError> {
    if value.is_empty() || value.len() > MAX_IDENTITY_LEN || value.chars().any(char::is_control) {
        return Err(CoreError::new(
            ErrorCode::InvalidIdentity,
            format!("the {what} must be 1 to {MAX_IDENTITY_LEN} bytes without control characters, got {value:?}"),
        ));
    }
    Ok(())
}

/// Derives the eval key. The key material is specified in `docs/spec/keys.md`:
///
/// - fingerprint: `0x01 ‖ fingerprint (32) ‖ arguments (32)`
/// - explicit: `0x02 ‖ u64 BE len ‖ name ‖ u64 BE len ‖ version ‖ arguments (32)`
///
/// hashed with BLAKE3 in derive-key mode, context `hitsave 2026-12 key v2`.
pub fn derive_key(identity: &FunctionIdentity, arguments: &Digest) -> Result<Digest, CoreError> {
    arguments.expect(DigestKind::Value, "the argument digest")?;
    let mut hasher = hasher(KEY_CONTEXT);
    match identity {
        FunctionIdentity::Fingerprint(fingerprint) => {
            fingerprint.expect(DigestKind::Code, "a function fingerprint")?;
            hasher.update(&[1]);
            hasher.update(&fingerprint.bytes);
        }
        FunctionIdentity::Explicit { name, version } => {
            check_identity_part("name", name)?;
            check_identity_part("version", version)?;
            hasher.update(&[2]);
            hasher.update(&(name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update(&(version.len() as u64).to_be_bytes());
            hasher.update(version.as_bytes());
        }
    }
    hasher.update(&arguments.bytes);
    Ok(Digest::new(DigestKind::Key, *hasher.finalize().as_bytes()))
}
