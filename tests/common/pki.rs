//! A throwaway test CA and a server certificate it signed, for 127.0.0.1 and localhost, made
//! once per test binary with the openssl command (not tidemail code).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The test CA (`ca`), and the server certificate (`cert`) and key (`key`) it signed for
/// IP:127.0.0.1 and DNS:localhost. The files live in a private (0700) temporary directory:
/// copy `ca` somewhere readable before handing it to a daemon that drops to mail_owner.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// sink.py's options that make it offer STARTTLS with the test certificate.
    pub fn sink_args(&self) -> Vec<String> {
        vec!["--tls-cert".into(), self.cert.display().to_string(), "--tls-key".into(), self.key.display().to_string()]
    }
}

/// The test PKI, made on first use; None (and the test skipped) when the openssl command is
/// missing, which is allowed only when not running as root (CI runs as root and installs it).
pub fn pki() -> Option<&'static Pki> {
    static PKI: OnceLock<Option<Pki>> = OnceLock::new();
    PKI.get_or_init(make_pki).as_ref()
}

fn make_pki() -> Option<Pki> {
    let present = Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !present {
        assert!(!super::is_root(), "openssl is missing (.ci/test installs it)");
        eprintln!("skipped: the openssl command is not installed (run .ci/test as root to install it)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    std::fs::write(
        dir.path().join("ca.ext"),
        "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("server.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\nauthorityKeyIdentifier = keyid\n",
    )
    .unwrap();
    run(&[&["req"][..], &ec, &["-keyout", "ca.key", "-out", "ca.csr", "-subj", "/CN=tidemail test CA"]].concat());
    run(&["x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-out", "ca.pem", "-days", "2", "-extfile", "ca.ext"]);
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    let path = |name: &str| dir.path().join(name);
    Some(Pki { ca: path("ca.pem"), cert: path("server.pem"), key: path("server.key"), _dir: dir })
}
