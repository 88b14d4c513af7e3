//! Rendering: the series definition + the tree's facts -> file contents ->
//! a chain of commits on the base -> `git format-patch`-style emails.
//!
//! Diffs are made by git from real blobs of the tree, so their context is
//! exact by construction, and `git am` of the emails reproduces the commits'
//! trees.

use anyhow::{anyhow, bail, Context, Result};
use git2::{build::TreeUpdateBuilder, DiffOptions, FileMode, Oid, Repository, Signature, Time};
use minijinja::{context, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::series::edit;
use crate::series::probe::Probed;
use crate::series::template::Templates;
use crate::series::{At, PatchDef, Series};
use crate::tree::Tree;

pub struct RenderedPatch {
    pub number: usize,
    /// The definition's name: its file name without the number and `.yaml`
    /// (`0013-gift-donor.yaml`: `gift-donor`).
    pub name: String,
    pub subject: String,
    /// The subject with its `[PREFIX vN m/M]` tag.
    pub tagged_subject: String,
    pub commit: Oid,
    /// The email's body: the commit message body, diffstat and diff.
    pub body: String,
    /// The whole `git format-patch` email.
    pub email: String,
}

pub struct Excluded {
    pub subject: String,
    pub reason: String,
}

pub struct Rendered {
    pub base: Oid,
    pub patches: Vec<RenderedPatch>,
    /// Committed after the series, never sent (see `testing` in series.yaml).
    pub testing: Vec<RenderedPatch>,
    pub excluded: Vec<Excluded>,
    /// The cover letter as an email, and its subject and body.
    pub cover: String,
    pub cover_subject: String,
    pub cover_body: String,
    /// The cover letter's "Changes in vN", rendered for this tree (patch
    /// numbers differ between trees).
    pub changes: Option<String>,
}

impl Rendered {
    /// The last commit of the series (the base when every patch was left out).
    pub fn tip(&self) -> Oid {
        self.testing
            .last()
            .or(self.patches.last())
            .map_or(self.base, |p| p.commit)
    }

    /// How many patches: "2", or "2 + 1 testing".
    pub fn count(&self) -> String {
        match self.testing.len() {
            0 => self.patches.len().to_string(),
            t => format!("{} + {t} testing", self.patches.len()),
        }
    }

    /// `NNNN-<slug>.patch` file names, cover letter first.
    pub fn files(&self) -> Vec<(String, &str)> {
        let mut out = vec![("0000-cover-letter.patch".to_string(), self.cover.as_str())];
        for p in &self.patches {
            out.push((
                format!("{:04}-{}.patch", p.number, slug(&p.subject)),
                p.email.as_str(),
            ));
        }
        for p in &self.testing {
            out.push((
                format!("testing/{:04}-{}.patch", p.number, slug(&p.subject)),
                p.email.as_str(),
            ));
        }
        out
    }
}

/// The file-name slug `git format-patch` derives from a subject.
pub fn slug(subject: &str) -> String {
    let mut s = String::new();
    for c in subject.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches(|c| c == '-' || c == '.');
    let mut s: String = s.chars().take(64).collect();
    while s.ends_with('-') || s.ends_with('.') {
        s.pop();
    }
    s
}

fn context_of(probed: &Probed) -> Value {
    let facts: BTreeMap<&str, &serde_json::Value> = probed
        .facts
        .iter()
        .map(|(k, f)| (k.as_str(), &f.value))
        .collect();
    context! {
        version => probed.version,
        kernel => context! {
            major => probed.kernel.major,
            minor => probed.kernel.minor,
            sublevel => probed.kernel.sublevel,
        },
        facts => Value::from_serialize(&facts),
    }
}

/// Current contents of the files the series touches, loaded from the base lazily.
struct Files<'a> {
    tree: &'a Tree,
    content: BTreeMap<String, Option<String>>,
}

impl Files<'_> {
    fn get(&mut self, file: &str) -> Result<Option<String>> {
        if !self.content.contains_key(file) {
            let c = self.tree.read(file)?;
            self.content.insert(file.to_string(), c);
        }
        Ok(self.content[file].clone())
    }
}

/// The files one patch changes, with their new contents.
type Change = BTreeMap<String, String>;

/// A patch's subject for this tree (subjects are templates too).
fn subject(def: &PatchDef, tpl: &Templates, ctx: &Value) -> Result<String> {
    let pfile = def.path.display().to_string();
    let s = tpl.inline(&pfile, def.subject_line, &def.subject, ctx)?;
    let s = s.trim();
    if s.is_empty() || s.contains('\n') {
        bail!(
            "{pfile}:{}: the subject must be one non-empty line",
            def.subject_line
        );
    }
    Ok(s.to_string())
}

