//! Tolerant RFC 5322 address-list parsing, in the spirit of Postfix's tok822 parser.
//!
//! The input is first cut into tokens (words, quoted strings, domain literals, the
//! single-character operators `< > @ , ; : .`); comments are dropped. The token stream is then
//! read from left to right:
//!
//! - `,` and `;` end an address (`;` also ends a group);
//! - `:` outside angle brackets ends a group's display name (or an obsolete source route); what
//!   came before it in the current address is not an address;
//! - `<...>` is an angle-addr: the phrase before it is dropped, a source route inside it
//!   (`<@r1,@r2:user@dom>`) is removed;
//! - two words in a row with no operator between them are two addresses, the way Postfix adds
//!   the "missing comma" (`a@b c@d` is two addresses; so is a bare `John Smith`).
//!
//! Nothing here fails: garbage in gives fewer (or odd-looking) addresses out, never a panic.

use super::quote_local_part;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (quoted pairs already resolved).
    Word(String),
    /// The content of a quoted string, unescaped.
    Quoted(String),
    /// A domain literal's content, without the brackets.
    Literal(String),
    /// One of `< > @ , ; : .`.
    Op(char),
}

impl Tok {
    fn is_word(&self) -> bool {
        !matches!(self, Tok::Op(_))
    }
}

/// Characters that end an atom and stand for themselves.
fn is_op(c: char) -> bool {
    matches!(c, '<' | '>' | '@' | ',' | ';' | ':' | '.')
}

/// Folding white space; CR and LF can only appear here from a header that was not unfolded.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Other control characters are dropped wherever they appear: they have no business in an
/// address and must never reach a header or a queue file through one.
fn is_dropped_control(c: char) -> bool {
    c.is_control() && !is_space(c)
}

fn tokenize(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if is_space(c) || is_dropped_control(c) => {}
            '(' => skip_comment(&mut chars),
            '"' => toks.push(Tok::Quoted(collect_until(&mut chars, '"', true))),
            '[' => toks.push(Tok::Literal(collect_until(&mut chars, ']', false))),
            // Stray closers carry no information.
            ')' | ']' => {}
            c if is_op(c) => toks.push(Tok::Op(c)),
            first => {
                let mut word = String::new();
                let mut next = Some(first);
                while let Some(c) = next {
                    if c == '\\' {
                        // A quoted pair outside quotes: keep the next character literally.
                        match chars.next_if(|&n| !is_dropped_control(n)) {
                            Some(n) if is_space(n) => word.push(' '),
                            Some(n) => word.push(n),
                            None => {}
                        }
                    } else {
                        word.push(c);
                    }
                    next = chars.next_if(|&n| {
                        !is_space(n) && !is_dropped_control(n) && !is_op(n) && !matches!(n, '(' | ')' | '"' | '[' | ']')
                    });
                }
                if !word.is_empty() {
                    toks.push(Tok::Word(word));
                }
            }
        }
    }
    toks
}

/// Skip a comment whose opening parenthesis was consumed. Comments nest; a backslash quotes
/// the next character; an unterminated comment runs to the end of the input.
fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    let mut depth = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Collect a quoted string or domain literal up to `close` (consumed) or the end of input.
/// White space inside a quoted string becomes one space per character (as tok822 does);
/// inside a domain literal it is dropped.
fn collect_until(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, close: char, keep_space: bool) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        let c = if c == '\\' {
            match chars.next() {
                Some(n) => n,
                None => break,
            }
        } else if c == close {
            break;
        } else {
            c
        };
        if is_space(c) {
            if keep_space {
                out.push(' ');
            }
        } else if !is_dropped_control(c) {
            out.push(c);
        }
    }
    out
}

/// All addresses of an address list, in order, including empty ones (`<>`).
pub(super) fn parse_all(value: &str) -> Vec<String> {
    let toks = tokenize(value);
    // For each position, the next `>` at or after it, and the last `<` at or before it: an
    // angle-addr is found without rescanning, so hostile input stays linear.
    let mut next_close = vec![None; toks.len() + 1];
    for j in (0..toks.len()).rev() {
        next_close[j] = if toks[j] == Tok::Op('>') { Some(j) } else { next_close[j + 1] };
    }
    let mut last_open = vec![0; toks.len()];
    let mut open = 0;
    for (j, t) in toks.iter().enumerate() {
        if *t == Tok::Op('<') {
            open = j;
        }
        last_open[j] = open;
    }
    let mut out = Vec::new();
    // Tokens of the address being collected, outside angle brackets.
    let mut seg: Vec<&Tok> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Op(',') | Tok::Op(';') => flush_plain(&mut seg, &mut out),
            // End of a group's display name, or of an obsolete route outside brackets.
            Tok::Op(':') => seg.clear(),
            Tok::Op('<') => {
                // The phrase before the bracket is a display name, not an address.
                seg.clear();
                // Without a closing bracket, forget the bracket and read on.
                if let Some(end) = next_close[i] {
                    // `<a<b@c>`: the innermost opening bracket wins.
                    let start = last_open[end] + 1;
                    out.push(route_addr(&toks[start..end]));
                    i = end;
                }
            }
            Tok::Op('>') => {}
            t => seg.push(t),
        }
        i += 1;
    }
    flush_plain(&mut seg, &mut out);
    out
}

