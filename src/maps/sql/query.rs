//! Query and result templates with Postfix's `%` expansions, turned into parameterised SQL.
//!
//! Postfix pastes the (escaped) key into the query text. tidemail never does: every `%s`,
//! `%u`, `%d`, `%1`...`%9` becomes a bound parameter, so no key can change the statement.
//!
//! - `'%s'` (or `"%s"`), a quoted literal that is nothing but one expansion, becomes one
//!   parameter: `WHERE email='%s'` → `WHERE email=?` (`$1` for PostgreSQL).
//! - A quoted literal that mixes text and expansions becomes a concatenation of literals and
//!   parameters: `'%u@%d'` → `(? || '@' || ?)`, or `CONCAT(?, '@', ?)` for MySQL.
//! - An expansion outside quotes is a parameter too (Postfix would paste the key unquoted).
//! - `%%` is a literal `%`, inside quotes or not. Comments are copied as they are.
//!
//! Which keys can be asked at all follows Postfix's db_common: `%d` (and `%D`, `%1`-`%9`)
//! need a key with a domain (`user@domain`), `%u` (and `%U`) a key whose local part is not
//! empty when it has a `@`, `%N` a domain with at least N labels; any other key is "not
//! found" without a query.

/// The SQL flavour the statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
    Pgsql,
}

/// What part of a string (the lookup key, or a result value) an expansion stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `%s`: all of it.
    Whole,
    /// `%u`: the local part of `user@domain`, or all of it when there is no `@`.
    Local,
    /// `%d`: the domain of `user@domain`.
    Domain,
    /// `%1`...`%9`: a domain label counted from the right (`%1` is the top-level domain).
    Label(usize),
}

/// What a key must have for the query to be made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub local: bool,
    pub domain: bool,
    pub labels: usize,
}

impl Needs {
    fn add(&mut self, part: Part) {
        match part {
            Part::Whole => {}
            Part::Local => self.local = true,
            Part::Domain => self.domain = true,
            Part::Label(n) => {
                self.domain = true;
                self.labels = self.labels.max(n);
            }
        }
    }

    pub fn union(self, other: Needs) -> Needs {
        Needs {
            local: self.local || other.local,
            domain: self.domain || other.domain,
            labels: self.labels.max(other.labels),
        }
    }
}

/// A string split the way the expansions see it: the last `@` separates local part and domain.
#[derive(Debug, Clone, Copy)]
pub struct Address<'a> {
    whole: &'a str,
    local: &'a str,
    domain: Option<&'a str>,
}

impl<'a> Address<'a> {
    pub fn new(whole: &'a str) -> Address<'a> {
        match whole.rfind('@') {
            Some(at) => Address { whole, local: &whole[..at], domain: Some(&whole[at + 1..]) },
            None => Address { whole, local: whole, domain: None },
        }
    }

    /// The domain, when there is a non-empty one.
    pub fn domain(&self) -> Option<&'a str> {
        self.domain.filter(|d| !d.is_empty())
    }

    /// `user@domain` with a non-empty local part.
    pub fn has_local_part(&self) -> bool {
        self.domain.is_some() && !self.local.is_empty()
    }

    /// Whether the expansions in `needs` can all be filled from this string.
    pub fn satisfies(&self, needs: Needs) -> bool {
        if needs.local && self.domain.is_some() && self.local.is_empty() {
            return false;
        }
        if needs.domain {
            let Some(domain) = self.domain() else { return false };
            if needs.labels > 0 {
                let labels: Vec<&str> = domain.split('.').collect();
                if labels.len() < needs.labels || labels[labels.len() - needs.labels..].iter().any(|l| l.is_empty()) {
                    return false;
                }
            }
        }
        true
    }

    /// The text of one expansion. Only called after `satisfies`.
    pub fn part(&self, part: Part) -> &'a str {
        match part {
            Part::Whole => self.whole,
            Part::Local => self.local,
            Part::Domain => self.domain.unwrap_or(""),
            Part::Label(n) => {
                let labels: Vec<&str> = self.domain.unwrap_or("").split('.').collect();
                labels.len().checked_sub(n).map_or("", |i| labels[i])
            }
        }
    }
}

/// Read the expansion after the `%` at `s[i]`: `Ok(None)` for `%%`. Upper-case letters mean
/// the same as lower-case ones in a query (they name the key there too).
fn expansion(s: &[char], i: usize, what: &str) -> Result<Option<Part>, String> {
    match s.get(i + 1) {
        Some('%') => Ok(None),
        Some('s' | 'S') => Ok(Some(Part::Whole)),
        Some('u' | 'U') => Ok(Some(Part::Local)),
        Some('d' | 'D') => Ok(Some(Part::Domain)),
        Some(&c @ '1'..='9') => Ok(Some(Part::Label(c as usize - '0' as usize))),
        Some(c) => Err(format!("invalid expansion \"%{c}\" in the {what}")),
        None => Err(format!("\"%\" at the end of the {what} (write %% for a literal %)")),
    }
}

