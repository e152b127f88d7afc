//! Wrapping styled text into lines of at most a given number of columns, by the same
//! graphemes and widths ratatui draws with, so that every wrapped line fits and the
//! scroll arithmetic (one wrapped line = one row) is exact. CJK and other wide
//! characters may break anywhere; other text breaks at spaces, and a word longer than a
//! line is split.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// One logical line before wrapping: its text, and what starts its first and its
/// following rows (a list marker, then the indent under it; a quote bar).
#[derive(Debug, Clone, Default)]
pub struct Para {
    pub first: Vec<Span<'static>>,
    pub rest: Vec<Span<'static>>,
    pub spans: Vec<Span<'static>>,
    /// Code: break anywhere and keep every space.
    pub hard: bool,
    /// A horizontal rule as wide as the view, in this style.
    pub rule: Option<Style>,
}

impl Para {
    pub fn plain(text: impl Into<String>, style: Style) -> Para {
        Para {
            spans: vec![Span::styled(clean(&text.into()), style)],
            ..Para::default()
        }
    }

    pub fn with_prefix(mut self, first: Span<'static>, rest: Span<'static>) -> Para {
        self.first.insert(0, first);
        self.rest.insert(0, rest);
        self
    }
}

/// The columns a grapheme takes, as ratatui counts them (`CellWidth for str`).
pub fn gwidth(g: &str) -> usize {
    if g.len() == 1 {
        return 1;
    }
    let marks = g
        .chars()
        .filter(|c| matches!(c, '\u{FF9E}' | '\u{FF9F}'))
        .count();
    g.width() + marks
}

/// The columns `s` takes (after [`clean`]).
pub fn width(s: &str) -> usize {
    s.graphemes(true).map(gwidth).sum()
}

/// Text as a terminal may show it: tabs become spaces, other control characters go
/// (ratatui would drop them when drawing, and they would break the arithmetic).
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn spans_width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|s| width(&s.content)).sum()
}

/// Appends graphemes to a row, merging runs of one style into one span.
struct Row {
    spans: Vec<Span<'static>>,
    prefix: usize,
    width: usize,
}

impl Row {
    fn new(prefix: &[Span<'static>]) -> Row {
        Row {
            spans: prefix.to_vec(),
            prefix: prefix.len(),
            width: 0,
        }
    }

    /// The row without the spaces it ends with (where it was broken).
    fn trimmed(mut self) -> Vec<Span<'static>> {
        while self.spans.len() > self.prefix {
            let Some(last) = self.spans.last_mut() else {
                break;
            };
            let kept = last.content.trim_end().len();
            if kept > 0 {
                last.content.to_mut().truncate(kept);
                break;
            }
            self.spans.pop();
        }
        self.spans
    }

    fn push(&mut self, g: &str, w: usize, style: Style) {
        let own = self.spans.len() > self.prefix;
        match self.spans.last_mut() {
            Some(last) if own && last.style == style => last.content.to_mut().push_str(g),
            _ => self.spans.push(Span::styled(g.to_string(), style)),
        }
        self.width += w;
    }
}

/// A unit that wrapping does not split unless it must: a word, one space, or one wide
/// grapheme.
struct Token {
    parts: Vec<(String, usize, Style)>,
    width: usize,
    space: bool,
}

