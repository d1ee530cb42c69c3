//! Whole-configuration tests: the table, loading, expansion across parameters, typed values,
//! derived defaults and the error lines users see.

use std::path::Path;
use std::time::Duration;

use super::derived::qualified_hostname;
use super::*;

const FILE: &str = "/etc/tidemail/tidemail.toml";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new(FILE))
}

fn good(text: &str) -> Config {
    load(text).unwrap_or_else(|error| panic!("{text}\n=> {error}"))
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(error) => error.to_string(),
    }
}

const DAY: u64 = 86_400;

// ---- The table ----

/// The parameters the configuration issue requires.
const REQUIRED: &[&str] = &[
    "myhostname",
    "mydomain",
    "myorigin",
    "mydestination",
    "mynetworks",
    "mynetworks_style",
    "inet_interfaces",
    "inet_protocols",
    "relayhost",
    "default_transport",
    "relay_transport",
    "relay_domains",
    "defer_transports",
    "disable_dns_lookups",
    "masquerade_domains",
    "masquerade_exceptions",
    "masquerade_classes",
    "alias_maps",
    "alias_database",
    "mailbox_command",
    "home_mailbox",
    "mail_spool_directory",
    "recipient_delimiter",
    "queue_directory",
    "config_directory",
    "mail_owner",
    "default_privs",
    "message_size_limit",
    "header_size_limit",
    "line_length_limit",
    "queue_minfree",
    "bounce_size_limit",
    "maximal_queue_lifetime",
    "bounce_queue_lifetime",
    "minimal_backoff_time",
    "maximal_backoff_time",
    "queue_run_delay",
    "delay_warning_time",
    "notify_classes",
    "qmgr_message_active_limit",
    "initial_destination_concurrency",
    "default_destination_concurrency_limit",
    "local_destination_concurrency_limit",
    "default_destination_recipient_limit",
    "smtpd_banner",
    "mail_name",
    "syslog_name",
    "maillog_file",
];

#[test]
fn defaults_include_every_required_parameter() {
    let defaults = Config::defaults();
    let names: Vec<&str> = defaults.entries().map(|e| e.name).collect();
    for name in REQUIRED {
        assert!(names.contains(name), "{name} missing");
    }
    assert!(defaults.entries().all(|e| !e.explicit));
    assert_eq!(defaults.file(), None);
}

#[test]
fn table_is_well_formed() {
    let mut names: Vec<&str> = PARAMETERS.iter().map(|p| p.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), PARAMETERS.len(), "duplicate parameter names");
    for spec in PARAMETERS {
        assert!(!spec.doc.is_empty(), "{} has no doc", spec.name);
        assert!(
            spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{} is not a $name-able name",
            spec.name
        );
        if let Kind::Time(unit) = spec.kind {
            assert!(value::unit_seconds(unit).is_some(), "{}: unit {unit}", spec.name);
        }
    }
}

#[test]
fn entries_come_in_name_order() {
    let config = Config::defaults();
    let names: Vec<&str> = config.entries().map(|e| e.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), PARAMETERS.len());
}

