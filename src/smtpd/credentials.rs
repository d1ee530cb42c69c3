//! Checking AUTH credentials: smtpd_sasl_type = dovecot (Dovecot's auth socket) or passwd-file
//! (tidemail's own file of crypt-style hashes). The interface the session uses is fixed here.
//!
//! - dovecot: smtpd_sasl_path is the auth socket, relative to queue_directory when not absolute
//!   (Postfix's `private/auth`); see the `dovecot` module.
//! - passwd-file: smtpd_sasl_path is the password file, relative to config_directory when not
//!   absolute; see the `passwd_file` and `hash` modules.

mod dovecot;
mod hash;
mod passwd_file;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;

/// Where passwords are checked: smtpd_sasl_type and smtpd_sasl_path.
pub struct Verifier {
    cfg: Arc<Config>,
    backend: Backend,
}

enum Backend {
    Dovecot(dovecot::Dovecot),
    PasswdFile(Arc<passwd_file::PasswdFile>),
}

/// The answer for one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The user (as it is to be logged: sasl_username=) is who it says.
    Ok { username: String },
    /// Wrong user or password.
    Failed,
    /// The backend could not answer (socket down, file unreadable): 454 4.7.0 to the client.
    Unavailable(String),
}

/// What the backend may want to know of the connection besides the client's address
/// (Dovecot's `lip=` and `secured`), for [`Verifier::check_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The client's address.
    pub client: IpAddr,
    /// The server's own address on this connection, when known.
    pub local: Option<IpAddr>,
    /// Whether the connection is under TLS.
    pub secured: bool,
}

impl Verifier {
    /// None when smtpd_sasl_auth_enable is off.
    pub fn new(cfg: Arc<Config>) -> Result<Option<Verifier>, String> {
        if !cfg.smtpd_sasl_auth_enable() {
            return Ok(None);
        }
        let path = cfg.smtpd_sasl_path();
        if path.is_empty() {
            return Err("smtpd_sasl_path is empty".to_string());
        }
        let backend = match cfg.smtpd_sasl_type() {
            "dovecot" => Backend::Dovecot(dovecot::Dovecot::new(resolve(cfg.queue_directory(), path))),
            "passwd-file" => {
                Backend::PasswdFile(Arc::new(passwd_file::PasswdFile::new(resolve(cfg.config_directory(), path))))
            }
            other => return Err(format!("smtpd_sasl_type = {other}: not supported (dovecot or passwd-file)")),
        };
        Ok(Some(Verifier { cfg, backend }))
    }

    /// The mechanisms to announce (PLAIN and LOGIN).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        &["PLAIN", "LOGIN"]
    }

    /// Checks `username`/`password` (`authzid` from PLAIN, if any) for a client at `addr`.
    ///
    /// Tells Dovecot the connection is secured when smtpd_tls_auth_only is on (AUTH is then
    /// offered under TLS only); [`Verifier::check_with`] says it exactly.
    pub async fn check(&self, authzid: Option<&str>, username: &str, password: &str, addr: IpAddr) -> Check {
        let connection = Connection { client: addr, local: None, secured: self.cfg.smtpd_tls_auth_only() };
        self.check_with(authzid, username, password, connection).await
    }

    /// As [`Verifier::check`], with what is known of the connection.
    pub async fn check_with(&self, authzid: Option<&str>, username: &str, password: &str, conn: Connection) -> Check {
        let authzid = authzid.filter(|a| !a.is_empty());
        match &self.backend {
            Backend::Dovecot(dovecot) => {
                dovecot.check(authzid, username, password, conn.client, conn.local, conn.secured).await
            }
            Backend::PasswdFile(file) => file.check(authzid, username, password).await,
        }
    }

    /// The socket or file the passwords are checked against (for log lines and `tidemail config`).
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Dovecot(dovecot) => dovecot.path(),
            Backend::PasswdFile(file) => file.path(),
        }
    }

    /// How many password hashes this Verifier has computed (passwd-file; 0 for dovecot),
    /// counting the one an unknown user costs: that is what keeps user names from being
    /// probed by timing, and what the tests check.
    pub fn hashes_computed(&self) -> u64 {
        match &self.backend {
            Backend::Dovecot(_) => 0,
            Backend::PasswdFile(file) => file.hashes_computed(),
        }
    }
}

/// `path` as is when absolute, else under `base` (as Postfix resolves `private/auth`).
fn resolve(base: &str, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { Path::new(base).join(path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Arc<Config> {
        Arc::new(Config::from_toml_str(text, Path::new("/etc/tidemail/main.toml")).unwrap())
    }

    #[test]
    fn off_by_default() {
        assert!(Verifier::new(config("")).unwrap().is_none());
    }

    #[test]
    fn paths() {
        let v = Verifier::new(config("smtpd_sasl_auth_enable = true\nqueue_directory = \"/var/spool/x\"\n"))
            .unwrap()
            .unwrap();
        assert_eq!(v.path(), Path::new("/var/spool/x/private/auth"));
        assert_eq!(v.hashes_computed(), 0);
        let v =
            Verifier::new(config("smtpd_sasl_auth_enable = true\nsmtpd_sasl_path = \"/run/dovecot/auth-client\"\n"))
                .unwrap()
                .unwrap();
        assert_eq!(v.path(), Path::new("/run/dovecot/auth-client"));
        let v = Verifier::new(config(
            "smtpd_sasl_auth_enable = true\nsmtpd_sasl_type = \"passwd-file\"\nsmtpd_sasl_path = \"smtpd.passwd\"\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(v.path(), Path::new("/etc/tidemail/smtpd.passwd"));
        assert_eq!(v.mechanisms(), ["PLAIN", "LOGIN"]);
    }

    /// The session runs on a multi-threaded runtime: the Verifier is shared, its futures move.
    #[test]
    fn verifier_and_its_futures_are_send() {
        fn shared<T: Send + Sync>(_: &T) {}
        fn sent<T: Send>(_: T) {}
        for settings in ["", "smtpd_sasl_type = \"passwd-file\"\nsmtpd_sasl_path = \"/nonexistent\""] {
            let v = Verifier::new(config(&format!("smtpd_sasl_auth_enable = true\n{settings}"))).unwrap().unwrap();
            shared(&v);
            sent(v.check(None, "a", "b", "127.0.0.1".parse().unwrap()));
        }
    }

    #[tokio::test]
    async fn passwd_file_end_to_end() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        std::fs::write(&file, format!("alice:{}\n", bcrypt::hash("wonderland", 4).unwrap())).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "smtpd_sasl_auth_enable = true\nsmtpd_sasl_type = \"passwd-file\"\nsmtpd_sasl_path = \"{}\"\n",
            file.display()
        );
        let v = Verifier::new(config(&text)).unwrap().unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(v.check(None, "alice", "wonderland", ip).await, Check::Ok { username: "alice".into() });
        assert_eq!(v.check(Some(""), "alice", "wonderland", ip).await, Check::Ok { username: "alice".into() });
        assert_eq!(v.check(Some("alice"), "alice", "wonderland", ip).await, Check::Ok { username: "alice".into() });
        assert_eq!(v.check(Some("bob"), "alice", "wonderland", ip).await, Check::Failed);
        assert_eq!(v.check(None, "alice", "Wonderland", ip).await, Check::Failed);
        assert_eq!(v.check(None, "Alice", "wonderland", ip).await, Check::Failed);
    }
}
