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
    /// Of all the matches (every file), take the one whose group N is the
    /// largest number, rather than the first (e.g. the highest flag bit
    /// in use).
    #[serde(default)]
    pub max_of: Option<usize>,
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
    // The chosen match: (its group `max_of` as a number, evidence, value).
    let mut best: Option<(u64, String, Value)> = None;
    for file in &p.files {
        let Some(text) = tree.read(file)? else {
            continue;
        };
        present += 1;
        for c in re.captures_iter(&text) {
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
            let Some(n) = p.max_of else {
                return Ok(Fact {
                    value,
                    evidence,
                    doc: p.doc.clone(),
                });
            };
            let key = c
                .get(n)
                .and_then(|g| g.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    anyhow!("{loc}: `max_of: {n}`: group {n} of `{evidence}` is not a number")
                })?;
            if best.as_ref().is_none_or(|b| key > b.0) {
                best = Some((key, evidence, value));
            }
        }
    }
    if let Some((_, evidence, value)) = best {
        return Ok(Fact {
            value,
            evidence,
            doc: p.doc.clone(),
        });
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
    fn max_of_takes_the_match_with_the_largest_number() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let fs_h = "#define F_A\t(1 << 21)\n#define F_B\t(1 << 23)\n#define F_C\t(1 << 22)\n";
        std::fs::create_dir_all(dir.path().join("include")).unwrap();
        std::fs::write(dir.path().join("include/fs.h"), fs_h).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_path(std::path::Path::new("include/fs.h"))
            .unwrap();
        let tree_id = index.write_tree().unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let t = repo.find_tree(tree_id).unwrap();
        let c = repo.commit(Some("HEAD"), &sig, &sig, "x", &t, &[]).unwrap();
        let tree = Tree::open(dir.path(), Some(&c.to_string())).unwrap();
        let def = |capture| ProbeDef {
            name: "last".into(),
            doc: String::new(),
            files: vec!["include/fs.h".into()],
            regex: r"(#define F_\w+\s+\(1 << (\d+)\))".into(),
            negate: false,
            capture: Some(capture),
            max_of: Some(2),
            line: 1,
        };
        let f = run_probe(&tree, &def(1)).unwrap();
        assert_eq!(f.value, Value::String("#define F_B\t(1 << 23)".into()));
        assert_eq!(f.evidence, "include/fs.h:2: #define F_B (1 << 23)");
        assert_eq!(
            run_probe(&tree, &def(2)).unwrap().value,
            Value::String("23".into())
        );
        // A group that is not a number is an error naming the probe.
        let mut bad = def(1);
        bad.max_of = Some(1);
        let e = run_probe(&tree, &bad).unwrap_err().to_string();
        assert!(
            e.contains("probe `last`") && e.contains("not a number"),
            "{e}"
        );
    }

    #[test]
    fn squash_collapses_whitespace() {
        assert_eq!(squash("int (*f)(a,\n\t\tb);"), "int (*f)(a, b);");
    }
}
