//! Password hashes as crypt(3) and Dovecot write them: `$6$` / `$5$` (SHA-crypt), `$2b$` /
//! `$2y$` (bcrypt), `$argon2id$` (and argon2i/argon2d), `$y$` (yescrypt, what Debian's
//! `mkpasswd` writes), each with or without a Dovecot `{SCHEME}` prefix.
//!
//! Hashes are checked for syntax when the file is read, so a verification only asks whether the
//! password matches. Every comparison is the crates' own constant-time one.

use std::str::FromStr;

use argon2::{Argon2, PasswordVerifier as _};
use sha_crypt::ShaCrypt;
use yescrypt::Yescrypt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sha512Crypt,
    Sha256Crypt,
    Bcrypt,
    Argon2,
    Yescrypt,
}

/// One stored hash, its `{SCHEME}` prefix removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHash {
    scheme: Scheme,
    text: String,
}

/// Dovecot's scheme names and what they may hold; `CRYPT` is "whatever crypt(3) understands".
const DOVECOT_SCHEMES: &[(&str, &[Scheme])] = &[
    ("SHA512-CRYPT", &[Scheme::Sha512Crypt]),
    ("SHA256-CRYPT", &[Scheme::Sha256Crypt]),
    ("BLF-CRYPT", &[Scheme::Bcrypt]),
    ("ARGON2ID", &[Scheme::Argon2]),
    ("ARGON2I", &[Scheme::Argon2]),
    ("CRYPT", &[Scheme::Sha512Crypt, Scheme::Sha256Crypt, Scheme::Bcrypt, Scheme::Yescrypt]),
];

impl StoredHash {
    /// Parses a hash from a password file; the error says why it cannot be used.
    pub fn parse(field: &str) -> Result<StoredHash, String> {
        let (prefix, text) = match field.strip_prefix('{').and_then(|rest| rest.split_once('}')) {
            Some((name, text)) => (Some(name), text),
            None => (None, field),
        };
        let scheme = scheme_of(text)?;
        if let Some(name) = prefix {
            let allowed = DOVECOT_SCHEMES
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|(_, schemes)| *schemes)
                .ok_or_else(|| format!("unsupported password scheme {{{name}}} (crypt-style hashes only)"))?;
            if !allowed.contains(&scheme) {
                return Err(format!("a {{{name}}} prefix on a hash of another kind"));
            }
        }
        check_syntax(scheme, text)?;
        Ok(StoredHash { scheme, text: text.to_string() })
    }

    #[cfg(test)]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether `password` matches. Slow on purpose (bcrypt, argon2, yescrypt): call it off the
    /// async runtime.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self.scheme {
            Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
                sha_crypt::PasswordVerifier::verify_password(&ShaCrypt::default(), password, self.text.as_str()).is_ok()
            }
            Scheme::Bcrypt => bcrypt::verify(password, &self.text).unwrap_or(false),
            Scheme::Argon2 => Argon2::default().verify_password(password, self.text.as_str()).is_ok(),
            Scheme::Yescrypt => {
                yescrypt::PasswordVerifier::verify_password(&Yescrypt::default(), password, self.text.as_str()).is_ok()
            }
        }
    }
}

fn scheme_of(text: &str) -> Result<Scheme, String> {
    let id = text.strip_prefix('$').and_then(|rest| rest.split('$').next());
    Ok(match id {
        Some("6") => Scheme::Sha512Crypt,
        Some("5") => Scheme::Sha256Crypt,
        Some("2a" | "2b" | "2y" | "2x") => Scheme::Bcrypt,
        Some("argon2id" | "argon2i" | "argon2d") => Scheme::Argon2,
        Some("y") => Scheme::Yescrypt,
        Some(other) => return Err(format!("unsupported hash type ${other}$")),
        // Plain text, DES crypt, "*" or "!" (locked): never accepted.
        None => return Err("not a crypt-style hash ($6$, $5$, $2b$, $argon2id$, $y$)".to_string()),
    })
}

