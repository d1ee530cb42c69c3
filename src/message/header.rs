//! The header block: reading it off a stream without touching the body, keeping every field
//! byte-exact, and the small edits cleanup and `sendmail -t` make.

use std::io::{self, BufRead, Write};

/// One header field, exactly as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as written (without the colon or any space before it).
    pub name: String,
    /// The whole field: name, colon, value, folded continuation lines, and the final `\n`.
    /// Byte-exact: 8-bit bytes and stray `\r` before `\n` are kept as they are.
    pub raw: Vec<u8>,
}

impl Header {
    /// A new field `Name: value\n`. Line breaks in `value` become folds: a line that does not
    /// start with white space is indented with a tab, `\r` is dropped and empty lines are
    /// removed, so a value can never end the field early or inject another header.
    /// `name` must be a valid field name (printable ASCII without `:` or space).
    pub fn new(name: &str, value: &str) -> Header {
        debug_assert!(is_field_name(name.as_bytes()), "bad header name {name:?}");
        let mut raw = Vec::with_capacity(name.len() + value.len() + 3);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        let mut first = true;
        for line in value.split('\n') {
            let line = line.replace('\r', "");
            let line = line.trim_end();
            if line.trim_start().is_empty() {
                continue;
            }
            if first {
                raw.push(b' ');
                raw.extend_from_slice(line.trim_start().as_bytes());
                first = false;
            } else {
                raw.push(b'\n');
                if !line.starts_with([' ', '\t']) {
                    raw.push(b'\t');
                }
                raw.extend_from_slice(line.as_bytes());
            }
        }
        raw.push(b'\n');
        Header { name: name.to_string(), raw }
    }

    /// The unfolded value: everything after the colon with line breaks removed (the white
    /// space that starts each continuation line is kept) and surrounding white space trimmed.
    /// Invalid UTF-8 is replaced (the raw bytes are untouched).
    pub fn value(&self) -> String {
        let colon = self.raw.iter().position(|&b| b == b':').map_or(self.raw.len(), |c| c + 1);
        let unfolded: Vec<u8> = self.raw[colon..].iter().copied().filter(|&b| b != b'\n' && b != b'\r').collect();
        String::from_utf8_lossy(&unfolded).trim_matches([' ', '\t']).to_string()
    }

    /// True if this field is called `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The header of a message, in order, without the blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderBlock {
    pub headers: Vec<Header>,
}

impl HeaderBlock {
    /// The first field called `name`.
    pub fn get(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All fields called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        self.headers.iter().filter(move |h| h.is(name))
    }

    /// Remove every field called `name`; returns how many there were.
    pub fn remove_all(&mut self, name: &str) -> usize {
        let before = self.headers.len();
        self.headers.retain(|h| !h.is(name));
        before - self.headers.len()
    }

    /// Append `Name: value\n` (see [`Header::new`]).
    pub fn push(&mut self, name: &str, value: &str) {
        self.headers.push(Header::new(name, value));
    }

    /// Prepend `Name: value\n` (for Received:, which goes on top).
    pub fn insert_at_top(&mut self, name: &str, value: &str) {
        self.headers.insert(0, Header::new(name, value));
    }

    /// Write the fields back, byte-exact and in order, without the blank separator line.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for h in &self.headers {
            out.write_all(&h.raw)?;
        }
        Ok(())
    }

    /// Total size of the fields in bytes.
    pub fn len_bytes(&self) -> usize {
        self.headers.iter().map(|h| h.raw.len()).sum()
    }
}

/// Limits on reading a header block (Postfix parameters of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// The most header bytes kept as header; what follows is treated as body.
    pub header_size_limit: u64,
    /// Postfix's line_length_limit; long lines are not an error here (kept for callers that
    /// split lines when writing).
    pub line_length_limit: u64,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits { header_size_limit: 102_400, line_length_limit: 2048 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("error reading message header: {0}")]
    Io(#[from] io::Error),
}