/// A piece of a quoted literal.
enum Piece {
    Text(String),
    Param(Part),
}

/// A query template compiled to SQL with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The statement, with `?` or `$n` where the expansions were.
    pub sql: String,
    /// What to bind to each placeholder, in order.
    pub params: Vec<Part>,
    /// What a key must have for the query to be made.
    pub needs: Needs,
}

impl Query {
    pub fn compile(template: &str, dialect: Dialect) -> Result<Query, String> {
        let mut c = Compiler {
            dialect,
            sql: String::with_capacity(template.len()),
            params: Vec::new(),
            needs: Needs::default(),
        };
        let s: Vec<char> = template.chars().collect();
        let mut i = 0;
        while i < s.len() {
            let next = s.get(i + 1).copied();
            match s[i] {
                '%' => {
                    match expansion(&s, i, "query")? {
                        None => c.sql.push('%'),
                        Some(part) => {
                            let placeholder = c.param(part);
                            c.sql.push_str(&placeholder);
                        }
                    }
                    i += 2;
                }
                q @ ('\'' | '"') => i = c.quoted(&s, i, q)?,
                '`' if dialect != Dialect::Pgsql => i = c.backquoted(&s, i)?,
                '-' if next == Some('-') => i = c.comment(&s, i, "\n")?,
                '#' if dialect == Dialect::Mysql => i = c.comment(&s, i, "\n")?,
                '/' if next == Some('*') => i = c.comment(&s, i, "*/")?,
                '?' if dialect != Dialect::Pgsql => {
                    return Err("\"?\" outside quotes: write the key as '%s', tidemail binds it".into());
                }
                '$' if dialect == Dialect::Pgsql && next.is_some_and(|c| c.is_ascii_digit()) => {
                    return Err("\"$n\" parameters are tidemail's own: write the key as '%s'".into());
                }
                ch => {
                    c.sql.push(ch);
                    i += 1;
                }
            }
        }
        if c.sql.trim().is_empty() {
            return Err("the query is empty".into());
        }
        Ok(Query { sql: c.sql, params: c.params, needs: c.needs })
    }

    /// The values to bind for `key` (which satisfies `needs`).
    pub fn bind(&self, key: &Address) -> Vec<String> {
        self.params.iter().map(|&p| key.part(p).to_string()).collect()
    }
}

struct Compiler {
    dialect: Dialect,
    sql: String,
    params: Vec<Part>,
    needs: Needs,
}

impl Compiler {
    /// Record a parameter and return its placeholder.
    fn param(&mut self, part: Part) -> String {
        self.needs.add(part);
        self.params.push(part);
        match self.dialect {
            Dialect::Sqlite | Dialect::Mysql => "?".to_string(),
            Dialect::Pgsql => format!("${}", self.params.len()),
        }
    }

    /// Copy a comment from `s[start]` up to and including `end` (or the end of the text).
    /// Expansions in it are checked (Postfix refuses bad ones anywhere) but not bound.
    fn comment(&mut self, s: &[char], start: usize, end: &str) -> Result<usize, String> {
        let end: Vec<char> = end.chars().collect();
        let mut i = start;
        while i < s.len() {
            if s[i..].starts_with(&end) && i > start + 1 {
                for &ch in &end {
                    self.sql.push(ch);
                }
                return Ok(i + end.len());
            }
            if s[i] == '%' {
                if let Some(part) = expansion(s, i, "query")? {
                    self.needs.add(part);
                }
                self.sql.push(s[i]);
                self.sql.push(s[i + 1]);
                i += 2;
                continue;
            }
            self.sql.push(s[i]);
            i += 1;
        }
        Ok(i)
    }

    /// Copy a `back-quoted` identifier (MySQL, SQLite). An expansion there would put the key
    /// into the statement as a name: refused.
    fn backquoted(&mut self, s: &[char], start: usize) -> Result<usize, String> {
        self.sql.push('`');
        let mut i = start + 1;
        loop {
            match s.get(i) {
                None => return Err("unterminated `...` name in the query".into()),
                Some('`') => {
                    self.sql.push('`');
                    return Ok(i + 1);
                }
                Some('%') => match expansion(s, i, "query")? {
                    None => {
                        self.sql.push('%');
                        i += 2;
                    }
                    Some(_) => return Err("a %-expansion inside a `quoted` name in the query".into()),
                },
                Some(&ch) => {
                    self.sql.push(ch);
                    i += 1;
                }
            }
        }
    }

