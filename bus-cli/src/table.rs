//! A tiny aligned-table renderer for the human-readable output.
//!
//! Columns are separated by two spaces; text columns are left-aligned and
//! numeric columns right-aligned; widths count characters, not bytes.

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header row and data rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let align = vec![Align::Left; headers.len()];
        Table {
            headers,
            align,
            rows: Vec::new(),
        }
    }

    /// Right-aligns the named columns (0-based indexes).
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(a) = self.align.get_mut(c) {
                *a = Align::Right;
            }
        }
        self
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rendered table, one line per row (header first), each ending in a
    /// newline, without trailing spaces.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(width(cell));
                match self.align[i] {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders key/value pairs as two aligned columns (for `info` commands).
pub fn key_values<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let k = k.as_ref();
        let pad = width - k.chars().count();
        out.push_str(k);
        out.push(':');
        out.extend(std::iter::repeat_n(' ', pad + 1));
        out.push_str(v.as_ref());
        out.push('\n');
    }
    out
}

/// Shortens `text` to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_numbers_right_aligned() {
        let mut t = Table::new(["NAME", "PENDING"]).right(&[1]);
        t.row(["projector", "7"]);
        t.row(["a", "12345"]);
        assert_eq!(
            t.render(),
            "NAME       PENDING\nprojector        7\na            12345\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_no_line_has_trailing_spaces() {
        let mut t = Table::new(["A", "B", "C"]);
        t.row(["x"]);
        t.row(["longer", "y", "z", "dropped"]);
        let out = t.render();
        assert_eq!(out, "A       B  C\nx\nlonger  y  z\n");
        assert!(out.lines().all(|l| !l.ends_with(' ')));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(["K", "V"]);
        t.row(["é…", "1"]);
        t.row(["ab", "2"]);
        assert_eq!(t.render(), "K   V\né…  1\nab  2\n");
    }

    #[test]
    fn header_only_table_renders_the_header() {
        let t = Table::new(["ONE", "TWO"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "ONE  TWO\n");
    }

    #[test]
    fn key_values_align_the_values() {
        assert_eq!(
            key_values(&[("name", "x"), ("messages", "3")]),
            "name:     x\nmessages: 3\n"
        );
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
