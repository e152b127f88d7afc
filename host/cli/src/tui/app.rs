//! What the TUI knows and how it changes: server frames and connection events from the
//! socket task, keys, pastes and the mouse from the terminal. Frames to send are queued
//! in [`App::out`]; the loop hands them to the socket task.

mod frames;
mod keys;

use super::input::Input;
use super::theme::Theme;
use super::transcript::{Kind, Transcript};
use oxydra_gateway::protocol::{ClientFrame, SessionRef, Usage};
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    /// The socket is up; waiting for hello_ack.
    Connected,
    Attached,
    Lost {
        reason: String,
        attempts: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Queued(usize),
    Starting,
    Step,
    Tool(String),
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub id: String,
    pub phase: Phase,
    pub step: (u32, u32),
    pub tools: Vec<String>,
    started: Instant,
}

impl Turn {
    fn new(id: String, phase: Phase) -> Turn {
        Turn {
            id,
            phase,
            step: (0, 0),
            tools: Vec::new(),
            started: Instant::now(),
        }
    }
}

pub struct App {
    pub theme: Theme,
    pub transcript: Transcript,
    pub input: Input,
    /// The user this TUI is for (the gateway's word wins once attached).
    pub user: String,
    pub session: Option<SessionRef>,
    pub conn: Conn,
    pub url: Option<String>,
    pub turn: Option<Turn>,
    /// The request id of a prompt sent but not started yet.
    pending: Option<String>,
    pub quit: bool,
    ctrl_c: Option<Instant>,
    /// Turns whose end is shown: a reconnect does not show them again.
    ended: HashSet<String>,
    attached_once: bool,
    /// Why the last attempt to connect failed, while not attached.
    lost: Option<String>,
    attempts: u32,
    next_request: u64,
    pub out: Vec<ClientFrame>,
    /// Something changed since the last draw.
    pub dirty: bool,
    /// Draw every cell again (Ctrl-L).
    pub clear: bool,
}

fn short(id: &str) -> String {
    // A named session's id is `<name>-<8 hex>`; a random one is 24 hex digits.
    if id.contains('-') {
        return id.chars().take(32).collect();
    }
    id.chars().take(8).collect()
}

/// 1234567 → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn usage_line(u: &Usage, elapsed: Option<Duration>) -> String {
    let mut parts = vec![
        format!("{} tokens in", thousands(u.prompt_tokens)),
        format!("{} out", thousands(u.completion_tokens)),
    ];
    if let Some(c) = u.cost {
        // Small turns cost fractions of a cent: keep six places below a dollar.
        parts.push(if c >= 1.0 {
            format!("${c:.2}")
        } else {
            format!("${c:.6}")
        });
    }
    parts.push(format!(
        "{} model call{}",
        u.steps,
        if u.steps == 1 { "" } else { "s" }
    ));
    if let Some(e) = elapsed {
        parts.push(format!("{:.1} s", e.as_secs_f64()));
    }
    parts.join(" · ")
}

