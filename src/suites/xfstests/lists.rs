//! Test lists and expunge files: `dir/NNN  # reason`, one test a line.
//! Every entry must say why it is there; blank lines and whole-line
//! comments are allowed. Errors name the file and the line.

use anyhow::{bail, Context, Result};
use regex::Regex;
use std::path::Path;
use std::sync::LazyLock;

/// A test name as xfstests spells it: `generic/001`, `ext4/045`.
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9_-]+/[0-9]{3,}$").unwrap());

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub test: String,
    pub reason: String,
    /// 1-based line in the file.
    pub line: usize,
}

pub fn valid_name(s: &str) -> bool {
    NAME.is_match(s)
}

/// Parses list text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (test, reason) = match l.split_once('#') {
            Some((t, r)) => (t.trim(), r.trim()),
            None => (l, ""),
        };
        if test.split_whitespace().count() != 1 {
            bail!("{origin}:{line}: one test a line, then `# reason`: {l:?}");
        }
        if !valid_name(test) {
            bail!("{origin}:{line}: {test:?} is not a test name (like generic/001)");
        }
        if reason.is_empty() {
            bail!("{origin}:{line}: {test} has no reason (`{test}  # why`)");
        }
        if let Some(first) = out.iter().find(|e| e.test == test) {
            bail!(
                "{origin}:{line}: {test} is listed twice (first on line {})",
                first.line
            );
        }
        out.push(Entry {
            test: test.to_string(),
            reason: reason.to_string(),
            line,
        });
    }
    Ok(out)
}

/// Reads and parses a list file.
pub fn load(path: &Path) -> Result<Vec<Entry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// The expunge list for a filesystem: `vm/xfstests/expunge/<fs>`, or none.
pub fn expunged(project: &Path, fs: &str) -> Result<Vec<Entry>> {
    let p = project.join("vm/xfstests/expunge").join(fs);
    if !p.exists() {
        return Ok(Vec::new());
    }
    load(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_comments_and_blank_lines() {
        let t = "# header\n\ngeneric/001  # buffered writes\n  ext4/045 #dir index  \n";
        let e = parse(t, "x").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].test, "generic/001");
        assert_eq!(e[0].reason, "buffered writes");
        assert_eq!(e[0].line, 3);
        assert_eq!(e[1].test, "ext4/045");
        assert_eq!(e[1].reason, "dir index");
        assert_eq!(e[1].line, 4);
    }

    #[test]
    fn a_line_without_a_reason_names_file_and_line() {
        let err = parse(
            "generic/001 # ok\ngeneric/002\n",
            "vm/xfstests/expunge/ext4",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "vm/xfstests/expunge/ext4:2: generic/002 has no reason (`generic/002  # why`)"
        );
        let err = parse("generic/003 #   \n", "f").unwrap_err().to_string();
        assert!(err.starts_with("f:1: generic/003 has no reason"), "{err}");
    }

    #[test]
    fn bad_names_two_tests_and_duplicates_are_errors() {
        let err = parse("generic/1x # why\n", "f").unwrap_err().to_string();
        assert!(
            err.starts_with("f:1: \"generic/1x\" is not a test name"),
            "{err}"
        );
        let err = parse("001 # why\n", "f").unwrap_err().to_string();
        assert!(err.starts_with("f:1: \"001\" is not a test name"), "{err}");
        let err = parse("\ngeneric/001 generic/002 # why\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:2: one test a line"), "{err}");
        let err = parse("generic/001 # a\n# c\ngeneric/001 # b\n", "f")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "f:3: generic/001 is listed twice (first on line 1)");
    }

    #[test]
    fn the_shipped_lists_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let smoke = load(&root.join("vm/xfstests/zcsplice-smoke")).unwrap();
        assert!(smoke.len() >= 40, "{} tests", smoke.len());
        for e in &smoke {
            assert!(e.test.starts_with("generic/"), "{} is not generic", e.test);
        }
        for fs in ["ext4", "ext2"] {
            let x = expunged(root, fs).unwrap();
            for e in &x {
                assert!(
                    !smoke.iter().any(|s| s.test == e.test),
                    "{} is in the smoke list and expunged on {fs}",
                    e.test
                );
            }
        }
    }
}
