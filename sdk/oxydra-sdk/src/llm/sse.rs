//! Server-sent events, per the WHATWG spec: lines end with CRLF, LF or CR (a CRLF split
//! across two chunks is one line ending), `:` lines are comments, `data:` lines join with
//! `\n`, an empty line dispatches. Bytes are buffered until a line is complete, so a
//! UTF-8 character or a JSON value split across reads comes out whole.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON, or a protocol error quoting its start.
    pub fn json(&self) -> Result<serde_json::Value, super::types::LlmError> {
        serde_json::from_str(&self.data).map_err(|e| {
            super::types::LlmError::Protocol(format!(
                "a stream event is not JSON ({e}): {}",
                self.data.chars().take(200).collect::<String>()
            ))
        })
    }
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    has_data: bool,
    /// The previous byte was CR: a following LF belongs to the same line ending.
    after_cr: bool,
    started: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feed bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                b'\n' => self.end_line(&mut out),
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Whether bytes of an unfinished event are pending (the stream was cut mid-event).
    pub fn pending(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut line = std::mem::take(&mut self.line);
        if !self.started {
            self.started = true;
            if line.starts_with(&[0xEF, 0xBB, 0xBF]) {
                line.drain(..3);
            }
        }
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: self.data.join("\n"),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn line_endings_comments_and_fields() {
        let want = vec![ev(Some("message_start"), "{\"a\":1}"), ev(None, "x\ny")];
        assert_eq!(
            all(&[b"event: message_start\ndata: {\"a\":1}\n\n: ping\n\ndata:x\ndata: y\n\n"]),
            want
        );
        assert_eq!(all(&[b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\r\n\r\ndata:x\r\ndata: y\r\n\r\n"]), want);
        assert_eq!(
            all(&[b"event: message_start\rdata: {\"a\":1}\r\r:c\r\rdata:x\rdata: y\r\r"]),
            want
        );
    }

    #[test]
    fn splits_anywhere_including_crlf_and_utf8() {
        let text = "data: {\"t\":\"h\u{e9}llo \u{1F600}\"}\r\n\r\ndata: [DONE]\r\n\r\n".as_bytes();
        for cut in 1..text.len() {
            let got = all(&[&text[..cut], &text[cut..]]);
            assert_eq!(
                got,
                vec![
                    ev(None, "{\"t\":\"h\u{e9}llo \u{1F600}\"}"),
                    ev(None, "[DONE]")
                ],
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&bytes).len(), 2);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: {\"partial\":").is_empty());
        assert!(p.pending());
    }
}
