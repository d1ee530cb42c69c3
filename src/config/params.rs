//! The parameter table: the one place a parameter is defined. Each entry gives
//!
//! ```text
//! /// One-line description (also the accessor's doc).
//! name: Kind = "default" [, derived = function] [, check = function];
//! ```
//!
//! and the macro makes of it a [`ParamSpec`] in [`PARAMETERS`], a [`Param`] index, and a typed
//! accessor `Config::name()`. Kinds: `Str` → `&str`, `List` → `&[String]`, `Bool` → `bool`,
//! `Time('unit')` → `Duration` (the unit assumed for a bare number), `Size` → `u64`,
//! `Int` → `i64`.
//!
//! Defaults are Postfix's (postconf(5), compatibility level 3.6), except the names and paths
//! that are tidemail's own. A `derived` default is computed at load time (from the system, or
//! from other parameters) and the default text is then only its description for `-d`-style
//! listings of the table.

use std::time::Duration;

use super::Config;
use super::checks::{self, Check, at_least};
use super::derived::{self, Derive};
use super::value::{Kind, Value};

/// One parameter's definition.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The default value as Postfix writes it (`$name` unexpanded), or, for a derived
    /// default, a description of it.
    pub default: &'static str,
    /// Computes the default instead of `default` (the system's hostname, interfaces...).
    pub(crate) derive: Option<Derive>,
    pub doc: &'static str,
    pub(crate) check: Option<Check>,
}

macro_rules! parameters {
    ( $(
        #[doc = $doc:literal]
        $name:ident : $kind:ident $( ( $unit:literal ) )? = $default:literal
            $( , derived = $derive:path )?
            $( , check = $check:expr )? ;
    )* ) => {
        /// Every parameter, named as in the table; `Param::x as usize` indexes [`PARAMETERS`].
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Param { $( $name, )* }

        /// Every parameter's definition, in table order.
        pub static PARAMETERS: &[ParamSpec] = &[ $(
            ParamSpec {
                name: stringify!($name),
                kind: parameters!(@kind $kind $( $unit )?),
                default: $default,
                derive: parameters!(@option $( $derive )?),
                doc: $doc.trim_ascii(),
                check: parameters!(@option $( $check )?),
            },
        )* ];

        impl Config { $(
            #[doc = $doc]
            // Postfix spells a few names in mixed case (smtp_tls_CAfile); the accessor keeps them.
            #[allow(non_snake_case)]
            pub fn $name(&self) -> parameters!(@type $kind) {
                parameters!(@get self, Param::$name, $kind)
            }
        )* }
    };

    (@kind Time $unit:literal) => { Kind::Time($unit) };
    (@kind $kind:ident) => { Kind::$kind };

    (@option) => { None };
    (@option $item:expr) => { Some($item) };

    (@type Str) => { &str };
    (@type List) => { &[String] };
    (@type Bool) => { bool };
    (@type Time) => { Duration };
    (@type Size) => { u64 };
    (@type Int) => { i64 };

    (@get $config:ident, $param:expr, Str) => {
        match $config.value($param) { Value::Str(text) => text, other => unreachable!("{other:?}") }
    };
    (@get $config:ident, $param:expr, List) => {
        match $config.value($param) { Value::List(items) => items, other => unreachable!("{other:?}") }
    };
    (@get $config:ident, $param:expr, Bool) => {
        match $config.value($param) { Value::Bool(yes) => *yes, other => unreachable!("{other:?}") }
    };
    (@get $config:ident, $param:expr, Time) => {
        match $config.value($param) { Value::Time(time) => *time, other => unreachable!("{other:?}") }
    };
    (@get $config:ident, $param:expr, Size) => {
        match $config.value($param) { Value::Size(bytes) => *bytes, other => unreachable!("{other:?}") }
    };
    (@get $config:ident, $param:expr, Int) => {
        match $config.value($param) { Value::Int(number) => *number, other => unreachable!("{other:?}") }
    };
}

