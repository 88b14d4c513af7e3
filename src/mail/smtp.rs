//! Where mail goes: the SMTP settings `git send-email` reads (the tree's
//! git config, which includes the user's and the system's), and a
//! transport over lettre built from them.

use anyhow::{bail, Context, Result};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::SmtpTransport;
use std::path::Path;
use std::time::Duration;

/// The environment variable that holds the SMTP password, before
/// `sendemail.smtpPass` and `git credential`.
pub const PASSWORD_ENV: &str = "ZCSPLICE_SMTP_PASSWORD";

/// How the connection is protected (`sendemail.smtpEncryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// `ssl`: TLS from the first byte (port 465).
    Ssl,
    /// `tls`: STARTTLS (port 587).
    StartTls,
    /// `none` or unset: plain SMTP (port 25), as git send-email does.
    None,
}

/// The settings of one SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: String,
    pub port: u16,
    pub encryption: Encryption,
    pub user: Option<String>,
    /// Where the password comes from, for messages (never the password).
    pub password_from: Option<String>,
    password: Option<String>,
}

impl Settings {
    /// Reads `sendemail.*` from the git config of `tree` (the repository's,
    /// the user's and the system's); the password from PASSWORD_ENV, else
    /// `sendemail.smtpPass`, else `git credential fill` when a user is set.
    pub fn from_git(tree: &Path) -> Result<Settings> {
        let repo = git2::Repository::open(tree)
            .with_context(|| format!("{} is not a git repository", tree.display()))?;
        let cfg = repo.config()?.snapshot()?;
        let get = |k: &str| cfg.get_string(k).ok().filter(|v| !v.trim().is_empty());
        let env_password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let mut s = Settings::parse(&get, env_password)?;
        if s.password.is_none() {
            if let Some(user) = s.user.clone() {
                s.password = credential_fill(tree, &s, &user)?;
                s.password_from = Some("git credential".into());
            }
        }
        Ok(s)
    }

    /// The settings from config values `get` (key -> value); no I/O.
    fn parse(get: &dyn Fn(&str) -> Option<String>, env_password: Option<String>) -> Result<Self> {
        let Some(server) = get("sendemail.smtpServer") else {
            bail!(
                "no SMTP server: set it as for git send-email, e.g. \
                 `git config --global sendemail.smtpServer smtp.example.org` \
                 (and sendemail.smtpServerPort, sendemail.smtpEncryption, sendemail.smtpUser)"
            );
        };
        if server.starts_with('/') {
            bail!(
                "sendemail.smtpServer is {server}, a sendmail program: zcsplice sends by SMTP \
                 only; set sendemail.smtpServer to a host name"
            );
        }
        let encryption = match get("sendemail.smtpEncryption").as_deref() {
            Some("ssl") => Encryption::Ssl,
            Some("tls") => Encryption::StartTls,
            Some("none") | None => Encryption::None,
            Some(other) => bail!(
                "sendemail.smtpEncryption is `{other}`: git send-email knows `ssl` (TLS, port 465), \
                 `tls` (STARTTLS, port 587) and `none`"
            ),
        };
        let port = match get("sendemail.smtpServerPort") {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .with_context(|| {
                    format!("sendemail.smtpServerPort is `{p}`: a port is a number from 1 to 65535")
                })?,
            None => match encryption {
                Encryption::Ssl => 465,
                Encryption::StartTls => 587,
                Encryption::None => 25,
            },
        };
        let (password, password_from) = match (env_password, get("sendemail.smtpPass")) {
            (Some(p), _) => (Some(p), Some(PASSWORD_ENV.to_string())),
            (None, Some(p)) => (Some(p), Some("sendemail.smtpPass".to_string())),
            (None, None) => (None, None),
        };
        Ok(Settings {
            server,
            port,
            encryption,
            user: get("sendemail.smtpUser"),
            password_from,
            password,
        })
    }

