//! Every fixed reply of the SMTP server, worded as Postfix's smtpd(8) words it (pflogsumm,
//! client scripts and people's habits depend on the texts), and the wire form of a reply.
//!
//! A reply is written here as `"CODE text"`, one line per `\n`; [`wire`] turns it into
//! `CODE-text` continuation lines and a last `CODE text` line, each ending in CRLF.

pub const OK: &str = "250 2.0.0 Ok";
pub const MAIL_OK: &str = "250 2.1.0 Ok";
pub const RCPT_OK: &str = "250 2.1.5 Ok";
pub const START_DATA: &str = "354 End data with <CR><LF>.<CR><LF>";
pub const BYE: &str = "221 2.0.0 Bye";
pub const HELP: &str = "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY ETRN STARTTLS AUTH";
pub const QUEUING_STARTED: &str = "250 Queuing started";
pub const READY_TLS: &str = "220 2.0.0 Ready to start TLS";
pub const AUTH_OK: &str = "235 2.7.0 Authentication successful";

pub const SYNTAX_HELO: &str = "501 5.5.4 Syntax: HELO hostname";
pub const SYNTAX_EHLO: &str = "501 5.5.4 Syntax: EHLO hostname";
pub const SYNTAX_MAIL: &str = "501 5.5.4 Syntax: MAIL FROM:<address>";
pub const SYNTAX_RCPT: &str = "501 5.5.4 Syntax: RCPT TO:<address>";
pub const SYNTAX_DATA: &str = "501 5.5.4 Syntax: DATA";
pub const SYNTAX_ETRN: &str = "500 5.5.4 Syntax: ETRN domain";
pub const SYNTAX_STARTTLS: &str = "501 5.5.4 Syntax: STARTTLS";
pub const SYNTAX_AUTH: &str = "501 5.5.4 Syntax: AUTH mechanism";
pub const SYNTAX_VRFY: &str = "501 5.5.4 Syntax: VRFY address";
pub const BAD_SENDER: &str = "501 5.1.7 Bad sender address syntax";
pub const BAD_RECIPIENT: &str = "501 5.1.3 Bad recipient address syntax";
pub const BAD_SIZE: &str = "501 5.5.4 Bad message size syntax";
pub const BAD_BODY: &str = "501 5.5.4 Bad BODY keyword value";
pub const BAD_RET: &str = "501 5.5.4 Bad RET parameter syntax";
pub const BAD_NOTIFY: &str = "501 5.5.4 Error: Bad NOTIFY parameter syntax";
pub const BAD_BASE64: &str = "501 5.5.2 Cannot decode response";
pub const AUTH_ABORTED: &str = "501 5.7.0 Authentication aborted";

pub const NOT_RECOGNIZED: &str = "502 5.5.2 Error: command not recognized";
pub const NOT_IMPLEMENTED: &str = "502 5.5.1 Error: command not implemented";
pub const VRFY_DISABLED: &str = "502 5.5.1 VRFY command is disabled";
pub const LINE_TOO_LONG: &str = "500 5.5.2 Error: line too long";

pub const NESTED_MAIL: &str = "503 5.5.1 Error: nested MAIL command";
pub const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command";
pub const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command";
pub const NEED_HELO: &str = "503 5.5.1 Error: send HELO/EHLO first";
pub const IN_TRANSACTION: &str = "503 5.5.1 Error: MAIL transaction in progress";
pub const ALREADY_AUTHENTICATED: &str = "503 5.5.1 Error: already authenticated";
pub const AUTH_NOT_ENABLED: &str = "503 5.5.1 Error: authentication not enabled";
pub const TLS_ACTIVE: &str = "554 5.5.1 Error: TLS already active";
pub const MUST_STARTTLS: &str = "530 5.7.0 Must issue a STARTTLS command first";
pub const AUTH_MECHANISM: &str = "535 5.7.8 Error: authentication failed: Invalid authentication mechanism";
pub const AUTH_FAILED: &str = "535 5.7.8 Error: authentication failed: authentication failure";

pub const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit";
pub const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Error: too many recipients";
pub const NO_STORAGE: &str = "452 4.3.1 Insufficient system storage";
pub const QUEUE_ERROR: &str = "451 4.3.0 Error: queue file write error";
pub const NO_RECIPIENTS: &str = "554 5.5.1 Error: no valid recipients";
pub const TLS_UNAVAILABLE: &str = "454 4.7.0 TLS not available due to local problem";

/// An unknown `MAIL`/`RCPT` parameter.
pub fn unsupported_option(name: &str) -> String {
    format!("555 5.5.4 Unsupported option: {name}")
}

pub fn timeout(myhostname: &str) -> String {
    format!("421 4.4.2 {myhostname} Error: timeout exceeded")
}

pub fn too_many_errors(myhostname: &str) -> String {
    format!("421 4.7.0 {myhostname} Error: too many errors")
}

pub fn too_many_connections_from(myhostname: &str, addr: &str) -> String {
    format!("421 4.7.0 {myhostname} Error: too many connections from {addr}")
}

pub fn too_many_connections(myhostname: &str) -> String {
    format!("421 4.7.0 {myhostname} Error: too many connections")
}

pub fn queued(queue_id: &str) -> String {
    format!("250 2.0.0 Ok: queued as {queue_id}")
}

/// The reply's code (its first three characters), 0 if it has none.
pub fn code(reply: &str) -> u16 {
    reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The wire form: `250-first`, `250-...`, `250 last`, each with CRLF.
pub fn wire(reply: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len() + 8);
    let mut lines = reply.split('\n').peekable();
    while let Some(line) = lines.next() {
        let (code, text) = line.split_at(line.len().min(3));
        let text = text.strip_prefix(' ').unwrap_or(text);
        out.extend_from_slice(code.as_bytes());
        out.push(if lines.peek().is_some() { b'-' } else { b' ' });
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_replies_use_dashes() {
        assert_eq!(wire("250 a\n250 PIPELINING\n250 DSN"), b"250-a\r\n250-PIPELINING\r\n250 DSN\r\n");
        assert_eq!(wire(OK), b"250 2.0.0 Ok\r\n");
        assert_eq!(code(TOO_BIG), 552);
    }
}