    /// Compile the literal quoted by `q` that starts at `s[start]`; returns the index after it.
    fn quoted(&mut self, s: &[char], start: usize, q: char) -> Result<usize, String> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut text = String::new();
        let mut i = start + 1;
        loop {
            let Some(&ch) = s.get(i) else {
                return Err(format!("unterminated {q}...{q} string in the query"));
            };
            if ch == q {
                if s.get(i + 1) == Some(&q) {
                    text.push(q);
                    text.push(q);
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            if ch == '\\' && self.dialect == Dialect::Mysql {
                // MySQL escapes: copy the pair as it is. A backslash in front of an expansion
                // would escape the first character of the key: refused below.
                text.push('\\');
                match s.get(i + 1) {
                    Some('%') | None => i += 1,
                    Some(&escaped) => {
                        text.push(escaped);
                        i += 2;
                    }
                }
                continue;
            }
            if ch == '%' {
                match expansion(s, i, "query")? {
                    None => text.push('%'),
                    Some(part) => {
                        if self.dialect == Dialect::Mysql && ends_with_open_escape(&text) {
                            return Err("a backslash in front of a %-expansion in the query".into());
                        }
                        if !text.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        pieces.push(Piece::Param(part));
                    }
                }
                i += 2;
                continue;
            }
            text.push(ch);
            i += 1;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let params = pieces.iter().filter(|p| matches!(p, Piece::Param(_))).count();
        match (params, pieces.as_slice()) {
            (0, _) => {
                // No expansion: the literal (or, in double quotes, perhaps an identifier) as written.
                self.sql.push(q);
                if let Some(Piece::Text(t)) = pieces.first() {
                    self.sql.push_str(t);
                }
                self.sql.push(q);
            }
            (1, [Piece::Param(part)]) => {
                let placeholder = self.param(*part);
                self.sql.push_str(&placeholder);
            }
            _ => {
                let mut items = Vec::new();
                for piece in &pieces {
                    items.push(match piece {
                        Piece::Text(t) => self.single_quoted(q, t),
                        Piece::Param(part) => {
                            let placeholder = self.param(*part);
                            match self.dialect {
                                // Type the parameters of a concatenation: PostgreSQL cannot
                                // always infer them.
                                Dialect::Pgsql => format!("CAST({placeholder} AS text)"),
                                _ => placeholder,
                            }
                        }
                    });
                }
                match self.dialect {
                    Dialect::Mysql => self.sql.push_str(&format!("CONCAT({})", items.join(", "))),
                    _ => self.sql.push_str(&format!("({})", items.join(" || "))),
                }
            }
        }
        Ok(i)
    }

    /// The raw text of a literal quoted by `q`, as a single-quoted SQL literal.
    fn single_quoted(&self, q: char, raw: &str) -> String {
        if q == '\'' {
            return format!("'{raw}'");
        }
        let chars: Vec<char> = raw.chars().collect();
        let mut out = String::from("'");
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' if self.dialect == Dialect::Mysql => {
                    out.push('\\');
                    if let Some(&next) = chars.get(i + 1) {
                        out.push(next);
                    }
                    i += 2;
                    continue;
                }
                '"' if chars.get(i + 1) == Some(&'"') => {
                    out.push('"');
                    i += 2;
                    continue;
                }
                '\'' => out.push_str("''"),
                c => out.push(c),
            }
            i += 1;
        }
        out.push('\'');
        out
    }
}

/// Whether `text` ends with a backslash that is not itself escaped.
fn ends_with_open_escape(text: &str) -> bool {
    text.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// One element of a result template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Text(String),
    /// `%s`, `%u`, `%d`: from the value the database returned.
    Value(Part),
    /// `%S`, `%U`, `%D`, `%1`...`%9`: from the lookup key.
    Key(Part),
}

/// `result_format`: how each value the database returns is written in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFormat {
    items: Vec<Item>,
    /// What a value must have (`%u`, `%d`); values without it are skipped.
    value_needs: Needs,
    /// What the key must have (`%U`, `%D`, `%1`...): checked before the query.
    pub key_needs: Needs,
}

