//! STARTTLS and SASL AUTH of the smarthost SMTP client against real peers on loopback:
//! aiosmtpd (tests/smtp/sink.py) with a throwaway CA and server certificate made by the
//! openssl command at test time, plus a bare socket for a broken handshake. Every wait is
//! bounded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pki::pki;
use common::sink::Sink;
use tidemail::config::Config;
use tidemail::deliver::smtp::{
    ClientSettings, Credentials, Outgoing, Session, SessionError, TlsLevel, TlsPolicy, credentials_for,
};

/// The recording smarthost; with `tls`, STARTTLS is offered with the test certificate.
fn start_sink(tls: bool, args: &[&str]) -> Option<Sink> {
    if tls { Sink::start_tls(args) } else { Sink::start(args) }
}

/// Short waits, and the given TLS level with the test CA (or the system's, when `ca` is false).
fn settings(level: TlsLevel, ca: bool) -> ClientSettings {
    let mut settings = ClientSettings::new("client.test").with_all_timeouts(Duration::from_secs(10));
    settings.tls = TlsPolicy::new(level);
    if ca {
        settings.tls.ca_file = pki().map(|pki| pki.ca.clone());
    }
    settings
}

fn message() -> Outgoing<&'static [u8]> {
    let content: &[u8] = b"Subject: test\n\nHello.\n";
    Outgoing {
        sender: "alice@client.test".into(),
        recipients: vec!["bob@sink.test".into()],
        size: content.len() as u64,
        body_8bit: false,
        content,
    }
}

/// Connects as `host`, sends one message and quits; returns the session's TLS/AUTH facts.
async fn deliver(sink: &Sink, host: &str, settings: &ClientSettings) -> Result<(bool, Option<String>), SessionError> {
    let mut session = Session::connect(host, &[sink.addr()], settings).await?;
    let facts = (session.tls().is_some(), session.authenticated().map(str::to_string));
    let results = session.send(message()).await?;
    assert_eq!(results[0].code, 250, "{results:?}");
    session.quit().await;
    Ok(facts)
}

fn assert_temporary(error: &SessionError, status: &str) {
    assert!(error.is_temporary(), "{error}");
    assert_eq!(error.status(), status, "{error}");
}

#[tokio::test]
async fn encrypt_delivers_over_tls() {
    let Some(sink) = start_sink(true, &[]) else { return };
    let mut session = Session::connect("127.0.0.1", &[sink.addr()], &settings(TlsLevel::Encrypt, false)).await.unwrap();
    let tls = session.tls().cloned().expect("a TLS session");
    assert!(!tls.verified);
    assert!(tls.protocol == "TLSv1.3" || tls.protocol == "TLSv1.2", "{tls:?}");
    assert!(tls.describe(session.relay()).starts_with("Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:"));
    // The second EHLO, inside TLS, no longer offers STARTTLS.
    assert!(!session.capabilities().starttls);
    session.send(message()).await.unwrap();
    session.quit().await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["tls"], true);
    assert_eq!(records[0]["helo"], "client.test");
}

#[tokio::test]
async fn encrypt_without_starttls_is_a_temporary_failure() {
    let Some(sink) = start_sink(false, &[]) else { return };
    let error = deliver(&sink, "sink.test", &settings(TlsLevel::Encrypt, false)).await.unwrap_err();
    assert!(matches!(error, SessionError::TlsNotOffered { .. }), "{error:?}");
    assert_eq!(error.to_string(), "TLS is required, but was not offered by host sink.test[127.0.0.1]");
    assert_temporary(&error, "4.7.4");
    assert!(sink.records().is_empty());
}

#[tokio::test]
async fn verify_with_the_ca_file() {
    let Some(sink) = start_sink(true, &[]) else { return };
    for host in ["127.0.0.1", "localhost"] {
        let session = Session::connect(host, &[sink.addr()], &settings(TlsLevel::Verify, true)).await.unwrap();
        assert!(session.tls().is_some_and(|tls| tls.verified), "{host}");
        session.quit().await;
    }
    assert_eq!(deliver(&sink, "127.0.0.1", &settings(TlsLevel::Secure, true)).await.unwrap(), (true, None));
    assert_eq!(sink.records()[0]["tls"], true);
}

