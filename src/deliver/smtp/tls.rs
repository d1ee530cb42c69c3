//! STARTTLS for the SMTP client: the policy (`smtp_tls_security_level`) and the rustls
//! configuration that carries it out.
//!
//! Levels, as in Postfix: `none` (never), `may` (when offered; the certificate is not checked,
//! since opportunistic TLS has nothing to check it against), `encrypt` (mandatory, not
//! checked), `verify` and `secure` (mandatory; the chain must lead to a trusted CA and name the
//! host we connected to, or the address for a literal next hop). The two checked levels are
//! the same here: for a smarthost the host is the next hop (Postfix's `secure` would also
//! accept the next-hop domain for MX hosts). Trusted CAs are `smtp_tls_CAfile` /
//! `smtp_tls_CApath` when set (the system's are then not used, as in Postfix), else the
//! system's bundle (rustls-native-certs).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::client::Relay;
use crate::config::Config;

/// `smtp_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsLevel {
    #[default]
    None,
    May,
    Encrypt,
    Verify,
    Secure,
}

impl TlsLevel {
    /// The parameter's value; "" is `none`.
    pub fn parse(text: &str) -> Result<TlsLevel, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(TlsLevel::None),
            "may" => Ok(TlsLevel::May),
            "encrypt" => Ok(TlsLevel::Encrypt),
            "verify" => Ok(TlsLevel::Verify),
            "secure" => Ok(TlsLevel::Secure),
            other => Err(format!("unknown smtp_tls_security_level \"{other}\"")),
        }
    }

    /// No mail goes over a session without TLS.
    pub fn is_mandatory(self) -> bool {
        matches!(self, TlsLevel::Encrypt | TlsLevel::Verify | TlsLevel::Secure)
    }

    /// The server's certificate must be trusted and name the server.
    pub fn verifies(self) -> bool {
        matches!(self, TlsLevel::Verify | TlsLevel::Secure)
    }
}

/// What STARTTLS does for a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    pub level: TlsLevel,
    /// PEM bundle of trusted CAs (`smtp_tls_CAfile`).
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA files (`smtp_tls_CApath`).
    pub ca_path: Option<PathBuf>,
}

impl TlsPolicy {
    /// A policy of the given level with the system's CAs.
    pub fn new(level: TlsLevel) -> TlsPolicy {
        TlsPolicy { level, ..TlsPolicy::default() }
    }

    /// From the smtp_tls_* parameters.
    pub fn from_config(config: &Config) -> TlsPolicy {
        let path = |text: &str| (!text.is_empty()).then(|| PathBuf::from(text));
        TlsPolicy {
            // The configuration checked the value when it was loaded.
            level: TlsLevel::parse(config.smtp_tls_security_level()).unwrap_or_default(),
            ca_file: path(config.smtp_tls_CAfile()),
            ca_path: path(config.smtp_tls_CApath()),
        }
    }

    /// The rustls settings for this policy. Built per session, so that a renewed CA file is
    /// used without a restart. An error is a local problem (an unreadable CA file).
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = if self.level.verifies() {
            builder.with_root_certificates(self.trusted()?).with_no_client_auth()
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider))).with_no_client_auth()
        };
        Ok(Arc::new(config))
    }

    /// The CAs that verify a server: the configured ones, else the system's.
    fn trusted(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        if self.ca_file.is_none() && self.ca_path.is_none() {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(format!("no trusted CA certificates found in the system's store{why}"));
            }
            return Ok(store);
        }
        if let Some(file) = &self.ca_file {
            let added = add_pem_file(&mut store, file)?;
            if added == 0 {
                return Err(format!("smtp_tls_CAfile {}: no certificates found", file.display()));
            }
        }
        if let Some(dir) = &self.ca_path {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("smtp_tls_CApath {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                // Hash links (c_rehash) and the files they name both load; duplicates are harmless.
                if entry.path().is_file() {
                    let _ = add_pem_file(&mut store, &entry.path());
                }
            }
        }
        if store.is_empty() {
            return Err("no trusted CA certificates in smtp_tls_CAfile or smtp_tls_CApath".to_string());
        }
        Ok(store)
    }
}

