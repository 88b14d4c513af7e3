//! The series as mail: one thread of messages, the cover letter and then
//! the patches (never the testing patches), with the identity and
//! threading headers that mail clients and b4 rely on, written as an mbox.
//!
//! As b4 does it: every message has a Message-Id made of the series'
//! change-id, its revision, its number and a hash of its content; every
//! patch is In-Reply-To and References the cover letter; the Date headers
//! are one second apart, in order, so that clients sort the thread as sent.

pub mod checkpatch;
pub mod outbox;
pub mod recipients;
pub mod smtp;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset};
use lettre::message::header::{self, Headers};
use lettre::message::Mailboxes;

use crate::series::render::Rendered;
use recipients::{Overrides, Recipients};

/// One message of the thread.
#[derive(Debug, Clone)]
pub struct Message {
    /// 0 for the cover letter, else the patch's number.
    pub number: usize,
    /// The whole subject, with its `[PREFIX vN m/M]` tag.
    pub subject: String,
    /// The commit a patch makes (zero for the cover letter): the mbox
    /// separator line names it, as `git format-patch` does.
    pub commit: git2::Oid,
    /// Without the angle brackets.
    pub message_id: String,
    pub date: DateTime<FixedOffset>,
    pub body: String,
    pub recipients: Recipients,
}

/// The series' messages, the cover letter first, and who sends them.
#[derive(Debug, Clone)]
pub struct Thread {
    /// `Name <address>`.
    pub from: String,
    pub messages: Vec<Message>,
}

