//! The outbox: one revision's thread, frozen when sending starts, and a
//! journal of what the server took. A send that stops half way (the
//! connection drops after message k) resumes from the frozen thread, so
//! messages k+1..M go out once each with the Message-Ids and Dates the
//! first k had beside them.
//!
//! `<cache>/outbox/<change-id>-v<N>/`: `thread.json` (what is sent),
//! `thread.mbox` (the same, for people and b4), `journal` (one line per
//! message the server accepted: Message-Id, time).

use anyhow::{bail, Context, Result};
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::{Address, Transport};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Thread;

/// One message as it goes on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outgoing {
    pub message_id: String,
    pub subject: String,
    /// Envelope sender, a bare address.
    pub from: String,
    /// The To and Cc headers' recipients, as written there.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Headers and body, lines ending in LF.
    pub raw: String,
}

/// A revision's thread as frozen for sending, and the commits it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frozen {
    /// The base commit and the last patch's commit (testing patches left
    /// out): what `sent/` tags once every message went.
    pub base: String,
    pub tip: String,
    pub messages: Vec<Outgoing>,
}

#[derive(Debug)]
pub struct Outbox {
    pub dir: PathBuf,
    pub frozen: Frozen,
}

/// The address of `Name <address>` or `address`, as lettre parses it.
fn bare(r: &str) -> Result<Address> {
    r.parse::<Mailbox>()
        .map(|m| m.email)
        .with_context(|| format!("`{r}` is not a mail address"))
}

/// LF to CRLF, as SMTP wants it (lettre dot-stuffs only after CRLF).
fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The messages of `thread` as they go on the wire; no I/O.
pub fn outgoing(thread: &Thread) -> Result<Vec<Outgoing>> {
    (0..thread.messages.len())
        .map(|k| {
            let m = &thread.messages[k];
            if m.recipients.to.is_empty() && m.recipients.cc.is_empty() {
                bail!("{}: no recipient (To or Cc)", m.subject);
            }
            Ok(Outgoing {
                message_id: m.message_id.clone(),
                subject: m.subject.clone(),
                from: bare(&thread.from)?.to_string(),
                to: m.recipients.to.clone(),
                cc: m.recipients.cc.clone(),
                raw: format!(
                    "{}\n{}\n",
                    thread.headers(k)?,
                    m.body.trim_end_matches('\n')
                ),
            })
        })
        .collect()
}

impl Outbox {
    pub fn dir_for(cache: &Path, change_id: &str, version: u32) -> PathBuf {
        cache.join("outbox").join(format!("{change_id}-v{version}"))
    }

    /// Freezes `thread` in `dir` for sending. Refuses when a send of it
    /// was started already (that one is resumed, never started over).
    pub fn create(dir: &Path, thread: &Thread, base: git2::Oid, tip: git2::Oid) -> Result<Outbox> {
        let outbox = Outbox::build(dir, thread, base, tip)?;
        let sent = outbox.sent()?;
        if !sent.is_empty() {
            bail!(
                "{} of this revision's {} messages were sent already ({}): \
                 `zcsplice send --resume` sends the rest; a revision is never sent twice",
                sent.len(),
                outbox.frozen.messages.len(),
                outbox.journal().display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join("thread.json");
        std::fs::write(&json, serde_json::to_string_pretty(&outbox.frozen)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        std::fs::write(outbox.mbox(), thread.mbox()?)
            .with_context(|| format!("cannot write {}", outbox.mbox().display()))?;
        Ok(outbox)
    }

    /// A dry run: what `create` would freeze, written only as
    /// `dry-run.mbox` (a send under way keeps its frozen thread).
    pub fn preview(
        dir: &Path,
        thread: &Thread,
        base: git2::Oid,
        tip: git2::Oid,
    ) -> Result<(Outbox, PathBuf)> {
        let outbox = Outbox::build(dir, thread, base, tip)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mbox = dir.join("dry-run.mbox");
        std::fs::write(&mbox, thread.mbox()?)
            .with_context(|| format!("cannot write {}", mbox.display()))?;
        Ok((outbox, mbox))
    }

    /// An outbox in `dir` for `thread`; no I/O.
    fn build(dir: &Path, thread: &Thread, base: git2::Oid, tip: git2::Oid) -> Result<Outbox> {
        let messages = outgoing(thread)?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            frozen: Frozen {
                base: base.to_string(),
                tip: tip.to_string(),
                messages,
            },
        })
    }

    /// The thread frozen by an earlier send, to resume it.
    pub fn open(dir: &Path) -> Result<Outbox> {
        let json = dir.join("thread.json");
        let text = std::fs::read_to_string(&json).with_context(|| {
            format!(
                "nothing to resume: no send of this revision was started ({} is missing)",
                json.display()
            )
        })?;
        let frozen = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a thread zcsplice wrote", json.display()))?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            frozen,
        })
    }

    pub fn mbox(&self) -> PathBuf {
        self.dir.join("thread.mbox")
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// The Message-Ids the server accepted, in the order it did.
    pub fn sent(&self) -> Result<Vec<String>> {
        match std::fs::read_to_string(self.journal()) {
            Ok(t) => Ok(t
                .lines()
                .filter_map(|l| l.split('\t').next())
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.journal().display())),
        }
    }

    /// Sends every message the journal does not list, in order, through
    /// `transport`; each is journaled (and synced) once the server took
    /// it. `each` hears of every message before it goes. Returns how many
    /// were sent now.
    pub fn send(
        &self,
        transport: &impl Transport<Error = impl std::error::Error + Send + Sync + 'static>,
        mut each: impl FnMut(usize, &Outgoing),
    ) -> Result<usize> {
        let done = self.sent()?;
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.journal())
            .with_context(|| format!("cannot open {}", self.journal().display()))?;
        let total = self.frozen.messages.len();
        let mut now = 0;
        for (k, m) in self.frozen.messages.iter().enumerate() {
            if done.contains(&m.message_id) {
                continue;
            }
            each(k, m);
            let rcpt =
                m.to.iter()
                    .chain(&m.cc)
                    .map(|r| bare(r))
                    .collect::<Result<Vec<_>>>()?;
            let envelope = Envelope::new(Some(m.from.parse()?), rcpt)?;
            if let Err(e) = transport.send_raw(&envelope, crlf(&m.raw).as_bytes()) {
                let sent = done.len() + now;
                return Err(anyhow::Error::new(e).context(format!(
                    "\"{}\" <{}> was not sent; {sent} of the {total} messages were: \
                     `zcsplice send --resume` sends the rest with the same Message-Ids",
                    m.subject, m.message_id,
                )));
            }
            writeln!(
                journal,
                "{}\t{}",
                m.message_id,
                chrono::Utc::now().to_rfc3339()
            )?;
            journal.sync_data()?;
            now += 1;
        }
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_gets_crlf_lines() {
        assert_eq!(crlf("a\n.b\r\nc\n"), "a\r\n.b\r\nc\r\n");
    }

    #[test]
    fn a_named_recipient_is_sent_to_its_address() {
        assert_eq!(
            bare("Some One <one@example.org>").unwrap().to_string(),
            "one@example.org"
        );
        assert!(bare("not an address").is_err());
    }
}
