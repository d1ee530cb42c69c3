//! The smtpd_*_restrictions lists (Postfix's smtpd_check.c): parsed once at start-up, evaluated
//! per command with Postfix's order, results and reply texts.
//!
//! - Each list is evaluated in order; the first restriction that permits or rejects decides that
//!   list. A permit ends only its own list: at RCPT the relay list and then the recipient list
//!   are both asked, and (with smtpd_delay_reject) the session asks the client, HELO and sender
//!   lists before them, one [`Stage`] per call.
//! - warn_if_reject turns the next restriction's reject into a `reject_warning` log line.
//! - Temporary DNS failures do not reject at once: like Postfix's defer_if_permit, a later
//!   reject in the same list still wins, and only a list that would permit answers 450. With
//!   smtpd_dns_failure_action = skip the check is skipped instead. Every DNS-based restriction
//!   gives up after smtpd_dns_timeout, and a resolver that timed out is not asked again for a
//!   few seconds, so a dead link costs a LAN client about one timeout, not one per check.
//! - Relaying needs reject_unauth_destination or defer_unauth_destination (or a plain reject)
//!   in the relay or recipient list; [`Restrictions::new`] refuses a configuration without one,
//!   as Postfix refuses to start.

mod resolve;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::timeout_at;

use self::resolve::{Class, Domains};
use crate::config::Config;
use crate::deliver::smtp::dns::{self, DnsResolver};
use crate::deliver::smtp::relayhost::ResolveError;
use crate::maps::search::{self, NetworkList};
use crate::maps::{self, Map, MapError, MapList};
use crate::{mail_info, mail_warning};

const SERVICE: &str = "smtpd";

/// What the server knows about the client.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: IpAddr,
    /// The verified host name, or "unknown".
    pub name: String,
    pub helo: Option<String>,
    pub sasl_username: Option<String>,
    pub tls: bool,
    /// The client sent commands before it was allowed to (before the greeting, or pipelined
    /// without PIPELINING): what reject_unauth_pipelining looks for.
    pub improper_pipelining: bool,
}

/// The SMTP command being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Etrn,
}

/// One check: the stage, the client, and what the command carries.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub stage: Stage,
    pub client: &'a Client,
    /// MAIL FROM (empty for the null sender), from MAIL on.
    pub sender: Option<&'a str>,
    /// RCPT TO, at the Rcpt stage.
    pub recipient: Option<&'a str>,
    /// The ETRN argument.
    pub etrn: Option<&'a str>,
}

/// The outcome of the restrictions for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (the lists permitted, or said nothing).
    Accept,
    /// Answer with this reply (4xx or 5xx) and log `NOQUEUE: reject: ...`.
    Reject { code: u16, dsn: String, text: String },
    /// Accept, but throw the message away.
    Discard { text: String },
    /// Accept into the hold queue.
    Hold { text: String },
}

// ---------------------------------------------------------------------------------------------
// Parsed restrictions
// ---------------------------------------------------------------------------------------------

/// What an access table is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Client,
    Helo,
    Sender,
    Recipient,
    Etrn,
}

/// A DNS blocklist and the answers that count (`domain=127.0.0.[2..11]`), any when None.
#[derive(Debug, Clone)]
struct Dnsbl {
    domain: String,
    filter: Option<[OctetSet; 4]>,
}

/// One octet of a DNSBL answer filter: ranges.
#[derive(Debug, Clone)]
struct OctetSet(Vec<(u8, u8)>);

/// Which login/sender mismatches reject_*_sender_login_mismatch refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginCheck {
    /// reject_sender_login_mismatch: both of the others.
    Both,
    /// reject_authenticated_sender_login_mismatch: a logged-in client's sender must be its own.
    Authenticated,
    /// reject_unauthenticated_sender_login_mismatch: an owned sender needs a login.
    Unauthenticated,
    /// reject_known_sender_login_mismatch: only senders listed in the maps are checked.
    Known,
}

#[derive(Debug, Clone)]
enum Rule {
    Permit,
    Reject,
    Defer,
    DeferIfPermit,
    WarnIfReject,
    PermitMynetworks,
    PermitInetInterfaces,
    PermitSaslAuthenticated,
    RejectUnauthDestination,
    DeferUnauthDestination,
    PermitAuthDestination,
    CheckRelayDomains,
    RejectUnauthPipelining,
    RejectPlaintextSession,
    Access(Target, Arc<dyn Map>),
    RejectInvalidHelo,
    RejectNonFqdnHelo,
    RejectUnknownHelo,
    RejectNonFqdnSender,
    RejectNonFqdnRecipient,
    RejectUnknownSenderDomain,
    RejectUnknownRecipientDomain,
    RejectUnknownClient,
    RejectUnknownReverseClient,
    RejectRblClient(Dnsbl),
    RejectRhsbl(Target, Dnsbl),
    RejectUnlistedRecipient,
    RejectUnlistedSender,
    SenderLoginMismatch(LoginCheck),
}

/// Old names from the classic tutorials, with what they mean now.
const RENAMED: &[(&str, &str)] = &[
    ("reject_invalid_hostname", "reject_invalid_helo_hostname"),
    ("reject_unknown_hostname", "reject_unknown_helo_hostname"),
    ("reject_non_fqdn_hostname", "reject_non_fqdn_helo_hostname"),
    ("reject_unknown_client", "reject_unknown_client_hostname"),
    ("reject_rbl", "reject_rbl_client"),
    ("check_recipient_maps", "reject_unlisted_recipient"),
];

/// Each obsolete name is warned about once per process.
static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn warn_once(name: &str, text: std::fmt::Arguments<'_>) {
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if !warned.iter().any(|w| w == name) {
        warned.push(name.to_string());
        mail_warning!(SERVICE, "{text}");
    }
}

/// The restrictions that make a relay/recipient list refuse relaying by default.
const RELAY_REQUIRED: &str =
    "reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains";

