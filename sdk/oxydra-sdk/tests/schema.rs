//! `#[tool]` derives the JSON Schema from the signature and doc comments, and parses and
//! checks arguments against it.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::too_many_arguments
)]

use oxydra_sdk::{SafetyTier, Step, StepContext, StepOutput, Tool, ToolEnum, ToolError, tool};
use serde_json::json;

#[derive(ToolEnum, Debug, PartialEq)]
enum MediaType {
    Photo,
    VoiceNote,
}

/// Send a file to the user.
///
/// The file must exist.
#[tool(tier = "side-effecting")]
fn send_media(
    /// Virtual path of the file
    path: String,
    /// Kind of media
    media_type: MediaType,
    /// Shown under the media
    #[arg(max_length = 1024)]
    caption: Option<String>,
    /// How many times to retry
    #[arg(default = 3, minimum = 0, maximum = 10)]
    retries: u8,
    /// Recipients
    #[arg(min_items = 1, max_items = 5)]
    to: Vec<String>,
    scale: Option<f64>,
    signed: i32,
    big: u64,
    flag: bool,
) -> Result<String, ToolError> {
    Ok(format!(
        "{path} {} {caption:?} {retries} {to:?} {scale:?} {signed} {big} {flag}",
        media_type.as_str()
    ))
}

#[test]
fn schema_from_signature_and_docs() {
    assert_eq!(SendMedia::NAME, "send_media");
    assert_eq!(
        SendMedia::DESCRIPTION,
        "Send a file to the user.\n\nThe file must exist."
    );
    assert_eq!(SendMedia::TIER, SafetyTier::SideEffecting);
    assert_eq!(
        SendMedia::schema(),
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Virtual path of the file"},
                "media_type": {"type": "string", "enum": ["photo", "voice_note"], "description": "Kind of media"},
                "caption": {"type": "string", "description": "Shown under the media", "maxLength": 1024},
                "retries": {"type": "integer", "description": "How many times to retry", "minimum": 0, "maximum": 10, "default": 3},
                "to": {"type": "array", "items": {"type": "string"}, "description": "Recipients", "minItems": 1, "maxItems": 5},
                "scale": {"type": "number"},
                "signed": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX},
                "big": {"type": "integer", "minimum": 0},
                "flag": {"type": "boolean"}
            },
            "required": ["path", "media_type", "to", "signed", "big", "flag"],
            "additionalProperties": false
        })
    );
}

#[test]
fn arguments_are_parsed_with_defaults() {
    let out = SendMedia::invoke(
        r#"{"path": "/shared/a.png", "media_type": "voice_note", "to": ["me"], "signed": -4, "big": 18446744073709551615, "flag": true}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        "/shared/a.png voice_note None 3 [\"me\"] None -4 18446744073709551615 true"
    );
    let out = SendMedia::invoke(
        r#"{"path": "p", "media_type": "photo", "caption": null, "retries": 0, "to": ["a","b"], "scale": 1.5, "signed": 0, "big": 0, "flag": false}"#,
    )
    .unwrap();
    assert_eq!(out, "p photo None 0 [\"a\", \"b\"] Some(1.5) 0 0 false");
}

#[test]
fn bad_arguments_get_messages_a_model_can_act_on() {
    let base = json!({"path": "p", "media_type": "photo", "to": ["a"], "signed": 0, "big": 0, "flag": false});
    let with = |k: &str, v: serde_json::Value| {
        let mut o = base.clone();
        o[k] = v;
        o.to_string()
    };
    let cases = [
        (
            with("retries", json!(11)),
            "`retries` must be at most 10, got 11",
        ),
        (
            with("retries", json!("3")),
            "`retries` must be an integer, got string",
        ),
        (
            with("media_type", json!("gif")),
            "`media_type` must be one of \"photo\", \"voice_note\", got \"gif\"",
        ),
        (
            with("to", json!([])),
            "`to` must have at least 1 items, got 0",
        ),
        (
            with("to", json!(["a", 1])),
            "`to[1]` must be a string, got integer",
        ),
        (
            with("caption", json!("x".repeat(1025))),
            "`caption` must have at most 1024 characters, got 1025",
        ),
        (
            with("signed", json!(1.5)),
            "`signed` must be an integer, got number",
        ),
        (
            with("bogus", json!(1)),
            "unknown argument `bogus`; expected one of: big, caption, flag, media_type, path, retries, scale, signed, to",
        ),
        (
            json!({"path": "p"}).to_string(),
            "missing required argument `media_type`",
        ),
        (
            "not json".to_string(),
            "arguments are not valid JSON: expected ident at line 1 column 2",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(
            SendMedia::invoke(&args),
            Err(ToolError::InvalidArguments(want.to_string())),
            "{args}"
        );
    }
}

/// Step tools: the first parameter is the step context.
#[tool(step, name = "copy_step")]
fn copy_step_impl(ctx: StepContext, dest: String) -> Result<StepOutput, ToolError> {
    Ok(StepOutput {
        data: ctx.input,
        message: format!("{} -> {dest}", ctx.operation_id),
    })
}

#[test]
fn steps_get_their_context() {
    assert_eq!(CopyStepImpl::NAME, "copy_step");
    assert_eq!(CopyStepImpl::TIER, SafetyTier::ReadOnly);
    let out = CopyStepImpl::run("op-1", r#"{"dest": "/tmp/x"}"#, b"abc".to_vec()).unwrap();
    assert_eq!(
        out,
        StepOutput {
            data: b"abc".to_vec(),
            message: "op-1 -> /tmp/x".into()
        }
    );
}