    /// `host:port (encryption[, as user])`, for messages.
    pub fn describe(&self) -> String {
        let enc = match self.encryption {
            Encryption::Ssl => "TLS",
            Encryption::StartTls => "STARTTLS",
            Encryption::None => "no encryption",
        };
        match &self.user {
            Some(u) => format!("{}:{} ({enc}, as {u})", self.server, self.port),
            None => format!("{}:{} ({enc})", self.server, self.port),
        }
    }

    /// A transport that opens one connection per message.
    pub fn transport(&self) -> Result<SmtpTransport> {
        let tls = || TlsParameters::new(self.server.clone()).context("TLS setup");
        let mut b = SmtpTransport::builder_dangerous(&self.server)
            .port(self.port)
            .timeout(Some(Duration::from_secs(60)));
        b = match self.encryption {
            Encryption::Ssl => b.tls(Tls::Wrapper(tls()?)),
            Encryption::StartTls => b.tls(Tls::Required(tls()?)),
            Encryption::None => b.tls(Tls::None),
        };
        if let Some(user) = &self.user {
            let Some(pass) = &self.password else {
                bail!(
                    "sendemail.smtpUser is {user} but there is no password: set {PASSWORD_ENV}, \
                     sendemail.smtpPass or a git credential helper"
                );
            };
            b = b.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(b.build())
    }
}

/// Asks `git credential fill` for the password of `user` on the server, as
/// git send-email does (protocol smtp, host:port). None when no helper
/// knows it.
fn credential_fill(tree: &Path, s: &Settings, user: &str) -> Result<Option<String>> {
    let input = format!(
        "protocol=smtp\nhost={}:{}\nusername={user}\n\n",
        s.server, s.port
    );
    let out = duct::cmd!("git", "credential", "fill")
        .dir(tree)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin_bytes(input)
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .context("cannot run git credential fill")?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kv: &[(&str, &str)], env: Option<&str>) -> Result<Settings> {
        let map: std::collections::HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(&|k| map.get(k).cloned(), env.map(str::to_string))
    }

    #[test]
    fn the_port_follows_the_encryption_as_in_git_send_email() {
        let s = parse(&[("sendemail.smtpServer", "smtp.example.org")], None).unwrap();
        assert_eq!((s.port, s.encryption), (25, Encryption::None));
        let s = parse(
            &[
                ("sendemail.smtpServer", "smtp.example.org"),
                ("sendemail.smtpEncryption", "ssl"),
            ],
            None,
        )
        .unwrap();
        assert_eq!((s.port, s.encryption), (465, Encryption::Ssl));
        let s = parse(
            &[
                ("sendemail.smtpServer", "smtp.example.org"),
                ("sendemail.smtpEncryption", "tls"),
                ("sendemail.smtpServerPort", "2525"),
                ("sendemail.smtpUser", "me"),
            ],
            None,
        )
        .unwrap();
        assert_eq!((s.port, s.encryption), (2525, Encryption::StartTls));
        assert_eq!(s.describe(), "smtp.example.org:2525 (STARTTLS, as me)");
    }

    #[test]
    fn the_password_comes_from_the_environment_first() {
        let kv = [
            ("sendemail.smtpServer", "smtp.example.org"),
            ("sendemail.smtpPass", "from-config"),
        ];
        let s = parse(&kv, Some("from-env")).unwrap();
        assert_eq!(s.password.as_deref(), Some("from-env"));
        assert_eq!(s.password_from.as_deref(), Some(PASSWORD_ENV));
        let s = parse(&kv, None).unwrap();
        assert_eq!(s.password.as_deref(), Some("from-config"));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = parse(&[], None).unwrap_err().to_string();
        assert!(e.contains("sendemail.smtpServer"), "{e}");
        let e = parse(
            &[
                ("sendemail.smtpServer", "smtp.example.org"),
                ("sendemail.smtpEncryption", "starttls"),
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sendemail.smtpEncryption is `starttls`"), "{e}");
        let e = parse(
            &[
                ("sendemail.smtpServer", "smtp.example.org"),
                ("sendemail.smtpServerPort", "smtp"),
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sendemail.smtpServerPort is `smtp`"), "{e}");
        let e = parse(&[("sendemail.smtpServer", "/usr/sbin/sendmail")], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a sendmail program"), "{e}");
    }
}
