//! Aligned text tables with optional ANSI colour, and human units (`1.2 MiB`, `3.4k`).
//!
//! Widths are counted in characters of the plain text, so colour codes never shift columns.
//! A whole table is measured before printing; a streaming table (`watch`) uses fixed widths;
//! a paged table (`list`) is measured on its first page and only widens after that.

use std::borrow::Cow;

/// How a cell is coloured on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// No colour.
    Plain,
    /// Allowed.
    Green,
    /// Denied.
    Red,
    /// Passed, pending.
    Yellow,
    /// Secondary information.
    Dim,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Green => Some("32"),
            Style::Red => Some("31"),
            Style::Yellow => Some("33"),
            Style::Dim => Some("2"),
        }
    }
}

/// One cell: its text and colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The plain text.
    pub text: String,
    /// The colour on a terminal.
    pub style: Style,
}

impl Cell {
    /// A cell with a colour.
    pub fn styled(text: impl Into<String>, style: Style) -> Cell {
        Cell {
            text: text.into(),
            style,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::styled(text, Style::Plain)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::styled(text, Style::Plain)
    }
}

/// Left or right alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table measured as a whole.
#[derive(Clone, Debug)]
pub struct Table {
    columns: Vec<(Cow<'static, str>, Align)>,
    rows: Vec<Vec<Cell>>,
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Formats one line from cells, padding each to `widths` (the last column is not padded).
pub fn line<T>(cells: &[Cell], widths: &[usize], columns: &[(T, Align)], color: bool) -> String {
    let mut out = String::new();
    for (index, cell) in cells.iter().enumerate() {
        let wanted = widths.get(index).copied().unwrap_or(0);
        let text: String = if width(&cell.text) > wanted && wanted > 1 {
            let kept: String = cell.text.chars().take(wanted - 1).collect();
            format!("{kept}…")
        } else {
            cell.text.clone()
        };
        let pad = " ".repeat(wanted.saturating_sub(width(&text)));
        let last = index + 1 == cells.len();
        let painted = match (color, cell.style.code()) {
            (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text,
        };
        match columns.get(index).map_or(Align::Left, |c| c.1) {
            Align::Right => {
                out.push_str(&pad);
                out.push_str(&painted);
            }
            Align::Left if last => out.push_str(&painted),
            Align::Left => {
                out.push_str(&painted);
                out.push_str(&pad);
            }
        }
        if !last {
            out.push_str("  ");
        }
    }
    out.push('\n');
    out
}

/// The header line, bold on a terminal.
pub fn header<T: AsRef<str>>(widths: &[usize], columns: &[(T, Align)], color: bool) -> String {
    let cells: Vec<Cell> = columns
        .iter()
        .map(|(name, _)| Cell::from(name.as_ref()))
        .collect();
    let text = line(&cells, widths, columns, false);
    if color {
        format!("\x1b[1m{}\x1b[0m\n", text.trim_end())
    } else {
        text
    }
}

impl Table {
    /// An empty table with these column titles and alignments.
    pub fn new<T: Into<Cow<'static, str>>>(columns: Vec<(T, Align)>) -> Table {
        Table {
            columns: columns
                .into_iter()
                .map(|(title, align)| (title.into(), align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column).
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The whole table, columns as wide as their widest cell.
    pub fn render(&self, color: bool) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(name, _)| width(name)).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(index) {
                    *w = (*w).max(width(&cell.text));
                }
            }
        }
        let mut out = header(&widths, &self.columns, color);
        for row in &self.rows {
            out.push_str(&line(row, &widths, &self.columns, color));
        }
        out
    }
}

/// A table printed page by page as the pages arrive: the first page sets the column widths
/// (never below `minimum`); a later page widens a column only when one of its cells needs it.
/// Rows already printed stay as they were, so columns line up within each page and across
/// pages until a wider cell arrives; nothing is ever cut short.
#[derive(Clone, Debug)]
pub struct PagedTable {
    columns: Vec<(&'static str, Align)>,
    widths: Vec<usize>,
    started: bool,
}

impl PagedTable {
    /// A table with these columns, each at least as wide as its title and `minimum`.
    pub fn new(columns: Vec<(&'static str, Align)>, minimum: &[usize]) -> PagedTable {
        let widths = columns
            .iter()
            .enumerate()
            .map(|(index, (name, _))| width(name).max(minimum.get(index).copied().unwrap_or(0)))
            .collect();
        PagedTable {
            columns,
            widths,
            started: false,
        }
    }

    /// The lines of `rows`, after the header if nothing was printed yet; empty for no rows.
    pub fn page(&mut self, rows: &[Vec<Cell>], color: bool) -> String {
        if rows.is_empty() {
            return String::new();
        }
        for row in rows {
            for (index, cell) in row.iter().enumerate() {
                if let Some(w) = self.widths.get_mut(index) {
                    *w = (*w).max(width(&cell.text));
                }
            }
        }
        let mut out = String::new();
        if !self.started {
            out = header(&self.widths, &self.columns, color);
            self.started = true;
        }
        for row in rows {
            out.push_str(&line(row, &self.widths, &self.columns, color));
        }
        out
    }
}

fn scaled(value: i64, base: f64, units: &[&str]) -> String {
    let mut amount = value as f64;
    let mut unit = 0;
    while amount.abs() >= base && unit + 1 < units.len() {
        amount /= base;
        unit += 1;
    }
    if unit == 0 {
        format!("{value}{}", units[0])
    } else if amount.abs() < 9.95 {
        format!("{amount:.1}{}", units[unit])
    } else {
        format!("{amount:.0}{}", units[unit])
    }
}

/// Bytes in binary units: `512 B`, `1.2 KiB`, `34 MiB`.
pub fn bytes(value: i64) -> String {
    scaled(
        value,
        1024.0,
        &[" B", " KiB", " MiB", " GiB", " TiB", " PiB"],
    )
}

/// A count in decimal units: `950`, `1.2k`, `34M`.
pub fn count(value: i64) -> String {
    scaled(value, 1000.0, &["", "k", "M", "G", "T"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_like_a_person_writes_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1200), "1.2 KiB");
        assert_eq!(bytes(1_258_291), "1.2 MiB");
        assert_eq!(bytes(35_651_584), "34 MiB");
        assert_eq!(count(950), "950");
        assert_eq!(count(1234), "1.2k");
        assert_eq!(count(34_000_000), "34M");
    }

