//! cleanup: the one door every message passes on its way into the queue.
//!
//! In Postfix's order:
//!
//! 1. The envelope sender and each recipient are brought into canonical form (`trivial`:
//!    source routes, `user%domain`, `site!user`, `@$myorigin`, `.$mydomain`, trailing dot),
//!    then mapped by sender_canonical_maps / recipient_canonical_maps and canonical_maps
//!    (`canonical`, limited by the *_classes parameters), then masqueraded (`masquerade`,
//!    masquerade_classes).
//! 2. Each recipient is expanded through virtual_alias_maps (`virtual_alias`); duplicates
//!    are removed. A result that has moved (relocated_maps, `relocated`) or that is in a
//!    virtual alias domain without an alias gets its verdict here: it stays pending with a
//!    permanent status (`5.1.6 User has moved to ...`, `5.1.1 User unknown in virtual alias
//!    table`), and the queue manager hands it to the `error` transport, which bounces it.
//! 3. Each header is matched against header_checks (`checks`), then the addresses of the
//!    sender and recipient headers are rewritten like envelope addresses (canonical maps and
//!    masquerading by class; never virtual aliases), keeping everything but the addresses
//!    byte-exact (`header_rewrite`). Headers of local submissions are always rewritten;
//!    those from SMTP clients only when local_header_rewrite_clients says so, or, with
//!    remote_header_rewrite_domain set, in the "remote" context.
//! 4. The headers a message must have are added (Received:, From:, Date:, Message-ID:), the
//!    content is streamed into a new queue file (body lines matched against body_checks up
//!    to body_checks_size_limit), and the file is committed to `incoming`, or to `hold`
//!    after a HOLD action.
//!
//! A table that cannot be opened or asked means the message is not accepted now: cleanup
//! logs why and returns a temporary error (for pickup: the file stays in maildrop and is
//! tried again). Nothing is bounced because a table was down.

pub mod canonical;
pub mod checks;
pub mod header_rewrite;
pub mod mapping;
pub mod masquerade;
pub mod relocated;
pub mod trivial;
pub mod virtual_alias;

use std::collections::HashSet;
use std::io::{self, BufRead, Read};
use std::net::IpAddr;
use std::sync::Arc;

use self::canonical::{Canonical, Class, Classes};
use self::checks::{Checks, LineAction, LogContext, Part, Verdict};
use self::mapping::Lookup;
use self::masquerade::Masquerade;
use self::relocated::Relocated;
use self::trivial::Context;
use self::virtual_alias::VirtualAlias;
use crate::config::Config;
use crate::log::Severity;
use crate::maps::search::{self, DomainList, ListStyle, LocalDomains, NetworkList};
use crate::maps::{self, Map, MapError};
use crate::message::{self, Header, HeaderBlock, HeaderLimits};
use crate::queue::{Envelope, MessageWriter, Origin, QueueError, QueueName, QueueStore, Recipient};

const SERVICE: &str = "cleanup";

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("message size exceeds limit of {limit} bytes")]
    TooBig { limit: u64 },
    #[error("no recipients specified")]
    NoRecipients,
    /// Reading the input failed (for pickup: the maildrop file is damaged).
    #[error("read error: {0}")]
    Input(io::Error),
    /// The message cannot be queued now (disk trouble, a lookup table that cannot answer, a
    /// 4.x.x REJECT): try again later.
    #[error("{0}")]
    Queue(QueueError),
}

impl From<QueueError> for CleanupError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::TooBig { limit } => CleanupError::TooBig { limit },
            e => CleanupError::Queue(e),
        }
    }
}

/// What became of a message that cleanup accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Committed to incoming, for the queue manager.
    Queued,
    /// Committed to hold (a HOLD action): waits for the admin.
    Held,
    /// Accepted and dropped (a DISCARD action): nothing was queued.
    Discarded,
    /// Refused by a REJECT action, for mail from an SMTP client (the server answers with
    /// this status and text); nothing was queued. Local submissions are never refused:
    /// their recipients bounce instead.
    Rejected { dsn: String, text: String },
}

