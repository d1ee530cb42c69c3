//! The `smtp` and `relay` transports as the queue manager drives them: where a recipient's
//! mail goes (its destination), opening a session there, and sending one job (one message to
//! some of its recipients) over it, turned into one [`Attempt`] per recipient.
//!
//! The destination is, in order: the transport's nexthop (`smtp:[host]:port` from
//! transport_maps or the transport name), `relayhost`, or the recipient's domain (its MX hosts,
//! or with disable_dns_lookups the hosts file).
//!
//! What is the link's or the server's fault and not the message's — no route to the host,
//! connection refused or cut, TLS or AUTH failures, a name that does not resolve, a server that
//! refuses to talk to us — is always a deferral, whatever code came with it: it never bounces
//! mail, and it does not count toward the message's lifetime (`Attempt::link`).

use std::time::{Duration, Instant};

pub(crate) use super::soft;
use crate::config::Config;
use crate::deliver::smtp::client::Ticket;
use crate::deliver::smtp::{
    ClientSettings, NextHop, Outcome, Outgoing, RcptResult, Relay, Session, SessionError, Stage, credentials_for,
    relayhost,
};

/// The transports the SMTP client serves (Postfix's master.cf runs smtp(8) for both).
pub const TRANSPORTS: [&str; 2] = ["smtp", "relay"];

/// Where a group of recipients goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Names the destination in the run's memory (sessions, dead destinations) and in logs.
    pub key: String,
    /// The next hop as written (relayhost, transport nexthop, or `[domain]`/domain): also the
    /// first key for smtp_sasl_password_maps.
    pub written: String,
    pub hop: Result<NextHop, String>,
    /// The next hop is configured (relayhost, transport nexthop) rather than the recipient's
    /// domain: a name that does not resolve is then our mistake, never the message's.
    pub configured: bool,
}

/// The destination for `address`; `nexthop` is a transport nexthop when one was given.
pub fn destination(cfg: &Config, nexthop: Option<&str>, address: &str) -> Destination {
    let relayhost = cfg.relayhost().trim();
    let configured = nexthop.map(str::trim).filter(|h| !h.is_empty()).or((!relayhost.is_empty()).then_some(relayhost));
    if let Some(written) = configured {
        return Destination {
            key: written.to_string(),
            written: written.to_string(),
            hop: relayhost::parse(written).map_err(|e| format!("bad next hop {written:?}: {e}")),
            configured: true,
        };
    }
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    Destination {
        key: domain.clone(),
        written: domain.clone(),
        hop: relayhost::parse(&domain).map_err(|e| format!("bad destination {domain:?}: {e}")),
        configured: false,
    }
}

/// One recipient's outcome, ready to be recorded and logged.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The recipient's index in the envelope.
    pub index: usize,
    pub outcome: Outcome,
    pub dsn: String,
    /// The parenthesised text of the log line (also the reason kept in the queue file).
    pub text: String,
    /// `host[ip]:port`, or `none` when no server was reached.
    pub relay: String,
    /// The failure was the link's or the server's, not the message's (see the module doc).
    pub link: bool,
    /// Connection set-up and transmission times (the c and d of `delays=a/b/c/d`).
    pub setup: Duration,
    pub transmission: Duration,
}

/// Why no session could be had: what every recipient waiting for it is told.
#[derive(Debug, Clone)]
pub struct Failure {
    pub dsn: String,
    pub text: String,
    pub relay: String,
    /// The recipient's domain does not exist or takes no mail (NXDOMAIN, null MX): the
    /// address is wrong, so its recipients bounce. Never set for a configured next hop.
    pub permanent: bool,
}

impl Failure {
    fn temporary(dsn: String, text: String) -> Failure {
        Failure { dsn: soft(&dsn), text, relay: "none".into(), permanent: false }
    }

    /// The same result for each of `indices`: a deferral, or a bounce when permanent.
    pub fn defer_all(&self, indices: &[usize]) -> Vec<Attempt> {
        indices
            .iter()
            .map(|&index| Attempt {
                index,
                outcome: if self.permanent { Outcome::Bounced } else { Outcome::Deferred },
                dsn: self.dsn.clone(),
                text: self.text.clone(),
                relay: self.relay.clone(),
                link: !self.permanent,
                setup: Duration::ZERO,
                transmission: Duration::ZERO,
            })
            .collect()
    }
}

