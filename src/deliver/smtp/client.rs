//! The SMTP client session: greeting, EHLO (HELO when EHLO is refused), then any number of
//! messages, each as MAIL FROM, RCPT TO for every recipient, DATA and the content; QUIT at the end.
//!
//! When the server offers PIPELINING and CHUNKING (RFC 3030), a message goes as MAIL FROM, the
//! RCPT TOs and `BDAT <n> LAST` with the content in one write, and its replies are read after:
//! one round trip, none for a 354. [`Session::submit`] writes a message and
//! [`Session::collect`] reads its replies, so that further messages can be written before the
//! replies to earlier ones are read; each such message starts with RSET, which makes it
//! independent of how the one before it ended.
//!
//! Each command's wait is bounded by its `smtp_*_timeout`. A per-recipient result comes back
//! for every message; anything that breaks the conversation (connection lost, timeout, a reply
//! that is not SMTP) is a [`SessionError`], which is temporary for every recipient of the
//! message in flight: the message was not accepted unless the reply to the final "." said so.
//!
//! The session runs over any byte stream ([`Transport`]). STARTTLS (per [`TlsPolicy`]) replaces
//! the stream after EHLO; the reply reader must then hold no plaintext (CVE-2011-0411), and
//! EHLO is sent again. AUTH (PLAIN, else LOGIN) follows when credentials were given.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::reply::{ReadError, Reply, ReplyReader, is_lost};
use super::sasl::{self, Credentials, Mechanism, Refusal, SaslPolicy};
use super::tls::{self, TlsInfo, TlsLevel, TlsPolicy};
use crate::config::Config;

/// A byte stream an SMTP session can run over: TCP now, TLS over TCP later, a pipe in tests.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The client's name, waits, TLS policy and credentials.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The name sent in EHLO/HELO (smtp_helo_name).
    pub helo_name: String,
    pub connect_timeout: Duration,
    /// For the greeting and the EHLO/HELO reply.
    pub helo_timeout: Duration,
    pub mail_timeout: Duration,
    pub rcpt_timeout: Duration,
    /// For the reply to DATA.
    pub data_init_timeout: Duration,
    /// For each write of message content.
    pub data_xfer_timeout: Duration,
    /// For the reply to the final ".".
    pub data_done_timeout: Duration,
    pub rset_timeout: Duration,
    pub quit_timeout: Duration,
    /// For the reply to STARTTLS and for the TLS handshake.
    pub starttls_timeout: Duration,
    /// When to use STARTTLS and how to check the server (smtp_tls_*).
    pub tls: TlsPolicy,
    /// Which mechanism may carry the password (smtp_sasl_*).
    pub sasl: SaslPolicy,
    /// AUTH with these when the server offers it ([`sasl::credentials_for`]); None: no AUTH.
    pub credentials: Option<Credentials>,
}

impl ClientSettings {
    /// Postfix's default waits, with the given EHLO name.
    pub fn new(helo_name: &str) -> ClientSettings {
        ClientSettings {
            helo_name: helo_name.to_string(),
            connect_timeout: Duration::from_secs(30),
            helo_timeout: Duration::from_secs(300),
            mail_timeout: Duration::from_secs(300),
            rcpt_timeout: Duration::from_secs(300),
            data_init_timeout: Duration::from_secs(120),
            data_xfer_timeout: Duration::from_secs(180),
            data_done_timeout: Duration::from_secs(600),
            rset_timeout: Duration::from_secs(20),
            quit_timeout: Duration::from_secs(300),
            starttls_timeout: Duration::from_secs(300),
            tls: TlsPolicy::default(),
            sasl: SaslPolicy::default(),
            credentials: None,
        }
    }

    /// The same wait for every step (tests, tools).
    pub fn with_all_timeouts(mut self, wait: Duration) -> ClientSettings {
        self.connect_timeout = wait;
        self.helo_timeout = wait;
        self.mail_timeout = wait;
        self.rcpt_timeout = wait;
        self.data_init_timeout = wait;
        self.data_xfer_timeout = wait;
        self.data_done_timeout = wait;
        self.rset_timeout = wait;
        self.quit_timeout = wait;
        self.starttls_timeout = wait;
        self
    }

    /// The settings from the smtp_* parameters.
    pub fn from_config(config: &Config) -> ClientSettings {
        ClientSettings {
            helo_name: config.smtp_helo_name().to_string(),
            connect_timeout: config.smtp_connect_timeout(),
            helo_timeout: config.smtp_helo_timeout(),
            mail_timeout: config.smtp_mail_timeout(),
            rcpt_timeout: config.smtp_rcpt_timeout(),
            data_init_timeout: config.smtp_data_init_timeout(),
            data_xfer_timeout: config.smtp_data_xfer_timeout(),
            data_done_timeout: config.smtp_data_done_timeout(),
            rset_timeout: config.smtp_rset_timeout(),
            quit_timeout: config.smtp_quit_timeout(),
            starttls_timeout: config.smtp_starttls_timeout(),
            tls: TlsPolicy::from_config(config),
            sasl: SaslPolicy::from_config(config),
            credentials: None,
        }
    }

    /// The same settings with credentials for AUTH (the next hop's, from
    /// [`sasl::credentials_for`]).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> ClientSettings {
        self.credentials = credentials;
        self
    }
}

/// The server a session talks to, shown as Postfix does: `relay=host[ip]:port` in log lines,
/// `host[ip]` ([`Relay::peer`]) in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The name the address was found under (the address itself for a literal).
    pub host: String,
    pub addr: SocketAddr,
}

impl Relay {
    pub fn new(host: &str, addr: SocketAddr) -> Relay {
        Relay { host: host.to_string(), addr }
    }

    /// `host[ip]`.
    pub fn peer(&self) -> String {
        format!("{}[{}]", self.host, self.addr.ip())
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }
}

/// What the server offered in its EHLO reply (all false after HELO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO was accepted.
    pub esmtp: bool,
    pub pipelining: bool,
    /// SIZE was offered; the limit, 0 when the server named none.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    /// CHUNKING (BDAT, RFC 3030).
    pub chunking: bool,
    pub enhanced_status_codes: bool,
    pub starttls: bool,
    pub auth: bool,
    /// The AUTH mechanisms offered, upper case.
    pub auth_mechanisms: Vec<String>,
}

/// A step of the conversation, for results and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// Sending the message content.
    Content,
    /// The final "." and its reply.
    EndOfData,
    Rset,
    Quit,
    /// Decided here, without asking the server (SIZE, bad addresses).
    Local,
}

impl Stage {
    /// How Postfix names the command a reply answered: "(in reply to RCPT TO command)".
    pub fn command(self) -> &'static str {
        match self {
            Stage::Connect | Stage::Greeting => "initial greeting",
            Stage::Helo => "EHLO/HELO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Content | Stage::EndOfData => "end of DATA",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
            Stage::Local => "no",
        }
    }

    /// What was under way, for "lost connection with host[ip] while ...".
    pub fn doing(self) -> &'static str {
        match self {
            Stage::Connect => "connecting",
            Stage::Greeting => "receiving the initial server greeting",
            Stage::Helo => "performing the EHLO handshake",
            Stage::StartTls => "sending STARTTLS",
            Stage::Auth => "performing SASL authentication",
            Stage::Mail => "sending MAIL FROM",
            Stage::Rcpt => "sending RCPT TO",
            Stage::Data => "sending DATA command",
            Stage::Content => "sending message body",
            Stage::EndOfData => "sending end of data -- message may be sent more than once",
            Stage::Rset => "sending RSET",
            Stage::Quit => "sending QUIT",
            Stage::Local => "preparing the message",
        }
    }
}

