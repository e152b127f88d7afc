//! Keys, pastes, the mouse, and the slash commands.

use super::{App, Conn, Phase};
use crate::tui::transcript::Kind;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use oxydra_gateway::protocol::{
    CancelActiveTurn, ClientFrame, CreateSession, ListSessions, Request, SendTurn, SwitchSession,
};
use std::time::{Duration, Instant};

const HELP: &str = "\
commands:
  /new [name]      start a new session (a name leads its id)
  /sessions        list this user's sessions
  /switch <id>     attach another session (an id or a unique prefix)
  /cancel          cancel this session's running turn (also Ctrl-C)
  /cancelall       cancel every running turn of this user
  /status          connection, session and gateway health
  /help            this list
  /quit            leave (also Ctrl-C twice, or Ctrl-D on an empty prompt)
keys:
  Enter            send
  Alt-Enter        a new line (also Shift-Enter where the terminal tells it
                   apart, and Ctrl-J)
  Up, Down         move between lines, then through what you sent before
  PgUp, PgDn       scroll (also the mouse wheel, Shift-Up, Shift-Down)
  End, Esc         back to the bottom; Ctrl-Home: the top
anything else goes to the agent; start with // to send text that begins with /";

const COMMANDS: &[&str] = &[
    "/new",
    "/sessions",
    "/switch",
    "/cancel",
    "/cancelall",
    "/status",
    "/help",
    "/quit",
];

/// How long a second Ctrl-C quits even while a turn is still being cancelled.
const QUIT_WINDOW: Duration = Duration::from_secs(2);

