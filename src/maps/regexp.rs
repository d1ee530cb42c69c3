//! `regexp:` and `pcre:` tables (regexp_table(5), pcre_table(5)).
//!
//! ```text
//! /^(.*)-outgoing@(.*)$/     550 Use ${1}@${2} instead
//! !/@example\.com$/          REJECT not ours
//! if /^owner-/i
//! /^owner-(list)@/           ${1}-request
//! endif
//! ```
//!
//! Rules are tried in order against the whole key; the first that matches (or, with `!`,
//! does not match) gives its result, with `$1`, `${1}`, `$(1)` replaced by the captured
//! text and `$$` by `$`. `if`/`endif` blocks nest. Any non-alphanumeric character other than
//! a backslash may delimit a pattern (`/a\/b/`, `~a/b~`; not `#`, which starts a comment).
//!
//! Matching uses the `regex` crate, which runs in time linear in the key whatever the
//! pattern: a hostile address cannot make a table lookup take seconds. The price is no
//! back-references and no look-around (`pcre:` patterns using them are refused with the
//! file and line; no table we know of needs them, so fancy-regex is not pulled in). All
//! patterns of a table are compiled into one `RegexSet`, so a lookup scans the key once
//! whatever the number of rules; a rule's own `Regex` is compiled only when its result uses
//! `$n`.
//!
//! Flags, each toggling its default:
//! - regexp: `i` (on: case-insensitive), `m` (off: `^`/`$` at line breaks, and `.` stops
//!   matching a newline, POSIX REG_NEWLINE), `x` (on: extended syntax; off means POSIX basic
//!   syntax, translated here: `\(`, `\)`, `\{`, `\}` are the operators).
//! - pcre: `i` (on), `m`, `s`, `x` (ignore whitespace and `#` comments in the pattern), `U`
//!   (ungreedy), `A` (anchored at the start), all off; `E` and `X` are accepted and change
//!   nothing (`$` already matches only at the very end, unknown escapes are already errors).

use std::sync::{Arc, OnceLock};

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::source::{self, Content, Line};
use super::{Map, MapError, MapKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Regexp,
    Pcre,
}

pub fn open(spec: &str, name: &str, dialect: Dialect) -> Result<Arc<dyn Map>, MapError> {
    let parse = match dialect {
        Dialect::Regexp => parse_regexp as fn(&str, &[Line]) -> Result<Rules, MapError>,
        Dialect::Pcre => parse_pcre,
    };
    Ok(Arc::new(RegexpTable { spec: spec.to_string(), rules: source::open_rules(spec, name, parse)? }))
}

#[derive(Debug)]
struct RegexpTable {
    spec: String,
    rules: Content<Rules>,
}

impl Map for RegexpTable {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.rules.get()?.lookup(key))
    }

    fn kind(&self) -> MapKind {
        MapKind::Pattern
    }
}

/// A parsed table.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Each rule's pattern, flags applied, indexed by `Rule::pattern`.
    patterns: Vec<String>,
    /// All patterns at once; None when the set would be too large, then each rule has its own.
    set: Option<RegexSet>,
}

#[derive(Debug)]
struct Rule {
    negate: bool,
    /// Index in the set (rules with a pattern are numbered in order).
    pattern: usize,
    /// The rule's own expression: compiled when its result first needs the captures, or at
    /// load when there is no set. Compiling all of them up front would double the memory.
    regex: OnceLock<Regex>,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Result(Vec<Part>),
    /// `if`: where its `endif` is.
    If {
        end: usize,
    },
    Endif,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Group(usize),
}

impl Rules {
    pub fn lookup(&self, key: &str) -> Option<String> {
        let hits = self.set.as_ref().map(|set| set.matches(key));
        let holds = |rule: &Rule| {
            let matched = match &hits {
                Some(hits) => hits.matched(rule.pattern),
                None => rule.regex.get().is_some_and(|regex| regex.is_match(key)),
            };
            matched != rule.negate
        };
        let mut i = 0;
        while i < self.rules.len() {
            let rule = &self.rules[i];
            match &rule.action {
                Action::Endif => {}
                Action::If { end } if !holds(rule) => i = *end,
                Action::If { .. } => {}
                Action::Result(parts) if holds(rule) => return Some(self.expand(rule, parts, key)),
                Action::Result(_) => {}
            }
            i += 1;
        }
        None
    }

