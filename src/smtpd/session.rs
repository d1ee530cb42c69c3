//! One SMTP session (Postfix's smtpd(8) per connection): the greeting, the commands, the
//! message content, and the hand-off to cleanup.
//!
//! The session owns its input buffer (see `tls` for why) and reads with smtpd_timeout on
//! every read. Replies are collected and written when the session is about to wait for
//! input, so a pipelining client gets its replies in one write. Input never makes it panic:
//! lines are bytes, bounded by line_length_limit, and any text is taken lossily.
//!
//! Restrictions: with smtpd_delay_reject (the default) the client, HELO and sender stages are
//! asked at RCPT time, before the recipient stage, so every reject names a recipient (what
//! pflogsumm counts); without it each command asks its own stage.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::net::TcpStream;

use super::credentials::{Check, Connection};
use super::data::{DataReader, Fed};
use super::listener::{ServiceContext, Shared};
use super::reply;
use super::restrictions::{Client, Query, Stage, Verdict};
use super::tls::{Conn, Level};
use crate::cleanup::{self, CleanupError, Disposition};
use crate::config::Config;
use crate::queue::{Envelope, Notify, Origin, QueueName, Recipient, Ret};
use crate::{address, mail_info, mail_warning, message};

const SERVICE: &str = "smtpd";
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8192;

/// The commands counted in the disconnect line, in Postfix's order.
const COUNTED: &[&str] = &[
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset", "noop", "vrfy", "etrn", "help", "quit",
    "unknown",
];

/// A transaction from MAIL to the end of DATA (or RSET).
struct Transaction {
    sender: String,
    ret: Option<Ret>,
    envid: Option<String>,
    recipients: Vec<Recipient>,
    hold: Option<String>,
    discard: Option<String>,
}

enum ReadError {
    Timeout,
    /// The line was longer than the limit (and was read to its end and dropped).
    TooLong,
    /// End of input or a broken connection.
    Lost,
}

enum Flow {
    Go,
    Quit,
}

struct Session {
    svc: Arc<ServiceContext>,
    shared: Arc<Shared>,
    cfg: Arc<Config>,
    conn: Conn,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Dropping the rest of an over-long line.
    discarding: bool,
    client: Client,
    /// "host[ip]" for the log.
    peer: String,
    /// Set by EHLO (ESMTP), HELO (SMTP).
    esmtp: bool,
    tx: Option<Transaction>,
    /// HOLD/DISCARD said at the client or HELO stage (delay_reject off): every message.
    session_hold: Option<String>,
    session_discard: Option<String>,
    sasl_method: Option<String>,
    errors: i64,
    /// (ok, total) per [`COUNTED`] name.
    counts: Vec<(u32, u32)>,
    /// The code of the last reply (decides whether a command counts as failed).
    last_code: u16,
    /// The last command, for "lost connection after X".
    last_command: String,
    /// Our own address on this connection (told to Dovecot as lip=).
    local: Option<std::net::IpAddr>,
}

pub async fn run(stream: TcpStream, peer: SocketAddr, svc: Arc<ServiceContext>, shared: Arc<Shared>) {
    let local = stream.local_addr().ok().map(|a| a.ip());
    let ip = peer.ip();
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    // TODO: reverse/forward lookup of the client name (smtpd_peername_lookup); "unknown" as
    // Postfix writes a client without a verified name.
    let client = Client {
        addr: ip,
        name: "unknown".to_string(),
        helo: None,
        sasl_username: None,
        tls: false,
        improper_pipelining: false,
    };
    let mut session = Session {
        cfg: svc.cfg.clone(),
        svc,
        shared,
        conn: Conn::Plain(stream),
        input: Vec::new(),
        output: Vec::new(),
        discarding: false,
        peer: format!("unknown[{ip}]"),
        client,
        esmtp: false,
        tx: None,
        session_hold: None,
        session_discard: None,
        sasl_method: None,
        errors: 0,
        counts: vec![(0, 0); COUNTED.len()],
        last_code: 0,
        last_command: "CONNECT".into(),
        local,
    };
    mail_info!(SERVICE, "connect from {}", session.peer);
    session.serve().await;
    session.conn.shutdown().await;
    mail_info!(SERVICE, "disconnect from {}{}", session.peer, session.count_text());
}