impl Thread {
    /// The thread of `r`, revision `version` of the series `change_id`,
    /// sent by `from` (`Name <address>`) with the first Date `start`.
    pub fn new(
        r: &Rendered,
        change_id: &str,
        version: u32,
        from: &str,
        start: DateTime<FixedOffset>,
    ) -> Result<Thread> {
        let domain = from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').trim())
            .filter(|d| !d.is_empty())
            .unwrap_or("localhost");
        let mut parts = vec![(
            0,
            git2::Oid::zero(),
            r.cover_subject.clone(),
            r.cover_body.clone(),
        )];
        for p in &r.patches {
            parts.push((p.number, p.commit, p.tagged_subject.clone(), p.body.clone()));
        }
        let messages = parts
            .into_iter()
            .map(|(number, commit, subject, body)| {
                if let Some(l) = body.lines().find(|l| l.starts_with("From ")) {
                    bail!("{subject}: a body line starts with \"From \", which an mbox cannot hold: {l}");
                }
                let hash = git2::Oid::hash_object(git2::ObjectType::Blob, format!("{subject}\n{body}").as_bytes())?;
                Ok(Message {
                    number,
                    message_id: format!(
                        "{change_id}-v{version}-{number}-{}@{domain}",
                        &hash.to_string()[..12]
                    ),
                    date: start + chrono::Duration::seconds(number as i64),
                    subject,
                    commit,
                    body,
                    recipients: Recipients::default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Thread {
            from: from.to_string(),
            messages,
        })
    }

    /// The headers of message `k`, folded and encoded as RFC 5322 wants,
    /// lines ending in LF.
    pub fn headers(&self, k: usize) -> Result<String> {
        let m = &self.messages[k];
        let mut h = Headers::new();
        h.set(header::From::from(mailboxes(std::slice::from_ref(
            &self.from,
        ))?));
        if !m.recipients.to.is_empty() {
            h.set(header::To::from(mailboxes(&m.recipients.to)?));
        }
        if !m.recipients.cc.is_empty() {
            h.set(header::Cc::from(mailboxes(&m.recipients.cc)?));
        }
        h.set(header::Date::new(m.date.into()));
        h.set(header::Subject::from(m.subject.clone()));
        h.set(header::MessageId::from(format!("<{}>", m.message_id)));
        if k > 0 {
            let cover = format!("<{}>", self.messages[0].message_id);
            h.set(header::InReplyTo::from(cover.clone()));
            h.set(header::References::from(cover));
        }
        Ok(h.to_string().replace("\r\n", "\n"))
    }

    /// Sets each patch's recipients (`per_patch`, in order) and the cover
    /// letter's (their union), adjusted by the user's `o`.
    pub fn address(&mut self, per_patch: &[Recipients], o: &Overrides) {
        let union = per_patch
            .iter()
            .fold(Recipients::default(), |u, r| u.union(r));
        for m in &mut self.messages {
            let r = match m.number {
                0 => &union,
                n => &per_patch[n - 1],
            };
            m.recipients = r.adjusted(o);
        }
    }

    /// The thread as one mbox, as `git format-patch --stdout` writes one.
    pub fn mbox(&self) -> Result<String> {
        let mut out = String::new();
        for (k, m) in self.messages.iter().enumerate() {
            out.push_str(&format!("From {} Mon Sep 17 00:00:00 2001\n", m.commit));
            out.push_str(&self.headers(k)?);
            out.push('\n');
            out.push_str(m.body.trim_end_matches('\n'));
            out.push_str("\n\n");
        }
        Ok(out)
    }
}

/// Runs the tree's `scripts/<script>` (perl) on a patch email, in the
/// tree, with `args` before the email's file; stdout and stderr captured,
/// the exit status left to the caller. A tree without the script is an
/// error that says so, with `hint`.
fn tree_script(
    tree: &std::path::Path,
    script: &str,
    args: &[&str],
    email: &str,
    hint: &str,
) -> Result<std::process::Output> {
    if !tree.join("scripts").join(script).exists() {
        bail!("{} has no scripts/{script}{hint}", tree.display());
    }
    let mut f = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut f, email.as_bytes())?;
    let script = format!("scripts/{script}");
    let mut argv: Vec<std::ffi::OsString> = vec![script.clone().into()];
    argv.extend(args.iter().map(|a| a.into()));
    argv.push(f.path().into());
    duct::cmd("perl", argv)
        .dir(tree)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run perl {script}"))
}

/// Recipients as lettre's mailboxes: each one parsed on its own, so that
/// an error names it.
fn mailboxes(list: &[String]) -> Result<Mailboxes> {
    list.iter().try_fold(Mailboxes::new(), |acc, r| {
        Ok(acc.with(
            r.parse()
                .with_context(|| format!("`{r}` is not a mail address"))?,
        ))
    })
}

/// The checkpatch gate: what the user asks of it.
#[derive(Debug, Clone, Default)]
pub enum Gate {
    /// Every patch must be clean.
    #[default]
    Strict,
    /// Go on past it; the cover letter says why.
    Override(String),
    /// Do not run checkpatch (files only, never for sending).
    Skip,
}

/// Runs the gate on the rendered patches; returns the note for the cover
/// letter when the user overrode a failure.
fn gate(tree: &std::path::Path, r: &Rendered, g: &Gate) -> Result<Option<String>> {
    if matches!(g, Gate::Skip) {
        return Ok(None);
    }
    let mut failed = Vec::new();
    for p in &r.patches {
        let v = checkpatch::check(tree, &p.tagged_subject, &p.email)?;
        if !v.clean() {
            failed.push(v);
        }
    }
    if failed.is_empty() {
        log::info!("checkpatch.pl --strict: {} patches clean", r.patches.len());
        return Ok(None);
    }
    match g {
        Gate::Override(why) => Ok(Some(checkpatch::override_note(why, &failed))),
        _ => {
            let reports: Vec<String> = failed
                .iter()
                .map(|v| format!("{}:\n{}", v.subject, v.report))
                .collect();
            bail!(
                "checkpatch.pl --strict is not clean on {} patch(es); fix the series, or \
                 pass --checkpatch-override \"REASON\" to go on (the cover letter says why):\n\n{}",
                failed.len(),
                reports.join("\n\n")
            )
        }
    }
}

/// The cover letter's body with `note` before its trailers (base-commit:).
fn with_note(body: &str, note: &str) -> String {
    match body.find("\nbase-commit: ") {
        Some(at) => format!("{}\n{note}{}", &body[..at + 1], &body[at + 1..]),
        None => format!("{}\n\n{note}", body.trim_end()),
    }
}

/// The revision sent before this one, as its `sent/` tag records it.
struct Previous {
    version: u32,
    base: String,
    tip: git2::Oid,
    /// Its cover letter's, for the "Link to vN-1" line.
    message_id: Option<String>,
}

/// Revision `version - 1` of `change_id`, if this tree sent it.
fn previous(repo: &git2::Repository, change_id: &str, version: u32) -> Result<Option<Previous>> {
    if version < 2 {
        return Ok(None);
    }
    let tag = sent_tag(change_id, version - 1);
    let Ok(r) = repo.find_reference(&format!("refs/tags/{tag}")) else {
        return Ok(None);
    };
    let text = r
        .peel_to_tag()
        .ok()
        .and_then(|t| t.message().map(str::to_string));
    let field = |key: &str| {
        text.as_deref()?
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches(['<', '>']).to_string())
    };
    let Some(base) = field("base-commit: ") else {
        bail!("tag {tag} has no base-commit: line; it was not made by zcsplice send");
    };
    Ok(Some(Previous {
        version: version - 1,
        base,
        tip: r.peel_to_commit()?.id(),
        message_id: field("message-id: "),
    }))
}

/// b4's link to a message: `b4.linkmask` of the tree's git config (a
/// `%s` for the Message-Id), else b4's default, patch.msgid.link.
fn link_to(tree: &std::path::Path, message_id: &str) -> String {
    let mask = git2::Repository::open(tree)
        .and_then(|r| r.config())
        .and_then(|c| c.get_string("b4.linkmask"))
        .ok()
        .filter(|m| m.contains("%s"))
        .unwrap_or_else(|| "https://patch.msgid.link/%s".into());
    mask.replacen("%s", message_id, 1)
}

/// The cover letter with what a reviewer of vN wants of vN-1: a link to
/// it after the changelog, and `git range-diff` of the two revisions.
fn with_previous(
    body: &str,
    changes: Option<&str>,
    p: &Previous,
    tree: &std::path::Path,
    base: git2::Oid,
    tip: git2::Oid,
) -> Result<String> {
    let mut body = body.to_string();
    if let (Some(ch), Some(id)) = (changes, &p.message_id) {
        let link = format!("{ch}\n- Link to v{}: {}", p.version, link_to(tree, id));
        body = body.replacen(ch, &link, 1);
    }
    let diff = duct::cmd!(
        "git",
        "range-diff",
        "--no-color",
        format!("{}..{}", p.base, p.tip),
        format!("{base}..{tip}")
    )
    .dir(tree)
    .stderr_capture()
    .read()
    .with_context(|| format!("git range-diff against v{} failed", p.version))?;
    Ok(with_note(
        &body,
        &format!(
            "Range-diff against v{}:\n{}\n\n",
            p.version,
            diff.trim_end()
        ),
    ))
}

/// What `format` wrote.
pub struct Formatted {
    pub mbox: std::path::PathBuf,
    pub thread: Thread,
}

/// A revision's thread, ready to write or send.
struct Prepared {
    thread: Thread,
    base: git2::Oid,
    /// The last patch's commit (testing patches left out).
    tip: git2::Oid,
    change_id: String,
    version: u32,
    /// The `tree import` line of the base commit, when zcsplice made it.
    imported: Option<String>,
}

/// Renders the series for `spec`, gates it and addresses it, sent by
/// `from` (`Name <address>`; default: the series' author) with Dates from
/// now. With `keep`, the rendered commits stay in the tree's object store
/// (a `sent/` tag will point at them); else the store is left untouched.
fn prepare(
    env: &crate::env::Env,
    spec: &crate::tree::TreeSpec,
    from: Option<&str>,
    o: &Overrides,
    g: &Gate,
    keep: bool,
) -> Result<Prepared> {
    let l = crate::series::load(env, spec)?;
    let m = &l.series.manifest;
    let prev = previous(&l.tree.repo, &m.change_id, m.version)?;
    // A range-diff needs the new commits where git can see them.
    let odb = l.tree.repo.odb()?;
    let _mempack = match keep || prev.is_some() {
        true => None,
        false => Some(odb.add_new_mempack_backend(1000)?),
    };
    let mut r = crate::series::render::render(&l.series, &l.tree, &l.probed)
        .map_err(crate::exit::untestable)?;
    let tip = r.patches.last().map_or(r.base, |p| p.commit);
    if let Some(p) = &prev {
        r.cover_body = with_previous(
            &r.cover_body,
            r.changes.as_deref(),
            p,
            &spec.path,
            r.base,
            tip,
        )?;
    }
    if let Some(note) = gate(&spec.path, &r, g)? {
        r.cover_body = with_note(&r.cover_body, &note);
    }
    let author = format!("{} <{}>", m.author.name, m.author.email);
    let from = from.unwrap_or(&author);
    let now = chrono::Local::now().fixed_offset();
    // Sent by someone else than the author: git am must still credit the
    // author, so each patch starts with an in-body From: (git send-email
    // does the same).
    if from != author {
        for p in &mut r.patches {
            p.body = format!("From: {author}\n\n{}", p.body);
        }
    }
    let mut thread = Thread::new(&r, &m.change_id, m.version, from, now)?;
    let per_patch = r
        .patches
        .iter()
        .map(|p| match o.no_maintainers {
            true => Ok(Recipients::default()),
            false => recipients::of_patch(&spec.path, &p.email),
        })
        .collect::<Result<Vec<_>>>()?;
    thread.address(&per_patch, o);
    let base_commit = l.tree.repo.find_commit(r.base)?;
    Ok(Prepared {
        base: r.base,
        tip,
        change_id: m.change_id.clone(),
        version: m.version,
        imported: crate::tree::import::marker_line(&base_commit),
        thread,
    })
}

/// Renders the series for `spec` (the user's object store untouched) and
/// writes its thread to `<out>/<change-id>-v<N>.mbox`.
pub fn format_to(
    env: &crate::env::Env,
    spec: &crate::tree::TreeSpec,
    out: &std::path::Path,
    from: Option<&str>,
    o: &Overrides,
    g: &Gate,
) -> Result<Formatted> {
    let p = prepare(env, spec, from, o, g, false)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mbox = out.join(format!("{}-v{}.mbox", p.change_id, p.version));
    std::fs::write(&mbox, p.thread.mbox()?)
        .with_context(|| format!("cannot write {}", mbox.display()))?;
    Ok(Formatted {
        mbox,
        thread: p.thread,
    })
}

/// What `send` is asked to do.
pub struct SendRequest<'a> {
    pub from: Option<&'a str>,
    pub overrides: &'a Overrides,
    /// Strict or overridden: sending always runs checkpatch.
    pub gate: &'a Gate,
    /// Really send; without it, a dry run that opens no connection.
    pub confirm: bool,
    /// Go on with the send of this revision that stopped half way.
    pub resume: bool,
    /// The user says the base commit exists upstream.
    pub base_is_upstream: bool,
}

