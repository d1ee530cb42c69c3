//! The SMTP server for the LAN (Postfix's smtpd(8)): ESMTP sessions, relay control and
//! restrictions, limits, STARTTLS, AUTH, ETRN. Accepted mail goes through cleanup into the
//! queue like any other, durable before the 250.
//!
//! - [`restrictions`]: the smtpd_*_restrictions lists, evaluated with Postfix's order and
//!   semantics;
//! - [`credentials`]: checking AUTH passwords (a password file with crypt hashes, or
//!   Dovecot's auth socket).

pub mod credentials;
pub mod restrictions;
