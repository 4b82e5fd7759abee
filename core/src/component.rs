//! The WIT world `hitsave:core/core`, implemented over the native modules.
//!
//! Only conversions live here: every decision is made by the modules the
//! native tests cover.

wit_bindgen::generate!({
    path: "../wit",
    world: "core",
});

use exports::hitsave::core::{
    canonical as wit_canonical, fingerprint as wit_fingerprint, keys as wit_keys, policy as wit_policy,
    types as wit_types,
};

use crate::digest::{Digest, DigestKind};
use crate::error::{CoreError, ErrorCode};
use crate::graph::{self, ChangeKind, Node, NodeKind};
use crate::{canonical, keys, policy};

struct Component;

fn kind_from(kind: wit_types::DigestKind) -> DigestKind {
    match kind {
        wit_types::DigestKind::Value => DigestKind::Value,
        wit_types::DigestKind::Key => DigestKind::Key,
        wit_types::DigestKind::Code => DigestKind::Code,
        wit_types::DigestKind::Blob => DigestKind::Blob,
    }
}

fn kind_to(kind: DigestKind) -> wit_types::DigestKind {
    match kind {
        DigestKind::Value => wit_types::DigestKind::Value,
        DigestKind::Key => wit_types::DigestKind::Key,
        DigestKind::Code => wit_types::DigestKind::Code,
        DigestKind::Blob => wit_types::DigestKind::Blob,
    }
}

fn digest_to(digest: Digest) -> wit_types::Digest {
    wit_types::Digest { kind: kind_to(digest.kind), version: digest.version, bytes: digest.bytes.to_vec() }
}

fn digest_from(digest: wit_types::Digest) -> Result<Digest, CoreError> {
    Digest::from_parts(kind_from(digest.kind), digest.version, &digest.bytes)
}

fn code_to(code: ErrorCode) -> wit_types::ErrorCode {
    match code {
        ErrorCode::MalformedStream => wit_types::ErrorCode::MalformedStream,
        ErrorCode::InvalidUtf8 => wit_types::ErrorCode::InvalidUtf8,
        ErrorCode::DuplicateKey => wit_types::ErrorCode::DuplicateKey,
        ErrorCode::UnhashableValue => wit_types::ErrorCode::UnhashableValue,
        ErrorCode::InvalidArray => wit_types::ErrorCode::InvalidArray,
        ErrorCode::InvalidDigest => wit_types::ErrorCode::InvalidDigest,
        ErrorCode::InvalidGraph => wit_types::ErrorCode::InvalidGraph,
        ErrorCode::InvalidIdentity => wit_types::ErrorCode::InvalidIdentity,
        ErrorCode::TooDeep => wit_types::ErrorCode::TooDeep,
    }
}

fn error_to(error: CoreError) -> wit_types::CoreError {
    wit_types::CoreError { code: code_to(error.code), message: error.message, path: error.path }
}

fn node_from(node: wit_fingerprint::Node) -> Result<Node, CoreError> {
    let kind = match node.kind {
        wit_fingerprint::NodeKind::Function => NodeKind::Function,
        wit_fingerprint::NodeKind::Class => NodeKind::Class,
        wit_fingerprint::NodeKind::Constant => NodeKind::Constant,
        wit_fingerprint::NodeKind::Package => NodeKind::Package,
        wit_fingerprint::NodeKind::Module => NodeKind::Module,
    };
    Ok(Node { kind, name: node.name, content: digest_from(node.content)?, deps: node.deps })
}

fn nodes_from(nodes: Vec<wit_fingerprint::Node>) -> Result<Vec<Node>, CoreError> {
    nodes.into_iter().map(node_from).collect()
}

impl wit_canonical::Guest for Component {
    fn encode(stream: Vec<u8>) -> Result<wit_canonical::Encoded, wit_types::CoreError> {
        let encoded = canonical::encode(&stream).map_err(error_to)?;
        Ok(wit_canonical::Encoded { canonical: encoded.canonical, digest: digest_to(encoded.digest) })
    }

