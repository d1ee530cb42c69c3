//! The canonical address form (Postfix's trivial-rewrite "rewrite" service): what every
//! envelope and header address becomes before any table is asked about it.
//!
//! In order: a source route is removed (`@a,@b:user@site` → `user@site`); an address without
//! `@` becomes `user@site` from `site!user` (swap_bangpath) or else from `user%site`
//! (allow_percent_hack, the last `%`), or else gets `@$myorigin` (append_at_myorigin);
//! `user@host` without a dot in the domain gets `.$mydomain` (append_dot_mydomain); one
//! trailing dot is removed from the domain. Quoted local parts are opaque: a `!`, `%` or `@`
//! inside quotes is part of the name.
//!
//! Headers of mail from remote SMTP clients are rewritten in the "remote" context, where
//! remote_header_rewrite_domain takes the place of both $myorigin and $mydomain.

use crate::config::Config;

/// The parameters of one rewriting context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Appended as `@origin` to an address without a domain (empty: nothing appended).
    pub origin: String,
    /// Appended as `.domain` to a domain without a dot (empty: nothing appended).
    pub domain: String,
    pub swap_bangpath: bool,
    pub percent_hack: bool,
    pub append_at_origin: bool,
    pub append_dot_domain: bool,
}

impl Context {
    /// The "local" context: $myorigin and $mydomain.
    pub fn local(cfg: &Config) -> Context {
        Context {
            origin: cfg.myorigin().to_string(),
            domain: cfg.mydomain().to_string(),
            swap_bangpath: cfg.swap_bangpath(),
            percent_hack: cfg.allow_percent_hack(),
            append_at_origin: cfg.append_at_myorigin(),
            append_dot_domain: cfg.append_dot_mydomain(),
        }
    }

    /// The "remote" context: remote_header_rewrite_domain for both, or None when that
    /// parameter is empty (then remote headers are not rewritten at all).
    pub fn remote(cfg: &Config) -> Option<Context> {
        let domain = cfg.remote_header_rewrite_domain();
        (!domain.is_empty()).then(|| Context {
            origin: domain.to_string(),
            domain: domain.to_string(),
            ..Context::local(cfg)
        })
    }
}

/// Byte offsets of the characters of `s` that are outside quoted strings and domain
/// literals, with the characters.
fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut in_quotes = false;
    let mut in_literal = false;
    let mut escaped = false;
    s.char_indices().filter(move |&(_, c)| {
        if escaped {
            escaped = false;
            return false;
        }
        match c {
            '\\' if in_quotes => {
                escaped = true;
                false
            }
            '"' if !in_literal => {
                in_quotes = !in_quotes;
                false
            }
            '[' if !in_quotes => {
                in_literal = true;
                false
            }
            ']' if in_literal => {
                in_literal = false;
                false
            }
            _ => !in_quotes && !in_literal,
        }
    })
}

/// The last `@` outside quotes, if any.
pub fn last_at(address: &str) -> Option<usize> {
    unquoted(address).filter(|&(_, c)| c == '@').map(|(i, _)| i).last()
}

