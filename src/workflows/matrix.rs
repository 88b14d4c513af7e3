//! `zcsplice matrix`: the series through its stages on several trees, one
//! row per tree. A row stops at its first failing stage and the next tree
//! runs all the same: one broken tree must not hide how the others fare.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::guest::boot::{TestStatus, Verdict};
use crate::series::render;
use crate::suites::{guest_tests, xfstests};

/// The stages, in the order a row runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Probe,
    Render,
    Apply,
    Build,
    Run,
    Xfstests,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Probe,
        Stage::Render,
        Stage::Apply,
        Stage::Build,
        Stage::Run,
        Stage::Xfstests,
    ];

    /// The names, in order, as `--until` takes them.
    pub const NAMES: [&'static str; 6] = ["probe", "render", "apply", "build", "run", "xfstests"];

    /// The stages up to and including `last`.
    pub fn until(last: Stage) -> Vec<Stage> {
        Stage::ALL.into_iter().filter(|s| *s <= last).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Probe => "probe",
            Stage::Render => "render",
            Stage::Apply => "apply",
            Stage::Build => "build",
            Stage::Run => "run",
            Stage::Xfstests => "xfstests",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Stage> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("no stage {s}; the stages: {}", Stage::NAMES.join(", ")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// An earlier stage of the row failed.
    NotRun,
}

/// How a stage that ran ended.
pub struct Outcome {
    pub passed: bool,
    pub detail: String,
    pub log: Option<PathBuf>,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>, log: Option<PathBuf>) -> Outcome {
        Outcome {
            passed: true,
            detail: detail.into(),
            log,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Cell {
    pub name: Stage,
    pub status: Status,
    pub detail: String,
    pub log: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub tree: PathBuf,
    /// The kernel version, as the probe found it.
    pub version: Option<String>,
    /// Every stage that ran passed.
    pub passed: bool,
    pub logs: PathBuf,
    pub stages: Vec<Cell>,
}

/// `zcsplice matrix` as a value.
#[derive(Debug, Clone)]
pub struct Opts {
    pub trees: Vec<PathBuf>,
    /// Debian sources imported as `tree import --debian` does, after `trees`.
    pub debian: Vec<crate::tree::import::DebianSpec>,
    pub until: Stage,
    pub force: bool,
    pub kernel: crate::kernel::build::KernelOpts,
    pub run: guest_tests::RunOpts,
    /// For the xfstests stage; its build is set per row.
    pub xfstests: xfstests::Request,
}

/// One row per tree, each stage through the function its own command
/// uses, typed results handed on in memory; logs in
/// <cache>/runs/matrix/<time>/<n>-<tree>.
pub fn run_matrix(env: &crate::env::Env, m: &Opts) -> Result<Vec<Row>> {
    use crate::kernel::build::{build_kernel, BuildRequest};
    guest_tests::check_tests(&env.series, &m.run.tests)?;
    let dir = env.cache.join("runs/matrix").join(crate::env::stamp());
    let stages = Stage::until(m.until);
    let mut trees = m.trees.clone();
    for spec in &m.debian {
        trees.push(crate::tree::import::debian(spec, &env.cache)?.tree.path);
    }
    let mut rows = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let name = tree
            .file_name()
            .unwrap_or(tree.as_os_str())
            .to_string_lossy();
        let logs = dir.join(format!("{}-{}", i + 1, crate::tree::sanitize(&name)));
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let spec = crate::tree::TreeSpec {
            path: tree.clone(),
            base: None,
        };
        let request = |branch: &str| BuildRequest {
            tree: tree.clone(),
            branch: Some(branch.to_string()),
            slot: None,
            kernel: m.kernel.clone(),
        };
        // What later stages take from earlier ones.
        let (mut applied, mut built) = (None, None);
        let row = row(tree, &logs, &stages, |stage| {
            log::info!(
                "matrix [{}/{}] {}: {}",
                i + 1,
                trees.len(),
                tree.display(),
                stage.as_str()
            );
            Ok(match stage {
                Stage::Probe => {
                    let l = crate::series::load(env, &spec)?;
                    let f = logs.join("probe.json");
                    std::fs::write(&f, serde_json::to_string_pretty(&l.probed)? + "\n")?;
                    Outcome::pass(l.probed.version, Some(f))
                }
                Stage::Render => {
                    let out = logs.join("render");
                    let (r, _, _) = render::render_to(env, &spec, &out)?;
                    Outcome::pass(render_detail(&r), Some(out))
                }
                Stage::Apply => {
                    let a = crate::series::apply::apply_series(
                        env,
                        &spec,
                        None,
                        m.force,
                        crate::series::apply::Testing::With,
                    )?;
                    let done = match a.outcome {
                        crate::series::apply::Outcome::UpToDate => "up to date",
                        crate::series::apply::Outcome::Created => "created",
                        crate::series::apply::Outcome::Rebuilt { .. } => "rebuilt",
                    };
                    let tip = a.tip.to_string();
                    let o = Outcome::pass(format!("{} at {}, {done}", a.branch, &tip[..12]), None);
                    applied = Some(a);
                    o
                }
                Stage::Build => {
                    let a = applied.as_ref().expect("apply runs before build");
                    let b = build_kernel(env, &request(&a.branch))?;
                    let out = Outcome::pass(b.release(), Some(b.log.clone()));
                    built = Some(b);
                    out
                }
                Stage::Run => {
                    let b = built.as_ref().expect("build runs before run");
                    run_outcome(&guest_tests::run_built(env, b, &m.run)?)
                }
                Stage::Xfstests => {
                    let a = applied.as_ref().expect("apply runs before xfstests");
                    let x = xfstests::Request {
                        build: request(&a.branch),
                        baseline: true,
                        base: Some(a.base),
                        ..m.xfstests.clone()
                    };
                    xfstests_outcome(&xfstests::run_request(env, &x)?)
                }
            })
        });
        rows.push(row);
    }
    Ok(rows)
}

/// Runs `stages` in order through `run` until one fails; the rest are not
/// run. An error (or a panic) fails its stage with the error's first line;
/// all of it goes to `<logs>/<stage>.err`.
pub fn row(
    tree: &Path,
    logs: &Path,
    stages: &[Stage],
    mut run: impl FnMut(Stage) -> Result<Outcome>,
) -> Row {
    let mut cells = Vec::new();
    let mut failed = false;
    for &name in stages {
        if failed {
            cells.push(Cell {
                name,
                status: Status::NotRun,
                detail: String::new(),
                log: None,
            });
            continue;
        }
        let o = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(name))) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => erred(logs, name, &format!("{e:#}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                erred(logs, name, &format!("zcsplice panicked: {msg}"))
            }
        };
        failed = !o.passed;
        cells.push(Cell {
            name,
            status: if o.passed { Status::Pass } else { Status::Fail },
            detail: o.detail,
            log: o.log,
        });
    }
    let version = cells
        .iter()
        .find(|c| c.name == Stage::Probe && c.status == Status::Pass)
        .map(|c| c.detail.clone());
    Row {
        tree: tree.to_path_buf(),
        version,
        passed: !failed,
        logs: logs.to_path_buf(),
        stages: cells,
    }
}

fn erred(logs: &Path, stage: Stage, text: &str) -> Outcome {
    let f = logs.join(format!("{}.err", stage.as_str()));
    let log = std::fs::write(&f, format!("{text}\n")).is_ok().then_some(f);
    // A first line ending in ':' introduces the lines the log has.
    let first = text.lines().next().unwrap_or_default();
    Outcome {
        passed: false,
        detail: first.trim_end_matches(':').to_string(),
        log,
    }
}

pub fn render_detail(r: &render::Rendered) -> String {
    let mut s = format!("{} patches", r.count());
    if !r.excluded.is_empty() {
        s.push_str(&format!(", {} left out", r.excluded.len()));
    }
    s
}

pub fn run_outcome(r: &guest_tests::Report) -> Outcome {
    let count = |res: TestStatus| r.tests.iter().filter(|t| t.result == res).count();
    let mut detail = format!("{}/{} passed", count(TestStatus::Pass), r.tests.len());
    if count(TestStatus::Skip) > 0 {
        detail.push_str(&format!(", {} skipped", count(TestStatus::Skip)));
    }
    if !r.splats.is_empty() {
        detail.push_str(&format!(", {} kernel report(s)", r.splats.len()));
    }
    let passed = r.verdict == Verdict::Pass;
    if !passed {
        detail = format!("{}: {detail}", r.verdict.as_str());
    }
    Outcome {
        passed,
        detail,
        log: Some(r.logs.clone()),
    }
}

pub fn xfstests_outcome(r: &xfstests::Report) -> Outcome {
    let n = r.regressions.len();
    let mut detail = format!(
        "{n} regression{} (run {}, passed {}, failed {}, skipped {}, flaky {})",
        if n == 1 { "" } else { "s" },
        r.run,
        r.passed,
        r.failed,
        r.skipped,
        r.flaky.len()
    );
    // What else fails a run: its exit code counts the series' boots only.
    for b in r.boots.iter().filter(|b| b.label != "baseline") {
        if !b.kernel_reports.is_empty() {
            let k = b.kernel_reports.len();
            detail.push_str(&format!(
                "; {} boot: {k} kernel report(s) outside the tests",
                b.label
            ));
        }
        if !matches!(b.verdict, Verdict::Pass | Verdict::Fail) {
            detail.push_str(&format!("; {} boot: {}", b.label, b.verdict.as_str()));
        }
    }
    Outcome {
        passed: r.exit_code() == 0,
        detail,
        log: Some(r.logs.clone()),
    }
}

/// One line per tree, a column per stage, then why the failures failed.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let stages = rows.first().map_or(&[][..], |r| &r.stages[..]);
    let header: Vec<String> = std::iter::once("TREE".to_string())
        .chain(stages.iter().map(|c| c.name.as_str().to_uppercase()))
        .chain(["LOGS".to_string()])
        .collect();
    let mut t = crate::report::table(header, &[]);
    for r in rows {
        let cells = r.stages.iter().map(|c| match c.status {
            Status::Pass => format!("pass {}", c.detail).trim_end().to_string(),
            Status::Fail => "FAIL".into(),
            Status::NotRun => "not run".into(),
        });
        t.add_row(
            std::iter::once(r.tree.display().to_string())
                .chain(cells)
                .chain([r.logs.display().to_string()])
                .collect::<Vec<_>>(),
        );
    }
    let mut o = t.trim_fmt() + "\n";
    for r in rows {
        for c in r.stages.iter().filter(|c| c.status == Status::Fail) {
            let _ = writeln!(
                o,
                "\n{}: {} failed: {}",
                r.tree.display(),
                c.name.as_str(),
                c.detail
            );
            if let (Stage::Render | Stage::Apply, Some(v)) = (c.name, &r.version) {
                let _ = writeln!(o, "  the series does not apply to {v}");
            }
            if let Some(l) = &c.log {
                let _ = writeln!(o, "  log: {}", l.display());
            }
        }
    }
    let passed = rows.iter().filter(|r| r.passed).count();
    let _ = writeln!(o, "\n{passed} of {} trees passed", rows.len());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    const UNTIL_BUILD: [Stage; 4] = [Stage::Probe, Stage::Render, Stage::Apply, Stage::Build];

    #[test]
    fn until_is_inclusive_and_ordered() {
        assert_eq!(
            Stage::until(Stage::Apply),
            [Stage::Probe, Stage::Render, Stage::Apply]
        );
        assert_eq!(Stage::until(Stage::Xfstests).len(), 6);
        assert_eq!(Stage::until(Stage::Probe), [Stage::Probe]);
    }

    #[test]
    fn an_error_fails_its_stage_and_the_rest_are_not_run() {
        let d = tempfile::tempdir().unwrap();
        let mut called = Vec::new();
        let r = row(Path::new("/t"), d.path(), &UNTIL_BUILD, |s| {
            called.push(s);
            match s {
                Stage::Probe => Ok(Outcome::pass("6.12.3", None)),
                _ => Err(anyhow!("anchor not found:\n  anchor:\n    | x")),
            }
        });
        assert_eq!(called, [Stage::Probe, Stage::Render]);
        assert!(!r.passed);
        assert_eq!(r.version.as_deref(), Some("6.12.3"));
        let st: Vec<Status> = r.stages.iter().map(|c| c.status).collect();
        use Status::*;
        assert_eq!(st, [Pass, Fail, NotRun, NotRun]);
        // One line in the row; the whole error in the log.
        assert_eq!(r.stages[1].detail, "anchor not found");
        let log = r.stages[1].log.clone().unwrap();
        assert_eq!(log, d.path().join("render.err"));
        assert!(std::fs::read_to_string(log).unwrap().contains("| x"));
    }

    #[test]
    fn a_failed_outcome_stops_the_row_too() {
        let d = tempfile::tempdir().unwrap();
        let r = row(Path::new("/t"), d.path(), &UNTIL_BUILD, |s| {
            Ok(Outcome {
                passed: s != Stage::Probe,
                detail: "x".into(),
                log: None,
            })
        });
        assert!(!r.passed);
        assert_eq!(r.version, None);
        assert_eq!(r.stages[0].status, Status::Fail);
        assert!(r.stages[1..].iter().all(|c| c.status == Status::NotRun));
    }

    #[test]
    fn a_panic_fails_its_stage_only() {
        let d = tempfile::tempdir().unwrap();
        let r = row(Path::new("/t"), d.path(), &UNTIL_BUILD, |s| {
            if s == Stage::Apply {
                panic!("boom");
            }
            Ok(Outcome::pass("ok", None))
        });
        assert_eq!(r.stages[2].status, Status::Fail);
        assert_eq!(r.stages[2].detail, "zcsplice panicked: boom");
        assert_eq!(r.stages[3].status, Status::NotRun);
    }

    #[test]
    fn a_row_that_passes_every_stage_passes() {
        let d = tempfile::tempdir().unwrap();
        let r = row(Path::new("/t"), d.path(), &UNTIL_BUILD, |_| {
            Ok(Outcome::pass("ok", None))
        });
        assert!(r.passed);
        assert!(r.stages.iter().all(|c| c.status == Status::Pass));
    }

    #[test]
    fn json_shape() {
        let d = tempfile::tempdir().unwrap();
        let r = row(Path::new("/t/linux"), d.path(), &UNTIL_BUILD, |s| match s {
            Stage::Probe => Ok(Outcome::pass("6.1.192", Some("/l/probe.json".into()))),
            _ => Err(anyhow!("no")),
        });
        let v = serde_json::to_value([&r]).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "tree": "/t/linux",
                "version": "6.1.192",
                "passed": false,
                "logs": d.path(),
                "stages": [
                    {"name": "probe", "status": "pass", "detail": "6.1.192", "log": "/l/probe.json"},
                    {"name": "render", "status": "fail", "detail": "no",
                     "log": d.path().join("render.err")},
                    {"name": "apply", "status": "not-run", "detail": "", "log": null},
                    {"name": "build", "status": "not-run", "detail": "", "log": null},
                ]
            }])
        );
    }

    #[test]
    fn table_has_a_column_per_stage_and_the_reasons_below() {
        let ok = row(
            Path::new("/a"),
            Path::new("/l/1-a"),
            &UNTIL_BUILD[..2],
            |s| {
                Ok(Outcome::pass(
                    if s == Stage::Probe {
                        "6.12.3"
                    } else {
                        "2 patches"
                    },
                    None,
                ))
            },
        );
        let bad = Row {
            tree: "/bb".into(),
            version: None,
            passed: false,
            logs: "/l/2-bb".into(),
            stages: vec![
                Cell {
                    name: Stage::Probe,
                    status: Status::Fail,
                    detail: "no Makefile".into(),
                    log: Some("/l/2-bb/probe.err".into()),
                },
                Cell {
                    name: Stage::Render,
                    status: Status::NotRun,
                    detail: String::new(),
                    log: None,
                },
            ],
        };
        assert_eq!(
            table(&[ok, bad]),
            "TREE  PROBE        RENDER          LOGS\n\
             /a    pass 6.12.3  pass 2 patches  /l/1-a\n\
             /bb   FAIL         not run         /l/2-bb\n\
             \n/bb: probe failed: no Makefile\n  log: /l/2-bb/probe.err\n\
             \n1 of 2 trees passed\n"
        );
    }
}
