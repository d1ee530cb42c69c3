//! STARTTLS for the SMTP server: the rustls acceptor made from smtpd_tls_cert_file and
//! smtpd_tls_key_file, and the connection that is plain text until STARTTLS and TLS after.
//!
//! The plaintext-injection rule (CVE-2011-0411, found by Postfix's author): once "220 Ready
//! to start TLS" is sent, nothing the client sent in plain text may be acted on. The session
//! keeps its input buffer itself (no BufReader that would survive the switch) and empties it
//! after the handshake; [`Conn::start_tls`] takes the bare TCP stream, so no other buffer
//! can exist.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::Config;

/// smtpd_tls_security_level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    /// Offer STARTTLS.
    May,
    /// Offer it, and take no mail (nor AUTH) before it.
    Encrypt,
}

impl Level {
    pub fn of(cfg: &Config) -> Level {
        match cfg.smtpd_tls_security_level().trim().to_ascii_lowercase().as_str() {
            "may" => Level::May,
            "encrypt" => Level::Encrypt,
            _ => Level::None,
        }
    }
}

/// The acceptor for a service, or None when its level is none. A level above none without a
/// usable certificate and key is an error (the service would promise what it cannot keep).
pub fn acceptor(cfg: &Config) -> Result<Option<TlsAcceptor>, String> {
    if Level::of(cfg) == Level::None {
        return Ok(None);
    }
    let cert_file = cfg.smtpd_tls_cert_file();
    if cert_file.is_empty() {
        return Err("smtpd_tls_security_level is set but smtpd_tls_cert_file is empty".into());
    }
    let key_file = if cfg.smtpd_tls_key_file().is_empty() { cert_file } else { cfg.smtpd_tls_key_file() };
    let certs = CertificateDer::pem_file_iter(Path::new(cert_file))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("smtpd_tls_cert_file {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("smtpd_tls_cert_file {cert_file}: no certificate in the file"));
    }
    let key =
        PrivateKeyDer::from_pem_file(Path::new(key_file)).map_err(|e| format!("smtpd_tls_key_file {key_file}: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("smtpd_tls_cert_file {cert_file} / smtpd_tls_key_file {key_file}: {e}"))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// A client connection, plain or upgraded.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two (a failed handshake leaves this: the session ends).
    Closed,
}

impl Conn {
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Closed => Ok(0),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Closed => Ok(()),
        };
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// "TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384" for the log and Received:.
    pub fn tls_description(&self) -> Option<String> {
        let Conn::Tls(s) = self else { return None };
        let (_, session) = s.get_ref();
        let version = session.protocol_version().and_then(|v| v.as_str()).unwrap_or("TLS");
        let cipher = session.negotiated_cipher_suite().and_then(|c| c.suite().as_str()).unwrap_or("unknown");
        Some(format!("{} with cipher {cipher}", version.replace("TLSv1_", "TLSv1.")))
    }

    /// The handshake on the TCP stream itself (the caller has discarded its plaintext).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let Conn::Plain(tcp) = std::mem::replace(self, Conn::Closed) else {
            return Err(io::Error::other("TLS already active"));
        };
        let tls = acceptor.accept(tcp).await?;
        *self = Conn::Tls(Box::new(tls));
        Ok(())
    }
}