/// One message to send.
pub struct Outgoing<R> {
    /// The envelope sender, "" for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    /// The content size in bytes, for SIZE=.
    pub size: u64,
    /// The content has 8-bit bytes (BODY=8BITMIME when the server offers it).
    pub body_8bit: bool,
    /// The content with LF line ends; CRLF and dot-stuffing are added on the way out.
    pub content: R,
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// The recipient's position in [`Outgoing::recipients`].
    pub index: usize,
    pub code: u16,
    /// Enhanced status, `2.0.0` style.
    pub status: String,
    /// The reply as the server put it (`250 2.0.0 Ok: queued as ...`), or the local reason.
    pub text: String,
    /// The command whose reply decided; `Local` when the server was not asked.
    pub stage: Stage,
}

impl RcptResult {
    fn from_reply(index: usize, reply: &Reply, stage: Stage) -> RcptResult {
        RcptResult { index, code: reply.code, status: reply.status(), text: reply.to_string(), stage }
    }

    pub fn outcome(&self) -> Outcome {
        match self.code / 100 {
            2 => Outcome::Delivered,
            5 => Outcome::Bounced,
            _ => Outcome::Deferred,
        }
    }

    /// The parenthesised text of the log line: the reply for a delivery, else
    /// `host mx[ip] said: 550 5.1.1 ... (in reply to RCPT TO command)` or the local reason.
    pub fn diagnostic(&self, relay: &Relay) -> String {
        if self.outcome() == Outcome::Delivered || self.stage == Stage::Local {
            self.text.clone()
        } else {
            format!("host {} said: {} (in reply to {} command)", relay.peer(), self.text, self.stage.command())
        }
    }
}

/// A failure that ends the session. Every recipient of the message in flight, if any, stays
/// in the queue: none was delivered.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no address to connect to")]
    NoAddress,
    #[error("connect to {target}: {error}")]
    Connect { target: String, error: io::Error },
    #[error("connect to {target}: Connection timed out")]
    ConnectTimeout { target: String },
    #[error("conversation with {peer} timed out while {}", stage.doing())]
    Timeout { peer: String, stage: Stage },
    #[error("lost connection with {peer} while {}", stage.doing())]
    Lost { peer: String, stage: Stage },
    #[error("error talking to {peer} while {}: {error}", stage.doing())]
    Io { peer: String, stage: Stage, error: io::Error },
    #[error("malformed reply from {peer} while {}: {detail}", stage.doing())]
    Protocol { peer: String, stage: Stage, detail: String },
    /// The greeting or the EHLO/HELO/RSET reply said no.
    #[error("host {peer} refused to talk to me: {reply}")]
    Refused { peer: String, stage: Stage, reply: Reply },
    /// A 421 mid-session: the server is closing the connection.
    #[error("host {peer} said: {reply} (in reply to {} command)", stage.command())]
    Closing { peer: String, stage: Stage, reply: Reply },
    /// The message content could not be read (the queue file); the session was abandoned
    /// mid-DATA so that no truncated copy is accepted.
    #[error("error reading message content: {error}")]
    Content { error: io::Error },
    #[error("the SMTP session to {peer} can no longer be used")]
    Closed { peer: String },
    /// TLS is mandatory and the server's EHLO did not offer STARTTLS.
    #[error("TLS is required, but was not offered by host {peer}")]
    TlsNotOffered { peer: String },
    /// TLS is mandatory and the server answered STARTTLS with an error.
    #[error("TLS is required, but host {peer} refused to start TLS: {reply}")]
    TlsRefused { peer: String, reply: Reply },
    /// The handshake failed or the certificate was not trusted; or a local TLS problem.
    #[error("TLS handshake with {peer} failed: {detail}")]
    Tls { peer: String, detail: String },
    /// The server refused the credentials (or failed the exchange).
    #[error("SASL authentication failed; server {peer} said: {reply}")]
    SaslRejected { peer: String, reply: Reply },
    /// The credentials may not be sent to this server (no TLS, no usable mechanism).
    #[error("SASL authentication failed: {detail}")]
    SaslNotPossible { peer: String, detail: String },
}

impl SessionError {
    /// Whether the recipients are to be tried again (deferred) rather than bounced. Only a
    /// server's 5xx to EHLO/HELO is permanent; a 5xx greeting is skipped like a 4xx one
    /// (Postfix's smtp_skip_5xx_greeting default).
    pub fn is_temporary(&self) -> bool {
        match self {
            SessionError::Refused { stage: Stage::Helo, reply, .. } => reply.class() != 5,
            _ => true,
        }
    }

    /// The enhanced status for the recipients.
    pub fn status(&self) -> String {
        match self {
            SessionError::NoAddress | SessionError::Connect { .. } | SessionError::ConnectTimeout { .. } => {
                "4.4.1".to_string()
            }
            SessionError::Timeout { .. } | SessionError::Lost { .. } | SessionError::Io { .. } => "4.4.2".to_string(),
            SessionError::Protocol { .. } => "4.5.0".to_string(),
            SessionError::Refused { reply, .. } if self.is_temporary() && reply.class() == 5 => {
                let status = reply.status();
                format!("4{}", &status[1..])
            }
            SessionError::Refused { reply, .. } | SessionError::Closing { reply, .. } => reply.status(),
            SessionError::Content { .. } => "4.3.0".to_string(),
            SessionError::Closed { .. } => "4.4.2".to_string(),
            SessionError::TlsNotOffered { .. } | SessionError::TlsRefused { .. } => "4.7.4".to_string(),
            SessionError::Tls { .. } => "4.7.5".to_string(),
            // A refused password is a local configuration problem: never a bounce.
            SessionError::SaslRejected { reply, .. } => match reply.sent_status {
                Some(_) => format!("4{}", &reply.status()[1..]),
                None => "4.7.8".to_string(),
            },
            SessionError::SaslNotPossible { .. } => "4.7.0".to_string(),
        }
    }
}

/// An open SMTP session, ready for a message.
pub struct Session {
    stream: Box<dyn Transport>,
    reader: ReplyReader,
    relay: Relay,
    settings: ClientSettings,
    capabilities: Capabilities,
    /// The first EHLO offered STARTTLS (for the reason AUTH was not possible).
    starttls_offered: bool,
    /// Set once STARTTLS succeeded.
    tls: Option<TlsInfo>,
    /// The user name AUTH succeeded with.
    authenticated: Option<String>,
    /// A transaction was started (MAIL accepted) and not completed: RSET before the next.
    /// Reflects the last transaction whose replies were read.
    needs_rset: bool,
    /// An error ended the conversation.
    broken: bool,
    /// Messages written whose replies are still to be read ([`Session::collect`]).
    unanswered: usize,
    /// Sequence numbers of the next pending ticket and of the next one to collect.
    next_ticket: u64,
    next_collect: u64,
    /// Reading a reply failed: the replies to the messages still unanswered will not come.
    replies_lost: bool,
}

/// A message handed to [`Session::submit`]: its results, or the replies still to be read.
/// Tickets are collected in the order they were issued.
#[must_use = "a ticket's replies must be collected"]
pub struct Ticket {
    state: TicketState,
}

enum TicketState {
    Done(Vec<RcptResult>),
    Pending { seq: u64, flight: Box<InFlight> },
}

/// What was written for a message under BDAT, to match the replies against.
struct InFlight {
    /// RSET went first.
    rset: bool,
    /// The recipients sent in RCPT TO, in order.
    rcpts: Vec<usize>,
    /// Results decided without the server (bad addresses).
    results: Vec<Option<RcptResult>>,
    /// BDAT commands sent; the last one carried LAST.
    chunks: usize,
}

/// Message content per BDAT command (the whole message when smaller).
const BDAT_CHUNK: usize = 1 << 20;
/// The size of each write of content: each gets smtp_data_xfer_timeout, as with DATA.
const WRITE_PIECE: usize = 64 * 1024;