#[test]
fn postfix_defaults_with_tidemail_names() {
    let config = Config::defaults();
    assert_eq!(config.mail_name(), "tidemail");
    assert_eq!(config.syslog_name(), "tidemail");
    assert_eq!(config.mail_owner(), "tidemail");
    assert_eq!(config.queue_directory(), "/var/spool/tidemail");
    assert_eq!(config.config_directory(), "/etc/tidemail");
    assert_eq!(config.mail_spool_directory(), "/var/mail");
    assert_eq!(config.alias_maps(), ["hash:/etc/aliases"]);
    assert_eq!(config.alias_database(), ["hash:/etc/aliases"]);
    assert_eq!(config.maillog_file(), "");
    assert_eq!(config.relayhost(), "");
    assert_eq!(config.default_privs(), "nobody");
    assert_eq!(config.default_transport(), "smtp");
    assert_eq!(config.relay_transport(), "relay");
    assert_eq!(config.mynetworks_style(), "host");
    assert_eq!(config.inet_interfaces(), ["all"]);
    assert_eq!(config.inet_protocols(), ["all"]);
    assert!(config.relay_domains().is_empty());
    assert!(!config.disable_dns_lookups());
    assert_eq!(config.message_size_limit(), 10_240_000);
    assert_eq!(config.header_size_limit(), 102_400);
    assert_eq!(config.line_length_limit(), 2048);
    assert_eq!(config.queue_minfree(), 0);
    assert_eq!(config.bounce_size_limit(), 50_000);
    assert_eq!(config.maximal_queue_lifetime(), Duration::from_secs(5 * DAY));
    assert_eq!(config.bounce_queue_lifetime(), Duration::from_secs(5 * DAY));
    assert_eq!(config.minimal_backoff_time(), Duration::from_secs(300));
    assert_eq!(config.maximal_backoff_time(), Duration::from_secs(4000));
    assert_eq!(config.queue_run_delay(), Duration::from_secs(300));
    assert_eq!(config.delay_warning_time(), Duration::ZERO);
    // Postfix's default plus 2bounce: undeliverable bounces reach the postmaster.
    assert_eq!(config.notify_classes(), ["resource", "software", "2bounce"]);
    assert_eq!(config.masquerade_classes(), ["envelope_sender", "header_sender", "header_recipient"]);
    assert_eq!(config.qmgr_message_active_limit(), 20_000);
    assert_eq!(config.initial_destination_concurrency(), 5);
    assert_eq!(config.default_destination_concurrency_limit(), 20);
    assert_eq!(config.local_destination_concurrency_limit(), 2);
    assert_eq!(config.default_destination_recipient_limit(), 50);
}

#[test]
fn derived_defaults_hang_together() {
    let config = Config::defaults();
    let host = config.myhostname().to_string();
    assert!(host.contains('.'), "{host}");
    assert_eq!(config.mydomain(), hostname::domain_of(&host));
    assert_eq!(config.myorigin(), host);
    assert_eq!(
        config.mydestination(),
        [host.clone(), format!("localhost.{}", config.mydomain()), "localhost".to_string()]
    );
    assert_eq!(config.smtpd_banner(), format!("{host} ESMTP tidemail"));
    assert_eq!(config.local_transport(), format!("local:{host}"));
    assert_eq!(config.mynetworks()[0], "127.0.0.0/8");
    // Shown unexpanded, the Postfix way.
    let banner = config.entry("smtpd_banner").unwrap();
    assert_eq!(banner.raw, "$myhostname ESMTP $mail_name");
    assert_eq!(banner.default, "$myhostname ESMTP $mail_name");
}

#[test]
fn short_system_names_are_qualified() {
    assert_eq!(qualified_hostname("laptop.example.org", false), "laptop.example.org");
    assert_eq!(qualified_hostname("laptop", false), "laptop.localdomain");
    assert_eq!(qualified_hostname("laptop", true), "laptop.$mydomain");
}