fn render_patch(
    def: &PatchDef,
    subject: &str,
    tpl: &Templates,
    ctx: &Value,
    files: &mut Files,
) -> Result<(String, Change)> {
    let pfile = def.path.display().to_string();
    let body = tpl.inline(&pfile, def.body_line, &def.body, ctx)?;
    let mut change = Change::new();
    for e in &def.edits {
        let loc = format!("{pfile}:{}", e.line);
        if let Some(w) = &e.when {
            if !tpl.condition(&loc, w, ctx)? {
                continue;
            }
        }
        let text = match (&e.text, &e.fragment) {
            (Some(t), _) => tpl.inline(&pfile, e.text_line, t, ctx)?,
            (None, Some(f)) => tpl.fragment(f, ctx)?,
            (None, None) => unreachable!("checked by the loader"),
        };
        let current = files.get(&e.file)?;
        let new = match (e.at, current) {
            (At::Create, None) => text,
            (At::Create, Some(_)) => bail!(
                "{loc}: patch \"{subject}\": {} already exists; `at: create` makes new files only",
                e.file
            ),
            (_, None) => bail!(
                "{loc}: patch \"{subject}\": {} does not exist in this tree",
                e.file
            ),
            (at, Some(cur)) => {
                let anchor =
                    tpl.inline(&pfile, e.anchor_line, e.anchor.as_deref().unwrap(), ctx)?;
                edit::apply(&cur, at, &anchor, &text).map_err(|err| {
                    anyhow!(
                        "{loc}: patch \"{subject}\": {}: {err}\n  anchor:\n{}",
                        e.file,
                        anchor
                            .lines()
                            .map(|l| format!("    | {l}\n"))
                            .collect::<String>()
                    )
                })?
            }
        };
        files.content.insert(e.file.clone(), Some(new.clone()));
        change.insert(e.file.clone(), new);
    }
    Ok((body, change))
}

fn signature(series: &Series) -> Result<Signature<'static>> {
    let m = &series.manifest;
    let date = chrono::DateTime::parse_from_rfc3339(&m.date)
        .with_context(|| format!("patches/series.yaml: date `{}` is not RFC 3339", m.date))?;
    let time = Time::new(date.timestamp(), date.offset().local_minus_utc() / 60);
    Ok(Signature::new(&m.author.name, &m.author.email, &time)?)
}

fn commit_message(subject: &str, body: &str, trailers: &[String]) -> String {
    let mut msg = format!("{subject}\n\n");
    let body = body.trim();
    if !body.is_empty() {
        msg.push_str(body);
        msg.push_str("\n\n");
    }
    for t in trailers {
        msg.push_str(t);
        msg.push('\n');
    }
    msg
}

/// Writes the patch's files as blobs and returns the new tree.
fn write_tree(repo: &Repository, parent: &git2::Tree, change: &Change) -> Result<Oid> {
    let mut b = TreeUpdateBuilder::new();
    for (file, content) in change {
        let blob = repo.blob(content.as_bytes())?;
        let mode = match parent.get_path(Path::new(file)) {
            Ok(e) if e.filemode() == i32::from(FileMode::BlobExecutable) => {
                FileMode::BlobExecutable
            }
            _ => FileMode::Blob,
        };
        b.upsert(file, blob, mode);
    }
    Ok(b.create_updated(repo, parent)?)
}

fn diff<'r>(repo: &'r Repository, a: &git2::Tree, b: &git2::Tree) -> Result<git2::Diff<'r>> {
    let mut o = DiffOptions::new();
    o.indent_heuristic(true).context_lines(3);
    Ok(repo.diff_tree_to_tree(Some(a), Some(b), Some(&mut o))?)
}

