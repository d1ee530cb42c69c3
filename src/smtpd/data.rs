//! The message content after DATA, as a sans-IO state machine: the session feeds it the bytes
//! it reads, and it says where the content ended.
//!
//! SMTP smuggling (CVE-2023-51764 and its family) works when two servers disagree on where a
//! message ends: a sender hides `<LF>.<LF>MAIL FROM:...` inside one message, and a receiver
//! that ends the data at a bare-LF dot takes the rest as a second, forged transaction. We do
//! what Postfix does with `smtpd_forbid_bare_newline = normalize` (its default since 3.9):
//!
//! - the content ends only at `<CR><LF>.<CR><LF>`: a `.` line counts only when it ends in CRLF
//!   *and* the line before it did too (the DATA command counts as such a line);
//! - other lines may end in a bare LF (many LAN programs send them) and are stored like CRLF
//!   lines; a bare CR is an ordinary byte inside a line;
//! - so `\n.\n`, `\r.\r`, `\n.\r\n` and `\r\n.\n` are content, never an end: whatever
//!   follows them stays in the body of the one message.
//!
//! Lines are dot-unstuffed (RFC 5321 §4.5.2) and stored with LF endings, the queue's form.
//! Once the content exceeds the size limit nothing more is kept (the memory a client can
//! make us hold is bounded), but the input is still read to its end so that the reply (552)
//! comes at the right place in the dialogue.

/// A line longer than this is passed on in pieces (cleanup applies line_length_limit);
/// keeping it whole would let a client grow our buffer without bound.
const MAX_PIECE: usize = 64 * 1024;

#[derive(Debug)]
pub struct DataReader {
    /// The limit in bytes (0 = none).
    limit: u64,
    /// The content so far (LF line endings, unstuffed).
    content: Vec<u8>,
    size: u64,
    too_big: bool,
    /// The line being read (without its LF).
    line: Vec<u8>,
    /// Part of the current line was already passed on (so it is no `.` line).
    mid_line: bool,
    /// The last complete line ended in CRLF.
    last_crlf: bool,
    /// Lines that ended in a bare LF (for the log).
    pub bare_newlines: u64,
}

/// What [`DataReader::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// All the input was content; more is needed.
    More,
    /// The end-of-data line was found; this many bytes of the input were used (the rest
    /// belongs to the commands after the message).
    End(usize),
}

impl DataReader {
    /// `initial` is what the session puts first (the Received: header).
    pub fn new(limit: u64, initial: &[u8]) -> DataReader {
        let mut reader = DataReader {
            limit,
            content: Vec::with_capacity(8192),
            size: 0,
            too_big: false,
            line: Vec::new(),
            mid_line: false,
            last_crlf: true,
            bare_newlines: 0,
        };
        reader.keep(initial);
        reader
    }

