//! The loop every SSE-based adapter shares: read body bytes as they arrive, split them
//! into SSE events, let the protocol's [`SseHandler`] turn each into `oxydra:llm` events,
//! and hand those out one at a time.

use super::EventSource;
use super::http::Response;
use super::sse::{SseEvent, SseParser};
use super::types::{Event, LlmError};
use std::collections::VecDeque;

/// A wire protocol's part of the stream.
pub trait SseHandler {
    /// Handle one SSE event, pushing zero or more events. Return `Ok(true)` when the
    /// response is complete (nothing after it is read).
    fn on_event(&mut self, sse: SseEvent, out: &mut VecDeque<Event>) -> Result<bool, LlmError>;

    /// The body ended. `clean` says no partial event was pending. Push the final events,
    /// or fail if the response was not complete.
    fn on_end(&mut self, clean: bool, out: &mut VecDeque<Event>) -> Result<(), LlmError>;
}

pub struct SseStream<H: SseHandler> {
    resp: Response,
    parser: SseParser,
    queue: VecDeque<Event>,
    handler: H,
    finished: bool,
    /// An error to report after the events produced before it.
    deferred: Option<LlmError>,
}

impl<H: SseHandler> SseStream<H> {
    pub fn new(resp: Response, handler: H) -> SseStream<H> {
        SseStream {
            resp,
            parser: SseParser::new(),
            queue: VecDeque::new(),
            handler,
            finished: false,
            deferred: None,
        }
    }

    fn fail(&mut self, e: LlmError) -> Option<Result<Event, LlmError>> {
        self.finished = true;
        self.queue.clear();
        Some(Err(e))
    }
}

impl<H: SseHandler> EventSource for SseStream<H> {
    fn next_event(&mut self) -> Option<Result<Event, LlmError>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(Ok(e));
            }
            if self.finished {
                return self.deferred.take().map(Err);
            }
            match self.resp.read() {
                Ok(Some(bytes)) => {
                    for sse in self.parser.push(&bytes) {
                        match self.handler.on_event(sse, &mut self.queue) {
                            Ok(false) => {}
                            Ok(true) => {
                                self.finished = true;
                                break;
                            }
                            Err(e) => {
                                // Events already produced are delivered first, then the error.
                                let mut pending: Vec<Event> = self.queue.drain(..).collect();
                                if pending.is_empty() {
                                    return self.fail(e);
                                }
                                self.finished = true;
                                self.deferred = Some(e);
                                let first = pending.remove(0);
                                self.queue.extend(pending);
                                return Some(Ok(first));
                            }
                        }
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    let clean = !self.parser.pending();
                    if let Err(e) = self.handler.on_end(clean, &mut self.queue) {
                        self.deferred = Some(e);
                    }
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}