/// An address outside angle brackets; words without an operator between them are separate
/// addresses (Postfix's "missing comma").
fn flush_plain(seg: &mut Vec<&Tok>, out: &mut Vec<String>) {
    let mut start = 0;
    for k in 1..=seg.len() {
        let boundary = k == seg.len() || (seg[k - 1].is_word() && seg[k].is_word());
        if boundary {
            let part = &seg[start..k];
            // Operators alone (`@`, `..`) are not an address.
            if part.iter().any(|t| t.is_word()) {
                out.push(addr_spec(part.iter().copied()));
            }
            start = k;
        }
    }
    seg.clear();
}

/// The content of `<...>`, without any source route.
fn route_addr(inner: &[Tok]) -> String {
    let inner = match inner.iter().rposition(|t| *t == Tok::Op(':')) {
        Some(colon) => &inner[colon + 1..],
        None => inner,
    };
    addr_spec(inner.iter())
}

/// Build `local@domain` from tokens: the last `@` separates the domain; the local part is
/// quoted if it is not a dot-atom.
fn addr_spec<'a>(toks: impl Iterator<Item = &'a Tok> + Clone) -> String {
    let last_at = toks.clone().enumerate().filter(|(_, t)| **t == Tok::Op('@')).map(|(k, _)| k).last();
    let mut local = String::new();
    let mut domain = String::new();
    for (k, t) in toks.enumerate() {
        match last_at {
            Some(at) if k == at => continue,
            Some(at) if k > at => push_domain_tok(&mut domain, t),
            _ => push_local_tok(&mut local, t),
        }
    }
    let mut out = quote_local_part(&local);
    if last_at.is_some() {
        out.push('@');
        out.push_str(&domain);
    }
    out
}

fn push_local_tok(local: &mut String, t: &Tok) {
    match t {
        Tok::Word(w) | Tok::Quoted(w) => local.push_str(w),
        Tok::Literal(l) => {
            local.push('[');
            local.push_str(l);
            local.push(']');
        }
        Tok::Op(c) => local.push(*c),
    }
}

fn push_domain_tok(domain: &mut String, t: &Tok) {
    // A domain has no white space, quotes or specials; what arrives in one through quoted
    // strings or quoted pairs is garbage and is left out, so the result is always one token.
    let fits = |c: &char| !is_space(*c) && !c.is_control() && !"@\"\\()<>,;:[]".contains(*c);
    match t {
        Tok::Word(w) | Tok::Quoted(w) => domain.extend(w.chars().filter(fits)),
        Tok::Literal(l) => {
            domain.push('[');
            domain.extend(l.chars().filter(|c| !matches!(c, '[' | ']' | '\\')));
            domain.push(']');
        }
        Tok::Op(c) if fits(c) => domain.push(*c),
        Tok::Op(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(
            tokenize(r#"Joe (x (y) z) "a\"b" <j@[1.2.3.4]>"#),
            vec![
                Tok::Word("Joe".into()),
                Tok::Quoted("a\"b".into()),
                Tok::Op('<'),
                Tok::Word("j".into()),
                Tok::Op('@'),
                Tok::Literal("1.2.3.4".into()),
                Tok::Op('>'),
            ]
        );
        assert_eq!(tokenize(r"a\ b@c"), vec![Tok::Word("a b".into()), Tok::Op('@'), Tok::Word("c".into())]);
        assert_eq!(tokenize("a\u{7}b"), vec![Tok::Word("a".into()), Tok::Word("b".into())]);
        assert_eq!(tokenize("\"unterminated"), vec![Tok::Quoted("unterminated".into())]);
        assert_eq!(tokenize("(unterminated comment"), vec![]);
        assert_eq!(tokenize("x\\"), vec![Tok::Word("x".into())]);
        assert_eq!(tokenize("a\\\tb"), vec![Tok::Word("a b".into())]);
    }

    #[test]
    fn empty_angle_addr_is_kept_internally() {
        assert_eq!(parse_all("<>"), vec![String::new()]);
        assert_eq!(parse_all("Mailer <>, a@b"), vec![String::new(), "a@b".to_string()]);
    }

    #[test]
    fn missing_comma() {
        assert_eq!(parse_all("a@b c@d"), vec!["a@b", "c@d"]);
        assert_eq!(parse_all("<a@b> c@d"), vec!["a@b", "c@d"]);
        assert_eq!(parse_all("a@b <c@d>"), vec!["c@d"]);
    }
}