/// Opens a session to `dest`: resolves it (MX hosts in preference order, or the host),
/// connects to the first address that answers, greets (and, as configured, STARTTLS and
/// AUTH with the credentials smtp_sasl_password_maps has for it).
pub async fn connect(cfg: &Config, dest: &Destination) -> Result<Session, Failure> {
    let hop = dest.hop.as_ref().map_err(|text| Failure::temporary("4.3.5".into(), text.clone()))?;
    let relays = match relayhost::resolve_relays(hop, cfg.disable_dns_lookups()).await {
        Ok(relays) => relays,
        Err(e) => {
            // Only DNS can say a domain does not exist: the hosts file alone
            // (disable_dns_lookups) says only that it does not list it.
            let permanent = !e.is_temporary() && !dest.configured && !cfg.disable_dns_lookups();
            let dsn = if permanent { e.status().to_string() } else { soft(e.status()) };
            return Err(Failure { dsn, text: e.to_string(), relay: "none".into(), permanent });
        }
    };
    let credentials = credentials_for(cfg, &dest.written, &hop.host.to_string())
        .map_err(|e| Failure::temporary("4.7.0".into(), format!("SASL credentials: {e}")))?;
    let settings = ClientSettings::from_config(cfg).with_credentials(credentials);
    let mut last = None;
    for (host, addr) in &relays {
        match Session::connect(host, &[*addr], &settings).await {
            Ok(session) => return Ok(session),
            Err(e) => last = Some((e, Relay::new(host, *addr))),
        }
    }
    let Some((e, relay)) = last else {
        return Err(Failure::temporary("4.4.1".into(), format!("no address for {}", dest.written)));
    };
    let mut failure = Failure::temporary(e.status(), postfix_text(&e.to_string()));
    // A server was reached (greeting, TLS, AUTH failed): the log names it, as Postfix does.
    if !matches!(e, SessionError::NoAddress | SessionError::Connect { .. } | SessionError::ConnectTimeout { .. }) {
        failure.relay = relay.to_string();
    }
    Err(failure)
}

/// A session error ended the job: the recipients' deferral, and whether the server may have
/// taken the message (the link was lost waiting for the reply to the final dot).
pub struct Broken {
    pub failure: Failure,
    pub possible_duplicate: bool,
}

/// A message written to a session, its replies perhaps still to be read.
pub struct Sent {
    ticket: Ticket,
    relay: Relay,
    setup: Duration,
    started: Instant,
}

/// Sends one message to `recipients` (index, address) over `session` and reads the replies.
pub async fn send(
    session: &mut Session,
    sender: &str,
    recipients: &[(usize, String)],
    content: &[u8],
    setup: Duration,
) -> Result<Vec<Attempt>, Broken> {
    let sent = submit(session, sender, recipients, content, setup).await?;
    collect(session, sent, recipients).await
}

/// Writes one message to `recipients` (index, address); [`collect`] reads its replies (at once
/// unless the session pipelines messages, [`Session::pipelines_messages`]).
pub async fn submit(
    session: &mut Session,
    sender: &str,
    recipients: &[(usize, String)],
    content: &[u8],
    setup: Duration,
) -> Result<Sent, Broken> {
    let relay: Relay = session.relay().clone();
    let message = Outgoing {
        sender: sender.to_string(),
        recipients: recipients.iter().map(|(_, a)| a.clone()).collect(),
        size: content.len() as u64,
        body_8bit: !content.is_ascii(),
        content,
    };
    let started = Instant::now();
    match session.submit(message).await {
        Ok(ticket) => Ok(Sent { ticket, relay, setup, started }),
        Err(e) => Err(broken(&e, &relay)),
    }
}

/// The results of a submitted message, one [`Attempt`] per recipient. Messages submitted
/// over one session are collected in the order they were submitted.
pub async fn collect(
    session: &mut Session,
    sent: Sent,
    recipients: &[(usize, String)],
) -> Result<Vec<Attempt>, Broken> {
    let Sent { ticket, relay, setup, started } = sent;
    let replies = session.collect(ticket).await;
    let transmission = started.elapsed();
    match replies {
        Ok(replies) => Ok(attempts(recipients, replies, &relay, setup, transmission)),
        Err(e) => Err(broken(&e, &relay)),
    }
}