impl Session {
    /// Connects to the first address that answers with a greeting and completes EHLO/HELO,
    /// STARTTLS and AUTH as the settings ask. Each address gets `connect_timeout` to connect;
    /// an address that fails (refused, times out, greets with an error, fails TLS or AUTH) is
    /// skipped. `host` is the name for [`Relay`], and the name a verified certificate must
    /// carry. With TLS level `may`, a failed handshake is followed by one more connection to
    /// the same address without TLS, as Postfix's opportunistic TLS does.
    pub async fn connect(host: &str, addrs: &[SocketAddr], settings: &ClientSettings) -> Result<Session, SessionError> {
        let mut last = SessionError::NoAddress;
        for addr in addrs {
            let relay = Relay::new(host, *addr);
            let mut result = Session::connect_one(&relay, settings).await;
            if let Err(SessionError::Tls { .. }) = &result
                && settings.tls.level == TlsLevel::May
            {
                let plain = ClientSettings { tls: TlsPolicy::default(), ..settings.clone() };
                result = Session::connect_one(&relay, &plain).await;
            }
            match result {
                Ok(session) => return Ok(session),
                // A 5xx to EHLO/HELO is an answer about our mail, not about this one server.
                Err(error) if !error.is_temporary() => return Err(error),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn connect_one(relay: &Relay, settings: &ClientSettings) -> Result<Session, SessionError> {
        let stream = match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(relay.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SessionError::Connect { target: relay.to_string(), error }),
            Err(_) => return Err(SessionError::ConnectTimeout { target: relay.to_string() }),
        };
        let _ = stream.set_nodelay(true);
        Session::start(Box::new(stream), relay.clone(), settings).await
    }

    /// Runs the greeting, EHLO/HELO, STARTTLS and AUTH (as the settings ask) over an already
    /// connected stream.
    pub async fn start(
        stream: Box<dyn Transport>,
        relay: Relay,
        settings: &ClientSettings,
    ) -> Result<Session, SessionError> {
        let mut session = Session {
            stream,
            reader: ReplyReader::default(),
            relay,
            settings: settings.clone(),
            capabilities: Capabilities::default(),
            starttls_offered: false,
            tls: None,
            authenticated: None,
            needs_rset: false,
            broken: false,
            unanswered: 0,
            next_ticket: 0,
            next_collect: 0,
            replies_lost: false,
        };
        let greeting = session.reply(Stage::Greeting, settings.helo_timeout).await?;
        if !greeting.is_positive() {
            return Err(session.refused(Stage::Greeting, greeting).await);
        }
        session.hello().await?;
        session.starttls_offered = session.capabilities.starttls;
        session.starttls().await?;
        session.authenticate().await?;
        Ok(session)
    }

    /// The server this session talks to.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// What the server offered.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether another message can go over this session.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Whether [`Session::submit`] leaves the replies for later (PIPELINING and CHUNKING), so
    /// that more messages may be written before earlier ones are collected. Otherwise each
    /// submit reads its replies itself.
    pub fn pipelines_messages(&self) -> bool {
        !self.broken && self.capabilities.pipelining && self.capabilities.chunking
    }

    /// Messages submitted and not yet collected.
    pub fn unanswered(&self) -> usize {
        self.unanswered
    }

    /// What STARTTLS negotiated; None for a session in plaintext.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The user name AUTH succeeded with; None when the session did not authenticate.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// STARTTLS when the policy asks for it, then EHLO again over TLS.
    async fn starttls(&mut self) -> Result<(), SessionError> {
        let level = self.settings.tls.level;
        if level == TlsLevel::None {
            return Ok(());
        }
        let peer = self.relay.peer();
        if !self.capabilities.starttls {
            if level.is_mandatory() {
                return Err(self.abandon(SessionError::TlsNotOffered { peer }).await);
            }
            return Ok(());
        }
        let prepared = self.settings.tls.client_config().and_then(|config| {
            let name = tls::server_name(&self.relay, level.verifies())?;
            Ok((config, name))
        });
        let (config, name) = match prepared {
            Ok(prepared) => prepared,
            Err(detail) => return Err(self.abandon(SessionError::Tls { peer, detail }).await),
        };
        let timeout = self.settings.starttls_timeout;
        self.write(b"STARTTLS\r\n", Stage::StartTls, timeout).await?;
        let reply = self.reply(Stage::StartTls, timeout).await?;
        if reply.code != 220 {
            if level.is_mandatory() {
                return Err(self.abandon(SessionError::TlsRefused { peer, reply }).await);
            }
            // Opportunistic: the session goes on in plaintext, as Postfix's does.
            return Ok(());
        }
        if self.reader.has_pending() {
            // Bytes sent with the 220 would be taken as replies from inside TLS: injection.
            let detail = "plaintext data after the 220 reply to STARTTLS".to_string();
            return Err(self.fail(SessionError::Protocol { peer, stage: Stage::StartTls, detail }));
        }
        let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::empty()));
        let stream = match tokio::time::timeout(timeout, TlsConnector::from(config).connect(name, plain)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(self.fail(SessionError::Tls { peer, detail: error.to_string() })),
            Err(_) => return Err(self.fail(SessionError::Tls { peer, detail: "timed out".to_string() })),
        };
        self.tls = Some(TlsInfo::of(stream.get_ref().1, level.verifies()));
        self.stream = Box::new(stream);
        // What the server offered in plaintext counts for nothing now.
        self.hello().await
    }

    /// AUTH with the credentials, when there are any and the server offers AUTH.
    async fn authenticate(&mut self) -> Result<(), SessionError> {
        let Some(credentials) = self.settings.credentials.clone() else {
            return Ok(());
        };
        if !self.capabilities.auth {
            // Postfix too goes on without AUTH; the server may relay for us anyway.
            return Ok(());
        }
        let peer = self.relay.peer();
        let encrypted = self.tls.is_some();
        let mechanism = match self.settings.sasl.choose(&self.capabilities.auth_mechanisms, encrypted) {
            Ok(mechanism) => mechanism,
            Err(refusal) => {
                let detail = self.refusal_text(&refusal);
                return Err(self.abandon(SessionError::SaslNotPossible { peer, detail }).await);
            }
        };
        let timeout = self.settings.helo_timeout;
        let reply = match mechanism {
            Mechanism::Plain => {
                let command = format!("AUTH PLAIN {}\r\n", sasl::plain_response(&credentials));
                self.write(command.as_bytes(), Stage::Auth, timeout).await?;
                let reply = self.reply(Stage::Auth, timeout).await?;
                if reply.code == 334 {
                    // A server that wants the response on its own line.
                    let line = format!("{}\r\n", sasl::plain_response(&credentials));
                    self.write(line.as_bytes(), Stage::Auth, timeout).await?;
                    self.reply(Stage::Auth, timeout).await?
                } else {
                    reply
                }
            }
            Mechanism::Login => {
                self.write(b"AUTH LOGIN\r\n", Stage::Auth, timeout).await?;
                let mut reply = self.reply(Stage::Auth, timeout).await?;
                for answer in sasl::login_responses(&credentials) {
                    if reply.code != 334 {
                        break;
                    }
                    self.write(format!("{answer}\r\n").as_bytes(), Stage::Auth, timeout).await?;
                    reply = self.reply(Stage::Auth, timeout).await?;
                }
                reply
            }
        };
        if reply.code != 235 {
            return Err(self.abandon(SessionError::SaslRejected { peer, reply }).await);
        }
        self.authenticated = Some(credentials.username().to_string());
        Ok(())
    }

