//! The CLI over the library: each command resolves its options, calls
//! the stage functions and hands their typed results to `output`.

pub mod args;
pub mod output;

use anyhow::{Context, Result};

use args::{Cli, Cmd, TreeCmd};
use zcsplice::env::Env;
use zcsplice::exit;
use zcsplice::kernel::build::{build_kernel, BuildRequest};
use zcsplice::series::{self, apply, render};
use zcsplice::suites::{bench, controls, guest_tests, xfstests};
use zcsplice::tree::{debian, import};
use zcsplice::workflows::{bisect, each_commit, matrix};

/// Runs the command; returns the exit code of a command that finished
/// (a failed test is a result, not an error).
pub fn dispatch(cli: &Cli, env: &Env) -> Result<u8> {
    match &cli.cmd {
        Cmd::Tree(t) => tree(t, env)?,
        Cmd::Probe { tree, json } => {
            let l = series::load(env, &tree.spec())?;
            match json {
                true => output::json(&l.probed)?,
                false => output::facts(&l.probed),
            }
        }
        Cmd::Render { tree, out } => {
            let (r, _, written) = render::render_to(env, &tree.spec(), out)?;
            written.iter().for_each(|f| output::line(f.display()));
            for x in &r.excluded {
                output::note(format!("left out \"{}\": {}", x.subject, x.reason));
            }
        }
        Cmd::Format {
            tree,
            out,
            from,
            recipients,
            checkpatch_override,
            no_checkpatch,
        } => {
            use zcsplice::mail::Gate;
            let gate = match (checkpatch_override, no_checkpatch) {
                (Some(why), _) => Gate::Override(why.clone()),
                (None, true) => Gate::Skip,
                (None, false) => Gate::Strict,
            };
            let f = zcsplice::mail::format_to(
                env,
                &tree.spec(),
                out,
                from.as_deref(),
                &recipients.overrides(),
                &gate,
            )?;
            output::line(f.mbox.display());
            let messages = zcsplice::mail::outbox::outgoing(&f.thread)?;
            output::envelope(&messages)
                .into_iter()
                .for_each(output::note);
        }
        Cmd::Send {
            tree,
            from,
            recipients,
            checkpatch_override,
            confirm,
            resume,
            base_is_upstream,
        } => {
            use zcsplice::mail::{Gate, SendOutcome, SendRequest};
            let gate = match checkpatch_override {
                Some(why) => Gate::Override(why.clone()),
                None => Gate::Strict,
            };
            let overrides = recipients.overrides();
            let req = SendRequest {
                from: from.as_deref(),
                overrides: &overrides,
                gate: &gate,
                confirm: *confirm,
                resume: *resume,
                base_is_upstream: *base_is_upstream,
            };
            // Each message's recipients are shown as it goes, as
            // git send-email shows its headers.
            let outcome = zcsplice::mail::send(env, &tree.spec(), &req, |k, m| {
                output::note(format!("sending {k}: <{}> {}", m.message_id, m.subject));
                output::recipients(m).into_iter().for_each(output::note);
            })?;
            match outcome {
                SendOutcome::DryRun(o, mbox) => {
                    output::envelope(&o.frozen.messages)
                        .into_iter()
                        .for_each(output::line);
                    output::line(mbox.display());
                    output::note("dry run: nothing was sent; --confirm sends it");
                }
                SendOutcome::Sent {
                    outbox,
                    now,
                    server,
                    tag,
                } => {
                    output::line(format!(
                        "sent {now} of {} messages through {server}; tagged {tag}",
                        outbox.frozen.messages.len()
                    ));
                    output::note(format!("journal: {}", outbox.journal().display()));
                }
            }
        }
        Cmd::Apply {
            tree,
            branch,
            force,
        } => output::line(apply::apply_series(
            env,
            &tree.spec(),
            branch.as_deref(),
            *force,
            apply::Testing::With,
        )?),
        Cmd::Build {
            build,
            each_commit: false,
            ..
        } => output::line(build_kernel(env, &build.request())?.image.display()),
        Cmd::Build {
            build,
            each_commit: true,
            json,
        } => {
            let report = each_commit::run(env, &build.request())?;
            if *json {
                output::json(&report)?;
            } else {
                output::text(&report.table());
            }
            if report.failed().is_some() {
                return Ok(exit::SKIP);
            }
        }
        Cmd::Run {
            build,
            guest,
            json,
            junit,
            fault,
        } => {
            let opts = guest.run_opts(fault.clone());
            return run_tests(env, &build.request(), &opts, *json, junit.as_deref());
        }
        Cmd::Bench(b) => {
            let opts = b.opts()?;
            let built = build_kernel(env, &b.build.request())?;
            let result = bench::run(
                &env.series,
                &env.cache,
                &built.image,
                &built.outdir.join(".config"),
                &env.run_logs(&built),
                &opts,
            )?;
            match b.json {
                true => output::json(&result)?,
                false => output::text(&bench::table(&result)),
            }
        }
        Cmd::Controls {
            build,
            faults,
            timeout,
            json,
        } => {
            let timeout = std::time::Duration::from_secs(*timeout);
            let outcomes = controls::run_controls(env, &build.request(), faults, timeout)?;
            match json {
                true => output::json(&outcomes)?,
                false => output::text(&controls::table(&outcomes)),
            }
            return Ok(u8::from(outcomes.iter().any(|o| !o.caught)));
        }
        Cmd::Xfstests(x) => {
            let report = xfstests::run_request(env, &x.request())?;
            match x.json {
                true => output::json(&report)?,
                false => output::text(&xfstests::table(&report)),
            }
            if let Some(j) = &x.junit {
                std::fs::write(j, xfstests::junit(&report)?)
                    .with_context(|| format!("cannot write {}", j.display()))?;
            }
            return Ok(report.exit_code());
        }
        Cmd::Bisect(b) => {
            let r = bisect::run(env, &b.opts())?;
            match b.json {
                true => output::json(&r)?,
                false => {
                    output::line(bisect::table(&r));
                    output::line(bisect::summary(&r));
                }
            }
            if let Some(j) = &b.junit {
                std::fs::write(j, bisect::junit(&r)?)
                    .with_context(|| format!("cannot write {}", j.display()))?;
            }
            return Ok(r.exit_code());
        }
        Cmd::Matrix(m) => {
            let rows = matrix::run_matrix(env, &m.opts()?)?;
            match m.json {
                true => output::json(&rows)?,
                false => output::text(&matrix::table(&rows)),
            }
            return Ok(u8::from(!rows.iter().all(|r| r.passed)));
        }
        Cmd::Setup => zcsplice::deps::ensure()?,
        Cmd::Demo { debian, timeout } => return demo(env, debian, *timeout),
    }
    Ok(exit::SUCCESS)
}

