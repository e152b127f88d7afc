//! Markdown (CommonMark with tables, strikethrough and task lists) to styled logical
//! lines for [`super::wrap`]. Headings, emphasis, lists, quotes, inline code, fenced
//! code blocks (behind a gutter) and links (with their URL) each get their style. An
//! answer still streaming is rendered again from its full text, so an unclosed code
//! block or emphasis simply runs to the end until it closes.

use super::theme::Theme;
use super::wrap::{Para, clean};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::Style;
use ratatui::text::Span;

/// What a block sits in; each adds to the prefix of its lines.
enum Container {
    Quote,
    List { next: Option<u64> },
    Item { marker: String, used: bool },
}

struct Renderer<'t> {
    theme: &'t Theme,
    out: Vec<Para>,
    cur: Option<Para>,
    styles: Vec<Style>,
    containers: Vec<Container>,
    /// The URL of each open link and where its text starts in the current paragraph.
    links: Vec<(String, usize)>,
    code: Option<String>,
    /// Cells of the table row being read, and the cell being read.
    row: Option<Vec<Vec<Span<'static>>>>,
    cell: Vec<Span<'static>>,
    header: bool,
    /// A block was started in the innermost container, so the next one is set apart
    /// by a blank line.
    had_block: bool,
}

/// Render `text` as logical lines.
pub fn render(text: &str, theme: &Theme) -> Vec<Para> {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut r = Renderer {
        theme,
        out: Vec::new(),
        cur: None,
        styles: vec![theme.text],
        containers: Vec::new(),
        links: Vec::new(),
        code: None,
        row: None,
        cell: Vec::new(),
        header: false,
        had_block: false,
    };
    for event in Parser::new_ext(text, opts) {
        r.event(event);
    }
    r.flush();
    if let Some(code) = r.code.take() {
        r.code_block(&code);
    }
    if r.out.is_empty() {
        r.out.push(Para::default());
    }
    r.out
}