    fn refusal_text(&self, refusal: &Refusal) -> String {
        let peer = self.relay.peer();
        match refusal {
            Refusal::NoMechanism => format!(
                "cannot authenticate to server {peer}: no mechanism available (offered: {}; usable: PLAIN, LOGIN)",
                self.capabilities.auth_mechanisms.join(" ")
            ),
            Refusal::Plaintext if !self.starttls_offered => format!(
                "server {peer} offered no TLS and smtp_sasl_security_options forbids plaintext passwords (noplaintext)"
            ),
            Refusal::Plaintext => format!(
                "the session with server {peer} is not encrypted (TLS not used, or it failed) and \
                 smtp_sasl_security_options forbids plaintext passwords (noplaintext)"
            ),
            Refusal::Option { parameter, option } => {
                format!("cannot authenticate to server {peer}: {parameter} = {option} excludes PLAIN and LOGIN")
            }
        }
    }

    async fn hello(&mut self) -> Result<(), SessionError> {
        let timeout = self.settings.helo_timeout;
        let ehlo = format!("EHLO {}\r\n", self.settings.helo_name);
        self.write(ehlo.as_bytes(), Stage::Helo, timeout).await?;
        let (reply, raw) = self.reply_raw(Stage::Helo, timeout).await?;
        if reply.is_positive() {
            self.capabilities = parse_ehlo(&raw, &reply);
            return Ok(());
        }
        if reply.code == 421 {
            return Err(self.refused(Stage::Helo, reply).await);
        }
        // EHLO not understood (or refused): plain SMTP.
        let helo = format!("HELO {}\r\n", self.settings.helo_name);
        self.write(helo.as_bytes(), Stage::Helo, timeout).await?;
        let reply = self.reply(Stage::Helo, timeout).await?;
        if !reply.is_positive() {
            return Err(self.refused(Stage::Helo, reply).await);
        }
        self.capabilities = Capabilities::default();
        Ok(())
    }

    /// Sends one message and returns a result for each recipient, in recipient order. A
    /// rejection by the server (of the sender, of recipients, of the content) is a result; an
    /// error means the session is over and the whole message is to be tried again. Not while
    /// submitted messages wait to be collected.
    pub async fn send<R: AsyncRead + Unpin>(&mut self, message: Outgoing<R>) -> Result<Vec<RcptResult>, SessionError> {
        debug_assert_eq!(self.unanswered, 0, "send() with messages still to be collected");
        let ticket = self.submit(message).await?;
        self.collect(ticket).await
    }

    /// Writes one message. With PIPELINING and CHUNKING its replies are left to
    /// [`Session::collect`], and further messages may be submitted before that; otherwise (or
    /// when nothing needed sending) the ticket already holds the results. The content is read
    /// whole before this returns. An error means this message was not accepted (its last
    /// chunk was not written whole) and the session cannot take another; messages submitted
    /// before it are still to be collected.
    pub async fn submit<R: AsyncRead + Unpin>(&mut self, message: Outgoing<R>) -> Result<Ticket, SessionError> {
        let done = |results| Ticket { state: TicketState::Done(results) };
        if self.broken {
            return Err(SessionError::Closed { peer: self.relay.peer() });
        }
        let Outgoing { sender, recipients, size, body_8bit, content } = message;
        let local = |code: u16, status: &str, text: String| {
            (0..recipients.len())
                .map(|index| RcptResult {
                    index,
                    code,
                    status: status.to_string(),
                    text: text.clone(),
                    stage: Stage::Local,
                })
                .collect::<Vec<_>>()
        };
        if recipients.is_empty() {
            return Ok(done(Vec::new()));
        }
        if let Some(limit) = self.capabilities.size
            && limit > 0
            && size > limit
        {
            let text = format!("message size {size} exceeds size limit {limit} of server {}", self.relay.peer());
            return Ok(done(local(552, "5.3.4", text)));
        }
        if !is_sendable(&sender) {
            return Ok(done(local(501, "5.1.7", format!("bad sender address syntax: {sender:?}"))));
        }

        let mut mail = format!("MAIL FROM:<{sender}>");
        if self.capabilities.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if body_8bit && self.capabilities.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str("\r\n");
        let mut results: Vec<Option<RcptResult>> = vec![None; recipients.len()];
        let mut rcpt_lines: Vec<(usize, String)> = Vec::new();
        for (index, recipient) in recipients.iter().enumerate() {
            if is_sendable(recipient) && !recipient.is_empty() {
                rcpt_lines.push((index, format!("RCPT TO:<{recipient}>\r\n")));
            } else {
                let text = format!("bad recipient address syntax: {recipient:?}");
                results[index] =
                    Some(RcptResult { index, code: 501, status: "5.1.3".into(), text, stage: Stage::Local });
            }
        }
        if rcpt_lines.is_empty() {
            return Ok(done(results.into_iter().flatten().collect()));
        }
        if self.pipelines_messages() {
            return self.submit_bdat(mail, rcpt_lines, results, content).await;
        }
        debug_assert_eq!(self.unanswered, 0, "DATA behind messages still to be collected");
        self.send_data(mail, rcpt_lines, results, content).await.map(done)
    }

