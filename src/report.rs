//! The one reporting style: tables for people (comfy-table, no borders,
//! columns two spaces apart, numbers right-aligned) and JUnit XML for CI
//! (quick-junit). The suites and workflows build their reports with these
//! and return strings; only the CLI prints or writes them.

use anyhow::Result;
use comfy_table::{presets, CellAlignment, Row, Table};
use std::time::Duration;

/// A table in the house style with `header`; the columns at the indexes in
/// `right` (numbers) are right-aligned, their header too. Add rows, then
/// `t.trim_fmt()` gives the lines without trailing blanks and without a
/// final newline.
pub fn table(header: impl Into<Row>, right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_header(header);
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    for &i in right {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// How one JUnit test case ended.
pub enum Outcome<'a> {
    Pass,
    /// A `<failure message=...>`, with `text` inside it when there is one.
    Fail {
        message: &'a str,
        text: Option<&'a str>,
    },
    Skip,
}

/// One JUnit test case; `output`, when not empty, is its `<system-out>`.
pub struct Case<'a> {
    pub name: &'a str,
    pub seconds: f64,
    pub outcome: Outcome<'a>,
    pub output: &'a str,
}

fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default()
}

/// JUnit XML: one `<testsuite>` named `suite` that took `seconds`, its
/// cases of class `class`. The counts (tests, failures, skipped) are those
/// of the cases.
pub fn junit<'a>(
    suite: &str,
    class: &str,
    seconds: f64,
    cases: impl IntoIterator<Item = Case<'a>>,
) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut s = TestSuite::new(suite);
    s.set_time(duration(seconds));
    for c in cases {
        let status = match c.outcome {
            Outcome::Pass => TestCaseStatus::success(),
            Outcome::Fail { message, text } => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(message);
                if let Some(text) = text {
                    st.set_description(text);
                }
                st
            }
            Outcome::Skip => TestCaseStatus::skipped(),
        };
        let mut tc = TestCase::new(c.name, status);
        tc.set_classname(class).set_time(duration(c.seconds));
        if !c.output.is_empty() {
            tc.set_system_out(c.output);
        }
        s.add_test_case(tc);
    }
    let mut r = Report::new(suite);
    r.set_time(duration(seconds)).add_test_suite(s);
    Ok(r.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_plain_columns_two_spaces_apart_numbers_right() {
        let mut t = table(["NAME", "N", "NOTE"], &[1]);
        t.add_row(["a", "1.5", "x"]);
        t.add_row(["long-name", "12.0", ""]);
        assert_eq!(
            t.trim_fmt(),
            "NAME          N  NOTE\n\
             a           1.5  x\n\
             long-name  12.0"
        );
    }

    #[test]
    fn junit_counts_the_cases_and_keeps_messages_output_and_times() {
        let cases = [
            Case {
                name: "ok",
                seconds: 1.25,
                outcome: Outcome::Pass,
                output: "",
            },
            Case {
                name: "bad",
                seconds: 2.0,
                outcome: Outcome::Fail {
                    message: "fail",
                    text: Some("FAIL: a < b ]]>"),
                },
                output: "FAIL: a < b ]]>\n",
            },
            Case {
                name: "later",
                seconds: 0.0,
                outcome: Outcome::Skip,
                output: "",
            },
            Case {
                name: "bare",
                seconds: f64::NAN,
                outcome: Outcome::Fail {
                    message: "why",
                    text: None,
                },
                output: "",
            },
        ];
        let x = junit("zcsplice 6.12.117", "zcsplice.guest", 10.0, cases).unwrap();
        assert!(
            x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{x}"
        );
        assert!(
            x.contains(
                "<testsuite name=\"zcsplice 6.12.117\" tests=\"4\" skipped=\"1\" \
                 errors=\"0\" failures=\"2\" time=\"10.000\">"
            ),
            "{x}"
        );
        assert!(
            x.contains("<testcase name=\"ok\" classname=\"zcsplice.guest\" time=\"1.250\"/>"),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"fail\">FAIL: a &lt; b ]]&gt;</failure>"),
            "{x}"
        );
        assert!(
            x.contains("<system-out>FAIL: a &lt; b ]]&gt;\n</system-out>"),
            "{x}"
        );
        assert!(x.contains("<skipped/>"), "{x}");
        assert!(x.contains("time=\"0.000\">\n"), "{x}");
        assert!(x.contains("<failure message=\"why\"/>"), "{x}");
    }
}
