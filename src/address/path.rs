//! Strict parsing of one envelope address as given in SMTP (`MAIL FROM:<...>`) or on a command
//! line: `user@example.com`, `<user@example.com>`, `<>` or the empty string (the null sender).

use std::fmt;

use super::{is_atext, quote_local_part};

/// The longest address we accept: RFC 5321's 256-octet path limit, minus the angle brackets.
const MAX_ADDRESS_LEN: usize = 254;

/// What is wrong with an address given to [`parse_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressErrorKind {
    ControlCharacter,
    UnbalancedAngleBrackets,
    UnterminatedQuote,
    UnterminatedDomainLiteral,
    SpaceOutsideQuotes,
    TooLong { len: usize },
    EmptyLocalPart,
    EmptyDomain,
    MisplacedAt,
    BadCharacter(char),
    BadRoute,
}

impl fmt::Display for AddressErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressErrorKind::ControlCharacter => f.write_str("contains a control character"),
            AddressErrorKind::UnbalancedAngleBrackets => f.write_str("unbalanced or misplaced angle brackets"),
            AddressErrorKind::UnterminatedQuote => f.write_str("unterminated quoted string"),
            AddressErrorKind::UnterminatedDomainLiteral => f.write_str("unterminated [domain literal]"),
            AddressErrorKind::SpaceOutsideQuotes => f.write_str("contains white space outside quotes"),
            AddressErrorKind::TooLong { len } => {
                write!(f, "too long ({len} bytes, at most {MAX_ADDRESS_LEN} allowed)")
            }
            AddressErrorKind::EmptyLocalPart => f.write_str("empty local part before @"),
            AddressErrorKind::EmptyDomain => f.write_str("empty domain after @"),
            AddressErrorKind::MisplacedAt => f.write_str("more than one @ outside quotes"),
            AddressErrorKind::BadCharacter(c) => write!(f, "character {c:?} is not allowed here"),
            AddressErrorKind::BadRoute => f.write_str("malformed source route"),
        }
    }
}

/// A rejected address: says what is wrong and quotes the input (escaped, and shortened if it
/// is very long), e.g. `bad address "john smith@example.com": contains white space outside
/// quotes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {}: {kind}", shown(input))]
pub struct AddressError {
    pub input: String,
    pub kind: AddressErrorKind,
}

fn shown(input: &str) -> String {
    const MAX: usize = 100;
    match input.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &input[..cut]),
        None => format!("{input:?}"),
    }
}

/// Parse one envelope path strictly. Accepts `user@domain`, `<user@domain>`, a bare local part
/// (`user`, for the command line; see [`super::qualify`]), a source route (removed:
/// `<@relay:user@domain>` gives `user@domain`), quoted local parts (`"john smith"@example.com`)
/// and domain literals (`user@[192.0.2.1]`). `<>` and `""` are the null sender and give `""`.
///
/// Rejects control characters, unbalanced angle brackets, white space or RFC 5322 specials
/// outside quotes, unterminated quotes, a missing local part or domain around `@`, and
/// addresses longer than 254 characters. The result is in canonical form (see the module
/// documentation).
pub fn parse_path(s: &str) -> Result<String, AddressError> {
    let err = |kind| AddressError { input: s.to_string(), kind };
    if s.chars().any(char::is_control) {
        return Err(err(AddressErrorKind::ControlCharacter));
    }
    let inner = match (s.strip_prefix('<'), s.ends_with('>')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) => s,
        _ => return Err(err(AddressErrorKind::UnbalancedAngleBrackets)),
    };
    if inner.is_empty() {
        return Ok(String::new());
    }
    let addr = strip_route(inner).map_err(err)?;
    let canonical = addr_spec(addr).map_err(err)?;
    let len = canonical.len();
    if len > MAX_ADDRESS_LEN {
        return Err(err(AddressErrorKind::TooLong { len }));
    }
    Ok(canonical)
}

/// Remove an RFC 5321 source route (`@a,@b:`), checking its shape.
fn strip_route(inner: &str) -> Result<&str, AddressErrorKind> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    // `@domain` alone is an address without its local part, not a route.
    let (route, rest) = inner.split_once(':').ok_or(AddressErrorKind::EmptyLocalPart)?;
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressErrorKind::BadRoute)?;
        if domain.is_empty() || check_domain(domain).is_err() {
            return Err(AddressErrorKind::BadRoute);
        }
    }
    if rest.is_empty() {
        return Err(AddressErrorKind::EmptyLocalPart);
    }
    Ok(rest)
}