/// The `--stat --summary` block `git format-patch` writes under "---",
/// byte for byte: git's diff.c show_stats() at format-patch's width of 72
/// columns (and no diff.statNameWidth/statGraphWidth), then the create,
/// delete and mode-change lines of diff_summary(). The line counts are
/// libgit2's for the very diff the email prints. libgit2's own
/// `DiffStats::to_buf` scales the graph its own way: it draws "1 +-" for a
/// one-line insertion once another file has more changes than fit.
fn diffstat(d: &git2::Diff) -> Result<String> {
    const WIDTH: usize = 72;
    let mut files = Vec::new(); // (name, added, deleted)
    let mut summary = String::new();
    for i in 0..d.deltas().len() {
        let patch =
            git2::Patch::from_diff(d, i)?.ok_or_else(|| anyhow!("no patch for delta {i}"))?;
        let delta = patch.delta();
        let (old, new) = (delta.old_file(), delta.new_file());
        let name = new
            .path()
            .or(old.path())
            .and_then(|p| p.to_str())
            .unwrap_or_default();
        // git C-quotes other names and draws "Bin" lines for binary files;
        // a kernel series has neither, so they are refused, not imitated.
        if !name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            bail!("{name:?}: a path git would quote; the diffstat cannot show it");
        }
        if delta.flags().is_binary() {
            bail!("{name}: a binary file; the diffstat cannot show it");
        }
        let (old_mode, new_mode) = (i32::from(old.mode()), i32::from(new.mode()));
        match delta.status() {
            git2::Delta::Added => summary += &format!(" create mode {new_mode:06o} {name}\n"),
            git2::Delta::Deleted => summary += &format!(" delete mode {old_mode:06o} {name}\n"),
            _ if old_mode != new_mode => {
                summary += &format!(" mode change {old_mode:06o} => {new_mode:06o} {name}\n")
            }
            _ => {}
        }
        let (_, added, deleted) = patch.line_stats()?;
        files.push((name.to_string(), added, deleted));
    }
    if files.is_empty() {
        return Ok(String::new());
    }

    // Widths: names and graph get what they want if the line fits in WIDTH;
    // else the graph gets at most 3/8 of it (at least 6 columns) and the
    // names the rest, or the names all they want and the graph the rest.
    // Fixed: " " name " | " count " " graph, and one column left empty at
    // the end: 6 + number_width. (git never goes below 10 + 6 for the two.)
    let max_len = files.iter().map(|f| f.0.len()).max().unwrap_or(0);
    let max_change = files.iter().map(|f| f.1 + f.2).max().unwrap_or(0);
    let number_width = max_change.to_string().len();
    let width = WIDTH.max(16 + 6 + number_width);
    let (mut name_width, mut graph_width) = (max_len, max_change);
    if name_width + number_width + 6 + graph_width > width {
        let cap = (width * 3 / 8).saturating_sub(number_width + 6);
        if graph_width > cap {
            graph_width = cap.max(6);
        }
        if name_width > width - number_width - 6 - graph_width {
            name_width = width - number_width - 6 - graph_width;
        } else {
            graph_width = width - number_width - 6 - name_width;
        }
    }
    // At least one column for any change: scale as if one column narrower, add 1.
    let scale = |n: usize| match n {
        0 => 0,
        n => 1 + n * (graph_width - 1) / max_change,
    };

    let mut out = String::new();
    for (name, added, deleted) in &files {
        // A name too long loses its head to "..." and is cut at a '/'.
        let (prefix, shown, room) = if name.len() > name_width {
            let room = name_width.saturating_sub(3);
            let tail = &name[name.len() - room..];
            ("...", tail.find('/').map_or(tail, |s| &tail[s..]), room)
        } else {
            ("", name.as_str(), name_width)
        };
        let (mut add, mut del) = (*added, *deleted);
        if graph_width <= max_change {
            let mut total = scale(add + del);
            if total < 2 && add > 0 && del > 0 {
                total = 2;
            }
            if add < del {
                add = scale(add);
                del = total - add;
            } else {
                del = scale(del);
                add = total - del;
            }
        }
        let count = added + deleted;
        out += &format!(
            " {prefix}{shown:room$} | {count:>number_width$}{}{}{}\n",
            if count > 0 { " " } else { "" },
            "+".repeat(add),
            "-".repeat(del),
        );
    }

    let n = files.len();
    let adds: usize = files.iter().map(|f| f.1).sum();
    let dels: usize = files.iter().map(|f| f.2).sum();
    out += &format!(" {n} file{} changed", if n == 1 { "" } else { "s" });
    // "0 insertions(+)" only when nothing was deleted either, and vice versa.
    if adds > 0 || dels == 0 {
        out += &format!(", {adds} insertion{}(+)", if adds == 1 { "" } else { "s" });
    }
    if dels > 0 || adds == 0 {
        out += &format!(", {dels} deletion{}(-)", if dels == 1 { "" } else { "s" });
    }
    out.push('\n');
    out.push_str(&summary);
    Ok(out)
}

fn patch_text(d: &git2::Diff) -> Result<String> {
    let mut out = Vec::new();
    d.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })?;
    String::from_utf8(out).map_err(|_| anyhow!("diff is not UTF-8"))
}