    fn value_digest(stream: Vec<u8>) -> Result<wit_types::Digest, wit_types::CoreError> {
        canonical::digest(&stream).map(digest_to).map_err(error_to)
    }
}

impl wit_keys::Guest for Component {
    fn derive_key(
        identity: wit_keys::FunctionIdentity,
        arguments: wit_types::Digest,
    ) -> Result<wit_types::Digest, wit_types::CoreError> {
        let run = || {
            let identity = match identity {
                wit_keys::FunctionIdentity::Fingerprint(digest) => {
                    keys::FunctionIdentity::Fingerprint(digest_from(digest)?)
                }
                wit_keys::FunctionIdentity::Explicit(explicit) => {
                    keys::FunctionIdentity::Explicit { name: explicit.name, version: explicit.version }
                }
            };
            keys::derive_key(&identity, &digest_from(arguments)?)
        };
        run().map(digest_to).map_err(error_to)
    }
}

impl wit_fingerprint::Guest for Component {
    fn fingerprints(nodes: Vec<wit_fingerprint::Node>) -> Result<Vec<wit_types::Digest>, wit_types::CoreError> {
        let run = || graph::fingerprints(&nodes_from(nodes)?);
        run().map(|digests| digests.into_iter().map(digest_to).collect()).map_err(error_to)
    }

    fn diff(
        old: Vec<wit_fingerprint::Node>,
        new: Vec<wit_fingerprint::Node>,
        root: String,
    ) -> Result<Vec<wit_fingerprint::Change>, wit_types::CoreError> {
        let run = || graph::diff(&nodes_from(old)?, &nodes_from(new)?, &root);
        run()
            .map(|changes| {
                changes
                    .into_iter()
                    .map(|change| wit_fingerprint::Change {
                        name: change.name,
                        change: match change.change {
                            ChangeKind::Added => wit_fingerprint::ChangeKind::Added,
                            ChangeKind::Removed => wit_fingerprint::ChangeKind::Removed,
                            ChangeKind::Modified => wit_fingerprint::ChangeKind::Modified,
                            ChangeKind::KindChanged => wit_fingerprint::ChangeKind::KindChanged,
                        },
                    })
                    .collect()
            })
            .map_err(error_to)
    }
}

impl wit_policy::Guest for Component {
    fn evict(entries: Vec<wit_policy::Entry>, params: wit_policy::EvictionParams) -> Vec<u32> {
        let entries: Vec<policy::Entry> = entries
            .into_iter()
            .map(|entry| policy::Entry {
                size: entry.size,
                compute_micros: entry.compute_micros,
                last_access: entry.last_access,
                hits: entry.hits,
            })
            .collect();
        policy::evict(
            &entries,
            &policy::EvictionParams { budget: params.budget, now: params.now, half_life: params.half_life },
        )
    }

    fn store_decision(size: u64, compute_micros: u64, params: wit_policy::StoreParams) -> Option<wit_policy::Decline> {
        let params = policy::StoreParams {
            budget: params.budget,
            min_compute_micros: params.min_compute_micros,
            read_bytes_per_second: params.read_bytes_per_second,
        };
        policy::store_decision(size, compute_micros, &params).map(|decline| match decline {
            policy::Decline::OverBudget => wit_policy::Decline::OverBudget,
            policy::Decline::TooQuick => wit_policy::Decline::TooQuick,
            policy::Decline::CheaperToRecompute => wit_policy::Decline::CheaperToRecompute,
        })
    }

    fn should_prefetch(stats: wit_policy::FunctionStats) -> bool {
        policy::should_prefetch(&policy::FunctionStats {
            calls: stats.calls,
            remote_hits: stats.remote_hits,
            misses: stats.misses,
            remote_entries: stats.remote_entries,
            remote_bytes: stats.remote_bytes,
            free_bytes: stats.free_bytes,
        })
    }
}

export!(Component);
