//! The durable queue: one file per message under `queue_directory`, a directory per state.
//!
//! - `id`: queue IDs in Postfix's long alphabet (sortable by arrival, safe as file names).
//! - `record`: the versioned, checksummed file format.
//! - `store`: writing (with group commit), reading, moving between states, setting aside.
//! - `layout`: the directory tree and its permissions.

pub mod envelope;
pub mod id;
pub mod layout;
pub mod record;
pub mod store;

pub use envelope::{Envelope, Notify, Origin, RcptState, Recipient, Ret, Submission, Update};
pub use store::{MessageWriter, QueueError, QueueStore};

/// The queue directories, in the order a message normally passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    /// Written by the sendmail command (any user); read by the daemon's pickup.
    Maildrop,
    /// Passed cleanup; waiting for the queue manager.
    Incoming,
    /// Being delivered.
    Active,
    /// Tried (or held by defer_transports) and waiting for the next attempt or a flush.
    Deferred,
    /// Put on hold by the admin or a HOLD action; never tried until released.
    Hold,
    /// Failed its self-check; kept for the admin, never delivered.
    Corrupt,
}

impl QueueName {
    pub const ALL: [QueueName; 6] = [
        QueueName::Maildrop,
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Hold,
        QueueName::Corrupt,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            QueueName::Maildrop => "maildrop",
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Hold => "hold",
            QueueName::Corrupt => "corrupt",
        }
    }
}

/// A queued message as mailq and the queue manager see it (content not loaded).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub queue: QueueName,
    pub envelope: Envelope,
    /// Size of the message content in bytes.
    pub size: u64,
}

/// A scratch queue and a configuration pointing at it, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::{QueueStore, layout};
    use crate::config::Config;

    /// `extra` is appended to a config with `myhostname = "mail.example.com"`.
    pub fn scratch(extra: &str) -> (tempfile::TempDir, QueueStore, Config) {
        let dir = tempfile::tempdir().unwrap();
        layout::ensure(dir.path(), None).unwrap();
        let text =
            format!("myhostname = \"mail.example.com\"\nqueue_directory = \"{}\"\n{extra}", dir.path().display());
        let cfg = Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap();
        let store = QueueStore::new(dir.path());
        (dir, store, cfg)
    }
}
