//! Kernel config fragments: parsing, and checking that every option a
//! fragment asks for survived `make olddefconfig` (an option whose
//! dependencies are missing is silently dropped by Kconfig).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One requested setting: `CONFIG_X=value`, or `n` for `# CONFIG_X is not set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

pub fn parse_fragment(path: &Path) -> Result<Vec<Setting>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        let (name, value) = if let Some(rest) = l.strip_prefix("# CONFIG_") {
            match rest.strip_suffix(" is not set") {
                Some(n) => (format!("CONFIG_{n}"), "n".to_string()),
                None => continue,
            }
        } else if l.is_empty() || l.starts_with('#') {
            continue;
        } else if let Some((n, v)) = l.split_once('=') {
            if !n.starts_with("CONFIG_") {
                bail!("{}:{}: not a config line: {raw}", path.display(), i + 1);
            }
            (n.to_string(), v.to_string())
        } else {
            bail!("{}:{}: not a config line: {raw}", path.display(), i + 1);
        };
        out.push(Setting {
            name,
            value,
            file: path.to_path_buf(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// Values of a generated .config (unset options are absent).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Settings that did not make it into the final config, later fragments
/// overriding earlier ones for the same option.
pub fn unmet(
    requested: &[Setting],
    dotconfig: &BTreeMap<String, String>,
) -> Vec<(Setting, String)> {
    let mut last: BTreeMap<&str, &Setting> = BTreeMap::new();
    for s in requested {
        last.insert(&s.name, s);
    }
    last.into_values()
        .filter_map(|s| {
            let got = dotconfig
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| "n".into());
            (got != s.value).then(|| (s.clone(), got))
        })
        .collect()
}

/// Whether any Kconfig file of the tree defines `CONFIG_<name>`.
pub fn symbol_defined(src: &Path, config_name: &str) -> bool {
    let name = config_name.trim_start_matches("CONFIG_");
    let re = regex::Regex::new(&format!(
        r"(?m)^\s*(?:menu)?config\s+{}\s*$",
        regex::escape(name)
    ))
    .expect("valid regex");
    fn walk(dir: &Path, re: &regex::Regex) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if p.is_dir() && !name.starts_with('.') {
                if walk(&p, re) {
                    return true;
                }
            } else if name.starts_with("Kconfig")
                && std::fs::read_to_string(&p).is_ok_and(|t| re.is_match(&t))
            {
                return true;
            }
        }
        false
    }
    walk(src, &re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.config");
        std::fs::write(
            &f,
            "# c\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_D=y\n",
        )
        .unwrap();
        let req = parse_fragment(&f).unwrap();
        assert_eq!(req.len(), 4);
        assert_eq!(req[1].value, "n");
        let cfg =
            parse_dotconfig("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=\"x\"\n# CONFIG_D is not set\n");
        let bad: Vec<_> = unmet(&req, &cfg)
            .into_iter()
            .map(|(s, got)| (s.name, s.line, got))
            .collect();
        assert_eq!(
            bad,
            vec![
                ("CONFIG_B".to_string(), 3, "y".to_string()),
                ("CONFIG_D".to_string(), 5, "n".to_string())
            ]
        );
    }

    #[test]
    fn finds_symbols_in_nested_kconfig_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("fs/sub")).unwrap();
        std::fs::write(
            d.path().join("fs/sub/Kconfig"),
            "config FOO_BAR\n\tbool \"x\"\n",
        )
        .unwrap();
        std::fs::write(d.path().join("fs/Kconfig.binfmt"), "menuconfig BAZ\n").unwrap();
        assert!(symbol_defined(d.path(), "CONFIG_FOO_BAR"));
        assert!(symbol_defined(d.path(), "CONFIG_BAZ"));
        assert!(!symbol_defined(d.path(), "CONFIG_FOO"));
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("b.config");
        std::fs::write(&f, "CONFIG_A=y\nFOO\n").unwrap();
        let e = parse_fragment(&f).unwrap_err().to_string();
        assert!(e.ends_with("b.config:2: not a config line: FOO"), "{e}");
    }
}