/// What cleanup did with a message.
#[derive(Debug)]
pub struct Cleaned {
    pub queue_id: String,
    pub message_id: Option<String>,
    pub sender: String,
    pub size: u64,
    pub nrcpt: usize,
    pub disposition: Disposition,
}

/// Why a message cannot be accepted now: the text of the log line (`canonical_maps map
/// lookup problem for x@y`), and the table's own error, if one is behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defer {
    pub text: String,
    pub detail: Option<String>,
}

impl Defer {
    pub fn new(text: impl Into<String>) -> Defer {
        Defer { text: text.into(), detail: None }
    }

    /// A table behind `parameter` could not be asked about `address`.
    pub fn lookup(parameter: &str, address: &str, error: MapError) -> Defer {
        Defer { text: format!("{parameter} map lookup problem for {address}"), detail: Some(error.to_string()) }
    }

    /// A table named in `parameter` could not be opened.
    fn open(parameter: &str, error: MapError) -> Defer {
        Defer { text: format!("{parameter}: cannot open table"), detail: Some(error.to_string()) }
    }

    fn into_error(self) -> CleanupError {
        let text = match &self.detail {
            Some(detail) => format!("{} ({detail}) -- message not accepted, try again later", self.text),
            None => format!("{} -- message not accepted, try again later", self.text),
        };
        CleanupError::Queue(QueueError::Io(io::Error::other(text)))
    }
}

/// Log lines about one message. Until the message has a queue ID they are kept; from then on
/// they are written at once, as `QID: text`.
#[derive(Debug, Default)]
pub struct Notes {
    queue_id: Option<String>,
    pending: Vec<(Severity, String)>,
}

impl Notes {
    pub fn info(&mut self, text: String) {
        self.emit(Severity::Info, text);
    }

    pub fn warning(&mut self, text: String) {
        self.emit(Severity::Warning, text);
    }

    fn emit(&mut self, severity: Severity, text: String) {
        match &self.queue_id {
            Some(id) => crate::log::log(SERVICE, severity, format_args!("{id}: {text}")),
            None => self.pending.push((severity, text)),
        }
    }

    /// The message has its queue ID: write what was kept.
    fn start(&mut self, queue_id: &str) {
        self.queue_id = Some(queue_id.to_string());
        for (severity, text) in std::mem::take(&mut self.pending) {
            self.emit(severity, text);
        }
    }

    /// Log why the message is not accepted.
    fn defer(&mut self, defer: &Defer) {
        if let Some(detail) = &defer.detail {
            self.warning(detail.clone());
        }
        self.warning(format!("{} -- message not accepted, try again later", defer.text));
    }

    /// The kept lines, `info: ...` / `warning: ...`, one per line (for tests).
    #[cfg(test)]
    pub fn pending_text(&self) -> String {
        self.pending
            .iter()
            .map(|(severity, text)| {
                let label = if *severity == Severity::Info { "info" } else { "warning" };
                format!("{label}: {text}\n")
            })
            .collect()
    }
}

/// Opens a table by its `type:name` (`maps::open`; tests give tables of their own).
pub type Opener<'a> = &'a search::OpenFn;

fn open_list(parameter: &str, specs: &[String], open: Opener<'_>) -> Result<Vec<Arc<dyn Map>>, Defer> {
    specs.iter().map(|spec| open(spec)).collect::<Result<_, _>>().map_err(|e| Defer::open(parameter, e))
}

fn limit(value: i64) -> usize {
    usize::try_from(value.max(1)).unwrap_or(usize::MAX)
}

/// Everything the rewriting of one message needs, tables opened.
pub struct Rewriter {
    local: Context,
    remote: Option<Context>,
    delimiters: String,
    local_domains: LocalDomains,
    sender_canonical: Canonical,
    recipient_canonical: Canonical,
    canonical: Canonical,
    masquerade: Masquerade,
    masquerade_classes: Classes,
    propagate_canonical: bool,
    propagate_virtual: bool,
    virtual_alias: VirtualAlias,
    virtual_domains: DomainList,
    relocated: Relocated,
    header_checks: Checks,
    body_checks: Checks,
    empty_address_recipient: String,
}

