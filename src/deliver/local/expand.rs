//! One local recipient becomes delivery targets, as Postfix's local(8) does it.
//!
//! For `name` (the local part, folded to lower case):
//!
//! 1. alias_maps: `name` (with its extension), then the bare name without it. Each value is a
//!    list of local names (expanded in turn), addresses with a domain, `|command`,
//!    `/file/name`, `~/file`, `:include:/file/name`;
//! 2. a passwd user: the first file of forward_path that exists (the same syntax, one or more
//!    destinations a line; `\user` is the user's mailbox without further expansion), then the
//!    mailbox;
//! 3. luser_relay, else `5.1.1 unknown user: "name"`.
//!
//! A name that is already being expanded further up the chain is not expanded again: an alias
//! or .forward that lists its own name means the user's mailbox (`root: root, tom`). Each
//! target is produced once. A part that cannot be delivered (mail to a command where that is
//! not allowed, an unknown name in a list) is a failure of its own; the other targets are
//! still delivered, as Postfix does. Lookup problems are temporary errors of the whole
//! recipient, so that nothing is delivered twice on the retry.
//!
//! Rights: commands and files from an alias run as the alias table's owner, or default_privs
//! when root owns it; from a .forward as the user; an `:include:` file reached from a root
//! table lends its owner's rights (never root's), while one reached from a user's table or
//! .forward keeps that user's, so nobody acts with another user's rights by including a file
//! that user owns. No target ever runs as root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{LocalError, Privs};
use crate::config::Config;
use crate::maps::aliases::{self, Target as Token};
use crate::maps::search::{split_at_domain, split_extension};

// Postfix's `$name` syntax, as the configuration reads it.
use crate::config::expand as macros;

/// How deep aliases, :include: files and .forward files may nest (Postfix: state.level > 100).
pub const MAX_DEPTH: usize = 100;

/// What expansion needs from the system. Errors are returned as they are (a table that cannot
/// be read is a temporary error of the recipient).
pub trait Lookups {
    /// alias_maps lookup of a bare local name (lower case): the raw right-hand side, and the
    /// uid owning the alias table's file (whose rights its commands and files get).
    fn alias(&self, name: &str) -> Result<Option<(String, u32)>, LocalError>;
    /// passwd lookup by name.
    fn user(&self, name: &str) -> Result<Option<Privs>, LocalError>;
    /// passwd lookup by uid (the owner of an alias table or :include: file).
    fn user_by_uid(&self, uid: u32) -> Result<Option<Privs>, LocalError>;
    /// Read a .forward or :include: file: its text, owner uid and `st_mode` (file type bits
    /// included). None when it does not exist. `as_user` is whose rights to read it with; None
    /// means the delivery agent's own (an :include: named in a root-owned alias table).
    fn read_file(&self, path: &Path, as_user: Option<&Privs>) -> Result<Option<(String, u32, u32)>, LocalError>;
}

/// Where one copy of the message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The user's mailbox (mbox, Maildir or mailbox_command), written as the user.
    Mailbox { user: Privs, extension: Option<String> },
    /// Appended to a file, as `privs`.
    File { path: PathBuf, privs: Privs },
    /// Piped to a command, run as `privs`. `user` is the recipient whose .forward named it
    /// (for HOME, USER, SHELL); None for aliases.
    Command { command: String, privs: Privs, extension: Option<String>, user: Option<Privs> },
    /// An address that is not ours to deliver: resubmitted as new mail (the caller routes it;
    /// its domain may still be one of ours).
    Forward { address: String },
}

/// One target with what the delivery and its log line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub target: Target,
    /// The local address this target delivers for: `to=` in the log and Delivered-To:
    /// (`tom@example.com` when root@example.com is aliased to tom; orig_to is the recipient).
    pub to: String,
    /// The envelope sender replaced by an owner-NAME alias (mailing lists), if any.
    pub sender: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// In the order found, each target once.
    pub deliveries: Vec<Delivery>,
    /// Parts that cannot be delivered: bounce the recipient with these while the deliveries
    /// go ahead.
    pub failures: Vec<LocalError>,
    /// For the mail log: ignored .forward files, broken loops.
    pub warnings: Vec<String>,
}

/// Expand `recipient` (`local@domain`, a domain the caller knows is local). Returns an error
/// when nothing can be delivered: the first failure, or a temporary error (a table or file
/// that could not be read) that defers the whole recipient.
pub fn expand(cfg: &Config, recipient: &str, lookups: &dyn Lookups) -> Result<Expansion, LocalError> {
    let (local, domain) = split_at_domain(recipient);
    let domain = domain.unwrap_or(cfg.myhostname()).to_lowercase();
    let mut expander = Expander::new(cfg, lookups, domain);
    let top = Frame {
        source: Source::Alias,
        privs: None,
        user: None,
        sender: None,
        chain: Vec::new(),
        depth: 0,
        no_relay: false,
    };
    expander.recipient(&local.to_lowercase(), recipient.to_string(), &top)?;
    let mut out = expander.out;
    if out.deliveries.is_empty() {
        return Err(if out.failures.is_empty() {
            LocalError::permanent("5.4.6", format!("no destination left for {recipient} (alias or include loop)"))
        } else {
            out.failures.swap_remove(0)
        });
    }
    Ok(out)
}

/// Where a destination was written: decides whether commands and files are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Alias,
    Forward,
    Include,
}

