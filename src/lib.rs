//! tidemail: a mail server for small offices and laptops on links that come and go.
//!
//! The modules follow the way a message travels:
//! in (`submit`: the sendmail command and the daemon's pickup; `smtpd`: the SMTP server) →
//! `cleanup` (the one door every message passes) → `queue` (durable files) → `qmgr`
//! (scheduling) → `deliver` (`local`, `smtp`) and `bounce` — with `config`, `maps`, `control`
//! (CLI ↔ daemon), `log` (Postfix-format mail log) and `daemon` beside.

pub mod address;
pub mod bounce;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deliver;
pub mod log;
pub mod maps;
pub mod message;
pub mod qmgr;
pub mod queue;
pub mod smtpd;
pub mod submit;
pub mod sysexits;
