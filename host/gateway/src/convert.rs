//! Turn events → frames. Every frame of a turn carries its session and turn ids.

use crate::protocol::{
    ActiveTurn, AssistantDelta, LastTurn, Progress, Response, ScheduledNotification, ServerFrame,
    TurnCompleted, TurnEnded, TurnProgress, TurnRef, Usage,
};
use oxydra_agent::budget::Spend;
use oxydra_agent::turn::TurnError;
use oxydra_session::{TurnEvent, TurnSnapshot, TurnSummary};

/// Follows one session's stream, knowing which turn each event belongs to.
pub(crate) struct Converter {
    session: String,
    turn: Option<String>,
}

pub(crate) fn turn_ended_code(e: &TurnError) -> &'static str {
    match e {
        TurnError::Cancelled => "cancelled",
        TurnError::Budget(_) => "budget",
        TurnError::Provider(_) => "provider",
        TurnError::Store(_) => "store",
    }
}

fn usage(s: &Spend) -> Usage {
    Usage {
        prompt_tokens: s.usage.input_tokens,
        completion_tokens: s.usage.output_tokens,
        total_tokens: s.usage.input_tokens + s.usage.output_tokens,
        cost: s.cost,
        steps: s.steps,
    }
}

/// The queued or running turn of a snapshot.
pub(crate) fn active_turn(s: &TurnSnapshot) -> Option<ActiveTurn> {
    if !s.active {
        return None;
    }
    Some(ActiveTurn {
        turn_id: s.turn_id.clone().unwrap_or_default(),
        state: if s.queued.is_some() {
            "queued"
        } else {
            "running"
        }
        .into(),
        queue_position: s.queued,
        text: s.text.clone(),
        step: s.step,
        tools_running: s.tools_running.clone(),
    })
}

/// How the snapshot's last turn ended.
pub(crate) fn last_turn(s: &TurnSnapshot) -> Option<LastTurn> {
    let last = s.last.as_ref()?;
    Some(match &last.outcome {
        Ok(o) => LastTurn {
            turn_id: last.turn_id.clone(),
            state: "completed".into(),
            message: o.answer.clone(),
        },
        Err(f) => LastTurn {
            turn_id: last.turn_id.clone(),
            state: if matches!(f.error, TurnError::Cancelled) {
                "cancelled"
            } else {
                "failed"
            }
            .into(),
            message: f.error.to_string(),
        },
    })
}

/// A turn's terminal frame.
pub(crate) fn finished(s: &TurnSummary) -> ServerFrame {
    match &s.outcome {
        Ok(o) => ServerFrame::TurnCompleted(TurnCompleted {
            session_id: s.session.clone(),
            turn_id: s.turn_id.clone(),
            response: Response {
                message: o.answer.clone(),
                finish_reason: "stop".into(),
                usage: usage(&Spend {
                    steps: o.steps,
                    usage: o.usage,
                    cost: o.cost,
                }),
            },
        }),
        Err(f) => {
            let body = TurnEnded {
                session_id: s.session.clone(),
                turn_id: s.turn_id.clone(),
                code: turn_ended_code(&f.error).into(),
                message: f.error.to_string(),
                usage: usage(&f.spent),
            };
            if matches!(f.error, TurnError::Cancelled) {
                ServerFrame::TurnCancelled(body)
            } else {
                ServerFrame::TurnFailed(body)
            }
        }
    }
}

impl Converter {
    pub(crate) fn new(session: String, turn: Option<String>) -> Converter {
        Converter { session, turn }
    }

    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    fn progress(&self, progress: Progress, message: String) -> ServerFrame {
        ServerFrame::TurnProgress(TurnProgress {
            session_id: self.session.clone(),
            turn_id: self.turn.clone().unwrap_or_default(),
            progress,
            message,
        })
    }