fn subject_tag(series: &Series, n: usize, total: usize) -> String {
    let m = &series.manifest;
    let width = total.to_string().len();
    let v = if m.version > 1 {
        format!(" v{}", m.version)
    } else {
        String::new()
    };
    format!("[{}{v} {n:0width$}/{total}]", m.subject_prefix)
}

fn email_header(sig: &Signature, commit: Oid, subject: &str) -> String {
    let t = sig.when();
    let date = chrono::DateTime::from_timestamp(t.seconds(), 0)
        .expect("valid time")
        .with_timezone(
            &chrono::FixedOffset::east_opt(t.offset_minutes() * 60).expect("valid offset"),
        );
    format!(
        "From {commit} Mon Sep 17 00:00:00 2001\nFrom: {} <{}>\nDate: {}\nSubject: {subject}\n\n",
        sig.name().unwrap_or_default(),
        sig.email().unwrap_or_default(),
        date.to_rfc2822()
    )
}

pub fn render(series: &Series, tree: &Tree, probed: &Probed) -> Result<Rendered> {
    let tpl = Templates::new(&series.templates_dir());
    let ctx = context_of(probed);
    let sig = signature(series)?;
    let repo = &tree.repo;

    let mut files = Files {
        tree,
        content: BTreeMap::new(),
    };
    let mut included = Vec::new();
    let mut excluded = Vec::new();
    let defs = series.patches.iter().map(|d| (d, false));
    for (def, testing) in defs.chain(series.testing.iter().map(|d| (d, true))) {
        let origin = def.path.display().to_string();
        let subject = subject(def, &tpl, &ctx)?;
        if let Some(w) = &def.when {
            if !tpl.condition(&origin, w, &ctx)? {
                let reason = def
                    .skip_reason
                    .clone()
                    .unwrap_or_else(|| format!("`{w}` is false"));
                if !testing {
                    excluded.push(Excluded { subject, reason });
                }
                continue;
            }
        }
        let (body, change) = render_patch(def, &subject, &tpl, &ctx, &mut files)?;
        if change.is_empty() {
            let reason = "no edit applies to this tree".into();
            excluded.push(Excluded { subject, reason });
            continue;
        }
        included.push((def, testing, subject, body, change));
    }

    let base_commit = repo.find_commit(tree.base)?;
    let base_tree = base_commit.tree()?;
    let total = included.iter().filter(|p| !p.1).count();
    let total_testing = included.len() - total;
    let mut parent = base_commit;
    let mut patches = Vec::new();
    let mut testing = Vec::new();
    let mut series_tip = None;
    for (def, is_testing, subject, body, change) in included {
        if is_testing && series_tip.is_none() {
            series_tip = Some(parent.tree()?);
        }
        let list = if is_testing {
            &mut testing
        } else {
            &mut patches
        };
        let number = list.len() + 1;
        let parent_tree = parent.tree()?;
        let tree_id = write_tree(repo, &parent_tree, &change)?;
        let new_tree = repo.find_tree(tree_id)?;
        let msg = commit_message(&subject, &body, &def.trailers);
        let id = repo.commit(None, &sig, &sig, &msg, &new_tree, &[&parent])?;
        let d = diff(repo, &parent_tree, &new_tree)?;
        let tag = if is_testing {
            format!("[DO NOT MERGE {number}/{total_testing}]")
        } else {
            subject_tag(series, number, total)
        };
        let tagged_subject = format!("{tag} {subject}");
        let mut body = msg
            .split_once("\n\n")
            .map_or("", |(_, rest)| rest)
            .to_string();
        body.push_str("---\n");
        body.push_str(&diffstat(&d)?);
        body.push('\n');
        body.push_str(&patch_text(&d)?);
        body.push_str(&format!("-- \nzcsplice {}\n\n", env!("CARGO_PKG_VERSION")));
        let email = email_header(&sig, id, &tagged_subject) + &body;
        list.push(RenderedPatch {
            number,
            name: def_name(&def.path),
            subject,
            tagged_subject,
            commit: id,
            body,
            email,
        });
        parent = repo.find_commit(id)?;
    }

    let tip_tree = match series_tip {
        Some(t) => t,
        None => parent.tree()?,
    };
    let cover = cover_letter(series, &tpl, &ctx, tree.base, &patches, &excluded, &{
        let d = diff(repo, &base_tree, &tip_tree)?;
        diffstat(&d)?
    })?;
    Ok(Rendered {
        base: tree.base,
        patches,
        testing,
        excluded,
        cover: email_header(&sig, Oid::zero(), &cover.subject) + &cover.body,
        cover_subject: cover.subject,
        cover_body: cover.body,
        changes: cover.changes,
    })
}

