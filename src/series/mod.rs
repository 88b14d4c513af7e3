//! Loading the series definition: `patches/series.yaml`, `patches/probes.yaml`
//! and one `patches/NNNN-*.yaml` per patch. Every error names the file and line.

pub mod apply;
pub mod edit;
pub mod probe;
pub mod render;
pub mod template;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::series::probe::ProbeDef;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cover {
    pub subject: String,
    pub template: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    #[serde(default = "default_version")]
    pub version: u32,
    pub change_id: String,
    pub author: Person,
    /// RFC 3339; author and committer date of every commit, so that the
    /// same tree always renders to the same commit ids.
    pub date: String,
    pub cover: Cover,
    pub patches: Vec<String>,
    /// Patches committed after the series on the test branch but never
    /// sent: the negative controls' fault injection.
    #[serde(default)]
    pub testing: Vec<String>,
}

fn default_prefix() -> String {
    "PATCH".into()
}
fn default_version() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum At {
    After,
    Before,
    Replace,
    Create,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditDef {
    pub file: String,
    pub at: At,
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub fragment: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
    /// Line of this edit's `- file:` in the patch definition (filled in).
    #[serde(skip)]
    pub line: usize,
    /// Lines where the anchor and text templates start (filled in).
    #[serde(skip)]
    pub anchor_line: usize,
    #[serde(skip)]
    pub text_line: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchDef {
    pub subject: String,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub skip_reason: Option<String>,
    pub body: String,
    #[serde(default)]
    pub trailers: Vec<String>,
    pub edits: Vec<EditDef>,
    /// The definition file, relative to the series root, for messages.
    #[serde(skip)]
    pub path: PathBuf,
    /// Lines where the subject and body templates start (filled in).
    #[serde(skip)]
    pub subject_line: usize,
    #[serde(skip)]
    pub body_line: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    probes: Vec<ProbeDef>,
}

/// The whole series as read from disk.
#[derive(Debug)]
pub struct Series {
    /// Directory holding `patches/` and `templates/`.
    pub root: PathBuf,
    pub manifest: Manifest,
    pub probes: Vec<ProbeDef>,
    pub patches: Vec<PatchDef>,
    pub testing: Vec<PatchDef>,
    /// What changed in this revision (`patches/changes/v<N>.txt`): the
    /// cover letter's "Changes in vN". None for the first revision.
    pub changes: Option<String>,
}

/// Where revision `version`'s changelog lives, relative to the series.
pub fn changes_path(version: u32) -> PathBuf {
    PathBuf::from(format!("patches/changes/v{version}.txt"))
}

impl Series {
    pub fn load(root: &Path) -> Result<Series> {
        let manifest: Manifest = load_yaml(root, Path::new("patches/series.yaml"))?;
        let probe_path = Path::new("patches/probes.yaml");
        let mut probes = load_yaml::<ProbeFile>(root, probe_path)?.probes;
        let probe_text = std::fs::read_to_string(root.join(probe_path))?;
        let probe_lines = item_lines(&probe_text, "name");
        for (i, p) in probes.iter_mut().enumerate() {
            p.line = probe_lines.get(i).copied().unwrap_or(0);
        }
        let patches = load_patches(root, &manifest.patches)?;
        let testing = load_patches(root, &manifest.testing)?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &probes {
            if !seen.insert(p.name.as_str()) {
                bail!(
                    "{}:{}: probe `{}` defined twice",
                    probe_path.display(),
                    p.line,
                    p.name
                );
            }
        }
        let rel = changes_path(manifest.version);
        let changes = match std::fs::read_to_string(root.join(&rel)) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim_end().to_string()),
            Ok(_) | Err(_) if manifest.version == 1 => None,
            Ok(_) => bail!(
                "{}: empty: say what changed in v{} (the cover letter's \"Changes in v{}\")",
                rel.display(),
                manifest.version,
                manifest.version
            ),
            Err(e) => bail!(
                "{}: {e}: revision {} of patches/series.yaml needs a changelog \
                 (the cover letter's \"Changes in v{}\")",
                rel.display(),
                manifest.version,
                manifest.version
            ),
        };
        Ok(Series {
            root: root.to_path_buf(),
            manifest,
            probes,
            patches,
            testing,
            changes,
        })
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
}

fn load_patches(root: &Path, names: &[String]) -> Result<Vec<PatchDef>> {
    let mut patches = Vec::new();
    for name in names {
        let rel = Path::new("patches").join(name);
        let mut def: PatchDef = load_yaml(root, &rel)?;
        let text = std::fs::read_to_string(root.join(&rel))?;
        let lines = item_lines(&text, "file");
        if lines.len() != def.edits.len() {
            bail!(
                "{}: every edit must start with `- file:` ({} edits, {} such lines)",
                rel.display(),
                def.edits.len(),
                lines.len()
            );
        }
        for (e, line) in def.edits.iter_mut().zip(lines) {
            e.line = line;
            e.anchor_line = value_line(&text, line, "anchor");
            e.text_line = value_line(&text, line, "text");
            check_edit(&rel, e)?;
        }
        def.subject_line = value_line(&text, 1, "subject");
        def.body_line = value_line(&text, 1, "body");
        def.path = rel;
        patches.push(def);
    }
    Ok(patches)
}

fn check_edit(rel: &Path, e: &EditDef) -> Result<()> {
    let loc = format!("{}:{}", rel.display(), e.line);
    match (&e.text, &e.fragment) {
        (Some(_), Some(_)) => bail!("{loc}: give either `text` or `fragment`, not both"),
        (None, None) => bail!(
            "{loc}: edit of {} has neither `text` nor `fragment`",
            e.file
        ),
        _ => {}
    }
    match (e.at, &e.anchor) {
        (At::Create, Some(_)) => bail!("{loc}: `at: create` takes no anchor"),
        (At::Create, None) => {}
        (_, None) => bail!("{loc}: `at: {:?}` needs an anchor", e.at),
        (_, Some(a)) if a.trim().is_empty() => bail!("{loc}: empty anchor"),
        _ => {}
    }
    Ok(())
}

/// Reads and parses one YAML file, turning parse errors into `file:line:col: msg`.
pub fn load_yaml<T: DeserializeOwned>(root: &Path, rel: &Path) -> Result<T> {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| match e.location() {
        Some(l) => {
            let msg = e.to_string();
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
            let hint = if msg.contains("found a tab character") {
                " (a block whose first line starts with a tab needs an indentation \
                 indicator: `anchor: |2` for an edit's keys)"
            } else {
                ""
            };
            anyhow::anyhow!("{}:{}:{}: {msg}{hint}", rel.display(), l.line(), l.column())
        }
        None => anyhow::anyhow!("{}: {}", rel.display(), e),
    })
}

