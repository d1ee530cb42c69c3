//! header_checks(5) and body_checks: each logical header (`Name: value`, folded lines joined
//! by their newlines) and each body line is looked up in pattern tables (regexp, pcre...);
//! the value found is an action:
//!
//! | action | effect |
//! | --- | --- |
//! | `REJECT [text]` | the message is refused: bounced to the sender (local submission) or refused to the SMTP client; `4.x.x` text: not accepted now, try again |
//! | `WARN [text]` | logged, nothing else |
//! | `INFO [text]` | logged as `info:` |
//! | `IGNORE` | the line is removed |
//! | `DISCARD [text]` | the message is accepted and dropped |
//! | `HOLD [text]` | the message goes to the hold queue |
//! | `REPLACE text` | the line is replaced |
//! | `PREPEND text` | a line is inserted before this one |
//! | `REDIRECT user@domain` | the message goes to that address instead of its recipients |
//! | `BCC user@domain` | that address is added as a recipient |
//! | `DUNNO`, `OK` | nothing: the next line is inspected |
//!
//! REJECT, DISCARD and REDIRECT end inspection of the message. Each action is logged the way
//! Postfix's cleanup logs it: `reject: header Subject: x from local; from=<a@b> to=<c@d>: 5.7.1 text`.

use std::sync::Arc;

use super::{Defer, Notes};
use crate::maps::Map;
use crate::maps::search::{self, Key};

/// Where a line comes from, for the log (`header` or `body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Body,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Header => "header",
            Part::Body => "body",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Part::Header => "header_checks",
            Part::Body => "body_checks",
        }
    }
}

/// Who sent the message, as the action log lines say it.
#[derive(Debug, Clone, Default)]
pub struct LogContext {
    /// `local`, or `client.example[192.0.2.1]`.
    pub origin: String,
    pub sender: String,
    pub recipient: Option<String>,
    pub proto: Option<String>,
    pub helo: Option<String>,
}

impl LogContext {
    /// `ACTION: PART CONTENT from ORIGIN; from=<S> to=<R> proto=P helo=<H>: TEXT`
    fn line(&self, action: &str, part: Part, content: &str, text: &str) -> String {
        let shown: String = content.chars().take(200).collect();
        let mut line = format!("{action}: {} {shown} from {}; from=<{}>", part.as_str(), self.origin, self.sender);
        if let Some(to) = &self.recipient {
            line.push_str(&format!(" to=<{to}>"));
        }
        if let Some(proto) = &self.proto {
            line.push_str(&format!(" proto={proto}"));
        }
        if let Some(helo) = &self.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        if !text.is_empty() {
            line.push_str(": ");
            line.push_str(text);
        }
        line
    }
}

/// What the actions so far decided about the whole message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// No more lines are inspected (after REJECT, DISCARD, REDIRECT).
    pub done: bool,
    pub hold: bool,
    pub discard: bool,
    /// `REJECT`: the status code and text.
    pub reject: Option<(String, String)>,
    pub redirect: Option<String>,
    pub bcc: Vec<String>,
}

impl Verdict {
    /// A 4.x.x REJECT: the message is not accepted now.
    pub fn deferred(&self) -> bool {
        self.reject.as_ref().is_some_and(|(dsn, _)| dsn.starts_with('4'))
    }
}

/// What to do with the line that was inspected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineAction {
    /// Remove the line (IGNORE).
    pub drop: bool,
    /// Put this text in its place (REPLACE).
    pub replace: Option<String>,
    /// Insert this line before it (PREPEND).
    pub prepend: Option<String>,
}

/// Split `5.7.1 text` into its status code and text when it starts with one.
pub fn split_dsn(text: &str) -> Option<(&str, &str)> {
    let (code, rest) = match text.split_once(' ') {
        Some((c, r)) => (c, r.trim_start()),
        None => (text, ""),
    };
    let parts: Vec<&str> = code.split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then_some((code, rest))
}

/// Whether `text` looks like a header field: a name, a colon.
fn is_header_text(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => {
            let name = name.trim_end_matches([' ', '\t']);
            !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        }
        None => false,
    }
}

