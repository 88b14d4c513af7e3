//! `zcsplice controls`: the negative controls. Each fault in
//! vm/controls.yaml re-introduces a known pitfall through the series'
//! fault knob; the tests must then fail. One boot per fault, because a
//! caught fault usually ends in a panic.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::guest::boot::Verdict;
use crate::suites::guest_tests::Report;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub fault: String,
    pub why: String,
    pub tests: Vec<String>,
    /// A fact of patches/probes.yaml that must be true of the tree for the
    /// fault to exist there (None: every tree).
    #[serde(default)]
    pub when: Option<String>,
}

impl Control {
    /// Does the fault exist in a tree with these facts? A `when` that
    /// names no probe is an error in vm/controls.yaml.
    pub fn applies(&self, facts: &crate::series::probe::Probed) -> Result<bool> {
        let Some(name) = &self.when else {
            return Ok(true);
        };
        let fact = facts.facts.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "vm/controls.yaml: control {}: when: {name} is not a probe of patches/probes.yaml",
                self.fault
            )
        })?;
        Ok(fact.value == serde_json::Value::Bool(true))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlsFile {
    controls: Vec<Control>,
}

pub fn load(project: &Path) -> Result<Vec<Control>> {
    let f: ControlsFile = crate::series::load_yaml(project, Path::new("vm/controls.yaml"))?;
    Ok(f.controls)
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub fault: String,
    pub verdict: Verdict,
    /// The control worked: the tests or the console caught the fault.
    pub caught: bool,
    /// What caught it: failing tests and kernel reports.
    pub evidence: Vec<String>,
    pub logs: String,
}

/// Runs the controls named in `only` (all when empty), one boot each with
/// its fault injected, and judges them. An unknown fault is a usage error,
/// found before any build; a VM that cannot start is an infrastructure
/// failure, not a missed control.
pub fn run_controls(
    env: &crate::env::Env,
    req: &crate::kernel::build::BuildRequest,
    only: &[String],
    timeout: std::time::Duration,
) -> Result<Vec<Outcome>> {
    let all = load(&env.series)?;
    if let Some(f) = only.iter().find(|f| !all.iter().any(|c| &c.fault == *f)) {
        let known: Vec<&str> = all.iter().map(|c| c.fault.as_str()).collect();
        return Err(crate::exit::usage(anyhow::anyhow!(
            "--fault {f}: not in vm/controls.yaml (it has: {})",
            known.join(", ")
        )));
    }
    let spec = crate::tree::TreeSpec {
        path: req.tree.clone(),
        base: None,
    };
    let probed = crate::series::load(env, &spec)?.probed;
    let mut picked = Vec::new();
    for c in all
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.fault))
    {
        if c.applies(&probed)? {
            picked.push(c);
        } else {
            log::info!(
                "control {}: not in this tree ({} is false for {})",
                c.fault,
                c.when.as_deref().unwrap_or_default(),
                probed.version
            );
        }
    }
    if picked.is_empty() {
        return Err(crate::exit::usage(anyhow::anyhow!(
            "no control asked for exists in {} (see `when:` in vm/controls.yaml)",
            probed.version
        )));
    }
    let built = crate::kernel::build::build_kernel(env, req)?;
    let mut outcomes = Vec::new();
    for c in picked {
        log::info!("control {}: {}", c.fault, c.why);
        let opts = crate::suites::guest_tests::RunOpts {
            tests: c.tests.clone(),
            vm: crate::guest::boot::VmOpts {
                timeout,
                memory: "2G".into(),
                cpus: 2,
                numa_nodes: crate::guest::boot::TEST_NUMA_NODES,
            },
            fault: Some(c.fault.clone()),
            command: None,
            partial_series: false,
        };
        let report = crate::suites::guest_tests::run_built(env, &built, &opts)?;
        if matches!(report.verdict, Verdict::VmFailed) {
            return Err(crate::exit::infrastructure(anyhow::anyhow!(
                "control {}: the VM could not be started (logs: {})",
                c.fault,
                report.logs.display()
            )));
        }
        outcomes.push(judge(&c.fault, &report));
    }
    Ok(outcomes)
}

/// Did the run see the fault? A harness problem (VM not started, knob
/// missing) is not a catch, nor is a bare timeout: they say nothing about
/// the tests. A kernel that reported the bug and then hung did catch it.
pub fn judge(fault: &str, r: &Report) -> Outcome {
    let knob_failed = r.tests.iter().any(|t| t.name == "setup");
    let caught = !knob_failed
        && match r.verdict {
            Verdict::Fail | Verdict::Crash => true,
            Verdict::Timeout => !r.splats.is_empty(),
            _ => false,
        };
    // Kernel reports first: they name the bug; a test cut short by them does not.
    let mut evidence = collapse(r.splats.iter().map(|s| s.title.as_str()));
    evidence.extend(r.tests.iter().filter(|t| t.result.bad()).map(|t| {
        let last = t.output.lines().rfind(|l| !l.trim().is_empty());
        let last = last.map_or("no output".into(), |l| l.trim().to_string());
        format!("{}: {} ({last})", t.name, t.result)
    }));
    Outcome {
        fault: fault.to_string(),
        verdict: r.verdict,
        caught,
        evidence,
        logs: r.logs.display().to_string(),
    }
}

