//! Server frames and connection events: what the gateway says changes the session,
//! the turn, and the message pane.

use super::{App, Conn, Phase, Turn, compact, short, usage_line};
use crate::tui::net::NetEvent;
use crate::tui::transcript::Kind;
use oxydra_gateway::protocol::{ActiveTurn, LastTurn, Progress, ServerFrame, SessionSwitched};
use std::time::Duration;

impl App {
    pub fn on_net(&mut self, e: NetEvent) {
        self.dirty = true;
        match e {
            NetEvent::Connected { url } => {
                self.conn = Conn::Connected;
                self.url = Some(url);
            }
            NetEvent::Lost { reason, retry_in } => {
                let retry = format!("{:.2} s", retry_in.as_secs_f64());
                self.attempts += 1;
                if self.conn == Conn::Attached {
                    self.say(
                        Kind::Error,
                        format!("disconnected from the gateway: {reason}; reconnecting (next try in {retry})"),
                    );
                } else if self.lost.as_deref() != Some(reason.as_str()) {
                    // A socket that connects and is refused each time says so once.
                    let what = if self.lost.is_some() {
                        "still disconnected"
                    } else {
                        "cannot reach the gateway"
                    };
                    self.say(
                        Kind::Error,
                        format!("{what}: {reason}; retrying (next try in {retry})"),
                    );
                }
                self.lost = Some(reason.clone());
                self.conn = Conn::Lost {
                    reason,
                    attempts: self.attempts,
                };
                self.pending = None;
            }
            NetEvent::NotSent(what) => self.say(
                Kind::Error,
                format!(
                    "not connected to the gateway: {what} was not sent; try again once reconnected"
                ),
            ),
            NetEvent::Unreadable(e) => self.say(
                Kind::Error,
                format!("unreadable frame from the gateway: {e}"),
            ),
            NetEvent::Frame(f) => self.on_frame(*f),
        }
    }

