//! Message content: the header block, read off a stream without touching the body.
//!
//! Content inside tidemail has LF line endings (the sendmail command converts CRLF on input,
//! like Postfix's `sendmail_fix_line_endings = always`); a stray `\r` before `\n` is kept as
//! it is. Header fields are kept byte-exact (`Header::raw`), so whatever is not deliberately
//! changed goes out exactly as it came in, 8-bit bytes included.
//!
//! - `header`: [`read_header_block`], [`HeaderBlock`] and the edits cleanup makes.
//! - `added`: values of the Date:, Message-ID: and From: headers cleanup adds when missing.
//! - here: recipients for `sendmail -t`, and Bcc removal.

mod added;
mod header;

pub use added::{date_header_value, from_header_value, message_id_value};
pub use header::{Header, HeaderBlock, HeaderError, HeaderLimits, parse_header_block, read_header_block};

use crate::address;

const RESENT_RECIPIENT_HEADERS: [&str; 3] = ["Resent-To", "Resent-Cc", "Resent-Bcc"];
const RECIPIENT_HEADERS: [&str; 3] = ["To", "Cc", "Bcc"];

/// The recipients `sendmail -t` takes from the header: those of the Resent-To:, Resent-Cc:
/// and Resent-Bcc: fields if there is any such field, otherwise those of To:, Cc: and Bcc:
/// (as Postfix does). Addresses are in header order, bare local parts unqualified, duplicates
/// (compared case-insensitively) removed.
pub fn extract_recipients(block: &HeaderBlock) -> Vec<String> {
    let is_resent = |h: &Header| RESENT_RECIPIENT_HEADERS.iter().any(|n| h.is(n));
    let wanted: &[&str] =
        if block.headers.iter().any(is_resent) { &RESENT_RECIPIENT_HEADERS } else { &RECIPIENT_HEADERS };
    let mut seen = std::collections::HashSet::new();
    block
        .headers
        .iter()
        .filter(|h| wanted.iter().any(|n| h.is(n)))
        .flat_map(|h| address::parse_address_list(&h.value()))
        .filter(|a| seen.insert(a.to_lowercase()))
        .collect()
}

/// Remove the Bcc: and Resent-Bcc: fields; every other field stays byte-exact and in order.
pub fn remove_bcc(block: &mut HeaderBlock) {
    block.remove_all("Bcc");
    block.remove_all("Resent-Bcc");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(s: &str) -> HeaderBlock {
        parse_header_block(s.as_bytes())
    }

    #[test]
    fn to_cc_bcc() {
        let b = block(
            "From: me@example.com\n\
             To: a@example.com, \"Smith, Bob\" <bob@example.com>\n\
             Subject: x\n\
             Cc: Carol <carol@example.com>,\n\tdave@example.com (Dave)\n\
             Bcc: eve@example.com\n\
             Reply-To: not-me@example.com\n",
        );
        assert_eq!(
            extract_recipients(&b),
            vec!["a@example.com", "bob@example.com", "carol@example.com", "dave@example.com", "eve@example.com"]
        );
    }

    #[test]
    fn resent_headers_win() {
        let b = block(
            "To: a@example.com\n\
             Resent-From: fwd@example.com\n\
             Resent-To: x@example.com\n\
             Cc: c@example.com\n\
             resent-cc: y@example.com\n\
             Resent-Bcc: z@example.com\n",
        );
        assert_eq!(extract_recipients(&b), vec!["x@example.com", "y@example.com", "z@example.com"]);
        // Resent-From alone is not a recipient header.
        let b = block("To: a@example.com\nResent-From: fwd@example.com\nResent-Date: today\n");
        assert_eq!(extract_recipients(&b), vec!["a@example.com"]);
    }

    #[test]
    fn duplicates_groups_and_bare_names() {
        let b = block(
            "To: undisclosed-recipients:;\n\
             Cc: Team: A@Example.com, b@example.com;, a@example.com\n\
             Bcc: b@example.com, localuser, \"john smith\"@example.com\n\
             To: (comment only)\n",
        );
        assert_eq!(
            extract_recipients(&b),
            vec!["A@Example.com", "b@example.com", "localuser", "\"john smith\"@example.com"]
        );
        assert!(extract_recipients(&block("Subject: none\n")).is_empty());
    }

    #[test]
    fn eight_bit_recipient_header() {
        let b = parse_header_block(b"To: J\xfcrgen <j@example.com>, \xc3\xa9@example.com\n");
        assert_eq!(extract_recipients(&b), vec!["j@example.com", "é@example.com"]);
    }

    #[test]
    fn bcc_removal_keeps_the_rest_byte_exact() {
        let raw: &[u8] = b"Received: from x\n\tby y; date\r\nTo: a@b\nBcc: secret@b,\n more@b\nSubject: caf\xe9\n\
                           RESENT-BCC: other@b\nX-Tail:  spaced  \n";
        let mut b = parse_header_block(raw);
        assert_eq!(b.headers.len(), 6);
        remove_bcc(&mut b);
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert_eq!(out, b"Received: from x\n\tby y; date\r\nTo: a@b\nSubject: caf\xe9\nX-Tail:  spaced  \n".to_vec());
    }

    #[test]
    fn stream_round_trip() {
        // Header + blank line + leftover + rest reproduces the input (minus a From_ line).
        let input: &[u8] = b"From x@y Mon Jan  1 00:00:00 2026\nA: 1\nB: 2\n\t3\n\nbody\nmore\n";
        let mut reader = input;
        let (b, leftover) = read_header_block(&mut reader, &HeaderLimits::default()).unwrap();
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        out.push(b'\n');
        out.extend_from_slice(&leftover);
        out.extend_from_slice(reader);
        assert_eq!(out, &input[input.iter().position(|&c| c == b'\n').unwrap() + 1..]);
    }
}