/// Parses one list. `default` is the access table a bare `type:table` stands for.
fn parse_list(cfg: &Config, parameter: &str, words: &[String], default: Option<Target>) -> Result<Vec<Rule>, String> {
    // TOML lists may hold "check_client_access hash:/x" as one item.
    let words: Vec<&str> = words.iter().flat_map(|w| w.split(|c: char| c == ',' || c.is_whitespace())).collect();
    let words: Vec<&str> = words.into_iter().filter(|w| !w.is_empty()).collect();
    let mut rules = Vec::new();
    let mut i = 0;
    let bad = |text: String| format!("parameter {parameter}: {text}");
    while i < words.len() {
        let word = words[i];
        i += 1;
        let mut argument = |what: &str| -> Result<String, String> {
            match words.get(i) {
                Some(next) => {
                    i += 1;
                    Ok(next.to_string())
                }
                None => Err(bad(format!("restriction \"{word}\" needs {what}"))),
            }
        };
        if word.contains(':') {
            let Some(target) = default else {
                return Err(bad(format!(
                    "table \"{word}\" needs a check_client_access, check_helo_access, check_sender_access, \
                     check_recipient_access or check_etrn_access before it"
                )));
            };
            rules.push(Rule::Access(target, open_access(parameter, word)?));
            continue;
        }
        let mut name = word.to_ascii_lowercase();
        if let Some((_, new)) = RENAMED.iter().find(|(old, _)| *old == name) {
            warn_once(
                &name,
                format_args!(
                    "restriction \"{name}\" (in {parameter}) is obsolete; it means \"{new}\" and should be renamed"
                ),
            );
            name = new.to_string();
        }
        let rule = match name.as_str() {
            "permit" => Rule::Permit,
            "reject" => Rule::Reject,
            "defer" => Rule::Defer,
            "defer_if_permit" => Rule::DeferIfPermit,
            "warn_if_reject" => Rule::WarnIfReject,
            "permit_mynetworks" => Rule::PermitMynetworks,
            "permit_inet_interfaces" => Rule::PermitInetInterfaces,
            "permit_sasl_authenticated" => Rule::PermitSaslAuthenticated,
            "reject_unauth_destination" => Rule::RejectUnauthDestination,
            "defer_unauth_destination" => Rule::DeferUnauthDestination,
            "permit_auth_destination" => Rule::PermitAuthDestination,
            "check_relay_domains" => {
                warn_once(
                    &name,
                    format_args!(
                        "restriction \"check_relay_domains\" (in {parameter}) is obsolete; use \
                         \"permit_mynetworks, reject_unauth_destination\" instead"
                    ),
                );
                Rule::CheckRelayDomains
            }
            "reject_unauth_pipelining" => Rule::RejectUnauthPipelining,
            "reject_plaintext_session" => Rule::RejectPlaintextSession,
            "check_client_access"
            | "check_helo_access"
            | "check_sender_access"
            | "check_recipient_access"
            | "check_etrn_access" => {
                let target = match name.as_str() {
                    "check_client_access" => Target::Client,
                    "check_helo_access" => Target::Helo,
                    "check_sender_access" => Target::Sender,
                    "check_recipient_access" => Target::Recipient,
                    _ => Target::Etrn,
                };
                let table = argument("a type:table argument")?;
                if !table.contains(':') {
                    return Err(bad(format!("restriction \"{name}\": bad argument \"{table}\": need type:table")));
                }
                Rule::Access(target, open_access(parameter, &table)?)
            }
            "reject_invalid_helo_hostname" => Rule::RejectInvalidHelo,
            "reject_non_fqdn_helo_hostname" => Rule::RejectNonFqdnHelo,
            "reject_unknown_helo_hostname" => Rule::RejectUnknownHelo,
            "reject_non_fqdn_sender" => Rule::RejectNonFqdnSender,
            "reject_non_fqdn_recipient" => Rule::RejectNonFqdnRecipient,
            "reject_unknown_sender_domain" => Rule::RejectUnknownSenderDomain,
            "reject_unknown_recipient_domain" => Rule::RejectUnknownRecipientDomain,
            "reject_unknown_client_hostname" => Rule::RejectUnknownClient,
            "reject_unknown_reverse_client_hostname" => Rule::RejectUnknownReverseClient,
            "reject_rbl_client" => Rule::RejectRblClient(parse_dnsbl(&argument("a DNSBL domain")?).map_err(&bad)?),
            "reject_rhsbl_client" | "reject_rhsbl_sender" | "reject_rhsbl_recipient" | "reject_rhsbl_helo" => {
                let target = match name.as_str() {
                    "reject_rhsbl_client" => Target::Client,
                    "reject_rhsbl_sender" => Target::Sender,
                    "reject_rhsbl_helo" => Target::Helo,
                    _ => Target::Recipient,
                };
                Rule::RejectRhsbl(target, parse_dnsbl(&argument("a DNSBL domain")?).map_err(&bad)?)
            }
            "reject_maps_rbl" => {
                warn_once(
                    &name,
                    format_args!(
                        "restriction \"reject_maps_rbl\" (in {parameter}) is obsolete; use \
                         \"reject_rbl_client domain\" for each of maps_rbl_domains"
                    ),
                );
                for domain in cfg.maps_rbl_domains() {
                    rules.push(Rule::RejectRblClient(parse_dnsbl(domain).map_err(&bad)?));
                }
                continue;
            }
            "reject_unlisted_recipient" => Rule::RejectUnlistedRecipient,
            "reject_unlisted_sender" => Rule::RejectUnlistedSender,
            "reject_sender_login_mismatch"
            | "reject_authenticated_sender_login_mismatch"
            | "reject_unauthenticated_sender_login_mismatch"
            | "reject_known_sender_login_mismatch" => {
                if !cfg.smtpd_sasl_auth_enable() {
                    warn_once(
                        &name,
                        format_args!("restriction \"{name}\" (in {parameter}) is ignored: smtpd_sasl_auth_enable = no"),
                    );
                    continue;
                }
                Rule::SenderLoginMismatch(match name.as_str() {
                    "reject_sender_login_mismatch" => LoginCheck::Both,
                    "reject_authenticated_sender_login_mismatch" => LoginCheck::Authenticated,
                    "reject_unauthenticated_sender_login_mismatch" => LoginCheck::Unauthenticated,
                    _ => LoginCheck::Known,
                })
            }
            _ => return Err(bad(format!("unknown restriction \"{word}\""))),
        };
        rules.push(rule);
    }
    Ok(rules)
}

/// An access table named in a list. It must open now: a typo is found at start-up.
fn open_access(parameter: &str, spec: &str) -> Result<Arc<dyn Map>, String> {
    maps::open(spec).map_err(|e| format!("parameter {parameter}: {e}"))
}

/// `domain` or `domain=127.0.0.[2..11;20]`.
fn parse_dnsbl(text: &str) -> Result<Dnsbl, String> {
    let (domain, filter) = match text.split_once('=') {
        Some((domain, filter)) => (domain, Some(filter)),
        None => (text, None),
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Err(format!("bad DNSBL \"{text}\""));
    }
    let filter = match filter {
        None => None,
        Some(filter) => {
            let octets = split_octets(filter);
            if octets.len() != 4 {
                return Err(format!("bad DNSBL reply filter \"{filter}\""));
            }
            let mut sets = Vec::new();
            for octet in octets {
                sets.push(parse_octet(octet).ok_or_else(|| format!("bad DNSBL reply filter \"{filter}\""))?);
            }
            Some([sets[0].clone(), sets[1].clone(), sets[2].clone(), sets[3].clone()])
        }
    };
    Ok(Dnsbl { domain, filter })
}