/// One list of check tables (header_checks or body_checks).
#[derive(Debug, Clone)]
pub struct Checks {
    pub maps: Vec<Arc<dyn Map>>,
    part: Part,
}

impl Checks {
    pub fn new(maps: Vec<Arc<dyn Map>>, part: Part) -> Checks {
        Checks { maps, part }
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Inspect one line (`content`: a whole logical header, or one body line without its
    /// newline) and apply the action found, if any.
    pub fn inspect(
        &self,
        content: &str,
        verdict: &mut Verdict,
        ctx: &LogContext,
        notes: &mut Notes,
    ) -> Result<LineAction, Defer> {
        if self.maps.is_empty() || verdict.done {
            return Ok(LineAction::default());
        }
        let value = match search::find(&self.maps, content, Key::Whole) {
            Ok(Some(value)) => value,
            Ok(None) => return Ok(LineAction::default()),
            Err(e) => {
                return Err(Defer {
                    text: format!("{} map lookup problem", self.part.title()),
                    detail: Some(e.to_string()),
                });
            }
        };
        Ok(self.act(content, value.trim(), verdict, ctx, notes))
    }

    fn act(
        &self,
        content: &str,
        value: &str,
        verdict: &mut Verdict,
        ctx: &LogContext,
        notes: &mut Notes,
    ) -> LineAction {
        let (command, text) = match value.split_once([' ', '\t']) {
            Some((c, t)) => (c, t.trim_start()),
            None => (value, ""),
        };
        let part = self.part;
        let title = part.title();
        let mut action = LineAction::default();
        match command.to_ascii_uppercase().as_str() {
            "REJECT" => {
                let mut reason = match text {
                    "" => "5.7.1 message content rejected".to_string(),
                    t if split_dsn(t).is_some() => t.to_string(),
                    t => format!("5.7.1 {t}"),
                };
                if !reason.starts_with(['4', '5']) {
                    notes.warning(format!("bad DSN action in {text} -- need 4.x.x or 5.x.x"));
                    reason.replace_range(0..1, "4");
                }
                verdict.done = true;
                notes.info(ctx.line("reject", part, content, &reason));
                let (dsn, text) = split_dsn(&reason).unwrap_or(("5.7.1", reason.as_str()));
                verdict.reject = Some((dsn.to_string(), text.to_string()));
            }
            "WARN" => notes.info(ctx.line("warning", part, content, text)),
            "INFO" => notes.info(ctx.line("info", part, content, text)),
            "DISCARD" => {
                notes.info(ctx.line("discard", part, content, text));
                verdict.discard = true;
                verdict.done = true;
            }
            "HOLD" => {
                if !verdict.hold && !verdict.discard {
                    notes.info(ctx.line("hold", part, content, text));
                    verdict.hold = true;
                }
            }
            "PREPEND" => {
                if text.is_empty() {
                    notes.warning(format!("PREPEND action without text in {title} map"));
                } else if part == Part::Header && !is_header_text(text) {
                    notes.warning(format!(
                        "bad PREPEND header text \"{text}\" in {title} map -- need \"headername: headervalue\""
                    ));
                } else {
                    notes.info(ctx.line("prepend", part, content, text));
                    action.prepend = Some(text.to_string());
                }
            }
            "REPLACE" => {
                if text.is_empty() {
                    notes.warning(format!("REPLACE action without text in {title} map"));
                } else if part == Part::Header && !is_header_text(text) {
                    notes.warning(format!(
                        "bad REPLACE header text \"{text}\" in {title} map -- need \"headername: headervalue\""
                    ));
                } else {
                    notes.info(ctx.line("replace", part, content, text));
                    action.replace = Some(text.to_string());
                }
            }
            "REDIRECT" => {
                if !text.contains('@') {
                    notes.warning(format!("bad REDIRECT target \"{text}\" in {title} map -- need user@domain"));
                } else {
                    notes.info(ctx.line("redirect", part, content, text));
                    verdict.redirect = Some(text.to_string());
                    verdict.done = true;
                }
            }
            "BCC" => {
                if !text.contains('@') {
                    notes.warning(format!("bad BCC address \"{text}\" in {title} map -- need user@domain"));
                } else {
                    notes.info(ctx.line("bcc", part, content, text));
                    verdict.bcc.push(text.to_string());
                }
            }
            "FILTER" => {
                notes.warning(format!("{title} map: FILTER {text}: content filters are not supported; action ignored"))
            }
            "IGNORE" => action.drop = true,
            "DUNNO" | "OK" => {}
            _ => notes.warning(format!("unknown command in {title} map: {value}")),
        }
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::search::testing::{TestMap, list};

    fn ctx() -> LogContext {
        LogContext {
            origin: "local".into(),
            sender: "a@b.example".into(),
            recipient: Some("c@d.example".into()),
            ..LogContext::default()
        }
    }

    /// Checks answering `action` for any line containing "match".
    fn checks(action: &'static str, part: Part) -> Checks {
        Checks::new(
            list(&[TestMap::pattern("regexp:/etc/postfix/header_checks", move |k| {
                k.contains("match").then(|| action.to_string())
            })]),
            part,
        )
    }

    fn run(action: &'static str, part: Part, line: &str) -> (LineAction, Verdict, String) {
        let mut verdict = Verdict::default();
        let mut notes = Notes::default();
        let result = checks(action, part).inspect(line, &mut verdict, &ctx(), &mut notes).unwrap();
        (result, verdict, notes.pending_text())
    }

    #[test]
    fn reject() {
        let (line, verdict, log) = run("REJECT no thanks", Part::Header, "Subject: match me");
        assert_eq!(line, LineAction::default());
        assert_eq!(verdict.reject, Some(("5.7.1".into(), "no thanks".into())));
        assert!(verdict.done && !verdict.deferred());
        assert_eq!(
            log,
            "info: reject: header Subject: match me from local; from=<a@b.example> to=<c@d.example>: 5.7.1 no thanks\n"
        );
        let (_, verdict, log) = run("REJECT", Part::Body, "match");
        assert_eq!(verdict.reject, Some(("5.7.1".into(), "message content rejected".into())));
        assert!(log.contains("reject: body match from local;"), "{log}");
        let (_, verdict, _) = run("REJECT 5.7.0 virus found", Part::Body, "match");
        assert_eq!(verdict.reject, Some(("5.7.0".into(), "virus found".into())));
        let (_, verdict, _) = run("reject 4.7.1 try later", Part::Body, "match");
        assert!(verdict.deferred());
        let (_, verdict, log) = run("REJECT 2.0.0 odd", Part::Body, "match");
        assert_eq!(verdict.reject, Some(("4.0.0".into(), "odd".into())));
        assert!(log.contains("warning: bad DSN action in 2.0.0 odd -- need 4.x.x or 5.x.x"), "{log}");
    }

    #[test]
    fn warn_and_info() {
        let (line, verdict, log) = run("WARN spammy subject", Part::Header, "Subject: match");
        assert_eq!((line, verdict), (LineAction::default(), Verdict::default()));
        assert_eq!(
            log,
            "info: warning: header Subject: match from local; from=<a@b.example> to=<c@d.example>: spammy subject\n"
        );
        let (_, _, log) = run("WARN", Part::Header, "Subject: match");
        assert!(log.ends_with("to=<c@d.example>\n"), "{log}");
        let (_, _, log) = run("INFO noted", Part::Body, "match");
        assert!(log.starts_with("info: info: body match"), "{log}");
    }

    #[test]
    fn ignore_replace_prepend() {
        let (line, _, log) = run("IGNORE", Part::Header, "X-Spam: match");
        assert!(line.drop);
        assert_eq!(log, "");
        let (line, _, log) = run("REPLACE X-Was: replaced", Part::Header, "X-Spam: match");
        assert_eq!(line.replace.as_deref(), Some("X-Was: replaced"));
        assert!(log.contains("replace: header X-Spam: match from local;"), "{log}");
        let (line, _, _) = run("REPLACE not a header", Part::Header, "X-Spam: match");
        assert_eq!(line.replace, None);
        let (line, _, _) = run("REPLACE any text", Part::Body, "match");
        assert_eq!(line.replace.as_deref(), Some("any text"));
        let (line, _, log) = run("PREPEND X-Seen: yes", Part::Header, "Subject: match");
        assert_eq!(line.prepend.as_deref(), Some("X-Seen: yes"));
        assert!(log.contains("prepend: header Subject: match"), "{log}");
        let (line, _, log) = run("PREPEND", Part::Header, "Subject: match");
        assert_eq!(line.prepend, None);
        assert!(log.contains("warning: PREPEND action without text in header_checks map"), "{log}");
    }

    #[test]
    fn discard_hold_and_the_rest() {
        let (_, verdict, log) = run("DISCARD", Part::Header, "Subject: match");
        assert!(verdict.discard && verdict.done);
        assert!(log.contains("discard: header Subject: match from local;"), "{log}");
        let (_, verdict, log) = run("HOLD look at this", Part::Body, "match");
        assert!(verdict.hold && !verdict.done);
        assert!(log.contains("hold: body match from local;") && log.contains(": look at this"), "{log}");
        for action in ["DUNNO", "OK", "dunno extra text"] {
            let (line, verdict, log) = run(action, Part::Header, "Subject: match");
            assert_eq!((line, verdict, log), (LineAction::default(), Verdict::default(), String::new()));
        }
        let (_, verdict, log) = run("REDIRECT boss@example.com", Part::Header, "Subject: match");
        assert_eq!(verdict.redirect.as_deref(), Some("boss@example.com"));
        assert!(verdict.done && log.contains("redirect: header"));
        let (_, verdict, _) = run("BCC archive@example.com", Part::Header, "Subject: match");
        assert_eq!(verdict.bcc, ["archive@example.com"]);
        let (_, _, log) = run("FROB", Part::Header, "Subject: match");
        assert!(log.contains("warning: unknown command in header_checks map: FROB"), "{log}");
    }

    #[test]
    fn hold_is_logged_once_and_inspection_stops_after_reject() {
        let c = checks("HOLD", Part::Header);
        let mut verdict = Verdict::default();
        let mut notes = Notes::default();
        c.inspect("A: match", &mut verdict, &ctx(), &mut notes).unwrap();
        c.inspect("B: match", &mut verdict, &ctx(), &mut notes).unwrap();
        assert_eq!(notes.pending_text().matches("hold:").count(), 1);
        let c = checks("REJECT", Part::Header);
        let mut verdict = Verdict::default();
        let mut notes = Notes::default();
        c.inspect("A: match", &mut verdict, &ctx(), &mut notes).unwrap();
        c.inspect("B: match", &mut verdict, &ctx(), &mut notes).unwrap();
        assert_eq!(notes.pending_text().matches("reject:").count(), 1);
    }

    #[test]
    fn long_lines_are_cut_in_the_log() {
        let line = format!("Subject: match {}", "x".repeat(500));
        let (_, _, log) = run("WARN", Part::Header, &line);
        assert!(log.contains(&format!("header {} from local", &line[..200])), "{log}");
    }

    #[test]
    fn tables_that_cannot_answer() {
        let c = Checks::new(list(&[TestMap::failing("regexp:down")]), Part::Header);
        let mut notes = Notes::default();
        let err = c.inspect("Subject: x", &mut Verdict::default(), &ctx(), &mut notes).unwrap_err();
        assert_eq!(err.text, "header_checks map lookup problem");
    }

    #[test]
    fn dsn_codes() {
        assert_eq!(split_dsn("5.7.1 text here"), Some(("5.7.1", "text here")));
        assert_eq!(split_dsn("4.2.100"), Some(("4.2.100", "")));
        assert_eq!(split_dsn("5.7 text"), None);
        assert_eq!(split_dsn("550 text"), None);
        assert_eq!(split_dsn("6.1.1 x"), None);
    }
}
