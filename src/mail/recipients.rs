//! Who gets each message: the tree's own scripts/get_maintainer.pl per
//! patch, as b4 asks it (To: maintainers and reviewers, Cc: the lists and
//! the rest), the cover letter the union, plus the user's additions and
//! minus what the user drops.

use anyhow::{bail, Result};
use std::path::Path;

/// The recipients of one message, `Name <address>` or a bare address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

/// What the user says on top of get_maintainer.pl.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Added to every message.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Removed from every message: an entry matches a recipient whose
    /// text contains it (an address, a name or a list).
    pub drop: Vec<String>,
    /// Do not ask get_maintainer.pl at all.
    pub no_maintainers: bool,
}

/// b4's `send-auto-to-cmd` and `send-auto-cc-cmd` arguments.
const COMMON: &[&str] = &[
    "--nogit",
    "--nogit-fallback",
    "--nogit-chief-penguins",
    "--norolestats",
];

/// The address part of a recipient, lowercased, to tell duplicates.
fn address(r: &str) -> String {
    r.rsplit_once('<')
        .map_or(r, |(_, a)| a.trim_end_matches('>'))
        .trim()
        .to_lowercase()
}

fn push_new(v: &mut Vec<String>, seen: &mut Vec<String>, r: &str) {
    let a = address(r);
    if !a.is_empty() && !seen.contains(&a) {
        seen.push(a);
        v.push(r.trim().to_string());
    }
}

impl Recipients {
    /// `self` and `other` together, To before Cc, each address once.
    pub fn union(&self, other: &Recipients) -> Recipients {
        let mut seen = Vec::new();
        let mut out = Recipients::default();
        for r in self.to.iter().chain(&other.to) {
            push_new(&mut out.to, &mut seen, r);
        }
        for r in self.cc.iter().chain(&other.cc) {
            push_new(&mut out.cc, &mut seen, r);
        }
        out
    }

    /// With the user's additions and drops.
    pub fn adjusted(&self, o: &Overrides) -> Recipients {
        let extra = Recipients {
            to: o.to.clone(),
            cc: o.cc.clone(),
        };
        let mut r = self.union(&extra);
        let dropped = |x: &String| {
            o.drop
                .iter()
                .any(|d| x.to_lowercase().contains(&d.to_lowercase()))
        };
        r.to.retain(|x| !dropped(x));
        r.cc.retain(|x| !dropped(x));
        r
    }
}

/// Runs the tree's get_maintainer.pl on one patch email.
pub fn of_patch(tree: &Path, email: &str) -> Result<Recipients> {
    const HINT: &str = " and MAINTAINERS; pass --no-maintainers and --to/--cc";
    if !tree.join("MAINTAINERS").exists() {
        bail!("{} has no scripts/get_maintainer.pl{HINT}", tree.display());
    }
    let run = |extra: &str| -> Result<Vec<String>> {
        let mut args = COMMON.to_vec();
        args.push(extra);
        let out = super::tree_script(tree, "get_maintainer.pl", &args, email, HINT)?;
        if !out.status.success() {
            bail!(
                "scripts/get_maintainer.pl in {} failed: {}",
                tree.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    };
    let to = run("--nol")?;
    let cc = run("--nom")?;
    // Reviewers are in both answers: the union keeps each address once.
    Ok(Recipients { to, cc }.union(&Recipients::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(to: &[&str], cc: &[&str]) -> Recipients {
        Recipients {
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: cc.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_union_names_each_address_once_to_before_cc() {
        let a = r(&["A <a@x.org>"], &["list@vger.kernel.org", "B <b@x.org>"]);
        let b = r(&["B <B@x.org>", "C <c@x.org>"], &["list@vger.kernel.org"]);
        assert_eq!(
            a.union(&b),
            r(
                &["A <a@x.org>", "B <B@x.org>", "C <c@x.org>"],
                &["list@vger.kernel.org"]
            )
        );
    }

    #[test]
    fn the_user_adds_and_drops() {
        let a = r(&["A <a@x.org>"], &["linux-kernel@vger.kernel.org"]);
        let o = Overrides {
            to: vec!["me@y.org".into()],
            cc: vec!["A <a@x.org>".into(), "z@y.org".into()],
            drop: vec!["linux-kernel@".into()],
            no_maintainers: false,
        };
        assert_eq!(
            a.adjusted(&o),
            r(&["A <a@x.org>", "me@y.org"], &["z@y.org"])
        );
    }
}