impl Renderer<'_> {
    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or_default()
    }

    fn push_style(&mut self, f: impl FnOnce(&Theme) -> Style) {
        let s = self.style().patch(f(self.theme));
        self.styles.push(s);
    }

    fn pop_style(&mut self) {
        if self.styles.len() > 1 {
            self.styles.pop();
        }
    }

    /// The prefixes of a line here: (first row, following rows). The innermost item's
    /// marker goes on the first line of its first block only.
    fn prefixes(&mut self) -> (Vec<Span<'static>>, Vec<Span<'static>>) {
        let (mut first, mut rest) = (String::new(), String::new());
        let quote = self.theme.quote;
        let mut spans_first: Vec<Span<'static>> = Vec::new();
        let mut spans_rest: Vec<Span<'static>> = Vec::new();
        let flush = |s: &mut String, out: &mut Vec<Span<'static>>, style: Style| {
            if !s.is_empty() {
                out.push(Span::styled(std::mem::take(s), style));
            }
        };
        let gutter = self.theme.gutter;
        for c in &mut self.containers {
            match c {
                Container::Quote => {
                    flush(&mut first, &mut spans_first, gutter);
                    flush(&mut rest, &mut spans_rest, gutter);
                    spans_first.push(Span::styled("│ ", quote));
                    spans_rest.push(Span::styled("│ ", quote));
                }
                Container::List { .. } => {}
                Container::Item { marker, used } => {
                    let pad = " ".repeat(super::wrap::width(marker));
                    if *used {
                        first.push_str(&pad);
                    } else {
                        first.push_str(marker);
                    }
                    rest.push_str(&pad);
                }
            }
        }
        // Only the innermost item shows its marker; the ones around it are indents.
        let innermost = self
            .containers
            .iter()
            .rposition(|c| matches!(c, Container::Item { .. }));
        if let Some(i) = innermost {
            for (j, c) in self.containers.iter_mut().enumerate() {
                if let Container::Item { used, .. } = c
                    && j <= i
                {
                    *used = true;
                }
            }
        }
        flush(&mut first, &mut spans_first, gutter);
        flush(&mut rest, &mut spans_rest, gutter);
        (spans_first, spans_rest)
    }

    /// The prefix for a blank line between blocks (quote bars only).
    fn blank(&self) -> Para {
        let mut p = Para::default();
        for c in &self.containers {
            if matches!(c, Container::Quote) {
                p.first.push(Span::styled("│", self.theme.quote));
            }
        }
        p
    }

    /// A new block: a blank line before it unless it opens its container.
    fn begin_block(&mut self) {
        self.flush();
        if self.had_block {
            let b = self.blank();
            self.out.push(b);
        }
        self.had_block = true;
    }

    fn ensure_para(&mut self) -> &mut Para {
        if self.cur.is_none() {
            let (first, rest) = self.prefixes();
            self.cur = Some(Para {
                first,
                rest,
                ..Para::default()
            });
        }
        // Just made when it was missing.
        self.cur.get_or_insert_with(Para::default)
    }

    fn flush(&mut self) {
        if let Some(p) = self.cur.take() {
            self.out.push(p);
        }
    }

    fn text(&mut self, t: &str, style: Style) {
        let t = clean(t);
        if t.is_empty() {
            return;
        }
        if self.row.is_some() {
            self.cell.push(Span::styled(t, style));
            return;
        }
        self.ensure_para().spans.push(Span::styled(t, style));
    }

    fn code_block(&mut self, code: &str) {
        let code = code.strip_suffix('\n').unwrap_or(code);
        let (first, rest) = self.prefixes();
        let gutter = Span::styled("│ ", self.theme.gutter);
        let mut r = rest;
        r.push(gutter.clone());
        for (i, line) in code.split('\n').enumerate() {
            // Only the block's first line carries an item's marker.
            let f = if i == 0 {
                let mut f = first.clone();
                f.push(gutter.clone());
                f
            } else {
                r.clone()
            };
            self.out.push(Para {
                first: f,
                rest: r.clone(),
                spans: vec![Span::styled(clean(line), self.theme.code_block)],
                hard: true,
                rule: None,
            });
        }
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => {
                if let Some(code) = &mut self.code {
                    code.push_str(&t);
                } else {
                    let s = self.style();
                    self.text(&t, s);
                }
            }
            Event::Code(t) => {
                let s = self.style().patch(self.theme.code);
                if self.theme.colour {
                    self.text(&t, s);
                } else {
                    self.text(&format!("`{t}`"), s);
                }
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => {
                let s = self.style().patch(self.theme.code);
                self.text(&t, s);
            }
            Event::Html(t) | Event::InlineHtml(t) => {
                let s = self.style();
                // An HTML block's lines arrive one event each, with their newline.
                for (i, line) in t.split('\n').enumerate() {
                    if i > 0 && self.row.is_none() {
                        self.flush();
                    }
                    self.text(line, s);
                }
            }
            Event::FootnoteReference(t) => {
                let s = self.style();
                self.text(&format!("[^{t}]"), s);
            }
            Event::SoftBreak => {
                let s = self.style();
                self.text(" ", s);
            }
            Event::HardBreak => {
                if self.row.is_none() {
                    self.flush();
                    self.ensure_para();
                }
            }
            Event::Rule => {
                self.begin_block();
                self.out.push(Para {
                    rule: Some(self.theme.rule),
                    ..Para::default()
                });
            }
            Event::TaskListMarker(done) => {
                let s = self.style();
                self.text(if done { "[x] " } else { "[ ] " }, s);
            }
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                self.begin_block();
                self.ensure_para();
            }
            Tag::Heading { level, .. } => {
                self.begin_block();
                let i = match level {
                    HeadingLevel::H1 => 0,
                    HeadingLevel::H2 => 1,
                    _ => 2,
                };
                self.push_style(|t| t.heading[i]);
                self.ensure_para();
            }
            Tag::BlockQuote(_) => {
                self.begin_block();
                self.containers.push(Container::Quote);
                self.had_block = false;
            }
            Tag::CodeBlock(kind) => {
                self.begin_block();
                if let CodeBlockKind::Fenced(lang) = kind {
                    let lang = lang.split_whitespace().next().unwrap_or("").to_string();
                    if !lang.is_empty() {
                        let (first, rest) = self.prefixes();
                        self.out.push(Para {
                            first,
                            rest,
                            spans: vec![Span::styled(
                                format!("╭ {}", clean(&lang)),
                                self.theme.gutter,
                            )],
                            hard: false,
                            rule: None,
                        });
                    }
                }
                self.code = Some(String::new());
            }
            Tag::List(start) => {
                let nested = self
                    .containers
                    .iter()
                    .any(|c| matches!(c, Container::Item { .. }));
                if nested {
                    self.flush();
                } else {
                    self.begin_block();
                }
                self.containers.push(Container::List { next: start });
            }
            Tag::Item => {
                self.flush();
                let depth = self
                    .containers
                    .iter()
                    .filter(|c| matches!(c, Container::List { .. }))
                    .count();
                let marker = match self.containers.last_mut() {
                    Some(Container::List { next: Some(n) }) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => match depth {
                        0 | 1 => "• ".to_string(),
                        2 => "◦ ".to_string(),
                        _ => "▪ ".to_string(),
                    },
                };
                self.containers.push(Container::Item {
                    marker,
                    used: false,
                });
                self.had_block = false;
            }
            Tag::Table(_) => {
                self.begin_block();
            }
            Tag::TableHead => {
                self.header = true;
                self.row = Some(Vec::new());
            }
            Tag::TableRow => self.row = Some(Vec::new()),
            Tag::TableCell => self.cell.clear(),
            Tag::Emphasis => self.push_style(|t| t.emphasis),
            Tag::Strong => self.push_style(|t| t.strong),
            Tag::Strikethrough => self.push_style(|t| t.strike),
            Tag::Link { dest_url, .. } => {
                let at = self.cur.as_ref().map_or(0, |p| p.spans.len());
                self.links.push((dest_url.to_string(), at));
                self.push_style(|t| t.link);
            }
            Tag::Image { dest_url, .. } => {
                let at = self.cur.as_ref().map_or(0, |p| p.spans.len());
                self.links.push((dest_url.to_string(), at));
                let s = self.style();
                self.text("[image: ", s);
                self.push_style(|t| t.link);
            }
            Tag::FootnoteDefinition(label) => {
                self.begin_block();
                let s = self.theme.dim;
                self.text(&format!("[^{label}]: "), s);
            }
            Tag::HtmlBlock
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition => self.begin_block(),
            Tag::Superscript | Tag::Subscript | Tag::MetadataBlock(_) => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock | TagEnd::FootnoteDefinition => self.flush(),
            TagEnd::DefinitionListTitle | TagEnd::DefinitionListDefinition => self.flush(),
            TagEnd::Heading(_) => {
                self.pop_style();
                self.flush();
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.pop_container(|c| matches!(c, Container::Quote));
                self.had_block = true;
            }
            TagEnd::CodeBlock => {
                if let Some(code) = self.code.take() {
                    self.code_block(&code);
                }
            }
            TagEnd::List(_) => {
                self.flush();
                self.pop_container(|c| matches!(c, Container::List { .. }));
                self.had_block = true;
            }
            TagEnd::Item => {
                self.flush();
                self.pop_container(|c| matches!(c, Container::Item { .. }));
                self.had_block = true;
            }
            TagEnd::TableHead | TagEnd::TableRow => {
                if let Some(cells) = self.row.take() {
                    self.table_row(cells);
                }
                self.header = false;
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.cell);
                if let Some(row) = &mut self.row {
                    row.push(cell);
                }
            }
            TagEnd::Table => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => self.pop_style(),
            TagEnd::Link => {
                self.pop_style();
                self.end_link(false);
            }
            TagEnd::Image => {
                self.pop_style();
                self.end_link(true);
            }
            TagEnd::DefinitionList
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::MetadataBlock(_) => {}
        }
    }

    /// A link shows its URL after its text, unless the text is the URL.
    fn end_link(&mut self, image: bool) {
        let Some((url, at)) = self.links.pop() else {
            return;
        };
        let shown: String = self
            .cur
            .as_ref()
            .map(|p| {
                p.spans
                    .iter()
                    .skip(at)
                    .map(|s| s.content.as_ref())
                    .collect()
            })
            .unwrap_or_default();
        let s = self.style();
        if image {
            self.text("]", s);
        }
        let bare = url.strip_prefix("mailto:").unwrap_or(&url);
        if !url.is_empty() && shown.trim() != url && shown.trim() != bare {
            let u = self.theme.url;
            self.text(&format!(" ({url})"), u);
        }
    }

    fn table_row(&mut self, cells: Vec<Vec<Span<'static>>>) {
        let (first, rest) = self.prefixes();
        let mut spans = Vec::new();
        let header = self.header;
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" │ ", self.theme.gutter));
            }
            for mut s in cell {
                if header {
                    s.style = s.style.patch(self.theme.strong);
                }
                spans.push(s);
            }
        }
        self.out.push(Para {
            first,
            rest,
            spans,
            hard: false,
            rule: None,
        });
    }

    fn pop_container(&mut self, is: impl Fn(&Container) -> bool) {
        if let Some(i) = self.containers.iter().rposition(is) {
            self.containers.truncate(i);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::super::wrap::{width, wrap};
    use super::*;
    use ratatui::style::Modifier;

    fn lines(md: &str, w: usize, theme: &Theme) -> Vec<String> {
        render(md, theme)
            .iter()
            .flat_map(|p| wrap(p, w))
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    fn style_of(md: &str, needle: &str, theme: &Theme) -> Style {
        render(md, theme)
            .iter()
            .flat_map(|p| p.spans.clone())
            .find(|s| s.content.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not rendered"))
            .style
    }

    #[test]
    fn headings_emphasis_and_paragraphs() {
        let t = Theme::new(true);
        let md = "# Title\n\nSome *soft* and **strong** text\nacross lines.\n\n## Sub";
        assert_eq!(
            lines(md, 80, &t),
            [
                "Title",
                "",
                "Some soft and strong text across lines.",
                "",
                "Sub"
            ]
        );
        assert_eq!(style_of(md, "Title", &t), t.heading[0]);
        assert!(
            style_of(md, "soft", &t)
                .add_modifier
                .contains(Modifier::ITALIC)
        );
        assert!(
            style_of(md, "strong", &t)
                .add_modifier
                .contains(Modifier::BOLD)
        );
        assert_eq!(style_of(md, "Sub", &t), t.heading[1]);
    }

    #[test]
    fn lists_nest_and_wrap_under_their_text() {
        let t = Theme::new(true);
        let md =
            "- one\n- two is longer than the line\n  - inner\n\n1. first\n2. second\n- [x] done";
        let out = lines(md, 20, &t);
        assert_eq!(
            out,
            [
                "• one",
                "• two is longer than",
                "  the line",
                "  ◦ inner",
                "",
                "1. first",
                "2. second",
                "",
                "• [x] done"
            ]
        );
    }

    #[test]
    fn code_blocks_have_a_gutter_and_their_own_style() {
        let t = Theme::new(true);
        let md = "Run:\n\n```rust\nfn main() {\n\tprintln!(\"hi\");\n}\n```\n\nand `cargo run`.";
        let out = lines(md, 40, &t);
        assert_eq!(
            out,
            [
                "Run:",
                "",
                "╭ rust",
                "│ fn main() {",
                "│     println!(\"hi\");",
                "│ }",
                "",
                "and cargo run."
            ]
        );
        assert_eq!(style_of(md, "fn main", &t), t.code_block);
        assert_eq!(style_of(md, "cargo run", &t), t.code);
        // Without colour inline code keeps its backticks.
        let plain = Theme::new(false);
        assert!(lines(md, 40, &plain).contains(&"and `cargo run`.".to_string()));
        assert_eq!(style_of(md, "fn main", &plain).fg, None);
    }

    #[test]
    fn an_unclosed_fence_streams_as_code() {
        let t = Theme::new(true);
        let out = lines("text\n\n```\nlet a = 1;\nlet b", 40, &t);
        assert_eq!(out, ["text", "", "│ let a = 1;", "│ let b"]);
        // Half a strong marker is shown as it is until it closes.
        assert_eq!(lines("some **bold", 40, &t), ["some **bold"]);
    }

    #[test]
    fn links_show_their_url() {
        let t = Theme::new(true);
        assert_eq!(
            lines(
                "See [the docs](https://example.com/d) or <https://x.io>.",
                80,
                &t
            ),
            ["See the docs (https://example.com/d) or https://x.io."]
        );
        assert_eq!(style_of("[a](http://u)", "a", &t), t.link);
    }

    #[test]
    fn quotes_rules_and_tables() {
        let t = Theme::new(false);
        let out = lines(
            "> quoted\n> more\n\n---\n\n| a | b |\n|---|---|\n| 1 | 2 |",
            10,
            &t,
        );
        assert_eq!(
            out,
            ["│ quoted", "│ more", "", "──────────", "", "a │ b", "1 │ 2"]
        );
    }

    #[test]
    fn wide_text_and_odd_input_never_panic() {
        let t = Theme::new(true);
        let inputs = [
            "",
            "```",
            "* ",
            "#",
            "> > > - 1. ```\n\t\u{0}",
            "| a |\n|--|\n| 漢字漢字漢字 |",
            "[x](",
            "![img](http://i)",
            "<div>\nhtml\n</div>",
            "- a\n\n  b\n\n  ```\n  code\n  ```",
        ];
        for md in inputs {
            for w in 0..12 {
                let out = lines(md, w, &t);
                for l in &out {
                    assert!(width(l) <= w.max(2), "{md:?} at {w}: {l:?}");
                }
            }
        }
        let cjk = "## 見出し\n\n日本語の文章がここに続きます。".repeat(3);
        for l in lines(&cjk, 21, &t) {
            assert!(width(&l) <= 21, "{l:?}");
        }
    }
}
