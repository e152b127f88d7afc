//! HTML read as a flat list of tokens (html5ever's tokenizer: entities decoded, script
//! and style bodies kept out of the text), and the text of a fragment.

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, CharacterTokens, EndTag, StartTag, TagToken, Token, TokenSink, TokenSinkResult,
    Tokenizer, TokenizerOpts,
};
use std::cell::RefCell;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        self_closing: bool,
    },
    End(String),
    Text(String),
}

impl Tok {
    pub fn attr(&self, name: &str) -> Option<&str> {
        match self {
            Tok::Start { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The element's `class` attribute contains the class `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(|c| c == class))
    }
}

#[derive(Default)]
struct Sink {
    tokens: RefCell<Vec<Tok>>,
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut tokens = self.tokens.borrow_mut();
        match token {
            TagToken(tag) => {
                let name = tag.name.to_string();
                match tag.kind {
                    StartTag => {
                        // What the tree builder would tell the tokenizer.
                        let raw = match name.as_str() {
                            "script" => Some(RawKind::ScriptData),
                            "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                                Some(RawKind::Rawtext)
                            }
                            "title" | "textarea" => Some(RawKind::Rcdata),
                            _ => None,
                        };
                        tokens.push(Tok::Start {
                            name,
                            attrs: tag
                                .attrs
                                .iter()
                                .map(|a| (a.name.local.to_string(), a.value.to_string()))
                                .collect(),
                            self_closing: tag.self_closing,
                        });
                        if let (Some(kind), false) = (raw, tag.self_closing) {
                            return TokenSinkResult::RawData(kind);
                        }
                    }
                    EndTag => tokens.push(Tok::End(name)),
                }
            }
            CharacterTokens(text) => match tokens.last_mut() {
                Some(Tok::Text(t)) => t.push_str(&text),
                _ => tokens.push(Tok::Text(text.to_string())),
            },
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The tokens of `html`.
pub fn tokens(html: &str) -> Vec<Tok> {
    let tokenizer = Tokenizer::new(Sink::default(), TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(html));
    // The sink never asks to stop for a script, so one feed reads everything.
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    tokenizer.sink.tokens.take()
}

/// The text of an HTML fragment (`<strong>` and other tags dropped, entities decoded,
/// script and style left out), with runs of whitespace made one space.
pub fn text(fragment: &str) -> String {
    let mut out = String::new();
    let mut skip = 0usize;
    for t in tokens(fragment) {
        match t {
            Tok::Start { name, .. } if is_hidden(&name) => skip += 1,
            Tok::End(name) if is_hidden(&name) => skip = skip.saturating_sub(1),
            Tok::Text(s) if skip == 0 => out.push_str(&s),
            Tok::Start { name, .. } | Tok::End(name) if is_break(&name) => out.push(' '),
            _ => {}
        }
    }
    squash(&out)
}

fn is_hidden(name: &str) -> bool {
    matches!(name, "script" | "style" | "template")
}

fn is_break(name: &str) -> bool {
    matches!(name, "br" | "p" | "div" | "li" | "td" | "th" | "tr")
}

/// Runs of whitespace made one space, trimmed.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
