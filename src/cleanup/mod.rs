//! cleanup: the one door every message passes on its way into the queue.
//!
//! It qualifies envelope addresses (a bare `user` gets `@$myorigin`), adds the headers a
//! message must have (Received:, From:, Date:, Message-ID:), and streams the content into a
//! new queue file, enforcing message_size_limit as it goes. Later issues add canonical maps,
//! masquerading, virtual aliases and header/body checks here.

use std::io::{self, BufRead, Read};

use crate::address;
use crate::config::Config;
use crate::message::{self, HeaderBlock, HeaderLimits};
use crate::queue::{Envelope, MessageWriter, Origin, QueueError, QueueName, QueueStore};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("message size exceeds limit of {limit} bytes")]
    TooBig { limit: u64 },
    #[error("no recipients specified")]
    NoRecipients,
    /// Reading the input failed (for pickup: the maildrop file is damaged).
    #[error("read error: {0}")]
    Input(io::Error),
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

/// What went into the queue.
#[derive(Debug)]
pub struct Cleaned {
    pub queue_id: String,
    pub message_id: Option<String>,
    pub sender: String,
    pub size: u64,
    pub nrcpt: usize,
}

/// Clean up one message and commit it durably to `incoming`.
pub fn cleanup(
    cfg: &Config,
    store: &QueueStore,
    mut envelope: Envelope,
    content: &mut dyn BufRead,
) -> Result<Cleaned, CleanupError> {
    let myorigin = cfg.myorigin();
    envelope.sender = address::qualify(&envelope.sender, myorigin);
    for rcpt in &mut envelope.recipients {
        rcpt.address = address::qualify(&rcpt.address, myorigin);
        rcpt.original = address::qualify(&rcpt.original, myorigin);
    }
    dedupe_recipients(&mut envelope);
    if envelope.recipients.is_empty() {
        return Err(CleanupError::NoRecipients);
    }

    let limits =
        HeaderLimits { header_size_limit: cfg.header_size_limit(), line_length_limit: cfg.line_length_limit() };
    let (mut headers, body_start) =
        message::read_header_block(content, &limits).map_err(|e| CleanupError::Input(io::Error::other(e)))?;

    let mut writer = store.create(QueueName::Incoming, cfg.message_size_limit())?;
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
    if !headers.has("From") {
        headers.push("From", &message::from_header_value(&envelope.sender, submission.full_name.as_deref()));
    }
    if !headers.has("Date") {
        headers.push("Date", &message::date_header_value(now));
    }
    let message_id = match headers.get("Message-ID") {
        Some(h) => Some(h.value().trim().to_string()),
        None => {
            let id = message::message_id_value(writer.id(), cfg.myhostname(), now);
            headers.push("Message-ID", &id);
            Some(id)
        }
    };

    write_message(&mut writer, &headers, &body_start, content).map_err(|e| match e {
        CopyError::Read(e) => CleanupError::Input(e),
        CopyError::Write(e) => e.into(),
    })?;

    let size = writer.size();
    let queue_id = store.commit(writer, &envelope)?;
    Ok(Cleaned { queue_id, message_id, sender: envelope.sender, size, nrcpt: envelope.recipients.len() })
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
    let mut head = Vec::with_capacity(headers.len_bytes() + 1);
    headers.write_to(&mut head).map_err(CopyError::Read)?;
    head.push(b'\n');
    writer.write_content(&head).map_err(CopyError::Write)?;
    writer.write_content(body_start).map_err(CopyError::Write)?;
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

/// The same recipient twice gets the message once (Postfix's duplicate elimination).
fn dedupe_recipients(envelope: &mut Envelope) {
    let mut seen = std::collections::HashSet::new();
    envelope.recipients.retain(|r| seen.insert(r.address.to_ascii_lowercase()));
}
