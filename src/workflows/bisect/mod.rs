//! `zcsplice bisect`: real `git bisect` over a range of commits, each step
//! tested by a closure (step.rs: render, apply, build, boot, run). The
//! bisect runs in zcsplice's own clone of the tree in the cache, so the
//! user's checkout, branches and bisect state are never touched, and
//! `git -C <clone> bisect log` (or `visualize`) works afterwards.
//!
//! Both ends are tested first: a bad end that passes means there is no
//! bad commit in the range, a good end that fails means the culprit is
//! outside it (syzbot's most common false result is trusting them).

pub mod selection;
pub mod step;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::exit;

/// What a step's test said of its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Good,
    Bad,
    /// Cannot be tested: does not render, apply or build (git bisect skip).
    Skip,
    /// The harness failed or timed out: the bisect stops (exit code).
    Stop(u8),
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Skip => "skip",
            Verdict::Stop(_) => "stopped",
        }
    }
}

/// Which commit of the bisect a step tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    BadEnd,
    GoodEnd,
    Candidate,
}

/// One stage of a step, as the table shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stage {
    /// "pass", "fail", "error" (the harness failed, not the commit), "-"
    /// (not run).
    pub status: String,
    pub seconds: f64,
}

impl Stage {
    pub fn pass(seconds: f64) -> Stage {
        Stage {
            status: "pass".into(),
            seconds,
        }
    }
    pub fn fail(seconds: f64) -> Stage {
        Stage {
            status: "fail".into(),
            seconds,
        }
    }
    /// A stage that ended in an error with exit code `code`: a failure of
    /// the commit where the code skips it, else the harness's.
    pub fn errored(seconds: f64, code: u8) -> Stage {
        if code == crate::exit::SKIP {
            Stage::fail(seconds)
        } else {
            Stage {
                status: "error".into(),
                seconds,
            }
        }
    }
    pub fn not_run() -> Stage {
        Stage {
            status: "-".into(),
            seconds: 0.0,
        }
    }
}

/// One tested commit.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub commit: String,
    pub subject: String,
    pub role: Role,
    /// Render and apply of the series (or the checkout without it).
    pub prepare: Stage,
    pub build: Stage,
    pub test: Stage,
    pub verdict: Verdict,
    /// Why: the failing test, the error, the stage that failed.
    pub detail: String,
    /// Runs of the test: more than 1 when --retries ran it again.
    pub attempts: u32,
    pub seconds: f64,
    /// The failing test's output and the console's kernel reports.
    pub excerpt: Option<String>,
    pub logs: Option<PathBuf>,
}

impl Step {
    /// A step that did nothing yet but name its commit.
    pub fn new(commit: &str, subject: &str) -> Step {
        Step {
            commit: commit.to_string(),
            subject: subject.to_string(),
            role: Role::Candidate,
            prepare: Stage::not_run(),
            build: Stage::not_run(),
            test: Stage::not_run(),
            verdict: Verdict::Skip,
            detail: String::new(),
            attempts: 0,
            seconds: 0.0,
            excerpt: None,
            logs: None,
        }
    }
}

/// How the bisect ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Found {
    /// git bisect named the first bad commit.
    FirstBad { commit: String, subject: String },
    /// The bad end passes: nothing in the range fails.
    NoBadCommit,
    /// The good end fails too: the cause is at or before it.
    GoodEndFails,
    /// Every candidate left was skipped (or an end cannot be tested).
    AllSkipped { candidates: Vec<String> },
    /// The harness stopped the bisect.
    Stopped { code: u8, why: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub found: Found,
    pub steps: Vec<Step>,
    /// The clone the bisect ran in (`git -C <repo> bisect log`).
    pub repo: PathBuf,
    /// `git bisect log` as it ended.
    pub log: String,
    pub seconds: f64,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match &self.found {
            Found::FirstBad { .. } => exit::SUCCESS,
            Found::NoBadCommit | Found::GoodEndFails => exit::FAILURE,
            Found::AllSkipped { .. } => exit::SKIP,
            Found::Stopped { code, .. } => *code,
        }
    }

    /// The step that tested the first bad commit.
    pub fn first_bad(&self) -> Option<&Step> {
        match &self.found {
            Found::FirstBad { commit, .. } => self
                .steps
                .iter()
                .find(|s| &s.commit == commit && s.verdict == Verdict::Bad),
            _ => None,
        }
    }
}

