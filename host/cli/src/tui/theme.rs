//! The TUI's styles. With `NO_COLOR` set (https://no-color.org) every style is plain:
//! bold, italic, underline, dim and reverse only, no colours.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone)]
pub struct Theme {
    pub colour: bool,
    pub text: Style,
    pub user: Style,
    pub heading: [Style; 3],
    pub strong: Style,
    pub emphasis: Style,
    pub strike: Style,
    pub code: Style,
    pub code_block: Style,
    pub gutter: Style,
    pub link: Style,
    pub url: Style,
    pub quote: Style,
    pub tool: Style,
    pub ok: Style,
    pub failed: Style,
    pub dim: Style,
    pub error: Style,
    pub notice: Style,
    pub status: Style,
    pub status_alert: Style,
    pub rule: Style,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
    }

    pub fn new(colour: bool) -> Theme {
        let c = |style: Style, fg: Color| if colour { style.fg(fg) } else { style };
        let plain = Style::new();
        let bold = plain.add_modifier(Modifier::BOLD);
        let dim = plain.add_modifier(Modifier::DIM);
        Theme {
            colour,
            text: plain,
            user: c(bold, Color::Cyan),
            heading: [
                c(bold.add_modifier(Modifier::UNDERLINED), Color::Magenta),
                c(bold, Color::Magenta),
                c(bold, Color::Blue),
            ],
            strong: bold,
            emphasis: plain.add_modifier(Modifier::ITALIC),
            strike: plain.add_modifier(Modifier::CROSSED_OUT),
            code: c(plain, Color::Yellow),
            code_block: c(plain, Color::Green),
            gutter: dim,
            link: c(plain.add_modifier(Modifier::UNDERLINED), Color::Blue),
            url: c(dim, Color::Blue),
            quote: c(plain.add_modifier(Modifier::ITALIC), Color::Gray),
            tool: c(plain, Color::Yellow),
            ok: c(plain, Color::Green),
            failed: c(bold, Color::Red),
            dim,
            error: c(bold, Color::Red),
            notice: c(plain, Color::Yellow),
            status: plain.add_modifier(Modifier::REVERSED),
            status_alert: if colour {
                bold.fg(Color::White).bg(Color::Red)
            } else {
                bold.add_modifier(Modifier::REVERSED)
            },
            rule: dim,
        }
    }
}
