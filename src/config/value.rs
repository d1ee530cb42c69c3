//! The kinds of parameter value and how their (already expanded) text is read:
//! Postfix's forms, so a main.cf value pasted into tidemail.toml means the same thing.

use std::time::Duration;

/// What a parameter holds. Decides the accessor's return type and how text is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// Names separated by commas and/or whitespace (or a TOML array of strings).
    List,
    /// yes/no (or a TOML boolean).
    Bool,
    /// A time: a number with an optional unit letter; the char is the unit assumed when none
    /// is written (Postfix gives each time parameter its own).
    Time(char),
    /// A byte count.
    Size,
    /// A signed whole number (counts, limits, codes).
    Int,
}

/// A parsed parameter value. Which variant is fixed by the parameter's [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Time(Duration),
    Size(u64),
    Int(i64),
}

/// Seconds in one `unit` (Postfix's conv_time.c units: s m h d w), or None for a letter that is not a time unit.
pub fn unit_seconds(unit: char) -> Option<u64> {
    match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        'w' => Some(604_800),
        _ => None,
    }
}

impl Kind {
    /// Reads an expanded value. On failure, returns nothing: the caller knows the parameter
    /// and words the error with [`Kind::expected`].
    pub fn parse(self, text: &str) -> Option<Value> {
        match self {
            Kind::Str => Some(Value::Str(text.to_string())),
            Kind::List => Some(Value::List(split_list(text))),
            Kind::Bool => parse_bool(text).map(Value::Bool),
            Kind::Time(unit) => parse_time(text, unit).map(Value::Time),
            Kind::Size => parse_size(text).map(Value::Size),
            Kind::Int => parse_int(text).map(Value::Int),
        }
    }

    /// The expected form, for "bad value" errors; `example` is the parameter's default, used
    /// when it makes a good example.
    pub fn expected(self, example: &str) -> String {
        let example = example.trim();
        let numeric = !example.is_empty() && example.bytes().all(|b| b.is_ascii_digit());
        match self {
            Kind::Str => "a string".to_string(),
            Kind::List => "a list: an array of strings, or names separated by commas or spaces".to_string(),
            Kind::Bool => "yes or no".to_string(),
            Kind::Time(_) => "a time like 5d, 4h, 300s; units s m h d w".to_string(),
            Kind::Size if numeric => format!("a size in bytes, e.g. {example}"),
            Kind::Size => "a size in bytes, e.g. 10240000".to_string(),
            Kind::Int if numeric => format!("a whole number, e.g. {example}"),
            Kind::Int => "a whole number, e.g. 20".to_string(),
        }
    }

    /// Whether a TOML integer may stand for this kind's value.
    pub fn takes_integer(self) -> bool {
        matches!(self, Kind::Time(_) | Kind::Size | Kind::Int)
    }
}

impl Value {
    /// The value as `tidemail config` shows it: lists joined with ", " like postconf.
    pub fn render(&self, expanded: &str) -> String {
        match self {
            Value::List(items) => items.join(", "),
            _ => expanded.to_string(),
        }
    }
}

/// Postfix list syntax: separators are commas and whitespace, empty items vanish.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|item| !item.is_empty()).map(str::to_string).collect()
}

/// "yes"/"no" as Postfix spells booleans, plus "true"/"false"; any letter case.
pub fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("yes") || text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("no") || text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A number with at most one unit letter after it ("300s", "5d", "4h"); a bare number is in
/// `default_unit`. Negative times and overflow are refused.
pub fn parse_time(text: &str, default_unit: char) -> Option<Duration> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return None;
    }
    let unit = match unit.chars().collect::<Vec<_>>()[..] {
        [] => default_unit,
        [letter] => letter,
        _ => return None,
    };
    let count: u64 = number.parse().ok()?;
    let seconds = count.checked_mul(unit_seconds(unit)?)?;
    Some(Duration::from_secs(seconds))
}

/// A plain count of bytes: digits only, no unit suffix (Postfix has none for sizes).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A whole number, optionally negative.
pub fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas_and_whitespace() {
        assert_eq!(split_list("a, b,c  d\n\te,,"), vec!["a", "b", "c", "d", "e"]);
        assert!(split_list("").is_empty());
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn booleans() {
        for yes in ["yes", "YES", "true", " True "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["no", "No", "false"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for bad in ["", "y", "1", "on", "yess"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_with_and_without_units() {
        let secs = Duration::from_secs;
        assert_eq!(parse_time("1000s", 's'), Some(secs(1000)));
        assert_eq!(parse_time("5d", 's'), Some(secs(5 * 86_400)));
        assert_eq!(parse_time("4h", 'd'), Some(secs(4 * 3600)));
        assert_eq!(parse_time("2m", 's'), Some(secs(120)));
        assert_eq!(parse_time("1w", 's'), Some(secs(604_800)));
        assert_eq!(parse_time("5", 'd'), Some(secs(5 * 86_400)));
        assert_eq!(parse_time("300", 's'), Some(secs(300)));
        assert_eq!(parse_time("0h", 'h'), Some(secs(0)));
        for bad in ["", "5x", "d", "-5s", "5 d", "5dd", "1.5h", "5D", "99999999999999999999s"] {
            assert_eq!(parse_time(bad, 's'), None, "{bad}");
        }
        assert_eq!(parse_time(&format!("{}w", u64::MAX / 2), 's'), None);
    }

    #[test]
    fn sizes_are_plain_byte_counts() {
        assert_eq!(parse_size("10240000"), Some(10_240_000));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "10MB", "-1", "1e6", "1_000", "0x10"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn ints_may_be_negative() {
        assert_eq!(parse_int("20"), Some(20));
        assert_eq!(parse_int("-1"), Some(-1));
        for bad in ["", "-", "twenty", "+5", "1.0"] {
            assert_eq!(parse_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn expected_forms_use_the_default_as_example() {
        assert_eq!(Kind::Size.expected("10240000"), "a size in bytes, e.g. 10240000");
        assert_eq!(Kind::Time('d').expected("5d"), "a time like 5d, 4h, 300s; units s m h d w");
        assert_eq!(Kind::Int.expected("$other"), "a whole number, e.g. 20");
    }

    #[test]
    fn every_time_unit_letter_is_known() {
        for unit in "smhdw".chars() {
            assert!(unit_seconds(unit).is_some());
        }
        assert_eq!(unit_seconds('x'), None);
    }
}
