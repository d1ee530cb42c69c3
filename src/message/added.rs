//! Values of the headers cleanup adds when a message lacks them (Date:, Message-ID:, From:),
//! in the forms Postfix writes.

use chrono::{DateTime, Local, Utc};

/// An RFC 5322 date in local time with its UTC offset, with English day and month names and
/// the day of the month padded with a space the way Postfix writes it:
/// `Sun, 22 Nov 2026 04:38:26 +0000`, `Mon,  2 Nov 2026 09:05:00 +0100`.
pub fn date_header_value(now: DateTime<Local>) -> String {
    now.format("%a, %e %b %Y %H:%M:%S %z").to_string()
}

/// A Message-ID the way Postfix makes one: `<YYYYMMDDhhmmss.QUEUEID@myhostname>`, the time
/// in UTC. The queue ID makes it unique on this host.
pub fn message_id_value(queue_id: &str, myhostname: &str, now: DateTime<Local>) -> String {
    let stamp = now.with_timezone(&Utc).format("%Y%m%d%H%M%S");
    format!("<{stamp}.{queue_id}@{myhostname}>")
}

/// The value of a From: header for a message that has none: `Full Name <sender>`, or the bare
/// sender without a full name; `MAILER-DAEMON` for the null sender (no full name then).
///
/// The full name is written as is when it is a sequence of atoms, as a quoted string when it
/// contains RFC 5322 specials (`"Doe, John" <jd@example.com>`), and as RFC 2047 encoded words
/// when it contains non-ASCII characters. Control characters in it become spaces.
pub fn from_header_value(sender: &str, full_name: Option<&str>) -> String {
    if sender.is_empty() {
        return "MAILER-DAEMON".to_string();
    }
    let name = full_name.map(clean_name).unwrap_or_default();
    if name.is_empty() {
        return sender.to_string();
    }
    format!("{} <{sender}>", display_name(&name))
}

/// Control characters (line breaks included) become spaces; runs of white space collapse.
fn clean_name(name: &str) -> String {
    let spaced: String = name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 5322 atext (ASCII only).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn display_name(name: &str) -> String {
    if !name.is_ascii() {
        return encode_words(name);
    }
    if name.split(' ').all(|word| !word.is_empty() && word.chars().all(is_atext)) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 2047 `B` encoded words of at most 75 characters, cut between characters, separated by
/// spaces (which decoders drop between adjacent encoded words).
fn encode_words(name: &str) -> String {
    // "=?UTF-8?B?" + 60 base64 characters + "?=" is 72; 60 characters carry 45 bytes.
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    while start < name.len() {
        let mut end = (start + CHUNK).min(name.len());
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!("=?UTF-8?B?{}?=", base64(&name.as_bytes()[start..end])));
        start = end;
    }
    words.join(" ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn local(rfc3339: &str) -> DateTime<Local> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Local)
    }

    #[test]
    fn date_format() {
        let t = local("2026-11-22T04:38:26+00:00");
        let s = date_header_value(t);
        // Same instant, rendered in whatever the local zone is; parse it back.
        assert_eq!(DateTime::parse_from_rfc2822(&s).unwrap(), t);
        // The format itself, on fixed offsets.
        let fmt = |dt: DateTime<FixedOffset>| dt.format("%a, %e %b %Y %H:%M:%S %z").to_string();
        let utc = FixedOffset::east_opt(0).unwrap();
        assert_eq!(fmt(utc.with_ymd_and_hms(2026, 11, 22, 4, 38, 26).unwrap()), "Sun, 22 Nov 2026 04:38:26 +0000");
        let cet = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(fmt(cet.with_ymd_and_hms(2026, 11, 2, 9, 5, 0).unwrap()), "Mon,  2 Nov 2026 09:05:00 +0100");
        let nst = FixedOffset::west_opt(3 * 3600 + 1800).unwrap();
        assert_eq!(fmt(nst.with_ymd_and_hms(2027, 1, 31, 23, 59, 59).unwrap()), "Sun, 31 Jan 2027 23:59:59 -0330");
    }

    #[test]
    fn message_id() {
        let t = local("2026-11-22T05:38:26+01:00");
        assert_eq!(
            message_id_value("4cXyZ1BcDfz2Bq", "host.example", t),
            "<20261122043826.4cXyZ1BcDfz2Bq@host.example>"
        );
    }

    #[test]
    fn from_values() {
        assert_eq!(from_header_value("", Some("Anyone")), "MAILER-DAEMON");
        assert_eq!(from_header_value("", None), "MAILER-DAEMON");
        assert_eq!(from_header_value("joe@example.com", None), "joe@example.com");
        assert_eq!(from_header_value("joe@example.com", Some("")), "joe@example.com");
        assert_eq!(from_header_value("joe@example.com", Some("  ")), "joe@example.com");
        assert_eq!(from_header_value("joe@example.com", Some("Joe User")), "Joe User <joe@example.com>");
        assert_eq!(from_header_value("joe@example.com", Some("Doe, John")), r#""Doe, John" <joe@example.com>"#);
        assert_eq!(from_header_value("joe@example.com", Some("J. R. Doe")), r#""J. R. Doe" <joe@example.com>"#);
        assert_eq!(
            from_header_value("joe@example.com", Some(r#"Joe "the" \ User"#)),
            r#""Joe \"the\" \\ User" <joe@example.com>"#
        );
        assert_eq!(from_header_value("joe@example.com", Some("Joe\nBcc: x@y")), r#""Joe Bcc: x@y" <joe@example.com>"#);
        assert_eq!(from_header_value("joe@example.com", Some("Jürgen")), "=?UTF-8?B?SsO8cmdlbg==?= <joe@example.com>");
    }

    #[test]
    fn long_non_ascii_names_are_split() {
        let name = "Ä".repeat(40); // 80 bytes
        let v = from_header_value("a@b", Some(&name));
        let words: Vec<&str> = v.trim_end_matches(" <a@b>").split(' ').collect();
        assert_eq!(words.len(), 2);
        for w in &words {
            assert!(w.len() <= 75, "{w}");
            assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="));
        }
        // 22 whole characters (44 bytes) then 18.
        assert_eq!(words[0], format!("=?UTF-8?B?{}?=", base64("Ä".repeat(22).as_bytes())));
    }

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