impl Rewriter {
    /// Read the rewriting parameters and open their tables.
    pub fn open(cfg: &Config, open: Opener<'_>) -> Result<Rewriter, Defer> {
        let list = |parameter: &str, entries: &[String], style: ListStyle| {
            DomainList::with_opener(entries, style, open).map_err(|e| Defer::open(parameter, e))
        };
        let destinations = list("mydestination", cfg.mydestination(), ListStyle::Exact)?;
        let propagate = cfg.propagate_unmatched_extensions();
        let propagates = |what: &str| propagate.iter().any(|p| p.eq_ignore_ascii_case(what));
        Ok(Rewriter {
            local: Context::local(cfg),
            remote: Context::remote(cfg),
            delimiters: cfg.recipient_delimiter().to_string(),
            local_domains: LocalDomains::new(
                cfg.myorigin(),
                destinations,
                search::interface_addresses(cfg.inet_interfaces()),
            ),
            sender_canonical: Canonical {
                title: "sender_canonical_maps",
                maps: open_list("sender_canonical_maps", cfg.sender_canonical_maps(), open)?,
                classes: Classes::parse(cfg.sender_canonical_classes()),
            },
            recipient_canonical: Canonical {
                title: "recipient_canonical_maps",
                maps: open_list("recipient_canonical_maps", cfg.recipient_canonical_maps(), open)?,
                classes: Classes::parse(cfg.recipient_canonical_classes()),
            },
            canonical: Canonical {
                title: "canonical_maps",
                maps: open_list("canonical_maps", cfg.canonical_maps(), open)?,
                classes: Classes::parse(cfg.canonical_classes()),
            },
            masquerade: Masquerade {
                domains: cfg.masquerade_domains().to_vec(),
                exceptions: list("masquerade_exceptions", cfg.masquerade_exceptions(), ListStyle::Exact)?,
            },
            masquerade_classes: Classes::parse(cfg.masquerade_classes()),
            propagate_canonical: propagates("canonical"),
            propagate_virtual: propagates("virtual"),
            virtual_alias: VirtualAlias {
                maps: open_list("virtual_alias_maps", cfg.virtual_alias_maps(), open)?,
                expansion_limit: limit(cfg.virtual_alias_expansion_limit()),
                recursion_limit: limit(cfg.virtual_alias_recursion_limit()),
            },
            virtual_domains: list(
                "virtual_alias_domains",
                cfg.virtual_alias_domains(),
                ListStyle::Domain { parent: search::parent_matches(cfg, "virtual_alias_domains") },
            )?,
            relocated: Relocated { maps: open_list("relocated_maps", cfg.relocated_maps(), open)? },
            header_checks: Checks::new(open_list("header_checks", cfg.header_checks(), open)?, Part::Header),
            body_checks: Checks::new(open_list("body_checks", cfg.body_checks(), open)?, Part::Body),
            empty_address_recipient: cfg.empty_address_recipient().to_string(),
        })
    }