/// Bytes read past the budget before giving up on a line as header; also the least we read of
/// any line, so that a leading mbox `From ` line is always recognised.
const MIN_LINE_PEEK: usize = 256;

/// Read the header block from `input` and leave the stream at the start of the body.
///
/// Reading stops at the first empty line (`\n`, or `\r\n`; consumed, not part of the block),
/// at the first line that is neither a header field nor a continuation of one (returned as
/// the second value: it is the first body line), at EOF, or when the next line would take
/// the block past `header_size_limit` (that line, as far as it was read, is returned as body
/// bytes; the rest of it is still in `input`). Leading mbox `From ` lines (also `>From `) are
/// dropped, as Postfix's sendmail does. A last header line without `\n` at EOF gets one.
///
/// The second value is empty when the header ended with a blank line or at EOF; when it is
/// not empty, there was no blank line between header and body (cleanup inserts one).
pub fn read_header_block<R: BufRead + ?Sized>(
    input: &mut R,
    limits: &HeaderLimits,
) -> Result<(HeaderBlock, Vec<u8>), HeaderError> {
    let mut block = HeaderBlock::default();
    let mut current: Option<Header> = None;
    let mut used: u64 = 0;
    let mut at_top = true;
    let finish = |block: &mut HeaderBlock, current: &mut Option<Header>| {
        if let Some(mut h) = current.take() {
            if h.raw.last() != Some(&b'\n') {
                h.raw.push(b'\n');
            }
            block.headers.push(h);
        }
    };
    loop {
        let budget = limits.header_size_limit.saturating_sub(used);
        let cap = usize::try_from(budget.saturating_add(1)).unwrap_or(usize::MAX).max(MIN_LINE_PEEK);
        let mut line = Vec::new();
        let complete = read_line_capped(input, &mut line, cap)?;
        if line.is_empty() {
            finish(&mut block, &mut current);
            return Ok((block, Vec::new()));
        }
        if at_top && is_mbox_from(&line) {
            if !complete {
                skip_line(input)?;
            }
            continue;
        }
        at_top = false;
        if line == b"\n" || line == b"\r\n" {
            finish(&mut block, &mut current);
            return Ok((block, Vec::new()));
        }
        if line.len() as u64 > budget {
            finish(&mut block, &mut current);
            return Ok((block, line));
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(h) = current.as_mut() {
                h.raw.extend_from_slice(&line);
                used += line.len() as u64;
                continue;
            }
        } else if let Some(name) = field_name(&line) {
            finish(&mut block, &mut current);
            current = Some(Header { name, raw: line.clone() });
            used += line.len() as u64;
            continue;
        }
        // Not a header line: the body starts here, without a blank line.
        finish(&mut block, &mut current);
        return Ok((block, line));
    }
}

/// Parse a header block held in memory (no size limit). Whatever follows the header is
/// ignored.
pub fn parse_header_block(bytes: &[u8]) -> HeaderBlock {
    let limits = HeaderLimits { header_size_limit: u64::MAX, line_length_limit: u64::MAX };
    let mut input = bytes;
    match read_header_block(&mut input, &limits) {
        Ok((block, _)) => block,
        // Reading from a slice cannot fail.
        Err(HeaderError::Io(_)) => HeaderBlock::default(),
    }
}

/// Append one line (up to and including `\n`) to `line`, reading at most `cap` bytes.
/// Returns true if the line is complete (ends with `\n` or at EOF), false if `cap` was hit.
fn read_line_capped<R: BufRead + ?Sized>(input: &mut R, line: &mut Vec<u8>, cap: usize) -> io::Result<bool> {
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(true);
        }
        let room = cap - line.len();
        let take = available.len().min(room);
        let (n, done) = match available[..take].iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (take, false),
        };
        line.extend_from_slice(&available[..n]);
        input.consume(n);
        if done {
            return Ok(true);
        }
        if line.len() >= cap {
            return Ok(false);
        }
    }
}