    pub(super) fn on_frame(&mut self, f: ServerFrame) {
        match f {
            ServerFrame::HelloAck(a) => {
                let again = self.attached_once;
                let url = self.url.clone().unwrap_or_default();
                self.conn = Conn::Attached;
                self.user = a.session.user_id.clone();
                let s = &a.session;
                if again {
                    self.say(
                        Kind::Notice,
                        format!("reconnected to {url}: session {}", short(&s.session_id)),
                    );
                } else {
                    self.say(
                        Kind::Info,
                        format!(
                            "connected to {url}: session {} (agent {}, model {}); /help lists the commands",
                            s.session_id, s.agent_name, s.model
                        ),
                    );
                }
                self.attached_once = true;
                self.lost = None;
                self.attempts = 0;
                self.session = Some(a.session);
                self.show_turns(a.active_turn, a.last_turn, again);
            }
            ServerFrame::SessionCreated(s) => self.switched(s, true),
            ServerFrame::SessionSwitched(s) => self.switched(s, false),
            ServerFrame::TurnStarted(t) => {
                if self.other_session(&t.session_id) {
                    return;
                }
                let ours = t.request_id.is_some() && t.request_id == self.pending;
                if ours {
                    self.pending = None;
                } else if self.turn.as_ref().is_none_or(|x| x.id != t.turn_id) {
                    self.say(
                        Kind::Info,
                        "a turn started from another client of this session",
                    );
                }
                match &mut self.turn {
                    Some(x) if x.id == t.turn_id => x.phase = Phase::Starting,
                    _ => self.turn = Some(Turn::new(t.turn_id, Phase::Starting)),
                }
            }
            ServerFrame::AssistantDelta(d) => {
                if self.other_session(&d.session_id) {
                    return;
                }
                self.ensure_turn(&d.turn_id);
                self.transcript.append_answer(&d.turn_id, &d.delta);
            }
            ServerFrame::TurnProgress(p) => {
                if self.other_session(&p.session_id) {
                    return;
                }
                self.progress(&p.turn_id, p.progress, p.message);
            }
            ServerFrame::TurnCompleted(c) => {
                if self.other_session(&c.session_id) {
                    return;
                }
                let turn = c.turn_id.clone();
                if !self.transcript.has_answer(&turn) && !c.response.message.is_empty() {
                    self.transcript.append_answer(&turn, &c.response.message);
                }
                let elapsed = self.end_turn(&turn);
                self.say(Kind::Usage, usage_line(&c.response.usage, elapsed));
            }
            ServerFrame::TurnCancelled(e) => {
                if self.other_session(&e.session_id) {
                    return;
                }
                let elapsed = self.end_turn(&e.turn_id);
                self.say(Kind::Notice, format!("cancelled: {}", e.message));
                self.say(Kind::Usage, usage_line(&e.usage, elapsed));
            }
            ServerFrame::TurnFailed(e) => {
                if self.other_session(&e.session_id) {
                    return;
                }
                let elapsed = self.end_turn(&e.turn_id);
                self.say(
                    Kind::Error,
                    format!("the turn failed ({}): {}", e.code, e.message),
                );
                self.say(Kind::Usage, usage_line(&e.usage, elapsed));
            }
            ServerFrame::Error(e) => {
                if e.request_id.is_some() && e.request_id == self.pending {
                    self.pending = None;
                }
                if e.code == "shutting_down" {
                    self.say(Kind::Notice, e.message);
                } else {
                    self.say(Kind::Error, format!("{} ({})", e.message, e.code));
                }
            }
            ServerFrame::HealthStatus(h) => {
                if let Some(m) = h.message {
                    self.say(Kind::Notice, m);
                    return;
                }
                let turn = match &h.active_turn {
                    Some(t) => format!("turn {} {}", t.turn_id, t.state),
                    None => "no turn running".into(),
                };
                self.say(
                    Kind::Info,
                    format!(
                        "gateway {}: {}; user {}, session {}, {turn}; {} live session(s), {} connection(s)",
                        h.version,
                        if h.healthy { "healthy" } else { "unhealthy" },
                        h.user_id,
                        h.session_id.as_deref().unwrap_or("none"),
                        h.live_sessions,
                        h.connections
                    ),
                );
            }
            ServerFrame::SessionList(l) => {
                if l.sessions.is_empty() {
                    self.say(Kind::Info, "no sessions yet");
                    return;
                }
                let current = self.session.as_ref().map(|s| s.session_id.clone());
                let mut text = String::from("sessions, most recent first:");
                for s in &l.sessions {
                    let mark = if current.as_deref() == Some(&s.session_id) {
                        "*"
                    } else {
                        " "
                    };
                    let mut flags = Vec::new();
                    if s.active {
                        flags.push("running");
                    } else if s.live {
                        flags.push("live");
                    }
                    text.push_str(&format!(
                        "\n{mark} {}  {}  {} turn{}{}",
                        s.session_id,
                        s.agent_name,
                        s.turns,
                        if s.turns == 1 { "" } else { "s" },
                        if flags.is_empty() {
                            String::new()
                        } else {
                            format!("  {}", flags.join(", "))
                        }
                    ));
                }
                self.say(Kind::Info, text);
            }
            ServerFrame::ScheduledNotification(n) => {
                let name = n.schedule_name.unwrap_or(n.schedule_id);
                self.say(Kind::Notice, format!("[{name}] {}", n.message));
            }
        }
    }

    fn ensure_turn(&mut self, id: &str) {
        if self.turn.as_ref().is_none_or(|t| t.id != id) {
            // One turn at a time per session: a prompt sent is this turn.
            self.pending = None;
            self.turn = Some(Turn::new(id.to_string(), Phase::Starting));
        }
    }

    /// The turn is over; how long it ran, when this TUI saw it start.
    fn end_turn(&mut self, id: &str) -> Option<Duration> {
        self.ended.insert(id.to_string());
        let t = self.turn.take_if(|t| t.id == id)?;
        Some(t.started.elapsed())
    }

