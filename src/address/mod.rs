//! Mail addresses: lists as they appear in headers and on the sendmail command line
//! (`parse_address_list`, tolerant like Postfix's tok822), strict envelope paths
//! (`parse_path`, for SMTP and command-line paths), and qualification of bare local parts
//! (`qualify`, Postfix's append_at_myorigin).
//!
//! Addresses are returned in one canonical form: `local@domain`, the local part quoted only
//! when it is not a dot-atom (`"john smith"@example.com`, `john@example.com` even if it came
//! as `"john"@example.com`), source routes removed, the domain as given. The null sender is
//! the empty string.

mod list;
mod path;

pub use path::{AddressError, AddressErrorKind, parse_path};

/// The addr-specs of an RFC 5322 address list (a header value, or a sendmail command-line
/// argument such as `"Doe, John" <john@example.com>, jane`), in order.
///
/// Display names, comments, group names and source routes are dropped; groups contribute
/// their members (`undisclosed-recipients:;` contributes nothing); bare local parts are
/// returned unqualified (see [`qualify`]). Empty addresses (`<>`) are left out. Never fails and
/// never panics: malformed input yields whatever addresses can be made of it.
pub fn parse_address_list(value: &str) -> Vec<String> {
    list::parse_all(value).into_iter().filter(|a| !a.is_empty()).collect()
}

/// The envelope sender given with `sendmail -f`/`-r`, the way Postfix reads it: the value is
/// parsed as an address list and its first address is the sender, so `Joe <joe@example>`
/// gives `joe@example`; `<>`, `""` or a value without any address give the null sender `""`.
pub fn parse_sender(value: &str) -> String {
    list::parse_all(value).into_iter().next().unwrap_or_default()
}

/// Append `@myorigin` to a bare local part (Postfix append_at_myorigin); an address that has a
/// domain is returned unchanged except that one trailing dot is removed from its domain
/// (`user@example.com.` → `user@example.com`). The null sender (`""`) stays empty. An `@`
/// inside a quoted local part does not count as the domain separator.
pub fn qualify(address: &str, myorigin: &str) -> String {
    if address.is_empty() {
        return String::new();
    }
    match split_domain(address) {
        Some((local, domain)) => {
            let domain = domain.strip_suffix('.').unwrap_or(domain);
            format!("{local}@{domain}")
        }
        None => {
            let origin = myorigin.strip_suffix('.').unwrap_or(myorigin);
            if origin.is_empty() { address.to_string() } else { format!("{address}@{origin}") }
        }
    }
}

/// Split at the last `@` that is not inside a quoted string or after a backslash.
pub fn split_domain(address: &str) -> Option<(&str, &str)> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut at = None;
    for (i, c) in address.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if c == '@' && !in_quotes {
            at = Some(i);
        }
    }
    at.map(|i| (&address[..i], &address[i + 1..]))
}

/// RFC 5322 atext, extended with every non-ASCII character (RFC 6532).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

/// True if `s` is a dot-atom: atext runs separated by single dots, no leading/trailing dot.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(is_atext))
}