    /// MAIL, RCPT, DATA and the content, each reply read in turn (the envelope in one write
    /// with PIPELINING).
    async fn send_data<R: AsyncRead + Unpin>(
        &mut self,
        mail: String,
        rcpt_lines: Vec<(usize, String)>,
        mut results: Vec<Option<RcptResult>>,
        mut content: R,
    ) -> Result<Vec<RcptResult>, SessionError> {
        let pipelining = self.capabilities.pipelining;
        // An RSET for an unfinished transaction goes in the same write as the envelope.
        let pipelined_rset = self.needs_rset && pipelining;
        if self.needs_rset && !pipelining {
            self.rset().await?;
        }
        let timeouts = (self.settings.mail_timeout, self.settings.rcpt_timeout, self.settings.data_init_timeout);
        // Postfix: "(in reply to ...)" names the command; with pipelining all go in one write.
        let mail_reply;
        let mut accepted: Vec<usize> = Vec::new();
        let data_reply;
        if pipelining {
            let mut batch = if pipelined_rset { b"RSET\r\n".to_vec() } else { Vec::new() };
            batch.extend_from_slice(mail.as_bytes());
            for (_, line) in &rcpt_lines {
                batch.extend_from_slice(line.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write(&batch, Stage::Mail, timeouts.0).await?;
            if pipelined_rset {
                self.rset_reply().await?;
            }
            mail_reply = self.reply(Stage::Mail, timeouts.0).await?;
            for (index, _) in &rcpt_lines {
                let reply = self.reply(Stage::Rcpt, timeouts.1).await?;
                if mail_reply.is_positive() && reply.is_positive() {
                    accepted.push(*index);
                }
                results[*index] = Some(RcptResult::from_reply(*index, &reply, Stage::Rcpt));
            }
            data_reply = Some(self.reply(Stage::Data, timeouts.2).await?);
        } else {
            self.write(mail.as_bytes(), Stage::Mail, timeouts.0).await?;
            mail_reply = self.reply(Stage::Mail, timeouts.0).await?;
            if mail_reply.is_positive() {
                for (index, line) in &rcpt_lines {
                    self.write(line.as_bytes(), Stage::Rcpt, timeouts.1).await?;
                    let reply = self.reply(Stage::Rcpt, timeouts.1).await?;
                    if reply.is_positive() {
                        accepted.push(*index);
                    }
                    results[*index] = Some(RcptResult::from_reply(*index, &reply, Stage::Rcpt));
                }
            }
            data_reply = if accepted.is_empty() {
                None
            } else {
                self.write(b"DATA\r\n", Stage::Data, timeouts.2).await?;
                Some(self.reply(Stage::Data, timeouts.2).await?)
            };
        }

        if !mail_reply.is_positive() {
            // The sender was refused: that reply is every recipient's.
            for (index, _) in &rcpt_lines {
                results[*index] = Some(RcptResult::from_reply(*index, &mail_reply, Stage::Mail));
            }
        } else {
            self.needs_rset = true;
        }

        match data_reply {
            Some(reply) if reply.code == 354 && !accepted.is_empty() => {
                self.transfer(&mut content).await?;
                let end = self.reply(Stage::EndOfData, self.settings.data_done_timeout).await?;
                self.needs_rset = false;
                for index in &accepted {
                    results[*index] = Some(RcptResult::from_reply(*index, &end, Stage::EndOfData));
                }
            }
            Some(reply) if reply.code == 354 => {
                // A server that lets DATA through without a recipient: end it empty at once.
                self.write(b".\r\n", Stage::EndOfData, self.settings.data_done_timeout).await?;
                self.reply(Stage::EndOfData, self.settings.data_done_timeout).await?;
                self.needs_rset = true;
            }
            Some(reply) => {
                for index in &accepted {
                    results[*index] = Some(RcptResult::from_reply(*index, &reply, Stage::Data));
                }
            }
            None => {}
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// [RSET,] MAIL, the RCPTs and `BDAT <n> LAST` with the content (CRLF line ends, no dot
    /// stuffing), in one write; a larger message as several BDAT chunks, all written before
    /// any reply is read.
    async fn submit_bdat<R: AsyncRead + Unpin>(
        &mut self,
        mail: String,
        rcpt_lines: Vec<(usize, String)>,
        results: Vec<Option<RcptResult>>,
        mut content: R,
    ) -> Result<Ticket, SessionError> {
        // Behind an unanswered message the server's state is unknown: RSET makes it clean.
        let rset = self.needs_rset || self.unanswered > 0;
        let mut head = if rset { b"RSET\r\n".to_vec() } else { Vec::new() };
        head.extend_from_slice(mail.as_bytes());
        for (_, line) in &rcpt_lines {
            head.extend_from_slice(line.as_bytes());
        }
        let timeout = self.settings.data_xfer_timeout;
        let mut encoder = DataEncoder::for_bdat();
        let mut input = vec![0u8; 64 * 1024];
        let mut body = Vec::with_capacity(input.len() + input.len() / 8);
        let mut chunks = 0;
        loop {
            let n = match content.read(&mut input).await {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if chunks > 0 {
                        // Part of the message is at the server: never follow it with LAST.
                        self.broken = true;
                        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
                    }
                    return Err(SessionError::Content { error });
                }
            };
            let last = n == 0;
            if last {
                encoder.finish(&mut body);
            } else {
                encoder.encode(&input[..n], &mut body);
                if body.len() < BDAT_CHUNK {
                    continue;
                }
            }
            let command = format!("BDAT {}{}\r\n", body.len(), if last { " LAST" } else { "" });
            head.extend_from_slice(command.as_bytes());
            head.extend_from_slice(&body);
            body.clear();
            self.write_pieces(&head, Stage::Content, timeout).await?;
            head.clear();
            chunks += 1;
            if last {
                break;
            }
        }
        let rcpts = rcpt_lines.into_iter().map(|(index, _)| index).collect();
        let seq = self.next_ticket;
        self.next_ticket += 1;
        self.unanswered += 1;
        let flight = Box::new(InFlight { rset, rcpts, results, chunks });
        Ok(Ticket { state: TicketState::Pending { seq, flight } })
    }

    /// The results of a submitted message, reading its replies if they are still due. Tickets
    /// are to be collected in the order they were issued. Every message submitted before the
    /// one that broke the session is still collected: its replies may have arrived. A
    /// connection lost (or timed out) while replies were due is [`Stage::EndOfData`]: the
    /// whole message was written, so the server may have taken it.
    pub async fn collect(&mut self, ticket: Ticket) -> Result<Vec<RcptResult>, SessionError> {
        let (seq, flight) = match ticket.state {
            TicketState::Done(results) => return Ok(results),
            TicketState::Pending { seq, flight } => (seq, flight),
        };
        debug_assert_eq!(seq, self.next_collect, "tickets collected out of order");
        self.next_collect += 1;
        self.unanswered -= 1;
        if self.replies_lost {
            return Err(SessionError::Lost { peer: self.relay.peer(), stage: Stage::EndOfData });
        }
        match self.read_flight(*flight).await {
            Ok(results) => Ok(results),
            Err(error) => {
                self.replies_lost = true;
                self.broken = true;
                Err(match error {
                    SessionError::Lost { peer, .. } => SessionError::Lost { peer, stage: Stage::EndOfData },
                    SessionError::Timeout { peer, .. } => SessionError::Timeout { peer, stage: Stage::EndOfData },
                    SessionError::Io { peer, error, .. } => SessionError::Io { peer, stage: Stage::EndOfData, error },
                    other => other,
                })
            }
        }
    }

    /// The replies to one BDAT transaction, in the order its commands went.
    async fn read_flight(&mut self, flight: InFlight) -> Result<Vec<RcptResult>, SessionError> {
        let InFlight { rset, rcpts, mut results, chunks } = flight;
        if rset {
            self.rset_reply().await?;
        }
        let mail_reply = self.reply(Stage::Mail, self.settings.mail_timeout).await?;
        let mut accepted = Vec::new();
        for &index in &rcpts {
            let reply = self.reply(Stage::Rcpt, self.settings.rcpt_timeout).await?;
            if mail_reply.is_positive() && reply.is_positive() {
                accepted.push(index);
            }
            results[index] = Some(RcptResult::from_reply(index, &reply, Stage::Rcpt));
        }
        // The first chunk refused decides; else the reply to LAST.
        let mut verdict: Option<(Reply, Stage)> = None;
        for chunk in 0..chunks {
            let (stage, timeout) = if chunk + 1 == chunks {
                (Stage::EndOfData, self.settings.data_done_timeout)
            } else {
                (Stage::Content, self.settings.data_xfer_timeout)
            };
            let reply = self.reply(stage, timeout).await?;
            if verdict.is_none() && (!reply.is_positive() || chunk + 1 == chunks) {
                verdict = Some((reply, stage));
            }
        }
        if !mail_reply.is_positive() {
            // The sender was refused: that reply is every recipient's; BDAT got a 503.
            for &index in &rcpts {
                results[index] = Some(RcptResult::from_reply(index, &mail_reply, Stage::Mail));
            }
            self.needs_rset = false;
        } else if accepted.is_empty() {
            // No recipient: BDAT was answered 503/554 and nothing was delivered. The
            // transaction may still be open at the server.
            self.needs_rset = true;
        } else if let Some((reply, stage)) = verdict {
            for &index in &accepted {
                results[index] = Some(RcptResult::from_reply(index, &reply, stage));
            }
            self.needs_rset = !reply.is_positive();
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Ends the session politely (QUIT, the reply awaited for smtp_quit_timeout at most).
    pub async fn quit(mut self) {
        if !self.broken {
            let timeout = self.settings.quit_timeout;
            if self.write(b"QUIT\r\n", Stage::Quit, timeout).await.is_ok() {
                let _ = self.reply(Stage::Quit, timeout).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    async fn rset(&mut self) -> Result<(), SessionError> {
        self.write(b"RSET\r\n", Stage::Rset, self.settings.rset_timeout).await?;
        self.rset_reply().await
    }

    async fn rset_reply(&mut self) -> Result<(), SessionError> {
        let reply = self.reply(Stage::Rset, self.settings.rset_timeout).await?;
        if !reply.is_positive() {
            return Err(self.refused(Stage::Rset, reply).await);
        }
        self.needs_rset = false;
        Ok(())
    }

    /// Streams the content, CRLF line ends and dot-stuffing added, then the final ".".
    async fn transfer<R: AsyncRead + Unpin>(&mut self, content: &mut R) -> Result<(), SessionError> {
        let timeout = self.settings.data_xfer_timeout;
        let mut encoder = DataEncoder::default();
        let mut input = vec![0u8; 64 * 1024];
        let mut output = Vec::with_capacity(input.len() + input.len() / 8);
        loop {
            let n = match content.read(&mut input).await {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Never end with "." what was not read whole: drop the connection instead.
                    self.broken = true;
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
                    return Err(SessionError::Content { error });
                }
            };
            output.clear();
            if n == 0 {
                encoder.finish(&mut output);
                return self.write(&output, Stage::Content, timeout).await;
            }
            encoder.encode(&input[..n], &mut output);
            self.write(&output, Stage::Content, timeout).await?;
        }
    }

    /// Writes `bytes` in pieces, each within `timeout` (a slow link still moves).
    async fn write_pieces(&mut self, bytes: &[u8], stage: Stage, timeout: Duration) -> Result<(), SessionError> {
        for piece in bytes.chunks(WRITE_PIECE) {
            self.write(piece, stage, timeout).await?;
        }
        Ok(())
    }

    /// Writes and flushes `bytes` within `timeout`.
    async fn write(&mut self, bytes: &[u8], stage: Stage, timeout: Duration) -> Result<(), SessionError> {
        let stream = &mut self.stream;
        let result = tokio::time::timeout(timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if is_lost(&error) => Err(self.fail(SessionError::Lost { peer: self.relay.peer(), stage })),
            Ok(Err(error)) => Err(self.fail(SessionError::Io { peer: self.relay.peer(), stage, error })),
            Err(_) => Err(self.fail(SessionError::Timeout { peer: self.relay.peer(), stage })),
        }
    }

    async fn reply(&mut self, stage: Stage, timeout: Duration) -> Result<Reply, SessionError> {
        self.reply_raw(stage, timeout).await.map(|(reply, _)| reply)
    }

    async fn reply_raw(&mut self, stage: Stage, timeout: Duration) -> Result<(Reply, Vec<u8>), SessionError> {
        let result = tokio::time::timeout(timeout, self.reader.read(&mut self.stream)).await;
        let peer = self.relay.peer();
        match result {
            Ok(Ok((reply, raw))) => {
                // 421: the server is closing the channel, whatever it was asked.
                if reply.code == 421 && !matches!(stage, Stage::Greeting | Stage::Helo | Stage::Quit) {
                    return Err(self.fail(SessionError::Closing { peer, stage, reply }));
                }
                Ok((reply, raw))
            }
            Ok(Err(ReadError::Closed)) => Err(self.fail(SessionError::Lost { peer, stage })),
            Ok(Err(ReadError::Io(error))) => Err(self.fail(SessionError::Io { peer, stage, error })),
            Ok(Err(ReadError::Syntax(detail))) => Err(self.fail(SessionError::Protocol { peer, stage, detail })),
            Err(_) => Err(self.fail(SessionError::Timeout { peer, stage })),
        }
    }

    fn fail(&mut self, error: SessionError) -> SessionError {
        self.broken = true;
        error
    }

    /// A refusal that ends the session: QUIT is still sent (briefly), as Postfix does.
    async fn refused(&mut self, stage: Stage, reply: Reply) -> SessionError {
        let error = SessionError::Refused { peer: self.relay.peer(), stage, reply };
        self.abandon(error).await
    }

    /// Ends a session that cannot go on but still talks SMTP: QUIT (briefly) unless the
    /// server said 421, then `error`.
    async fn abandon(&mut self, error: SessionError) -> SessionError {
        let closing = matches!(&error, SessionError::Refused { reply, .. } if reply.code == 421);
        let quit_wait = self.settings.quit_timeout.min(Duration::from_secs(5));
        if !closing && self.write(b"QUIT\r\n", Stage::Quit, quit_wait).await.is_ok() {
            let _ = self.reply(Stage::Quit, quit_wait).await;
        }
        self.fail(error)
    }
}

/// No CR, LF, NUL or angle brackets: nothing that could end the command line or the path.
fn is_sendable(address: &str) -> bool {
    !address.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0 | b'<' | b'>'))
}

fn parse_ehlo(raw: &[u8], reply: &Reply) -> Capabilities {
    let mut capabilities = Capabilities { esmtp: true, ..Capabilities::default() };
    // "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN"; the names are what AUTH needs.
    for line in reply.lines.iter().skip(1) {
        let upper = line.to_ascii_uppercase();
        let mut words = upper.split([' ', '\t', '=']).filter(|word| !word.is_empty());
        if words.next() == Some("AUTH") {
            for name in words {
                if !capabilities.auth_mechanisms.iter().any(|known| known == name) {
                    capabilities.auth_mechanisms.push(name.to_string());
                }
            }
        }
    }
    match smtp_proto::EhloResponse::parse(&mut raw.iter()) {
        Ok(ehlo) => {
            let has = |bit: u32| ehlo.capabilities & bit != 0;
            capabilities.pipelining = has(smtp_proto::EXT_PIPELINING);
            capabilities.size = has(smtp_proto::EXT_SIZE).then_some(ehlo.size as u64);
            capabilities.eight_bit_mime = has(smtp_proto::EXT_8BIT_MIME);
            capabilities.chunking = has(smtp_proto::EXT_CHUNKING);
            capabilities.enhanced_status_codes = has(smtp_proto::EXT_ENHANCED_STATUS_CODES);
            capabilities.starttls = has(smtp_proto::EXT_START_TLS);
            capabilities.auth = has(smtp_proto::EXT_AUTH);
        }
        Err(_) => {
            // Keywords smtp-proto did not take: look at the lines ourselves.
            for line in reply.lines.iter().skip(1) {
                let mut words = line.split_ascii_whitespace();
                let keyword = words.next().unwrap_or("").to_ascii_uppercase();
                match keyword.as_str() {
                    "PIPELINING" => capabilities.pipelining = true,
                    "SIZE" => capabilities.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                    "8BITMIME" => capabilities.eight_bit_mime = true,
                    "CHUNKING" => capabilities.chunking = true,
                    "ENHANCEDSTATUSCODES" => capabilities.enhanced_status_codes = true,
                    "STARTTLS" => capabilities.starttls = true,
                    "AUTH" => capabilities.auth = true,
                    _ => {}
                }
            }
        }
    }
    capabilities.auth |= !capabilities.auth_mechanisms.is_empty();
    capabilities
}

/// Turns stored content (LF line ends) into the DATA stream: CRLF line ends (an LF already
/// preceded by CR is kept as is), a "." doubled at the start of a line, and the final ".".
/// For BDAT ([`DataEncoder::for_bdat`]) only the line ends: the size says where it ends.
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
    after_cr: bool,
    /// DATA: dot-stuffing and the final ".".
    dots: bool,
}

impl Default for DataEncoder {
    fn default() -> DataEncoder {
        DataEncoder { at_line_start: true, after_cr: false, dots: true }
    }
}

impl DataEncoder {
    /// CRLF line ends only, and no final ".".
    pub fn for_bdat() -> DataEncoder {
        DataEncoder { dots: false, ..DataEncoder::default() }
    }

    /// Appends the encoded form of `input` to `output`.
    pub fn encode(&mut self, input: &[u8], output: &mut Vec<u8>) {
        for &byte in input {
            if byte == b'\n' {
                if !self.after_cr {
                    output.push(b'\r');
                }
                output.push(b'\n');
                self.at_line_start = true;
                self.after_cr = false;
                continue;
            }
            if self.dots && self.at_line_start && byte == b'.' {
                output.push(b'.');
            }
            output.push(byte);
            self.at_line_start = false;
            self.after_cr = byte == b'\r';
        }
    }

    /// Appends the end of the data: a line end if the content lacked one, then "." (DATA).
    pub fn finish(&mut self, output: &mut Vec<u8>) {
        if !self.at_line_start {
            output.extend_from_slice(b"\r\n");
        }
        if self.dots {
            output.extend_from_slice(b".\r\n");
        }
        self.at_line_start = true;
        self.after_cr = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut encoder = DataEncoder::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            encoder.encode(chunk, &mut out);
        }
        encoder.finish(&mut out);
        out
    }

    #[test]
    fn crlf_and_dot_stuffing() {
        let input = b"Subject: x\n\n.\n..two\nmid.dle\n.\r\nlast";
        let expected = b"Subject: x\r\n\r\n..\r\n...two\r\nmid.dle\r\n..\r\nlast\r\n.\r\n";
        for piece in [1, 2, 3, 7, 1000] {
            assert_eq!(encode_in_pieces(input, piece), expected, "pieces of {piece}");
        }
        assert_eq!(encode_in_pieces(b"", 10), b".\r\n");
        assert_eq!(encode_in_pieces(b"a\n", 10), b"a\r\n.\r\n");
    }

    #[test]
    fn bdat_content_is_not_stuffed() {
        let mut encoder = DataEncoder::for_bdat();
        let mut out = Vec::new();
        encoder.encode(b".\n..x\r\nlast", &mut out);
        encoder.finish(&mut out);
        assert_eq!(out, b".\r\n..x\r\nlast\r\n");
        let mut out = Vec::new();
        let mut encoder = DataEncoder::for_bdat();
        encoder.encode(b"a\n", &mut out);
        encoder.finish(&mut out);
        assert_eq!(out, b"a\r\n", "no line end added, no final dot");
    }

    #[test]
    fn relay_display() {
        let relay = Relay::new("smtp.example.net", "192.0.2.1:587".parse().unwrap());
        assert_eq!(relay.to_string(), "smtp.example.net[192.0.2.1]:587");
        assert_eq!(relay.peer(), "smtp.example.net[192.0.2.1]");
        let relay = Relay::new("2001:db8::1", "[2001:db8::1]:25".parse().unwrap());
        assert_eq!(relay.to_string(), "2001:db8::1[2001:db8::1]:25");
    }

    #[test]
    fn settings_from_the_configuration() {
        let text =
            "smtp_helo_name = \"gw.office.example\"\nsmtp_connect_timeout = \"5s\"\nsmtp_data_done_timeout = 20\n";
        let config = Config::from_toml_str(text, std::path::Path::new("/etc/tidemail/main.toml")).unwrap();
        let settings = ClientSettings::from_config(&config);
        assert_eq!(settings.helo_name, "gw.office.example");
        assert_eq!(settings.connect_timeout, Duration::from_secs(5));
        assert_eq!(settings.data_done_timeout, Duration::from_secs(20));
        let defaults = ClientSettings::new("x");
        assert_eq!(settings.helo_timeout, defaults.helo_timeout);
        assert_eq!(settings.rset_timeout, defaults.rset_timeout);
        assert_eq!(settings.quit_timeout, defaults.quit_timeout);
    }

    /// Runs a server that answers each chunk it reads with the next of `replies`; returns
    /// what it received.
    fn scripted(replies: &'static [&'static [u8]]) -> (Box<dyn Transport>, tokio::task::JoinHandle<Vec<u8>>) {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            for reply in replies {
                if server.write_all(reply).await.is_err() {
                    break;
                }
                match server.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        });
        (Box::new(client), task)
    }

    #[tokio::test]
    async fn refusals_at_greeting_and_helo() {
        let relay = Relay::new("mx", "127.0.0.1:25".parse().unwrap());
        let settings = ClientSettings::new("client.test");

        // A 5xx greeting is skipped like a 4xx one: temporary, status class 4.
        let (stream, server) = scripted(&[b"554 5.7.1 go away\r\n", b"221 bye\r\n"]);
        let error = Session::start(stream, relay.clone(), &settings).await.err().unwrap();
        assert!(matches!(error, SessionError::Refused { stage: Stage::Greeting, .. }), "{error:?}");
        assert!(error.is_temporary());
        assert_eq!(error.status(), "4.7.1");
        assert_eq!(error.to_string(), "host mx[127.0.0.1] refused to talk to me: 554 5.7.1 go away");
        assert_eq!(server.await.unwrap(), b"QUIT\r\n");

        // EHLO refused, HELO refused with 5xx: permanent.
        let (stream, server) = scripted(&[b"220 mx\r\n", b"500 what\r\n", b"550 5.7.1 not you\r\n", b"221 bye\r\n"]);
        let error = Session::start(stream, relay.clone(), &settings).await.err().unwrap();
        assert!(matches!(error, SessionError::Refused { stage: Stage::Helo, .. }), "{error:?}");
        assert!(!error.is_temporary());
        assert_eq!(error.status(), "5.7.1");
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\nHELO client.test\r\nQUIT\r\n");

        // 421 to MAIL: the server is closing; the message is deferred.
        let (stream, _server) = scripted(&[b"220 mx\r\n", b"250 mx\r\n", b"421 4.3.2 shutting down\r\n", b""]);
        let mut session = Session::start(stream, relay.clone(), &settings).await.unwrap();
        let error = session
            .send(Outgoing {
                sender: "a@b".into(),
                recipients: vec!["c@d".into()],
                size: 1,
                body_8bit: false,
                content: &b"x"[..],
            })
            .await
            .unwrap_err();
        assert!(error.is_temporary());
        assert_eq!(error.status(), "4.3.2");
        assert_eq!(
            error.to_string(),
            "host mx[127.0.0.1] said: 421 4.3.2 shutting down (in reply to MAIL FROM command)"
        );
        assert!(!session.is_usable());
    }

    #[tokio::test]
    async fn plaintext_after_the_starttls_reply_is_refused() {
        let relay = Relay::new("mx", "127.0.0.1:25".parse().unwrap());
        let mut settings = ClientSettings::new("client.test");
        settings.tls = TlsPolicy::new(TlsLevel::Encrypt);
        // "250 injected" arrives with the 220, before any TLS: it must not be believed.
        let (stream, server) =
            scripted(&[b"220 mx\r\n", b"250-mx\r\n250 STARTTLS\r\n", b"220 go ahead\r\n250 injected\r\n"]);
        let error = Session::start(stream, relay, &settings).await.err().unwrap();
        assert!(matches!(error, SessionError::Protocol { stage: Stage::StartTls, .. }), "{error:?}");
        assert!(error.is_temporary());
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\nSTARTTLS\r\n");
    }

    #[tokio::test]
    async fn mandatory_tls_not_offered() {
        let relay = Relay::new("mx", "127.0.0.1:25".parse().unwrap());
        let mut settings = ClientSettings::new("client.test");
        settings.tls = TlsPolicy::new(TlsLevel::Encrypt);
        let (stream, server) = scripted(&[b"220 mx\r\n", b"250-mx\r\n250 AUTH PLAIN\r\n", b"221 bye\r\n"]);
        let error = Session::start(stream, relay, &settings).await.err().unwrap();
        assert_eq!(error.to_string(), "TLS is required, but was not offered by host mx[127.0.0.1]");
        assert_eq!((error.is_temporary(), error.status().as_str()), (true, "4.7.4"));
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\nQUIT\r\n");
    }

    #[tokio::test]
    async fn auth_login_and_refusals() {
        let relay = Relay::new("mx", "127.0.0.1:25".parse().unwrap());
        // Plaintext passwords explicitly allowed, so that a pipe can carry them.
        let mut settings = ClientSettings::new("client.test").with_credentials(Some(Credentials::new("u", "p")));
        settings.sasl.security_options = vec!["noanonymous".into()];
        let (stream, server) = scripted(&[
            b"220 mx\r\n",
            b"250-mx\r\n250 AUTH=LOGIN\r\n",
            b"334 VXNlcm5hbWU6\r\n",
            b"334 UGFzc3dvcmQ6\r\n",
            b"235 2.7.0 ok\r\n",
        ]);
        let session = Session::start(stream, relay.clone(), &settings).await.unwrap();
        assert_eq!(session.authenticated(), Some("u"));
        drop(session);
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\nAUTH LOGIN\r\ndQ==\r\ncA==\r\n");

        // A refused password is temporary, and the password is nowhere in the message.
        let (stream, _server) = scripted(&[
            b"220 mx\r\n",
            b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n",
            b"535 5.7.8 Error: authentication failed\r\n",
            b"221 bye\r\n",
        ]);
        let error = Session::start(stream, relay.clone(), &settings).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            "SASL authentication failed; server mx[127.0.0.1] said: 535 5.7.8 Error: authentication failed"
        );
        assert_eq!((error.is_temporary(), error.status().as_str()), (true, "4.7.8"));

        // The default noplaintext: no AUTH at all over a session without TLS.
        settings.sasl = SaslPolicy::default();
        let (stream, server) = scripted(&[b"220 mx\r\n", b"250-mx\r\n250 AUTH PLAIN\r\n", b"221 bye\r\n"]);
        let error = Session::start(stream, relay, &settings).await.err().unwrap();
        assert!(matches!(error, SessionError::SaslNotPossible { .. }), "{error:?}");
        assert!(error.to_string().contains("offered no TLS"), "{error}");
        assert_eq!(error.status(), "4.7.0");
        assert_eq!(server.await.unwrap(), b"EHLO client.test\r\nQUIT\r\n");
    }