parameters! {
    // ---- Identity ----
    /// This machine's fully qualified name: gethostname(), qualified from /etc/hosts, else .$mydomain.
    myhostname: Str = "(the system's fully qualified name)",
        derived = derived::myhostname, check = checks::hostname;
    /// The local internet domain: $myhostname minus its first label.
    mydomain: Str = "(derived from $myhostname)",
        derived = derived::mydomain, check = checks::hostname;
    /// The domain that locally-posted mail appears to come from.
    myorigin: Str = "$myhostname", check = checks::non_empty;
    /// The domains delivered locally (final destination).
    mydestination: List = "$myhostname, localhost.$mydomain, localhost";
    /// The product name in the SMTP greeting and in bounces.
    mail_name: Str = "tidemail", check = checks::non_empty;
    /// The SMTP server's greeting after the 220 code.
    smtpd_banner: Str = "$myhostname ESMTP $mail_name", check = checks::non_empty;
    /// The hostname the SMTP client sends in HELO/EHLO.
    smtp_helo_name: Str = "$myhostname", check = checks::non_empty;

    // ---- Network ----
    /// Trusted client networks (default computed from mynetworks_style).
    mynetworks: List = "(computed from mynetworks_style)", derived = derived::mynetworks;
    /// How to compute the default mynetworks: host, subnet or class.
    mynetworks_style: Str = "host", check = checks::mynetworks_style;
    /// The local addresses the SMTP server listens on: all, loopback-only, or addresses.
    inet_interfaces: List = "all", check = checks::non_empty;
    /// The IP versions to use: all, ipv4, ipv6.
    inet_protocols: List = "all", check = checks::inet_protocols;
    /// Send non-local mail here instead of by MX lookup, e.g. [smtp.example.net]:587.
    relayhost: Str = "";
    /// Never look up hosts in DNS (off-line or hosts-file-only machines).
    disable_dns_lookups: Bool = "no";

    // ---- Routing ----
    /// The transport for remote destinations.
    default_transport: Str = "smtp", check = checks::non_empty;
    /// The transport for the relay_domains.
    relay_transport: Str = "relay", check = checks::non_empty;
    /// The transport for $mydestination.
    local_transport: Str = "local:$myhostname", check = checks::non_empty;
    /// Domains this machine relays mail to (besides its own).
    relay_domains: List = "";
    /// Transports whose mail is queued but not delivered until flushed (dial-up links).
    defer_transports: List = "";
    /// Domains whose deferred mail can be flushed on request (ETRN, sendmail -qR).
    fast_flush_domains: List = "$relay_domains";
    /// Lookup tables from recipient domain or address to transport:nexthop.
    transport_maps: List = "";
    /// Deliver nothing permanently: turn hard bounces into deferrals (for testing).
    soft_bounce: Bool = "no";

    // ---- Address rewriting ----
    /// Strip subdomains of these domains from addresses (e.g. host.example.com -> example.com).
    masquerade_domains: List = "";
    /// Local parts never masqueraded (e.g. root).
    masquerade_exceptions: List = "";
    /// Which addresses masquerading applies to.
    masquerade_classes: List = "envelope_sender, header_sender, header_recipient",
        check = checks::masquerade_classes;
    /// Append @$myorigin to addresses without a domain.
    append_at_myorigin: Bool = "yes";
    /// Append .$mydomain to user@host addresses (off since Postfix 3.0).
    append_dot_mydomain: Bool = "no";
    /// Address mapping tables for sender and recipient addresses.
    canonical_maps: List = "";
    /// Address mapping tables for sender addresses only.
    sender_canonical_maps: List = "";
    /// Address mapping tables for recipient addresses only.
    recipient_canonical_maps: List = "";
    /// Which addresses canonical_maps applies to.
    canonical_classes: List = "envelope_sender, envelope_recipient, header_sender, header_recipient";
    /// Which addresses sender_canonical_maps applies to.
    sender_canonical_classes: List = "envelope_sender, header_sender";
    /// Which addresses recipient_canonical_maps applies to.
    recipient_canonical_classes: List = "envelope_recipient, header_recipient";
    /// Rewrite user%domain to user@domain.
    allow_percent_hack: Bool = "yes";
    /// Rewrite site!user to user@site.
    swap_bangpath: Bool = "yes";
    /// SMTP clients whose header addresses are rewritten like local mail's.
    local_header_rewrite_clients: List = "permit_inet_interfaces";
    /// The domain appended to incomplete header addresses from other SMTP clients.
    remote_header_rewrite_domain: Str = "";
    /// Where an address extension not matched by a table is carried over to the result.
    propagate_unmatched_extensions: List = "canonical, virtual";
    /// The old name of virtual_alias_maps, from the classic tutorials.
    virtual_maps: List = "";
    /// Tables that map addresses to other addresses (virtual aliases).
    virtual_alias_maps: List = "$virtual_maps";
    /// Domains whose every address must be found in virtual_alias_maps.
    virtual_alias_domains: List = "$virtual_alias_maps";
    /// The most addresses one virtual alias expansion may produce.
    virtual_alias_expansion_limit: Int = "1000";
    /// How deep virtual aliases may nest.
    virtual_alias_recursion_limit: Int = "1000";
    /// Tables of users who have moved (bounced with their new address).
    relocated_maps: List = "";
    /// Pattern tables matched against each message header line.
    header_checks: List = "";
    /// Pattern tables matched against each body line.
    body_checks: List = "";
    /// How much of each body part body_checks looks at (bytes).
    body_checks_size_limit: Size = "51200";
    /// Parameters whose domain lists match subdomains of a listed domain.
    parent_domain_matches_subdomains: List = "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, qmqpd_authorized_clients, relay_domains, smtpd_access_maps";
    /// The separator between a user name and an address extension (e.g. +).
    recipient_delimiter: Str = "";

    // ---- Local delivery ----
    /// Alias tables used by local delivery.
    alias_maps: List = "hash:/etc/aliases";
    /// Alias tables built by newaliases.
    alias_database: List = "hash:/etc/aliases";
    /// Deliver to mailboxes through this command (e.g. procmail) instead of mbox files.
    mailbox_command: Str = "";
    /// Mailbox file (or Maildir/ if it ends in /) relative to the user's home directory.
    home_mailbox: Str = "";
    /// The directory of the mbox files, when home_mailbox is empty.
    mail_spool_directory: Str = "/var/mail", check = checks::absolute_path;
    /// The largest mailbox or maildir file local delivery writes (bytes; 0 = no limit).
    mailbox_size_limit: Size = "51200000";
    /// The user that commands and files named in aliases and .forward run as by default.
    default_privs: Str = "nobody", check = checks::unprivileged_user;
    /// Where local mail may go to a |command: alias, forward, include.
    allow_mail_to_commands: List = "alias, forward";
    /// Where local mail may go to a /file: alias, forward, include.
    allow_mail_to_files: List = "alias, forward";
    /// The .forward files looked for, in order (the first that exists is used).
    forward_path: List = "$home/.forward${recipient_delimiter}${extension}, $home/.forward";
    /// Tables of the local users that exist: an unknown local user bounces ("" = any user is accepted).
    local_recipient_maps: List = "proxy:unix:passwd.byname $alias_maps";
    /// Where all mail for unknown local users goes instead of bouncing ("" = bounce).
    luser_relay: Str = "";
    /// The longest a mailbox_command or |command may run.
    command_time_limit: Time('s') = "1000s", check = at_least::<1>;
    /// How mbox files are locked: fcntl, dotlock, flock (Debian: fcntl and dotlock).
    mailbox_delivery_lock: List = "fcntl, dotlock", check = checks::mailbox_delivery_lock;
    /// How many times to try to lock a mailbox before deferring.
    deliver_lock_attempts: Int = "20", check = at_least::<1>;
    /// The wait between attempts to lock a mailbox.
    deliver_lock_delay: Time('s') = "1s", check = at_least::<1>;
    /// A dotlock older than this is stale and removed.
    stale_lock_time: Time('s') = "500s", check = at_least::<1>;
    /// Mail to owner-NAME's list goes to owner-NAME's address as envelope sender.
    owner_request_special: Bool = "yes";
    /// Use the owner-NAME alias itself, not its expansion, as the envelope sender.
    expand_owner_alias: Bool = "no";
    /// Prepend Delivered-To: to mail delivered locally (and detect loops with it).
    prepend_delivered_header: List = "command, file, forward";

    // ---- Files and ownership ----
    /// The queue's top directory.
    queue_directory: Str = "/var/spool/tidemail", check = checks::absolute_path;
    /// The directory of the configuration file.
    config_directory: Str = "(the directory of the configuration file)",
        derived = derived::config_directory, check = checks::absolute_path;
    /// Where writable data other than the queue is kept (caches, state).
    data_directory: Str = "/var/lib/tidemail", check = checks::absolute_path;
    /// The unprivileged account that owns the queue and runs the daemons.
    mail_owner: Str = "tidemail", check = checks::non_empty;

    // ---- Sizes ----
    /// The largest message accepted, in bytes, headers included (0 = no limit).
    message_size_limit: Size = "10240000";
    /// The most header text stored per message, in bytes.
    header_size_limit: Size = "102400", check = at_least::<1>;
    /// Longer lines are broken into pieces of this many bytes.
    line_length_limit: Size = "2048", check = at_least::<512>;
    /// Free space (bytes) the queue file system must keep before mail is accepted (0 = 1.5 x message_size_limit).
    queue_minfree: Size = "0";
    /// How much of the original message a bounce returns, in bytes.
    bounce_size_limit: Size = "50000", check = at_least::<1>;

    // ---- Queue timing ----
    /// Deferred mail older than this is bounced (default unit: days; 0 = try once).
    maximal_queue_lifetime: Time('d') = "5d";
    /// Undeliverable bounces older than this are discarded (default unit: days).
    bounce_queue_lifetime: Time('d') = "5d";
    /// The least time between delivery attempts for a deferred message.
    minimal_backoff_time: Time('s') = "300s", check = at_least::<1>;
    /// The most time between delivery attempts for a deferred message.
    maximal_backoff_time: Time('s') = "4000s", check = at_least::<1>;
    /// How often the queue manager scans the deferred queue.
    queue_run_delay: Time('s') = "300s", check = at_least::<1>;
    /// Warn the sender after mail is delayed this long (0 = never). tidemail counts only time in which delivery was attempted and failed, not time held offline.
    delay_warning_time: Time('h') = "0h";
    /// tidemail: the absolute cap on a message's age in the queue, held time included; older mail is bounced.
    maximal_hold_lifetime: Time('d') = "30d";
    /// tidemail: what to do with a message whose final "." was sent but whose reply never came (retry: send again and log a possible duplicate; hold: move to the hold queue for the admin).
    smtp_duplicate_suspect_action: Str = "retry", check = checks::duplicate_suspect_action;

    // ---- Queue manager ----
    /// The most messages in the active queue.
    qmgr_message_active_limit: Int = "20000", check = at_least::<1>;
    /// The number of parallel deliveries a new destination starts with.
    initial_destination_concurrency: Int = "5", check = at_least::<1>;
    /// The most parallel deliveries to one destination.
    default_destination_concurrency_limit: Int = "20", check = at_least::<0>;
    /// The most parallel deliveries to one local recipient.
    local_destination_concurrency_limit: Int = "2", check = at_least::<0>;
    /// The most recipients per delivery.
    default_destination_recipient_limit: Int = "50", check = at_least::<0>;
    /// The most recipients per local delivery.
    local_destination_recipient_limit: Int = "1", check = at_least::<0>;

    // ---- Notification ----
    /// Problem classes reported to the postmaster: bounce, 2bounce, data, delay, policy, protocol, resource, software. tidemail's default adds 2bounce (Postfix's is "resource, software", which silently discards bounces that cannot be delivered).
    notify_classes: List = "resource, software, 2bounce", check = checks::notify_classes;
    /// Who gets the "bounce" class of notice.
    bounce_notice_recipient: Str = "postmaster", check = checks::non_empty;
    /// Who gets the "delay" class of notice.
    delay_notice_recipient: Str = "postmaster", check = checks::non_empty;
    /// Who gets the other classes of notice.
    error_notice_recipient: Str = "postmaster", check = checks::non_empty;
    /// The recipient of mail addressed to the null address.
    empty_address_recipient: Str = "MAILER-DAEMON", check = checks::non_empty;

    // ---- Logging ----
    /// The program name in syslog records (mail log lines start "tidemail/...").
    syslog_name: Str = "tidemail", check = checks::non_empty;
    /// Log to this file instead of syslog ("" = syslog; /dev/stdout works under systemd).
    maillog_file: Str = "", check = checks::absolute_path_or_empty;

    // ---- SMTP server ----
    /// Restrictions applied when a client connects (evaluated at RCPT time with smtpd_delay_reject).
    smtpd_client_restrictions: List = "";
    /// Require HELO or EHLO before MAIL FROM.
    smtpd_helo_required: Bool = "no";
    /// Restrictions on the HELO/EHLO name.
    smtpd_helo_restrictions: List = "";
    /// Restrictions on the MAIL FROM address.
    smtpd_sender_restrictions: List = "";
    /// Relay control, evaluated before smtpd_recipient_restrictions at RCPT time.
    smtpd_relay_restrictions: List = "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination";
    /// Restrictions on each RCPT TO address (the classic tutorials put relay control here).
    smtpd_recipient_restrictions: List = "";
    /// Restrictions at the DATA command.
    smtpd_data_restrictions: List = "";
    /// Restrictions after the end of the message content.
    smtpd_end_of_data_restrictions: List = "";
    /// Restrictions on ETRN.
    smtpd_etrn_restrictions: List = "";
    /// Wait for RCPT TO before rejecting at the client, HELO or sender stage.
    smtpd_delay_reject: Bool = "yes";
    /// Refuse VRFY (tidemail's default is yes: VRFY only helps address harvesters).
    disable_vrfy_command: Bool = "yes";
    /// The longest wait for a client command or data.
    smtpd_timeout: Time('s') = "300s", check = at_least::<1>;
    /// The pause before each error reply once smtpd_soft_error_limit errors are reached.
    smtpd_error_sleep_time: Time('s') = "1s";
    /// Errors after which each error reply is delayed.
    smtpd_soft_error_limit: Int = "10", check = at_least::<0>;
    /// Errors after which the client is disconnected.
    smtpd_hard_error_limit: Int = "20", check = at_least::<1>;
    /// The most recipients per message.
    smtpd_recipient_limit: Int = "1000", check = at_least::<1>;
    /// The most simultaneous connections from one client (0 = no limit).
    smtpd_client_connection_count_limit: Int = "50", check = at_least::<0>;
    /// The most simultaneous SMTP connections in all.
    smtpd_process_limit: Int = "100", check = at_least::<1>;
    /// Reject a RCPT TO address that is not a known local or virtual recipient.
    smtpd_reject_unlisted_recipient: Bool = "yes";
    /// Reject a MAIL FROM address in our domains that is not a known recipient.
    smtpd_reject_unlisted_sender: Bool = "no";
    /// Look up the client's name in DNS (reverse, then forward to confirm).
    smtpd_peername_lookup: Bool = "yes";
    /// The longest any DNS-based restriction may wait before it gives up (a dead resolver, no link).
    smtpd_dns_timeout: Time('s') = "1s", check = at_least::<1>;
    /// When a DNS-based restriction times out: defer (450) or skip the check.
    smtpd_dns_failure_action: Str = "defer", check = checks::dns_failure_action;
    /// EHLO keywords not to announce.
    smtpd_discard_ehlo_keywords: List = "";
    /// The reply code for a rejected relay attempt.
    relay_domains_reject_code: Int = "554";
    /// The reply code for REJECT in an access table.
    access_map_reject_code: Int = "554";
    /// The reply code for an unknown local recipient.
    unknown_local_recipient_reject_code: Int = "550";
    /// The reply code for an unknown virtual alias recipient.
    unknown_virtual_alias_reject_code: Int = "550";
    /// The reply code for reject_unknown_client_hostname.
    unknown_client_reject_code: Int = "450";
    /// The reply code for reject_unknown_sender_domain / reject_unknown_recipient_domain.
    unknown_address_reject_code: Int = "450";
    /// The reply code for reject_unknown_helo_hostname.
    unknown_hostname_reject_code: Int = "450";
    /// The reply code for reject_invalid_helo_hostname.
    invalid_hostname_reject_code: Int = "501";
    /// The reply code for the reject_non_fqdn_* restrictions.
    non_fqdn_reject_code: Int = "504";
    /// The reply code for reject_rbl_client and reject_rhsbl_*.
    maps_rbl_reject_code: Int = "554";
    /// The reply code for the plain reject restriction.
    reject_code: Int = "554";
    /// The reply code for the plain defer restriction.
    defer_code: Int = "450";
    /// The reply code for reject_unauth_pipelining.
    unauth_pipelining_reject_code: Int = "503";
    /// The old name of the RBL domains used by reject_maps_rbl (classic tutorials).
    maps_rbl_domains: List = "";
    /// PEM certificate chain for STARTTLS.
    smtpd_tls_cert_file: Str = "", check = checks::absolute_path_or_empty;
    /// PEM private key for STARTTLS (defaults to the certificate file).
    smtpd_tls_key_file: Str = "$smtpd_tls_cert_file", check = checks::absolute_path_or_empty;
    /// TLS for clients: none, may (offer STARTTLS), encrypt (require it); "" = none.
    smtpd_tls_security_level: Str = "", check = checks::smtpd_tls_security_level;
    /// Offer AUTH only over TLS (tidemail's default is yes: no passwords in clear).
    smtpd_tls_auth_only: Bool = "yes";
    /// Offer SMTP AUTH to clients.
    smtpd_sasl_auth_enable: Bool = "no";
    /// The SASL implementation: dovecot (its auth socket) or passwd-file (tidemail's own).
    smtpd_sasl_type: Str = "dovecot", check = checks::smtpd_sasl_type;
    /// The dovecot auth socket (relative to queue_directory, as Postfix's private/auth), or the password file.
    smtpd_sasl_path: Str = "private/auth";
    /// Tables of "sender_address owner_login" for reject_sender_login_mismatch.
    smtpd_sender_login_maps: List = "";

    // ---- SMTP client ----
    /// The wait for a TCP connection to a remote SMTP server (default unit: seconds).
    smtp_connect_timeout: Time('s') = "30s", check = at_least::<1>;
    /// The wait for the server's greeting and for the reply to EHLO/HELO.
    smtp_helo_timeout: Time('s') = "300s", check = at_least::<1>;
    /// The wait for the reply to MAIL FROM.
    smtp_mail_timeout: Time('s') = "300s", check = at_least::<1>;
    /// The wait for the reply to each RCPT TO.
    smtp_rcpt_timeout: Time('s') = "300s", check = at_least::<1>;
    /// The wait for the reply to DATA.
    smtp_data_init_timeout: Time('s') = "120s", check = at_least::<1>;
    /// The wait for each write of message content to complete.
    smtp_data_xfer_timeout: Time('s') = "180s", check = at_least::<1>;
    /// The wait for the reply to the final "." of the message content.
    smtp_data_done_timeout: Time('s') = "600s", check = at_least::<1>;
    /// The wait for the reply to RSET (between messages on one connection).
    smtp_rset_timeout: Time('s') = "20s", check = at_least::<1>;
    /// The wait for the reply to QUIT.
    smtp_quit_timeout: Time('s') = "300s", check = at_least::<1>;
    /// The wait for the reply to STARTTLS and for the TLS handshake.
    smtp_starttls_timeout: Time('s') = "300s", check = at_least::<1>;
    /// TLS toward servers: none, may (opportunistic), encrypt (mandatory, unverified), verify or secure (mandatory, certificate checked); "" = none.
    smtp_tls_security_level: Str = "", check = checks::smtp_tls_security_level;
    /// PEM file of CA certificates that verify servers ("" = the system's roots).
    smtp_tls_CAfile: Str = "", check = checks::absolute_path_or_empty;
    /// Directory of PEM CA certificates that verify servers.
    smtp_tls_CApath: Str = "", check = checks::absolute_path_or_empty;
    /// Authenticate to servers with SASL (AUTH PLAIN or LOGIN).
    smtp_sasl_auth_enable: Bool = "no";
    /// Tables of "nexthop username:password", looked up by the relayhost as written, then by host name; refused when readable by others.
    smtp_sasl_password_maps: List = "";
    /// Mechanism restrictions without TLS: noplaintext (never send a password in clear), noanonymous.
    smtp_sasl_security_options: List = "noplaintext, noanonymous", check = checks::sasl_security_options;
    /// Mechanism restrictions over TLS.
    smtp_sasl_tls_security_options: List = "$smtp_sasl_security_options", check = checks::sasl_security_options;
    /// Mechanisms offered by the server that the client may use ("" = any it knows: PLAIN, LOGIN).
    smtp_sasl_mechanism_filter: List = "";
}

impl Param {
    /// The definition of this parameter.
    pub fn spec(self) -> &'static ParamSpec {
        &PARAMETERS[self as usize]
    }
}

/// Finds a parameter's index by name.
pub fn index_of(name: &str) -> Option<usize> {
    PARAMETERS.iter().position(|spec| spec.name == name)
}

/// The parameter whose name is closest to a misspelt one, if any is close enough.
pub fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    PARAMETERS
        .iter()
        .map(|spec| (strsim::jaro_winkler(&name, spec.name), spec.name))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}