impl ResultFormat {
    pub fn parse(format: &str) -> Result<ResultFormat, String> {
        let s: Vec<char> = format.chars().collect();
        let mut items = Vec::new();
        let mut text = String::new();
        let mut value_needs = Needs::default();
        let mut key_needs = Needs::default();
        let mut i = 0;
        while i < s.len() {
            if s[i] != '%' {
                text.push(s[i]);
                i += 1;
                continue;
            }
            let item = match s.get(i + 1) {
                Some('%') => None,
                Some('s') => Some(Item::Value(Part::Whole)),
                Some('u') => Some(Item::Value(Part::Local)),
                Some('d') => Some(Item::Value(Part::Domain)),
                Some('S') => Some(Item::Key(Part::Whole)),
                Some('U') => Some(Item::Key(Part::Local)),
                Some('D') => Some(Item::Key(Part::Domain)),
                Some(&c @ '1'..='9') => Some(Item::Key(Part::Label(c as usize - '0' as usize))),
                Some(c) => return Err(format!("invalid expansion \"%{c}\" in the result format")),
                None => return Err("\"%\" at the end of the result format (write %% for a literal %)".into()),
            };
            match item {
                None => text.push('%'),
                Some(item) => {
                    match &item {
                        Item::Value(part) => value_needs.add(*part),
                        Item::Key(part) => key_needs.add(*part),
                        Item::Text(_) => {}
                    }
                    if !text.is_empty() {
                        items.push(Item::Text(std::mem::take(&mut text)));
                    }
                    items.push(item);
                }
            }
            i += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        Ok(ResultFormat { items, value_needs, key_needs })
    }

    /// Format one value the database returned; `None` when the value is skipped (empty, or
    /// lacking the local part or domain the format uses).
    pub fn expand(&self, value: &str, key: &Address) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        let value = Address::new(value);
        if !value.satisfies(self.value_needs) || !key.satisfies(self.key_needs) {
            return None;
        }
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Text(t) => out.push_str(t),
                Item::Value(part) => out.push_str(value.part(*part)),
                Item::Key(part) => out.push_str(key.part(*part)),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(template: &str, dialect: Dialect) -> (String, Vec<Part>) {
        let q = Query::compile(template, dialect).unwrap();
        (q.sql, q.params)
    }

    #[test]
    fn a_quoted_expansion_becomes_one_parameter() {
        let t = "SELECT goto FROM alias WHERE address='%s' AND active = '1'";
        assert_eq!(
            sql(t, Dialect::Sqlite),
            ("SELECT goto FROM alias WHERE address=? AND active = '1'".into(), vec![Part::Whole])
        );
        assert_eq!(sql(t, Dialect::Mysql).0, "SELECT goto FROM alias WHERE address=? AND active = '1'");
        assert_eq!(sql(t, Dialect::Pgsql).0, "SELECT goto FROM alias WHERE address=$1 AND active = '1'");
        assert_eq!(sql("SELECT x FROM t WHERE k = \"%s\"", Dialect::Mysql).0, "SELECT x FROM t WHERE k = ?");
    }

    #[test]
    fn expansions_outside_quotes_are_parameters_too() {
        let (s, p) = sql("SELECT x FROM t WHERE u=%u AND d=%d AND tld=%1", Dialect::Pgsql);
        assert_eq!(s, "SELECT x FROM t WHERE u=$1 AND d=$2 AND tld=$3");
        assert_eq!(p, vec![Part::Local, Part::Domain, Part::Label(1)]);
    }

    #[test]
    fn mixed_literals_become_concatenations() {
        let t = "SELECT x FROM t WHERE a = '%u@%d' AND b LIKE '%%.%d'";
        assert_eq!(sql(t, Dialect::Sqlite).0, "SELECT x FROM t WHERE a = (? || '@' || ?) AND b LIKE ('%.' || ?)");
        assert_eq!(sql(t, Dialect::Mysql).0, "SELECT x FROM t WHERE a = CONCAT(?, '@', ?) AND b LIKE CONCAT('%.', ?)");
        assert_eq!(
            sql(t, Dialect::Pgsql).0,
            "SELECT x FROM t WHERE a = (CAST($1 AS text) || '@' || CAST($2 AS text)) AND b LIKE ('%.' || CAST($3 AS text))"
        );
        // Double quotes: the text parts become single-quoted literals.
        assert_eq!(sql("SELECT 1 WHERE a = \"it's %s\"", Dialect::Sqlite).0, "SELECT 1 WHERE a = ('it''s ' || ?)");
    }

    #[test]
    fn literals_comments_and_percent_signs_are_kept() {
        let t = "SELECT '100%%', \"col\", 'it''s' FROM t -- don't %s\nWHERE k='%s' /* '%d' */";
        let q = Query::compile(t, Dialect::Sqlite).unwrap();
        assert_eq!(q.sql, "SELECT '100%', \"col\", 'it''s' FROM t -- don't %s\nWHERE k=? /* '%d' */");
        assert_eq!(q.params, vec![Part::Whole]);
        // The %d in the comment still restricts the keys, as in Postfix.
        assert!(q.needs.domain);
        // MySQL backslash escapes are skipped over, not taken for the end of the string.
        assert_eq!(
            sql(r"SELECT 'a\'b', x FROM t WHERE k='%s'", Dialect::Mysql).0,
            r"SELECT 'a\'b', x FROM t WHERE k=?"
        );
        assert_eq!(sql(r"SELECT 1 WHERE k LIKE '%u\%%'", Dialect::Mysql).0, r"SELECT 1 WHERE k LIKE CONCAT(?, '\%')");
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "SELECT x WHERE k='%x'",
            "SELECT x WHERE k='%s",
            "SELECT x WHERE k=%",
            "SELECT x WHERE k=?",
            "",
            r"SELECT x WHERE k='\%s'",
        ] {
            let dialect = if t.contains('\\') { Dialect::Mysql } else { Dialect::Sqlite };
            assert!(Query::compile(t, dialect).is_err(), "{t:?}");
        }
        assert!(Query::compile("SELECT x WHERE k=$1", Dialect::Pgsql).is_err());
        assert!(Query::compile("SELECT `a%s` FROM t", Dialect::Mysql).is_err());
        assert_eq!(
            Query::compile("SELECT `it's` FROM t WHERE k='%s'", Dialect::Mysql).unwrap().sql,
            "SELECT `it's` FROM t WHERE k=?"
        );
        // A "?" inside quotes is text.
        assert!(Query::compile("SELECT '?' WHERE k='%s'", Dialect::Sqlite).is_ok());
    }