impl Session {
    async fn serve(&mut self) {
        // A client that talks before the greeting is a spam engine, not an MTA: note it for
        // reject_unauth_pipelining.
        if let Conn::Plain(tcp) = &self.conn {
            let mut early = [0u8; 512];
            if let Ok(n) = tcp.try_read(&mut early)
                && n > 0
            {
                self.input.extend_from_slice(&early[..n]);
                self.client.improper_pipelining = true;
                mail_info!(SERVICE, "improper command pipelining after CONNECT from {}", self.peer);
            }
        }
        if !self.cfg.smtpd_delay_reject()
            && let Some(rejected) = self.check(&[Stage::Connect], None, None, None).await
        {
            self.reply(&rejected);
            let _ = self.flush().await;
            return;
        }
        self.reply(&format!("220 {}", self.cfg.smtpd_banner()));
        loop {
            if self.errors >= self.cfg.smtpd_hard_error_limit() {
                mail_info!(SERVICE, "too many errors after {} from {}", self.last_command, self.peer);
                self.reply(&reply::too_many_errors(self.cfg.myhostname()));
                let _ = self.flush().await;
                return;
            }
            let line = match self.read_line().await {
                Ok(line) => line,
                Err(ReadError::TooLong) => {
                    self.reply(reply::LINE_TOO_LONG);
                    self.errors += 1;
                    continue;
                }
                Err(ReadError::Timeout) => {
                    mail_info!(SERVICE, "timeout after {} from {}", self.last_command, self.peer);
                    self.reply(&reply::timeout(self.cfg.myhostname()));
                    let _ = self.flush().await;
                    return;
                }
                Err(ReadError::Lost) => {
                    mail_info!(SERVICE, "lost connection after {} from {}", self.last_command, self.peer);
                    return;
                }
            };
            // Slow down a client that keeps making errors (Postfix 2.1+: every reply).
            if self.errors > self.cfg.smtpd_soft_error_limit() {
                if self.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(self.cfg.smtpd_error_sleep_time()).await;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let verb = verb.to_ascii_uppercase();
            let arg = arg.trim().to_string();
            self.last_command =
                if COUNTED.contains(&verb.to_ascii_lowercase().as_str()) { verb.clone() } else { "UNKNOWN".into() };
            self.last_code = 0;
            let flow = match verb.as_str() {
                "HELO" => self.helo(&arg, false).await,
                "EHLO" => self.helo(&arg, true).await,
                "MAIL" => self.mail(&arg).await,
                "RCPT" => self.rcpt(&arg).await,
                "DATA" => self.data(&arg).await,
                "RSET" => {
                    self.tx = None;
                    self.reply(reply::OK);
                    Flow::Go
                }
                "NOOP" => {
                    self.reply(reply::OK);
                    Flow::Go
                }
                "HELP" => {
                    self.reply(reply::HELP);
                    Flow::Go
                }
                "VRFY" => {
                    self.vrfy(&arg);
                    Flow::Go
                }
                "ETRN" => self.etrn(&arg).await,
                "STARTTLS" => self.starttls(&arg).await,
                "AUTH" => self.auth(&arg).await,
                "QUIT" => {
                    self.reply(reply::BYE);
                    Flow::Quit
                }
                _ => {
                    self.reply(reply::NOT_RECOGNIZED);
                    Flow::Go
                }
            };
            let ok = self.last_code < 400;
            if !ok && self.last_code != 421 {
                self.errors += 1;
            }
            let index = COUNTED.iter().position(|&c| c == verb.to_ascii_lowercase()).unwrap_or(COUNTED.len() - 1);
            self.counts[index].1 += 1;
            if ok {
                self.counts[index].0 += 1;
            }
            if matches!(flow, Flow::Quit) {
                let _ = self.flush().await;
                return;
            }
        }
    }

    /// Queue a reply; it is written before the next read.
    fn reply(&mut self, text: &str) {
        self.last_code = reply::code(text);
        self.output.extend_from_slice(&reply::wire(text));
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.output);
        match tokio::time::timeout(self.cfg.smtpd_timeout(), self.conn.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Writes the pending replies, then reads more input (bounded by smtpd_timeout).
    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.flush().await.is_err() {
            return Err(ReadError::Lost);
        }
        let mut chunk = [0u8; READ_CHUNK];
        match tokio::time::timeout(self.cfg.smtpd_timeout(), self.conn.read(&mut chunk)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => Err(ReadError::Lost),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// One command line without its line ending (CRLF or a bare LF).
    async fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        let limit = usize::try_from(self.cfg.line_length_limit()).unwrap_or(usize::MAX).max(512);
        loop {
            if let Some(at) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=at).collect();
                if std::mem::take(&mut self.discarding) {
                    return Err(ReadError::TooLong);
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > limit {
                    return Err(ReadError::TooLong);
                }
                return Ok(line);
            }
            if self.input.len() > limit {
                self.input.clear();
                self.discarding = true;
            }
            self.fill().await?;
        }
    }

    fn proto(&self) -> String {
        if !self.esmtp {
            return "SMTP".into();
        }
        let mut proto = "ESMTP".to_string();
        if self.conn.is_tls() {
            proto.push('S');
        }
        if self.client.sasl_username.is_some() {
            proto.push('A');
        }
        proto
    }

    fn count_text(&self) -> String {
        let mut text = String::new();
        let (mut ok, mut total) = (0, 0);
        for (name, (good, all)) in COUNTED.iter().zip(&self.counts) {
            if *all == 0 {
                continue;
            }
            ok += good;
            total += all;
            if good == all {
                text.push_str(&format!(" {name}={good}"));
            } else {
                text.push_str(&format!(" {name}={good}/{all}"));
            }
        }
        if ok == total {
            text.push_str(&format!(" commands={total}"));
        } else {
            text.push_str(&format!(" commands={ok}/{total}"));
        }
        text
    }

    /// Mail (MAIL, RCPT, DATA, AUTH, ETRN) needs TLS first at level encrypt.
    fn tls_required(&mut self) -> bool {
        if self.svc.tls_level == Level::Encrypt && !self.conn.is_tls() {
            self.reply(reply::MUST_STARTTLS);
            return true;
        }
        false
    }

    async fn helo(&mut self, arg: &str, esmtp: bool) -> Flow {
        if arg.is_empty() {
            self.reply(if esmtp { reply::SYNTAX_EHLO } else { reply::SYNTAX_HELO });
            return Flow::Go;
        }
        // Commands sent before the reply to EHLO (PIPELINING is not yet known to the client).
        if !self.input.is_empty() && !self.client.improper_pipelining {
            self.client.improper_pipelining = true;
            let verb = if esmtp { "EHLO" } else { "HELO" };
            mail_info!(SERVICE, "improper command pipelining after {verb} from {}", self.peer);
        }
        self.tx = None;
        self.esmtp = esmtp;
        self.client.helo = Some(printable(arg.split_whitespace().next().unwrap_or(arg)));
        if !self.cfg.smtpd_delay_reject()
            && let Some(rejected) = self.check(&[Stage::Helo], None, None, None).await
        {
            self.client.helo = None;
            self.reply(&rejected);
            return Flow::Go;
        }
        if !esmtp {
            self.reply(&format!("250 {}", self.cfg.myhostname()));
            return Flow::Go;
        }
        let mut lines = vec![format!("250 {}", self.cfg.myhostname())];
        let size = self.cfg.message_size_limit();
        let mut keywords = vec!["PIPELINING".to_string()];
        keywords.push(if size > 0 { format!("SIZE {size}") } else { "SIZE".into() });
        if !self.cfg.disable_vrfy_command() {
            keywords.push("VRFY".into());
        }
        keywords.push("ETRN".into());
        if self.svc.tls.is_some() && !self.conn.is_tls() {
            keywords.push("STARTTLS".into());
        }
        if self.auth_offered() {
            let mechanisms = self.svc.verifier.as_ref().map(|v| v.mechanisms().join(" ")).unwrap_or_default();
            keywords.push(format!("AUTH {mechanisms}"));
        }
        keywords.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"].map(String::from));
        let discard: Vec<String> =
            self.cfg.smtpd_discard_ehlo_keywords().iter().map(|k| k.to_ascii_uppercase()).collect();
        for keyword in keywords {
            let name = keyword.split(' ').next().unwrap_or("").to_string();
            if !discard.contains(&name) {
                lines.push(format!("250 {keyword}"));
            }
        }
        self.reply(&lines.join("\n"));
        Flow::Go
    }

    /// AUTH is offered now: a verifier exists, the client has not authenticated, and TLS is
    /// active or not required for it.
    fn auth_offered(&self) -> bool {
        self.svc.verifier.is_some()
            && self.client.sasl_username.is_none()
            && (self.conn.is_tls() || !self.cfg.smtpd_tls_auth_only())
    }

    async fn mail(&mut self, arg: &str) -> Flow {
        if self.tls_required() {
            return Flow::Go;
        }
        if self.cfg.smtpd_helo_required() && self.client.helo.is_none() {
            self.reply(reply::NEED_HELO);
            return Flow::Go;
        }
        if self.tx.is_some() {
            self.reply(reply::NESTED_MAIL);
            return Flow::Go;
        }
        let Some((path, params)) = split_path(arg, "FROM:") else {
            self.reply(reply::SYNTAX_MAIL);
            return Flow::Go;
        };
        let Ok(sender) = address::parse_path(path) else {
            self.reply(reply::BAD_SENDER);
            return Flow::Go;
        };
        let mut tx = Transaction {
            sender,
            ret: None,
            envid: None,
            recipients: Vec::new(),
            hold: self.session_hold.clone(),
            discard: self.session_discard.clone(),
        };
        let mut declared = 0u64;
        for (key, value) in params {
            let bad = match key.as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) => {
                        declared = size;
                        let limit = self.cfg.message_size_limit();
                        (limit > 0 && size > limit).then_some(reply::TOO_BIG.to_string())
                    }
                    Err(_) => Some(reply::BAD_SIZE.into()),
                },
                "BODY" => (!value.eq_ignore_ascii_case("7BIT") && !value.eq_ignore_ascii_case("8BITMIME"))
                    .then_some(reply::BAD_BODY.into()),
                "RET" if value.eq_ignore_ascii_case("FULL") => {
                    tx.ret = Some(Ret::Full);
                    None
                }
                "RET" if value.eq_ignore_ascii_case("HDRS") => {
                    tx.ret = Some(Ret::Hdrs);
                    None
                }
                "RET" => Some(reply::BAD_RET.into()),
                "ENVID" if !value.is_empty() && value.len() <= 100 => {
                    tx.envid = Some(value);
                    None
                }
                // The submitter's identity as another server authenticated it: noted by
                // Postfix only when the client is trusted; nothing to keep here.
                "AUTH" => None,
                _ => Some(reply::unsupported_option(&key)),
            };
            if let Some(bad) = bad {
                self.reply(&bad);
                return Flow::Go;
            }
        }
        if !self.enough_space(declared) {
            mail_warning!(SERVICE, "not enough free space in the queue file system for a message from {}", self.peer);
            self.reply(reply::NO_STORAGE);
            return Flow::Go;
        }
        if !self.cfg.smtpd_delay_reject() {
            self.tx = Some(tx);
            let sender = self.tx.as_ref().map(|t| t.sender.clone());
            if let Some(rejected) = self.check(&[Stage::Mail], sender.as_deref(), None, None).await {
                self.tx = None;
                self.reply(&rejected);
                return Flow::Go;
            }
        } else {
            self.tx = Some(tx);
        }
        self.reply(reply::MAIL_OK);
        Flow::Go
    }

    /// queue_minfree (0: 1.5 times message_size_limit) plus the declared size must be free.
    fn enough_space(&self, declared: u64) -> bool {
        let minfree = match self.cfg.queue_minfree() {
            0 => self.cfg.message_size_limit().saturating_mul(3) / 2,
            n => n,
        };
        match self.shared.store.free_space() {
            Ok(free) => free >= minfree.saturating_add(declared),
            Err(_) => true,
        }
    }

    async fn rcpt(&mut self, arg: &str) -> Flow {
        if self.tls_required() {
            return Flow::Go;
        }
        let Some(tx) = &self.tx else {
            self.reply(reply::NEED_MAIL);
            return Flow::Go;
        };
        let limit = usize::try_from(self.cfg.smtpd_recipient_limit()).unwrap_or(usize::MAX);
        if tx.recipients.len() >= limit {
            self.reply(reply::TOO_MANY_RECIPIENTS);
            return Flow::Go;
        }
        let sender = tx.sender.clone();
        let rcpt = match parse_rcpt(arg) {
            Ok(rcpt) => rcpt,
            Err(text) => {
                self.reply(text);
                return Flow::Go;
            }
        };
        let stages: &[Stage] = if self.cfg.smtpd_delay_reject() {
            &[Stage::Connect, Stage::Helo, Stage::Mail, Stage::Rcpt]
        } else {
            &[Stage::Rcpt]
        };
        if let Some(rejected) = self.check(stages, Some(&sender), Some(&rcpt.address), None).await {
            self.reply(&rejected);
            return Flow::Go;
        }
        if let Some(tx) = &mut self.tx {
            tx.recipients.push(rcpt);
        }
        self.reply(reply::RCPT_OK);
        Flow::Go
    }

    /// Asks the restrictions at each stage in turn; the reply for the first reject. HOLD and
    /// DISCARD are remembered for the message (or the session, before MAIL).
    async fn check(
        &mut self,
        stages: &[Stage],
        sender: Option<&str>,
        recipient: Option<&str>,
        etrn: Option<&str>,
    ) -> Option<String> {
        for &stage in stages {
            let query = Query { stage, client: &self.client, sender, recipient, etrn };
            let verdict = self.svc.restrictions.check(&query).await;
            match verdict {
                Verdict::Accept => {}
                Verdict::Reject { code, dsn, text } => {
                    let reply = format!("{code} {dsn} {text}");
                    self.log_action("reject", &reply, sender, recipient);
                    return Some(reply);
                }
                Verdict::Hold { text } => {
                    self.log_action("hold", &text, sender, recipient);
                    match &mut self.tx {
                        Some(tx) => tx.hold = Some(text),
                        None => self.session_hold = Some(text),
                    }
                }
                Verdict::Discard { text } => {
                    self.log_action("discard", &text, sender, recipient);
                    match &mut self.tx {
                        Some(tx) => tx.discard = Some(text),
                        None => self.session_discard = Some(text),
                    }
                }
            }
        }
        None
    }

    /// `NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 <x@y>: Relay access denied;
    /// from=<a> to=<b> proto=ESMTP helo=<h>`, as pflogsumm expects it.
    fn log_action(&self, action: &str, text: &str, sender: Option<&str>, recipient: Option<&str>) {
        let mut line = format!("NOQUEUE: {action}: {} from {}: {text};", self.last_command, self.peer);
        if let Some(sender) = sender {
            line.push_str(&format!(" from=<{sender}>"));
        }
        if let Some(recipient) = recipient {
            line.push_str(&format!(" to=<{recipient}>"));
        }
        line.push_str(&format!(" proto={}", self.proto()));
        if let Some(helo) = &self.client.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        mail_info!(SERVICE, "{line}");
    }

    async fn data(&mut self, arg: &str) -> Flow {
        if self.tls_required() {
            return Flow::Go;
        }
        if !arg.is_empty() {
            self.reply(reply::SYNTAX_DATA);
            return Flow::Go;
        }
        let Some(tx) = &self.tx else {
            self.reply(reply::NEED_RCPT);
            return Flow::Go;
        };
        if tx.recipients.is_empty() {
            self.reply(reply::NEED_RCPT);
            return Flow::Go;
        }
        let sender = tx.sender.clone();
        if let Some(rejected) = self.check(&[Stage::Data], Some(&sender), None, None).await {
            self.reply(&rejected);
            return Flow::Go;
        }
        self.reply(reply::START_DATA);
        let received = self.received_header();
        let mut reader = DataReader::new(self.cfg.message_size_limit(), received.as_bytes());
        loop {
            match reader.feed(&self.input) {
                Fed::End(used) => {
                    self.input.drain(..used);
                    break;
                }
                Fed::More => self.input.clear(),
            }
            match self.fill().await {
                Ok(()) => {}
                Err(ReadError::Timeout) => {
                    mail_info!(SERVICE, "timeout after DATA from {}", self.peer);
                    self.tx = None;
                    self.reply(&reply::timeout(self.cfg.myhostname()));
                    return Flow::Quit;
                }
                Err(_) => {
                    mail_info!(SERVICE, "lost connection after DATA from {}", self.peer);
                    self.tx = None;
                    return Flow::Quit;
                }
            }
        }
        let Some(tx) = self.tx.take() else { return Flow::Go };
        if reader.bare_newlines > 0 {
            mail_info!(
                SERVICE,
                "message from {} had {} line(s) ending in a bare newline",
                self.peer,
                reader.bare_newlines
            );
        }
        if reader.too_big() {
            mail_info!(
                SERVICE,
                "NOQUEUE: reject: DATA from {}: {}; from=<{}> proto={}",
                self.peer,
                reply::TOO_BIG,
                tx.sender,
                self.proto()
            );
            self.reply(reply::TOO_BIG);
            return Flow::Go;
        }
        if let Some(rejected) = self.check(&[Stage::EndOfData], Some(&tx.sender), None, None).await {
            self.reply(&rejected);
            return Flow::Go;
        }
        let reply = self.queue(tx, reader.into_content()).await;
        self.reply(&reply);
        Flow::Go
    }

    /// Postfix's Received: header, minus the queue ID (cleanup chooses it later).
    fn received_header(&self) -> String {
        let helo = self.client.helo.as_deref().unwrap_or(&self.client.name);
        let mut text = format!("Received: from {helo} ({} [{}])\n", self.client.name, self.client.addr);
        if let Some(tls) = self.conn.tls_description() {
            text.push_str(&format!("\t(using {tls})\n"));
        }
        text.push_str(&format!("\tby {} ({}) with {}", self.cfg.myhostname(), self.cfg.mail_name(), self.proto()));
        let date = message::date_header_value(chrono::Local::now());
        match self.tx.as_ref().map(|t| t.recipients.as_slice()) {
            Some([only]) => text.push_str(&format!("\n\tfor <{}>; {date}\n", only.address)),
            _ => text.push_str(&format!(";\n\t{date}\n")),
        }
        text
    }

    /// Hands the message to cleanup (durable before it returns) and words the reply.
    async fn queue(&mut self, tx: Transaction, content: Vec<u8>) -> String {
        if let Some(text) = &tx.discard {
            mail_info!(SERVICE, "discard: message from {}: {text}", self.peer);
            return reply::OK.to_string();
        }
        let origin = Origin::Smtp {
            client_name: self.client.name.clone(),
            client_addr: self.client.addr.to_string(),
            helo: self.client.helo.clone(),
            protocol: self.proto(),
        };
        let arrival_us = chrono::Utc::now().timestamp_micros();
        let envelope = Envelope {
            envid: tx.envid.clone(),
            ret: tx.ret,
            ..Envelope::new(tx.sender.clone(), tx.recipients.clone(), origin, arrival_us)
        };
        let (cfg, store) = (self.cfg.clone(), self.shared.store.clone());
        let result = tokio::task::spawn_blocking(move || {
            cleanup::cleanup(&cfg, &store, envelope, &mut std::io::Cursor::new(content))
        })
        .await;
        let cleaned = match result {
            Ok(Ok(cleaned)) => cleaned,
            Ok(Err(CleanupError::TooBig { .. })) => return reply::TOO_BIG.into(),
            Ok(Err(CleanupError::NoRecipients)) => return reply::NO_RECIPIENTS.into(),
            Ok(Err(e)) => {
                mail_warning!(SERVICE, "message from {} not queued: {e}", self.peer);
                return reply::QUEUE_ERROR.into();
            }
            Err(e) => {
                mail_warning!(SERVICE, "cleanup task failed: {e}");
                return reply::QUEUE_ERROR.into();
            }
        };
        let mut client_line = format!("{}: client={}", cleaned.queue_id, self.peer);
        if let (Some(method), Some(user)) = (&self.sasl_method, &self.client.sasl_username) {
            client_line.push_str(&format!(", sasl_method={method}, sasl_username={user}"));
        }
        mail_info!(SERVICE, "{client_line}");
        if let Some(mid) = &cleaned.message_id {
            mail_info!("cleanup", "{}: message-id={mid}", cleaned.queue_id);
        }
        match cleaned.disposition {
            Disposition::Rejected { dsn, text } => {
                let code = if dsn.starts_with('4') { 450 } else { 550 };
                return format!("{code} {dsn} {text}");
            }
            Disposition::Queued if tx.hold.is_some() => {
                // TODO: let cleanup commit straight to hold (an Envelope flag); until then the
                // file is moved, which can lose the race with the queue manager.
                let store = self.shared.store.clone();
                let id = cleaned.queue_id.clone();
                let moved =
                    tokio::task::spawn_blocking(move || store.move_to(&id, QueueName::Incoming, QueueName::Hold)).await;
                if !matches!(moved, Ok(Ok(_))) {
                    mail_warning!(SERVICE, "{}: could not put the message on hold", cleaned.queue_id);
                }
            }
            _ => (self.shared.wake)(),
        }
        reply::queued(&cleaned.queue_id)
    }

    fn vrfy(&mut self, arg: &str) {
        if self.cfg.disable_vrfy_command() {
            self.reply(reply::VRFY_DISABLED);
        } else if arg.is_empty() {
            self.reply(reply::SYNTAX_VRFY);
        } else {
            // Postfix's answer when it does not look the address up.
            self.reply("252 2.0.0 Send mail and find out");
        }
    }

    async fn etrn(&mut self, arg: &str) -> Flow {
        if self.tls_required() {
            return Flow::Go;
        }
        if arg.is_empty() {
            self.reply(reply::SYNTAX_ETRN);
            return Flow::Go;
        }
        if self.tx.is_some() {
            self.reply(reply::IN_TRANSACTION);
            return Flow::Go;
        }
        if let Some(rejected) = self.check(&[Stage::Etrn], None, None, Some(arg)).await {
            self.reply(&rejected);
            return Flow::Go;
        }
        // TODO: flush only the named site's mail (fast_flush_domains); today the whole queue.
        mail_info!(SERVICE, "ETRN {} from {}: flushing the queue", printable(arg), self.peer);
        (self.shared.flush)();
        self.reply(reply::QUEUING_STARTED);
        Flow::Go
    }

    async fn starttls(&mut self, arg: &str) -> Flow {
        if !arg.is_empty() {
            self.reply(reply::SYNTAX_STARTTLS);
            return Flow::Go;
        }
        if self.conn.is_tls() {
            self.reply(reply::TLS_ACTIVE);
            return Flow::Go;
        }
        let Some(acceptor) = self.svc.tls.clone() else {
            self.reply(reply::NOT_IMPLEMENTED);
            return Flow::Go;
        };
        self.reply(reply::READY_TLS);
        if self.flush().await.is_err() {
            return Flow::Quit;
        }
        // At this point there must not be any pending plaintext (CVE-2011-0411): what the
        // client pipelined after STARTTLS is dropped unread.
        if !self.input.is_empty() {
            mail_warning!(SERVICE, "{}: discarding {} byte(s) sent after STARTTLS", self.peer, self.input.len());
        }
        self.input = Vec::new();
        self.discarding = false;
        let handshake = tokio::time::timeout(self.cfg.smtpd_timeout(), self.conn.start_tls(&acceptor)).await;
        match handshake {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                mail_warning!(SERVICE, "TLS handshake failed for {}: {e}", self.peer);
                self.last_code = 454;
                return Flow::Quit;
            }
            Err(_) => {
                mail_info!(SERVICE, "timeout after STARTTLS from {}", self.peer);
                return Flow::Quit;
            }
        }
        let description = self.conn.tls_description().unwrap_or_default();
        mail_info!(SERVICE, "Anonymous TLS connection established from {}: {description}", self.peer);
        // RFC 3207 §4.2: forget everything learnt before TLS; the client starts with EHLO.
        self.tx = None;
        self.esmtp = false;
        self.client.helo = None;
        self.client.tls = true;
        self.session_hold = None;
        self.session_discard = None;
        Flow::Go
    }

    async fn auth(&mut self, arg: &str) -> Flow {
        if self.tls_required() {
            return Flow::Go;
        }
        if !self.auth_offered() {
            self.reply(if self.client.sasl_username.is_some() {
                reply::ALREADY_AUTHENTICATED
            } else {
                reply::AUTH_NOT_ENABLED
            });
            return Flow::Go;
        }
        if self.tx.is_some() {
            self.reply(reply::IN_TRANSACTION);
            return Flow::Go;
        }
        let mut words = arg.split_whitespace();
        let Some(mechanism) = words.next().map(str::to_ascii_uppercase) else {
            self.reply(reply::SYNTAX_AUTH);
            return Flow::Go;
        };
        let initial = words.next().map(str::to_string);
        let credentials = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.challenge("").await {
                        Ok(Some(r)) => r,
                        Ok(None) => return Flow::Go,
                        Err(flow) => return flow,
                    },
                };
                let decoded = if response == "=" { Some(Vec::new()) } else { BASE64.decode(response.as_bytes()).ok() };
                match decoded.as_deref().and_then(split_plain) {
                    Some(c) => c,
                    None => {
                        self.reply(reply::BAD_BASE64);
                        return Flow::Go;
                    }
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => r,
                    None => match self.challenge("VXNlcm5hbWU6").await {
                        Ok(Some(r)) => r,
                        Ok(None) => return Flow::Go,
                        Err(flow) => return flow,
                    },
                };
                let password = match self.challenge("UGFzc3dvcmQ6").await {
                    Ok(Some(r)) => r,
                    Ok(None) => return Flow::Go,
                    Err(flow) => return flow,
                };
                let decode = |s: &str| BASE64.decode(s.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok());
                match (decode(&user), decode(&password)) {
                    (Some(user), Some(password)) => (None, user, password),
                    _ => {
                        self.reply(reply::BAD_BASE64);
                        return Flow::Go;
                    }
                }
            }
            _ => {
                self.reply(reply::AUTH_MECHANISM);
                return Flow::Go;
            }
        };
        let (authzid, user, password) = credentials;
        let Some(verifier) = &self.svc.verifier else { return Flow::Go };
        let connection = Connection { client: self.client.addr, local: self.local, secured: self.client.tls };
        match verifier.check_with(authzid.as_deref(), &user, &password, connection).await {
            Check::Ok { username } => {
                self.client.sasl_username = Some(username);
                self.sasl_method = Some(mechanism);
                self.reply(reply::AUTH_OK);
            }
            Check::Failed => {
                mail_warning!(SERVICE, "{}: SASL {mechanism} authentication failed: authentication failure", self.peer);
                self.reply(reply::AUTH_FAILED);
            }
            Check::Unavailable(why) => {
                mail_warning!(SERVICE, "{}: SASL {mechanism} authentication unavailable: {why}", self.peer);
                self.reply("454 4.7.0 Temporary authentication failure");
            }
        }
        Flow::Go
    }

    /// Sends `334 challenge` and reads the answer; None when the client cancelled ("*"),
    /// after the reply that says so.
    async fn challenge(&mut self, challenge: &str) -> Result<Option<String>, Flow> {
        self.reply(&format!("334 {challenge}"));
        match self.read_line().await {
            Ok(line) => {
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line == "*" {
                    self.reply(reply::AUTH_ABORTED);
                    return Ok(None);
                }
                Ok(Some(line))
            }
            Err(ReadError::TooLong) => {
                self.reply(reply::LINE_TOO_LONG);
                Ok(None)
            }
            Err(ReadError::Timeout) => {
                self.reply(&reply::timeout(self.cfg.myhostname()));
                Err(Flow::Quit)
            }
            Err(ReadError::Lost) => Err(Flow::Quit),
        }
    }
}