/// The four octets of a filter; dots inside brackets are ranges, not separators.
fn split_octets(filter: &str) -> Vec<&str> {
    let mut octets = Vec::new();
    let (mut start, mut depth) = (0, 0);
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b'.' if depth == 0 => {
                octets.push(&filter[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    octets.push(&filter[start..]);
    octets
}

/// `2`, or `[2..11;20]`.
fn parse_octet(text: &str) -> Option<OctetSet> {
    let inner = match text.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => return text.parse::<u8>().ok().map(|n| OctetSet(vec![(n, n)])),
    };
    let mut ranges = Vec::new();
    for part in inner.split(';') {
        match part.split_once("..") {
            Some((low, high)) => ranges.push((low.parse().ok()?, high.parse().ok()?)),
            None => {
                let n = part.parse().ok()?;
                ranges.push((n, n));
            }
        }
    }
    Some(OctetSet(ranges))
}

impl Dnsbl {
    fn accepts(&self, answer: Ipv4Addr) -> bool {
        match &self.filter {
            None => true,
            Some(sets) => {
                answer.octets().iter().zip(sets).all(|(n, set)| set.0.iter().any(|(low, high)| low <= n && n <= high))
            }
        }
    }
}

fn has_relay_control(rules: &[Rule]) -> bool {
    rules.iter().any(|rule| {
        matches!(
            rule,
            Rule::RejectUnauthDestination
                | Rule::DeferUnauthDestination
                | Rule::Reject
                | Rule::Defer
                | Rule::DeferIfPermit
                | Rule::CheckRelayDomains
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The lists
// ---------------------------------------------------------------------------------------------

/// The configured lists, ready to evaluate.
pub struct Restrictions {
    cfg: Arc<Config>,
    client: Vec<Rule>,
    helo: Vec<Rule>,
    sender: Vec<Rule>,
    relay: Vec<Rule>,
    recipient: Vec<Rule>,
    data: Vec<Rule>,
    end_of_data: Vec<Rule>,
    etrn: Vec<Rule>,
    mynetworks: NetworkList,
    domains: Domains,
    interfaces: Vec<IpAddr>,
    access_parent: bool,
    /// None: the system resolver (TIDEMAIL_DNS_SERVER or resolv.conf), looked up per use.
    resolver: Option<DnsResolver>,
    /// After a DNS timeout, lookups fail at once until then.
    dns_dead_until: Mutex<Option<Instant>>,
}

/// How long a resolver that timed out is left alone.
const DNS_DEAD_TIME: Duration = Duration::from_secs(10);

impl Restrictions {
    /// Reads and checks the lists; a bad restriction name is an error naming the parameter.
    pub fn new(cfg: Arc<Config>) -> Result<Restrictions, String> {
        Restrictions::build(cfg, None)
    }

    /// As [`Restrictions::new`], asking `resolver` for every DNS-based check (tests).
    pub fn with_resolver(cfg: Arc<Config>, resolver: DnsResolver) -> Result<Restrictions, String> {
        Restrictions::build(cfg, Some(resolver))
    }

    fn build(cfg: Arc<Config>, resolver: Option<DnsResolver>) -> Result<Restrictions, String> {
        let c = &cfg;
        let relay = parse_list(c, "smtpd_relay_restrictions", c.smtpd_relay_restrictions(), Some(Target::Recipient))?;
        let recipient =
            parse_list(c, "smtpd_recipient_restrictions", c.smtpd_recipient_restrictions(), Some(Target::Recipient))?;
        if !has_relay_control(&relay) && !has_relay_control(&recipient) {
            return Err(format!(
                "parameters smtpd_relay_restrictions and smtpd_recipient_restrictions: specify at least one \
                 working instance of: {RELAY_REQUIRED}"
            ));
        }
        let mynetworks = NetworkList::new(c.mynetworks()).map_err(|e| format!("parameter mynetworks: {e}"))?;
        let domains = Domains::from_config(c).map_err(|e| format!("relay and local domains: {e}"))?;
        Ok(Restrictions {
            client: parse_list(c, "smtpd_client_restrictions", c.smtpd_client_restrictions(), Some(Target::Client))?,
            helo: parse_list(c, "smtpd_helo_restrictions", c.smtpd_helo_restrictions(), Some(Target::Helo))?,
            sender: parse_list(c, "smtpd_sender_restrictions", c.smtpd_sender_restrictions(), Some(Target::Sender))?,
            relay,
            recipient,
            data: parse_list(c, "smtpd_data_restrictions", c.smtpd_data_restrictions(), None)?,
            end_of_data: parse_list(c, "smtpd_end_of_data_restrictions", c.smtpd_end_of_data_restrictions(), None)?,
            etrn: parse_list(c, "smtpd_etrn_restrictions", c.smtpd_etrn_restrictions(), Some(Target::Etrn))?,
            mynetworks,
            domains,
            interfaces: search::interface_addresses(c.inet_interfaces()),
            access_parent: search::parent_matches(c, "smtpd_access_maps"),
            resolver,
            dns_dead_until: Mutex::new(None),
            cfg,
        })
    }

    /// The verdict for `query`. With smtpd_delay_reject the session asks the client, HELO and
    /// sender lists again at RCPT; this function evaluates what belongs to `query.stage`.
    pub async fn check(&self, query: &Query<'_>) -> Verdict {
        let mut eval = Eval::new(self, query);
        eval.run_stage().await
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// A reply, before it becomes a [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    dsn: String,
    text: String,
}

impl Reply {
    /// Postfix keeps the status class and the reply class equal (smtpd_check_reject).
    fn new(code: u16, dsn: &str, text: String) -> Reply {
        let class = if (400..500).contains(&code) { '4' } else { '5' };
        let mut dsn = dsn.to_string();
        if dsn.len() >= 5 {
            dsn.replace_range(0..1, &class.to_string());
        }
        Reply { code, dsn, text }
    }
}

enum Outcome {
    Dunno,
    Permit,
    Reject(Reply),
    /// A temporary failure: a reject later in the list wins, a permit becomes this.
    DeferIfPermit(Reply),
}

/// The name and class in replies for what a list or restriction is about.
#[derive(Debug, Clone)]
struct Subject {
    name: String,
    class: &'static str,
}

type Boxed<'s> = Pin<Box<dyn Future<Output = Outcome> + Send + 's>>;

struct Eval<'a> {
    r: &'a Restrictions,
    q: &'a Query<'a>,
    warn_next: bool,
    /// warn_if_reject applies to the restriction being evaluated.
    warning: bool,
    defer: Option<Reply>,
    hold: Option<String>,
    discard: Option<String>,
    recipient_checked: bool,
    sender_checked: bool,
    depth: usize,
}

const CLIENT: &str = "Client host";
const HELO: &str = "Helo command";
const SENDER: &str = "Sender address";
const RECIPIENT: &str = "Recipient address";

impl<'a> Eval<'a> {
    fn new(r: &'a Restrictions, q: &'a Query<'a>) -> Eval<'a> {
        Eval {
            r,
            q,
            warn_next: false,
            warning: false,
            defer: None,
            hold: None,
            discard: None,
            recipient_checked: false,
            sender_checked: false,
            depth: 0,
        }
    }

    fn cfg(&self) -> &Config {
        &self.r.cfg
    }

    fn namaddr(&self) -> String {
        format!("{}[{}]", self.q.client.name, self.q.client.addr)
    }

    fn client_subject(&self) -> Subject {
        Subject { name: self.namaddr(), class: CLIENT }
    }

    async fn run_stage(&mut self) -> Verdict {
        let r = self.r;
        let q = self.q;
        let outcome = match q.stage {
            Stage::Connect => self.run_list(&r.client, &self.client_subject()).await,
            Stage::Helo => match &q.client.helo {
                // Postfix asks the HELO list only once there is a HELO name.
                Some(helo) => self.run_list(&r.helo, &Subject { name: helo.clone(), class: HELO }).await,
                None => return Verdict::Accept,
            },
            Stage::Mail => {
                let Some(sender) = q.sender else { return Verdict::Accept };
                let mut outcome = self.run_list(&r.sender, &Subject { name: sender.to_string(), class: SENDER }).await;
                if !matches!(outcome, Outcome::Reject(_))
                    && self.cfg().smtpd_reject_unlisted_sender()
                    && !self.sender_checked
                    && self.discard.is_none()
                    && !sender.is_empty()
                {
                    let unlisted = self.unlisted(sender, SENDER).await;
                    if matches!(unlisted, Outcome::Reject(_)) {
                        outcome = unlisted;
                    }
                }
                outcome
            }
            Stage::Rcpt => {
                let Some(recipient) = q.recipient else { return Verdict::Accept };
                // RFC 5321 4.5.1: postmaster without a domain is always accepted.
                if recipient.eq_ignore_ascii_case("postmaster") {
                    return Verdict::Accept;
                }
                let subject = Subject { name: recipient.to_string(), class: RECIPIENT };
                let mut outcome = self.run_list(&r.relay, &subject).await;
                if !matches!(outcome, Outcome::Reject(_)) && self.discard.is_none() {
                    outcome = self.run_list(&r.recipient, &subject).await;
                }
                if !matches!(outcome, Outcome::Reject(_))
                    && let Some(defer) = self.defer.take()
                {
                    outcome = Outcome::Reject(defer);
                }
                if !matches!(outcome, Outcome::Reject(_))
                    && self.cfg().smtpd_reject_unlisted_recipient()
                    && !self.recipient_checked
                    && self.discard.is_none()
                {
                    let unlisted = self.unlisted(recipient, RECIPIENT).await;
                    if matches!(unlisted, Outcome::Reject(_)) {
                        outcome = unlisted;
                    }
                }
                outcome
            }
            Stage::Data => self.run_list(&r.data, &Subject { name: "DATA".into(), class: "Data command" }).await,
            Stage::EndOfData => {
                self.run_list(&r.end_of_data, &Subject { name: "END-OF-MESSAGE".into(), class: "End-of-data command" })
                    .await
            }
            Stage::Etrn => {
                let Some(domain) = q.etrn else { return Verdict::Accept };
                self.run_list(&r.etrn, &Subject { name: domain.to_string(), class: "Etrn command" }).await
            }
        };
        if let Outcome::Reject(reply) = outcome {
            return Verdict::Reject { code: reply.code, dsn: reply.dsn, text: reply.text };
        }
        if let Some(defer) = self.defer.take() {
            return Verdict::Reject { code: defer.code, dsn: defer.dsn, text: defer.text };
        }
        if let Some(text) = self.discard.take() {
            return Verdict::Discard { text };
        }
        if let Some(text) = self.hold.take() {
            return Verdict::Hold { text };
        }
        Verdict::Accept
    }

    /// One list: the first permit or reject decides.
    fn run_list<'s>(&'s mut self, rules: &'s [Rule], subject: &'s Subject) -> Boxed<'s> {
        Box::pin(async move {
            self.depth += 1;
            let mut result = Outcome::Dunno;
            for rule in rules {
                if self.discard.is_some() {
                    break;
                }
                if matches!(rule, Rule::WarnIfReject) {
                    self.warn_next = true;
                    continue;
                }
                let warn = std::mem::take(&mut self.warn_next);
                self.warning = warn;
                match self.apply(rule, subject).await {
                    Outcome::Dunno => {}
                    Outcome::Reject(reply) | Outcome::DeferIfPermit(reply) if warn => {
                        self.log("reject_warning", &format!("{} {} {}", reply.code, reply.dsn, reply.text));
                    }
                    Outcome::DeferIfPermit(reply) => {
                        // The first reason is kept (Postfix: fewer surprises).
                        self.defer.get_or_insert(reply);
                    }
                    decided => {
                        result = decided;
                        break;
                    }
                }
            }
            self.warn_next = false;
            self.depth -= 1;
            result
        })
    }

    /// `NOQUEUE: ACTION: RCPT from host[ip]: TEXT; from=<a> to=<b> helo=<h>`.
    fn log(&self, action: &str, text: &str) {
        let command = match self.q.stage {
            _ if self.q.recipient.is_some() => "RCPT",
            Stage::Connect => "CONNECT",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "END-OF-MESSAGE",
            Stage::Etrn => "ETRN",
        };
        let mut line = format!("NOQUEUE: {action}: {command} from {}: {text};", self.namaddr());
        if let Some(sender) = self.q.sender {
            line.push_str(&format!(" from=<{sender}>"));
        }
        if let Some(recipient) = self.q.recipient {
            line.push_str(&format!(" to=<{recipient}>"));
        }
        if let Some(helo) = &self.q.client.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        mail_info!(SERVICE, "{line}");
    }

    async fn apply(&mut self, rule: &Rule, subject: &Subject) -> Outcome {
        let cfg = self.r.cfg.clone();
        let q = self.q;
        let client = q.client;
        let code = |value: i64| u16::try_from(value).unwrap_or(554);
        let generic = |code: u16, dsn: &str, what: &str| {
            Outcome::Reject(Reply::new(code, dsn, format!("<{}>: {} rejected: {what}", subject.name, subject.class)))
        };
        match rule {
            Rule::Permit => Outcome::Permit,
            Rule::Reject => generic(code(cfg.reject_code()), "5.7.1", "Access denied"),
            Rule::Defer => generic(code(cfg.defer_code()), "4.3.2", "Try again later"),
            Rule::DeferIfPermit => Outcome::DeferIfPermit(Reply::new(
                450,
                "4.7.0",
                format!("<{}>: {} rejected: defer_if_permit requested", subject.name, subject.class),
            )),
            Rule::WarnIfReject => Outcome::Dunno,
            Rule::PermitMynetworks => match self.r.mynetworks.matches(client.addr) {
                Ok(true) => Outcome::Permit,
                Ok(false) => Outcome::Dunno,
                Err(e) => self.lookup_failure(&subject.name, &e),
            },
            Rule::PermitInetInterfaces => {
                if self.r.interfaces.contains(&client.addr) {
                    Outcome::Permit
                } else {
                    Outcome::Dunno
                }
            }
            Rule::PermitSaslAuthenticated => {
                if client.sasl_username.as_deref().is_some_and(|u| !u.is_empty()) {
                    Outcome::Permit
                } else {
                    Outcome::Dunno
                }
            }
            Rule::RejectUnauthDestination | Rule::DeferUnauthDestination => {
                let Some(recipient) = q.recipient else { return Outcome::Dunno };
                match self.r.domains.resolve(recipient) {
                    Ok(resolved) if resolved.is_authorized() => Outcome::Dunno,
                    Ok(_) => {
                        let relay_code = code(cfg.relay_domains_reject_code());
                        let (code, dsn) = if matches!(rule, Rule::DeferUnauthDestination) {
                            (relay_code.saturating_sub(100), "4.7.1")
                        } else {
                            (relay_code, "5.7.1")
                        };
                        Outcome::Reject(Reply::new(code, dsn, format!("<{recipient}>: Relay access denied")))
                    }
                    Err(e) => self.lookup_failure(recipient, &e),
                }
            }
            Rule::PermitAuthDestination => {
                let Some(recipient) = q.recipient else { return Outcome::Dunno };
                match self.r.domains.resolve(recipient) {
                    Ok(resolved) if resolved.is_authorized() => Outcome::Permit,
                    Ok(_) => Outcome::Dunno,
                    Err(e) => self.lookup_failure(recipient, &e),
                }
            }
            Rule::CheckRelayDomains => {
                let Some(recipient) = q.recipient else { return Outcome::Dunno };
                // Postfix's old meaning (a client whose name is in relay_domains, or an
                // authorized destination), plus mynetworks, which is what the tutorials that
                // used it meant by "our clients".
                let trusted = matches!(self.r.mynetworks.matches(client.addr), Ok(true))
                    || (client.name != "unknown"
                        && matches!(self.r.domains.resolve(&format!("x@{}", client.name)), Ok(r) if r.class == Class::Relay));
                match self.r.domains.resolve(recipient) {
                    _ if trusted => Outcome::Permit,
                    Ok(resolved) if resolved.is_authorized() => Outcome::Permit,
                    Ok(_) => Outcome::Reject(Reply::new(
                        code(cfg.relay_domains_reject_code()),
                        "5.7.1",
                        format!("<{recipient}>: {RECIPIENT} rejected: Relay access denied"),
                    )),
                    Err(e) => self.lookup_failure(recipient, &e),
                }
            }
            Rule::RejectUnauthPipelining => {
                if client.improper_pipelining {
                    generic(
                        code(cfg.unauth_pipelining_reject_code()),
                        "5.5.0",
                        "Improper use of SMTP command pipelining",
                    )
                } else {
                    Outcome::Dunno
                }
            }
            Rule::RejectPlaintextSession => {
                if client.tls {
                    Outcome::Dunno
                } else {
                    Outcome::Reject(Reply::new(450, "4.7.1", "Session encryption is required".into()))
                }
            }
            Rule::Access(target, map) => self.access(*target, map, subject).await,
            Rule::RejectInvalidHelo | Rule::RejectNonFqdnHelo | Rule::RejectUnknownHelo => {
                let Some(helo) = client.helo.clone() else { return Outcome::Dunno };
                self.helo_check(rule, &helo).await
            }
            Rule::RejectNonFqdnSender | Rule::RejectNonFqdnRecipient => {
                let (address, class) = match rule {
                    Rule::RejectNonFqdnSender => (q.sender, SENDER),
                    _ => (q.recipient, RECIPIENT),
                };
                match address {
                    Some(address) if !address.is_empty() => {
                        non_fqdn_address(address, class, code(cfg.non_fqdn_reject_code()))
                    }
                    _ => Outcome::Dunno,
                }
            }
            Rule::RejectUnknownSenderDomain | Rule::RejectUnknownRecipientDomain => {
                let (address, class) = match rule {
                    Rule::RejectUnknownSenderDomain => (q.sender, SENDER),
                    _ => (q.recipient, RECIPIENT),
                };
                match address {
                    Some(address) if !address.is_empty() => self.unknown_address(address, class).await,
                    _ => Outcome::Dunno,
                }
            }
            Rule::RejectUnknownClient => self.unknown_client(false).await,
            Rule::RejectUnknownReverseClient => self.unknown_client(true).await,
            Rule::RejectRblClient(list) => {
                let query = match client.addr {
                    IpAddr::V4(v4) => {
                        let [a, b, c, d] = v4.octets();
                        format!("{d}.{c}.{b}.{a}")
                    }
                    IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                        Some(v4) => {
                            let [a, b, c, d] = v4.octets();
                            format!("{d}.{c}.{b}.{a}")
                        }
                        None => dns::reversed_nibbles(v6),
                    },
                };
                let what = search::ip_key(&client.addr.to_string());
                self.dnsbl(list, &query, CLIENT, &what).await
            }
            Rule::RejectRhsbl(target, list) => {
                let (domain, class) = match target {
                    Target::Client => (Some(client.name.clone()).filter(|n| n != "unknown"), CLIENT),
                    Target::Helo => (client.helo.clone(), HELO),
                    Target::Sender => (q.sender.and_then(address_domain), SENDER),
                    _ => (q.recipient.and_then(address_domain), RECIPIENT),
                };
                match domain {
                    Some(domain) if !domain.is_empty() && !domain.starts_with('[') => {
                        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                        self.dnsbl(list, &domain, class, &domain).await
                    }
                    _ => Outcome::Dunno,
                }
            }
            Rule::RejectUnlistedRecipient => match q.recipient {
                Some(recipient) if !recipient.is_empty() && !self.recipient_checked => {
                    // A check that only warns does not count as the real one (Postfix).
                    if !self.warning {
                        self.recipient_checked = true;
                    }
                    self.unlisted(recipient, RECIPIENT).await
                }
                _ => Outcome::Dunno,
            },
            Rule::RejectUnlistedSender => match q.sender {
                Some(sender) if !sender.is_empty() && !self.sender_checked => {
                    if !self.warning {
                        self.sender_checked = true;
                    }
                    self.unlisted(sender, SENDER).await
                }
                _ => Outcome::Dunno,
            },
            Rule::SenderLoginMismatch(check) => match q.sender {
                Some(sender) if !sender.is_empty() => self.login_mismatch(*check, sender),
                _ => Outcome::Dunno,
            },
        }
    }

    /// Postfix's answer to a table that cannot answer: try again later.
    fn lookup_failure(&self, name: &str, error: &MapError) -> Outcome {
        mail_warning!(SERVICE, "{error}");
        Outcome::Reject(Reply::new(451, "4.3.0", format!("<{name}>: Temporary lookup failure")))
    }

    // ---- access tables ----

    async fn access(&mut self, target: Target, map: &Arc<dyn Map>, list: &Subject) -> Outcome {
        let q = self.q;
        let maps = std::slice::from_ref(map);
        let parent = self.r.access_parent;
        let delimiter = self.r.cfg.recipient_delimiter().to_string();
        let (found, subject) = match target {
            Target::Client => {
                (search::access_client(maps, &q.client.name, &q.client.addr.to_string(), parent), self.client_subject())
            }
            Target::Helo => match &q.client.helo {
                Some(helo) => (
                    search::access_domain(maps, helo.trim_end_matches('.'), true, parent),
                    Subject { name: helo.clone(), class: HELO },
                ),
                None => return Outcome::Dunno,
            },
            Target::Sender => match q.sender {
                // The null sender is looked up as "<>" (smtpd_null_access_lookup_key).
                Some("") => {
                    (search::find(maps, "<>", search::Key::Whole), Subject { name: String::new(), class: SENDER })
                }
                Some(sender) => (
                    search::access_address(maps, &search::internal_form(sender), &delimiter, parent),
                    Subject { name: sender.to_string(), class: SENDER },
                ),
                None => return Outcome::Dunno,
            },
            Target::Recipient => match q.recipient {
                Some(recipient) if !recipient.is_empty() => (
                    search::access_address(maps, &search::internal_form(recipient), &delimiter, parent),
                    Subject { name: recipient.to_string(), class: RECIPIENT },
                ),
                _ => return Outcome::Dunno,
            },
            Target::Etrn => match q.etrn {
                Some(domain) => (
                    search::access_domain(maps, domain.trim_end_matches('.'), true, parent),
                    Subject { name: domain.to_string(), class: "Etrn command" },
                ),
                None => return Outcome::Dunno,
            },
        };
        let value = match found {
            Ok(Some(value)) => value,
            Ok(None) => return Outcome::Dunno,
            Err(e) => {
                mail_warning!(SERVICE, "{e}");
                "451 4.3.5 Server configuration error".to_string()
            }
        };
        self.table_result(map.spec(), &value, &subject, target, list).await
    }

    /// What an access table's value means (Postfix's check_table_result).
    async fn table_result(
        &mut self,
        table: &str,
        value: &str,
        subject: &Subject,
        target: Target,
        _list: &Subject,
    ) -> Outcome {
        let value = value.trim();
        let (command, text) = match value.split_once(|c: char| c.is_whitespace()) {
            Some((command, text)) => (command, text.trim_start()),
            None => (value, ""),
        };
        let is = |word: &str| command.eq_ignore_ascii_case(word);
        let code = |value: i64| u16::try_from(value).unwrap_or(554);
        let rejected = |code: u16, default_dsn: &str, text: &str, default_text: &str| {
            let (dsn, text) = split_dsn(default_dsn, text);
            let text = if text.is_empty() { default_text } else { text };
            Outcome::Reject(Reply::new(
                code,
                &dsn_fix(&dsn, subject.class),
                format!("<{}>: {} rejected: {text}", subject.name, subject.class),
            ))
        };
        if is("DUNNO") {
            return Outcome::Dunno;
        }
        if is("REJECT") {
            return rejected(code(self.r.cfg.access_map_reject_code()), "5.7.1", text, "Access denied");
        }
        if is("DEFER") {
            return rejected(450, "4.7.1", text, "Access denied");
        }
        if is("DEFER_IF_PERMIT") {
            let (dsn, text) = split_dsn("4.7.1", text);
            let text = if text.is_empty() { "Service unavailable" } else { text };
            return Outcome::DeferIfPermit(Reply::new(
                450,
                &dsn_fix(&dsn, subject.class),
                format!("<{}>: {} rejected: {text}", subject.name, subject.class),
            ));
        }
        if is("WARN") {
            self.log("warn", text);
            return Outcome::Dunno;
        }
        if is("HOLD") {
            let what = if text.is_empty() { "triggers HOLD action" } else { text };
            self.hold.get_or_insert(format!("<{}>: {} {what}", subject.name, subject.class));
            return Outcome::Dunno;
        }
        if is("DISCARD") {
            let what = if text.is_empty() { "triggers DISCARD action" } else { text };
            self.discard = Some(format!("<{}>: {} {what}", subject.name, subject.class));
            return Outcome::Permit;
        }
        if ["FILTER", "REDIRECT", "PREPEND", "BCC", "DEFER_IF_REJECT"].iter().any(|w| is(w)) {
            warn_once(
                &format!("{table}:{command}"),
                format_args!("access table {table}: action {command} is not supported; ignored"),
            );
            return Outcome::Dunno;
        }
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Outcome::Permit;
        }
        let bytes = command.as_bytes();
        if bytes.len() == 3
            && !text.is_empty()
            && matches!(bytes[0], b'4' | b'5')
            && bytes[1..].iter().all(u8::is_ascii_digit)
        {
            let code: u16 = command.parse().unwrap_or(554);
            let default_dsn = if bytes[0] == b'4' { "4.7.1" } else { "5.7.1" };
            return rejected(code, default_dsn, text, "Access denied");
        }
        if is("OK") || is("RELAY") {
            return Outcome::Permit;
        }
        if value.is_empty() {
            mail_warning!(SERVICE, "access table {table} entry has empty value");
            return Outcome::Permit;
        }
        // Anything else is a list of restrictions, evaluated in place.
        if value.contains(':') || self.depth > 20 {
            mail_warning!(SERVICE, "access table {table}: entry \"{value}\" names a table or recurses too deep");
            return Outcome::Reject(Reply::new(451, "4.3.5", "Server configuration error".into()));
        }
        let words = vec![value.to_string()];
        match parse_list(&self.r.cfg, table, &words, Some(target)) {
            Ok(rules) => self.run_list(&rules, subject).await,
            Err(error) => {
                mail_warning!(SERVICE, "access table {table}: {error}");
                Outcome::Reject(Reply::new(451, "4.3.5", "Server configuration error".into()))
            }
        }
    }

    // ---- HELO ----

    async fn helo_check(&mut self, rule: &Rule, helo: &str) -> Outcome {
        let cfg = self.r.cfg.clone();
        let code = |value: i64| u16::try_from(value).unwrap_or(554);
        let reject = |code: u16, dsn: &str, what: &str| {
            Outcome::Reject(Reply::new(code, dsn, format!("<{helo}>: {HELO} rejected: {what}")))
        };
        if helo.starts_with('[') {
            return if valid_address_literal(helo) {
                Outcome::Dunno
            } else {
                reject(code(cfg.invalid_hostname_reject_code()), "5.5.2", "invalid ip address")
            };
        }
        let name = strip_dot(helo);
        match rule {
            Rule::RejectInvalidHelo => {
                if valid_hostname(name) || name.parse::<IpAddr>().is_ok() {
                    Outcome::Dunno
                } else {
                    reject(code(cfg.invalid_hostname_reject_code()), "5.5.2", "Invalid name")
                }
            }
            Rule::RejectNonFqdnHelo => {
                if valid_hostname(name) && name.contains('.') {
                    Outcome::Dunno
                } else {
                    reject(code(cfg.non_fqdn_reject_code()), "5.5.2", "need fully-qualified hostname")
                }
            }
            _ => {
                let deadline = Instant::now() + cfg.smtpd_dns_timeout();
                match self.dns(deadline, |resolver| async move { resolver.mail_domain(name).await }).await {
                    Ok(()) | Err(ResolveError::NullMx { .. }) => Outcome::Dunno,
                    Err(ResolveError::Temporary { detail, .. }) => self.dns_failure(
                        &format!("reject_unknown_helo_hostname {name}"),
                        &detail,
                        Reply::new(450, "4.7.1", format!("<{helo}>: {HELO} rejected: Host not found")),
                    ),
                    Err(_) => reject(code(cfg.unknown_hostname_reject_code()), "4.7.1", "Host not found"),
                }
            }
        }
    }

    // ---- DNS ----

    /// Runs a lookup within `deadline` (smtpd_dns_timeout from the restriction's start), and
    /// not at all while the resolver is known to be dead.
    async fn dns<T, F, Fut>(&self, deadline: Instant, lookup: F) -> Result<T, ResolveError>
    where
        F: FnOnce(DnsResolver) -> Fut,
        Fut: Future<Output = Result<T, ResolveError>>,
    {
        let temporary = |detail: &str| ResolveError::Temporary {
            name: String::new(),
            rtype: "A",
            detail: detail.to_string(),
            cause: None,
        };
        {
            let dead = self.r.dns_dead_until.lock().unwrap_or_else(|p| p.into_inner());
            if dead.is_some_and(|until| Instant::now() < until) {
                return Err(temporary("resolver not answering"));
            }
        }
        let resolver = match &self.r.resolver {
            Some(resolver) => resolver.clone(),
            None => DnsResolver::system().map_err(|e| temporary(&e.to_string()))?,
        };
        match timeout_at(deadline.into(), lookup(resolver)).await {
            Ok(result) => result,
            Err(_) => {
                *self.r.dns_dead_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + DNS_DEAD_TIME);
                Err(temporary("DNS lookup timed out"))
            }
        }
    }

    /// A DNS check that could not be made: defer (if nothing rejects) or skip.
    fn dns_failure(&self, check: &str, detail: &str, reply: Reply) -> Outcome {
        if self.r.cfg.smtpd_dns_failure_action() == "skip" {
            mail_warning!(SERVICE, "{check}: {detail}; check skipped (smtpd_dns_failure_action = skip)");
            Outcome::Dunno
        } else {
            mail_warning!(SERVICE, "{check}: {detail}");
            Outcome::DeferIfPermit(reply)
        }
    }

    async fn unknown_address(&mut self, address: &str, class: &'static str) -> Outcome {
        let cfg = self.r.cfg.clone();
        let resolved = match self.r.domains.resolve(address) {
            Ok(resolved) => resolved,
            Err(e) => return self.lookup_failure(address, &e),
        };
        let Some(domain) = resolved.domain.clone() else { return Outcome::Dunno };
        if resolved.is_final() || domain.starts_with('[') || domain.is_empty() {
            return Outcome::Dunno;
        }
        let dsn = if class == SENDER { "4.1.8" } else { "4.1.2" };
        let text = |what: &str| format!("<{address}>: {class} rejected: {what}");
        let deadline = Instant::now() + cfg.smtpd_dns_timeout();
        let lookup_domain = domain.clone();
        match self.dns(deadline, |resolver| async move { resolver.mail_domain(&lookup_domain).await }).await {
            Ok(()) => Outcome::Dunno,
            // A name that does not exist will not come to exist by retrying.
            Err(ResolveError::NotFound { .. }) => Outcome::Reject(Reply::new(550, dsn, text("Domain not found"))),
            Err(ResolveError::NoData { .. }) => {
                let code = u16::try_from(cfg.unknown_address_reject_code()).unwrap_or(450);
                Outcome::Reject(Reply::new(code, dsn, text("Domain not found")))
            }
            Err(ResolveError::NullMx { .. }) => Outcome::Reject(Reply::new(
                556,
                if class == SENDER { "5.7.27" } else { "5.1.10" },
                text(&format!("Domain {domain} does not accept mail (nullMX)")),
            )),
            Err(ResolveError::Temporary { detail, .. }) => self.dns_failure(
                &format!("reject_unknown_{}_domain {domain}", if class == SENDER { "sender" } else { "recipient" }),
                &detail,
                Reply::new(450, dsn, text("Domain not found")),
            ),
        }
    }

    /// reject_unknown_client_hostname (`reverse` false: the name must resolve back to the
    /// address) and reject_unknown_reverse_client_hostname (`reverse`: any PTR name will do).
    async fn unknown_client(&mut self, reverse: bool) -> Outcome {
        let cfg = self.r.cfg.clone();
        let client = self.q.client;
        if client.name != "unknown" {
            return Outcome::Dunno;
        }
        let addr = client.addr;
        let what = if reverse { "cannot find your reverse hostname" } else { "cannot find your hostname" };
        let ip = search::ip_key(&addr.to_string());
        let text = format!("{CLIENT} rejected: {what}, [{ip}]");
        let permanent = u16::try_from(cfg.unknown_client_reject_code()).unwrap_or(450);
        let deadline = Instant::now() + cfg.smtpd_dns_timeout();
        let found = self
            .dns(deadline, |resolver| async move {
                let names = resolver.reverse_names(addr).await?;
                if reverse {
                    return Ok(true);
                }
                // Forward-confirmed: one of the names has the client's address.
                let mut last = None;
                for name in names.iter().take(5) {
                    match resolver.host_addresses(name).await {
                        Ok(addrs) if addrs.iter().any(|a| search::ip_key(&a.to_string()) == ip_key_of(addr)) => {
                            return Ok(true);
                        }
                        Ok(_) => {}
                        Err(e) => last = Some(e),
                    }
                }
                match last {
                    Some(e) if e.is_temporary() => Err(e),
                    _ => Ok(false),
                }
            })
            .await;
        match found {
            Ok(true) => Outcome::Dunno,
            Ok(false)
            | Err(ResolveError::NotFound { .. } | ResolveError::NoData { .. } | ResolveError::NullMx { .. }) => {
                Outcome::Reject(Reply::new(permanent, "4.7.1", text))
            }
            Err(ResolveError::Temporary { detail, .. }) => {
                if cfg.smtpd_dns_failure_action() == "skip" {
                    mail_warning!(SERVICE, "client name lookup for [{ip}]: {detail}; check skipped");
                    Outcome::Dunno
                } else {
                    // Postfix answers 450 when the name lookup failed temporarily.
                    Outcome::Reject(Reply::new(450, "4.7.1", text))
                }
            }
        }
    }

    /// A DNSBL lookup of `query.list`: listed (within the filter) rejects with the list's TXT
    /// record as the reason.
    async fn dnsbl(&mut self, list: &Dnsbl, query: &str, class: &'static str, what: &str) -> Outcome {
        let cfg = self.r.cfg.clone();
        let name = format!("{query}.{}", list.domain);
        let deadline = Instant::now() + cfg.smtpd_dns_timeout();
        let lookup_name = name.clone();
        let answers = self.dns(deadline, |resolver| async move { resolver.ipv4_addresses(&lookup_name).await }).await;
        let listed = match answers {
            Ok(addrs) => addrs.iter().any(|a| list.accepts(*a)),
            Err(ResolveError::Temporary { detail, .. }) => {
                return self.dns_failure(
                    &format!("DNSBL lookup {name}"),
                    &detail,
                    Reply::new(
                        450,
                        "4.7.1",
                        format!("Service unavailable; {class} [{what}] not checked: {} did not answer", list.domain),
                    ),
                );
            }
            Err(_) => false,
        };
        if !listed {
            return Outcome::Dunno;
        }
        // The reason is a nicety: a slow TXT answer does not hold the reject up.
        let lookup_name = name.clone();
        let reason = self
            .dns(deadline, |resolver| async move { resolver.txt_records(&lookup_name).await })
            .await
            .ok()
            .and_then(|txt| txt.into_iter().next());
        let mut text = format!("Service unavailable; {class} [{what}] blocked using {}", list.domain);
        if let Some(reason) = reason {
            text.push_str(&format!("; {reason}"));
        }
        Outcome::Reject(Reply::new(u16::try_from(cfg.maps_rbl_reject_code()).unwrap_or(554), "5.7.1", text))
    }

    // ---- recipient tables ----

    /// Postfix's check_rcpt_maps: a local address must be in local_recipient_maps, an address
    /// in a virtual alias domain must be a virtual alias.
    async fn unlisted(&mut self, address: &str, class: &'static str) -> Outcome {
        let cfg = self.r.cfg.clone();
        let (dsn, what) = if class == SENDER { ("5.1.0", SENDER) } else { ("5.1.1", RECIPIENT) };
        let resolved = match self.r.domains.resolve(address) {
            Ok(resolved) => resolved,
            Err(e) => return self.lookup_failure(address, &e),
        };
        let delimiter = cfg.recipient_delimiter().to_string();
        let local = &self.r.domains.local;
        let find = |specs: &[String], key: &str| -> Result<bool, MapError> {
            if specs.is_empty() {
                return Ok(false);
            }
            let maps = MapList::open(specs)?;
            Ok(search::address(maps.maps(), key, &delimiter, local)?.is_some())
        };
        let rewritten = (|| -> Result<bool, MapError> {
            Ok(find(cfg.recipient_canonical_maps(), &resolved.address)?
                || find(cfg.canonical_maps(), &resolved.address)?
                || find(cfg.virtual_alias_maps(), &resolved.address)?)
        })();
        match rewritten {
            Ok(true) => return Outcome::Dunno,
            Ok(false) => {}
            Err(e) => return self.lookup_failure(address, &e),
        }
        match resolved.class {
            Class::Local => {
                let user = search::split_at_domain(&resolved.address).0.to_ascii_lowercase();
                let exempt = ["postmaster", "mailer-daemon", "double-bounce"].contains(&user.as_str());
                if cfg.local_recipient_maps().is_empty() || exempt {
                    return Outcome::Dunno;
                }
                match find(cfg.local_recipient_maps(), &resolved.address) {
                    Ok(true) => Outcome::Dunno,
                    Ok(false) => Outcome::Reject(Reply::new(
                        u16::try_from(cfg.unknown_local_recipient_reject_code()).unwrap_or(550),
                        dsn,
                        format!("<{address}>: {what} rejected: User unknown in local recipient table"),
                    )),
                    Err(e) => self.lookup_failure(address, &e),
                }
            }
            Class::Alias => Outcome::Reject(Reply::new(
                u16::try_from(cfg.unknown_virtual_alias_reject_code()).unwrap_or(550),
                dsn,
                format!("<{address}>: {what} rejected: User unknown in virtual alias table"),
            )),
            Class::Relay | Class::Other => Outcome::Dunno,
        }
    }

    /// reject_*_sender_login_mismatch against smtpd_sender_login_maps.
    fn login_mismatch(&self, check: LoginCheck, sender: &str) -> Outcome {
        let cfg = &self.r.cfg;
        let owners = (|| -> Result<Option<String>, MapError> {
            let maps = MapList::open(cfg.smtpd_sender_login_maps())?;
            Ok(search::address(
                maps.maps(),
                &search::internal_form(sender),
                cfg.recipient_delimiter(),
                &self.r.domains.local,
            )?
            .map(|found| found.value))
        })();
        let owners = match owners {
            Ok(owners) => owners,
            Err(e) => return self.lookup_failure(sender, &e),
        };
        let owned_by = |user: &str| {
            owners.as_deref().is_some_and(|o| {
                o.split(|c: char| c == ',' || c.is_whitespace()).any(|owner| owner.eq_ignore_ascii_case(user))
            })
        };
        let reject =
            |what: String| Outcome::Reject(Reply::new(553, "5.7.1", format!("<{sender}>: {SENDER} rejected: {what}")));
        match self.q.client.sasl_username.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => {
                let applies = match check {
                    LoginCheck::Both | LoginCheck::Authenticated => true,
                    LoginCheck::Known => owners.is_some(),
                    LoginCheck::Unauthenticated => false,
                };
                if applies && !owned_by(user) { reject(format!("not owned by user {user}")) } else { Outcome::Dunno }
            }
            None => {
                let applies = matches!(check, LoginCheck::Both | LoginCheck::Unauthenticated | LoginCheck::Known);
                if applies && owners.is_some() { reject("not logged in".to_string()) } else { Outcome::Dunno }
            }
        }
    }
}

fn ip_key_of(addr: IpAddr) -> String {
    search::ip_key(&addr.to_string())
}

/// The domain of an address (after the last @), if any.
fn address_domain(address: &str) -> Option<String> {
    let address = search::internal_form(resolve::strip_source_route(address));
    address.rsplit_once('@').map(|(_, d)| d.to_string())
}

/// reject_non_fqdn_sender / reject_non_fqdn_recipient.
fn non_fqdn_address(address: &str, class: &'static str, code: u16) -> Outcome {
    let domain = address_domain(address).unwrap_or_default();
    if domain.starts_with('[') && domain.ends_with(']') {
        return Outcome::Dunno;
    }
    let domain = strip_dot(&domain);
    if !domain.is_empty() && valid_hostname(domain) && domain.contains('.') {
        return Outcome::Dunno;
    }
    Outcome::Reject(Reply::new(code, "4.5.2", format!("<{address}>: {class} rejected: need fully-qualified address")))
}

/// A name ending in one dot loses it (`host.example.` → `host.example`).
fn strip_dot(name: &str) -> &str {
    match name.strip_suffix('.') {
        Some(rest) if !rest.ends_with('.') && !rest.is_empty() => rest,
        _ => name,
    }
}

/// Postfix's valid_hostname: labels of letters, digits, `-` and `_`, not starting or ending
/// with `-`, at most 63 bytes each and 255 in all, and not all-numeric.
fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut non_numeric = false;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
        if !label.bytes().all(|b| b.is_ascii_digit()) {
            non_numeric = true;
        }
    }
    non_numeric
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn valid_address_literal(text: &str) -> bool {
    search::domain_literal(text).is_some_and(|addr| {
        let inner = &text[1..text.len() - 1];
        // An IPv6 address needs its tag, an IPv4 address must not have one.
        addr.is_ipv4() != inner.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("ipv6:"))
    })
}

/// A status code given in an access table's text (`5.7.1 go away`), or the default.
fn split_dsn<'t>(default: &str, text: &'t str) -> (String, &'t str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let is_status = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if is_status { (first.to_string(), rest.trim_start()) } else { (default.to_string(), text) }
}

/// Postfix's smtpd_dsn_fix: an address status (X.1.Y) about the sender or recipient is
/// worded for that role; for a client, HELO or command it becomes X.7.1.
fn dsn_fix(dsn: &str, class: &str) -> String {
    let parts: Vec<&str> = dsn.split('.').collect();
    if parts.len() != 3 || parts[1] != "1" {
        return dsn.to_string();
    }
    let detail = match class {
        SENDER => match parts[2] {
            "2" | "8" => "1.8",
            "3" | "7" => "1.7",
            _ => "1.0",
        },
        RECIPIENT => match parts[2] {
            "7" => "1.3",
            "8" => "1.2",
            other => return format!("{}.1.{other}", parts[0]),
        },
        _ => "7.1",
    };
    format!("{}.{detail}", parts[0])
}