/// Check `local[@domain]` and return it with the local part in canonical quoting.
fn addr_spec(addr: &str) -> Result<String, AddressErrorKind> {
    // Unquoted text of the local part, and the byte offset of the separating '@'.
    let mut local = String::new();
    let mut at = None;
    let mut chars = addr.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err(AddressErrorKind::UnterminatedQuote),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, q)) => local.push(q),
                        None => return Err(AddressErrorKind::UnterminatedQuote),
                    },
                    Some((_, q)) => local.push(q),
                }
            },
            '@' => {
                at = Some(i);
                break;
            }
            c => {
                check_plain(c)?;
                local.push(c);
            }
        }
    }
    let Some(at) = at else {
        return Ok(quote_local_part(&local));
    };
    if local.is_empty() && !addr.starts_with('"') {
        return Err(AddressErrorKind::EmptyLocalPart);
    }
    let domain = &addr[at + 1..];
    check_domain(domain)?;
    let local = if local.is_empty() { "\"\"".to_string() } else { quote_local_part(&local) };
    Ok(format!("{local}@{domain}"))
}

/// A character outside quotes in a local part.
fn check_plain(c: char) -> Result<(), AddressErrorKind> {
    match c {
        ' ' | '\t' => Err(AddressErrorKind::SpaceOutsideQuotes),
        '<' | '>' => Err(AddressErrorKind::UnbalancedAngleBrackets),
        '.' => Ok(()),
        c if is_atext(c) => Ok(()),
        c => Err(AddressErrorKind::BadCharacter(c)),
    }
}