/// Runs `test` once, and again up to `retries` times while it says bad:
/// a commit is bad only if every run fails. The step counts the runs.
pub fn with_retries(retries: u32, mut test: impl FnMut() -> Step) -> Step {
    let mut first_failure: Option<String> = None;
    for attempt in 1..=retries + 1 {
        let mut s = test();
        s.attempts = attempt;
        if s.verdict != Verdict::Bad {
            if let (Some(why), Verdict::Good) = (&first_failure, s.verdict) {
                s.detail = format!("passed on run {attempt} (run 1: {why})");
            }
            return s;
        }
        if attempt == retries + 1 {
            return s;
        }
        first_failure.get_or_insert(s.detail);
    }
    unreachable!("the loop returns")
}

/// `git -C repo args`, its stdout and stderr together; a non-zero exit is
/// an error only when `checked`.
fn git(repo: &Path, args: &[&str], checked: bool) -> Result<String> {
    let mut all = vec!["-C", repo.to_str().context("non-UTF-8 path")?];
    all.extend_from_slice(args);
    let out = duct::cmd("git", &all)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run git")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if checked && !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), text.trim());
    }
    Ok(text)
}

/// The subject of `commit`.
pub fn subject(repo: &Path, commit: &str) -> String {
    git(repo, &["log", "-1", "--format=%s", commit], true)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What git bisect said after a verdict (or at its start).
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Next,
    FirstBad(String),
    OnlySkipped(Vec<String>),
}

fn parse_said(out: &str) -> Said {
    if let Some(l) = out
        .lines()
        .find(|l| l.ends_with(" is the first bad commit"))
    {
        return Said::FirstBad(l.split_whitespace().next().unwrap_or_default().into());
    }
    if out.contains("only 'skip'ped commits left to test") {
        let shas = out
            .lines()
            .map(str::trim)
            .filter(|l| l.len() == 40 && l.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
            .collect();
        return Said::OnlySkipped(shas);
    }
    Said::Next
}

/// Bisects `good..bad` in `repo` with real git bisect (--no-checkout: the
/// tester checks out what it needs), `test` judging each commit. The ends
/// are tested first. Leaves the bisect state in `repo` for `git bisect
/// log`; a new bisect resets it.
pub fn bisect(
    repo: &Path,
    good: &str,
    bad: &str,
    mut test: impl FnMut(&str, Role) -> Step,
) -> Result<Report> {
    let start = std::time::Instant::now();
    let _ = git(repo, &["bisect", "reset", "--quiet"], false);
    let mut steps = Vec::new();
    let end = |found: Found, steps: Vec<Step>| -> Result<Report> {
        Ok(Report {
            found,
            steps,
            repo: repo.to_path_buf(),
            log: git(repo, &["bisect", "log"], false).unwrap_or_default(),
            seconds: start.elapsed().as_secs_f64(),
        })
    };
    let stopped = |s: &Step, code: u8| Found::Stopped {
        code,
        why: format!("{} {}: {}", &s.commit[..12], s.subject, s.detail),
    };
    let untestable = |s: &Step| Found::AllSkipped {
        candidates: vec![s.commit.clone()],
    };

    // Each end must say what it is said to be, else that is the finding.
    for (commit, role, want, otherwise) in [
        (bad, Role::BadEnd, Verdict::Bad, Found::NoBadCommit),
        (good, Role::GoodEnd, Verdict::Good, Found::GoodEndFails),
    ] {
        let mut s = test(commit, role);
        s.role = role;
        let found = match s.verdict {
            v if v == want => None,
            Verdict::Skip => Some(untestable(&s)),
            Verdict::Stop(code) => Some(stopped(&s, code)),
            _ => Some(otherwise),
        };
        steps.push(s);
        if let Some(f) = found {
            return end(f, steps);
        }
    }

    let mut said = parse_said(&git(
        repo,
        &["bisect", "start", "--no-checkout", bad, good],
        true,
    )?);
    loop {
        match said {
            Said::FirstBad(commit) => {
                let subject = subject(repo, &commit);
                return end(Found::FirstBad { commit, subject }, steps);
            }
            Said::OnlySkipped(candidates) => return end(Found::AllSkipped { candidates }, steps),
            Said::Next => {}
        }
        let next = git(repo, &["rev-parse", "BISECT_HEAD"], true)?
            .trim()
            .to_string();
        let mut s = test(&next, Role::Candidate);
        s.role = Role::Candidate;
        let v = s.verdict;
        steps.push(s);
        let word = match v {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Skip => "skip",
            Verdict::Stop(code) => {
                let f = stopped(steps.last().unwrap(), code);
                return end(f, steps);
            }
        };
        // git exits non-zero when only skipped commits are left: what it
        // printed says so.
        let out = git(repo, &["bisect", word, &next], false)?;
        said = parse_said(&out);
        if said == Said::Next && git(repo, &["rev-parse", "BISECT_HEAD"], true)?.trim() == next {
            bail!("git bisect {word} {next} did not move on: {}", out.trim());
        }
    }
}

/// What `zcsplice bisect` was asked.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The user's tree: only read.
    pub tree: PathBuf,
    pub mode: Mode,
    /// Runs again a step that failed, up to this many times.
    pub retries: u32,
    pub kernel: crate::kernel::build::KernelOpts,
    /// What each step runs on its kernel.
    pub selection: selection::Selection,
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// good..bad of the tree, the series rendered on each commit (or not).
    Upstream {
        good: String,
        bad: String,
        series: bool,
    },
    /// The series' own patches on `base` (None: the tree's recorded base).
    InSeries { base: Option<String> },
}