    fn expand(&self, rule: &Rule, parts: &[Part], key: &str) -> String {
        let captures = if parts.iter().any(|p| matches!(p, Part::Group(_))) {
            self.regex(rule).and_then(|regex| regex.captures(key))
        } else {
            None
        };
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Group(n) => {
                    if let Some(m) = captures.as_ref().and_then(|c| c.get(*n)) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        out
    }

    fn regex<'a>(&self, rule: &'a Rule) -> Option<&'a Regex> {
        if let Some(regex) = rule.regex.get() {
            return Some(regex);
        }
        // The set compiled this very pattern, so this does not fail in practice.
        let regex = compile(&self.patterns[rule.pattern]).ok()?;
        Some(rule.regex.get_or_init(|| regex))
    }
}

fn parse_regexp(file: &str, lines: &[Line]) -> Result<Rules, MapError> {
    parse(file, lines, Dialect::Regexp)
}

fn parse_pcre(file: &str, lines: &[Line]) -> Result<Rules, MapError> {
    parse(file, lines, Dialect::Pcre)
}

/// `text` starts with the keyword `word` (any case) followed by a non-alphanumeric
/// character or the end: the rest, trimmed.
pub(super) fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && !rest.starts_with(|c: char| c.is_alphanumeric())).then(|| rest.trim_ascii())
}

fn parse(file: &str, lines: &[Line], dialect: Dialect) -> Result<Rules, MapError> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut patterns: Vec<String> = Vec::new();
    let mut lines_of: Vec<usize> = Vec::new();
    let mut open_ifs: Vec<(usize, usize)> = Vec::new();
    for line in lines {
        let err = |reason: String| source::syntax(file, line.number, reason);
        let text = line.text.trim_ascii();
        if let Some(rest) = keyword(text, "endif") {
            if !rest.is_empty() {
                return Err(err(format!("extra text after \"endif\": \"{rest}\"")));
            }
            let (start, _) = open_ifs.pop().ok_or_else(|| err("\"endif\" without \"if\"".into()))?;
            rules.push(Rule { negate: false, pattern: usize::MAX, regex: OnceLock::new(), action: Action::Endif });
            rules[start].action = Action::If { end: rules.len() - 1 };
            continue;
        }
        let (is_if, body) = match keyword(text, "if") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (negate, pattern, rest) = split_pattern(body, dialect).map_err(err)?;
        let action = if is_if {
            if !rest.is_empty() {
                return Err(err(format!("extra text after the \"if\" pattern: \"{rest}\"")));
            }
            open_ifs.push((rules.len(), line.number));
            Action::If { end: usize::MAX }
        } else {
            if rest.is_empty() {
                return Err(err("no result after the pattern".into()));
            }
            let parts = template(rest).map_err(err)?;
            if negate && parts.iter().any(|p| matches!(p, Part::Group(_))) {
                return Err(err("$number in the result of a negated pattern (nothing was captured)".into()));
            }
            Action::Result(parts)
        };
        // Parsing (not compiling) checks the syntax and counts the groups $n may use.
        let hir = regex_syntax::Parser::new().parse(&pattern).map_err(|e| err(regex_error(&e)))?;
        if let Action::Result(parts) = &action
            && let Some(n) = parts.iter().filter_map(|p| if let Part::Group(n) = p { Some(*n) } else { None }).max()
            && n > hir.properties().explicit_captures_len()
        {
            return Err(err(format!("${n} refers to a group the pattern does not have")));
        }
        rules.push(Rule { negate, pattern: patterns.len(), regex: OnceLock::new(), action });
        patterns.push(pattern);
        lines_of.push(line.number);
    }
    if let Some((_, line)) = open_ifs.pop() {
        return Err(source::syntax(file, line, "\"if\" without \"endif\""));
    }
    let set = match RegexSetBuilder::new(&patterns).size_limit(64 << 20).dfa_size_limit(16 << 20).build() {
        Ok(set) => Some(set),
        Err(_) => {
            // Too big as one set (the syntax was checked above): each rule gets its own
            // expression, and a pattern too big even alone is named with its line.
            let pattern_rules = rules.iter().filter(|r| !matches!(r.action, Action::Endif));
            for ((pattern, line), rule) in patterns.iter().zip(&lines_of).zip(pattern_rules) {
                let regex = compile(pattern).map_err(|reason| source::syntax(file, *line, reason))?;
                let _ = rule.regex.set(regex);
            }
            None
        }
    };
    Ok(Rules { rules, patterns, set })
}

fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern).size_limit(16 << 20).build().map_err(|e| regex_error(&e))
}

/// The regex crate's syntax errors span several lines (pattern, caret, message); a table
/// error is one line.
fn regex_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    match text.lines().find_map(|l| l.strip_prefix("error: ")) {
        Some(message) => format!("bad regular expression: {message}"),
        None => format!("bad regular expression: {}", text.replace('\n', " ")),
    }
}