/// Consume the rest of the current line, up to and including `\n`.
fn skip_line<R: BufRead + ?Sized>(input: &mut R) -> io::Result<()> {
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                input.consume(n);
            }
        }
    }
}

/// An mbox separator line at the top of the message: `From ` after any number of `>`.
fn is_mbox_from(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

/// Printable ASCII except `:` (RFC 5322 ftext).
fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

/// The field name if `line` starts a header field: ftext, then optional white space (obsolete
/// syntax Postfix accepts), then a colon.
fn field_name(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].strip_suffix_ws();
    is_field_name(name).then(|| String::from_utf8_lossy(name).into_owned())
}

trait StripTrailingWs {
    fn strip_suffix_ws(&self) -> &[u8];
}

impl StripTrailingWs for [u8] {
    fn strip_suffix_ws(&self) -> &[u8] {
        let end = self.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
        &self[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], limit: u64) -> (HeaderBlock, Vec<u8>, Vec<u8>) {
        let mut cursor = io::Cursor::new(input.to_vec());
        let limits = HeaderLimits { header_size_limit: limit, line_length_limit: 2048 };
        let (block, body) = read_header_block(&mut cursor, &limits).unwrap();
        let pos = cursor.position() as usize;
        (block, body, input[pos..].to_vec())
    }

    fn raw(block: &HeaderBlock) -> Vec<u8> {
        let mut out = Vec::new();
        block.write_to(&mut out).unwrap();
        out
    }