    #[test]
    fn auth_mechanisms_in_ehlo() {
        let raw = b"250-mx\r\n250-AUTH LOGIN plain\r\n250-AUTH=LOGIN\r\n250 STARTTLS\r\n";
        let reply = Reply { code: 250, sent_status: None, lines: vec![] };
        let reply = Reply {
            lines: vec!["mx".into(), "AUTH LOGIN plain".into(), "AUTH=LOGIN".into(), "STARTTLS".into()],
            ..reply
        };
        let capabilities = parse_ehlo(raw, &reply);
        assert!(capabilities.auth && capabilities.starttls);
        assert_eq!(capabilities.auth_mechanisms, ["LOGIN", "PLAIN"]);
    }

    /// A server on the other end of an in-memory stream that answers each batch ending in
    /// `until` with `reply`; returns what it received.
    fn answering(
        script: Vec<(&'static [u8], &'static [u8])>,
    ) -> (Box<dyn Transport>, tokio::task::JoinHandle<Vec<u8>>) {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            server.write_all(b"220 pipe ESMTP\r\n").await.unwrap();
            for (until, reply) in script {
                while !got.ends_with(until) {
                    match server.read(&mut buf).await {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                server.write_all(reply).await.unwrap();
            }
            got
        });
        (Box::new(client), task)
    }