/// A tool's arguments on one line, cut to `max` characters.
fn compact(args: &str, max: usize) -> String {
    let one: String = match serde_json::from_str::<serde_json::Value>(args) {
        Ok(v) => v.to_string(),
        Err(_) => args.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    if one.chars().count() <= max {
        one
    } else {
        let cut: String = one.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

impl App {
    pub fn new(theme: Theme, user: String) -> App {
        App {
            theme,
            transcript: Transcript::default(),
            input: Input::default(),
            user,
            session: None,
            conn: Conn::Connecting,
            url: None,
            turn: None,
            pending: None,
            quit: false,
            ctrl_c: None,
            ended: HashSet::new(),
            attached_once: false,
            lost: None,
            attempts: 0,
            next_request: 0,
            out: Vec::new(),
            dirty: true,
            clear: false,
        }
    }

    fn say(&mut self, kind: Kind, text: impl Into<String>) {
        self.transcript.push(kind, text);
    }

    fn connected(&self) -> bool {
        matches!(self.conn, Conn::Connected | Conn::Attached)
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        // The pid keeps two TUIs on one session from taking each other's turns as theirs.
        format!("tui-{}-{}", std::process::id(), self.next_request)
    }

    /// Queue a frame, or say why it cannot go.
    fn send(&mut self, f: ClientFrame) -> bool {
        if !self.connected() {
            self.say(
                Kind::Error,
                "not connected to the gateway: wait for the reconnect (the status line shows it)",
            );
            return false;
        }
        self.out.push(f);
        true
    }

    /// Turn frames for a session other than the one shown (in flight across a switch).
    fn other_session(&self, id: &str) -> bool {
        self.session.as_ref().is_some_and(|s| s.session_id != id)
    }

    /// The state part of the status line.
    pub fn state(&self) -> String {
        match &self.conn {
            Conn::Lost { .. } => return "disconnected — reconnecting".into(),
            Conn::Connecting => return "connecting".into(),
            Conn::Connected => return "attaching".into(),
            Conn::Attached => {}
        }
        let Some(t) = &self.turn else {
            return if self.pending.is_some() {
                "sending".into()
            } else {
                "idle".into()
            };
        };
        match &t.phase {
            Phase::Queued(n) => format!("queued {n}"),
            Phase::Starting => "running".into(),
            Phase::Step if t.step.0 == 0 => "running".into(),
            Phase::Step if t.step.1 == 0 => format!("running step {}", t.step.0),
            Phase::Step => format!("running step {}/{}", t.step.0, t.step.1),
            Phase::Tool(n) if t.tools.len() > 1 => {
                format!("running tool {n} (+{})", t.tools.len() - 1)
            }
            Phase::Tool(n) => format!("running tool {n}"),
        }
    }

    /// The session part of the status line.
    pub fn session_label(&self) -> Option<(String, String, String)> {
        let s = self.session.as_ref()?;
        Some((short(&s.session_id), s.agent_name.clone(), s.model.clone()))
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tui::net::NetEvent;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
    use oxydra_gateway::protocol::{
        ActiveTurn, AssistantDelta, HelloAck, LastTurn, Limits, Progress, ServerFrame,
        TurnProgress, TurnRef,
    };

    fn key(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    fn attached() -> App {
        let mut app = App::new(Theme::new(false), "alice".into());
        app.on_net(NetEvent::Connected {
            url: "ws://x/ws".into(),
        });
        app.on_frame(ServerFrame::HelloAck(HelloAck {
            request_id: None,
            protocol_version: 3,
            session: SessionRef {
                user_id: "alice".into(),
                session_id: "0123456789abcdef01234567".into(),
                agent_name: "default".into(),
                model: "m".into(),
            },
            active_turn: None,
            last_turn: None,
            limits: Limits {
                max_frame_bytes: 1,
                max_prompt_bytes: 1,
                max_sessions_per_user: 1,
                max_concurrent_turns_per_user: 1,
            },
        }));
        app
    }

    fn type_text(app: &mut App, s: &str) {
        for c in s.chars() {
            app.on_key(key(KeyCode::Char(c), KeyModifiers::NONE));
        }
    }

    #[test]
    fn commands_become_frames_and_unknown_ones_get_a_hint() {
        let mut app = attached();
        type_text(&mut app, "/new work");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert!(
            matches!(&app.out[..], [ClientFrame::CreateSession(c)] if c.display_name.as_deref() == Some("work"))
        );
        type_text(&mut app, "/swi");
        app.on_key(key(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(app.input.text(), "/switch ");
        type_text(&mut app, "ab");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert!(matches!(&app.out[1], ClientFrame::SwitchSession(s) if s.session_id == "ab"));
        type_text(&mut app, "/sesions");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        let last = app.transcript.entries.last().unwrap();
        assert_eq!(last.kind, Kind::Error);
        assert!(
            last.text
                .contains("unknown command /sesions (did you mean /sessions?)"),
            "{}",
            last.text
        );
        type_text(&mut app, "//etc is a path");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert!(matches!(&app.out[2], ClientFrame::SendTurn(t) if t.prompt == "/etc is a path"));
    }

    #[test]
    fn ctrl_c_cancels_then_quits() {
        let mut app = attached();
        let ctrl_c = key(KeyCode::Char('c'), KeyModifiers::CONTROL);
        type_text(&mut app, "hello");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        app.on_frame(ServerFrame::TurnStarted(TurnRef {
            request_id: Some(format!("tui-{}-1", std::process::id())),
            session_id: "0123456789abcdef01234567".into(),
            turn_id: "t1".into(),
        }));
        app.on_key(ctrl_c);
        assert!(matches!(
            app.out.last(),
            Some(ClientFrame::CancelActiveTurn(_))
        ));
        assert!(!app.quit);
        app.on_key(ctrl_c);
        assert!(app.quit);
        // Idle: the first Ctrl-C only says how to quit.
        let mut app = attached();
        app.on_key(ctrl_c);
        assert!(!app.quit);
        app.on_key(ctrl_c);
        assert!(app.quit);
    }

    #[test]
    fn a_turn_streams_shows_tools_and_ends_with_usage() {
        let mut app = attached();
        let sid = "0123456789abcdef01234567".to_string();
        type_text(&mut app, "go");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.state(), "sending");
        let progress = |p: Progress| {
            ServerFrame::TurnProgress(TurnProgress {
                session_id: sid.clone(),
                turn_id: "t1".into(),
                progress: p,
                message: String::new(),
            })
        };
        app.on_frame(progress(Progress::ProviderCall { step: 1, max: 8 }));
        assert_eq!(app.state(), "running step 1/8");
        app.on_frame(progress(Progress::ToolStarted {
            tool_name: "file_read".into(),
            arguments: "{\"path\": \"/shared/a\"}".into(),
        }));
        assert_eq!(app.state(), "running tool file_read");
        app.on_frame(progress(Progress::ToolFinished {
            tool_name: "file_read".into(),
            duration_ms: 2.5,
            ok: true,
        }));
        app.on_frame(ServerFrame::AssistantDelta(AssistantDelta {
            session_id: sid.clone(),
            turn_id: "t1".into(),
            delta: "done".into(),
        }));
        // Another session's frame (in flight across a switch) is not shown.
        app.on_frame(ServerFrame::AssistantDelta(AssistantDelta {
            session_id: "other".into(),
            turn_id: "t9".into(),
            delta: "nope".into(),
        }));
        app.on_frame(ServerFrame::TurnCompleted(
            oxydra_gateway::protocol::TurnCompleted {
                session_id: sid,
                turn_id: "t1".into(),
                response: oxydra_gateway::protocol::Response {
                    message: "done".into(),
                    finish_reason: "stop".into(),
                    usage: Usage {
                        prompt_tokens: 1200,
                        completion_tokens: 30,
                        total_tokens: 1230,
                        cost: Some(0.00123),
                        steps: 2,
                    },
                },
            },
        ));
        assert_eq!(app.state(), "idle");
        let texts: Vec<String> = app
            .transcript
            .entries
            .iter()
            .map(|e| e.text.clone())
            .collect();
        assert!(!texts.iter().any(|t| t.contains("nope")));
        let usage = texts.last().unwrap();
        assert!(
            usage.starts_with("1,200 tokens in · 30 out · $0.001230 · 2 model calls"),
            "{usage}"
        );
    }

    #[test]
    fn a_prompt_while_disconnected_is_kept() {
        let mut app = attached();
        app.on_net(NetEvent::Lost {
            reason: "gone".into(),
            retry_in: Duration::from_millis(250),
        });
        assert_eq!(app.state(), "disconnected — reconnecting");
        type_text(&mut app, "keep me");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.input.text(), "keep me");
        assert!(app.out.is_empty());
    }

    #[test]
    fn a_reattach_shows_the_running_turn_so_far_or_how_it_ended() {
        let mut app = attached();
        let sid = "0123456789abcdef01234567";
        type_text(&mut app, "go");
        app.on_key(key(KeyCode::Enter, KeyModifiers::NONE));
        app.on_frame(ServerFrame::AssistantDelta(AssistantDelta {
            session_id: sid.into(),
            turn_id: "t1".into(),
            delta: "par".into(),
        }));
        app.on_net(NetEvent::Lost {
            reason: "gone".into(),
            retry_in: Duration::from_millis(250),
        });
        app.on_net(NetEvent::Connected {
            url: "ws://y/ws".into(),
        });
        let ack = |active: Option<ActiveTurn>, last: Option<LastTurn>| {
            ServerFrame::HelloAck(HelloAck {
                request_id: None,
                protocol_version: 3,
                session: SessionRef {
                    user_id: "alice".into(),
                    session_id: sid.into(),
                    agent_name: "default".into(),
                    model: "m".into(),
                },
                active_turn: active,
                last_turn: last,
                limits: Limits {
                    max_frame_bytes: 1,
                    max_prompt_bytes: 1,
                    max_sessions_per_user: 1,
                    max_concurrent_turns_per_user: 1,
                },
            })
        };
        // Still running: the text so far replaces what this view had.
        app.on_frame(ack(
            Some(ActiveTurn {
                turn_id: "t1".into(),
                state: "running".into(),
                queue_position: None,
                text: "partial answer".into(),
                step: 2,
                tools_running: vec!["file_read".into()],
            }),
            None,
        ));
        assert_eq!(app.state(), "running tool file_read");
        let answers: Vec<&str> = app
            .transcript
            .entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::Answer { .. }))
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(answers, ["partial answer"]);
        assert!(
            app.transcript
                .entries
                .iter()
                .any(|e| e.text.starts_with("reconnected to ws://y/ws"))
        );
        // Away again, and it ended meanwhile: its end is shown once.
        app.on_net(NetEvent::Lost {
            reason: "gone".into(),
            retry_in: Duration::from_millis(250),
        });
        let last = LastTurn {
            turn_id: "t1".into(),
            state: "completed".into(),
            message: "partial answer, finished".into(),
        };
        app.on_frame(ack(None, Some(last.clone())));
        assert_eq!(app.state(), "idle");
        let n = app.transcript.entries.len();
        assert!(
            app.transcript
                .entries
                .iter()
                .any(|e| e.text == "partial answer, finished")
        );
        app.on_frame(ack(None, Some(last)));
        assert_eq!(
            app.transcript.entries.len(),
            n + 1,
            "only the reconnect line is new"
        );
    }

    #[test]
    fn the_wheel_scrolls() {
        let mut app = attached();
        for i in 0..50 {
            app.say(Kind::Info, format!("line {i}"));
        }
        let _ = app.transcript.view(40, 10, &app.theme.clone());
        let wheel = |kind| MouseEvent {
            kind,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        };
        app.on_mouse(wheel(MouseEventKind::ScrollUp));
        assert!(app.transcript.scrolled());
        app.on_mouse(wheel(MouseEventKind::ScrollDown));
        assert!(!app.transcript.scrolled());
    }

    #[test]
    fn a_refusal_repeated_on_every_attempt_is_said_once() {
        let mut app = App::new(Theme::new(false), "alice".into());
        for _ in 0..5 {
            app.on_net(NetEvent::Connected {
                url: "ws://x/ws".into(),
            });
            app.on_net(NetEvent::Lost {
                reason: "the gateway refused the hello: wrong token".into(),
                retry_in: Duration::from_secs(5),
            });
        }
        let said: Vec<&str> = app
            .transcript
            .entries
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with(
                "cannot reach the gateway: the gateway refused the hello: wrong token"
            )
        );
        assert!(matches!(app.conn, Conn::Lost { attempts: 5, .. }));
        assert_eq!(app.state(), "disconnected — reconnecting");
    }
}