    /// The frames for one event (none for what clients need not see). `request_of`
    /// finds the `send_turn` request id of a (session, turn).
    pub(crate) fn frames(
        &mut self,
        e: TurnEvent,
        request_of: impl Fn(&str, &str) -> Option<String>,
    ) -> Vec<ServerFrame> {
        let frame = match e {
            TurnEvent::Snapshot(s) => {
                self.turn = s.turn_id.filter(|_| s.active);
                return Vec::new();
            }
            TurnEvent::Queued { turn_id, position } => {
                self.turn = Some(turn_id);
                self.progress(
                    Progress::Queued { position },
                    format!(
                        "waiting for a turn slot (position {position}; gateway.max_concurrent_turns_per_user)"
                    ),
                )
            }
            TurnEvent::Started { turn_id } => {
                self.turn = Some(turn_id.clone());
                ServerFrame::TurnStarted(TurnRef {
                    request_id: request_of(&self.session, &turn_id),
                    session_id: self.session.clone(),
                    turn_id,
                })
            }
            TurnEvent::ProviderCall { step, max } => self.progress(
                Progress::ProviderCall { step, max },
                format!("[{step}/{max}] calling the model"),
            ),
            TurnEvent::Text(delta) => ServerFrame::AssistantDelta(AssistantDelta {
                session_id: self.session.clone(),
                turn_id: self.turn.clone().unwrap_or_default(),
                delta,
            }),
            TurnEvent::Reasoning(delta) => {
                self.progress(Progress::Reasoning { delta }, "thinking".into())
            }
            TurnEvent::ToolStart { name, arguments } => {
                let message = format!("running {name}");
                self.progress(
                    Progress::ToolStarted {
                        tool_name: name,
                        arguments,
                    },
                    message,
                )
            }
            TurnEvent::ToolEnd { name, elapsed, ok } => {
                let ms = elapsed.as_secs_f64() * 1000.0;
                let message = format!(
                    "{name} {} in {ms:.1} ms",
                    if ok { "finished" } else { "failed" }
                );
                self.progress(
                    Progress::ToolFinished {
                        tool_name: name,
                        duration_ms: ms,
                        ok,
                    },
                    message,
                )
            }
            TurnEvent::Compaction { turns, .. } => self.progress(
                Progress::Compaction { turns },
                format!("summarised {turns} earlier turns"),
            ),
            TurnEvent::ContextTrimmed { turns } => self.progress(
                Progress::ContextTrimmed { turns },
                format!("left {turns} earlier turns out of the context to fit the window"),
            ),
            TurnEvent::Usage {
                input_tokens,
                output_tokens,
                cost,
            } => self.progress(
                Progress::Usage {
                    input_tokens,
                    output_tokens,
                    cost,
                },
                format!("{input_tokens} tokens in, {output_tokens} out"),
            ),
            TurnEvent::Finished(s) => {
                self.turn = None;
                finished(&s)
            }
            TurnEvent::Notice(n) => ServerFrame::ScheduledNotification(ScheduledNotification {
                schedule_id: n.job_id,
                schedule_name: Some(n.job_name),
                session_id: Some(self.session.clone()),
                run_id: Some(n.run_id),
                message: n.message,
            }),
            TurnEvent::Lagged { missed, state } => {
                self.turn = state
                    .turn_id
                    .clone()
                    .filter(|_| state.active)
                    .or(self.turn.take());
                self.progress(
                    Progress::Lagged {
                        missed,
                        text: state.text,
                    },
                    format!("this client fell {missed} events behind; `text` is the answer so far"),
                )
            }
        };
        vec![frame]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use oxydra_agent::budget::Spend;
    use oxydra_agent::turn::{TurnFailure, TurnOutcome};
    use std::sync::Arc;
    use std::time::Duration;

    fn ids(f: &ServerFrame) -> (&str, &str) {
        match f {
            ServerFrame::TurnStarted(r) => (&r.session_id, &r.turn_id),
            ServerFrame::AssistantDelta(d) => (&d.session_id, &d.turn_id),
            ServerFrame::TurnProgress(p) => (&p.session_id, &p.turn_id),
            ServerFrame::TurnCompleted(c) => (&c.session_id, &c.turn_id),
            ServerFrame::TurnCancelled(e) | ServerFrame::TurnFailed(e) => {
                (&e.session_id, &e.turn_id)
            }
            other => panic!("not a turn frame: {other:?}"),
        }
    }

    fn summary(turn: &str, outcome: Result<TurnOutcome, TurnError>) -> TurnEvent {
        TurnEvent::Finished(TurnSummary {
            session: "s1".into(),
            turn_id: turn.into(),
            outcome: outcome.map_err(|error| {
                Arc::new(TurnFailure {
                    error,
                    spent: Spend {
                        steps: 1,
                        ..Default::default()
                    },
                })
            }),
        })
    }

    fn run(c: &mut Converter, events: Vec<TurnEvent>) -> Vec<ServerFrame> {
        let request_of = |s: &str, t: &str| (s == "s1" && t == "t1").then(|| "r1".to_string());
        events
            .into_iter()
            .flat_map(|e| c.frames(e, request_of))
            .collect()
    }

    #[test]
    fn every_frame_of_a_turn_carries_its_session_and_turn() {
        let mut c = Converter::new("s1".into(), None);
        let mut outcome = TurnOutcome {
            answer: "hi there".into(),
            steps: 2,
            usage: Default::default(),
            cost: Some(0.5),
        };
        outcome.usage.input_tokens = 10;
        outcome.usage.output_tokens = 2;
        let frames = run(
            &mut c,
            vec![
                TurnEvent::Queued {
                    turn_id: "t1".into(),
                    position: 2,
                },
                TurnEvent::Started {
                    turn_id: "t1".into(),
                },
                TurnEvent::ProviderCall { step: 1, max: 8 },
                TurnEvent::Text("hi ".into()),
                TurnEvent::ToolStart {
                    name: "file_read".into(),
                    arguments: "{}".into(),
                },
                TurnEvent::ToolEnd {
                    name: "file_read".into(),
                    elapsed: Duration::from_micros(1500),
                    ok: true,
                },
                summary("t1", Ok(outcome)),
            ],
        );
        assert_eq!(frames.len(), 7);
        assert!(frames.iter().all(|f| ids(f) == ("s1", "t1")), "{frames:?}");
        let ServerFrame::TurnProgress(q) = &frames[0] else {
            panic!()
        };
        assert_eq!(q.progress, Progress::Queued { position: 2 });
        let ServerFrame::TurnStarted(s) = &frames[1] else {
            panic!()
        };
        assert_eq!(s.request_id.as_deref(), Some("r1"));
        let ServerFrame::TurnProgress(t) = &frames[5] else {
            panic!()
        };
        assert_eq!(
            t.progress,
            Progress::ToolFinished {
                tool_name: "file_read".into(),
                duration_ms: 1.5,
                ok: true
            }
        );
        let ServerFrame::TurnCompleted(done) = &frames[6] else {
            panic!()
        };
        assert_eq!(done.response.message, "hi there");
        assert_eq!(done.response.usage.total_tokens, 12);
        assert_eq!(done.response.usage.steps, 2);
        assert_eq!(done.response.usage.cost, Some(0.5));
    }

    #[test]
    fn a_turn_started_elsewhere_has_no_request_id_and_a_snapshot_gives_no_frame() {
        let mut c = Converter::new("s1".into(), None);
        let mut snap = TurnSnapshot {
            session: "s1".into(),
            turn_id: Some("t0".into()),
            ..Default::default()
        };
        assert!(run(&mut c, vec![TurnEvent::Snapshot(snap.clone())]).is_empty());
        let frames = run(
            &mut c,
            vec![
                TurnEvent::Started {
                    turn_id: "t2".into(),
                },
                TurnEvent::Text("a ".into()),
            ],
        );
        let ServerFrame::TurnStarted(s) = &frames[0] else {
            panic!()
        };
        assert_eq!(s.request_id, None);
        assert_eq!(ids(&frames[1]), ("s1", "t2"));
        // A lagged marker says how far behind, with the text so far, under the turn's id.
        snap.turn_id = Some("t2".into());
        snap.active = true;
        snap.text = "a b c ".into();
        let frames = run(
            &mut c,
            vec![TurnEvent::Lagged {
                missed: 7,
                state: snap,
            }],
        );
        let ServerFrame::TurnProgress(p) = &frames[0] else {
            panic!()
        };
        assert_eq!(ids(&frames[0]), ("s1", "t2"));
        assert_eq!(
            p.progress,
            Progress::Lagged {
                missed: 7,
                text: "a b c ".into()
            }
        );
    }

    #[test]
    fn cancelled_and_failed_turns_end_with_their_codes() {
        let mut c = Converter::new("s1".into(), Some("t1".into()));
        let frames = run(&mut c, vec![summary("t1", Err(TurnError::Cancelled))]);
        let ServerFrame::TurnCancelled(e) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!((e.code.as_str(), e.usage.steps), ("cancelled", 1));
        let store = TurnError::Store(oxydra_store::StoreError::Db("disk full".into()));
        let frames = run(&mut c, vec![summary("t1", Err(store))]);
        let ServerFrame::TurnFailed(e) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(e.code, "store");
        assert!(e.message.contains("disk full"), "{}", e.message);
    }

    #[test]
    fn a_snapshot_tells_the_active_turn_or_how_the_last_one_ended() {
        let mut snap = TurnSnapshot {
            session: "s1".into(),
            turn_id: Some("t1".into()),
            active: true,
            queued: Some(3),
            ..Default::default()
        };
        let a = active_turn(&snap).unwrap();
        assert_eq!((a.state.as_str(), a.queue_position), ("queued", Some(3)));
        snap.queued = None;
        snap.text = "so far".into();
        let a = active_turn(&snap).unwrap();
        assert_eq!((a.state.as_str(), a.text.as_str()), ("running", "so far"));
        assert!(last_turn(&snap).is_none());
        snap.active = false;
        assert!(active_turn(&snap).is_none());
        let TurnEvent::Finished(s) = summary("t1", Err(TurnError::Cancelled)) else {
            panic!()
        };
        snap.last = Some(s);
        let l = last_turn(&snap).unwrap();
        assert_eq!((l.turn_id.as_str(), l.state.as_str()), ("t1", "cancelled"));
    }
}