impl Source {
    /// As allow_mail_to_commands and allow_mail_to_files spell it.
    fn name(self) -> &'static str {
        match self {
            Source::Alias => "alias",
            Source::Forward => "forward",
            Source::Include => "include",
        }
    }
}

/// The state one level of expansion passes down.
#[derive(Debug, Clone)]
struct Frame {
    source: Source,
    /// Whose rights commands and files get; None (or root) means default_privs.
    privs: Option<Privs>,
    /// The user whose .forward this came from.
    user: Option<Privs>,
    sender: Option<String>,
    /// What is being expanded above this level (`alias NAME`, `forward USER`,
    /// `include PATH`): met again, it is not expanded again.
    chain: Vec<String>,
    depth: usize,
    /// Expanding luser_relay itself: an unknown name bounces instead of relaying again.
    no_relay: bool,
}

impl Frame {
    fn inner(&self, source: Source, mark: String) -> Frame {
        let mut chain = self.chain.clone();
        chain.push(mark);
        Frame { source, chain, depth: self.depth + 1, ..self.clone() }
    }
}

/// One local address being delivered, with the parts of it templates may use.
#[derive(Debug, Clone)]
struct Level {
    /// For `to=`.
    address: String,
    /// The whole local part, lower case.
    local: String,
    /// Without the extension.
    user: String,
    /// Without its delimiter.
    extension: Option<String>,
    delimiter: Option<char>,
}

struct Expander<'a> {
    cfg: &'a Config,
    lookups: &'a dyn Lookups,
    domain: String,
    out: Expansion,
    seen: HashSet<String>,
    default_privs: Option<Privs>,
}

