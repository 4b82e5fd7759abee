//! TLS to PostgreSQL, with `sslmode` and `sslrootcert` meaning what they
//! mean to libpq (and so to `psql` and every managed database's docs):
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default) | if the server offers it | no |
//! | `require` | yes | no; against `sslrootcert` when given (as `verify-ca`; also `prefer`) |
//! | `verify-ca` | yes | chain to `sslrootcert` |
//! | `verify-full` | yes | chain to `sslrootcert` and the host name |
//!
//! `sslrootcert` is a PEM file, or `system` for the operating system's
//! roots. tokio-postgres knows only the first three modes, so the URL is
//! rewritten for it and the checking is done by the rustls configuration
//! given to `tokio-postgres-rustls`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::ApiError;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypted.
    Disable,
    /// Encrypted if the server offers it, not checked.
    Prefer,
    /// Encrypted, not checked (unless a root is given).
    Require,
    /// Encrypted, the chain checked.
    VerifyCa,
    /// Encrypted, the chain and the host name checked.
    VerifyFull,
}

/// A database URL made ready for tokio-postgres, and the TLS connector that
/// checks what its `sslmode` asks.
pub fn connector(url: &str) -> Result<(String, MakeRustlsConnect), ApiError> {
    let (rewritten, mode, root) = split(url)?;
    let config = client_config(mode, root.as_deref())?;
    Ok((rewritten, MakeRustlsConnect::new(config)))
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request(format!("database URL: {message}"))
}

fn parse_mode(value: &str) -> Result<SslMode, ApiError> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "prefer" | "allow" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(bad(format!(
                "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    })
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?sslmode=…`)
/// or key-value string (`host=… sslmode=…`) and puts back the `sslmode`
/// tokio-postgres understands.
fn split(url: &str) -> Result<(String, SslMode, Option<String>), ApiError> {
    let mut mode = SslMode::Prefer;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Result<bool, ApiError> {
        match key {
            "sslmode" => mode = parse_mode(&value)?,
            "sslrootcert" => root = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rewritten = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| bad(format!("{key} is not UTF-8")))?
                .into_owned();
            if !take(key, value)? {
                kept.push(pair);
            }
        }
        kept.push(tokio_mode(mode));
        format!("{base}?{}", kept.join("&"))
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((key, value)) if take(key, value.trim_matches('\'').to_owned())? => {}
                _ => kept.push(word),
            }
        }
        kept.push(tokio_mode(mode));
        kept.join(" ")
    };
    Ok((rewritten, mode, root))
}

fn tokio_mode(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "sslmode=require",
    }
}

fn roots(root: &str) -> Result<RootCertStore, ApiError> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = store.add(cert);
        }
    } else {
        let certs = CertificateDer::pem_file_iter(root)
            .map_err(|err| bad(format!("sslrootcert {root:?}: {err}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad(format!("sslrootcert {root:?}: {err}")))?;
        for cert in certs {
            store.add(cert).map_err(|err| bad(format!("sslrootcert {root:?}: {err}")))?;
        }
    }
    if store.is_empty() {
        return Err(bad(format!("sslrootcert {root:?} holds no certificate")));
    }
    Ok(store)
}

fn client_config(mode: SslMode, root: Option<&str>) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| ApiError::internal(format!("TLS: {err}")))?;
    let (chain, check_name) = match (mode, root) {
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => (None, false),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(bad(
                "sslmode=verify-ca and verify-full need sslrootcert=<a PEM file> (or sslrootcert=system)".into()
            ));
        }
        (_, Some(root)) => {
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider.clone())
                .build()
                .map_err(|err| ApiError::internal(format!("TLS: {err}")))?;
            (Some(chain), mode == SslMode::VerifyFull)
        }
    };
    let verifier = Arc::new(Verifier { provider, chain, check_name });
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// The server's certificate as the mode asks: not checked (`prefer`,
/// `require` without a root: encrypted, not authenticated, libpq's meaning),
/// its chain (`verify-ca`), or its chain and name (`verify-full`). The
/// handshake's signatures are always checked.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_url_forms() {
        let (url, mode, root) =
            split("postgres://u@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(
            (url.as_str(), mode, root.as_deref()),
            ("postgres://u@h:5/db?application_name=x&sslmode=require", SslMode::VerifyFull, Some("/tmp/ca.pem"))
        );
        let (url, mode, root) = split("postgres://u@h/db").unwrap();
        assert_eq!((url.as_str(), mode, root), ("postgres://u@h/db?sslmode=prefer", SslMode::Prefer, None));
        let (url, mode, _) = split("host=h user=u sslmode=disable").unwrap();
        assert_eq!((url.as_str(), mode), ("host=h user=u sslmode=disable", SslMode::Disable));
        let error = split("postgres://h/db?sslmode=verify").unwrap_err();
        assert!(error.message.contains("sslmode=\"verify\""), "{}", error.message);
        let error = connector("postgres://h/db?sslmode=verify-full").err().unwrap();
        assert!(error.message.contains("need sslrootcert"), "{}", error.message);
        let error = connector("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").err().unwrap();
        assert!(error.message.contains("/nonexistent/ca.pem"), "{}", error.message);
    }
}