fn tree(cmd: &TreeCmd, env: &Env) -> Result<()> {
    match cmd {
        TreeCmd::Import {
            debian,
            tarball,
            onto: Some(tree),
        } => {
            let commit = import::onto(debian.as_ref(), tarball.as_deref(), tree, &env.cache)?;
            output::line(commit);
        }
        TreeCmd::Import {
            debian,
            tarball,
            onto: None,
        } => {
            let done = match (debian, tarball) {
                (Some(v), _) => import::debian(v, &env.cache)?,
                (None, Some(t)) => import::tarball(t, &env.cache)?,
                (None, None) => unreachable!("clap requires one"),
            };
            output::line(done.tree.path.display());
        }
        TreeCmd::Versions { releases, json } => {
            let mut all = Vec::new();
            let mut missing = Vec::new();
            for spec in releases {
                if spec.version.is_some() {
                    return Err(exit::usage(anyhow::anyhow!(
                        "`tree versions` takes X.Y (e.g. 7.3), not X.Y=VERSION"
                    )));
                }
                let versions = debian::versions(&spec.series, &env.cache)
                    .map_err(|e| anyhow::Error::new(exit::Exit(exit::INFRA, e)))?;
                if versions.is_empty() {
                    missing.push(debian::none_found(&spec.package(), &env.cache));
                } else {
                    all.push(debian::Offer {
                        series: spec.series.clone(),
                        versions,
                    });
                }
            }
            match json {
                true => output::json(&all)?,
                false => output::debian_versions(&all),
            }
            if !missing.is_empty() {
                anyhow::bail!("{}", missing.join("\n"));
            }
        }
        TreeCmd::List { json } => {
            let trees = import::list(&env.cache)?;
            match json {
                true => output::json(&trees)?,
                false => output::trees(&trees),
            }
        }
    }
    Ok(())
}

/// Builds, boots and runs the guest tests; returns the verdict's exit code.
fn run_tests(
    env: &Env,
    req: &BuildRequest,
    opts: &guest_tests::RunOpts,
    json: bool,
    junit: Option<&std::path::Path>,
) -> Result<u8> {
    guest_tests::check_tests(&env.series, &opts.tests)?;
    let built = build_kernel(env, req)?;
    let report = guest_tests::run_built(env, &built, opts)?;
    match json {
        true => output::json(&report)?,
        false => output::text(&guest_tests::table(&report)),
    }
    if let Some(j) = junit {
        guest_tests::write_junit(&report, j)?;
    }
    Ok(report.verdict.exit_code())
}

/// The main job on a fresh machine: install, import, apply, build, boot, prove.
fn demo(env: &Env, debian: &import::DebianSpec, timeout: u64) -> Result<u8> {
    zcsplice::deps::ensure()?;
    let tree = import::debian(debian, &env.cache)?.tree.path;
    output::note(format!("tree {}", tree.display()));
    let spec = zcsplice::tree::TreeSpec {
        path: tree.clone(),
        base: None,
    };
    let applied = apply::apply_series(env, &spec, None, false, apply::Testing::With)?;
    output::note(&applied);
    let req = BuildRequest {
        tree,
        branch: Some(applied.branch),
        slot: None,
        kernel: Default::default(),
    };
    let guest = args::GuestArgs {
        tests: vec![],
        timeout,
        memory: "2G".into(),
        cmd: None,
        numa_nodes: zcsplice::guest::boot::TEST_NUMA_NODES,
    };
    run_tests(env, &req, &guest.run_opts(None), false, None)
}