    #[tokio::test]
    async fn bdat_on_the_wire() {
        let (stream, server) = answering(vec![
            (b"\r\n", b"250-pipe\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"),
            // Two messages written before a reply is read; the second begins with RSET.
            (
                b"y\r\n",
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n250 2.0.0 queued\r\n\
                  250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n",
            ),
            (b"QUIT\r\n", b"221 bye\r\n"),
        ]);
        let relay = Relay::new("pipe", "127.0.0.1:25".parse().unwrap());
        let mut session = Session::start(stream, relay, &ClientSettings::new("client.test")).await.unwrap();
        assert!(session.pipelines_messages());
        let outgoing = |recipients: &[&str], content: &'static [u8]| Outgoing {
            sender: "a@client.test".into(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            size: content.len() as u64,
            body_8bit: !content.is_ascii(),
            content,
        };
        let first = session.submit(outgoing(&["b@pipe", "c@pipe"], "Hi \u{e9}\n.\nx".as_bytes())).await.unwrap();
        let second = session.submit(outgoing(&["c@pipe"], b"y")).await.unwrap();
        let first = session.collect(first).await.unwrap();
        assert_eq!((first[0].code, first[0].stage, first[1].code), (250, Stage::EndOfData, 550));
        // Every recipient refused: the 554 to BDAT is nobody's result.
        let second = session.collect(second).await.unwrap();
        assert_eq!((second.len(), second[0].code, second[0].stage), (1, 550, Stage::Rcpt));
        session.quit().await;
        let wire = String::from_utf8(server.await.unwrap()).unwrap();
        assert_eq!(
            wire,
            "EHLO client.test\r\nMAIL FROM:<a@client.test> SIZE=9 BODY=8BITMIME\r\nRCPT TO:<b@pipe>\r\n\
             RCPT TO:<c@pipe>\r\nBDAT 13 LAST\r\nHi \u{e9}\r\n.\r\nx\r\n\
             RSET\r\nMAIL FROM:<a@client.test> SIZE=1\r\nRCPT TO:<c@pipe>\r\nBDAT 3 LAST\r\ny\r\n\
             QUIT\r\n"
        );
    }