impl<'a> Expander<'a> {
    fn new(cfg: &'a Config, lookups: &'a dyn Lookups, domain: String) -> Expander<'a> {
        Expander { cfg, lookups, domain, out: Expansion::default(), seen: HashSet::new(), default_privs: None }
    }

    fn fail(&mut self, error: LocalError) {
        self.out.failures.push(error);
    }

    fn warn(&mut self, text: String) {
        self.out.warnings.push(text);
    }

    /// Split a local part as Postfix does: an extension holding `/` is dropped, since it
    /// could otherwise climb out of a directory in forward_path.
    fn level(&self, local: &str, address: String) -> Level {
        let (user, extension, delimiter) = match split_extension(local, self.cfg.recipient_delimiter()) {
            Some((user, with_delimiter)) => {
                let mut chars = with_delimiter.chars();
                let delimiter = chars.next();
                (user.to_string(), Some(chars.as_str().to_string()), delimiter)
            }
            None => (local.to_string(), None, None),
        };
        match extension {
            Some(extension) if extension.contains('/') => {
                Level { address, local: user.clone(), user, extension: None, delimiter: None }
            }
            extension => Level {
                address,
                local: local.to_string(),
                user,
                extension: extension.filter(|e| !e.is_empty()),
                delimiter,
            },
        }
    }

    /// A local name (lower case; `\name` for the mailbox only).
    fn recipient(&mut self, local: &str, address: String, frame: &Frame) -> Result<(), LocalError> {
        if frame.depth >= MAX_DEPTH {
            self.fail(LocalError::permanent("5.4.6", format!("recipient nesting limit exceeded for {address}")));
            return Ok(());
        }
        let frame = Frame { depth: frame.depth + 1, ..frame.clone() };
        if let Some(bare) = local.strip_prefix('\\') {
            let level = self.level(bare, address);
            return match self.lookups.user(&level.user)? {
                Some(user) => {
                    self.mailbox(user, &level, &frame);
                    Ok(())
                }
                None => self.unknown(&level, &frame),
            };
        }
        let level = self.level(local, address);
        if level.user.is_empty() {
            self.fail(LocalError::permanent("5.1.3", format!("null username in \"{}\"", level.address)));
            return Ok(());
        }
        // The whole local part first, then the bare name (Postfix's order).
        let mut keys = vec![level.local.clone()];
        if level.user != level.local {
            keys.push(level.user.clone());
        }
        let mut looped = false;
        for key in keys {
            if frame.chain.contains(&format!("alias {key}")) {
                looped = true;
                continue;
            }
            if let Some((value, owner)) = self.lookups.alias(&key)? {
                return self.alias(&key, &value, owner, &level, &frame);
            }
        }
        if let Some(user) = self.lookups.user(&level.user)? {
            if !self.dotforward(&user, &level, &frame)? {
                self.mailbox(user, &level, &frame);
            }
            return Ok(());
        }
        if looped {
            self.warn(format!("alias database loop for {}", level.user));
            self.fail(LocalError::permanent("5.4.6", format!("alias database loop for {}", level.user)));
            return Ok(());
        }
        self.unknown(&level, &frame)
    }

    fn alias(&mut self, key: &str, value: &str, owner: u32, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        let mut inner = frame.inner(Source::Alias, format!("alias {key}"));
        // The table owner's rights, unless root owns it: then default_privs.
        inner.privs = match owner {
            0 => None,
            uid => Some(
                self.lookups
                    .user_by_uid(uid)?
                    .ok_or_else(|| LocalError::temporary("4.3.0", "cannot find alias database owner"))?,
            ),
        };
        inner.user = None;
        if self.cfg.owner_request_special()
            && let Some((owner_value, _)) = self.lookups.alias(&format!("owner-{key}"))?
        {
            inner.sender = Some(self.owner_sender(key, &owner_value));
        }
        let tokens = aliases::split_targets(value);
        if tokens.is_empty() {
            // Postfix defers too: an empty value is a broken table, not "deliver nowhere".
            return Err(LocalError::temporary("4.3.0", format!("no recipient in alias lookup result for {key}")));
        }
        for token in tokens {
            self.token(token, level, &inner)?;
        }
        Ok(())
    }

    /// owner-NAME@$myorigin, or with expand_owner_alias the owner alias's own value when that
    /// is a single address.
    fn owner_sender(&self, key: &str, owner_value: &str) -> String {
        let mut sender = format!("owner-{key}");
        if self.cfg.expand_owner_alias()
            && let [Token::Address(address)] = aliases::split_targets(owner_value).as_slice()
        {
            sender = address.trim_start_matches('\\').to_string();
        }
        if !sender.contains('@') {
            sender = format!("{sender}@{}", self.cfg.myorigin());
        }
        sender
    }

    /// One destination from an alias value, a .forward or an :include: file.
    fn token(&mut self, token: Token, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        match token {
            Token::Command(command) => {
                if !allowed(self.cfg.allow_mail_to_commands(), frame.source) {
                    self.fail(LocalError::permanent("5.7.1", "mail to command is restricted"));
                    return Ok(());
                }
                let privs = self.run_as(frame)?;
                let target =
                    Target::Command { command, privs, extension: level.extension.clone(), user: frame.user.clone() };
                self.push(target, &level.address, frame);
                Ok(())
            }
            Token::File(path) => self.file(PathBuf::from(path), level, frame),
            Token::Include(path) => self.include(&path, level, frame),
            Token::Address(address) => self.address(&address, level, frame),
        }
    }

    fn address(&mut self, address: &str, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        if let Some(rest) = address.strip_prefix('~') {
            return self.home_file(address, rest, level, frame);
        }
        match split_at_domain(address) {
            // Our own domain is known to be local: no need to send the mail round again,
            // and a .forward that names its user with the domain still ends in her mailbox.
            (local, Some(domain)) if !domain.eq_ignore_ascii_case(&self.domain) || local.is_empty() => {
                self.push(Target::Forward { address: address.to_string() }, &level.address, frame);
                Ok(())
            }
            (local, _) => {
                let local = local.to_lowercase();
                let to = format!("{}@{}", local.trim_start_matches('\\'), self.domain);
                self.recipient(&local, to, frame)
            }
        }
    }

    /// `~/file` in a .forward: relative to the user's home; `~user/...` is refused.
    fn home_file(&mut self, address: &str, rest: &str, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        let Some(relative) = rest.strip_prefix('/') else {
            self.fail(LocalError::permanent("5.3.5", format!("bad home directory syntax for: {address}")));
            return Ok(());
        };
        match &frame.user {
            Some(user) => {
                let path = user.home.join(relative);
                self.file(path, level, frame)
            }
            None => {
                self.fail(LocalError::permanent("5.3.5", format!("unknown home directory for: {address}")));
                Ok(())
            }
        }
    }

    fn file(&mut self, path: PathBuf, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        if !allowed(self.cfg.allow_mail_to_files(), frame.source) {
            self.fail(LocalError::permanent("5.7.1", "mail to file is restricted"));
            return Ok(());
        }
        let privs = self.run_as(frame)?;
        self.push(Target::File { path, privs }, &level.address, frame);
        Ok(())
    }

    fn include(&mut self, path: &str, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        let config_error = || LocalError::permanent("5.3.5", "mail system configuration error");
        if frame.depth >= MAX_DEPTH {
            self.fail(LocalError::permanent("5.4.6", ":include: nesting limit exceeded"));
            return Ok(());
        }
        if !path.starts_with('/') {
            self.warn(format!(":include:{path} uses a relative path"));
            self.fail(config_error());
            return Ok(());
        }
        let mark = format!("include {path}");
        if frame.chain.contains(&mark) {
            self.warn(format!(":include: file {path} includes itself; ignored the second time"));
            return Ok(());
        }
        let Some((text, owner, mode)) = self.lookups.read_file(Path::new(path), frame.privs.as_ref())? else {
            self.warn(format!("unable to lookup :include: file {path}: not found"));
            self.fail(config_error());
            return Ok(());
        };
        if !is_regular(mode) {
            self.warn(format!(":include: file {path} is not a regular file"));
            self.fail(config_error());
            return Ok(());
        }
        if mode & 0o002 != 0 {
            self.warn(format!(":include: file {path} is world writable"));
            self.fail(config_error());
            return Ok(());
        }
        let mut inner = frame.inner(Source::Include, mark);
        // Only a root context takes the file owner's rights; a user's table or .forward keeps
        // the user's, so that including someone else's file never borrows their rights.
        if frame.privs.as_ref().is_none_or(|p| p.uid == 0) {
            inner.privs = match owner {
                0 => None,
                uid => Some(self.lookups.user_by_uid(uid)?.ok_or_else(|| {
                    LocalError::temporary(
                        "4.3.5",
                        format!("cannot find the owner (uid {uid}) of :include: file {path}"),
                    )
                })?),
            };
        }
        self.lines(&text, level, &inner)?;
        Ok(())
    }

    /// The destinations of a .forward or :include: file, one or more a line, `#` comments.
    /// Returns how many there were.
    fn lines(&mut self, text: &str, level: &Level, frame: &Frame) -> Result<usize, LocalError> {
        let mut count = 0;
        for line in text.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for token in aliases::split_targets(line) {
                count += 1;
                self.token(token, level, frame)?;
            }
        }
        Ok(count)
    }

    /// The user's .forward: true when it was used (else: the mailbox).
    fn dotforward(&mut self, user: &Privs, level: &Level, frame: &Frame) -> Result<bool, LocalError> {
        let mark = format!("forward {}", user.user);
        // She listed herself (or an alias of herself) in her own .forward: her mailbox.
        if frame.chain.contains(&mark) {
            return Ok(false);
        }
        // Without an extension the default forward_path names $home/.forward twice: look once.
        let mut tried: Vec<String> = Vec::new();
        for template in self.cfg.forward_path() {
            let path = match self.expand_template(template, level, Some(user)) {
                Ok(path) if path.starts_with('/') && !tried.contains(&path) => path,
                Ok(_) => continue,
                Err(reason) => {
                    self.warn(format!("forward_path entry \"{template}\": {reason}"));
                    continue;
                }
            };
            tried.push(path.clone());
            let Some((text, owner, mode)) = self.lookups.read_file(Path::new(&path), Some(user))? else {
                continue;
            };
            // The first file that exists decides, good or bad, as in Postfix.
            if !is_regular(mode) {
                self.warn(format!("file {path} is not a regular file; ignored"));
                return Ok(false);
            }
            if owner != 0 && owner != user.uid {
                self.warn(format!("file {path} has bad owner uid {owner}; ignored"));
                return Ok(false);
            }
            // Postfix refuses world-writable only; group-writable lets others redirect the
            // user's mail too.
            if mode & 0o022 != 0 {
                self.warn(format!("file {path} is writable by group or others; ignored"));
                return Ok(false);
            }
            let mut inner = frame.inner(Source::Forward, mark);
            inner.privs = Some(user.clone());
            inner.user = Some(user.clone());
            return Ok(self.lines(&text, level, &inner)? > 0);
        }
        Ok(false)
    }

    fn mailbox(&mut self, user: Privs, level: &Level, frame: &Frame) {
        let target = Target::Mailbox { user, extension: level.extension.clone() };
        self.push(target, &level.address, frame);
    }

    fn unknown(&mut self, level: &Level, frame: &Frame) -> Result<(), LocalError> {
        let relay = self.cfg.luser_relay();
        if relay.is_empty() || frame.no_relay {
            self.fail(LocalError::permanent("5.1.1", format!("unknown user: \"{}\"", level.user)));
            return Ok(());
        }
        let address = self
            .expand_template(relay, level, None)
            .map_err(|reason| LocalError::temporary("4.3.5", format!("luser_relay: {reason}")))?;
        let mut inner = frame.clone();
        inner.no_relay = true;
        self.address(&address, level, &inner)
    }

    /// Rights for a command or file: never root's.
    fn run_as(&mut self, frame: &Frame) -> Result<Privs, LocalError> {
        match &frame.privs {
            Some(privs) if privs.uid != 0 => Ok(privs.clone()),
            _ => self.default_privs(),
        }
    }

    fn default_privs(&mut self) -> Result<Privs, LocalError> {
        if let Some(privs) = &self.default_privs {
            return Ok(privs.clone());
        }
        let name = self.cfg.default_privs();
        let privs = match self.lookups.user(name)? {
            Some(privs) if privs.uid != 0 => privs,
            Some(_) => return Err(LocalError::temporary("4.3.0", format!("default_privs user \"{name}\" is root"))),
            None => {
                return Err(LocalError::temporary("4.3.0", format!("default_privs user \"{name}\" does not exist")));
            }
        };
        self.default_privs = Some(privs.clone());
        Ok(privs)
    }

    fn push(&mut self, target: Target, to: &str, frame: &Frame) {
        let key = match &target {
            Target::Mailbox { user, extension } => {
                format!("mailbox {} {}", user.user, extension.as_deref().unwrap_or(""))
            }
            Target::File { path, privs } => format!("file {} {}", privs.uid, path.display()),
            Target::Command { command, privs, .. } => format!("command {} {command}", privs.uid),
            Target::Forward { address } => format!("forward {}", address.to_lowercase()),
        };
        if self.seen.insert(key) {
            self.out.deliveries.push(Delivery { target, to: to.to_string(), sender: frame.sender.clone() });
        }
    }

    /// A per-delivery template (forward_path, luser_relay): local(8)'s names, then parameters.
    fn expand_template(&self, template: &str, level: &Level, user: Option<&Privs>) -> Result<String, String> {
        let result = macros::expand(template, &mut |name: &str| -> Result<String, String> {
            Ok(match name {
                "user" => user.map_or_else(|| level.user.clone(), |u| u.user.clone()),
                "home" => user.map(|u| u.home.display().to_string()).unwrap_or_default(),
                "shell" => user.map(|u| u.shell.clone()).unwrap_or_default(),
                "recipient" => level.address.clone(),
                "extension" => level.extension.clone().unwrap_or_default(),
                // The delimiter this address used (recipient_delimiter may list several).
                "recipient_delimiter" => level.delimiter.map(String::from).unwrap_or_default(),
                "local" | "mailbox" => level.local.clone(),
                "domain" => self.domain.clone(),
                other => match self.cfg.entry(other) {
                    Some(entry) => entry.value,
                    None => return Err(format!("unknown name \"${other}\"")),
                },
            })
        });
        result.map_err(|error| match error {
            macros::ExpandError::Syntax(reason) | macros::ExpandError::Lookup(reason) => reason,
            macros::ExpandError::TooDeep => "nested too deeply".to_string(),
        })
    }
}

