//! Signing: a keyed BLAKE3 MAC over what a record says, and the checks a downloaded record passes before it is loaded.

use super::*;

/// Context of the signing MAC's key derivation.
pub(super) const SIGNING_CONTEXT: &str = "hitsave 2026-11 eval signature v1";

/// Whether a record's key derives from its function identity (`code2_…`, or
/// `name@version`, split at any `@`) and its argument digest.
pub(super) fn key_matches(eval: &RemoteEval) -> bool {
    let (Ok(key), Ok(arguments)) = (Digest::parse(&eval.key), Digest::parse(&eval.arguments)) else { return false };
    let Ok(core) = crate::runtime::Core::shared() else { return false };
    let derives = |identity: hitsave_core::keys::FunctionIdentity| {
        core.derive_key(&identity, &arguments).is_ok_and(|derived| derived == key)
    };
    if let Ok(fingerprint) = Digest::parse(&eval.function_id) {
        return derives(hitsave_core::keys::FunctionIdentity::Fingerprint(fingerprint));
    }
    eval.function_id.match_indices('@').any(|(at, _)| {
        derives(hitsave_core::keys::FunctionIdentity::Explicit {
            name: eval.function_id[..at].to_owned(),
            version: eval.function_id[at + 1..].to_owned(),
        })
    })
}

/// What a record's signature covers: every field that says what the result
/// is, each prefixed by its length.
pub(super) fn mac_message(eval: &RemoteEval) -> Vec<u8> {
    let mut message = Vec::new();
    for field in [
        eval.key.as_str(),
        &eval.function_id,
        &eval.function_name,
        &eval.language,
        &eval.arguments,
        &eval.codec,
        &eval.blob,
        &eval.size.to_string(),
    ] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}