#[tokio::test]
async fn verify_fails_temporarily_without_trust_or_with_the_wrong_name() {
    let Some(sink) = start_sink(true, &[]) else { return };
    // The system's CAs do not know the test CA.
    let error = deliver(&sink, "127.0.0.1", &settings(TlsLevel::Verify, false)).await.unwrap_err();
    assert!(matches!(error, SessionError::Tls { .. }), "{error:?}");
    assert_temporary(&error, "4.7.5");
    // Trusted, but issued for another name.
    let error = deliver(&sink, "smtp.isp.example", &settings(TlsLevel::Secure, true)).await.unwrap_err();
    assert!(matches!(error, SessionError::Tls { .. }), "{error:?}");
    assert!(error.to_string().starts_with("TLS handshake with smtp.isp.example[127.0.0.1] failed: "), "{error}");
    assert_temporary(&error, "4.7.5");
    assert!(sink.records().is_empty());
}

#[tokio::test]
async fn may_uses_tls_when_offered_and_plaintext_otherwise() {
    let Some(with_tls) = start_sink(true, &[]) else { return };
    assert_eq!(deliver(&with_tls, "127.0.0.1", &settings(TlsLevel::May, false)).await.unwrap(), (true, None));
    assert_eq!(with_tls.records()[0]["tls"], true);
    let Some(without) = start_sink(false, &[]) else { return };
    assert_eq!(deliver(&without, "127.0.0.1", &settings(TlsLevel::May, false)).await.unwrap(), (false, None));
    assert_eq!(without.records()[0]["tls"], false);
}

/// A server that offers STARTTLS, answers 220 and then is no TLS server at all; the next
/// connection gets a plain ESMTP dialogue. Returns every connection's commands.
fn broken_tls_server() -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut transcripts = Vec::new();
        for round in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut seen = String::new();
            stream.write_all(b"220 broken ESMTP\r\n").unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                seen.push_str(&line);
                let command = line.trim_end().to_ascii_uppercase();
                if command.starts_with("EHLO") {
                    let offer: &[u8] = if round == 0 { b"250-broken\r\n250 STARTTLS\r\n" } else { b"250 broken\r\n" };
                    stream.write_all(offer).unwrap();
                } else if command == "STARTTLS" {
                    stream.write_all(b"220 go ahead\r\n").unwrap();
                    let mut hello = [0u8; 512];
                    let _ = reader.read(&mut hello);
                    let _ = stream.write_all(b"this is not TLS\r\n\r\n");
                    break;
                } else if command == "QUIT" {
                    stream.write_all(b"221 bye\r\n").unwrap();
                    break;
                }
            }
            transcripts.push(seen);
        }
        transcripts
    });
    (addr, server)
}

#[tokio::test]
async fn may_retries_in_plaintext_after_a_failed_handshake() {
    let (addr, server) = broken_tls_server();
    let session = Session::connect("127.0.0.1", &[addr], &settings(TlsLevel::May, false)).await.unwrap();
    assert!(session.tls().is_none());
    session.quit().await;
    let transcripts = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
    assert_eq!(transcripts, ["EHLO client.test\r\nSTARTTLS\r\n", "EHLO client.test\r\nQUIT\r\n"]);
}

#[tokio::test]
async fn encrypt_after_a_failed_handshake_is_temporary() {
    let (addr, server) = broken_tls_server();
    let error = Session::connect("127.0.0.1", &[addr], &settings(TlsLevel::Encrypt, false)).await.err().unwrap();
    assert!(matches!(error, SessionError::Tls { .. }), "{error:?}");
    assert_temporary(&error, "4.7.5");
    // Unblock the server's second accept.
    drop(std::net::TcpStream::connect(addr));
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
}

/// A password table holding `entries`, with the given mode, and a configuration using it.
fn password_config(dir: &Path, entries: &str, mode: u32) -> (Config, PathBuf) {
    let file = dir.join("sasl_passwd");
    std::fs::write(&file, entries).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let text = format!(
        "smtp_sasl_auth_enable = true\nsmtp_sasl_password_maps = \"texthash:{}\"\nsmtp_tls_security_level = \"encrypt\"\n",
        file.display()
    );
    (Config::from_toml_str(&text, &dir.join("main.toml")).unwrap(), file)
}