/// Rewrite `address` (external form) to the canonical form in `ctx`. The null address stays
/// empty, and so does a lone `@`.
pub fn canonicalize(address: &str, ctx: &Context) -> String {
    if address.is_empty() || address == "@" {
        return String::new();
    }
    let mut addr = address.to_string();

    // A source route: @a,@b:user@site.
    let route_end = if addr.starts_with('@') { unquoted(&addr).find(|&(_, c)| c == ':').map(|(i, _)| i) } else { None };
    if let Some(colon) = route_end
        && colon + 1 < addr.len()
    {
        addr = addr[colon + 1..].to_string();
    }

    if last_at(&addr).is_none() {
        let bang = unquoted(&addr).find(|&(_, c)| c == '!').map(|(i, _)| i);
        let percent = unquoted(&addr).filter(|&(_, c)| c == '%').map(|(i, _)| i).last();
        if let (true, Some(bang)) = (ctx.swap_bangpath, bang) {
            addr = format!("{}@{}", &addr[bang + 1..], &addr[..bang]);
        } else if let (true, Some(percent)) = (ctx.percent_hack, percent) {
            addr.replace_range(percent..percent + 1, "@");
        } else if ctx.append_at_origin && !ctx.origin.is_empty() {
            addr.push('@');
            addr.push_str(ctx.origin.trim_end_matches('.'));
        }
    }

    if ctx.append_dot_domain
        && !ctx.domain.is_empty()
        && let Some(at) = last_at(&addr)
    {
        let domain = &addr[at + 1..];
        if !domain.is_empty() && !domain.contains('[') && !domain.contains('.') {
            addr.push('.');
            addr.push_str(ctx.domain.trim_end_matches('.'));
        }
    }

    // One trailing dot goes, but not from "..", "@." or a quoted string.
    if addr.ends_with('.') {
        let before = addr[..addr.len() - 1].chars().next_back();
        let outside = unquoted(&addr).last().is_some_and(|(i, _)| i == addr.len() - 1);
        if outside && !matches!(before, Some('.') | Some('@') | None) {
            addr.pop();
        }
    }
    addr
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The context the cleanup unit tests share: origin and domain example.com.
    pub(crate) fn ctx() -> Context {
        Context {
            origin: "example.com".into(),
            domain: "example.com".into(),
            swap_bangpath: true,
            percent_hack: true,
            append_at_origin: true,
            append_dot_domain: false,
        }
    }

    fn c(a: &str) -> String {
        canonicalize(a, &ctx())
    }

    #[test]
    fn source_routes() {
        assert_eq!(c("@hosta,@hostb:user@site"), "user@site");
        assert_eq!(c("@hosta:user@site"), "user@site");
        assert_eq!(c("@hosta:"), "@hosta:");
    }

    #[test]
    fn bare_user_gets_myorigin() {
        assert_eq!(c("user"), "user@example.com");
        assert_eq!(canonicalize("user", &Context { append_at_origin: false, ..ctx() }), "user");
        assert_eq!(canonicalize("user", &Context { origin: String::new(), ..ctx() }), "user");
        assert_eq!(c(r#""john smith""#), r#""john smith"@example.com"#);
        assert_eq!(c(r#""a@b""#), r#""a@b"@example.com"#);
    }

    #[test]
    fn percent_hack() {
        assert_eq!(c("user%domain"), "user@domain");
        assert_eq!(c("user%a%b"), "user%a@b");
        assert_eq!(canonicalize("user%domain", &Context { percent_hack: false, ..ctx() }), "user%domain@example.com");
        // Only without @: user%domain@host stays (resolving it is routing's business).
        assert_eq!(c("user%domain@host.example.com"), "user%domain@host.example.com");
        assert_eq!(c(r#""a%b""#), r#""a%b"@example.com"#);
    }

    #[test]
    fn bang_paths() {
        assert_eq!(c("site!user"), "user@site");
        assert_eq!(c("a!b!user"), "b!user@a");
        assert_eq!(canonicalize("site!user", &Context { swap_bangpath: false, ..ctx() }), "site!user@example.com");
        // The bang path wins over the percent hack.
        assert_eq!(c("site!user%x"), "user%x@site");
        assert_eq!(c(r#""site!user""#), r#""site!user"@example.com"#);
    }

    #[test]
    fn append_dot_mydomain() {
        let dot = Context { append_dot_domain: true, ..ctx() };
        assert_eq!(canonicalize("user@host", &dot), "user@host.example.com");
        assert_eq!(canonicalize("user@host.sub", &dot), "user@host.sub");
        assert_eq!(canonicalize("user@[192.0.2.1]", &dot), "user@[192.0.2.1]");
        assert_eq!(canonicalize("user@", &dot), "user@");
        assert_eq!(c("user@host"), "user@host");
        // The bare user gets @myorigin, which already has a dot.
        assert_eq!(canonicalize("user", &dot), "user@example.com");
        assert_eq!(canonicalize("user", &Context { origin: "localhost".into(), ..dot }), "user@localhost.example.com");
    }

    #[test]
    fn trailing_dot() {
        assert_eq!(c("user@site."), "user@site");
        assert_eq!(c("user@site.."), "user@site..");
        assert_eq!(c("user@."), "user@.");
        assert_eq!(c("user@example.com"), "user@example.com");
    }

    #[test]
    fn empty_addresses() {
        assert_eq!(c(""), "");
        assert_eq!(c("@"), "");
    }

    #[test]
    fn literal_domains_are_opaque() {
        assert_eq!(c("user@[IPv6:2001:db8::1]"), "user@[IPv6:2001:db8::1]");
        assert_eq!(last_at(r#""a@b"@c"#), Some(5));
        assert_eq!(last_at(r#""a@b""#), None);
    }
}
