//! API probes: facts about a kernel tree that the templates branch on.
//! The probes themselves are data (`patches/probes.yaml`); this module only
//! evaluates them against the base commit and records the evidence.

use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::tree::Tree;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeDef {
    pub name: String,
    #[serde(default)]
    pub doc: String,
    pub files: Vec<String>,
    pub regex: String,
    /// The fact is true when the regex does *not* match.
    #[serde(default)]
    pub negate: bool,
    /// The fact is the text of this capture group instead of a bool.
    #[serde(default)]
    pub capture: Option<usize>,
    /// Line in probes.yaml (filled in by the loader).
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub value: Value,
    pub evidence: String,
    /// The probe's description, for people (not in the JSON).
    #[serde(skip)]
    pub doc: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub sublevel: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probed {
    /// "6.12.117" (plus EXTRAVERSION when the Makefile has one).
    pub version: String,
    #[serde(skip)]
    pub kernel: KernelVersion,
    pub facts: BTreeMap<String, Fact>,
}

/// Reads VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION from the top Makefile.
pub fn kernel_version(makefile: &str) -> Result<(KernelVersion, String)> {
    let get = |key: &str| -> Option<String> {
        makefile.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let num = |key: &str| -> Result<u32> {
        get(key)
            .ok_or_else(|| anyhow!("Makefile: no {key} line"))?
            .parse()
            .with_context(|| format!("Makefile: {key} is not a number"))
    };
    let k = KernelVersion {
        major: num("VERSION")?,
        minor: num("PATCHLEVEL")?,
        sublevel: num("SUBLEVEL")?,
    };
    let extra = get("EXTRAVERSION").unwrap_or_default();
    Ok((
        k,
        format!("{}.{}.{}{}", k.major, k.minor, k.sublevel, extra),
    ))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

/// One line of evidence text: the match with runs of whitespace collapsed.
fn squash(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 160 {
        format!("{}...", &s[..s.floor_char_boundary(157)])
    } else {
        s
    }
}

fn run_probe(tree: &Tree, p: &ProbeDef) -> Result<Fact> {
    let loc = format!("patches/probes.yaml:{}: probe `{}`", p.line, p.name);
    let re = Regex::new(&p.regex).map_err(|e| anyhow!("{loc}: bad regex: {e}"))?;
    let mut present = 0;
    for file in &p.files {
        let Some(text) = tree.read(file)? else {
            continue;
        };
        present += 1;
        if let Some(c) = re.captures(&text) {
            let m = c.get(0).unwrap();
            let evidence = format!(
                "{file}:{}: {}",
                line_of(&text, m.start()),
                squash(m.as_str())
            );
            let value = match p.capture {
                Some(n) => Value::String(
                    c.get(n)
                        .ok_or_else(|| anyhow!("{loc}: capture group {n} did not take part"))?
                        .as_str()
                        .to_string(),
                ),
                None => Value::Bool(!p.negate),
            };
            return Ok(Fact {
                value,
                evidence,
                doc: p.doc.clone(),
            });
        }
    }
    if present == 0 {
        // A probe that cannot look anywhere proves nothing: say so rather
        // than report a silent `false` (the DRBD #85 failure mode).
        bail!(
            "{loc}: none of its files exist in this tree: {}",
            p.files.join(", ")
        );
    }
    if p.capture.is_some() {
        bail!(
            "{loc}: no match in {} (a capture probe must match)",
            p.files.join(", ")
        );
    }
    Ok(Fact {
        value: Value::Bool(p.negate),
        evidence: format!("no match for /{}/ in {}", p.regex, p.files.join(", ")),
        doc: p.doc.clone(),
    })
}

pub fn probe(tree: &Tree, defs: &[ProbeDef]) -> Result<Probed> {
    let makefile = tree
        .read("Makefile")?
        .ok_or_else(|| anyhow!("the tree has no Makefile"))?;
    let (kernel, version) = kernel_version(&makefile)?;
    let mut facts = BTreeMap::new();
    for p in defs {
        facts.insert(p.name.clone(), run_probe(tree, p)?);
    }
    Ok(Probed {
        version,
        kernel,
        facts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_makefile_version() {
        let mk =
            "# x\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION = -rc1\nNAME = x\n";
        let (k, v) = kernel_version(mk).unwrap();
        assert_eq!((k.major, k.minor, k.sublevel), (6, 12, 117));
        assert_eq!(v, "6.12.117-rc1");
        assert!(kernel_version("VERSION = 6\n").is_err());
    }

    #[test]
    fn squash_collapses_whitespace() {
        assert_eq!(squash("int (*f)(a,\n\t\tb);"), "int (*f)(a, b);");
    }
}