/// `[!]DELIM pattern DELIM flags rest` → (negate, pattern with its flags applied, rest).
fn split_pattern(body: &str, dialect: Dialect) -> Result<(bool, String, &str), String> {
    let (negate, body) = match body.strip_prefix('!') {
        Some(rest) => (true, rest.trim_ascii_start()),
        None => (false, body),
    };
    let delim = body.chars().next().ok_or("expected \"/pattern/flags result\", \"if /pattern/\" or \"endif\"")?;
    if delim.is_alphanumeric() || delim.is_whitespace() || delim == '\\' {
        return Err(format!("expected \"/pattern/flags result\", \"if /pattern/\" or \"endif\", got \"{body}\""));
    }
    let inner = &body[delim.len_utf8()..];
    let mut pattern = String::new();
    let mut chars = inner.char_indices();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            // Postfix keeps the backslash: `\/` reaches the regex engine as an escaped `/`.
            pattern.push(c);
            if let Some((_, next)) = chars.next() {
                pattern.push(next);
            }
        } else if c == delim {
            end = Some(i);
            break;
        } else {
            pattern.push(c);
        }
    }
    let end = end.ok_or_else(|| format!("missing closing '{delim}' after the pattern"))?;
    let after = &inner[end + delim.len_utf8()..];
    let flags_end = after.find(|c: char| c.is_ascii_whitespace()).unwrap_or(after.len());
    let pattern = with_flags(&pattern, &after[..flags_end], dialect)?;
    Ok((negate, pattern, after[flags_end..].trim_ascii()))
}

/// Apply the table flags as inline regex flags, so one set can hold rules with different
/// flags.
fn with_flags(pattern: &str, flags: &str, dialect: Dialect) -> Result<String, String> {
    let (mut i, mut m, mut s, mut x, mut ungreedy, mut anchored) =
        (true, false, false, dialect == Dialect::Regexp, false, false);
    for flag in flags.chars() {
        match (dialect, flag) {
            (_, 'i') => i = !i,
            (_, 'm') => m = !m,
            (_, 'x') => x = !x,
            (Dialect::Pcre, 's') => s = !s,
            (Dialect::Pcre, 'U') => ungreedy = !ungreedy,
            (Dialect::Pcre, 'A') => anchored = !anchored,
            (Dialect::Pcre, 'E' | 'X') => {}
            _ => return Err(format!("unknown flag '{flag}' after the pattern")),
        }
    }
    let mut set = String::new();
    let body = match dialect {
        Dialect::Regexp => {
            // Without REG_NEWLINE, POSIX `.` matches a newline too.
            set.push(if m { 'm' } else { 's' });
            if i {
                set.push('i');
            }
            if x { pattern.to_string() } else { basic_to_extended(pattern) }
        }
        Dialect::Pcre => {
            for (on, f) in [(i, 'i'), (m, 'm'), (s, 's'), (x, 'x'), (ungreedy, 'U')] {
                if on {
                    set.push(f);
                }
            }
            // The newline ends a `# comment` the pattern may finish with under `x`.
            if anchored { format!("\\A(?:{pattern}{})", if x { "\n" } else { "" }) } else { pattern.to_string() }
        }
    };
    Ok(if set.is_empty() { body } else { format!("(?{set}){body}") })
}

/// POSIX basic syntax (regexp flag `x` off) to extended: `\(`, `\)`, `\{`, `\}`, `\|`, `\+`,
/// `\?` become operators, the bare characters literals, and a `*` with nothing before it
/// is literal.
fn basic_to_extended(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut at_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let d = chars[i + 1];
            i += 2;
            match d {
                '(' | '|' => {
                    out.push(d);
                    at_start = true;
                    continue;
                }
                ')' | '{' | '}' | '+' | '?' => out.push(d),
                _ => {
                    out.push('\\');
                    out.push(d);
                }
            }
            at_start = false;
            continue;
        }
        if c == '[' {
            // A bracket expression is the same in both syntaxes: copy it whole.
            let mut j = i + 1;
            if chars.get(j) == Some(&'^') {
                j += 1;
            }
            if chars.get(j) == Some(&']') {
                j += 1;
            }
            while j < chars.len() && chars[j] != ']' {
                if chars[j] == '[' && matches!(chars.get(j + 1), Some(':' | '.' | '=')) {
                    let close = chars[j + 1];
                    j += 2;
                    while j + 1 < chars.len() && !(chars[j] == close && chars[j + 1] == ']') {
                        j += 1;
                    }
                    j += 1;
                }
                j += 1;
            }
            let end = j.min(chars.len() - 1);
            out.extend(&chars[i..=end]);
            i = end + 1;
            at_start = false;
            continue;
        }
        match c {
            '*' if at_start => out.push_str("\\*"),
            '(' | ')' | '{' | '}' | '|' | '+' | '?' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        at_start = at_start && c == '^';
        i += 1;
    }
    out
}

