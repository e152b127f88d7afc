//! The message pane: entries (prompts, answers, tool lines, notices), each wrapped once
//! per width and cached, and the scroll position. A view the user scrolled up is pinned
//! to its first line, so what streams in below never moves it.

use super::markdown;
use super::theme::Theme;
use super::wrap::{Para, wrap};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// What the user sent.
    User,
    /// (Part of) a turn's answer, rendered as markdown.
    Answer {
        turn: String,
    },
    /// A tool call: its name, arguments, and when finished (ms, ok).
    Tool {
        turn: String,
        name: String,
        args: String,
        finished: Option<(f64, bool)>,
    },
    /// Something the TUI or the gateway says (dim).
    Info,
    /// Worth noticing: a cancel, a reconnect.
    Notice,
    Error,
    /// Tokens, cost, model calls at a turn's end.
    Usage,
}

#[derive(Debug)]
pub struct Entry {
    pub kind: Kind,
    pub text: String,
    /// Wrapped rows for a width.
    cache: Option<(usize, Vec<Line<'static>>)>,
}

impl Entry {
    fn rows(&mut self, width: usize, theme: &Theme) -> &[Line<'static>] {
        if self.cache.as_ref().is_none_or(|(w, _)| *w != width) {
            let mut rows: Vec<Line<'static>> = Vec::new();
            for p in self.paras(theme) {
                rows.extend(wrap(&p, width));
            }
            self.cache = Some((width, rows));
        }
        self.cache.as_ref().map_or(&[], |(_, r)| r.as_slice())
    }

    fn paras(&self, t: &Theme) -> Vec<Para> {
        let lines = |style: Style, first: &'static str, rest: &'static str| -> Vec<Para> {
            self.text
                .split('\n')
                .enumerate()
                .map(|(i, l)| {
                    let p = Para::plain(l, style);
                    let lead = if i == 0 { first } else { rest };
                    p.with_prefix(Span::styled(lead, style), Span::styled(rest, style))
                })
                .collect()
        };
        match &self.kind {
            Kind::User => lines(t.user, "› ", "  "),
            Kind::Answer { .. } => markdown::render(&self.text, t),
            Kind::Tool {
                name,
                args,
                finished,
                ..
            } => {
                let mut spans = vec![Span::styled(name.clone(), t.tool)];
                if !args.is_empty() {
                    spans.push(Span::styled(format!(" {args}"), t.dim));
                }
                match finished {
                    None => spans.push(Span::styled(" …", t.dim)),
                    Some((ms, true)) => {
                        spans.push(Span::styled(format!("  ✓ {}", ms_text(*ms)), t.ok))
                    }
                    Some((ms, false)) => spans.push(Span::styled(
                        format!("  ✗ failed after {}", ms_text(*ms)),
                        t.failed,
                    )),
                }
                vec![Para {
                    first: vec![Span::styled("⚙ ", t.tool)],
                    rest: vec![Span::raw("  ")],
                    spans,
                    hard: false,
                    rule: None,
                }]
            }
            Kind::Info => lines(t.dim, "", ""),
            Kind::Notice => lines(t.notice, "", ""),
            Kind::Error => lines(t.error, "✗ ", "  "),
            Kind::Usage => lines(t.dim, "  ", "  "),
        }
    }

    /// Rows between this entry and the one before it.
    fn gap(&self, before: Option<&Entry>) -> usize {
        let Some(before) = before else { return 0 };
        match (&before.kind, &self.kind) {
            (_, Kind::User) => 1,
            (Kind::Answer { .. }, Kind::Answer { .. }) => 0,
            (_, Kind::Answer { .. }) => 1,
            (Kind::Answer { .. }, Kind::Tool { .. }) => 1,
            // A turn's end sets it apart from what follows.
            (Kind::Usage, _) => 1,
            _ => 0,
        }
    }
}

/// A duration as people read it: `12.3 ms`, `4.56 s`.
pub fn ms_text(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "? ms".into();
    }
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

#[derive(Debug, Default)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    /// The first row shown when the user has scrolled up; `None` follows the end.
    pinned: Option<usize>,
    /// Rows and height as last drawn, for scrolling between draws.
    total: usize,
    height: usize,
    /// Output arrived below a pinned view.
    pub unseen: bool,
}

