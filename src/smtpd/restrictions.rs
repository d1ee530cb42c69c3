//! Restriction lists (being written). The interface the session uses is fixed here.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;

/// What the server knows about the client.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: IpAddr,
    /// The verified host name, or "unknown".
    pub name: String,
    pub helo: Option<String>,
    pub sasl_username: Option<String>,
    pub tls: bool,
    /// The client sent commands before it was allowed to (before the greeting, or pipelined
    /// without PIPELINING): what reject_unauth_pipelining looks for.
    pub improper_pipelining: bool,
}

/// The SMTP command being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Etrn,
}

/// One check: the stage, the client, and what the command carries.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub stage: Stage,
    pub client: &'a Client,
    /// MAIL FROM (empty for the null sender), from MAIL on.
    pub sender: Option<&'a str>,
    /// RCPT TO, at the Rcpt stage.
    pub recipient: Option<&'a str>,
    /// The ETRN argument.
    pub etrn: Option<&'a str>,
}

/// The outcome of the restrictions for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (the lists permitted, or said nothing).
    Accept,
    /// Answer with this reply (4xx or 5xx) and log `NOQUEUE: reject: ...`.
    Reject { code: u16, dsn: String, text: String },
    /// Accept, but throw the message away.
    Discard { text: String },
    /// Accept into the hold queue.
    Hold { text: String },
}

/// The configured lists, ready to evaluate.
pub struct Restrictions {
    cfg: Arc<Config>,
}

impl Restrictions {
    /// Reads and checks the lists; a bad restriction name is an error naming the parameter.
    pub fn new(cfg: Arc<Config>) -> Result<Restrictions, String> {
        Ok(Restrictions { cfg })
    }

    /// The verdict for `query`. With smtpd_delay_reject the session asks the client, HELO and
    /// sender lists again at RCPT; this function evaluates what belongs to `query.stage`.
    pub async fn check(&self, query: &Query<'_>) -> Verdict {
        let _ = &self.cfg;
        let _ = query;
        Verdict::Accept
    }
}
