//! The prompt editor: multi-line text with a cursor (a byte offset on a grapheme
//! boundary), wrapped by graphemes for display, and a history of what was sent.

use super::wrap::{clean, gwidth};
use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, Default)]
pub struct Input {
    text: String,
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in `history`; `None` when editing a fresh prompt.
    browsing: Option<usize>,
    draft: String,
}

/// The input laid out for a width: its rows and where the cursor is (row, column).
#[derive(Debug, PartialEq)]
pub struct Layout {
    pub rows: Vec<String>,
    pub cursor: (usize, usize),
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn insert(&mut self, s: &str) {
        // Pasted text may bring CRLF line ends and tabs.
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        let s: String = s.split('\n').map(clean).collect::<Vec<_>>().join("\n");
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
        self.browsing = None;
    }

    pub fn newline(&mut self) {
        self.insert("\n");
    }

    /// Take the text out (to send it), keeping it in the history.
    pub fn take(&mut self) -> String {
        let t = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !t.trim().is_empty() && self.history.last() != Some(&t) {
            self.history.push(t.clone());
        }
        t
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    pub fn backspace(&mut self) {
        let p = self.prev_boundary();
        self.text.replace_range(p..self.cursor, "");
        self.cursor = p;
    }

    pub fn delete(&mut self) {
        let n = self.next_boundary();
        self.text.replace_range(self.cursor..n, "");
    }

    pub fn left(&mut self) {
        self.cursor = self.prev_boundary();
    }

    pub fn right(&mut self) {
        self.cursor = self.next_boundary();
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Delete from the start of the line to the cursor (Ctrl-U).
    pub fn kill_start(&mut self) {
        let s = self.line_start();
        self.text.replace_range(s..self.cursor, "");
        self.cursor = s;
    }

    /// Delete from the cursor to the end of the line (Ctrl-K).
    pub fn kill_end(&mut self) {
        let e = self.line_end();
        self.text.replace_range(self.cursor..e, "");
    }

    /// Delete the word before the cursor (Ctrl-W).
    pub fn kill_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed.rfind(char::is_whitespace).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn column(&self) -> usize {
        self.text[self.line_start()..self.cursor]
            .graphemes(true)
            .map(gwidth)
            .sum()
    }

    /// Put the cursor at display column `col` of the line starting at `start`.
    fn move_to_column(&mut self, start: usize, col: usize) {
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let mut at = start;
        let mut w = 0;
        for (i, g) in self.text[start..end].grapheme_indices(true) {
            if w + gwidth(g) > col {
                break;
            }
            w += gwidth(g);
            at = start + i + g.len();
        }
        self.cursor = at;
    }

    /// Up: the line above, or (on the first line) the previous prompt sent.
    pub fn up(&mut self) {
        let start = self.line_start();
        if start > 0 {
            let col = self.column();
            let prev = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
            self.move_to_column(prev, col);
            return;
        }
        let i = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(i);
        self.text = self.history[i].clone();
        self.cursor = self.text.len();
    }

    /// Down: the line below, or (on the last line) the next prompt in the history.
    pub fn down(&mut self) {
        let end = self.line_end();
        if end < self.text.len() {
            let col = self.column();
            self.move_to_column(end + 1, col);
            return;
        }
        let Some(i) = self.browsing else { return };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.text = self.history[i + 1].clone();
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
        }
        self.cursor = self.text.len();
    }

    /// Rows of at most `width` columns; the cursor may sit just past a row's end, so a
    /// row is broken one column early to keep it on screen.
    pub fn layout(&self, width: usize) -> Layout {
        let width = width.max(2);
        let mut rows = vec![String::new()];
        let mut w = 0;
        let mut cursor = (0, 0);
        let mut at = 0;
        let place = |rows: &Vec<String>, w: usize, at: usize, cursor: &mut (usize, usize)| {
            if at == self.cursor {
                *cursor = (rows.len() - 1, w);
            }
        };
        for g in self.text.graphemes(true) {
            place(&rows, w, at, &mut cursor);
            if g == "\n" {
                rows.push(String::new());
                w = 0;
            } else {
                let gw = gwidth(g);
                if w + gw >= width && w > 0 {
                    rows.push(String::new());
                    w = 0;
                    if at == self.cursor {
                        cursor = (rows.len() - 1, 0);
                    }
                }
                if let Some(r) = rows.last_mut() {
                    r.push_str(g);
                }
                w += gw;
            }
            at += g.len();
        }
        place(&rows, w, at, &mut cursor);
        Layout { rows, cursor }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn editing_by_graphemes() {
        let mut i = Input::default();
        i.insert("héllo 漢字👨‍👩‍👧");
        i.backspace();
        assert_eq!(i.text(), "héllo 漢字");
        i.left();
        i.left();
        i.insert("x");
        assert_eq!(i.text(), "héllo x漢字");
        i.home();
        i.delete();
        assert_eq!(i.text(), "éllo x漢字");
        i.end();
        i.kill_word();
        assert_eq!(i.text(), "éllo ");
        i.kill_start();
        assert!(i.is_empty());
    }

    #[test]
    fn multi_line_and_history() {
        let mut i = Input::default();
        i.insert("first");
        assert_eq!(i.take(), "first");
        i.insert("line one");
        i.newline();
        i.insert("two");
        assert_eq!(i.layout(40).rows, ["line one", "two"]);
        assert_eq!(i.layout(40).cursor, (1, 3));
        i.up();
        assert_eq!(i.layout(40).cursor, (0, 3));
        i.up();
        assert_eq!(i.text(), "first");
        i.down();
        assert_eq!(i.text(), "line one\ntwo");
        i.insert("\r\npasted\tx");
        assert_eq!(i.text(), "line one\ntwo\npasted    x");
    }

    #[test]
    fn layout_wraps_wide_text_and_keeps_the_cursor_visible() {
        let mut i = Input::default();
        i.insert(&"漢".repeat(10));
        let l = i.layout(9);
        for r in &l.rows {
            assert!(super::super::wrap::width(r) < 9, "{r:?}");
        }
        assert_eq!(l.rows.concat(), "漢".repeat(10));
        let (row, col) = l.cursor;
        assert!(col < 9 && row == l.rows.len() - 1);
        for w in 0..4 {
            let _ = i.layout(w);
        }
    }
}
