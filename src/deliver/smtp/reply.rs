//! Server replies: reading them off the connection (smtp-proto does the parsing) and the
//! enhanced status code that goes with each.

use std::fmt;
use std::io;

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One complete (possibly multi-line) server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (RFC 3463) the server sent, when it sent one whose class
    /// agrees with the reply code.
    pub sent_status: Option<[u8; 3]>,
    /// The reply text, code and enhanced status removed, one entry per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply class: 2, 3, 4 or 5.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// The enhanced status: the server's own, else the class followed by `.0.0`, as Postfix does.
    pub fn status(&self) -> String {
        match self.sent_status {
            Some([class, subject, detail]) => format!("{class}.{subject}.{detail}"),
            None => format!("{}.0.0", self.class()),
        }
    }

    /// The text, lines joined with spaces (log lines and notices are one line).
    pub fn text(&self) -> String {
        self.lines.iter().map(|line| line.trim()).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
    }

    fn from_parsed(code: u16, esc: [u8; 3], message: String) -> Reply {
        let class = (code / 100) as u8;
        let sent_status = (esc[0] != 0 && esc[0] == class && matches!(class, 2 | 4 | 5)).then_some(esc);
        Reply {
            code,
            sent_status,
            lines: message.split('\n').map(|line| line.trim_end_matches('\r').to_string()).collect(),
        }
    }
}

impl fmt::Display for Reply {
    /// The reply as the server put it, on one line: `550 5.1.1 <x@example.org>: unknown user`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if self.sent_status.is_some() {
            write!(f, " {}", self.status())?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The server closed the connection.
    Closed,
    Io(io::Error),
    /// Not an SMTP reply (bad code, far too long).
    Syntax(String),
}

/// Reads replies from a byte stream, keeping what follows a reply for the next one (the
/// replies to pipelined commands arrive together).
#[derive(Default)]
pub(crate) struct ReplyReader {
    pending: Vec<u8>,
}

impl ReplyReader {
    /// Bytes received but not yet part of a reply. Must be empty before a STARTTLS upgrade.
    #[allow(dead_code)]
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The next reply, and its raw bytes (the EHLO reply is parsed a second time for keywords).
    pub(crate) async fn read<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
    ) -> Result<(Reply, Vec<u8>), ReadError> {
        let mut receiver = ResponseReceiver::default();
        let mut raw = Vec::new();
        loop {
            if !self.pending.is_empty() {
                let mut bytes = self.pending.iter();
                let result = receiver.parse(&mut bytes);
                let consumed = self.pending.len() - bytes.len();
                raw.extend(self.pending.drain(..consumed));
                match result {
                    Ok(response) => {
                        return Ok((Reply::from_parsed(response.code, response.esc, response.message), raw));
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(other) => return Err(ReadError::Syntax(format!("{other:?}"))),
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(error) if is_lost(&error) => return Err(ReadError::Closed),
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
    }
}

/// Errors that mean the peer went away rather than something local.
pub(crate) fn is_lost(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn replies(wire: &[u8]) -> Vec<Result<Reply, String>> {
        let mut reader = ReplyReader::default();
        let mut stream = wire;
        let mut out = Vec::new();
        loop {
            match reader.read(&mut stream).await {
                Ok((reply, _)) => out.push(Ok(reply)),
                Err(ReadError::Closed) => return out,
                Err(other) => {
                    out.push(Err(format!("{other:?}")));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn single_multi_and_pipelined() {
        let got = replies(
            b"250-mx.example.org Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 2.1.0 Ok\r\n550 5.1.1 <a@b>: no\r\n354 go\r\n",
        )
        .await;
        let got: Vec<Reply> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].code, 250);
        assert_eq!(got[0].lines, ["mx.example.org Hello", "PIPELINING", "8BITMIME"]);
        assert_eq!(got[0].status(), "2.0.0");
        assert_eq!(got[1].status(), "2.1.0");
        assert_eq!(got[1].to_string(), "250 2.1.0 Ok");
        assert_eq!(got[2].status(), "5.1.1");
        assert_eq!(got[2].to_string(), "550 5.1.1 <a@b>: no");
        assert_eq!(got[3].code, 354);
        assert_eq!(got[3].status(), "3.0.0");
    }

    #[tokio::test]
    async fn status_derived_when_missing_or_inconsistent() {
        let got = replies(b"450 mailbox busy\r\n550 4.2.0 class disagrees\r\n421\r\n").await;
        let got: Vec<Reply> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got[0].status(), "4.0.0");
        assert_eq!(got[0].to_string(), "450 mailbox busy");
        assert_eq!(got[1].status(), "5.0.0");
        assert_eq!(got[2].code, 421);
        assert_eq!(got[2].to_string(), "421");
    }

    #[tokio::test]
    async fn garbage_and_truncation() {
        let got = replies(b"hello there\r\n").await;
        assert!(matches!(got.as_slice(), [Err(_)]), "{got:?}");
        // A reply cut off before its end is no reply.
        let got = replies(b"250-first line\r\n250 sec").await;
        assert!(got.is_empty(), "{got:?}");
    }
}