/// Line numbers (1-based) of list items that start with `- <key>:`, in order.
/// serde_yaml does not keep spans, and these lines are what a user wants
/// to be pointed at when an edit or a probe fails.
fn item_lines(text: &str, key: &str) -> Vec<usize> {
    let prefix = format!("- {key}:");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(&prefix))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The line on which the value of `key:` starts, searching from line `from`
/// (1-based): the next line for block scalars (`|`, `>`), else the key's own.
fn value_line(text: &str, from: usize, key: &str) -> usize {
    let prefix = format!("{key}:");
    for (i, l) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let t = l.trim_start().trim_start_matches("- ");
        if let Some(rest) = t.strip_prefix(&prefix) {
            let rest = rest.trim();
            let block = rest.starts_with('|') || rest.starts_with('>');
            return i + 1 + usize::from(block);
        }
    }
    from
}

/// A tree opened on its base, with the series loaded and its facts probed:
/// what render and apply start from.
pub struct Loaded {
    pub series: Series,
    pub tree: crate::tree::Tree,
    pub probed: probe::Probed,
}

/// Loads the series of `env` and probes `spec`'s tree at its base.
pub fn load(env: &crate::env::Env, spec: &crate::tree::TreeSpec) -> Result<Loaded> {
    let series =
        Series::load(&env.series).with_context(|| format!("series in {}", env.series.display()))?;
    let tree = crate::tree::Tree::open(&spec.path, spec.base.as_deref())?;
    let probed = probe::probe(&tree, &series.probes)?;
    Ok(Loaded {
        series,
        tree,
        probed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn minimal(dir: &Path, patch: &str) {
        write(
            dir,
            "patches/series.yaml",
            "change_id: 20260101-x-000000000000\nauthor: {name: A, email: a@b}\n\
             date: '2026-01-01T00:00:00+00:00'\ncover: {subject: s, template: c.j2}\n\
             patches: [0001-a.yaml]\n",
        );
        write(dir, "patches/probes.yaml", "probes: []\n");
        write(dir, "patches/0001-a.yaml", patch);
    }

    #[test]
    fn a_later_revision_needs_its_changelog() {
        let d = tempfile::tempdir().unwrap();
        minimal(d.path(), "subject: x\nbody: b\nedits: []\n");
        assert_eq!(Series::load(d.path()).unwrap().changes, None);
        let yaml = d.path().join("patches/series.yaml");
        let text = std::fs::read_to_string(&yaml).unwrap();
        std::fs::write(&yaml, format!("version: 3\n{text}")).unwrap();
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("patches/changes/v3.txt: ") && err.contains("needs a changelog"),
            "{err}"
        );
        write(d.path(), "patches/changes/v3.txt", "\n");
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert!(err.starts_with("patches/changes/v3.txt: empty"), "{err}");
        write(d.path(), "patches/changes/v3.txt", "- fixed a thing\n\n");
        let s = Series::load(d.path()).unwrap();
        assert_eq!(s.changes.as_deref(), Some("- fixed a thing"));
    }

    /// A tree may leave patches out (7.x has no patch 1 of 6.x), so the
    /// series' own text names a patch only through `n["name"]`: a number
    /// written out is right on some trees and wrong on others.
    #[test]
    fn the_series_text_numbers_no_patch_by_hand() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let literal = regex::Regex::new(r"\b[Pp]atch(es)? [0-9]").unwrap();
        let mut found = Vec::new();
        for dir in ["templates", "patches", "patches/changes"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = e.unwrap().path();
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                for (i, line) in text.lines().enumerate() {
                    if literal.is_match(line) {
                        let name = path.file_name().unwrap().to_string_lossy();
                        found.push(format!("{dir}/{name}:{}: {line}", i + 1));
                    }
                }
            }
        }
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn bad_yaml_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        minimal(
            d.path(),
            "subject: x\nbody: |\n  b\nedits:\n  - file: a\n    at: [\n",
        );
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert!(err.starts_with("patches/0001-a.yaml:"), "{err}");
        assert!(err.contains(":7:") || err.contains(":6:"), "{err}");
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        minimal(
            d.path(),
            "subject: x\nbody: b\nedits:\n  - file: a\n    at: after\n    anchr: y\n    text: z\n",
        );
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("patches/0001-a.yaml:6:5: edits[0]: unknown field `anchr`"),
            "{err}"
        );
        assert!(err.contains("anchr"), "{err}");
    }

    #[test]
    fn edit_without_anchor_is_refused_with_its_line() {
        let d = tempfile::tempdir().unwrap();
        minimal(
            d.path(),
            "subject: x\nbody: b\nedits:\n  - file: a\n    at: create\n    text: t\n  - file: b\n    at: after\n    text: z\n",
        );
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert_eq!(err, "patches/0001-a.yaml:7: `at: After` needs an anchor");
    }

    #[test]
    fn leading_tab_in_block_gets_a_hint() {
        let d = tempfile::tempdir().unwrap();
        minimal(
            d.path(),
            "subject: x\nbody: b\nedits:\n  - file: a\n    at: after\n    anchor: |\n      \treturn 0;\n    text: z\n",
        );
        let err = Series::load(d.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("patches/0001-a.yaml:7:7: found a tab character"),
            "{err}"
        );
        assert!(err.contains("`anchor: |2`"), "{err}");
    }

    #[test]
    fn loads_edit_lines() {
        let d = tempfile::tempdir().unwrap();
        minimal(
            d.path(),
            "subject: x\nbody: b\nedits:\n  - file: a\n    at: create\n    text: t\n\n  - file: b\n    at: after\n    anchor: q\n    text: z\n",
        );
        let s = Series::load(d.path()).unwrap();
        let lines: Vec<_> = s.patches[0].edits.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 8]);
        assert_eq!(s.patches[0].edits[1].anchor_line, 10);
        assert_eq!(s.patches[0].body_line, 2);
    }
}
