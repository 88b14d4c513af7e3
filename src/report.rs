//! The one reporting style: tables for people (comfy-table, no borders,
//! columns two spaces apart, numbers right-aligned). The suites and
//! workflows build their reports with it and return strings; only the CLI
//! prints.

use comfy_table::{presets, CellAlignment, Row, Table};

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
}