    fn lookup(&self) -> Lookup<'_> {
        Lookup { delimiters: &self.delimiters, local: &self.local_domains, rewrite: &self.local }
    }

    /// Canonical maps and masquerading for one address of `class`.
    fn map_address(&self, class: Class, address: &str, notes: &mut Notes) -> Result<String, Defer> {
        let lookup = self.lookup();
        let propagate = self.propagate_canonical;
        let specific = match class {
            Class::EnvelopeSender | Class::HeaderSender => &self.sender_canonical,
            Class::EnvelopeRecipient | Class::HeaderRecipient => &self.recipient_canonical,
        };
        let address = specific.apply(class, address, propagate, &lookup, notes)?;
        let address = self.canonical.apply(class, &address, propagate, &lookup, notes)?;
        if self.masquerade_classes.has(class) && !self.masquerade.is_empty() {
            match self.masquerade.apply(&address) {
                Ok(Some(masqueraded)) => return Ok(masqueraded),
                Ok(None) => {}
                Err(e) => return Err(Defer::lookup("masquerade_exceptions", &address, e)),
            }
        }
        Ok(address)
    }

    /// The envelope sender: canonical form, `MAILER-DAEMON@$myorigin` as the null sender,
    /// sender canonical maps, masquerading. The null sender stays null.
    pub fn rewrite_sender(&self, sender: &str, notes: &mut Notes) -> Result<String, Defer> {
        if sender.is_empty() {
            return Ok(String::new());
        }
        let sender = trivial::canonicalize(sender, &self.local);
        if sender.eq_ignore_ascii_case(&trivial::canonicalize("MAILER-DAEMON", &self.local)) {
            return Ok(String::new());
        }
        self.map_address(Class::EnvelopeSender, &sender, notes)
    }

    /// One envelope recipient: the addresses it becomes, each a copy of it with its new
    /// address, and with a verdict when it must bounce.
    pub fn rewrite_recipient(&self, rcpt: &Recipient, notes: &mut Notes) -> Result<Vec<Recipient>, Defer> {
        let given = if rcpt.address.is_empty() { self.empty_address_recipient.as_str() } else { &rcpt.address };
        let address = trivial::canonicalize(given, &self.local);
        let address = self.map_address(Class::EnvelopeRecipient, &address, notes)?;
        let expanded = self.virtual_alias.expand(&address, self.propagate_virtual, &self.lookup())?;
        let mut out = Vec::with_capacity(expanded.len());
        for address in expanded {
            let mut r = rcpt.clone();
            if let Some((dsn, text)) = self.verdict(&address, notes)? {
                r.dsn = Some(dsn.to_string());
                r.reason = Some(text);
            }
            r.address = address;
            out.push(r);
        }
        Ok(out)
    }

    /// Why `address` cannot be delivered, if it cannot: it has moved (relocated_maps), or it
    /// is in a virtual alias domain and no alias took it elsewhere.
    fn verdict(&self, address: &str, notes: &mut Notes) -> Result<Option<(&'static str, String)>, Defer> {
        if let Some(new) = self.relocated.new_address(address, &self.delimiters, &self.local_domains)? {
            let (dsn, text) = relocated::bounce_text(&new);
            return Ok(Some((dsn, text)));
        }
        let Some(at) = trivial::last_at(address) else {
            return Ok(None);
        };
        let domain = &address[at + 1..];
        if self.virtual_domains.is_empty() {
            return Ok(None);
        }
        let listed =
            self.virtual_domains.matches(domain).map_err(|e| Defer::lookup("virtual_alias_domains", address, e))?;
        if !listed {
            return Ok(None);
        }
        let local = self.local_domains.is_local(domain).map_err(|e| Defer::lookup("mydestination", address, e))?;
        if local {
            notes.warning(format!("do not list domain {domain} in BOTH mydestination and virtual_alias_domains"));
            return Ok(None);
        }
        Ok(Some(("5.1.1", "User unknown in virtual alias table".to_string())))
    }

    /// Rewrite the addresses of one header field, if it is a sender or recipient header.
    fn rewrite_header(&self, header: &Header, ctx: &Context, notes: &mut Notes) -> Result<Option<Header>, Defer> {
        let Some(class) = header_rewrite::header_class(&header.name) else {
            return Ok(None);
        };
        header_rewrite::rewrite_header(header, |address| {
            let address = trivial::canonicalize(address, ctx);
            self.map_address(class, &address, notes)
        })
    }
}

/// The rewriting context for the headers of a message from `origin`: local for local
/// submissions and for SMTP clients that local_header_rewrite_clients names, remote (if
/// remote_header_rewrite_domain is set) for other clients, else none: their headers are
/// left alone.
fn header_context(
    cfg: &Config,
    rw: &Rewriter,
    origin: &Origin,
    open: Opener<'_>,
    notes: &mut Notes,
) -> Result<Option<Context>, Defer> {
    let client = match origin {
        Origin::Local { .. } => return Ok(Some(rw.local.clone())),
        Origin::Smtp { client_addr, .. } => client_addr,
    };
    if rewrites_like_local(cfg, client, open, notes)? { Ok(Some(rw.local.clone())) } else { Ok(rw.remote.clone()) }
}