/// Adds the certificates of a PEM file; returns how many were taken.
fn add_pem_file(store: &mut RootCertStore, path: &Path) -> Result<usize, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    Ok(store.add_parsable_certificates(certs).0)
}

/// The name the certificate must carry: the host we connected to, or its address for a
/// literal. An unverified session falls back to the address for a name rustls will not take.
pub(crate) fn server_name(relay: &Relay, verifies: bool) -> Result<ServerName<'static>, String> {
    match ServerName::try_from(relay.host.clone()) {
        Ok(name) => Ok(name),
        Err(_) if !verifies => Ok(ServerName::IpAddress(relay.addr.ip().into())),
        Err(e) => Err(format!("cannot verify a certificate for \"{}\": {e}", relay.host)),
    }
}

/// What a TLS session negotiated, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The certificate was checked (verify/secure).
    pub verified: bool,
    /// `TLSv1.3`.
    pub protocol: String,
    /// `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsInfo {
    pub(crate) fn of(connection: &ClientConnection, verified: bool) -> TlsInfo {
        let protocol = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher = connection.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
        TlsInfo { verified, protocol, cipher }
    }

    /// Postfix's log line: `Verified TLS connection established to host[ip]:port: TLSv1.3 with cipher X`.
    pub fn describe(&self, relay: &Relay) -> String {
        format!("{self} TLS connection established to {relay}: {} with cipher {}", self.protocol, self.cipher)
    }
}

impl fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.verified { "Verified" } else { "Untrusted" })
    }
}

/// Accepts any certificate (may/encrypt), but still checks the handshake signatures, so the
/// session is at least encrypted to whoever holds the presented key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(TlsLevel::parse("").unwrap(), TlsLevel::None);
        assert_eq!(TlsLevel::parse("May").unwrap(), TlsLevel::May);
        assert!(TlsLevel::parse("dane").is_err());
        assert!(!TlsLevel::May.is_mandatory() && TlsLevel::Encrypt.is_mandatory());
        assert!(!TlsLevel::Encrypt.verifies() && TlsLevel::Verify.verifies() && TlsLevel::Secure.verifies());
    }

    #[test]
    fn policy_from_the_configuration() {
        let text = "smtp_tls_security_level = \"verify\"\nsmtp_tls_CAfile = \"/etc/ssl/isp.pem\"\n";
        let config = Config::from_toml_str(text, Path::new("/etc/tidemail/main.toml")).unwrap();
        let policy = TlsPolicy::from_config(&config);
        assert_eq!(policy.level, TlsLevel::Verify);
        assert_eq!(policy.ca_file.as_deref(), Some(Path::new("/etc/ssl/isp.pem")));
        assert_eq!(policy.ca_path, None);
        let config = Config::from_toml_str("", Path::new("/etc/tidemail/main.toml")).unwrap();
        assert_eq!(TlsPolicy::from_config(&config), TlsPolicy::default());
    }

    #[test]
    fn names_to_verify() {
        let relay = Relay::new("127.0.0.1", "127.0.0.1:25".parse().unwrap());
        assert!(matches!(server_name(&relay, true).unwrap(), ServerName::IpAddress(_)));
        let relay = Relay::new("smtp.isp.example", "192.0.2.1:587".parse().unwrap());
        assert!(matches!(server_name(&relay, true).unwrap(), ServerName::DnsName(_)));
        let relay = Relay::new("bad name", "192.0.2.1:25".parse().unwrap());
        assert!(server_name(&relay, true).is_err());
        assert!(matches!(server_name(&relay, false).unwrap(), ServerName::IpAddress(_)));
    }

    #[test]
    fn unreadable_ca_file_is_an_error() {
        let policy = TlsPolicy { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsPolicy::new(TlsLevel::Verify) };
        let error = policy.client_config().unwrap_err();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        assert!(TlsPolicy::new(TlsLevel::Encrypt).client_config().is_ok());
    }
}
