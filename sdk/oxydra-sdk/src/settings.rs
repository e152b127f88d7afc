//! The operator's settings for this tool, through `oxydra:tool/settings`.
//!
//! The host hands over the `[tools.<tool_name>]` table of `agent.toml` as a JSON object,
//! with the host's defaults filled in (`{}` when there is no table). Settings are never
//! secrets: where a tool needs a key, the host adds it to the tool's requests itself.
//! Calling a function here makes the component import `oxydra:tool/settings`.

use crate::ToolError;
use crate::bindings::oxydra::tool::settings;
use serde_json::{Map, Value};

/// The settings as the host sent them (a JSON object, as text).
pub fn raw() -> String {
    settings::get()
}

/// The settings as a JSON object. Text that is not a JSON object (which a correct host
/// never sends) reads as `{}`, so every setting takes its default; use [`parse`] to treat
/// it as an error instead.
pub fn get() -> Value {
    object_or_empty(&raw())
}

/// The settings deserialized into `T` (typically a struct with `#[serde(default)]`
/// fields). A mismatch is `ToolError::Failed`, naming the tool's settings table.
pub fn parse<T: serde::de::DeserializeOwned>(tool_name: &str) -> Result<T, ToolError> {
    parse_str(tool_name, &raw())
}

fn object_or_empty(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// [`parse`] on given text; for testing a tool's settings type natively.
pub fn parse_str<T: serde::de::DeserializeOwned>(
    tool_name: &str,
    text: &str,
) -> Result<T, ToolError> {
    serde_json::from_str(text).map_err(|e| {
        ToolError::Failed(format!(
            "the operator's settings for this tool ([tools.{tool_name}] in agent.toml) are not \
             what it expects: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_object_reads_as_empty() {
        assert_eq!(object_or_empty("{\"a\":1}")["a"], 1);
        assert_eq!(object_or_empty("[1]"), Value::Object(Map::new()));
        assert_eq!(object_or_empty("not json"), Value::Object(Map::new()));
    }

    #[test]
    fn parse_names_the_table() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            n: u32,
        }
        assert!(parse_str::<S>("t", "{\"n\":3}").is_ok());
        match parse_str::<S>("my_tool", "{\"n\":\"x\"}") {
            Err(ToolError::Failed(m)) => assert!(m.contains("[tools.my_tool]"), "{m}"),
            other => unreachable!("{other:?}"),
        }
    }
}
