//! `$name` expansion with Postfix's syntax (util/mac_expand.c, mac_parse.c):
//!
//! | form                  | result                                     |
//! |-----------------------|--------------------------------------------|
//! | `$name` `${name}` `$(name)` | the value of `name`                  |
//! | `${name?text}`        | `text` when `name` is non-empty, else ""   |
//! | `${name:text}`        | `text` when `name` is empty, else ""       |
//! | `${name?{a}:{b}}`     | `a` when `name` is non-empty, else `b`     |
//! | `$$`                  | a literal `$`                              |
//!
//! Names are `[A-Za-z0-9_]+`. The `text` parts are expanded in turn. The lookup of a name is
//! the caller's business (it knows the parameters and detects loops); this module only reads
//! the syntax and caps the nesting of `${...}` inside `${...}`.

/// Postfix refuses to nest deeper than this (mac_expand: `mc->level++ > 100`).
pub const MAX_NESTING: usize = 100;

#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError<E> {
    /// Malformed `$` syntax; the text says what is wrong.
    Syntax(String),
    /// Conditional text nested more than [`MAX_NESTING`] levels.
    TooDeep,
    /// The lookup failed (unknown name, loop...): passed through untouched.
    Lookup(E),
}

/// Expands every `$` expression in `text`, asking `lookup` for the value of each name.
///
/// Both branches of a conditional are expanded even though only one is used, so a misspelt
/// name is caught whatever the other parameters hold today.
pub fn expand<E>(text: &str, lookup: &mut dyn FnMut(&str) -> Result<String, E>) -> Result<String, ExpandError<E>> {
    expand_at(text, lookup, 0)
}

fn expand_at<E>(
    text: &str,
    lookup: &mut dyn FnMut(&str) -> Result<String, E>,
    level: usize,
) -> Result<String, ExpandError<E>> {
    if level > MAX_NESTING {
        return Err(ExpandError::TooDeep);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        rest = match after.chars().next() {
            Some('$') => {
                out.push('$');
                &after[1..]
            }
            Some(open @ ('{' | '(')) => {
                let (inner, remainder) = split_group(after, open)?;
                out.push_str(&expand_group(inner, open, lookup, level)?);
                remainder
            }
            Some(c) if is_name_char(c) => {
                let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                out.push_str(&lookup(&after[..end]).map_err(ExpandError::Lookup)?);
                &after[end..]
            }
            _ => {
                return Err(ExpandError::Syntax(
                    "\"$\" must be followed by a name, \"{\" or \"(\"; write \"$$\" for a \"$\"".to_string(),
                ));
            }
        };
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn closing(open: char) -> char {
    if open == '{' { '}' } else { ')' }
}

/// Splits `{...}rest` (or `(...)rest`) at the matching close, counting nested pairs of the
/// same kind as mac_parse does. Returns the inside and what follows the close.
fn split_group<E>(text: &str, open: char) -> Result<(&str, &str), ExpandError<E>> {
    let close = closing(open);
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Ok((&text[1..at], &text[at + 1..]));
            }
        }
    }
    Err(ExpandError::Syntax(format!("unmatched \"{open}\"")))
}

/// The inside of `${...}`: a name, optionally followed by `?text`, `:text` or `?{a}:{b}`.
fn expand_group<E>(
    inner: &str,
    open: char,
    lookup: &mut dyn FnMut(&str) -> Result<String, E>,
    level: usize,
) -> Result<String, ExpandError<E>> {
    let name_end = inner.find(|c| !is_name_char(c)).unwrap_or(inner.len());
    let (name, tail) = inner.split_at(name_end);
    if name.is_empty() {
        return Err(ExpandError::Syntax(format!("missing parameter name after \"${open}\"")));
    }
    let value = lookup(name).map_err(ExpandError::Lookup)?;
    let Some(operator) = tail.chars().next() else {
        return Ok(value);
    };
    let (if_set, if_empty) = match operator {
        '?' | ':' => branches(&tail[1..], operator)?,
        other => {
            return Err(ExpandError::Syntax(format!(
                "unexpected \"{other}\" after \"${open}{name}\" (expected \"?\", \":\" or \"{}\")",
                closing(open)
            )));
        }
    };
    let if_set = expand_at(if_set, lookup, level + 1)?;
    let if_empty = expand_at(if_empty, lookup, level + 1)?;
    Ok(if value.is_empty() { if_empty } else { if_set })
}

