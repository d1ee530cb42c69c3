//! Checking AUTH credentials (being written). The interface the session uses is fixed here.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;

/// Where passwords are checked: smtpd_sasl_type and smtpd_sasl_path.
pub struct Verifier {
    cfg: Arc<Config>,
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

impl Verifier {
    /// None when smtpd_sasl_auth_enable is off.
    pub fn new(cfg: Arc<Config>) -> Result<Option<Verifier>, String> {
        if !cfg.smtpd_sasl_auth_enable() {
            return Ok(None);
        }
        Ok(Some(Verifier { cfg }))
    }

    /// The mechanisms to announce (PLAIN and LOGIN).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        &["PLAIN", "LOGIN"]
    }

    /// Checks `username`/`password` (`authzid` from PLAIN, if any) for a client at `addr`.
    pub async fn check(&self, authzid: Option<&str>, username: &str, password: &str, addr: IpAddr) -> Check {
        let _ = (&self.cfg, authzid, username, password, addr);
        Check::Unavailable("not implemented yet".into())
    }
}
