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
    /// Seconds counted toward maximal_queue_lifetime: only time covered by attempts that
    /// failed for the message's own sake (a server's 4xx), never time held or offline.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_secs: i64,
    /// When the last such failed attempt was made (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<i64>,
    /// The sender was sent a delay notice already.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delay_warned: bool,
    /// A delivery attempt to this destination was under way: recorded durably before the
    /// message is sent, cleared by the attempt's results. Found set on a message that is not
    /// being delivered, it means the attempt was cut where the server may have taken the
    /// message (a crash, or a link lost while waiting for the reply to the final dot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<String>,
    /// An earlier attempt may have delivered the message: a new one may make a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub possible_duplicate: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
    /// The lifetime clock after an attempt (see `Envelope::failed_secs`).
    Lifetime {
        failed_secs: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_failure: Option<i64>,
    },
    DelayWarned,
    /// An attempt to this destination begins (see `Envelope::in_flight`).
    InFlight {
        destination: String,
    },
    /// The attempt to this destination is over. `possible_duplicate` says why a later attempt
    /// may duplicate it.
    AttemptEnded {
        destination: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        possible_duplicate: Option<String>,
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
            failed_secs: 0,
            last_failure: None,
            delay_warned: false,
            in_flight: Vec::new(),
            possible_duplicate: None,
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
            Update::Lifetime { failed_secs, last_failure } => {
                self.failed_secs = *failed_secs;
                self.last_failure = *last_failure;
            }
            Update::DelayWarned => self.delay_warned = true,
            Update::InFlight { destination } => self.in_flight.push(destination.clone()),
            Update::AttemptEnded { destination, possible_duplicate } => {
                if let Some(at) = self.in_flight.iter().position(|d| d == destination) {
                    self.in_flight.remove(at);
                }
                if possible_duplicate.is_some() {
                    self.possible_duplicate = possible_duplicate.clone();
                }
            }
        }
        Ok(())
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients.iter().enumerate().filter(|(_, r)| r.state == RcptState::Pending)
    }
}