/// The texts used when the name is non-empty and when it is empty.
/// `?text` → (text, ""); `:text` → ("", text); `?{a}:{b}` → (a, b); `:{b}` → ("", b).
fn branches<E>(text: &str, operator: char) -> Result<(&str, &str), ExpandError<E>> {
    let braced = text.trim_start();
    if !braced.starts_with('{') {
        return Ok(if operator == '?' { (text, "") } else { ("", text) });
    }
    let (first, after) = split_group(braced, '{')?;
    let after = after.trim();
    if after.is_empty() {
        return Ok(if operator == '?' { (first, "") } else { ("", first) });
    }
    let second = after.strip_prefix(':').map(str::trim_start).filter(|rest| operator == '?' && rest.starts_with('{'));
    let Some(second) = second else {
        return Err(ExpandError::Syntax("expected \"${name?{text}:{text}}\"".to_string()));
    };
    let (second, trailing) = split_group(second, '{')?;
    if !trailing.trim().is_empty() {
        return Err(ExpandError::Syntax(format!("unexpected \"{}\" after \"{{{second}}}\"", trailing.trim())));
    }
    Ok((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("myhostname", "mail.example.com"),
            ("mydomain", "example.com"),
            ("empty", ""),
            ("name_1", "one"),
        ])
    }

    fn run(text: &str) -> Result<String, ExpandError<String>> {
        let values = table();
        expand(text, &mut |name| values.get(name).map(|v| v.to_string()).ok_or_else(|| name.to_string()))
    }

    fn ok(text: &str) -> String {
        run(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn plain_braced_and_parenthesised_names() {
        assert_eq!(ok("$myhostname"), "mail.example.com");
        assert_eq!(ok("${myhostname}"), "mail.example.com");
        assert_eq!(ok("$(myhostname)"), "mail.example.com");
        assert_eq!(ok("localhost.$mydomain, x"), "localhost.example.com, x");
        assert_eq!(ok("${mydomain}x"), "example.comx");
        assert_eq!(ok("$name_1-two"), "one-two");
        assert_eq!(ok("no dollars"), "no dollars");
        assert_eq!(ok(""), "");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("cost $$5"), "cost $5");
        assert_eq!(ok("$$mydomain"), "$mydomain");
        assert_eq!(ok("$$$mydomain"), "$example.com");
    }

    #[test]
    fn conditionals() {
        assert_eq!(ok("${mydomain?set}"), "set");
        assert_eq!(ok("${empty?set}"), "");
        assert_eq!(ok("${mydomain:unset}"), "");
        assert_eq!(ok("${empty:unset}"), "unset");
        assert_eq!(ok("$(empty:unset)"), "unset");
        assert_eq!(ok("${mydomain?{yes}:{no}}"), "yes");
        assert_eq!(ok("${empty?{yes}:{no}}"), "no");
        assert_eq!(ok("${empty?{yes} : {no}}"), "no");
        assert_eq!(ok("${empty:{no}}"), "no");
        assert_eq!(ok("${mydomain?{only}}"), "only");
    }

    #[test]
    fn conditional_text_is_expanded() {
        assert_eq!(ok("${mydomain?at $mydomain}"), "at example.com");
        assert_eq!(ok("${empty:${myhostname}}"), "mail.example.com");
        assert_eq!(ok("${empty?{$mydomain}:{${name_1?{x$name_1}}}}"), "xone");
    }

    #[test]
    fn unknown_names_reach_the_lookup_error() {
        assert_eq!(run("a $nosuch b"), Err(ExpandError::Lookup("nosuch".into())));
        assert_eq!(run("${nosuch?x}"), Err(ExpandError::Lookup("nosuch".into())));
        // The branch not taken is still checked.
        assert_eq!(run("${mydomain?{x}:{$typo}}"), Err(ExpandError::Lookup("typo".into())));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "$",
            "a $ b",
            "${mydomain",
            "$(mydomain",
            "${}",
            "${?x}",
            "${mydomain!x}",
            "${mydomain?{a}:b}",
            "${mydomain?{a}x}",
            "${mydomain?{a}:{b}c}",
            "${mydomain:{a}:{b}}",
        ] {
            assert!(matches!(run(bad), Err(ExpandError::Syntax(_))), "{bad}: {:?}", run(bad));
        }
    }

    #[test]
    fn nesting_is_capped() {
        let deep = |levels: usize| {
            let mut text = String::from("x");
            for _ in 0..levels {
                text = format!("${{mydomain?{text}}}");
            }
            text
        };
        assert_eq!(ok(&deep(MAX_NESTING)), "x");
        assert_eq!(run(&deep(MAX_NESTING + 2)), Err(ExpandError::TooDeep));
    }
}