    fn names(block: &HeaderBlock) -> Vec<&str> {
        block.headers.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn simple_header_and_body() {
        let msg = b"From: a@b\nTo: c@d\nSubject: hi\n\nbody line\n";
        let (block, body, rest) = read(msg, 102_400);
        assert_eq!(names(&block), ["From", "To", "Subject"]);
        assert_eq!(block.headers[2].raw, b"Subject: hi\n");
        assert_eq!(block.headers[2].value(), "hi");
        assert!(body.is_empty());
        assert_eq!(rest, b"body line\n");
        assert_eq!(raw(&block), b"From: a@b\nTo: c@d\nSubject: hi\n");
    }

    #[test]
    fn folding() {
        let msg = b"Subject: a long\n subject\n\tfolded\nTo: x@y\n\n";
        let (block, body, rest) = read(msg, 102_400);
        assert_eq!(block.headers.len(), 2);
        assert_eq!(block.headers[0].raw, b"Subject: a long\n subject\n\tfolded\n");
        assert_eq!(block.headers[0].value(), "a long subject\tfolded");
        assert!(body.is_empty() && rest.is_empty());
        assert_eq!(raw(&block), &msg[..msg.len() - 1]);
    }

    #[test]
    fn stray_cr_is_kept() {
        let msg = b"Subject: x\r\n y\r\nTo: a@b\r\n\r\nbody\r\n";
        let (block, body, rest) = read(msg, 102_400);
        assert_eq!(block.headers[0].raw, b"Subject: x\r\n y\r\n");
        assert_eq!(block.headers[0].value(), "x y");
        assert_eq!(block.headers[1].raw, b"To: a@b\r\n");
        assert!(body.is_empty());
        assert_eq!(rest, b"body\r\n");
    }

    #[test]
    fn no_blank_line() {
        let msg = b"Subject: x\nthis is the body\nmore\n";
        let (block, body, rest) = read(msg, 102_400);
        assert_eq!(names(&block), ["Subject"]);
        assert_eq!(body, b"this is the body\n");
        assert_eq!(rest, b"more\n");
        // A body that starts right away.
        let (block, body, rest) = read(b"just text\n", 102_400);
        assert!(block.headers.is_empty());
        assert_eq!(body, b"just text\n");
        assert!(rest.is_empty());
        // A continuation line with nothing to continue is body.
        let (block, body, _) = read(b" indented\nSubject: x\n", 102_400);
        assert!(block.headers.is_empty());
        assert_eq!(body, b" indented\n");
        // A header line with a space in the name is not a header.
        let (block, body, _) = read(b"Subject: x\nNot a: header\n", 102_400);
        assert_eq!(names(&block), ["Subject"]);
        assert_eq!(body, b"Not a: header\n");
    }

    #[test]
    fn eof_in_header() {
        let (block, body, _) = read(b"Subject: x\nTo: y", 102_400);
        assert_eq!(block.headers[1].raw, b"To: y\n");
        assert!(body.is_empty());
        let (block, body, _) = read(b"", 102_400);
        assert!(block.headers.is_empty() && body.is_empty());
        let (block, body, rest) = read(b"\nbody\n", 102_400);
        assert!(block.headers.is_empty() && body.is_empty());
        assert_eq!(rest, b"body\n");
    }

    #[test]
    fn leading_from_lines_are_dropped() {
        let msg = b"From me@example.com Sat Jan  3 01:05:34 1996\nSubject: x\n\nFrom the body\n";
        let (block, body, rest) = read(msg, 102_400);
        assert_eq!(names(&block), ["Subject"]);
        assert!(body.is_empty());
        assert_eq!(rest, b"From the body\n");
        let (block, _, _) = read(b"From a\n>From b\n>>From c\nSubject: x\n\n", 102_400);
        assert_eq!(names(&block), ["Subject"]);
        // Only at the top.
        let (block, body, _) = read(b"Subject: x\nFrom y\n", 102_400);
        assert_eq!(names(&block), ["Subject"]);
        assert_eq!(body, b"From y\n");
        // A long From_ line is skipped entirely, whatever the limit.
        let mut msg = b"From ".to_vec();
        msg.extend(std::iter::repeat_n(b'x', 5000));
        msg.extend_from_slice(b"\nSubject: x\n\n");
        let (block, body, _) = read(&msg, 100);
        assert_eq!(names(&block), ["Subject"]);
        assert!(body.is_empty());
        // "From:" is a header, not an mbox line.
        let (block, _, _) = read(b"From: a@b\n\n", 102_400);
        assert_eq!(names(&block), ["From"]);
    }

    #[test]
    fn header_size_limit_overflow() {
        let msg = b"Subject: 0123456789\nTo: a@b\nCc: c@d\n\nbody\n";
        // Room for the first two fields only (20 + 8 bytes).
        let (block, body, rest) = read(msg, 30);
        assert_eq!(names(&block), ["Subject", "To"]);
        assert_eq!(body, b"Cc: c@d\n");
        assert_eq!(rest, b"\nbody\n");
        // Exactly at the limit still fits, and the blank line ends the header normally.
        let (block, body, _) = read(msg, 36);
        assert_eq!(names(&block), ["Subject", "To", "Cc"]);
        assert!(body.is_empty());
        // An overlong continuation line: the field keeps its complete lines.
        let mut msg = b"Subject: x\n".to_vec();
        msg.push(b' ');
        msg.extend(std::iter::repeat_n(b'y', 1000));
        msg.extend_from_slice(b"\nTo: z\n\n");
        let (block, body, rest) = read(&msg, 500);
        assert_eq!(block.headers.len(), 1);
        assert_eq!(block.headers[0].raw, b"Subject: x\n");
        // Nothing is lost: body bytes + what is left is the rest of the input.
        let mut all = body.clone();
        all.extend_from_slice(&rest);
        assert_eq!(all, &msg[11..]);
        assert!(body.len() <= 500 + 1);
    }

    #[test]
    fn huge_line_is_not_buffered_whole() {
        let mut msg = b"X-Big: ".to_vec();
        msg.extend(std::iter::repeat_n(b'a', 10_000_000));
        msg.extend_from_slice(b"\n\nbody\n");
        let (block, body, rest) = read(&msg, 102_400);
        assert!(block.headers.is_empty());
        assert_eq!(body.len(), 102_401);
        assert_eq!(body.len() + rest.len(), msg.len());
    }

    #[test]
    fn long_lines_within_limit_are_fine() {
        let mut msg = b"X-Long: ".to_vec();
        msg.extend(std::iter::repeat_n(b'a', 5000));
        msg.extend_from_slice(b"\n\n");
        let (block, body, _) = read(&msg, 102_400);
        assert_eq!(block.headers[0].raw.len(), 5009);
        assert!(body.is_empty());
    }

    #[test]
    fn eight_bit_bytes_preserved() {
        let msg = b"Subject: caf\xe9 \xff\xfe\nX-Utf8: \xc3\xa9t\xc3\xa9\n\n";
        let (block, _, _) = read(msg, 102_400);
        assert_eq!(block.headers[0].raw, b"Subject: caf\xe9 \xff\xfe\n");
        assert_eq!(block.headers[1].value(), "été");
        assert_eq!(block.headers[0].value(), "caf\u{fffd} \u{fffd}\u{fffd}");
        assert_eq!(raw(&block), &msg[..msg.len() - 1]);
    }

    #[test]
    fn obsolete_space_before_colon() {
        let (block, _, _) = read(b"Subject : x\nTo:y\n\n", 102_400);
        assert_eq!(names(&block), ["Subject", "To"]);
        assert_eq!(block.headers[0].value(), "x");
        assert_eq!(block.headers[1].value(), "y");
        assert!(block.has("subject"));
    }

    #[test]
    fn empty_value() {
        let (block, _, _) = read(b"X-Empty:\nX-Folded-Empty:\n \n\n", 102_400);
        assert_eq!(block.headers[0].value(), "");
        assert_eq!(block.headers[1].raw, b"X-Folded-Empty:\n \n");
        assert_eq!(block.headers[1].value(), "");
    }

    #[test]
    fn parse_in_memory() {
        let block = parse_header_block(b"From x\nA: 1\nB: 2\n more\n\nC: body\n");
        assert_eq!(names(&block), ["A", "B"]);
        assert_eq!(block.headers[1].value(), "2 more");
        assert!(parse_header_block(b"").headers.is_empty());
    }

    #[test]
    fn edits() {
        let mut block = parse_header_block(b"To: a@b\nBcc: x@y\nSubject: s\nbcc: z@w\n");
        assert_eq!(block.get("BCC").unwrap().value(), "x@y");
        assert_eq!(block.get_all("bcc").count(), 2);
        assert!(block.has("subject"));
        assert!(!block.has("Cc"));
        assert_eq!(block.remove_all("Bcc"), 2);
        assert_eq!(block.remove_all("Bcc"), 0);
        block.push("Date", "Sun, 22 Nov 2026 04:38:26 +0000");
        block.insert_at_top("Received", "by host (tidemail)\n\tid X; Sun, 22 Nov 2026 04:38:26 +0000");
        assert_eq!(
            raw(&block),
            b"Received: by host (tidemail)\n\tid X; Sun, 22 Nov 2026 04:38:26 +0000\nTo: a@b\nSubject: s\n\
              Date: Sun, 22 Nov 2026 04:38:26 +0000\n"
        );
        assert_eq!(block.len_bytes(), raw(&block).len());
    }

    #[test]
    fn new_field_cannot_inject() {
        let h = Header::new("Subject", "a\r\nBcc: victim@example.com\n\nbody");
        assert_eq!(h.raw, b"Subject: a\n\tBcc: victim@example.com\n\tbody\n");
        let reparsed = parse_header_block(&h.raw);
        assert_eq!(reparsed.headers.len(), 1);
        assert_eq!(Header::new("X", "  padded  ").raw, b"X: padded\n");
        assert_eq!(Header::new("X", "").raw, b"X:\n");
        assert_eq!(Header::new("X", "a\n  b").raw, b"X: a\n  b\n");
    }
}