/// Catches broken hashes when the file is read rather than at each login (a broken hash would
/// also cost no time to "verify", which the dummy for unknown users relies on).
fn check_syntax(scheme: Scheme, text: &str) -> Result<(), String> {
    let ok = match scheme {
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            // $id$[rounds=N$]salt$hash; the hash is 86 (SHA-512) or 43 (SHA-256) characters.
            let length = if scheme == Scheme::Sha512Crypt { 86 } else { 43 };
            sha_crypt::PasswordHashRef::new(text).is_ok() && text.rsplit('$').next().is_some_and(|h| h.len() == length)
        }
        Scheme::Bcrypt => text.len() == 60 && bcrypt::HashParts::from_str(text).is_ok(),
        Scheme::Argon2 => argon2::PasswordHash::new(text)
            .is_ok_and(|hash| hash.salt.is_some() && hash.hash.is_some() && argon2::Params::try_from(&hash).is_ok()),
        Scheme::Yescrypt => yescrypt::PasswordHashRef::new(text).is_ok() && text.split('$').count() == 5,
    };
    if ok { Ok(()) } else { Err(format!("malformed {scheme:?} hash")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher as _;

    fn sha_crypt(algorithm: sha_crypt::Algorithm) -> String {
        let hasher = ShaCrypt::new(algorithm, sha_crypt::Params::new(5000).unwrap());
        sha_crypt::PasswordHasher::hash_password_with_salt(&hasher, b"s3cret pass", b"saltsaltsalt")
            .unwrap()
            .to_string()
    }

    fn argon2id() -> String {
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        hasher.hash_password_with_salt(b"s3cret pass", b"saltsaltsalt").unwrap().to_string()
    }

    /// Lighter than the default (N=4096, r=32), which takes a second in a debug build.
    fn yescrypt() -> String {
        let params = yescrypt::Params::new(yescrypt::Mode::Rw, 1024, 8, 1).unwrap();
        yescrypt::CustomizedPasswordHasher::hash_password_customized(
            &Yescrypt::default(),
            b"s3cret pass",
            b"saltsaltsalt",
            None,
            None,
            params,
        )
        .unwrap()
        .to_string()
    }

    fn check(text: &str, scheme: Scheme) {
        let hash = StoredHash::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(hash.scheme(), scheme, "{text}");
        assert!(hash.verify(b"s3cret pass"), "{text}");
        assert!(!hash.verify(b"s3cret pas"), "{text}");
        assert!(!hash.verify(b""), "{text}");
    }

    #[test]
    fn every_scheme_verifies() {
        let sha512 = sha_crypt(sha_crypt::Algorithm::Sha512Crypt);
        assert!(sha512.starts_with("$6$"), "{sha512}");
        check(&sha512, Scheme::Sha512Crypt);
        let sha256 = sha_crypt(sha_crypt::Algorithm::Sha256Crypt);
        assert!(sha256.starts_with("$5$"), "{sha256}");
        check(&sha256, Scheme::Sha256Crypt);
        let bcrypt = bcrypt::hash("s3cret pass", 4).unwrap();
        assert!(bcrypt.starts_with("$2b$"), "{bcrypt}");
        check(&bcrypt, Scheme::Bcrypt);
        // PHP's htpasswd and Dovecot write $2y$: the same algorithm.
        check(&bcrypt.replacen("$2b$", "$2y$", 1), Scheme::Bcrypt);
        let argon = argon2id();
        assert!(argon.starts_with("$argon2id$v=19$"), "{argon}");
        check(&argon, Scheme::Argon2);
        let yes = yescrypt();
        assert!(yes.starts_with("$y$"), "{yes}");
        check(&yes, Scheme::Yescrypt);
    }

    #[test]
    fn dovecot_prefixes() {
        check(&format!("{{SHA512-CRYPT}}{}", sha_crypt(sha_crypt::Algorithm::Sha512Crypt)), Scheme::Sha512Crypt);
        check(&format!("{{SHA256-CRYPT}}{}", sha_crypt(sha_crypt::Algorithm::Sha256Crypt)), Scheme::Sha256Crypt);
        let bcrypt = bcrypt::hash("s3cret pass", 4).unwrap().replacen("$2b$", "$2y$", 1);
        check(&format!("{{BLF-CRYPT}}{bcrypt}"), Scheme::Bcrypt);
        check(&format!("{{ARGON2ID}}{}", argon2id()), Scheme::Argon2);
        check(&format!("{{CRYPT}}{}", yescrypt()), Scheme::Yescrypt);
        check(&format!("{{blf-crypt}}{bcrypt}"), Scheme::Bcrypt);
        // A prefix that says one thing over a hash of another is a mistake worth refusing.
        assert!(StoredHash::parse(&format!("{{SHA512-CRYPT}}{bcrypt}")).is_err());
    }

    /// Hashes written by other programs (glibc crypt(3), OpenSSL, Dovecot's doveadm pw).
    #[test]
    fn hashes_from_other_programs() {
        // glibc's crypt(3) test vectors (its sha512crypt/sha256crypt papers) and OpenBSD's.
        let known = [
            ("$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"),
            (
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                "Hello world!",
            ),
            (
                "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
                "Hello world!",
            ),
            ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"),
        ];
        for (hash, password) in known {
            let parsed = StoredHash::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert!(parsed.verify(password.as_bytes()), "{hash}");
            assert!(!parsed.verify(b"wrong"), "{hash}");
        }
    }

    /// `openssl passwd -6` / `-5` where OpenSSL is installed (.ci/test installs it).
    #[test]
    fn openssl_hashes() {
        for flag in ["-6", "-5"] {
            let out =
                match std::process::Command::new("openssl").args(["passwd", flag, "-stdin"]).stdin_text("Hello world!")
                {
                    Some(out) => out,
                    None => {
                        eprintln!("note: openssl not found: openssl_hashes skipped");
                        return;
                    }
                };
            let hash = StoredHash::parse(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert!(hash.verify(b"Hello world!"), "{out}");
            assert!(!hash.verify(b"Hello world"), "{out}");
        }
    }

    trait StdinText {
        fn stdin_text(&mut self, text: &str) -> Option<String>;
    }

    impl StdinText for std::process::Command {
        fn stdin_text(&mut self, text: &str) -> Option<String> {
            use std::io::Write as _;
            use std::process::Stdio;
            let mut child = self.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
            child.stdin.take()?.write_all(text.as_bytes()).ok()?;
            let out = child.wait_with_output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    }

    /// The system's crypt(3) (glibc/libxcrypt, through /usr/bin/python3's crypt module where it
    /// still has one) computes the same strings from the same settings, and its own hashes verify.
    #[test]
    fn agrees_with_system_crypt() {
        let crypt = |password: &str, setting: &str| {
            let script = "import sys, warnings; warnings.simplefilter('ignore'); import crypt; \
                          print(crypt.crypt(sys.argv[1], sys.argv[2]) or '')";
            let out =
                std::process::Command::new("/usr/bin/python3").args(["-c", script, password, setting]).output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        if crypt("x", "$6$salt").is_none_or(|h| !h.starts_with("$6$")) {
            eprintln!("note: no crypt module in /usr/bin/python3: agrees_with_system_crypt skipped");
            return;
        }
        let ours = [
            sha_crypt(sha_crypt::Algorithm::Sha512Crypt),
            sha_crypt(sha_crypt::Algorithm::Sha256Crypt),
            bcrypt::hash("s3cret pass", 4).unwrap(),
            yescrypt(),
        ];
        for hash in &ours {
            assert_eq!(crypt("s3cret pass", hash).as_deref(), Some(hash.as_str()), "system crypt disagrees");
        }
        for setting in ["$6$Sy5ZcS3GEXUw3/TC", "$5$rounds=6000$Sy5ZcS3GEXUw3/TC", "$2b$04$DJeA3QNRu5yYFl4XKWbjUO"] {
            let theirs = crypt("s3cret pass", setting).unwrap();
            let hash = StoredHash::parse(&theirs).unwrap_or_else(|e| panic!("{theirs}: {e}"));
            assert!(hash.verify(b"s3cret pass"), "{theirs}");
            assert!(!hash.verify(b"s3cret pas"), "{theirs}");
        }
    }

    #[test]
    fn refused_hashes() {
        for (text, why) in [
            ("plaintext", "not a crypt-style"),
            ("{PLAIN}secret", "not a crypt-style"),
            ("{PLAIN}$6$abc$def", "unsupported password scheme"),
            ("$1$saltsalt$abcdefghijklmnopqrstuv", "unsupported hash type $1$"),
            ("*", "not a crypt-style"),
            ("!$6$salt$hash", "not a crypt-style"),
            ("$2b$10$short", "malformed"),
            ("$argon2id$v=19$m=nope", "malformed"),
            ("$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0", "malformed"),
            ("$6$abc$def", "malformed"),
            ("$5$rounds=1000$abc$def", "malformed"),
            ("$y$j9T$salt", "malformed"),
            ("", "not a crypt-style"),
        ] {
            let error = StoredHash::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