/// What `send` did.
pub enum SendOutcome {
    /// Nothing sent: the thread that would be, and its mbox.
    DryRun(outbox::Outbox, std::path::PathBuf),
    /// Every message is out; `now` of them in this call.
    Sent {
        outbox: outbox::Outbox,
        now: usize,
        server: String,
        tag: String,
    },
}

/// The `sent/` tag of a revision, as b4 names its own.
pub fn sent_tag(change_id: &str, version: u32) -> String {
    format!("sent/{change_id}-v{version}")
}

/// Sends the series as revision N of its thread, or shows what would be
/// sent. `each` hears of every message before it goes.
pub fn send(
    env: &crate::env::Env,
    spec: &crate::tree::TreeSpec,
    req: &SendRequest,
    each: impl FnMut(usize, &outbox::Outgoing),
) -> Result<SendOutcome> {
    let series = crate::series::Series::load(&env.series)?;
    let (change_id, version) = (&series.manifest.change_id, series.manifest.version);
    let dir = outbox::Outbox::dir_for(&env.cache, change_id, version);
    let tag = sent_tag(change_id, version);
    let repo = git2::Repository::open(&spec.path)
        .with_context(|| format!("{} is not a git repository", spec.path.display()))?;
    if repo.refname_to_id(&format!("refs/tags/{tag}")).is_ok() {
        bail!(
            "revision {version} was sent already (tag {tag} in {}): raise `version` in \
             patches/series.yaml to send the next one",
            spec.path.display()
        );
    }
    let outbox = match req.resume {
        true => outbox::Outbox::open(&dir)?,
        false => {
            let p = prepare(env, spec, req.from, req.overrides, req.gate, req.confirm)?;
            if let (Some(line), false) = (&p.imported, req.base_is_upstream) {
                let msg = format!(
                    "the base {} is not an upstream commit: `tree import` made it ({line}), so \
                     the base-commit: line names a commit nobody else has. Send from a tree whose \
                     base is an upstream commit, or pass --base-is-upstream if this tree's \
                     content is exactly an upstream commit's",
                    &p.base.to_string()[..12]
                );
                match req.confirm {
                    true => bail!("{msg}"),
                    false => log::warn!("{msg}"),
                }
            }
            match req.confirm {
                true => outbox::Outbox::create(&dir, &p.thread, p.base, p.tip)?,
                false => {
                    let (o, mbox) = outbox::Outbox::preview(&dir, &p.thread, p.base, p.tip)?;
                    return Ok(SendOutcome::DryRun(o, mbox));
                }
            }
        }
    };
    let settings = smtp::Settings::from_git(&spec.path)?;
    let transport = settings.transport()?;
    let now = outbox
        .send(&transport, each)
        .map_err(crate::exit::infrastructure)?;
    let tip = git2::Oid::from_str(&outbox.frozen.tip)?;
    let target = repo.find_object(tip, None).with_context(|| {
        format!(
            "the sent series' commit {tip} is not in {}",
            spec.path.display()
        )
    })?;
    let cover = outbox.frozen.messages.first();
    // The user's identity, else the sender's: the mail is out already.
    let sender = cover.map_or("zcsplice", |m| m.from.as_str());
    let sig = repo
        .signature()
        .or_else(|_| git2::Signature::now(sender, sender))?;
    repo.tag(
        &tag,
        &target,
        &sig,
        &format!(
            "{}\n\nSent by zcsplice send.\nbase-commit: {}\nmessage-id: <{}>\n",
            cover.map_or("", |m| m.subject.as_str()),
            outbox.frozen.base,
            cover.map_or("", |m| m.message_id.as_str())
        ),
        false,
    )?;
    Ok(SendOutcome::Sent {
        outbox,
        now,
        server: settings.describe(),
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_note_goes_before_the_trailers() {
        let body = "Hello.\n\n---\nbase-commit: abc\nchange-id: x\n\n";
        assert_eq!(
            with_note(body, "Sent anyway: why\n"),
            "Hello.\n\n---\n\nSent anyway: why\nbase-commit: abc\nchange-id: x\n\n"
        );
    }
}