/// The external form of an (unquoted) local part: as is when it is a dot-atom, otherwise a
/// quoted string with `"` and `\` escaped. An empty local part stays empty.
pub fn quote_local_part(local: &str) -> String {
    if local.is_empty() || is_dot_atom(local) {
        return local.to_string();
    }
    let mut out = String::with_capacity(local.len() + 2);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        parse_address_list(s)
    }

    #[test]
    fn mailboxes() {
        assert_eq!(list("a@b"), vec!["a@b"]);
        assert_eq!(list("  a@b  ,c@d"), vec!["a@b", "c@d"]);
        assert_eq!(list("Name <a@b>"), vec!["a@b"]);
        assert_eq!(list("Jöhn Dœ <jd@example.com>"), vec!["jd@example.com"]);
        assert_eq!(list("=?utf-8?q?J=C3=B6hn?= <j@example.com>"), vec!["j@example.com"]);
        assert_eq!(list("Johnny B. Goode <johnny@example.org>"), vec!["johnny@example.org"]);
        assert_eq!(list(r#""quoted, name" <a@b>, c@d"#), vec!["a@b", "c@d"]);
        assert_eq!(
            list(r#""Doe, John" <john@example.com>, "Roe; Jane: x" <jane@example.com>"#),
            vec!["john@example.com", "jane@example.com"]
        );
        assert_eq!(list(r#""a \"quoted\" <name>" <x@y>"#), vec!["x@y"]);
        assert_eq!(list("a@b,,, ,c@d,"), vec!["a@b", "c@d"]);
        assert_eq!(list(""), Vec::<String>::new());
        assert_eq!(list("   "), Vec::<String>::new());
    }

    #[test]
    fn groups() {
        assert_eq!(list("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(list("undisclosed-recipients: ;"), Vec::<String>::new());
        assert_eq!(list("Group: a@b, Name <c@d>;, e@f"), vec!["a@b", "c@d", "e@f"]);
        assert_eq!(list("Friends: a@b; Family: c@d;"), vec!["a@b", "c@d"]);
        assert_eq!(list(r#""The Group": a@b;"#), vec!["a@b"]);
        // Unterminated group.
        assert_eq!(list("Group: a@b, c@d"), vec!["a@b", "c@d"]);
    }

    #[test]
    fn comments() {
        assert_eq!(list("a@b (Joe)"), vec!["a@b"]);
        assert_eq!(list("(leading) a@b"), vec!["a@b"]);
        assert_eq!(list("a(x)@(y)b"), vec!["a@b"]);
        assert_eq!(list("a@b (nested (comment, with) comma), c@d"), vec!["a@b", "c@d"]);
        assert_eq!(list(r"a@b (escaped \) paren, x@y)"), vec!["a@b"]);
        assert_eq!(list("Joe (x) <j@e> (trailing)"), vec!["j@e"]);
        assert_eq!(list("a@b (unterminated, c@d"), vec!["a@b"]);
    }

    #[test]
    fn quoted_local_parts() {
        assert_eq!(list(r#""john smith"@example.com"#), vec![r#""john smith"@example.com"#]);
        assert_eq!(list(r#"<"john smith"@example.com>"#), vec![r#""john smith"@example.com"#]);
        // Quotes that are not needed are removed.
        assert_eq!(list(r#""john"@example.com"#), vec!["john@example.com"]);
        assert_eq!(list(r#""a\"b"@c"#), vec![r#""a\"b"@c"#]);
        assert_eq!(list(r#""a@b"@c"#), vec![r#""a@b"@c"#]);
        assert_eq!(list(r#""a..b"@c"#), vec![r#""a..b"@c"#]);
        assert_eq!(list("john . smith @ example . com"), vec!["john.smith@example.com"]);
        assert_eq!(list("a@b@c"), vec![r#""a@b"@c"#]);
        assert_eq!(list(r#""a, b"@c, d@e"#), vec![r#""a, b"@c"#, "d@e"]);
        assert_eq!(list("jürgen@bücher.example"), vec!["jürgen@bücher.example"]);
    }

    #[test]
    fn routes_and_literals() {
        assert_eq!(list("<@r1,@r2:a@b>"), vec!["a@b"]);
        assert_eq!(list("Joe <@r1:a@b>, c@d"), vec!["a@b", "c@d"]);
        assert_eq!(list("@r1:a@b"), vec!["a@b"]);
        assert_eq!(list("a@[192.0.2.1]"), vec!["a@[192.0.2.1]"]);
        assert_eq!(list("a@[IPv6:2001:db8::1]"), vec!["a@[IPv6:2001:db8::1]"]);
        assert_eq!(list("<a@[ 192.0.2.1 ]>"), vec!["a@[192.0.2.1]"]);
    }

    #[test]
    fn bare_and_obsolete() {
        assert_eq!(list("user"), vec!["user"]);
        assert_eq!(list("user, other@x"), vec!["user", "other@x"]);
        // Postfix adds the missing comma between words.
        assert_eq!(list("John Smith"), vec!["John", "Smith"]);
        assert_eq!(list("a@b c@d"), vec!["a@b", "c@d"]);
        assert_eq!(list("Name <a@b"), vec!["a@b"]);
        assert_eq!(list("Name a@b>"), vec!["Name", "a@b"]);
        assert_eq!(list("<<a@b>>"), vec!["a@b"]);
        assert_eq!(list("a@b\r\n\tc@d"), vec!["a@b", "c@d"]);
        assert_eq!(list("user@"), vec!["user@"]);
        assert_eq!(list("@"), Vec::<String>::new());
        assert_eq!(list("<>"), Vec::<String>::new());
        assert_eq!(list("a\u{0}b@c\u{1b}d"), vec!["a", "b@c", "d"]);
    }

    #[test]
    fn sender() {
        assert_eq!(parse_sender(""), "");
        assert_eq!(parse_sender("<>"), "");
        assert_eq!(parse_sender(" <> "), "");
        assert_eq!(parse_sender("()"), "");
        assert_eq!(parse_sender("me@example.com"), "me@example.com");
        assert_eq!(parse_sender("<me@example.com>"), "me@example.com");
        assert_eq!(parse_sender("Me <me@example.com>"), "me@example.com");
        assert_eq!(parse_sender("me"), "me");
        assert_eq!(parse_sender("a@b, c@d"), "a@b");
    }

    #[test]
    fn qualification() {
        assert_eq!(qualify("user", "example.com"), "user@example.com");
        assert_eq!(qualify("user", "example.com."), "user@example.com");
        assert_eq!(qualify("user@other.org", "example.com"), "user@other.org");
        assert_eq!(qualify("user@other.org.", "example.com"), "user@other.org");
        assert_eq!(qualify("user@other.org..", "example.com"), "user@other.org.");
        assert_eq!(qualify("", "example.com"), "");
        assert_eq!(qualify(r#""a@b""#, "example.com"), r#""a@b"@example.com"#);
        assert_eq!(qualify(r#""a\"@b""#, "example.com"), r#""a\"@b"@example.com"#);
        assert_eq!(qualify(r#""a@b"@c"#, "example.com"), r#""a@b"@c"#);
        assert_eq!(qualify("user@[192.0.2.1]", "example.com"), "user@[192.0.2.1]");
        assert_eq!(qualify("user", ""), "user");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_local_part("john"), "john");
        assert_eq!(quote_local_part("john.smith+tag"), "john.smith+tag");
        assert_eq!(quote_local_part("john smith"), r#""john smith""#);
        assert_eq!(quote_local_part(".john"), r#"".john""#);
        assert_eq!(quote_local_part("john."), r#""john.""#);
        assert_eq!(quote_local_part(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote_local_part("jürgen"), "jürgen");
        assert_eq!(quote_local_part(""), "");
    }

    /// A fixed-seed linear congruential generator: reproducible "random" input.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: usize) -> usize {
            self.next() as usize % n
        }
    }

    fn random_string(rng: &mut Lcg) -> String {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "user",
            "example.com",
            "@",
            ".",
            ",",
            ";",
            ":",
            "<",
            ">",
            "(",
            ")",
            "\"",
            "\\",
            "[",
            "]",
            " ",
            "\t",
            "\r\n",
            "\n ",
            "\u{0}",
            "\u{7f}",
            "é",
            "ß",
            "日本",
            "\u{85}",
            "=?utf-8?q?x?=",
            "<>",
            "@[",
            "Group:",
            "\"x\"",
            "((",
            "))",
            "\\\"",
            "..",
        ];
        let len = rng.below(24);
        let mut s = String::new();
        for _ in 0..len {
            if rng.below(8) == 0 {
                // Any Unicode scalar value, including controls and surrogates' neighbours.
                if let Some(c) = char::from_u32(rng.next() % 0x11_0000) {
                    s.push(c);
                }
            } else {
                s.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        s
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = Lcg(0x7469_6465_6d61_696c);
        for _ in 0..20_000 {
            let s = random_string(&mut rng);
            for a in parse_address_list(&s) {
                assert!(!a.is_empty());
                assert!(!a.chars().any(|c| c.is_control()), "control character in {a:?} from {s:?}");
                // Canonical output parses back to itself when it has no odd domain.
                if let Some((local, domain)) = split_domain(&a) {
                    let plain_domain = domain.chars().any(char::is_alphanumeric)
                        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
                    if !local.is_empty() && plain_domain {
                        assert_eq!(parse_address_list(&a), vec![a.clone()], "from {s:?}");
                    }
                }
                let q = qualify(&a, "example.com");
                assert!(q.len() >= a.len() - 1);
            }
            let _ = parse_sender(&s);
            if let Ok(p) = parse_path(&s) {
                assert!(p.len() <= 254);
                assert!(!p.chars().any(|c| c.is_control()));
                assert_eq!(parse_path(&p).as_deref(), Ok(p.as_str()), "from {s:?}");
            }
        }
        // Random bytes, lossily decoded the way header values are.
        for _ in 0..5_000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_address_list(&s);
            let _ = parse_path(&s);
            let _ = qualify(&s, "example.com");
        }
    }

    #[test]
    fn deep_nesting_is_linear() {
        let s = "(".repeat(100_000) + &"<".repeat(100_000) + "a@b";
        assert_eq!(parse_address_list(&s), Vec::<String>::new());
        let s = "<".repeat(50_000) + "a@b" + &">".repeat(50_000);
        assert_eq!(parse_address_list(&s), vec!["a@b"]);
    }
}