impl Transcript {
    pub fn push(&mut self, kind: Kind, text: impl Into<String>) {
        self.entries.push(Entry {
            kind,
            text: text.into(),
            cache: None,
        });
        if self.pinned.is_some() {
            self.unseen = true;
        }
    }

    /// The entry at `i`, to change; its rows are wrapped again.
    pub fn edit(&mut self, i: usize) -> Option<&mut Entry> {
        if self.pinned.is_some() {
            self.unseen = true;
        }
        let e = self.entries.get_mut(i)?;
        e.cache = None;
        Some(e)
    }

    /// The last answer entry of `turn` when nothing but its tool lines came after it.
    pub fn open_answer(&self, turn: &str) -> Option<usize> {
        let i = self.entries.len().checked_sub(1)?;
        match &self.entries[i].kind {
            Kind::Answer { turn: t } if t == turn => Some(i),
            _ => None,
        }
    }

    /// Append streamed text to `turn`'s answer (a new part after a tool line).
    pub fn append_answer(&mut self, turn: &str, delta: &str) {
        match self.open_answer(turn) {
            Some(i) => {
                if let Some(e) = self.edit(i) {
                    e.text.push_str(delta);
                }
            }
            None => self.push(Kind::Answer { turn: turn.into() }, delta),
        }
    }

    /// Replace everything `turn` streamed with `text` (the answer so far, from the
    /// gateway after a lag or a reconnect).
    pub fn replace_answer(&mut self, turn: &str, text: &str) {
        let first = self
            .entries
            .iter()
            .position(|e| matches!(&e.kind, Kind::Answer { turn: t } if t == turn));
        match first {
            Some(i) => {
                if let Some(e) = self.edit(i) {
                    e.text = text.to_string();
                }
                let mut j = i + 1;
                while j < self.entries.len() {
                    if matches!(&self.entries[j].kind, Kind::Answer { turn: t } if t == turn) {
                        self.entries.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None if !text.is_empty() => self.push(Kind::Answer { turn: turn.into() }, text),
            None => {}
        }
    }

    pub fn has_answer(&self, turn: &str) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(&e.kind, Kind::Answer { turn: t } if t == turn && !e.text.is_empty()))
    }

    /// Mark `turn`'s running tool `name` finished; false when no line was waiting.
    pub fn finish_tool(&mut self, turn: &str, name: &str, ms: f64, ok: bool) -> bool {
        let found = self.entries.iter().rposition(|e| {
            matches!(&e.kind, Kind::Tool { turn: t, name: n, finished: None, .. } if t == turn && n == name)
        });
        let Some(i) = found else { return false };
        if let Some(e) = self.edit(i)
            && let Kind::Tool { finished, .. } = &mut e.kind
        {
            *finished = Some((ms, ok));
        }
        true
    }

    /// Wrap what is needed and return the rows to show in `height` rows of `width`.
    pub fn view(&mut self, width: usize, height: usize, theme: &Theme) -> Vec<Line<'static>> {
        let mut total = 0;
        for i in 0..self.entries.len() {
            let gap = self.entries[i].gap(i.checked_sub(1).map(|j| &self.entries[j]));
            total += gap + self.entries[i].rows(width, theme).len();
        }
        self.total = total;
        self.height = height;
        let bottom = total.saturating_sub(height);
        let top = match self.pinned {
            Some(t) if t < bottom => t,
            _ => {
                self.pinned = None;
                self.unseen = false;
                bottom
            }
        };
        let mut out = Vec::with_capacity(height);
        let mut row = 0;
        for i in 0..self.entries.len() {
            if out.len() >= height {
                break;
            }
            let gap = self.entries[i].gap(i.checked_sub(1).map(|j| &self.entries[j]));
            for _ in 0..gap {
                if row >= top && out.len() < height {
                    out.push(Line::default());
                }
                row += 1;
            }
            let rows = self.entries[i].rows(width, theme);
            if row + rows.len() <= top {
                row += rows.len();
                continue;
            }
            for l in rows {
                if row >= top && out.len() < height {
                    out.push(l.clone());
                }
                row += 1;
            }
        }
        out
    }

