//! Drawing one frame: the message pane, the status line, and the prompt (a rule above
//! it, growing with its text up to [`MAX_INPUT_ROWS`] rows).

use super::app::{App, Conn};
use super::wrap::width;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub const MAX_INPUT_ROWS: usize = 10;
const PROMPT: &str = "› ";

pub fn draw(f: &mut Frame<'_>, app: &mut App) {
    let area = f.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let w = usize::from(area.width);
    let text_w = w.saturating_sub(width(PROMPT)).max(1);
    let layout = app.input.layout(text_w);
    let rows = layout.rows.len().clamp(1, MAX_INPUT_ROWS);
    // The pane keeps at least one row; the prompt gives way on a tiny terminal.
    let room = usize::from(area.height).saturating_sub(3);
    let rows = rows.min(room.max(1));
    let input_h = u16::try_from(rows + 1).unwrap_or(2);
    let [pane, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(input_h),
    ])
    .areas(area);

    let lines = app.transcript.view(
        usize::from(pane.width),
        usize::from(pane.height),
        &app.theme,
    );
    f.render_widget(Paragraph::new(lines), pane);
    f.render_widget(Paragraph::new(status_line(app, w)), status);
    draw_input(f, app, input, &layout, rows);
}

fn draw_input(
    f: &mut Frame<'_>,
    app: &App,
    area: Rect,
    layout: &super::input::Layout,
    rows: usize,
) {
    if area.height == 0 {
        return;
    }
    let w = usize::from(area.width);
    let mut lines = vec![Line::from(Span::styled("─".repeat(w), app.theme.rule))];
    // Keep the cursor's row in view when the text is taller than the box.
    let (crow, ccol) = layout.cursor;
    let first = (crow + 1).saturating_sub(rows);
    for (i, r) in layout.rows.iter().enumerate().skip(first).take(rows) {
        let lead = if i == 0 { PROMPT } else { "  " };
        lines.push(Line::from(vec![
            Span::styled(lead, app.theme.user),
            Span::raw(r.clone()),
        ]));
    }
    f.render_widget(Paragraph::new(lines), area);
    let x = area
        .x
        .saturating_add(u16::try_from(width(PROMPT) + ccol).unwrap_or(0));
    let y = area
        .y
        .saturating_add(1)
        .saturating_add(u16::try_from(crow - first).unwrap_or(0));
    if x < area.right() && y < area.bottom() {
        f.set_cursor_position(Position { x, y });
    }
}

/// ` user · session · agent · model · state `, cut to the width; the state is kept.
fn status_line(app: &App, w: usize) -> Line<'static> {
    let t = &app.theme;
    let mut left = vec![app.user.clone()];
    match app.session_label() {
        Some((id, agent, model)) => left.extend([id, agent, model]),
        None => left.push("no session".into()),
    }
    let mut state = app.state();
    if app.transcript.scrolled() {
        state.push_str(if app.transcript.unseen {
            " · ↑ scrolled, new output below (End)"
        } else {
            " · ↑ scrolled (End)"
        });
    }
    let alert = matches!(app.conn, Conn::Lost { .. });
    let state_style = if alert { t.status_alert } else { t.status };
    let left = format!(" {} ", left.join(" · "));
    let state = format!(" {state} ");
    let (lw, sw) = (width(&left), width(&state));
    let mut spans = Vec::new();
    if lw + sw <= w {
        spans.push(Span::styled(left, t.status));
        spans.push(Span::styled(" ".repeat(w - lw - sw), t.status));
    } else {
        // Too narrow: the state first, then as much of the rest as fits.
        let mut cut = String::new();
        let mut used = 0;
        for g in unicode_segmentation::UnicodeSegmentation::graphemes(left.as_str(), true) {
            let gw = super::wrap::gwidth(g);
            if used + gw + sw > w {
                break;
            }
            cut.push_str(g);
            used += gw;
        }
        spans.push(Span::styled(cut, t.status));
    }
    spans.push(Span::styled(state, state_style));
    Line::from(spans)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tui::net::NetEvent;
    use crate::tui::theme::Theme;
    use crate::tui::transcript::Kind;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn busy_app() -> App {
        let mut app = App::new(Theme::new(true), "alice".into());
        app.on_net(NetEvent::Connected {
            url: "ws://x/ws".into(),
        });
        app.transcript
            .push(Kind::User, "漢字 and 🦀 in a prompt\nover two lines");
        app.transcript.append_answer(
            "t1",
            "# 見出し\n\n- 日本語の文章がここに続きます。\n\n```\ncode\tline\n```\n[l](http://u)",
        );
        app.transcript.push(Kind::Error, "something went wrong");
        for c in "typed 漢字 input".chars() {
            app.on_paste(&c.to_string());
        }
        app
    }

    #[test]
    fn any_size_draws_without_panicking() {
        let mut app = busy_app();
        for w in 0..14u16 {
            for h in 0..8u16 {
                let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
                t.draw(|f| draw(f, &mut app)).unwrap();
            }
        }
        let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
        t.draw(|f| draw(f, &mut app)).unwrap();
    }

    #[test]
    fn the_prompt_grows_to_ten_rows_and_keeps_the_cursor_in_view() {
        let mut app = busy_app();
        for i in 0..15 {
            app.on_paste(&format!("line {i}\n"));
        }
        let mut t = Terminal::new(TestBackend::new(40, 30)).unwrap();
        t.draw(|f| draw(f, &mut app)).unwrap();
        let buf = t.backend().buffer().clone();
        let rows: Vec<String> = (0..30)
            .map(|y| (0..40).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        let rule = rows.iter().rposition(|r| r.starts_with("────")).unwrap();
        assert_eq!(30 - rule - 1, MAX_INPUT_ROWS, "{rows:#?}");
        // The cursor is on the last row, after the last line's text (an empty line).
        let pos = t.get_cursor_position().unwrap();
        assert_eq!((pos.x, pos.y), (2, 29));
        assert!(rows[rule - 1].contains("alice"), "{rows:#?}");
    }
}