    #[test]
    fn hostile_keys_only_ever_reach_parameters() {
        let q = Query::compile("SELECT v FROM t WHERE k='%s' AND u='%u' AND d='%d'", Dialect::Mysql).unwrap();
        for key in ["x' OR '1'='1@example.com", "a';DROP TABLE t;--@b.c", "\\'@\\\\", "%s%u%d@%%"] {
            let bound = q.bind(&Address::new(key));
            assert_eq!(bound[0], key);
            assert_eq!(q.sql, "SELECT v FROM t WHERE k=? AND u=? AND d=?");
        }
    }

    #[test]
    fn keys_are_split_as_postfix_does() {
        let a = Address::new("john.doe@mail.example.com");
        assert_eq!(a.part(Part::Local), "john.doe");
        assert_eq!(a.part(Part::Domain), "mail.example.com");
        assert_eq!(a.part(Part::Label(1)), "com");
        assert_eq!(a.part(Part::Label(2)), "example");
        assert_eq!(a.part(Part::Label(3)), "mail");
        // The last @ separates the domain.
        assert_eq!(Address::new("a@b@c.d").part(Part::Local), "a@b");
        // No @: %u is the whole key, and %d cannot be filled.
        let plain = Address::new("postmaster");
        assert_eq!(plain.part(Part::Local), "postmaster");
        let domain = Needs { domain: true, ..Needs::default() };
        let local = Needs { local: true, ..Needs::default() };
        assert!(!plain.satisfies(domain));
        assert!(plain.satisfies(local));
        assert!(!Address::new("@example.com").satisfies(local));
        assert!(Address::new("@example.com").satisfies(domain));
        assert!(!Address::new("user@").satisfies(domain));
        let three = Needs { domain: true, labels: 3, ..Needs::default() };
        assert!(a.satisfies(three));
        assert!(!Address::new("u@example.com").satisfies(three));
        assert!(!Address::new("u@a..com").satisfies(three));
    }

    #[test]
    fn result_formats() {
        let key = Address::new("joe@example.com");
        let f = ResultFormat::parse("smtp:[%d]").unwrap();
        assert_eq!(f.expand("relay@mx.example.net", &key).as_deref(), Some("smtp:[mx.example.net]"));
        assert_eq!(f.expand("no-domain", &key), None);
        let f = ResultFormat::parse("%u+%U@%D (%s) 100%%").unwrap();
        assert_eq!(f.expand("box@host", &key).as_deref(), Some("box+joe@example.com (box@host) 100%"));
        assert_eq!(f.expand("", &key), None);
        assert_eq!(f.key_needs, Needs { local: true, domain: true, labels: 0 });
        assert_eq!(ResultFormat::parse("%2").unwrap().expand("x", &key).as_deref(), Some("example"));
        assert!(ResultFormat::parse("%x").is_err());
        assert!(ResultFormat::parse("50%").is_err());
        assert_eq!(ResultFormat::parse("%s").unwrap().expand("OK", &key).as_deref(), Some("OK"));
    }
}