    /// Reads `input`; after `End` the reader is finished.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut at = 0;
        while at < input.len() {
            let Some(nl) = input[at..].iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(&input[at..]);
                if self.line.len() > MAX_PIECE {
                    self.pass_piece();
                }
                return Fed::More;
            };
            self.line.extend_from_slice(&input[at..at + nl]);
            at += nl + 1;
            let crlf = self.line.last() == Some(&b'\r');
            if crlf {
                self.line.pop();
            } else {
                self.bare_newlines += 1;
            }
            if !self.mid_line && crlf && self.last_crlf && self.line == b"." {
                self.line.clear();
                return Fed::End(at);
            }
            let mut line = std::mem::take(&mut self.line);
            let start = usize::from(!self.mid_line && line.first() == Some(&b'.'));
            line.push(b'\n');
            self.keep(&line[start..]);
            line.clear();
            self.line = line;
            self.mid_line = false;
            self.last_crlf = crlf;
        }
        Fed::More
    }

    /// Passes on the start of an over-long line (unstuffed if it is the line's start).
    fn pass_piece(&mut self) {
        let line = std::mem::take(&mut self.line);
        let start = usize::from(!self.mid_line && line.first() == Some(&b'.'));
        // Keep a trailing CR back: it may be the first half of the line's CRLF.
        let end = if line.last() == Some(&b'\r') { line.len() - 1 } else { line.len() };
        self.keep(&line[start..end]);
        self.line = line[end..].to_vec();
        self.mid_line = true;
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.limit > 0 && self.size > self.limit {
            // Free what we hold: the message will not be queued.
            self.too_big = true;
            self.content = Vec::new();
        }
        if !self.too_big {
            self.content.extend_from_slice(bytes);
        }
    }

    pub fn too_big(&self) -> bool {
        self.too_big
    }

    /// The content (LF line endings, unstuffed), once the end was found.
    pub fn into_content(self) -> Vec<u8> {
        self.content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one piece; returns the content and the bytes left after the end.
    fn read(input: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut reader = DataReader::new(0, b"");
        match reader.feed(input) {
            Fed::End(used) => Some((reader.into_content(), input[used..].to_vec())),
            Fed::More => None,
        }
    }

    #[test]
    fn ends_at_crlf_dot_crlf_only() {
        let (content, rest) = read(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n").unwrap();
        assert_eq!(content, b"Subject: x\n\nbody\n");
        assert_eq!(rest, b"QUIT\r\n");
        assert_eq!(read(b".\r\n").unwrap().0, b"");
    }

    #[test]
    fn smuggling_variants_are_content() {
        for sep in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"] {
            let mut input = b"Subject: x\r\n\r\nbody".to_vec();
            input.extend_from_slice(sep);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n\r\nforged\r\n.\r\n");
            let (content, rest) = read(&input).unwrap_or_else(|| panic!("{sep:?}: no end"));
            assert!(rest.is_empty(), "{sep:?} ended early: rest {:?}", String::from_utf8_lossy(&rest));
            let text = String::from_utf8_lossy(&content);
            assert!(text.contains("MAIL FROM:<evil@x>") && text.contains("forged"), "{sep:?}: {text}");
        }
    }

    #[test]
    fn dot_unstuffing_and_bare_lf() {
        let (content, _) = read(b"..leading\r\n.\r\n").unwrap();
        assert_eq!(content, b".leading\n");
        let mut reader = DataReader::new(0, b"");
        assert_eq!(reader.feed(b"a\nb\r\n"), Fed::More);
        assert_eq!(reader.bare_newlines, 1);
    }

    #[test]
    fn split_anywhere() {
        let input = b"a\r\n..b\r\nc\n.\r\n\r\n.\r\nNEXT";
        for cut in 0..input.len() {
            let mut reader = DataReader::new(0, b"");
            let end = match reader.feed(&input[..cut]) {
                Fed::End(used) => used,
                Fed::More => match reader.feed(&input[cut..]) {
                    Fed::End(used) => cut + used,
                    Fed::More => panic!("no end at cut {cut}"),
                },
            };
            assert_eq!(&input[end..], b"NEXT", "cut {cut}");
            assert_eq!(reader.into_content(), b"a\n.b\nc\n\n\n", "cut {cut}");
        }
    }

    #[test]
    fn size_limit_drops_content_but_finds_the_end() {
        let mut reader = DataReader::new(10, b"");
        assert_eq!(reader.feed(b"0123456789abcdef\r\n"), Fed::More);
        assert!(reader.too_big());
        assert_eq!(reader.feed(b".\r\n"), Fed::End(3));
        assert!(reader.into_content().is_empty());
    }

    #[test]
    fn long_lines_pass_in_pieces() {
        let mut reader = DataReader::new(0, b"");
        let long = vec![b'x'; MAX_PIECE * 3];
        assert_eq!(reader.feed(&long), Fed::More);
        assert!(reader.line.len() <= MAX_PIECE + 1);
        assert_eq!(reader.feed(b"\r\n.\r\n"), Fed::End(5));
        assert_eq!(reader.into_content().len(), MAX_PIECE * 3 + 1);
    }
}