fn allowed(list: &[String], source: Source) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(source.name()))
}

fn is_regular(mode: u32) -> bool {
    mode & 0o170000 == 0o100000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const REG: u32 = 0o100000;

    fn privs(user: &str, uid: u32) -> Privs {
        Privs {
            user: user.to_string(),
            uid,
            gid: uid,
            groups: Vec::new(),
            home: PathBuf::from(if uid == 0 { "/root".to_string() } else { format!("/home/{user}") }),
            shell: "/bin/sh".to_string(),
        }
    }

    /// passwd: root, tom, jane, list (38), nobody; aliases and files as each test sets them.
    struct Fake {
        aliases: HashMap<String, (String, u32)>,
        users: Vec<Privs>,
        files: HashMap<PathBuf, (String, u32, u32)>,
        broken_aliases: bool,
        /// Every path read_file was asked for.
        reads: std::cell::RefCell<Vec<PathBuf>>,
    }

    impl Fake {
        fn new(aliases: &[(&str, &str)]) -> Fake {
            Fake {
                aliases: aliases.iter().map(|(k, v)| (k.to_string(), (v.to_string(), 0))).collect(),
                users: vec![
                    privs("root", 0),
                    privs("tom", 1000),
                    privs("jane", 1001),
                    privs("list", 38),
                    privs("nobody", 65534),
                ],
                files: HashMap::new(),
                broken_aliases: false,
                reads: Default::default(),
            }
        }

        fn owned_by(mut self, uid: u32) -> Fake {
            for value in self.aliases.values_mut() {
                value.1 = uid;
            }
            self
        }

        fn file(mut self, path: &str, text: &str, owner: u32, mode: u32) -> Fake {
            self.files.insert(PathBuf::from(path), (text.to_string(), owner, REG | mode));
            self
        }
    }

    impl Lookups for Fake {
        fn alias(&self, name: &str) -> Result<Option<(String, u32)>, LocalError> {
            assert_eq!(name, name.to_lowercase(), "alias keys are folded");
            if self.broken_aliases {
                return Err(LocalError::temporary("4.3.0", "alias database unavailable"));
            }
            Ok(self.aliases.get(name).cloned())
        }
        fn user(&self, name: &str) -> Result<Option<Privs>, LocalError> {
            Ok(self.users.iter().find(|u| u.user == name).cloned())
        }
        fn user_by_uid(&self, uid: u32) -> Result<Option<Privs>, LocalError> {
            Ok(self.users.iter().find(|u| u.uid == uid).cloned())
        }
        fn read_file(&self, path: &Path, _as_user: Option<&Privs>) -> Result<Option<(String, u32, u32)>, LocalError> {
            self.reads.borrow_mut().push(path.to_path_buf());
            Ok(self.files.get(path).cloned())
        }
    }

    fn config(extra: &str) -> Config {
        let text = format!("myhostname = \"mail.example.com\"\nrecipient_delimiter = \"+\"\n{extra}");
        Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap()
    }

    fn run(cfg: &Config, fake: &Fake, recipient: &str) -> Expansion {
        expand(cfg, recipient, fake).unwrap_or_else(|e| panic!("{recipient}: {e:?}"))
    }

    fn targets(expansion: &Expansion) -> Vec<Target> {
        expansion.deliveries.iter().map(|d| d.target.clone()).collect()
    }

    fn mailbox(user: &str, uid: u32) -> Target {
        Target::Mailbox { user: privs(user, uid), extension: None }
    }

    fn forward(address: &str) -> Target {
        Target::Forward { address: address.to_string() }
    }

    fn command(text: &str, privs: Privs) -> Target {
        Target::Command { command: text.to_string(), privs, extension: None, user: None }
    }

    fn nobody() -> Privs {
        privs("nobody", 65534)
    }

    #[test]
    fn a_user_gets_the_mailbox() {
        let out = run(&config(""), &Fake::new(&[]), "Tom@Example.COM");
        assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
        assert_eq!(out.deliveries[0].to, "Tom@Example.COM");
        assert_eq!(out.deliveries[0].sender, None);
        assert!(out.failures.is_empty() && out.warnings.is_empty());
    }

    #[test]
    fn root_aliased_to_itself_and_tom() {
        let fake = Fake::new(&[("root", "root, tom"), ("postmaster", "root")]);
        let out = run(&config(""), &fake, "postmaster@example.com");
        assert_eq!(targets(&out), vec![mailbox("root", 0), mailbox("tom", 1000)]);
        let to: Vec<&str> = out.deliveries.iter().map(|d| d.to.as_str()).collect();
        assert_eq!(to, ["root@example.com", "tom@example.com"]);
    }

    #[test]
    fn addresses_with_a_domain_are_forwarded_ours_are_expanded() {
        let fake = Fake::new(&[("team", "bob@remote.example, Jane@EXAMPLE.com, \"john doe\"@remote.example")]);
        let out = run(&config(""), &fake, "team@example.com");
        assert_eq!(
            targets(&out),
            vec![forward("bob@remote.example"), mailbox("jane", 1001), forward("\"john doe\"@remote.example")]
        );
    }

    #[test]
    fn owner_alias_replaces_the_sender_of_its_list_only() {
        let aliases =
            [("staff", "tom, jane, /var/log/staff"), ("owner-staff", "tom"), ("all", "staff, bob@remote.example")];
        let fake = Fake::new(&aliases);
        let out = run(&config(""), &fake, "all@example.com");
        let senders: Vec<Option<&str>> = out.deliveries.iter().map(|d| d.sender.as_deref()).collect();
        let owner = Some("owner-staff@mail.example.com");
        assert_eq!(senders, [owner, owner, owner, None]);

        let out = run(&config("expand_owner_alias = true"), &fake, "staff@example.com");
        assert_eq!(out.deliveries[0].sender.as_deref(), Some("tom@mail.example.com"));

        let out = run(&config("owner_request_special = false"), &fake, "staff@example.com");
        assert!(out.deliveries.iter().all(|d| d.sender.is_none()));
    }

    #[test]
    fn loops_are_broken_and_reported() {
        // a → b → a: nobody to deliver to.
        let fake = Fake::new(&[("a", "b"), ("b", "a")]);
        let err = expand(&config(""), "a@example.com", &fake).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.4.6", "alias database loop for a"));

        // The loop is one branch of the list: the rest is delivered.
        let fake = Fake::new(&[("a", "b, tom"), ("b", "a")]);
        let out = run(&config(""), &fake, "a@example.com");
        assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
        assert_eq!(out.failures, vec![LocalError::permanent("5.4.6", "alias database loop for a")]);

        // A loop through a real user ends in the user's mailbox.
        let fake = Fake::new(&[("tom", "bob"), ("bob", "tom")]);
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![mailbox("tom", 1000)]);
    }

    #[test]
    fn each_target_once() {
        let aliases = [
            ("team", "tom, jane, tom@example.com, \"|/bin/archive\", |/bin/archive, bob@remote.example"),
            ("all", "team, tom, TOM, Bob@Remote.Example"),
        ];
        let out = run(&config(""), &Fake::new(&aliases), "all@example.com");
        assert_eq!(
            targets(&out),
            vec![
                mailbox("tom", 1000),
                mailbox("jane", 1001),
                command("/bin/archive", nobody()),
                forward("bob@remote.example"),
            ]
        );
    }

    #[test]
    fn nesting_is_limited() {
        let names: Vec<(String, String)> = (0..150).map(|i| (format!("a{i}"), format!("a{}", i + 1))).collect();
        let aliases: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let err = expand(&config(""), "a0@example.com", &Fake::new(&aliases)).unwrap_err();
        assert_eq!(err.dsn, "5.4.6");
        assert!(err.text.starts_with("recipient nesting limit exceeded"), "{}", err.text);
    }

    #[test]
    fn commands_and_files_from_aliases_run_as_the_table_owner_or_default_privs() {
        let aliases = [("archive", "\"|/usr/bin/archiver -q\", /var/spool/archive")];
        // A root-owned table: default_privs.
        let out = run(&config(""), &Fake::new(&aliases), "archive@example.com");
        assert_eq!(
            targets(&out),
            vec![
                command("/usr/bin/archiver -q", nobody()),
                Target::File { path: "/var/spool/archive".into(), privs: nobody() },
            ]
        );
        // A table owned by "list": list's rights.
        let out = run(&config(""), &Fake::new(&aliases).owned_by(38), "archive@example.com");
        assert_eq!(
            targets(&out),
            vec![
                command("/usr/bin/archiver -q", privs("list", 38)),
                Target::File { path: "/var/spool/archive".into(), privs: privs("list", 38) },
            ]
        );
        // An owner with no passwd entry, or a missing default_privs user: try later.
        let err = expand(&config(""), "archive@example.com", &Fake::new(&aliases).owned_by(4242)).unwrap_err();
        assert_eq!(err, LocalError::temporary("4.3.0", "cannot find alias database owner"));
        let err = expand(&config("default_privs = \"daemon\""), "archive@example.com", &Fake::new(&aliases));
        assert!(err.unwrap_err().temporary);
    }

    #[test]
    fn restrictions_on_commands_and_files() {
        let aliases = [("cmd", "|/bin/true"), ("file", "/tmp/x"), ("both", "tom, |/bin/true, /tmp/x")];
        let cfg = config("allow_mail_to_commands = []\nallow_mail_to_files = \"forward\"");
        let err = expand(&cfg, "cmd@example.com", &Fake::new(&aliases)).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.7.1", "mail to command is restricted"));
        let err = expand(&cfg, "file@example.com", &Fake::new(&aliases)).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.7.1", "mail to file is restricted"));
        let out = run(&cfg, &Fake::new(&aliases), "both@example.com");
        assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
        assert_eq!(out.failures.len(), 2);
    }

    #[test]
    fn include_files() {
        let aliases = [("staff", ":include:/etc/mail/staff"), ("rootinc", ":include:/etc/mail/rootinc")];
        let text = "# the staff\ntom, bob@remote.example\n\n/var/log/staff.log\n|/usr/bin/filter\n";
        let fake = Fake::new(&aliases).file("/etc/mail/staff", text, 1001, 0o644).file(
            "/etc/mail/rootinc",
            "/var/log/root.log",
            0,
            0o644,
        );
        let cfg = config("allow_mail_to_files = \"alias, forward, include\"");
        let out = run(&cfg, &fake, "staff@example.com");
        // Files get the include file owner's rights; commands in includes are not allowed by
        // default.
        assert_eq!(
            targets(&out),
            vec![
                mailbox("tom", 1000),
                forward("bob@remote.example"),
                Target::File { path: "/var/log/staff.log".into(), privs: privs("jane", 1001) },
            ]
        );
        assert_eq!(out.failures, vec![LocalError::permanent("5.7.1", "mail to command is restricted")]);
        // A root-owned include file: default_privs.
        let out = run(&cfg, &fake, "rootinc@example.com");
        assert_eq!(targets(&out), vec![Target::File { path: "/var/log/root.log".into(), privs: nobody() }]);
        // Included from a table that "list" owns: list's rights, not the file owner's.
        let fake = fake.owned_by(38);
        let out = run(&cfg, &fake, "staff@example.com");
        assert_eq!(
            out.deliveries[2].target,
            Target::File { path: "/var/log/staff.log".into(), privs: privs("list", 38) }
        );
    }

    #[test]
    fn bad_include_files() {
        let config_error = LocalError::permanent("5.3.5", "mail system configuration error");
        let aliases = [("rel", ":include:etc/x"), ("missing", ":include:/nope"), ("open", ":include:/etc/open")];
        let fake = Fake::new(&aliases).file("/etc/open", "tom", 1000, 0o666);
        for name in ["rel", "missing", "open"] {
            let err = expand(&config(""), &format!("{name}@example.com"), &fake).unwrap_err();
            assert_eq!(err, config_error, "{name}");
        }
        // An include file that includes itself is read once.
        let fake = Fake::new(&[("self", ":include:/etc/self")]).file("/etc/self", "tom, :include:/etc/self", 0, 0o644);
        let out = run(&config(""), &fake, "self@example.com");
        assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
        assert_eq!(out.warnings.len(), 1);
    }

    #[test]
    fn forward_files() {
        let text = "# mine\n\\tom, tom@elsewhere.example\n\"|/usr/bin/vacation tom\"\n~/Mail/saved\n";
        let fake = Fake::new(&[]).file("/home/tom/.forward", text, 1000, 0o644);
        let out = run(&config(""), &fake, "tom@example.com");
        let tom = privs("tom", 1000);
        assert_eq!(
            targets(&out),
            vec![
                mailbox("tom", 1000),
                forward("tom@elsewhere.example"),
                Target::Command {
                    command: "/usr/bin/vacation tom".into(),
                    privs: tom.clone(),
                    extension: None,
                    user: Some(tom.clone()),
                },
                Target::File { path: "/home/tom/Mail/saved".into(), privs: tom },
            ]
        );
    }

    #[test]
    fn forward_listing_the_user_itself() {
        for line in ["tom, jane", "\\tom, jane", "tom@example.com, jane"] {
            let fake = Fake::new(&[]).file("/home/tom/.forward", line, 1000, 0o600);
            let out = run(&config(""), &fake, "tom@example.com");
            assert_eq!(targets(&out), vec![mailbox("tom", 1000), mailbox("jane", 1001)], "{line}");
        }
        // Two .forward files that point at each other end in a mailbox.
        let fake = Fake::new(&[]).file("/home/tom/.forward", "jane", 1000, 0o600).file(
            "/home/jane/.forward",
            "tom",
            1001,
            0o600,
        );
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![mailbox("tom", 1000)]);
    }

    #[test]
    fn forward_with_bad_owner_or_mode_is_ignored() {
        for (owner, mode, why) in
            [(1001, 0o644, "bad owner uid 1001"), (1000, 0o664, "writable"), (1000, 0o646, "writable")]
        {
            let fake = Fake::new(&[]).file("/home/tom/.forward", "bob@remote.example", owner, mode);
            let out = run(&config(""), &fake, "tom@example.com");
            assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
            assert!(out.warnings[0].contains(why), "{:?}", out.warnings);
        }
        // Root may own it; a directory is not a file.
        let fake = Fake::new(&[]).file("/home/tom/.forward", "bob@remote.example", 0, 0o644);
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![forward("bob@remote.example")]);
        let mut fake = Fake::new(&[]);
        fake.files.insert("/home/tom/.forward".into(), (String::new(), 1000, 0o040755));
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![mailbox("tom", 1000)]);
        // An empty .forward is no forwarding.
        let fake = Fake::new(&[]).file("/home/tom/.forward", "# nothing\n", 1000, 0o644);
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![mailbox("tom", 1000)]);
    }

    #[test]
    fn roots_forward_commands_run_as_default_privs() {
        let fake = Fake::new(&[]).file("/root/.forward", "|/usr/local/bin/page", 0, 0o644);
        let out = run(&config(""), &fake, "root@example.com");
        assert_eq!(
            targets(&out),
            vec![Target::Command {
                command: "/usr/local/bin/page".into(),
                privs: nobody(),
                extension: None,
                user: Some(privs("root", 0)),
            }]
        );
    }

    #[test]
    fn extensions() {
        // No alias: the mailbox, with the extension.
        let out = run(&config(""), &Fake::new(&[]), "tom+Lists@example.com");
        assert_eq!(targets(&out), vec![Target::Mailbox { user: privs("tom", 1000), extension: Some("lists".into()) }]);
        // "user+ext" is looked up before "user".
        let fake = Fake::new(&[("tom+lists", "jane"), ("tom", "bob@remote.example")]);
        assert_eq!(targets(&run(&config(""), &fake, "tom+lists@example.com")), vec![mailbox("jane", 1001)]);
        assert_eq!(targets(&run(&config(""), &fake, "tom+misc@example.com")), vec![forward("bob@remote.example")]);
        // A command of the bare alias still sees the extension.
        let fake = Fake::new(&[("tom", "|/bin/sort-mail")]);
        let out = run(&config(""), &fake, "tom+misc@example.com");
        assert_eq!(
            targets(&out),
            vec![Target::Command {
                command: "/bin/sort-mail".into(),
                privs: nobody(),
                extension: Some("misc".into()),
                user: None
            }]
        );
        // .forward+ext comes first in the default forward_path.
        let fake = Fake::new(&[]).file("/home/tom/.forward+misc", "jane", 1000, 0o644).file(
            "/home/tom/.forward",
            "bob@remote.example",
            1000,
            0o644,
        );
        assert_eq!(targets(&run(&config(""), &fake, "tom+misc@example.com")), vec![mailbox("jane", 1001)]);
        assert_eq!(targets(&run(&config(""), &fake, "tom+other@example.com")), vec![forward("bob@remote.example")]);
        assert_eq!(targets(&run(&config(""), &fake, "tom@example.com")), vec![forward("bob@remote.example")]);
        // An extension with a slash is dropped.
        let out = run(&config(""), &fake, "tom+../../etc@example.com");
        assert_eq!(targets(&out), vec![forward("bob@remote.example")]);
        // Without recipient_delimiter there is no extension.
        let cfg = Config::from_toml_str("myhostname = \"mail.example.com\"", Path::new("/t.toml")).unwrap();
        let err = expand(&cfg, "tom+misc@example.com", &Fake::new(&[])).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.1.1", "unknown user: \"tom+misc\""));
    }

    #[test]
    fn unknown_users() {
        let err = expand(&config(""), "Nosuch+x@example.com", &Fake::new(&[])).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.1.1", "unknown user: \"nosuch\""));
        // In a list: the others are still delivered.
        let out = run(&config(""), &Fake::new(&[("team", "tom, nosuch")]), "team@example.com");
        assert_eq!(targets(&out), vec![mailbox("tom", 1000)]);
        assert_eq!(out.failures, vec![LocalError::permanent("5.1.1", "unknown user: \"nosuch\"")]);
    }

    #[test]
    fn luser_relay() {
        let cfg = config("luser_relay = \"catchall@relay.example\"");
        let out = run(&cfg, &Fake::new(&[]), "nosuch@example.com");
        assert_eq!(targets(&out), vec![forward("catchall@relay.example")]);
        assert_eq!(out.deliveries[0].to, "nosuch@example.com");
        // A local name is expanded here; an unknown one bounces instead of relaying again.
        let cfg = config("luser_relay = \"admin\"");
        let out = run(&cfg, &Fake::new(&[("admin", "root")]), "nosuch@example.com");
        assert_eq!(targets(&out), vec![mailbox("root", 0)]);
        let err = expand(&cfg, "nosuch@example.com", &Fake::new(&[])).unwrap_err();
        assert_eq!(err, LocalError::permanent("5.1.1", "unknown user: \"admin\""));
    }

    #[test]
    fn templates_know_the_delivery_names() {
        let cfg = config("");
        let fake = Fake::new(&[]);
        let expander = Expander::new(&cfg, &fake, "example.com".into());
        let level = expander.level("tom+foo", "tom+foo@example.com".into());
        let tom = privs("tom", 1000);
        let expand = |t: &str, user: Option<&Privs>| expander.expand_template(t, &level, user);
        assert_eq!(expand("$user-$extension@relay.$domain", None).unwrap(), "tom-foo@relay.example.com");
        assert_eq!(
            expand("$home/.forward${recipient_delimiter}${extension}", Some(&tom)).unwrap(),
            "/home/tom/.forward+foo"
        );
        assert_eq!(
            expand("$local|$recipient|$shell|$myhostname", Some(&tom)).unwrap(),
            "tom+foo|tom+foo@example.com|/bin/sh|mail.example.com"
        );
        assert_eq!(expand("${extension?{x}:{y}}", None).unwrap(), "x");
        assert!(expand("$nosuchname", None).is_err());
        let level = expander.level("tom", "tom@example.com".into());
        assert_eq!(
            expander.expand_template("$home/.forward${recipient_delimiter}${extension}", &level, Some(&tom)).unwrap(),
            "/home/tom/.forward"
        );
    }

    #[test]
    fn lookup_errors_defer_the_whole_recipient() {
        let mut fake = Fake::new(&[("root", "tom")]);
        fake.broken_aliases = true;
        let err = expand(&config(""), "root@example.com", &fake).unwrap_err();
        assert!(err.temporary);
        let err = expand(&config(""), "empty@example.com", &Fake::new(&[("empty", " , ")])).unwrap_err();
        assert_eq!(err.dsn, "4.3.0");
    }

    #[test]
    fn the_same_forward_file_is_read_once() {
        // Default forward_path without an extension: $home/.forward and $home/.forward again.
        let fake = Fake::new(&[]);
        let cfg =
            Config::from_toml_str("myhostname = \"mail.example.com\"\n", Path::new("/etc/tidemail/tidemail.toml"))
                .unwrap();
        run(&cfg, &fake, "tom@mail.example.com");
        let reads = fake.reads.borrow();
        let forward: Vec<_> = reads.iter().filter(|p| p.ends_with(".forward")).collect();
        assert_eq!(forward.len(), 1, "{reads:?}");
    }
}