#[test]
fn mydomain_follows_the_configured_hostname() {
    let config = good(r#"myhostname = "mail.example.com""#);
    assert_eq!(config.mydomain(), "example.com");
    assert_eq!(config.mydestination(), ["mail.example.com", "localhost.example.com", "localhost"]);
    // One dot only: like Postfix, the domain falls back to "localdomain".
    assert_eq!(good(r#"myhostname = "example.com""#).mydomain(), "localdomain");
    // Set explicitly, it wins.
    let config = good("myhostname = \"box.lan\"\nmydomain = \"example.org\"");
    assert_eq!(config.mydomain(), "example.org");
}

#[test]
fn config_directory_is_where_the_file_is() {
    let config = Config::from_toml_str("", Path::new("/srv/mail/etc/tidemail.toml")).unwrap();
    assert_eq!(config.config_directory(), "/srv/mail/etc");
    assert_eq!(config.file(), Some(Path::new("/srv/mail/etc/tidemail.toml")));
    let config = good(r#"config_directory = "/opt/tm""#);
    assert_eq!(config.config_directory(), "/opt/tm");
}

#[test]
fn mynetworks_follows_style_and_protocols() {
    let config = good(r#"inet_protocols = "ipv4""#);
    assert_eq!(config.mynetworks()[0], "127.0.0.0/8");
    assert!(!config.mynetworks().iter().any(|n| n.starts_with('[')));
    let config = good(r#"inet_protocols = "ipv6""#);
    assert_eq!(config.mynetworks()[0], "[::1]/128");
    let config = good(r#"mynetworks_style = "subnet""#);
    assert_eq!(config.mynetworks()[0], "127.0.0.0/8");
    let config = good(r#"mynetworks = ["10.0.0.0/8", "[2001:db8::]/32"]"#);
    assert_eq!(config.mynetworks(), ["10.0.0.0/8", "[2001:db8::]/32"]);
    assert!(error(r#"mynetworks_style = "hosts""#).contains("(expected one of: host, subnet, class)"));
}

// ---- Expansion across parameters ----

#[test]
fn expansion_is_order_independent() {
    let config = good("myorigin = \"$mydomain\"\nmydomain = \"example.com\"\n");
    assert_eq!(config.myorigin(), "example.com");
    let config = good("mydomain = \"example.com\"\nmyorigin = \"$mydomain\"\n");
    assert_eq!(config.myorigin(), "example.com");
}

#[test]
fn expansion_forms() {
    let config = good(
        r#"
        mydomain = "example.com"
        relayhost = ""
        myorigin = "${mydomain}"
        smtpd_banner = "$(myhostname) ESMTP ${relayhost?relayed}${relayhost:direct} $$5"
        bounce_notice_recipient = "${mydomain?{/usr/bin/procmail -d $mydomain}:{none}}"
        home_mailbox = "${relayhost?{Maildir/}:{Mail/$mail_name/}}"
        "#,
    );
    assert_eq!(config.myorigin(), "example.com");
    assert_eq!(config.smtpd_banner(), format!("{} ESMTP direct $5", config.myhostname()));
    assert_eq!(config.bounce_notice_recipient(), "/usr/bin/procmail -d example.com");
    assert_eq!(config.home_mailbox(), "Mail/tidemail/");
}

#[test]
fn dollar_dollar_stays_literal_through_references() {
    let config = good("bounce_notice_recipient = \"cost $$5\"\nhome_mailbox = \"$bounce_notice_recipient\"");
    assert_eq!(config.bounce_notice_recipient(), "cost $5");
    // The referenced value is already expanded: "$5" is not looked up again.
    assert_eq!(config.home_mailbox(), "cost $5");
}

#[test]
fn lists_expand_then_split() {
    let config = good(
        r#"
        mydomain = "example.com"
        relay_domains = "$mydestination, example.net other.example"
        mydestination = ["$mydomain", "mail.$mydomain"]
        "#,
    );
    assert_eq!(config.mydestination(), ["example.com", "mail.example.com"]);
    assert_eq!(config.relay_domains(), ["example.com", "mail.example.com", "example.net", "other.example"]);
    let entry = config.entry("mydestination").unwrap();
    assert_eq!(entry.raw, "$mydomain, mail.$mydomain");
    assert_eq!(entry.value, "example.com, mail.example.com");
    assert!(entry.explicit);
}

#[test]
fn loops_name_the_parameter() {
    assert_eq!(
        error("myorigin = \"$myorigin\""),
        format!("{FILE}, line 1: myorigin refers to itself: $myorigin -> $myorigin")
    );
    assert_eq!(
        error("relayhost = \"$bounce_notice_recipient\"\nbounce_notice_recipient = \"x${relayhost?y}\""),
        format!("{FILE}, line 1: relayhost refers to itself: $relayhost -> $bounce_notice_recipient -> $relayhost")
    );
    // Through a derived default: mydomain's default reads myhostname.
    let message = error(r#"myhostname = "mail.$mydomain""#);
    assert!(message.contains("refers to itself"), "{message}");
    assert!(message.contains("$myhostname -> $mydomain -> $myhostname"), "{message}");
}

#[test]
fn unknown_references_name_key_and_reference() {
    assert_eq!(
        error("\nmyorigin = \"$mydomian\""),
        format!("{FILE}, line 2: myorigin refers to unknown parameter $mydomian (did you mean \"mydomain\"?)")
    );
    assert_eq!(
        error(r#"relayhost = "${nothing_like_it?x}""#),
        format!("{FILE}, line 1: relayhost refers to unknown parameter $nothing_like_it")
    );
}

#[test]
fn malformed_expressions() {
    assert_eq!(
        error(r#"myorigin = "${mydomain""#),
        format!("{FILE}, line 1: bad value for myorigin: \"${{mydomain\" (unmatched \"{{\")")
    );
    let message = error(r#"smtpd_banner = "costs 5$""#);
    assert!(message.starts_with(&format!("{FILE}, line 1: bad value for smtpd_banner")), "{message}");
}

// ---- Values ----

#[test]
fn sizes() {
    assert_eq!(good("message_size_limit = 0").message_size_limit(), 0);
    assert_eq!(good(r#"message_size_limit = "20480000""#).message_size_limit(), 20_480_000);
    assert_eq!(
        error(r#"message_size_limit = "10MB""#),
        format!("{FILE}, line 1: bad value for message_size_limit: \"10MB\" (expected a size in bytes, e.g. 10240000)")
    );
    assert!(error("message_size_limit = -1").contains("bad value for message_size_limit: -1 ("));
    assert_eq!(
        error("line_length_limit = 100"),
        format!("{FILE}, line 1: bad value for line_length_limit: 100 (expected a number of at least 512)")
    );
}

#[test]
fn times() {
    let config = good(
        r#"
        maximal_queue_lifetime = 3
        bounce_queue_lifetime = "4h"
        minimal_backoff_time = 10
        maximal_backoff_time = "1000s"
        queue_run_delay = "5m"
        delay_warning_time = "4"
        "#,
    );
    assert_eq!(config.maximal_queue_lifetime(), Duration::from_secs(3 * DAY));
    assert_eq!(config.bounce_queue_lifetime(), Duration::from_secs(4 * 3600));
    assert_eq!(config.minimal_backoff_time(), Duration::from_secs(10));
    assert_eq!(config.maximal_backoff_time(), Duration::from_secs(1000));
    assert_eq!(config.queue_run_delay(), Duration::from_secs(300));
    assert_eq!(config.delay_warning_time(), Duration::from_secs(4 * 3600));
    assert_eq!(
        error(r#"maximal_queue_lifetime = "5x""#),
        format!(
            "{FILE}, line 1: bad value for maximal_queue_lifetime: \"5x\" \
             (expected a time like 5d, 4h, 300s; units s m h d w)"
        )
    );
    assert!(error("minimal_backoff_time = 0").contains("(expected a time of at least 1s)"));
    // Raw values keep the user's spelling.
    assert_eq!(config.entry("queue_run_delay").unwrap().raw, "5m");
}

#[test]
fn booleans() {
    assert!(good("disable_dns_lookups = true").disable_dns_lookups());
    assert!(good(r#"disable_dns_lookups = "yes""#).disable_dns_lookups());
    assert!(!good(r#"disable_dns_lookups = "no""#).disable_dns_lookups());
    assert!(!good(r#"disable_dns_lookups = "False""#).disable_dns_lookups());
    assert_eq!(
        error(r#"disable_dns_lookups = "maybe""#),
        format!("{FILE}, line 1: bad value for disable_dns_lookups: \"maybe\" (expected yes or no)")
    );
    let config = good("disable_dns_lookups = true");
    let entry = config.entry("disable_dns_lookups").unwrap();
    assert_eq!((entry.raw, entry.value.as_str()), ("yes", "yes"));
}

#[test]
fn integers() {
    assert_eq!(good("qmgr_message_active_limit = 100").qmgr_message_active_limit(), 100);
    assert_eq!(good(r#"default_destination_recipient_limit = "7""#).default_destination_recipient_limit(), 7);
    assert_eq!(
        error(r#"qmgr_message_active_limit = "many""#),
        format!(
            "{FILE}, line 1: bad value for qmgr_message_active_limit: \"many\" (expected a whole number, e.g. 20000)"
        )
    );
    assert!(error("qmgr_message_active_limit = 0").contains("(expected a number of at least 1)"));
}

#[test]
fn list_forms() {
    let from_string = good(r#"masquerade_domains = "a.example, b.example  c.example""#);
    let from_array = good(r#"masquerade_domains = ["a.example", "b.example", "c.example"]"#);
    assert_eq!(from_string.masquerade_domains(), ["a.example", "b.example", "c.example"]);
    assert_eq!(from_array.masquerade_domains(), from_string.masquerade_domains());
    assert!(good("masquerade_domains = []").masquerade_domains().is_empty());
    assert!(error(r#"notify_classes = "resource, sofware""#).contains("(expected a list of: bounce,"));
}

#[test]
fn values_through_references_show_both_forms() {
    assert_eq!(
        error("bounce_notice_recipient = \"10MB\"\nmessage_size_limit = \"$bounce_notice_recipient\""),
        format!(
            "{FILE}, line 2: bad value for message_size_limit: \"$bounce_notice_recipient\" \
             (expands to \"10MB\") (expected a size in bytes, e.g. 10240000)"
        )
    );
}

#[test]
fn sanity_checks() {
    assert_eq!(
        error(r#"myhostname = "bad..name""#),
        format!("{FILE}, line 1: bad value for myhostname: \"bad..name\" (expected a hostname like mail.example.com)")
    );
    assert!(error(r#"queue_directory = "spool""#).contains("(expected an absolute path, starting with \"/\")"));
    assert!(error(r#"default_privs = "root""#).contains("(expected an unprivileged user, not root)"));
    assert!(error(r#"maillog_file = "mail.log""#).contains("bad value for maillog_file"));
    assert!(good(r#"maillog_file = "/dev/stdout""#).maillog_file() == "/dev/stdout");
    // A bad value reached only through a default: no line, but still the file.
    let message = error(r#"mail_name = """#);
    assert!(message.starts_with(&format!("{FILE}, line 1: bad value for mail_name")), "{message}");
}

// ---- Keys and files ----

#[test]
fn unknown_key_with_suggestion() {
    assert_eq!(
        error("\n\nmydestnation = \"x\""),
        format!("{FILE}, line 3: unknown parameter \"mydestnation\" (did you mean \"mydestination\"?)")
    );
    assert_eq!(
        error("MyHostname = \"x.example\""),
        format!("{FILE}, line 1: unknown parameter \"MyHostname\" (did you mean \"myhostname\"?)")
    );
    assert_eq!(error("frobnicate = 1"), format!("{FILE}, line 1: unknown parameter \"frobnicate\""));
}

#[test]
fn toml_syntax_error_has_path_and_line() {
    let message = error("relayhost = \"\"\nmyorigin = \"unterminated\n");
    assert!(message.starts_with(&format!("{FILE}, line 2: ")), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let message = error("relayhost = \"a\"\nrelayhost = \"b\"\n");
    assert!(message.starts_with(&format!("{FILE}, line 2: ")), "{message}");
}

#[test]
fn missing_file() {
    let message = Config::load(Path::new("/nonexistent/tidemail.toml")).unwrap_err().to_string();
    assert_eq!(message, "cannot read /nonexistent/tidemail.toml: No such file or directory");
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidemail.toml");
    std::fs::write(&path, "relayhost = \"[smtp.example.net]:587\"\n").unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.relayhost(), "[smtp.example.net]:587");
    assert_eq!(config.file(), Some(path.as_path()));
    assert_eq!(Path::new(config.config_directory()), dir.path());
    let explicit: Vec<&str> = config.entries().filter(|e| e.explicit).map(|e| e.name).collect();
    assert_eq!(explicit, ["relayhost"]);
}

#[test]
fn config_path_prefers_the_command_line() {
    assert_eq!(config_path(Some(Path::new("/tmp/x.toml"))), Path::new("/tmp/x.toml"));
}

#[test]
fn mailbox_command_is_shell_syntax_not_expanded() {
    // Postfix: "the mailbox_command parameter is not subjected to $name substitutions".
    let config = good("mailbox_command = '/usr/bin/procmail -a \"$EXTENSION\" -d $USER'");
    assert_eq!(config.mailbox_command(), "/usr/bin/procmail -a \"$EXTENSION\" -d $USER");
}