/// Whether an SMTP client's headers are rewritten as if the mail were local
/// (local_header_rewrite_clients). permit_sasl_authenticated and the TLS client
/// certificate rules need the SMTP session, which cleanup does not see: they do not match.
fn rewrites_like_local(cfg: &Config, client: &str, open: Opener<'_>, notes: &mut Notes) -> Result<bool, Defer> {
    const PARAMETER: &str = "local_header_rewrite_clients";
    let key = search::ip_key(client);
    let addr: Option<IpAddr> = key.parse().ok();
    let table_has = |spec: &str| -> Result<bool, Defer> {
        let map = open(spec).map_err(|e| Defer::open(PARAMETER, e))?;
        let found =
            search::find_in(map.as_ref(), &key, search::Key::Whole).map_err(|e| Defer::lookup(PARAMETER, client, e))?;
        Ok(found.is_some())
    };
    let mut rules = cfg.local_header_rewrite_clients().iter();
    while let Some(rule) = rules.next() {
        let matched = match rule.to_ascii_lowercase().as_str() {
            "permit_inet_interfaces" => {
                addr.is_some_and(|a| search::interface_addresses(cfg.inet_interfaces()).contains(&a))
            }
            "permit_mynetworks" => match addr {
                Some(a) => NetworkList::with_opener(cfg.mynetworks(), open)
                    .and_then(|list| list.matches(a))
                    .map_err(|e| Defer::lookup("mynetworks", client, e))?,
                None => false,
            },
            "permit_sasl_authenticated" | "permit_tls_clientcerts" | "permit_tls_all_clientcerts" => false,
            "check_address_map" => match rules.next() {
                Some(spec) => table_has(spec)?,
                None => {
                    notes.warning(format!("{PARAMETER}: check_address_map without a table"));
                    false
                }
            },
            _ if rule.contains(':') => table_has(rule)?,
            other => {
                notes.warning(format!("parameter {PARAMETER}: invalid request: {other}"));
                false
            }
        };
        if matched {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Who the action log lines say sent the message.
fn log_context(envelope: &Envelope) -> LogContext {
    let (origin, proto, helo) = match &envelope.origin {
        Origin::Local { .. } => ("local".to_string(), None, None),
        Origin::Smtp { client_name, client_addr, helo, protocol } => {
            (format!("{client_name}[{client_addr}]"), Some(protocol.clone()), helo.clone())
        }
    };
    LogContext {
        origin,
        sender: envelope.sender.clone(),
        recipient: envelope.recipients.first().map(|r| r.original.clone()),
        proto,
        helo,
    }
}

/// A header field from action text (`Name: value`).
fn header_from_text(text: &str) -> Header {
    let (name, value) = text.split_once(':').unwrap_or((text, ""));
    Header::new(name.trim_end_matches([' ', '\t']), value)
}

/// A header as header_checks see it: `Name: value`, folded lines joined by their newlines,
/// no final newline.
fn header_text(header: &Header) -> String {
    let raw = header.raw.strip_suffix(b"\n").unwrap_or(&header.raw);
    String::from_utf8_lossy(raw).replace("\r\n", "\n")
}

/// The envelope and header part of cleanup: everything decided before the queue file exists.
struct Prepared {
    rw: Rewriter,
    verdict: Verdict,
    header_context: Option<Context>,
}

fn prepare(
    cfg: &Config,
    envelope: &mut Envelope,
    headers: &mut HeaderBlock,
    open: Opener<'_>,
    notes: &mut Notes,
) -> Result<Prepared, Defer> {
    let rw = Rewriter::open(cfg, open)?;
    envelope.sender = rw.rewrite_sender(&envelope.sender, notes)?;
    let mut recipients = Vec::with_capacity(envelope.recipients.len());
    for rcpt in &envelope.recipients {
        recipients.extend(rw.rewrite_recipient(rcpt, notes)?);
    }
    envelope.recipients = recipients;
    dedupe_recipients(envelope);

    let ctx = log_context(envelope);
    let header_context = header_context(cfg, &rw, &envelope.origin, open, notes)?;
    let mut verdict = Verdict::default();
    let mut out = Vec::with_capacity(headers.headers.len());
    for mut header in std::mem::take(&mut headers.headers) {
        let action = rw.header_checks.inspect(&header_text(&header), &mut verdict, &ctx, notes)?;
        if let Some(text) = &action.prepend {
            out.push(header_from_text(text));
        }
        if action.drop {
            continue;
        }
        if let Some(text) = &action.replace {
            header = header_from_text(text);
        }
        if let Some(hctx) = &header_context
            && let Some(rewritten) = rw.rewrite_header(&header, hctx, notes)?
        {
            header = rewritten;
        }
        out.push(header);
    }
    headers.headers = out;
    Ok(Prepared { rw, verdict, header_context })
}

/// Clean up one message and commit it durably to `incoming` (or `hold`).
pub fn cleanup(
    cfg: &Config,
    store: &QueueStore,
    envelope: Envelope,
    content: &mut dyn BufRead,
) -> Result<Cleaned, CleanupError> {
    cleanup_with(cfg, store, envelope, content, &maps::open)
}

/// [`cleanup`], opening tables with `open`.
pub fn cleanup_with(
    cfg: &Config,
    store: &QueueStore,
    mut envelope: Envelope,
    content: &mut dyn BufRead,
    open: Opener<'_>,
) -> Result<Cleaned, CleanupError> {
    let myorigin = cfg.myorigin();
    for rcpt in &mut envelope.recipients {
        rcpt.original = crate::address::qualify(&rcpt.original, myorigin);
    }
    dedupe_recipients(&mut envelope);
    if envelope.recipients.is_empty() {
        return Err(CleanupError::NoRecipients);
    }

    let limits =
        HeaderLimits { header_size_limit: cfg.header_size_limit(), line_length_limit: cfg.line_length_limit() };
    let (mut headers, body_start) =
        message::read_header_block(content, &limits).map_err(|e| CleanupError::Input(io::Error::other(e)))?;

    let mut notes = Notes::default();
    let prepared = prepare(cfg, &mut envelope, &mut headers, open, &mut notes);
    let queue = match &prepared {
        Ok(p) if p.verdict.hold && !p.verdict.discard && p.verdict.reject.is_none() => QueueName::Hold,
        _ => QueueName::Incoming,
    };
    let mut writer = store.create(queue, cfg.message_size_limit())?;
    notes.start(writer.id());
    let Prepared { rw, mut verdict, header_context } = match prepared {
        Ok(p) => p,
        Err(defer) => {
            notes.defer(&defer);
            return Err(defer.into_error());
        }
    };
    if verdict.deferred() || verdict.discard {
        let message_id = headers.get("Message-ID").map(|h| h.value().trim().to_string());
        return finish_early(&writer, &envelope, message_id, verdict);
    }

    envelope.arrival_us = writer.arrival_us();
    let now = chrono::Local::now();
    let submission = envelope.submission.take().unwrap_or_default();
    if let Origin::Local { uid } = envelope.origin {
        let received = format!(
            "by {} ({}, from userid {uid})\n\tid {}; {}",
            cfg.myhostname(),
            cfg.mail_name(),
            writer.id(),
            message::date_header_value(now)
        );
        headers.insert_at_top("Received", &received);
    }
    // Postfix adds missing headers only where it rewrites headers (local mail, and clients
    // that local_header_rewrite_clients or remote_header_rewrite_domain cover).
    let add_missing = header_context.is_some();
    if add_missing && !headers.has("From") {
        headers.push("From", &message::from_header_value(&envelope.sender, submission.full_name.as_deref()));
    }
    if add_missing && !headers.has("Date") {
        headers.push("Date", &message::date_header_value(now));
    }
    let message_id = match headers.get("Message-ID") {
        Some(h) => Some(h.value().trim().to_string()),
        None if add_missing => {
            let id = message::message_id_value(writer.id(), cfg.myhostname(), now);
            headers.push("Message-ID", &id);
            Some(id)
        }
        None => None,
    };

    let ctx = log_context(&envelope);
    let body = BodyChecks {
        checks: &rw.body_checks,
        size_limit: cfg.body_checks_size_limit(),
        piece: usize::try_from(cfg.line_length_limit()).unwrap_or(usize::MAX).max(1),
        ctx: &ctx,
    };
    let copied = write_checked(&mut writer, &headers, &body_start, content, &body, &mut verdict, &mut notes).map_err(
        |e| match e {
            CopyError::Read(e) => CleanupError::Input(e),
            CopyError::Write(e) => e.into(),
        },
    )?;
    if let Err(defer) = copied {
        notes.defer(&defer);
        return Err(defer.into_error());
    }
    if verdict.deferred() || verdict.discard {
        return finish_early(&writer, &envelope, message_id, verdict);
    }

    if let Some((dsn, text)) = verdict.reject.clone() {
        if matches!(envelope.origin, Origin::Smtp { .. }) {
            return Ok(not_queued(&writer, &envelope, message_id, Disposition::Rejected { dsn, text }));
        }
        // Mail from the sendmail command cannot be refused: every recipient bounces.
        for rcpt in &mut envelope.recipients {
            rcpt.dsn = Some(dsn.clone());
            rcpt.reason = Some(text.clone());
        }
    }
    if let Err(defer) = redirect_and_bcc(&rw, &mut envelope, &verdict, &mut notes) {
        notes.defer(&defer);
        return Err(defer.into_error());
    }

    let size = writer.size();
    let held = verdict.hold && verdict.reject.is_none();
    let queue_id = store.commit(writer, &envelope)?;
    let wanted = if held { QueueName::Hold } else { QueueName::Incoming };
    if wanted != queue {
        // Decided by the body (a HOLD found there, or a REJECT after a header HOLD): the file
        // was started in the other queue. The queue manager runs in the same thread as
        // pickup, so it cannot have seen the file yet.
        store.move_to(&queue_id, queue, wanted)?;
    }
    let disposition = if held { Disposition::Held } else { Disposition::Queued };
    Ok(Cleaned { queue_id, message_id, sender: envelope.sender, size, nrcpt: envelope.recipients.len(), disposition })
}

/// The result for a message that ends before being committed (DISCARD, 4.x.x REJECT).
fn finish_early(
    writer: &MessageWriter,
    envelope: &Envelope,
    message_id: Option<String>,
    verdict: Verdict,
) -> Result<Cleaned, CleanupError> {
    if verdict.discard {
        return Ok(not_queued(writer, envelope, message_id, Disposition::Discarded));
    }
    // A 4.x.x REJECT: the reject line is logged already.
    let (dsn, text) = verdict.reject.unwrap_or_default();
    Err(Defer::new(format!("{dsn} {text}")).into_error())
}

fn not_queued(
    writer: &MessageWriter,
    envelope: &Envelope,
    message_id: Option<String>,
    disposition: Disposition,
) -> Cleaned {
    Cleaned {
        queue_id: writer.id().to_string(),
        message_id,
        sender: envelope.sender.clone(),
        size: 0,
        nrcpt: envelope.recipients.len(),
        disposition,
    }
}

/// REDIRECT: the message goes to that address instead. BCC: that address is added, as a
/// recipient of its own (rewritten and expanded like the others).
fn redirect_and_bcc(rw: &Rewriter, envelope: &mut Envelope, verdict: &Verdict, notes: &mut Notes) -> Result<(), Defer> {
    if let Some(target) = &verdict.redirect {
        let address = trivial::canonicalize(target, &rw.local);
        let original = envelope.recipients.first().map(|r| r.original.clone()).unwrap_or_else(|| address.clone());
        let mut rcpt = Recipient::new(address);
        rcpt.original = original;
        envelope.recipients = vec![rcpt];
    }
    for target in &verdict.bcc {
        let rcpt = Recipient::new(trivial::canonicalize(target, &rw.local));
        let expanded = rw.rewrite_recipient(&rcpt, notes)?;
        envelope.recipients.extend(expanded);
    }
    dedupe_recipients(envelope);
    Ok(())
}

/// Which side of a copy failed: the input (bad data) or the queue file (try later).
pub enum CopyError {
    Read(io::Error),
    Write(QueueError),
}

/// Stream a message into a queue file: the header block, the empty line that ends it, the
/// body bytes already read while looking for that line, and the rest of the input.
pub fn write_message(
    writer: &mut MessageWriter,
    headers: &HeaderBlock,
    body_start: &[u8],
    rest: &mut dyn Read,
) -> Result<(), CopyError> {
    write_head(writer, headers)?;
    writer.write_content(body_start).map_err(CopyError::Write)?;
    copy_rest(writer, rest)
}

fn write_head(writer: &mut MessageWriter, headers: &HeaderBlock) -> Result<(), CopyError> {
    let mut head = Vec::with_capacity(headers.len_bytes() + 1);
    headers.write_to(&mut head).map_err(CopyError::Read)?;
    head.push(b'\n');
    writer.write_content(&head).map_err(CopyError::Write)
}

fn copy_rest(writer: &mut MessageWriter, rest: &mut dyn Read) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => writer.write_content(&buf[..n]).map_err(CopyError::Write)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::Read(e)),
        }
    }
}

