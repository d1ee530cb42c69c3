//! The SMTP client that hands mail to a smarthost (`relayhost`) or, later, to MX hosts.
//!
//! - [`relayhost`]: the next hop's syntax and its addresses (hosts file only with
//!   `disable_dns_lookups`);
//! - [`client`]: the session — EHLO/HELO, PIPELINING, SIZE, 8BITMIME, several messages per
//!   connection, a result per recipient, every wait bounded;
//! - [`reply`]: server replies and their enhanced status codes;
//! - [`tls`]: STARTTLS policy (`smtp_tls_security_level`) and certificate checks;
//! - [`sasl`]: AUTH credentials (`smtp_sasl_password_maps`) and mechanism choice.
//!
//! Typical use by a delivery job:
//!
//! ```no_run
//! # async fn job(config: &tidemail::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use tidemail::deliver::smtp::{ClientSettings, Outgoing, Session, relayhost, sasl};
//! let hop = relayhost::parse(config.relayhost())?;
//! let addrs = relayhost::resolve(&hop, config.disable_dns_lookups()).await?;
//! let host = hop.host.to_string();
//! let credentials = sasl::credentials_for(config, config.relayhost(), &host)?;
//! let settings = ClientSettings::from_config(config).with_credentials(credentials);
//! let mut session = Session::connect(&host, &addrs, &settings).await?;
//! let message = Outgoing {
//!     sender: "alice@office.example".into(),
//!     recipients: vec!["bob@example.org".into()],
//!     size: 5,
//!     body_8bit: false,
//!     content: &b"Hi!\n"[..],
//! };
//! for result in session.send(message).await? {
//!     println!("relay={}, dsn={}, ({})", session.relay(), result.status, result.diagnostic(session.relay()));
//! }
//! session.quit().await;
//! # Ok(()) }
//! ```

pub mod client;
pub mod dns;
pub mod relayhost;
pub mod reply;
pub mod sasl;
pub mod tls;

pub use client::{
    Capabilities, ClientSettings, DataEncoder, Outcome, Outgoing, RcptResult, Relay, Session, SessionError, Stage,
    Transport,
};
pub use relayhost::{Host, NextHop, ResolveError};
pub use reply::Reply;
pub use sasl::{Credentials, SaslPolicy, credentials_for};
pub use tls::{TlsInfo, TlsLevel, TlsPolicy};
