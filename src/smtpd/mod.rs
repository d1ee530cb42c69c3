//! The SMTP server for the LAN (Postfix's smtpd(8)): ESMTP sessions, relay control and
//! restrictions, limits, STARTTLS, AUTH, ETRN. Accepted mail goes through cleanup into the
//! queue like any other, durable before the 250.
//!
//! - [`restrictions`]: the smtpd_*_restrictions lists, evaluated with Postfix's order and
//!   semantics;
//! - [`credentials`]: checking AUTH passwords (a password file with crypt hashes, or
//!   Dovecot's auth socket);
//! - [`listener`]: the services' sockets (bound as root), accept loops, connection caps;
//! - [`session`]: one connection's dialogue, restrictions, and the hand-off to cleanup;
//! - [`data`]: the message content after DATA (end of data, smuggling, size limit);
//! - [`reply`]: the replies, worded as Postfix words them;
//! - [`tls`]: STARTTLS (the acceptor, and the switch without leftover plaintext).

pub mod credentials;
pub mod data;
pub mod listener;
pub mod reply;
pub mod restrictions;
pub mod session;
pub mod tls;