fn tokens(spans: &[Span<'static>], hard: bool) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let mut word: Option<Token> = None;
    for span in spans {
        for g in span.content.graphemes(true) {
            if g.chars().any(char::is_control) {
                continue;
            }
            let w = gwidth(g);
            let space = g.chars().all(char::is_whitespace);
            if hard || space || w >= 2 {
                if let Some(t) = word.take() {
                    out.push(t);
                }
                out.push(Token {
                    parts: vec![(g.to_string(), w, span.style)],
                    width: w,
                    space,
                });
            } else {
                let t = word.get_or_insert_with(|| Token {
                    parts: Vec::new(),
                    width: 0,
                    space: false,
                });
                t.parts.push((g.to_string(), w, span.style));
                t.width += w;
            }
        }
    }
    out.extend(word);
    out
}

/// Wrap `p` into rows of at most `width` columns (prefix included). A prefix that would
/// leave less than two columns for the text is dropped; a grapheme wider than the whole
/// row (a wide character at width 1) gets a row of its own, which ratatui leaves blank.
pub fn wrap(p: &Para, width: usize) -> Vec<Line<'static>> {
    if let Some(style) = p.rule {
        return vec![Line::from(Span::styled("─".repeat(width.max(1)), style))];
    }
    let fits = |prefix: &[Span<'static>]| spans_width(prefix) + 2 <= width;
    let first: &[Span<'static>] = if fits(&p.first) { &p.first } else { &[] };
    let rest: &[Span<'static>] = if fits(&p.rest) { &p.rest } else { &[] };
    let avail_first = width.saturating_sub(spans_width(first)).max(1);
    let avail_rest = width.saturating_sub(spans_width(rest)).max(1);

    let mut rows: Vec<Line<'static>> = Vec::new();
    let mut row = Row::new(first);
    let mut avail = avail_first;
    let mut fresh = true; // nothing but the prefix on this row yet
    let mut wrapped = false; // this row continues the previous one
    let hard = p.hard;
    let mut newline = |row: &mut Row, avail: &mut usize, fresh: &mut bool, wrapped: &mut bool| {
        let done = std::mem::replace(row, Row::new(rest));
        rows.push(Line::from(if hard { done.spans } else { done.trimmed() }));
        *avail = avail_rest;
        *fresh = true;
        *wrapped = true;
    };
    for t in tokens(&p.spans, p.hard) {
        if t.space && !p.hard {
            // Spaces where a row breaks are dropped.
            if fresh && wrapped {
                continue;
            }
            if row.width + t.width > avail {
                newline(&mut row, &mut avail, &mut fresh, &mut wrapped);
                continue;
            }
        } else if row.width + t.width > avail && !fresh && t.width <= avail {
            newline(&mut row, &mut avail, &mut fresh, &mut wrapped);
        }
        if row.width + t.width <= avail {
            for (g, w, style) in &t.parts {
                row.push(g, *w, *style);
            }
        } else {
            // Longer than a row: split it by graphemes.
            for (g, w, style) in &t.parts {
                if row.width + w > avail && !fresh {
                    newline(&mut row, &mut avail, &mut fresh, &mut wrapped);
                }
                row.push(g, *w, *style);
                fresh = false;
            }
        }
        fresh = false;
    }
    rows.push(Line::from(row.spans));
    rows
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text_of(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    fn rows(s: &str, w: usize) -> Vec<String> {
        wrap(&Para::plain(s, Style::default()), w)
            .iter()
            .map(text_of)
            .collect()
    }

    #[test]
    fn forty_cjk_characters_at_width_21() {
        let s: String = "漢字仮名交じり文は日本語の表記法です"
            .chars()
            .cycle()
            .take(40)
            .collect();
        let out = rows(&s, 21);
        assert_eq!(out.len(), 4, "{out:?}");
        for r in &out {
            assert!(width(r) <= 21, "{r:?} is {} columns", width(r));
            assert_eq!(width(r), 20);
        }
        assert_eq!(out.concat(), s);
    }

    #[test]
    fn words_break_at_spaces_and_long_words_split() {
        assert_eq!(rows("the quick brown fox", 10), ["the quick", "brown fox"]);
        assert_eq!(rows("abcdefghijkl xy", 5), ["abcde", "fghij", "kl xy"]);
        assert_eq!(rows("", 5), [""]);
        // A space where the row breaks is dropped, not carried to the next row.
        assert_eq!(rows("aaaa bbbb", 4), ["aaaa", "bbbb"]);
    }

    #[test]
    fn emoji_and_mixed_text_fit() {
        let s = "Rust 🦀 and 👨‍👩‍👧 families, 中文混排 text with ﾊﾟ marks and e\u{301}";
        for w in 1..40 {
            let out = rows(s, w);
            for r in &out {
                // A grapheme wider than the row can only have a row of its own.
                let alone = r.graphemes(true).count() == 1;
                assert!(width(r) <= w || alone, "width {w}: {r:?}");
            }
            // Nothing is lost but the spaces where rows break.
            assert_eq!(
                out.concat().replace(' ', ""),
                s.replace(' ', ""),
                "width {w}"
            );
        }
        assert_eq!(width("👨‍👩‍👧"), 2);
    }

    #[test]
    fn tiny_widths_never_panic() {
        for w in 0..4 {
            let p = Para {
                first: vec![Span::raw("• ")],
                rest: vec![Span::raw("  ")],
                spans: vec![Span::raw("漢字 and a longword\twith tab\u{7}bell")],
                hard: false,
                rule: None,
            };
            let out = wrap(&p, w);
            assert!(!out.is_empty());
            let code = Para {
                hard: true,
                ..p.clone()
            };
            assert!(!wrap(&code, w).is_empty());
        }
        assert_eq!(rows("漢字", 1), ["漢", "字"]);
    }

    #[test]
    fn prefixes_start_each_row() {
        let p = Para::plain("one two three four", Style::default())
            .with_prefix(Span::raw("• "), Span::raw("  "));
        let out: Vec<String> = wrap(&p, 10).iter().map(text_of).collect();
        assert_eq!(out, ["• one two", "  three", "  four"]);
        // Too narrow for the prefix: it goes.
        let out: Vec<String> = wrap(&p, 3).iter().map(text_of).collect();
        assert!(out.iter().all(|r| width(r) <= 3), "{out:?}");
    }

    #[test]
    fn code_keeps_spaces_and_breaks_anywhere() {
        let p = Para {
            spans: vec![Span::raw("    let x = 1;")],
            hard: true,
            ..Para::default()
        };
        let out: Vec<String> = wrap(&p, 8).iter().map(text_of).collect();
        assert_eq!(out, ["    let ", "x = 1;"]);
    }

    #[test]
    fn control_characters_are_cleaned() {
        assert_eq!(clean("a\tb\u{1b}[31mc\r\n"), "a    b[31mc");
    }
}
