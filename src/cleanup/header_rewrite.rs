//! Rewriting the addresses in message headers without touching anything else.
//!
//! The field is read with the same tolerant rules as `address::parse_address_list` (a
//! phrase before `<...>` is a display name; `,` and `;` end an address; a group name ends
//! at `:`; two words with no operator between them are two addresses), but every address is
//! found with its position in the field's raw bytes. Only the bytes of an address whose
//! rewritten form differs are replaced; display names, comments, quoting, encoded words,
//! folding and 8-bit bytes around it stay as they were, and a field in which nothing changes
//! is left byte for byte.

use crate::maps::search;
use crate::message::Header;

use super::canonical::Class;

/// The address class of a header field, if its addresses are rewritten (Postfix's
/// header_opts: sender headers and recipient headers).
pub fn header_class(name: &str) -> Option<Class> {
    const SENDER: &[&str] = &[
        "From",
        "Sender",
        "Reply-To",
        "Errors-To",
        "Return-Receipt-To",
        "Disposition-Notification-To",
        "Mail-Followup-To",
        "Resent-From",
        "Resent-Sender",
    ];
    const RECIPIENT: &[&str] =
        &["To", "Cc", "Bcc", "Apparently-To", "Resent-To", "Resent-Cc", "Resent-Bcc", "Resent-Reply-To"];
    if SENDER.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        Some(Class::HeaderSender)
    } else if RECIPIENT.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        Some(Class::HeaderRecipient)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Atom,
    Quoted,
    Literal,
    Op(u8),
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
}

