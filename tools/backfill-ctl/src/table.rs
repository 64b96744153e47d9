//! Plain-text tables for the reports: each column as wide as its widest cell, two spaces apart.

/// How a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// The header line, then one line per row. A last column aligned left is not padded, so no line
/// ends in spaces.
pub fn render<const N: usize>(
    header: [&str; N],
    align: [Align; N],
    rows: &[[String; N]],
) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, cell)| match align[i] {
                Align::Right => format!("{cell:>width$}", width = widths[i]),
                Align::Left if i + 1 == N => (*cell).to_owned(),
                Align::Left => format!("{cell:<width$}", width = widths[i]),
            })
            .collect();
        padded.join("  ") + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out += &line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_take_their_widest_cell_and_the_last_left_column_is_not_padded() {
        let rows = [
            [
                "backfill".to_owned(),
                "12".to_owned(),
                "https://q/a".to_owned(),
            ],
            ["image DLQ".to_owned(), "3".to_owned(), "u".to_owned()],
        ];
        let out = render(
            ["QUEUE", "VISIBLE", "URL"],
            [Align::Left, Align::Right, Align::Left],
            &rows,
        );
        assert_eq!(
            out,
            "QUEUE      VISIBLE  URL\nbackfill        12  https://q/a\nimage DLQ        3  u\n"
        );
    }

    #[test]
    fn a_last_column_aligned_right_is_padded() {
        let rows = [["eu-central-1".to_owned(), "1.5 MiB".to_owned()]];
        let out = render(["REGION", "BYTES"], [Align::Left, Align::Right], &rows);
        assert_eq!(out, "REGION          BYTES\neu-central-1  1.5 MiB\n");
    }
}