fn attempts(
    recipients: &[(usize, String)],
    replies: Vec<RcptResult>,
    relay: &Relay,
    setup: Duration,
    transmission: Duration,
) -> Vec<Attempt> {
    let mut results: Vec<Attempt> = recipients
        .iter()
        .map(|&(index, _)| Attempt {
            index,
            outcome: Outcome::Deferred,
            dsn: "4.3.0".into(),
            text: "no result from the SMTP client".into(),
            relay: relay.to_string(),
            link: true,
            setup,
            transmission,
        })
        .collect();
    for reply in replies {
        let Some(result) = results.get_mut(reply.index) else { continue };
        result.outcome = reply.outcome();
        result.text = reply.diagnostic(relay);
        result.link = false;
        result.dsn = match result.outcome {
            // A deferral never carries a 5.x.x status: that would read as a verdict.
            Outcome::Deferred => soft(&reply.status),
            _ => reply.status.clone(),
        };
    }
    results
}

fn broken(e: &SessionError, relay: &Relay) -> Broken {
    Broken {
        possible_duplicate: at_end_of_data(e),
        failure: Failure {
            dsn: soft(&e.status()),
            text: postfix_text(&e.to_string()),
            relay: relay.to_string(),
            permanent: false,
        },
    }
}

/// The error struck after the final dot was sent and before its reply was read.
fn at_end_of_data(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Timeout { stage: Stage::EndOfData, .. }
            | SessionError::Lost { stage: Stage::EndOfData, .. }
            | SessionError::Io { stage: Stage::EndOfData, .. }
    )
}

/// Error text as Postfix words it: `Connection refused`, not `Connection refused (os error 111)`.
fn postfix_text(text: &str) -> String {
    if let Some(start) = text.rfind(" (os error ")
        && text.ends_with(')')
    {
        return text[..start].to_string();
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!("myhostname = \"mail.example.com\"\n{extra}");
        Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap()
    }

    #[test]
    fn destinations() {
        let with = cfg("relayhost = \"[10.0.0.1]:587\"\n");
        let d = destination(&with, None, "a@b.example");
        assert_eq!((d.key.as_str(), d.configured), ("[10.0.0.1]:587", true));
        assert_eq!(d.hop.unwrap().port, 587);
        // A transport nexthop wins over relayhost.
        let d = destination(&with, Some("[192.0.2.7]:2525"), "a@b.example");
        assert_eq!(d.hop.unwrap().port, 2525);
        let without = cfg("");
        let d = destination(&without, None, "a@B.Example.");
        assert_eq!((d.key.as_str(), d.configured), ("b.example", false));
        let hop = d.hop.unwrap();
        assert_eq!((hop.host.to_string(), hop.port, hop.mx), ("b.example".to_string(), 25, true));
        let d = destination(&without, None, "a@[192.0.2.1]");
        assert_eq!(d.hop.unwrap().host.to_string(), "192.0.2.1");
    }

    #[test]
    fn wording() {
        assert_eq!(soft("5.4.4"), "4.4.4");
        assert_eq!(soft("4.4.1"), "4.4.1");
        assert_eq!(
            postfix_text("connect to h[127.0.0.1]:25: Connection refused (os error 111)"),
            "connect to h[127.0.0.1]:25: Connection refused"
        );
    }

    #[test]
    fn a_closed_port_is_a_link_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = cfg(&format!("relayhost = \"[127.0.0.1]:{port}\"\nsmtp_connect_timeout = \"5s\"\n"));
        let dest = destination(&cfg, None, "a@y.example");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let failure = runtime.block_on(connect(&cfg, &dest)).err().expect("nothing listens there");
        assert_eq!(failure.dsn, "4.4.1");
        assert!(failure.text.contains("Connection refused"), "{}", failure.text);
        let attempts = failure.defer_all(&[0, 3]);
        assert!(attempts.iter().all(|a| a.link && a.outcome == Outcome::Deferred));
        assert_eq!(attempts[1].index, 3);
    }
}