    pub fn scrolled(&self) -> bool {
        self.pinned.is_some()
    }

    fn top(&self) -> usize {
        self.pinned
            .unwrap_or_else(|| self.total.saturating_sub(self.height))
    }

    /// Scroll by `rows` (negative: up). Reaching the end follows it again.
    pub fn scroll(&mut self, rows: isize) {
        let bottom = self.total.saturating_sub(self.height);
        let top = self.top().saturating_add_signed(rows).min(bottom);
        self.pinned = (top < bottom).then_some(top);
        if self.pinned.is_none() {
            self.unseen = false;
        }
    }

    pub fn page(&self) -> isize {
        isize::try_from(self.height.saturating_sub(2).max(1)).unwrap_or(1)
    }

    pub fn follow_end(&mut self) {
        self.pinned = None;
        self.unseen = false;
    }

    pub fn jump_to_start(&mut self) {
        if self.total > self.height {
            self.pinned = Some(0);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn a_scrolled_up_view_stays_put_while_text_streams() {
        let theme = Theme::new(false);
        let mut t = Transcript::default();
        for i in 0..30 {
            t.push(Kind::Info, format!("line {i}"));
        }
        t.append_answer("t1", "streaming");
        let before = text(&t.view(40, 10, &theme));
        assert_eq!(before.last().unwrap(), "streaming");
        t.scroll(-5);
        let pinned = text(&t.view(40, 10, &theme));
        assert_eq!(pinned[0], "line 17");
        for i in 0..50 {
            t.append_answer("t1", &format!("\n\nmore {i}"));
            assert_eq!(text(&t.view(40, 10, &theme)), pinned);
        }
        assert!(t.unseen);
        t.follow_end();
        assert_eq!(text(&t.view(40, 10, &theme)).last().unwrap(), "more 49");
        // Scrolling down to the end follows it again.
        t.scroll(-3);
        t.scroll(3);
        assert!(!t.scrolled());
    }

    #[test]
    fn tool_lines_finish_in_place_and_answers_resume_after_them() {
        let theme = Theme::new(false);
        let mut t = Transcript::default();
        t.push(Kind::User, "read it");
        t.append_answer("t1", "Let me look.");
        t.push(
            Kind::Tool {
                turn: "t1".into(),
                name: "file_read".into(),
                args: "{\"path\":\"/shared/a\"}".into(),
                finished: None,
            },
            "",
        );
        assert!(t.finish_tool("t1", "file_read", 3.25, true));
        t.append_answer("t1", "It says hi.");
        let out = text(&t.view(60, 20, &theme));
        assert_eq!(
            out,
            [
                "› read it",
                "",
                "Let me look.",
                "",
                "⚙ file_read {\"path\":\"/shared/a\"}  ✓ 3.2 ms",
                "",
                "It says hi."
            ]
        );
        t.replace_answer("t1", "Everything.");
        assert_eq!(
            text(&t.view(60, 20, &theme)).last().unwrap(),
            "⚙ file_read {\"path\":\"/shared/a\"}  ✓ 3.2 ms"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(ms_text(0.04), "0.0 ms");
        assert_eq!(ms_text(1234.0), "1.23 s");
        assert_eq!(ms_text(f64::NAN), "? ms");
    }
}
