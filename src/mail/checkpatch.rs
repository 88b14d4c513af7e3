//! The gate before mail goes out: the tree's own `checkpatch.pl --strict`
//! on every patch. Any error, warning or check stops it, unless the user
//! overrides it with a reason, which the cover letter then says.

use anyhow::{bail, Result};
use std::path::Path;

/// What checkpatch said of one patch.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub subject: String,
    pub errors: u32,
    pub warnings: u32,
    pub checks: u32,
    /// Its report, without the summary lines, when not clean.
    pub report: String,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.errors + self.warnings + self.checks == 0
    }
}

/// checkpatch's "total: 0 errors, 1 warnings, 2 checks, 107 lines checked".
fn totals(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().find(|l| l.starts_with("total: "))?;
    let num = |what: &str| -> Option<u32> {
        line.split(", ")
            .find(|p| p.trim_start_matches("total: ").ends_with(what))?
            .trim_start_matches("total: ")
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((num("errors")?, num("warnings")?, num("checks")?))
}

/// Runs the tree's checkpatch.pl --strict on one patch email.
pub fn check(tree: &Path, subject: &str, email: &str) -> Result<Verdict> {
    let out = super::tree_script(
        tree,
        "checkpatch.pl",
        &["--strict", "--no-summary-file", "--color=never"],
        email,
        " to check the patches with",
    )?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // spdxcheck.py dies without its modules, and checkpatch goes on as if
    // the SPDX lines were fine: a check that did not run is no pass.
    if text.contains("Traceback (most recent call last)") {
        bail!(
            "checkpatch.pl could not check \"{subject}\": a helper script failed \
             (spdxcheck.py needs the Python modules ply and gitpython: \
             `zcsplice setup` installs them):\n{}",
            text.trim()
        );
    }
    let Some((errors, warnings, checks)) = totals(&text) else {
        bail!(
            "checkpatch.pl gave no totals for \"{subject}\":\n{}",
            text.trim()
        );
    };
    let report = text
        .lines()
        .take_while(|l| !l.starts_with("total: "))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Verdict {
        subject: subject.to_string(),
        errors,
        warnings,
        checks,
        report: report.trim().to_string(),
    })
}

/// The line the cover letter carries when the user sent past the gate.
pub fn override_note(reason: &str, failed: &[Verdict]) -> String {
    let list: Vec<String> = failed
        .iter()
        .map(|v| {
            format!(
                "  {} ({} errors, {} warnings, {} checks)",
                v.subject, v.errors, v.warnings, v.checks
            )
        })
        .collect();
    format!(
        "checkpatch.pl --strict is not clean on:\n{}\nSent anyway: {reason}\n",
        list.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checkpatchs_totals() {
        let out = "WARNING: line length of 101 exceeds 100 columns\n#12: FILE: a.c:3:\n\n\
                   total: 0 errors, 1 warnings, 2 checks, 107 lines checked\n";
        assert_eq!(totals(out), Some((0, 1, 2)));
        assert_eq!(totals("nothing"), None);
    }
}