/// body_checks as the copy applies them.
struct BodyChecks<'a> {
    checks: &'a Checks,
    /// body_checks_size_limit: lines that start past this offset are not inspected (0: all).
    size_limit: u64,
    /// Lines longer than this (line_length_limit) are inspected in pieces of this size.
    piece: usize,
    ctx: &'a LogContext,
}

/// Read one line, or `cap` bytes of a longer one, appending to `out`. Returns false at EOF.
fn read_piece(input: &mut dyn BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(!out.is_empty());
        }
        let room = cap - out.len();
        let take = available.len().min(room);
        let (n, done) = match available[..take].iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (take, take == room),
        };
        out.extend_from_slice(&available[..n]);
        input.consume(n);
        if done {
            return Ok(true);
        }
    }
}

/// [`write_message`] with body_checks: each body line (or piece of a long line) that starts
/// within body_checks_size_limit is inspected until an action ends inspection; the rest is
/// copied as it is. The inner result says whether a table could not answer.
fn write_checked(
    writer: &mut MessageWriter,
    headers: &HeaderBlock,
    body_start: &[u8],
    rest: &mut dyn BufRead,
    body: &BodyChecks<'_>,
    verdict: &mut Verdict,
    notes: &mut Notes,
) -> Result<Result<(), Defer>, CopyError> {
    if body.checks.is_empty() || verdict.done {
        write_message(writer, headers, body_start, rest)?;
        return Ok(Ok(()));
    }
    write_head(writer, headers)?;
    let mut input = body_start.chain(rest);
    let mut offset: u64 = 0;
    let mut line = Vec::new();
    while !verdict.done && (body.size_limit == 0 || offset < body.size_limit) {
        line.clear();
        if !read_piece(&mut input, &mut line, body.piece).map_err(CopyError::Read)? {
            return Ok(Ok(()));
        }
        offset += line.len() as u64;
        let newline = line.ends_with(b"\n");
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let action = match body.checks.inspect(&String::from_utf8_lossy(text), verdict, body.ctx, notes) {
            Ok(action) => action,
            Err(defer) => return Ok(Err(defer)),
        };
        write_body_line(writer, &line, newline, &action)?;
    }
    copy_rest(writer, &mut input)?;
    Ok(Ok(()))
}

fn write_body_line(
    writer: &mut MessageWriter,
    line: &[u8],
    newline: bool,
    action: &LineAction,
) -> Result<(), CopyError> {
    let mut out = Vec::new();
    if let Some(text) = &action.prepend {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    if !action.drop {
        match &action.replace {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                if newline {
                    out.push(b'\n');
                }
            }
            None => out.extend_from_slice(line),
        }
    }
    writer.write_content(&out).map_err(CopyError::Write)
}

/// The same recipient twice gets the message once (Postfix's duplicate elimination); the
/// first keeps its place and its original address.
fn dedupe_recipients(envelope: &mut Envelope) {
    let mut seen = HashSet::new();
    envelope.recipients.retain(|r| seen.insert(r.address.to_lowercase()));
}

#[cfg(test)]
mod tests;