    #[test]
    fn columns_align_on_plain_text_even_with_colour() {
        let mut table = Table::new(vec![("NAME", Align::Left), ("BYTES", Align::Right)]);
        table.push(vec![
            Cell::styled("frontend", Style::Green),
            bytes(1200).into(),
        ]);
        table.push(vec!["db".into(), bytes(5).into()]);
        assert_eq!(
            table.render(false),
            "NAME        BYTES\nfrontend  1.2 KiB\ndb            5 B\n"
        );
        let coloured = table.render(true);
        assert!(
            coloured.contains("\x1b[32mfrontend\x1b[0m  1.2 KiB"),
            "{coloured:?}"
        );
    }

    #[test]
    fn paged_tables_keep_their_widths_and_widen_only_when_needed() {
        let mut table = PagedTable::new(vec![("NAME", Align::Left), ("N", Align::Right)], &[]);
        assert_eq!(table.page(&[], false), "");
        let first = table.page(&[vec!["web".into(), "1".into()]], false);
        assert_eq!(first, "NAME  N\nweb   1\n");
        let second = table.page(&[vec!["db".into(), "2".into()]], false);
        assert_eq!(second, "db    2\n", "no second header, the same widths");
        let third = table.page(&[vec!["frontend".into(), "30".into()]], false);
        assert_eq!(third, "frontend  30\n");
        let minimum = PagedTable::new(vec![("A", Align::Left), ("B", Align::Left)], &[4])
            .page(&[vec!["x".into(), "y".into()]], false);
        assert_eq!(minimum, "A     B\nx     y\n");
    }

    #[test]
    fn streaming_lines_truncate_to_fixed_widths() {
        let columns = [("A", Align::Left), ("B", Align::Left)];
        let text = line(&["abcdefgh".into(), "x".into()], &[4, 1], &columns, false);
        assert_eq!(text, "abc…  x\n");
    }
}