    fn progress(&mut self, turn: &str, p: Progress, message: String) {
        self.ensure_turn(turn);
        let Some(t) = self.turn.as_mut() else { return };
        match p {
            Progress::Queued { position } => {
                let first = !matches!(t.phase, Phase::Queued(_));
                t.phase = Phase::Queued(position);
                if first {
                    self.say(Kind::Info, message);
                }
            }
            Progress::ProviderCall { step, max } => {
                t.step = (step, max);
                if t.tools.is_empty() {
                    t.phase = Phase::Step;
                }
            }
            Progress::ToolStarted {
                tool_name,
                arguments,
            } => {
                t.tools.push(tool_name.clone());
                t.phase = Phase::Tool(tool_name.clone());
                self.say(
                    Kind::Tool {
                        turn: turn.to_string(),
                        name: tool_name,
                        args: compact(&arguments, 80),
                        finished: None,
                    },
                    "",
                );
            }
            Progress::ToolFinished {
                tool_name,
                duration_ms,
                ok,
            } => {
                if let Some(i) = t.tools.iter().position(|n| *n == tool_name) {
                    t.tools.remove(i);
                }
                t.phase = match t.tools.last() {
                    Some(n) => Phase::Tool(n.clone()),
                    None => Phase::Step,
                };
                if !self
                    .transcript
                    .finish_tool(turn, &tool_name, duration_ms, ok)
                {
                    self.say(
                        Kind::Tool {
                            turn: turn.to_string(),
                            name: tool_name,
                            args: String::new(),
                            finished: Some((duration_ms, ok)),
                        },
                        "",
                    );
                }
            }
            Progress::Compaction { .. } | Progress::ContextTrimmed { .. } => {
                self.say(Kind::Info, message)
            }
            Progress::Lagged { missed, text } => {
                self.transcript.replace_answer(turn, &text);
                self.say(
                    Kind::Info,
                    format!("this view fell {missed} events behind; the answer so far is shown"),
                );
            }
            Progress::Reasoning { .. } | Progress::Usage { .. } => {}
        }
    }

    fn switched(&mut self, s: SessionSwitched, created: bool) {
        self.turn = None;
        self.pending = None;
        let r = &s.session;
        let what = if created {
            "new session"
        } else {
            "switched to session"
        };
        self.say(
            Kind::Notice,
            format!(
                "{what} {} (agent {}, model {})",
                r.session_id, r.agent_name, r.model
            ),
        );
        self.session = Some(s.session);
        self.show_turns(s.active_turn, s.last_turn, false);
    }

    /// What a session was doing when this TUI attached: the running turn's text so far,
    /// or how its last turn ended.
    fn show_turns(&mut self, active: Option<ActiveTurn>, last: Option<LastTurn>, again: bool) {
        if let Some(l) = last
            && !self.ended.contains(&l.turn_id)
        {
            let ours = self.transcript.has_answer(&l.turn_id)
                || self.turn.as_ref().is_some_and(|t| t.id == l.turn_id);
            match l.state.as_str() {
                "completed" => {
                    if ours {
                        self.say(Kind::Info, "the turn finished while this view was away:");
                    } else {
                        self.say(Kind::Info, "the last answer in this session:");
                    }
                    // Shown whole, after the note, even when part of it streamed before.
                    self.transcript.push(
                        Kind::Answer {
                            turn: format!("{}:last", l.turn_id),
                        },
                        l.message,
                    );
                }
                "cancelled" => self.say(
                    Kind::Notice,
                    format!("the last turn was cancelled: {}", l.message),
                ),
                _ => self.say(Kind::Error, format!("the last turn failed: {}", l.message)),
            }
            self.ended.insert(l.turn_id.clone());
            if self.turn.as_ref().is_some_and(|t| t.id == l.turn_id) {
                self.turn = None;
            }
        }
        match active {
            Some(a) => {
                let known = self.turn.as_ref().is_some_and(|t| t.id == a.turn_id)
                    || self.transcript.has_answer(&a.turn_id);
                if !known {
                    self.say(
                        Kind::Info,
                        "a turn is running in this session; its answer so far:",
                    );
                }
                if known || !a.text.is_empty() {
                    self.transcript.replace_answer(&a.turn_id, &a.text);
                }
                let phase = if a.state == "queued" {
                    Phase::Queued(a.queue_position.unwrap_or(0))
                } else if let Some(tool) = a.tools_running.last() {
                    Phase::Tool(tool.clone())
                } else {
                    Phase::Step
                };
                let mut t = Turn::new(a.turn_id, phase);
                t.step = (a.step, 0);
                t.tools = a.tools_running;
                if let Some(old) = self.turn.take()
                    && old.id == t.id
                {
                    t.started = old.started;
                    if t.step.1 == 0 {
                        t.step.1 = old.step.1;
                    }
                }
                self.turn = Some(t);
            }
            None => {
                if again && self.turn.is_some() {
                    self.say(Kind::Info, "the turn that was running is no longer active");
                }
                self.turn = None;
            }
        }
    }
}