/// A definition's name: `patches/0013-gift-donor.yaml` is `gift-donor`.
fn def_name(path: &Path) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    stem.trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start_matches('-')
        .to_string()
}

/// The cover letter: its subject, its body, and its changelog as rendered.
struct CoverLetter {
    subject: String,
    body: String,
    changes: Option<String>,
}

fn cover_letter(
    series: &Series,
    tpl: &Templates,
    ctx: &Value,
    base: Oid,
    patches: &[RenderedPatch],
    excluded: &[Excluded],
    diffstat: &str,
) -> Result<CoverLetter> {
    let m = &series.manifest;
    let mut shortlog = format!("{} ({}):\n", m.author.name, patches.len());
    for p in patches {
        shortlog.push_str(&format!("      {}\n", p.subject));
    }
    let list: Vec<Value> = patches
        .iter()
        .map(|p| context! { number => p.number, subject => p.subject })
        .collect();
    let skipped: Vec<Value> = excluded
        .iter()
        .map(|e| context! { subject => e.subject, reason => e.reason })
        .collect();
    // The number each patch goes out as, by name (a tree may leave some out).
    let numbers: BTreeMap<&str, usize> = patches
        .iter()
        .map(|p| (p.name.as_str(), p.number))
        .collect();
    let cctx = context! {
        series => Value::from_serialize(m_as_json(m)),
        patches => list,
        n => numbers,
        excluded => skipped,
        shortlog => shortlog,
        diffstat => diffstat,
        base_commit => base.to_string(),
        change_id => m.change_id,
        ..ctx.clone()
    };
    // The changelog names patches by number too, so it is a template.
    let changes = match &series.changes {
        Some(text) => {
            let origin = crate::series::changes_path(m.version);
            let origin = origin.to_string_lossy();
            Some(tpl.inline(&origin, 1, text, &cctx)?.trim_end().to_string())
        }
        None => None,
    };
    let body = tpl.fragment(&m.cover.template, &context! { changes => changes, ..cctx })?;
    let subject = format!(
        "{} {}",
        subject_tag(series, 0, patches.len()),
        m.cover.subject
    );
    Ok(CoverLetter {
        subject,
        body: format!("{}\n\n", body.trim_end()),
        changes,
    })
}

fn m_as_json(m: &crate::series::Manifest) -> serde_json::Value {
    serde_json::json!({
        "subject_prefix": m.subject_prefix,
        "version": m.version,
        "change_id": m.change_id,
        "author": { "name": m.author.name, "email": m.author.email },
        "cover_subject": m.cover.subject,
    })
}

/// Renders the series for `spec` in memory only (the user's object store is
/// not touched) and writes it to `out`: the emails, `testing/`, and
/// probe.json. A series that does not render on this tree is untestable
/// (exit 125); a bad template stays a bad definition (exit 1).
pub fn render_to(
    env: &crate::env::Env,
    spec: &crate::tree::TreeSpec,
    out: &Path,
) -> Result<(Rendered, Probed, Vec<PathBuf>)> {
    let l = crate::series::load(env, spec)?;
    let _mempack = l.tree.repo.odb()?.add_new_mempack_backend(1000)?;
    let r = render(&l.series, &l.tree, &l.probed).map_err(crate::exit::untestable)?;
    let written = write_files(out, &r, &l.probed)?;
    Ok((r, l.probed, written))
}

/// Writes the emails and probe.json to `out`; returns the emails' paths.
pub fn write_files(out: &Path, r: &Rendered, p: &Probed) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // Stale patches from an earlier render would be picked up by `git am DIR/*.patch`.
    for dir in [out.to_path_buf(), out.join("testing")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let numbered = name.len() > 5 && name[..4].bytes().all(|b| b.is_ascii_digit());
            if numbered && name[4..].starts_with('-') && name.ends_with(".patch") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    if !r.testing.is_empty() {
        std::fs::create_dir_all(out.join("testing"))?;
    }
    let mut written = Vec::new();
    for (name, text) in r.files() {
        let f = out.join(&name);
        std::fs::write(&f, text).with_context(|| format!("cannot write {}", f.display()))?;
        written.push(f);
    }
    std::fs::write(
        out.join("probe.json"),
        serde_json::to_string_pretty(p)? + "\n",
    )?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slug_matches_format_patch() {
        assert_eq!(
            slug("mm: filemap: hand a stolen folio to ->write_begin"),
            "mm-filemap-hand-a-stolen-folio-to-write_begin"
        );
        assert_eq!(
            slug("splice: add splice_source (v2)."),
            "splice-add-splice_source-v2"
        );
    }
}
