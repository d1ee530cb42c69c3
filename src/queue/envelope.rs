//! What a queue file says about a message besides its content: the envelope.
//!
//! Stored as the JSON payload of the envelope record (see `record.rs`); later state changes
//! are appended as `Update` records and folded in with `Envelope::apply`.

use serde::{Deserialize, Serialize};

/// Where a message came from: the sendmail command (the submitting uid, taken from the
/// maildrop file's owner, never from its content) or an SMTP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Local { uid: u32 },
    Smtp { client_name: String, client_addr: String, helo: Option<String>, protocol: String },
}

/// DSN RET (RFC 3461): how much of the message a bounce returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

/// DSN NOTIFY (RFC 3461). An empty list means the default (failure and delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    Never,
    Success,
    Failure,
    Delay,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Not yet delivered; `reason` says why it waits, if it was tried or held.
    #[default]
    Pending,
    /// Delivered (2xx or written to the mailbox): never to be sent again.
    Sent,
    /// Failed permanently; a bounce has been (or will be) sent.
    Bounced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address mail is delivered to (after rewriting).
    pub address: String,
    /// The address as it arrived, before any rewriting (Postfix's orig_to).
    pub original: String,
    /// DSN ORCPT as given by the client (`rfc822;user@example`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    #[serde(default)]
    pub state: RcptState,
    /// Enhanced status code of the last outcome (`4.3.2`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn: Option<String>,
    /// Why the recipient waits or failed, as mailq shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Recipient {
        let address = address.into();
        Recipient {
            original: address.clone(),
            address,
            orcpt: None,
            notify: Vec::new(),
            state: RcptState::Pending,
            dsn: None,
            reason: None,
        }
    }
}

/// Instructions from the sendmail command to cleanup, kept only in maildrop files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// `-F`: full name for a From: header that cleanup adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The sender was not given with -f/-r: cleanup uses the submitting user's login name.
    #[serde(default)]
    pub sender_from_uid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Arrival time, microseconds since the epoch.
    pub arrival_us: i64,
    pub origin: Origin,
    /// DSN ENVID (RFC 3461), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// Message-level delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Earliest time of the next attempt, seconds since the epoch (0 = now).
    #[serde(default)]
    pub next_attempt: i64,
    /// Only in maildrop files: what the sendmail command asked of cleanup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submission>,
}

/// A state change appended to a queue file after it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    Recipient {
        index: usize,
        state: RcptState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dsn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Schedule {
        attempts: u32,
        next_attempt: i64,
    },
}

impl Envelope {
    /// A new message's envelope: nothing tried yet, no DSN options.
    pub fn new(sender: impl Into<String>, recipients: Vec<Recipient>, origin: Origin, arrival_us: i64) -> Envelope {
        Envelope {
            sender: sender.into(),
            recipients,
            arrival_us,
            origin,
            envid: None,
            ret: None,
            attempts: 0,
            next_attempt: 0,
            submission: None,
        }
    }

    /// Fold one appended update into the envelope. An update naming a recipient that does not
    /// exist means the file is not what it claims to be.
    pub fn apply(&mut self, update: &Update) -> Result<(), String> {
        match update {
            Update::Recipient { index, state, dsn, reason } => {
                let count = self.recipients.len();
                let r = self
                    .recipients
                    .get_mut(*index)
                    .ok_or_else(|| format!("update for recipient #{index}, message has {count}"))?;
                r.state = *state;
                r.dsn = dsn.clone();
                r.reason = reason.clone();
            }
            Update::Schedule { attempts, next_attempt } => {
                self.attempts = *attempts;
                self.next_attempt = *next_attempt;
            }
        }
        Ok(())
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients.iter().enumerate().filter(|(_, r)| r.state == RcptState::Pending)
    }
}