impl App {
    pub fn on_paste(&mut self, text: &str) {
        self.input.insert(text);
        self.ctrl_c = None;
        self.dirty = true;
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollUp => self.transcript.scroll(-3),
            MouseEventKind::ScrollDown => self.transcript.scroll(3),
            _ => return,
        }
        self.dirty = true;
    }

    pub fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        self.dirty = true;
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        if !(ctrl && k.code == KeyCode::Char('c')) {
            self.ctrl_c = None;
        }
        match k.code {
            KeyCode::Char('c') if ctrl => self.ctrl_c(),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => self.quit = true,
            KeyCode::Char('d') if ctrl => self.input.delete(),
            KeyCode::Char('j') if ctrl => self.input.newline(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.kill_start(),
            KeyCode::Char('k') if ctrl => self.input.kill_end(),
            KeyCode::Char('w') if ctrl => self.input.kill_word(),
            KeyCode::Char('l') if ctrl => self.clear = true,
            KeyCode::Enter if alt || shift => self.input.newline(),
            KeyCode::Enter => self.submit(),
            KeyCode::Backspace if alt => self.input.kill_word(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home if ctrl => self.transcript.jump_to_start(),
            KeyCode::Home => self.input.home(),
            KeyCode::End if ctrl || self.transcript.scrolled() => self.transcript.follow_end(),
            KeyCode::End => self.input.end(),
            KeyCode::Up if alt || shift => self.transcript.scroll(-1),
            KeyCode::Down if alt || shift => self.transcript.scroll(1),
            KeyCode::Up => self.input.up(),
            KeyCode::Down => self.input.down(),
            KeyCode::PageUp => {
                let p = self.transcript.page();
                self.transcript.scroll(-p);
            }
            KeyCode::PageDown => {
                let p = self.transcript.page();
                self.transcript.scroll(p);
            }
            KeyCode::Esc if self.transcript.scrolled() => self.transcript.follow_end(),
            KeyCode::Tab => self.complete(),
            KeyCode::Char(c) if !ctrl && !alt => self.input.insert(c.encode_utf8(&mut [0; 4])),
            _ => self.dirty = false,
        }
    }

    /// Tab after a partial `/command` completes it when only one fits.
    fn complete(&mut self) {
        let t = self.input.text();
        if !t.starts_with('/') || t.contains(char::is_whitespace) {
            return;
        }
        let fits: Vec<&&str> = COMMANDS.iter().filter(|c| c.starts_with(t)).collect();
        if let [one] = fits.as_slice() {
            let rest = one[t.len()..].to_string();
            self.input.end();
            self.input.insert(&rest);
            if **one == "/new" || **one == "/switch" {
                self.input.insert(" ");
            }
        }
    }

    fn ctrl_c(&mut self) {
        let now = Instant::now();
        let recent = self
            .ctrl_c
            .is_some_and(|t| now.duration_since(t) < QUIT_WINDOW);
        if self.ctrl_c.is_some() && (self.turn.is_none() || recent) {
            self.quit = true;
            return;
        }
        if self.turn.is_some() {
            if self.send(ClientFrame::CancelActiveTurn(CancelActiveTurn {
                turn_id: self.turn.as_ref().map(|t| t.id.clone()),
                ..CancelActiveTurn::default()
            })) {
                self.say(Kind::Notice, "cancelling the turn (Ctrl-C again to quit)");
            }
        } else {
            self.input.clear();
            self.say(Kind::Info, "press Ctrl-C again to quit (or type /quit)");
        }
        self.ctrl_c = Some(now);
    }

    fn submit(&mut self) {
        let text = self.input.text().to_string();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with('/') && !trimmed.starts_with("//") {
            self.input.take();
            self.transcript.follow_end();
            self.command(trimmed);
            return;
        }
        if !self.connected() {
            self.say(
                Kind::Error,
                "not connected to the gateway: the prompt is kept; press Enter again once reconnected",
            );
            return;
        }
        if let Some(t) = &self.turn {
            let what = match t.phase {
                Phase::Queued(_) => "queued",
                _ => "running",
            };
            self.say(
                Kind::Error,
                format!("a turn is {what} in this session: wait for it or /cancel it; the prompt is kept"),
            );
            return;
        }
        let sent = self.input.take();
        let prompt = sent
            .strip_prefix('/')
            .filter(|p| p.starts_with('/'))
            .unwrap_or(&sent);
        let id = self.request_id();
        self.out.push(ClientFrame::SendTurn(SendTurn {
            request_id: Some(id.clone()),
            prompt: prompt.to_string(),
            ..SendTurn::default()
        }));
        self.pending = Some(id);
        self.transcript.follow_end();
        self.say(Kind::User, prompt.trim_end());
    }

    fn command(&mut self, line: &str) {
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let arg = (!arg.is_empty()).then(|| arg.to_string());
        match cmd {
            "/new" => {
                self.send(ClientFrame::CreateSession(CreateSession {
                    display_name: arg,
                    ..CreateSession::default()
                }));
            }
            "/sessions" => {
                self.send(ClientFrame::ListSessions(ListSessions::default()));
            }
            "/switch" => match arg {
                Some(id) => {
                    self.send(ClientFrame::SwitchSession(SwitchSession {
                        session_id: id,
                        ..SwitchSession::default()
                    }));
                }
                None => self.say(
                    Kind::Error,
                    "usage: /switch <id or unique prefix>; /sessions lists them",
                ),
            },
            "/cancel" => {
                self.send(ClientFrame::CancelActiveTurn(CancelActiveTurn {
                    turn_id: self.turn.as_ref().map(|t| t.id.clone()),
                    ..CancelActiveTurn::default()
                }));
            }
            "/cancelall" => {
                self.send(ClientFrame::CancelAllActiveTurns(Request::default()));
            }
            "/status" => {
                let conn = match &self.conn {
                    Conn::Connecting => "connecting".to_string(),
                    Conn::Connected => "connected, attaching".to_string(),
                    Conn::Attached => "connected".to_string(),
                    Conn::Lost { reason, attempts } => {
                        format!(
                            "disconnected ({reason}); reconnecting, {attempts} attempt(s) so far"
                        )
                    }
                };
                let session = match &self.session {
                    Some(s) => format!(
                        "session {} (agent {}, model {})",
                        s.session_id, s.agent_name, s.model
                    ),
                    None => "no session".into(),
                };
                let url = self.url.clone().unwrap_or_else(|| "(not yet known)".into());
                self.say(
                    Kind::Info,
                    format!(
                        "user {}; {session}; gateway {url}: {conn}; {}",
                        self.user,
                        self.state()
                    ),
                );
                if self.connected() {
                    self.out.push(ClientFrame::HealthCheck(Request::default()));
                }
            }
            "/help" | "/?" => self.say(Kind::Info, HELP),
            "/quit" | "/exit" | "/q" => self.quit = true,
            other => {
                let near: Vec<&str> = COMMANDS
                    .iter()
                    .copied()
                    .filter(|c| c.starts_with(&other.chars().take(3).collect::<String>()))
                    .collect();
                let hint = if near.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", near.join(" or "))
                };
                self.say(
                    Kind::Error,
                    format!("unknown command {other}{hint}; /help lists the commands, // sends a message that starts with /"),
                );
            }
        }
    }
}