/// The result text: `$n`, `${n}`, `$(n)` and `$$`.
fn template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            literal.push(c);
            continue;
        }
        let name: String = match chars.next() {
            Some('$') => {
                literal.push('$');
                continue;
            }
            Some(open @ ('{' | '(')) => {
                let close = if open == '{' { '}' } else { ')' };
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some(c) if c == close => break name,
                        Some(c) => name.push(c),
                        None => return Err(format!("missing '{close}' in the result")),
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let mut name = c.to_string();
                while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                    name.push(c);
                    chars.next();
                }
                name
            }
            _ => return Err("'$' in the result must be followed by a group number (write $$ for a '$')".into()),
        };
        let n: usize = name
            .parse()
            .map_err(|_| format!("\"${name}\" in the result is not a group number (write ${{1}}x, or $$ for a '$')"))?;
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(Part::Group(n));
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, dialect: Dialect) -> Rules {
        parse("/etc/t", &source::logical_lines("/etc/t", text.as_bytes()).unwrap(), dialect).unwrap()
    }

    fn error(text: &str, dialect: Dialect) -> (usize, String) {
        match parse("/etc/t", &source::logical_lines("/etc/t", text.as_bytes()).unwrap(), dialect).unwrap_err() {
            MapError::Syntax { file, line, reason } => {
                assert_eq!(file, "/etc/t");
                (line, reason)
            }
            other => panic!("not a syntax error: {other}"),
        }
    }

    fn both(text: &str) -> [Rules; 2] {
        [table(text, Dialect::Regexp), table(text, Dialect::Pcre)]
    }

    #[test]
    fn first_match_wins_with_substitution() {
        let text = "# access\n/[%!@].*[%!@]/  550 Sender-specified routing rejected\n/^postmaster@/ OK\n\
                    /^(.*)-outgoing@(.*)$/  550 Use ${1}@${2} instead, $$5 and $(1)\n/^(a)(b)?c/ <$1$2>\n";
        for t in both(text) {
            assert_eq!(t.lookup("a@b@c").as_deref(), Some("550 Sender-specified routing rejected"));
            assert_eq!(t.lookup("PostMaster@x").as_deref(), Some("OK"), "case-insensitive by default");
            assert_eq!(
                t.lookup("list-outgoing@Example.com").as_deref(),
                Some("550 Use list@Example.com instead, $5 and list")
            );
            assert_eq!(t.lookup("ac").as_deref(), Some("<a>"), "an unmatched group is empty");
            assert_eq!(t.lookup("nothing"), None);
        }
    }

    #[test]
    fn negation_and_nested_ifs() {
        let text =
            "if !/^owner-/\nif /@example\\.com$/\n/^(.*)-outgoing@/ ${1}\n!/^x/  not-x\nendif\nendif\n/./ fallback\n";
        for t in both(text) {
            assert_eq!(t.lookup("list-outgoing@example.com").as_deref(), Some("list"));
            assert_eq!(t.lookup("y@example.com").as_deref(), Some("not-x"));
            assert_eq!(t.lookup("x@example.com").as_deref(), Some("fallback"));
            assert_eq!(t.lookup("owner-list-outgoing@example.com").as_deref(), Some("fallback"));
            assert_eq!(t.lookup("list-outgoing@other.org").as_deref(), Some("fallback"));
        }
    }

    #[test]
    fn flags_and_delimiters() {
        let t = table("/^ABC$/i exact-case\n/^abc$/ any-case\n~a/b~ slash\n!/^z/ not-z\n", Dialect::Regexp);
        assert_eq!(t.lookup("ABC").as_deref(), Some("exact-case"));
        assert_eq!(t.lookup("abc").as_deref(), Some("any-case"));
        assert_eq!(t.lookup("xa/by").as_deref(), Some("slash"));
        let t = table("/a\\/b/ escaped\n/^b$/m multi\n/c.d/ dot\n", Dialect::Regexp);
        assert_eq!(t.lookup("xa/b").as_deref(), Some("escaped"));
        assert_eq!(t.lookup("a\nb\nc").as_deref(), Some("multi"));
        assert_eq!(t.lookup("c\nd").as_deref(), Some("dot"), "POSIX . matches a newline without m");
        // x off: POSIX basic syntax.
        let t = table("/^\\(ab\\)\\{2\\}+$/x basic\n", Dialect::Regexp);
        assert_eq!(t.lookup("abab+").as_deref(), Some("basic"));
        assert_eq!(t.lookup("abab"), None);
        let t = table("/a b # comment/xA spaced\n/q$/sUA anch\n", Dialect::Pcre);
        assert_eq!(t.lookup("ab").as_deref(), Some("spaced"));
        assert_eq!(t.lookup("xab"), None, "A anchors at the start");
        assert_eq!(t.lookup("q").as_deref(), Some("anch"));
        assert_eq!(t.lookup("qq"), None);
        let t = table("/^(.+)(.*)$/U ${1}|$2\n", Dialect::Pcre);
        assert_eq!(t.lookup("abc").as_deref(), Some("a|bc"));
        let t = table("/c.d/s dotall\n/c.d/ plain\n", Dialect::Pcre);
        assert_eq!(t.lookup("c\nd").as_deref(), Some("dotall"));
    }

    #[test]
    fn basic_syntax_translation() {
        assert_eq!(basic_to_extended(r"\(a\)\{1,2\}(b)+*"), r"(a){1,2}\(b\)\+*");
        assert_eq!(basic_to_extended(r"*a[(*)]\|^*"), r"\*a[(*)]|^\*");
        assert_eq!(basic_to_extended(r"[[:alpha:]]x[]]"), r"[[:alpha:]]x[]]");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let (line, reason) = error("/ok/ 1\n\n/bad(/ 2\n", Dialect::Regexp);
        assert_eq!(line, 3);
        assert!(reason.starts_with("bad regular expression"), "{reason}");
        assert_eq!(error("/a/ 1\n/b/q 2\n", Dialect::Regexp), (2, "unknown flag 'q' after the pattern".into()));
        assert_eq!(error("/a/s 1\n", Dialect::Regexp).0, 1, "s is a pcre flag");
        assert_eq!(error("/a/ x\n/unterminated 2\n", Dialect::Pcre).0, 2);
        assert_eq!(error("/a/\n", Dialect::Pcre), (1, "no result after the pattern".into()));
        assert_eq!(error("if /a/\n/b/ c\n", Dialect::Pcre), (1, "\"if\" without \"endif\"".into()));
        assert_eq!(error("/b/ c\nendif\n", Dialect::Pcre), (2, "\"endif\" without \"if\"".into()));
        assert_eq!(error("if /a/ extra\nendif\n", Dialect::Pcre).0, 1);
        assert_eq!(error("word result\n", Dialect::Regexp).0, 1);
        assert_eq!(error("/(a)/ $2\n", Dialect::Regexp), (1, "$2 refers to a group the pattern does not have".into()));
        assert_eq!(error("!/(a)/ $1\n", Dialect::Regexp).0, 1);
        assert!(error("/a/ $1x\n", Dialect::Regexp).1.contains("not a group number"));
        assert!(error("/a/ cost $\n", Dialect::Regexp).1.contains("$$"));
        assert!(error("/(?=a)/ lookahead\n", Dialect::Pcre).1.starts_with("bad regular expression"));
    }

    #[test]
    fn a_file_and_an_inline_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("header_checks");
        std::fs::write(&path, "/^Subject: make money fast/ REJECT\n").unwrap();
        let t = open("regexp:x", path.to_str().unwrap(), Dialect::Regexp).unwrap();
        assert_eq!(t.kind(), MapKind::Pattern);
        assert_eq!(t.lookup("subject: MAKE MONEY FAST now").unwrap().as_deref(), Some("REJECT"));
        let t = open("pcre:{...}", "{ { /^(\\w+)@/ user=$1 }, { /./ any } }", Dialect::Pcre).unwrap();
        assert_eq!(t.lookup("bob@x").unwrap().as_deref(), Some("user=bob"));
        assert_eq!(t.lookup("?").unwrap().as_deref(), Some("any"));
        let missing = open("regexp:y", dir.path().join("none").to_str().unwrap(), Dialect::Regexp).unwrap_err();
        assert!(matches!(missing, MapError::Unavailable { .. }));
    }

    #[test]
    fn hostile_input_is_linear() {
        let t = table("/^(a+)+$/ bad\n", Dialect::Pcre);
        let key = format!("{}!", "a".repeat(50_000));
        let start = std::time::Instant::now();
        assert_eq!(t.lookup(&key), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