impl Tok {
    fn is_word(&self) -> bool {
        !matches!(self.kind, Kind::Op(_))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_op(b: u8) -> bool {
    matches!(b, b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.')
}

/// Tokens of `raw[from..]`, comments and white space dropped.
fn tokenize(raw: &[u8], from: usize) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = from;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b if is_space(b) || (b < 0x20 || b == 0x7f) => i += 1,
            b'(' => {
                let mut depth = 0usize;
                while i < raw.len() {
                    match raw[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < raw.len() && raw[i] != b'"' {
                    if raw[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(raw.len());
                toks.push(Tok { kind: Kind::Quoted, start, end: i });
            }
            b'[' => {
                let start = i;
                while i < raw.len() && raw[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(raw.len());
                toks.push(Tok { kind: Kind::Literal, start, end: i });
            }
            b')' | b']' => i += 1,
            b if is_op(b) => {
                toks.push(Tok { kind: Kind::Op(b), start: i, end: i + 1 });
                i += 1;
            }
            _ => {
                let start = i;
                while i < raw.len() {
                    let c = raw[i];
                    if c == b'\\' {
                        i = (i + 2).min(raw.len());
                        continue;
                    }
                    if is_space(c) || c < 0x20 || c == 0x7f || is_op(c) || matches!(c, b'(' | b')' | b'"' | b'[' | b']')
                    {
                        break;
                    }
                    i += 1;
                }
                toks.push(Tok { kind: Kind::Atom, start, end: i });
            }
        }
    }
    toks
}

/// One address found in a header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Byte range of the address in the field's raw bytes.
    pub start: usize,
    pub end: usize,
    /// The address in canonical external form (as `address::parse_address_list` gives it).
    pub address: String,
}

/// The text of a token with quoted pairs resolved; a quoted string without its quotes.
fn token_text(raw: &[u8], tok: &Tok) -> String {
    let bytes = match tok.kind {
        Kind::Quoted => {
            let inner_end = if tok.end > tok.start + 1 && raw[tok.end - 1] == b'"' { tok.end - 1 } else { tok.end };
            &raw[tok.start + 1..inner_end]
        }
        _ => &raw[tok.start..tok.end],
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && tok.kind != Kind::Literal && i + 1 < bytes.len() {
            i += 1;
        }
        if !matches!(bytes[i], b'\r' | b'\n') {
            out.push(bytes[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Build the address of an addr-spec's tokens (route already removed), or None if empty.
fn make_address(raw: &[u8], toks: &[Tok]) -> Option<Found> {
    let (first, last) = (toks.first()?, toks.last()?);
    let at = toks.iter().rposition(|t| t.kind == Kind::Op(b'@'));
    let text = |ts: &[Tok]| -> String {
        ts.iter()
            .map(|t| match t.kind {
                Kind::Op(b) => (b as char).to_string(),
                Kind::Literal => {
                    let inner: String = token_text(raw, t).chars().filter(|c| !c.is_whitespace()).collect();
                    inner
                }
                _ => token_text(raw, t),
            })
            .collect()
    };
    let address = match at {
        Some(at) => {
            let local = text(&toks[..at]);
            let domain = text(&toks[at + 1..]);
            format!("{}@{domain}", search::quote_local_part(&local))
        }
        None => search::quote_local_part(&text(toks)),
    };
    if address.is_empty() || address == "@" {
        return None;
    }
    Some(Found { start: first.start, end: last.end, address })
}

/// The addr-spec inside angle brackets: after the last `:` (a source route, or junk).
fn route_addr(inner: &[Tok]) -> &[Tok] {
    match inner.iter().rposition(|t| t.kind == Kind::Op(b':')) {
        Some(colon) => &inner[colon + 1..],
        None => inner,
    }
}

/// Tokens outside angle brackets up to a `,` or `;`: one address, or several where two words
/// follow each other with no operator between them (the missing comma).
fn flush_plain(raw: &[u8], seg: &mut Vec<Tok>, found: &mut Vec<Found>) {
    let mut start = 0;
    for k in 1..=seg.len() {
        if k == seg.len() || (seg[k - 1].is_word() && seg[k].is_word()) {
            let part = &seg[start..k];
            if part.iter().any(Tok::is_word)
                && let Some(f) = make_address(raw, part)
            {
                found.push(f);
            }
            start = k;
        }
    }
    seg.clear();
}

/// The addresses of a header field (`raw` is the whole field, name included), in order.
pub fn find_addresses(raw: &[u8]) -> Vec<Found> {
    let value_start = raw.iter().position(|&b| b == b':').map_or(raw.len(), |c| c + 1);
    let toks = tokenize(raw, value_start);
    // For each position, the next `>`; for each `>`, the last `<` before it (so `<<a@b>>`
    // gives a@b).
    let mut next_close = vec![None; toks.len() + 1];
    for j in (0..toks.len()).rev() {
        next_close[j] = if toks[j].kind == Kind::Op(b'>') { Some(j) } else { next_close[j + 1] };
    }
    let mut last_open = vec![0; toks.len()];
    let mut open = 0;
    for (j, t) in toks.iter().enumerate() {
        if t.kind == Kind::Op(b'<') {
            open = j;
        }
        last_open[j] = open;
    }
    let mut found = Vec::new();
    let mut seg: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].kind {
            Kind::Op(b',') | Kind::Op(b';') => flush_plain(raw, &mut seg, &mut found),
            // A group name or an obsolete route before it: not an address.
            Kind::Op(b':') => seg.clear(),
            // What came before is a display name.
            Kind::Op(b'<') => {
                seg.clear();
                if let Some(end) = next_close[i] {
                    let start = last_open[end] + 1;
                    if let Some(f) = make_address(raw, route_addr(&toks[start..end])) {
                        found.push(f);
                    }
                    i = end;
                }
            }
            Kind::Op(b'>') => {}
            _ => seg.push(toks[i]),
        }
        i += 1;
    }
    flush_plain(raw, &mut seg, &mut found);
    found
}

/// Rewrite the addresses of `header` with `rewrite`, which returns the new form of an
/// address (canonical external form in, the same out). Returns the new field, or None when
/// no address changed (the field stays byte-exact).
pub fn rewrite_header<E>(
    header: &Header,
    mut rewrite: impl FnMut(&str) -> Result<String, E>,
) -> Result<Option<Header>, E> {
    let mut edits = Vec::new();
    for found in find_addresses(&header.raw) {
        let new = rewrite(&found.address)?;
        if new != found.address && !new.is_empty() {
            edits.push((found.start, found.end, new));
        }
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let mut raw = header.raw.clone();
    for (start, end, new) in edits.into_iter().rev() {
        raw.splice(start..end, new.into_bytes());
    }
    Ok(Some(Header { name: header.name.clone(), raw }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse_address_list;
    use crate::message::parse_header_block;

    fn header(raw: &str) -> Header {
        parse_header_block(raw.as_bytes()).headers.remove(0)
    }

    fn addrs(raw: &str) -> Vec<String> {
        find_addresses(raw.as_bytes()).into_iter().map(|f| f.address).collect()
    }

    /// Rewrites every address at example.com to example.org, and bare names to name@example.net.
    fn rewrite(raw: &str) -> String {
        let h = header(raw);
        let new = rewrite_header(&h, |a: &str| -> Result<String, ()> {
            Ok(if let Some(local) = a.strip_suffix("@host.example.com") {
                format!("{local}@example.com")
            } else if !a.contains('@') {
                format!("{a}@example.net")
            } else {
                a.to_string()
            })
        })
        .unwrap();
        String::from_utf8(new.map_or(h.raw, |n| n.raw)).unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(header_class("from"), Some(Class::HeaderSender));
        assert_eq!(header_class("Reply-To"), Some(Class::HeaderSender));
        assert_eq!(header_class("Resent-From"), Some(Class::HeaderSender));
        assert_eq!(header_class("Return-Receipt-To"), Some(Class::HeaderSender));
        assert_eq!(header_class("Errors-To"), Some(Class::HeaderSender));
        assert_eq!(header_class("CC"), Some(Class::HeaderRecipient));
        assert_eq!(header_class("Resent-Bcc"), Some(Class::HeaderRecipient));
        assert_eq!(header_class("Subject"), None);
        assert_eq!(header_class("Received"), None);
    }

    #[test]
    fn finds_the_same_addresses_as_the_list_parser() {
        for value in [
            "a@b",
            "Name <a@b>, c@d",
            r#""Doe, John" <john@example.com>, "Roe; Jane: x" <jane@example.com>"#,
            "Group: a@b, Name <c@d>;, e@f",
            "undisclosed-recipients:;",
            "a@b (Joe), (leading) c@d",
            "a(x)@(y)b",
            r#""john smith"@example.com, "john"@example.com"#,
            "<@r1,@r2:a@b>, @r3:c@d",
            "a@[192.0.2.1], a@[ 192.0.2.1 ]",
            "John Smith",
            "a@b c@d",
            "Name <a@b",
            "<<a@b>>",
            "=?utf-8?q?J=C3=B6hn?= <j@example.com>",
            "john . smith @ example . com",
            "a@b@c",
            "user@",
        ] {
            let raw = format!("To: {value}\n");
            assert_eq!(addrs(&raw), parse_address_list(value), "{value}");
        }
    }

    #[test]
    fn only_the_address_changes() {
        assert_eq!(
            rewrite("From: \"Doe, John\" <john@host.example.com> (the boss)\n"),
            "From: \"Doe, John\" <john@example.com> (the boss)\n"
        );
        assert_eq!(
            rewrite("From: =?utf-8?q?J=C3=B6hn_D=C5=93?= <jd@host.example.com>\n"),
            "From: =?utf-8?q?J=C3=B6hn_D=C5=93?= <jd@example.com>\n"
        );
        assert_eq!(
            rewrite("To: a@host.example.com (Ann),\n\tbob (Bob)\n"),
            "To: a@example.com (Ann),\n\tbob@example.net (Bob)\n"
        );
        assert_eq!(rewrite("Cc: Team: x@host.example.com, y@other.org;\n"), "Cc: Team: x@example.com, y@other.org;\n");
        // A source route is not part of the addr-spec: it stays.
        assert_eq!(rewrite("To: <@relay:u@host.example.com>\n"), "To: <@relay:u@example.com>\n");
    }

    #[test]
    fn unchanged_fields_stay_byte_exact() {
        for raw in [
            "From: \"john\"@other.org (x)\n",
            "To: Joe   <joe@other.org>  ,\r\n  ann@other.org\n",
            "To: undisclosed-recipients:;\n",
            "From: J\u{fc}rgen <j@other.org>\n",
        ] {
            assert_eq!(rewrite(raw), raw);
        }
        // 8-bit bytes outside the address survive an edit.
        let h = Header { name: "From".into(), raw: b"From: J\xfcrgen <j@host.example.com>\n".to_vec() };
        let new = rewrite_header(&h, |a: &str| -> Result<String, ()> { Ok(a.replace("host.", "")) }).unwrap().unwrap();
        assert_eq!(new.raw, b"From: J\xfcrgen <j@example.com>\n");
    }

    #[test]
    fn quoted_local_parts() {
        assert_eq!(rewrite("From: \"john smith\"@host.example.com\n"), "From: \"john smith\"@example.com\n");
        assert_eq!(addrs("From: \"a\\\"b\"@x\n"), [r#""a\"b"@x"#]);
    }

    #[test]
    fn errors_pass_through() {
        let h = header("To: a@b\n");
        assert_eq!(rewrite_header(&h, |_: &str| Err("down")), Err("down"));
    }
}