/// Runs the bisect `o` asks for in zcsplice's clone of the tree; the
/// report goes to <cache>/runs/bisect/<time>/ too (report.json,
/// bisect.log).
pub fn run(env: &crate::env::Env, o: &Opts) -> Result<Report> {
    let mut ready = o.selection.ready(&env.series)?;
    let testing = match o.selection.needs_testing() {
        true => crate::series::apply::Testing::With,
        false => crate::series::apply::Testing::Without,
    };
    let user = crate::tree::Tree::open(&o.tree, None)?;
    let resolve = |rev: &str| -> Result<String> {
        user.repo
            .revparse_single(rev)
            .and_then(|x| x.peel_to_commit())
            .map(|c| c.id().to_string())
            .map_err(|e| {
                exit::usage(anyhow::anyhow!(
                    "{rev}: no such commit in {} ({})",
                    o.tree.display(),
                    e.message()
                ))
            })
    };
    let clone = step::clone_of(&env.cache, &o.tree)?;
    let (good, bad, onto) = match &o.mode {
        Mode::Upstream { good, bad, series } => {
            let (good, bad) = (resolve(good)?, resolve(bad)?);
            let onto = match series {
                true => step::Onto::Series(testing),
                false => step::Onto::Nothing,
            };
            (good, bad, onto)
        }
        Mode::InSeries { base } => {
            let base = match base {
                Some(b) => resolve(b)?,
                None => user.base.to_string(),
            };
            ready = ready.partial_series();
            in_series_range(env, &clone, &base, testing)?
        }
    };
    let ks = step::KernelStep {
        env,
        clone: clone.clone(),
        onto,
        kernel: o.kernel.clone(),
        selection: ready,
    };
    // Made first, and steps.json written after every step: a bisect
    // stopped by a signal leaves what it tested, as well as the clone's log.
    let dir = env.cache.join("runs/bisect").join(crate::env::stamp());
    std::fs::create_dir_all(&dir)?;
    log::info!("bisect report and log: {}", dir.display());
    let mut done: Vec<Step> = Vec::new();
    let report = bisect(&clone, &good, &bad, |c, role| {
        let n = done.len() + 1;
        log::info!(
            "bisect step {n} ({}): {} {}",
            match role {
                Role::BadEnd => "the bad end",
                Role::GoodEnd => "the good end",
                Role::Candidate => "git bisect's pick",
            },
            &c[..12],
            subject(&clone, c)
        );
        let mut s = with_retries(o.retries, || ks.test(c));
        s.role = role;
        done.push(s.clone());
        let saved = serde_json::to_string_pretty(&done)
            .map_err(anyhow::Error::from)
            .and_then(|j| Ok(std::fs::write(dir.join("steps.json"), j)?));
        if let Err(e) = saved {
            log::warn!("cannot save the steps in {}: {e:#}", dir.display());
        }
        s
    })?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(dir.join("bisect.log"), &report.log)?;
    Ok(report)
}