/// Kernel report titles, each kind once: reports that differ only in a
/// page frame number (a fault hits every page) become one line with their
/// count.
fn collapse<'a>(titles: impl Iterator<Item = &'a str>) -> Vec<String> {
    static PFN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\s*pfn:[0-9a-f]+").unwrap());
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for t in titles {
        let key = PFN.replace_all(t, "").trim().to_string();
        match seen.iter_mut().find(|s| s.0 == key) {
            Some(s) => s.2 += 1,
            None => seen.push((key, t.to_string(), 1)),
        }
    }
    seen.into_iter()
        .map(|(key, first, n)| match n {
            1 => first,
            n => format!("{key} ({n} reports)"),
        })
        .collect()
}

/// One line per fault: its verdict, whether the tests caught it, and the
/// evidence, one item a line.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = crate::report::table(["fault", "verdict", "caught", "evidence"], &[]);
    for o in outcomes {
        let evidence = if o.evidence.is_empty() {
            "-".to_string()
        } else {
            o.evidence.join("\n")
        };
        t.add_row([
            o.fault.clone(),
            o.verdict.as_str().to_string(),
            if o.caught { "yes" } else { "MISSED" }.to_string(),
            evidence,
        ]);
    }
    t.trim_fmt() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::boot::TestResult;
    use crate::guest::console::Splat;

    fn report(verdict: Verdict, tests: &[(&str, &str)], splat: bool) -> Report {
        Report {
            verdict,
            kernel: "6.12.117".into(),
            accel: "tcg".into(),
            accel_reason: String::new(),
            tests: tests
                .iter()
                .map(|(n, r)| TestResult {
                    name: n.to_string(),
                    result: r.parse().unwrap(),
                    seconds: 1.0,
                    output: "FAIL: 3 failures\n".into(),
                })
                .collect(),
            splats: splat
                .then(|| Splat {
                    kind: "BUG".into(),
                    title: "BUG: Bad page state in process x".into(),
                    test: Some("splice-integrity".into()),
                    text: String::new(),
                })
                .into_iter()
                .collect(),
            seconds: 10.0,
            logs: "/tmp/logs".into(),
            leftovers: vec![],
            vm_exit_code: None,
        }
    }

    #[test]
    fn failing_tests_and_crashes_catch_the_fault() {
        let o = judge("not-dirty", &report(Verdict::Fail, &[("t", "fail")], false));
        assert!(o.caught);
        assert_eq!(o.evidence, ["t: fail (FAIL: 3 failures)"]);
        let o = judge(
            "kmem-charge",
            &report(Verdict::Crash, &[("t", "incomplete")], true),
        );
        assert!(o.caught);
        assert_eq!(
            o.evidence,
            [
                "BUG: Bad page state in process x",
                "t: incomplete (FAIL: 3 failures)"
            ]
        );
    }

    #[test]
    fn reports_on_many_pages_are_one_line() {
        let titles = [
            "BUG: Bad page state in process splice-basic  pfn:02b08",
            "BUG: Bad page state in process splice-basic  pfn:02af1",
            "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "BUG: Bad page state in process splice-basic  pfn:0274b",
            "BUG: Bad page state in process other  pfn:1",
        ];
        assert_eq!(
            collapse(titles.into_iter()),
            [
                "BUG: Bad page state in process splice-basic (3 reports)",
                "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
                "BUG: Bad page state in process other  pfn:1",
            ]
        );
    }

    #[test]
    fn the_table_has_a_line_per_fault_and_per_item_of_evidence() {
        let caught = judge(
            "kmem-charge",
            &report(Verdict::Crash, &[("t", "incomplete")], true),
        );
        let missed = judge("x", &report(Verdict::Pass, &[("t", "pass")], false));
        assert_eq!(
            table(&[caught, missed]),
            "fault        verdict  caught  evidence\n\
             kmem-charge  crash    yes     BUG: Bad page state in process x\n\
             \x20                             t: incomplete (FAIL: 3 failures)\n\
             x            pass     MISSED  -\n"
        );
    }

    #[test]
    fn a_control_with_when_runs_only_where_its_fact_is_true() {
        use crate::series::probe::{Fact, Probed};
        let fact = |v: bool| Fact {
            value: serde_json::Value::Bool(v),
            evidence: String::new(),
            doc: String::new(),
        };
        let mut probed = Probed {
            version: "7.3.4".into(),
            kernel: crate::series::probe::kernel_version(
                "VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 4\n",
            )
            .unwrap()
            .0,
            facts: [("ext4_large_folios".to_string(), fact(true))].into(),
        };
        let c = |when: Option<&str>| Control {
            fault: "large-folio-donor".into(),
            why: String::new(),
            tests: vec![],
            when: when.map(String::from),
        };
        assert!(c(None).applies(&probed).unwrap());
        assert!(c(Some("ext4_large_folios")).applies(&probed).unwrap());
        probed.facts.insert("ext4_large_folios".into(), fact(false));
        assert!(!c(Some("ext4_large_folios")).applies(&probed).unwrap());
        let e = c(Some("nosuch")).applies(&probed).unwrap_err().to_string();
        assert!(e.contains("when: nosuch is not a probe"), "{e}");
    }

    #[test]
    fn passing_tests_miss_the_fault() {
        assert!(!judge("x", &report(Verdict::Pass, &[("t", "pass")], false)).caught);
    }

    #[test]
    fn a_timeout_catches_only_with_a_kernel_report() {
        assert!(judge("x", &report(Verdict::Timeout, &[("t", "incomplete")], true)).caught);
        assert!(
            !judge(
                "x",
                &report(Verdict::Timeout, &[("t", "incomplete")], false)
            )
            .caught
        );
    }

    #[test]
    fn a_knob_that_could_not_be_set_is_no_catch() {
        let r = report(Verdict::Fail, &[("setup", "fail"), ("t", "pass")], false);
        assert!(!judge("x", &r).caught);
    }
}