    #[tokio::test]
    async fn session_over_a_pipe() {
        // A scripted server on the other end of an in-memory stream.
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let script = tokio::spawn(async move {
            let mut got = Vec::new();
            server.write_all(b"220 pipe ESMTP\r\n").await.unwrap();
            let mut buf = [0u8; 4096];
            let mut replies: &[&[u8]] = &[
                b"250-pipe\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 nobody here\r\n354 go\r\n",
                b"250 2.0.0 Ok: queued as X\r\n",
                b"221 2.0.0 Bye\r\n",
            ];
            while let Some((reply, rest)) = replies.split_first() {
                // Read until the command batch this reply answers is complete.
                let wanted: &[u8] = match replies.len() {
                    4 => b"\r\n",
                    3 => b"DATA\r\n",
                    2 => b"\r\n.\r\n",
                    _ => b"QUIT\r\n",
                };
                while !got.ends_with(wanted) {
                    let n = server.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                server.write_all(reply).await.unwrap();
                replies = rest;
            }
            got
        });
        let relay = Relay::new("pipe", "127.0.0.1:25".parse().unwrap());
        let mut session = Session::start(Box::new(client), relay, &ClientSettings::new("client.test")).await.unwrap();
        assert!(session.capabilities().pipelining);
        assert_eq!(session.capabilities().size, Some(1000));
        let results = session
            .send(Outgoing {
                sender: "a@client.test".into(),
                recipients: vec!["b@pipe".into(), "c@pipe".into()],
                size: 7,
                body_8bit: true,
                content: &b"Hi\n.\n"[..],
            })
            .await
            .unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!((results[0].code, results[0].status.as_str()), (250, "2.0.0"));
        assert_eq!(results[0].text, "250 2.0.0 Ok: queued as X");
        assert_eq!(results[1].outcome(), Outcome::Bounced);
        assert_eq!(
            results[1].diagnostic(session.relay()),
            "host pipe[127.0.0.1] said: 550 5.1.1 nobody here (in reply to RCPT TO command)"
        );
        session.quit().await;
        let wire = String::from_utf8(script.await.unwrap()).unwrap();
        assert_eq!(
            wire,
            "EHLO client.test\r\nMAIL FROM:<a@client.test> SIZE=7 BODY=8BITMIME\r\nRCPT TO:<b@pipe>\r\n\
             RCPT TO:<c@pipe>\r\nDATA\r\nHi\r\n..\r\n.\r\nQUIT\r\n"
        );
    }
}