/// The in-series range: the series applied on `base` in the clone, its
/// patches as commits; good is the base, bad the last patch that is not
/// a testing patch. The testing patches go on top of each step when the
/// selection needs them (a fault needs their knob); else they are left
/// out, so one that does not apply cannot stop the bisect.
fn in_series_range(
    env: &crate::env::Env,
    clone: &Path,
    base: &str,
    testing: crate::series::apply::Testing,
) -> Result<(String, String, step::Onto)> {
    git(clone, &["checkout", "-q", "-f", "--detach", base], true)?;
    let spec = crate::tree::TreeSpec {
        path: clone.to_path_buf(),
        base: Some(base.to_string()),
    };
    let a = crate::series::apply::apply_series(
        env,
        &spec,
        Some("zcsplice-bisect-series"),
        true,
        testing,
    )?;
    let n_testing = a.testing;
    let commits: Vec<String> = git(
        clone,
        &["rev-list", "--reverse", &format!("{}..{}", a.base, a.tip)],
        true,
    )?
    .lines()
    .map(str::to_string)
    .collect();
    let Some(split) = commits.len().checked_sub(n_testing).filter(|k| *k > 0) else {
        bail!("the series has no patch to bisect on {base}");
    };
    let (patches, picks) = commits.split_at(split);
    let onto = match picks.is_empty() {
        false => step::Onto::Picks(picks.to_vec()),
        true => step::Onto::Nothing,
    };
    Ok((a.base.to_string(), patches[split - 1].clone(), onto))
}

/// The step table, for people.
pub fn table(r: &Report) -> String {
    let mut t = crate::report::table(
        [
            "#", "COMMIT", "SUBJECT", "ROLE", "PREPARE", "BUILD", "TEST", "VERDICT", "BUILD S",
            "BOOT S", "SECONDS", "WHY",
        ],
        &[0, 8, 9, 10],
    );
    for (i, s) in r.steps.iter().enumerate() {
        let mut verdict = s.verdict.as_str().to_string();
        if s.attempts > 1 {
            verdict.push_str(&format!(" ({} runs)", s.attempts));
        }
        let subject: String = s.subject.chars().take(50).collect();
        t.add_row([
            (i + 1).to_string(),
            s.commit[..12.min(s.commit.len())].to_string(),
            subject,
            match s.role {
                Role::BadEnd => "bad end",
                Role::GoodEnd => "good end",
                Role::Candidate => "",
            }
            .to_string(),
            s.prepare.status.clone(),
            s.build.status.clone(),
            s.test.status.clone(),
            verdict,
            format!("{:.0}", s.build.seconds),
            format!("{:.0}", s.test.seconds),
            format!("{:.0}", s.seconds),
            s.detail.chars().take(70).collect(),
        ]);
    }
    t.trim_fmt()
}

/// What the bisect found, in a sentence or a few lines.
pub fn summary(r: &Report) -> String {
    let mut s = match &r.found {
        Found::FirstBad { commit, subject } => {
            format!("first bad commit: {commit} (\"{subject}\")")
        }
        Found::NoBadCommit => "no bad commit: the bad end passes".to_string(),
        Found::GoodEndFails => "the good end fails too: the cause is at or before it".to_string(),
        Found::AllSkipped { candidates } => format!(
            "only skipped commits are left; the first bad commit is one of: {}",
            candidates.join(" ")
        ),
        Found::Stopped { code, why } => format!("bisect stopped (exit {code}): {why}"),
    };
    if let Some(b) = r.first_bad() {
        s.push_str(&format!("\n  {}", b.detail));
        if let Some(x) = &b.excerpt {
            for l in x.lines() {
                s.push_str(&format!("\n  | {l}"));
            }
        }
    }
    let retried: Vec<String> = r
        .steps
        .iter()
        .filter(|s| s.attempts > 1)
        .map(|s| format!("{} ({} runs)", &s.commit[..12], s.attempts))
        .collect();
    if !retried.is_empty() {
        s.push_str(&format!(
            "\nsteps that needed retries: {}",
            retried.join(", ")
        ));
    }
    s.push_str(&format!(
        "\n{} steps in {:.0} s; git -C {} bisect log",
        r.steps.len(),
        r.seconds,
        r.repo.display()
    ));
    s
}

/// JUnit: a test case per step (bad: a failure, skip: skipped).
pub fn junit(r: &Report) -> Result<String> {
    use crate::report::{Case, Outcome};
    let names: Vec<String> = r
        .steps
        .iter()
        .map(|s| format!("{} {}", &s.commit[..12.min(s.commit.len())], s.subject))
        .collect();
    let cases = r.steps.iter().zip(&names).map(|(s, name)| Case {
        name,
        seconds: s.seconds,
        outcome: match s.verdict {
            Verdict::Good => Outcome::Pass,
            Verdict::Skip => Outcome::Skip,
            Verdict::Bad | Verdict::Stop(_) => Outcome::Fail {
                message: &s.detail,
                text: s.excerpt.as_deref(),
            },
        },
        output: "",
    });
    crate::report::junit("zcsplice-bisect", "bisect", r.seconds, cases)
}

#[cfg(test)]
mod tests;