/// Client text fit for the log and for headers: control characters (a CR, say) become `?`,
/// as Postfix's printable() does.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// PLAIN's `authzid NUL authcid NUL passwd` (RFC 4616).
fn split_plain(bytes: &[u8]) -> Option<(Option<String>, String, String)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    let authzid = (!authzid.is_empty()).then(|| authzid.to_string());
    Some((authzid, user.to_string(), password.to_string()))
}

/// `FROM:<a@b> KEY=VALUE ...` into the path and the upper-cased parameter names (also used by
/// `sendmail -bs`).
pub(crate) fn split_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, Vec<(String, String)>)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let (path, params) = if rest.starts_with('<') {
        let end = rest.find('>')?;
        (&rest[..=end], &rest[end + 1..])
    } else {
        rest.split_once(' ').unwrap_or((rest, ""))
    };
    if path.is_empty() {
        return None;
    }
    let params = params
        .split_whitespace()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_ascii_uppercase(), v.to_string())
        })
        .collect();
    Some((path, params))
}

/// `TO:<a@b> NOTIFY=... ORCPT=...`, or the reply that refuses it (also used by `sendmail -bs`).
pub(crate) fn parse_rcpt(arg: &str) -> Result<Recipient, &'static str> {
    let (path, params) = split_path(arg, "TO:").ok_or(reply::SYNTAX_RCPT)?;
    let address = address::parse_path(path).map_err(|_| reply::BAD_RECIPIENT)?;
    if address.is_empty() {
        return Err(reply::BAD_RECIPIENT);
    }
    let mut rcpt = Recipient::new(address);
    for (key, value) in params {
        match key.as_str() {
            "NOTIFY" => {
                for word in value.split(',') {
                    rcpt.notify.push(match word.to_ascii_uppercase().as_str() {
                        "NEVER" => Notify::Never,
                        "SUCCESS" => Notify::Success,
                        "FAILURE" => Notify::Failure,
                        "DELAY" => Notify::Delay,
                        _ => return Err(reply::BAD_NOTIFY),
                    });
                }
                if rcpt.notify.contains(&Notify::Never) && rcpt.notify.len() > 1 {
                    return Err(reply::BAD_NOTIFY);
                }
            }
            "ORCPT" if !value.is_empty() && value.len() <= 500 => rcpt.orcpt = Some(value),
            _ => return Err("555 5.5.4 Unsupported option"),
        }
    }
    Ok(rcpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_parameters() {
        let (p, params) = split_path("FROM:<a@b> SIZE=10 body=8bitmime", "FROM:").unwrap();
        assert_eq!(p, "<a@b>");
        assert_eq!(params, vec![("SIZE".into(), "10".into()), ("BODY".into(), "8bitmime".into())]);
        assert_eq!(split_path("from: <>", "FROM:").unwrap().0, "<>");
        assert!(split_path("TO:<a@b>", "FROM:").is_none());
        assert!(split_path("FROM:", "FROM:").is_none());
        assert!(split_path("é", "FROM:").is_none());
    }

    #[test]
    fn rcpt_dsn_parameters() {
        let r = parse_rcpt("TO:<x@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y").unwrap();
        assert_eq!(r.notify, vec![Notify::Success, Notify::Failure]);
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;x@y"));
        assert!(parse_rcpt("TO:<x@y> NOTIFY=NEVER,DELAY").is_err());
        assert!(parse_rcpt("TO:<>").is_err());
    }

    #[test]
    fn client_text_is_made_printable() {
        assert_eq!(printable("pc\r.example\u{1b}"), "pc?.example?");
    }

    #[test]
    fn plain_credentials() {
        assert_eq!(split_plain(b"\0user\0pw"), Some((None, "user".into(), "pw".into())));
        assert_eq!(split_plain(b"admin\0user\0pw"), Some((Some("admin".into()), "user".into(), "pw".into())));
        assert_eq!(split_plain(b"user\0pw"), None);
    }
}