fn check_domain(domain: &str) -> Result<(), AddressErrorKind> {
    if domain.is_empty() {
        return Err(AddressErrorKind::EmptyDomain);
    }
    if let Some(rest) = domain.strip_prefix('[') {
        let Some(content) = rest.strip_suffix(']') else {
            return Err(match rest.find(']') {
                Some(_) => AddressErrorKind::BadCharacter(']'),
                None => AddressErrorKind::UnterminatedDomainLiteral,
            });
        };
        return match content.chars().find(|&c| matches!(c, '[' | ']' | '\\' | ' ' | '\t' | '<' | '>')) {
            None if content.is_empty() => Err(AddressErrorKind::EmptyDomain),
            None => Ok(()),
            Some(' ' | '\t') => Err(AddressErrorKind::SpaceOutsideQuotes),
            Some('<' | '>') => Err(AddressErrorKind::UnbalancedAngleBrackets),
            Some(c) => Err(AddressErrorKind::BadCharacter(c)),
        };
    }
    for c in domain.chars() {
        match c {
            ' ' | '\t' => return Err(AddressErrorKind::SpaceOutsideQuotes),
            '<' | '>' => return Err(AddressErrorKind::UnbalancedAngleBrackets),
            '@' => return Err(AddressErrorKind::MisplacedAt),
            c if c.is_alphanumeric() || matches!(c, '-' | '.' | '_') => {}
            c => return Err(AddressErrorKind::BadCharacter(c)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> AddressErrorKind {
        parse_path(s).unwrap_err().kind
    }

    #[test]
    fn accepted() {
        assert_eq!(parse_path("user@example.com").unwrap(), "user@example.com");
        assert_eq!(parse_path("<user@example.com>").unwrap(), "user@example.com");
        assert_eq!(parse_path("<>").unwrap(), "");
        assert_eq!(parse_path("").unwrap(), "");
        assert_eq!(parse_path("user").unwrap(), "user");
        assert_eq!(parse_path("<user>").unwrap(), "user");
        assert_eq!(parse_path("first.last+tag@sub.example.com").unwrap(), "first.last+tag@sub.example.com");
        assert_eq!(parse_path(r#""john smith"@example.com"#).unwrap(), r#""john smith"@example.com"#);
        assert_eq!(parse_path(r#"<"john"@example.com>"#).unwrap(), "john@example.com");
        assert_eq!(parse_path(r#""a@b"@example.com"#).unwrap(), r#""a@b"@example.com"#);
        assert_eq!(parse_path(r#""a\"b"@example.com"#).unwrap(), r#""a\"b"@example.com"#);
        assert_eq!(parse_path(r#"""@example.com"#).unwrap(), r#"""@example.com"#);
        assert_eq!(parse_path("user@[192.0.2.1]").unwrap(), "user@[192.0.2.1]");
        assert_eq!(parse_path("user@[IPv6:2001:db8::1]").unwrap(), "user@[IPv6:2001:db8::1]");
        assert_eq!(parse_path("<@relay.example:user@example.com>").unwrap(), "user@example.com");
        assert_eq!(parse_path("<@a.example,@b.example:user@example.com>").unwrap(), "user@example.com");
        assert_eq!(parse_path("jürgen@bücher.example").unwrap(), "jürgen@bücher.example");
        assert_eq!(parse_path("user@example.com.").unwrap(), "user@example.com.");
        // Postfix accepts non-RFC dot placement; it comes back quoted.
        assert_eq!(parse_path("a..b@example.com").unwrap(), r#""a..b"@example.com"#);
        let long = format!("{}@example.com", "a".repeat(254 - 12));
        assert_eq!(parse_path(&long).unwrap(), long);
    }

    #[test]
    fn rejected() {
        assert_eq!(kind("user@exa\nmple.com"), AddressErrorKind::ControlCharacter);
        assert_eq!(kind("user\r@example.com"), AddressErrorKind::ControlCharacter);
        assert_eq!(kind("user@example.com\u{7f}"), AddressErrorKind::ControlCharacter);
        assert_eq!(kind("\"a\u{0}b\"@example.com"), AddressErrorKind::ControlCharacter);
        assert_eq!(kind("<user@example.com"), AddressErrorKind::UnbalancedAngleBrackets);
        assert_eq!(kind("user@example.com>"), AddressErrorKind::UnbalancedAngleBrackets);
        assert_eq!(kind("<<user@example.com>>"), AddressErrorKind::UnbalancedAngleBrackets);
        assert_eq!(kind("<user@exa<mple.com>"), AddressErrorKind::UnbalancedAngleBrackets);
        assert_eq!(kind("Joe <user@example.com>"), AddressErrorKind::UnbalancedAngleBrackets);
        assert_eq!(kind("<Joe user@example.com>"), AddressErrorKind::SpaceOutsideQuotes);
        assert_eq!(kind("john smith@example.com"), AddressErrorKind::SpaceOutsideQuotes);
        assert_eq!(kind(" user@example.com"), AddressErrorKind::SpaceOutsideQuotes);
        assert_eq!(kind("user@example.com "), AddressErrorKind::SpaceOutsideQuotes);
        assert_eq!(kind("user@ex ample.com"), AddressErrorKind::SpaceOutsideQuotes);
        assert_eq!(kind("\"john smith@example.com"), AddressErrorKind::UnterminatedQuote);
        assert_eq!(kind("user@[192.0.2.1"), AddressErrorKind::UnterminatedDomainLiteral);
        assert_eq!(kind("@example.com"), AddressErrorKind::EmptyLocalPart);
        assert_eq!(kind("<@relay:>"), AddressErrorKind::EmptyLocalPart);
        assert_eq!(kind("<@:user@example.com>"), AddressErrorKind::BadRoute);
        assert_eq!(kind("<relay:user@example.com>"), AddressErrorKind::BadCharacter(':'));
        assert_eq!(kind("user@"), AddressErrorKind::EmptyDomain);
        assert_eq!(kind("user@[]"), AddressErrorKind::EmptyDomain);
        assert_eq!(kind("a@b@example.com"), AddressErrorKind::MisplacedAt);
        assert_eq!(kind("a,b@example.com"), AddressErrorKind::BadCharacter(','));
        assert_eq!(kind("user(comment)@example.com"), AddressErrorKind::BadCharacter('('));
        assert_eq!(kind("user@exam!ple.com"), AddressErrorKind::BadCharacter('!'));
        assert_eq!(kind(r"a\b@example.com"), AddressErrorKind::BadCharacter('\\'));
        let long = format!("{}@example.com", "a".repeat(254 - 11));
        assert_eq!(kind(&long), AddressErrorKind::TooLong { len: 255 });
    }

    #[test]
    fn error_messages_quote_the_input() {
        let e = parse_path("john smith@example.com").unwrap_err();
        assert_eq!(e.to_string(), r#"bad address "john smith@example.com": contains white space outside quotes"#);
        let e = parse_path("a\nb").unwrap_err();
        assert_eq!(e.to_string(), r#"bad address "a\nb": contains a control character"#);
        let e = parse_path("<a@b").unwrap_err();
        assert_eq!(e.to_string(), r#"bad address "<a@b": unbalanced or misplaced angle brackets"#);
        let e = parse_path(&format!("{}@x", "a".repeat(300))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(r#"bad address "{}"...: too long (302 bytes, at most 254 allowed)"#, "a".repeat(100))
        );
    }
}