#[tokio::test]
async fn auth_plain_over_tls_with_credentials_from_the_table() {
    let Some(sink) = start_sink(true, &["--auth", "office@isp.example:s3cret"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let nexthop = format!("[127.0.0.1]:{}", sink.port);
    let entries = format!("# smarthost\n[127.0.0.1]:1 someone:else\n{nexthop} office@isp.example:s3cret\n");
    let (config, _) = password_config(dir.path(), &entries, 0o600);
    let credentials = credentials_for(&config, &nexthop, "127.0.0.1").unwrap().expect("found by the next hop");
    assert_eq!(credentials.username(), "office@isp.example");

    let mut settings = ClientSettings::from_config(&config).with_credentials(Some(credentials));
    let quick = self::settings(TlsLevel::Encrypt, false);
    (settings.connect_timeout, settings.helo_timeout, settings.starttls_timeout) =
        (quick.connect_timeout, quick.helo_timeout, quick.starttls_timeout);
    let facts = deliver(&sink, "127.0.0.1", &settings).await.unwrap();
    assert_eq!(facts, (true, Some("office@isp.example".to_string())));
    let records = sink.records();
    assert_eq!((&records[0]["tls"], &records[0]["auth_user"]), (&true.into(), &"office@isp.example".into()));
    assert_eq!(sink.auth_log(), "PLAIN\n");
}

#[tokio::test]
async fn a_wrong_password_is_a_temporary_failure() {
    let Some(sink) = start_sink(true, &["--auth", "office:right"]) else { return };
    let settings = settings(TlsLevel::Encrypt, false).with_credentials(Some(Credentials::new("office", "wrong-pw")));
    let error = deliver(&sink, "sink.test", &settings).await.unwrap_err();
    assert!(matches!(error, SessionError::SaslRejected { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with("SASL authentication failed; server sink.test[127.0.0.1] said: 535"), "{text}");
    assert!(!text.contains("wrong-pw") && !format!("{error:?}").contains("wrong-pw"), "{text}");
    assert!(error.is_temporary());
    assert!(error.status().starts_with('4'), "{}", error.status());
    assert!(sink.records().is_empty());
}

#[tokio::test]
async fn no_password_without_tls_unless_allowed() {
    let Some(sink) = start_sink(false, &["--auth", "office:pw", "--auth-plaintext"]) else { return };
    let credentials = Some(Credentials::new("office", "pw"));
    // Default smtp_sasl_security_options (noplaintext): the password stays here.
    let settings = settings(TlsLevel::May, false).with_credentials(credentials.clone());
    let error = deliver(&sink, "sink.test", &settings).await.unwrap_err();
    assert!(matches!(error, SessionError::SaslNotPossible { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "SASL authentication failed: server sink.test[127.0.0.1] offered no TLS and smtp_sasl_security_options \
         forbids plaintext passwords (noplaintext)"
    );
    assert_temporary(&error, "4.7.0");
    assert_eq!(sink.auth_log(), "");
    assert!(sink.records().is_empty());

    // The admin's explicit opt-in: smtp_sasl_security_options without noplaintext.
    let mut settings = settings;
    settings.sasl.security_options = vec!["noanonymous".to_string()];
    assert_eq!(deliver(&sink, "sink.test", &settings).await.unwrap(), (false, Some("office".to_string())));
    assert_eq!(sink.auth_log(), "PLAIN\n");
}

#[tokio::test]
async fn no_auth_offered_means_no_auth() {
    let Some(sink) = start_sink(false, &[]) else { return };
    let settings = settings(TlsLevel::None, false).with_credentials(Some(Credentials::new("office", "pw")));
    assert_eq!(deliver(&sink, "sink.test", &settings).await.unwrap(), (false, None));
    assert_eq!(sink.records()[0]["auth_user"], serde_json::Value::Null);
}

#[test]
fn a_password_table_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, file) = password_config(dir.path(), "[127.0.0.1]:2525 office:pw\n", 0o644);
    let error = credentials_for(&config, "[127.0.0.1]:2525", "127.0.0.1").unwrap_err();
    assert!(error.contains(&file.display().to_string()) && error.contains("0644"), "{error}");
    assert!(!error.contains("office:pw"), "{error}");
    // Looked up by host name when the next hop is not in the table.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, "127.0.0.1 office:pw\n").unwrap();
    let found = credentials_for(&config, "[127.0.0.1]:2525", "127.0.0.1").unwrap();
    assert_eq!(found, Some(Credentials::new("office", "pw")));
}
