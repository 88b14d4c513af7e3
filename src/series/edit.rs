//! Anchored edits on whole lines: an anchor must match exactly once, and
//! when it does not, the error says where the closest text is.

use crate::series::At;
use similar::TextDiff;
use std::fmt;

#[derive(Debug, PartialEq)]
pub enum AnchorError {
    /// Not found; the most similar window of lines, if any is close.
    Missing { closest: Option<(usize, String)> },
    /// Found more than once, at these 1-based lines.
    Ambiguous { lines: Vec<usize> },
}

impl fmt::Display for AnchorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnchorError::Missing { closest: None } => write!(f, "anchor not found"),
            AnchorError::Missing {
                closest: Some((line, text)),
            } => write!(
                f,
                "anchor not found; closest match at line {line}:\n{}",
                indent(text)
            ),
            AnchorError::Ambiguous { lines } => {
                let l: Vec<String> = lines.iter().map(|n| n.to_string()).collect();
                write!(
                    f,
                    "anchor found {} times (lines {})",
                    lines.len(),
                    l.join(", ")
                )
            }
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// Splits into lines keeping their terminators, so that joining gives the input back.
fn lines_of(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// Finds the 0-based line index where `anchor` (whole lines) starts, exactly once.
pub fn locate(content: &str, anchor: &str) -> Result<usize, AnchorError> {
    let hay: Vec<&str> = content.lines().collect();
    let needle: Vec<&str> = anchor.lines().collect();
    let k = needle.len();
    let hits: Vec<usize> = if k == 0 || k > hay.len() {
        vec![]
    } else {
        (0..=hay.len() - k)
            .filter(|&i| hay[i..i + k] == needle[..])
            .collect()
    };
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(AnchorError::Missing {
            closest: closest(&hay, &needle),
        }),
        _ => Err(AnchorError::Ambiguous {
            lines: hits.iter().map(|i| i + 1).collect(),
        }),
    }
}

/// The window of `needle.len()` lines most similar to the needle (ratio >= 0.5).
fn closest(hay: &[&str], needle: &[&str]) -> Option<(usize, String)> {
    let k = needle.len().min(hay.len());
    if k == 0 {
        return None;
    }
    let want = needle.join("\n");
    // Cheap pre-filter: only windows sharing a trimmed line with the anchor,
    // or every window when none does (the anchor may have been reworded).
    let keys: Vec<&str> = needle
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let starts: Vec<usize> = (0..=hay.len() - k)
        .filter(|&i| hay[i..i + k].iter().any(|l| keys.contains(&l.trim())))
        .collect();
    let starts = if starts.is_empty() {
        (0..=hay.len() - k).collect()
    } else {
        starts
    };
    let best = starts
        .into_iter()
        .map(|i| {
            let got = hay[i..i + k].join("\n");
            (TextDiff::from_chars(&got, &want).ratio(), i, got)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    (best.0 >= 0.5).then(|| (best.1 + 1, best.2))
}

/// Applies one edit and returns the new content.
pub fn apply(content: &str, at: At, anchor: &str, text: &str) -> Result<String, AnchorError> {
    let text = with_newline(text);
    let start = locate(content, anchor)?;
    let end = start + anchor.lines().count();
    let lines = lines_of(content);
    let mut out = String::with_capacity(content.len() + text.len());
    let (before, after) = match at {
        At::Before => (start, start),
        At::After => (end, end),
        At::Replace => (start, end),
        At::Create => unreachable!("create edits have no anchor"),
    };
    out.extend(lines[..before].iter().copied());
    if at == At::After && end > 0 && !lines[end - 1].ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&text);
    out.extend(lines[after..].iter().copied());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "int a;\nint b;\n\nvoid f(void)\n{\n\treturn;\n}\n";

    #[test]
    fn inserts_after_before_and_replaces() {
        assert_eq!(
            apply(SRC, At::After, "int a;\n", "int x;").unwrap(),
            "int a;\nint x;\nint b;\n\nvoid f(void)\n{\n\treturn;\n}\n"
        );
        assert_eq!(
            apply(SRC, At::Before, "void f(void)\n{\n", "/* f */\n").unwrap(),
            "int a;\nint b;\n\n/* f */\nvoid f(void)\n{\n\treturn;\n}\n"
        );
        assert_eq!(
            apply(SRC, At::Replace, "\treturn;\n", "\tg();\n\treturn;\n").unwrap(),
            "int a;\nint b;\n\nvoid f(void)\n{\n\tg();\n\treturn;\n}\n"
        );
    }

    #[test]
    fn anchor_must_be_whole_lines() {
        assert!(matches!(
            apply(SRC, At::After, "int", "x"),
            Err(AnchorError::Missing { .. })
        ));
    }

    #[test]
    fn missing_anchor_reports_closest_line() {
        let e = apply(SRC, At::After, "void f(int)\n{\n", "x").unwrap_err();
        assert_eq!(
            e,
            AnchorError::Missing {
                closest: Some((4, "void f(void)\n{".into()))
            }
        );
        assert!(e.to_string().contains("closest match at line 4"));
    }

    #[test]
    fn unrelated_anchor_has_no_closest() {
        let e = apply(SRC, At::After, "struct zzzzzzzzzzzzzz qqqqqqq;\n", "x").unwrap_err();
        assert_eq!(e, AnchorError::Missing { closest: None });
    }

    #[test]
    fn ambiguous_anchor_lists_lines() {
        let e = apply("x\ny\nx\n", At::After, "x\n", "z").unwrap_err();
        assert_eq!(e, AnchorError::Ambiguous { lines: vec![1, 3] });
        assert_eq!(e.to_string(), "anchor found 2 times (lines 1, 3)");
    }
}
