//! Tool arguments checked at the host against the JSON Schema the tool declared, with a
//! maintained validator (`jsonschema`): third-party schemas with `anyOf`, `pattern`, type
//! arrays or `$ref` are validated, not waved through. A schema is compiled once and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

type Compiled = Result<Arc<jsonschema::Validator>, String>;

fn compiled(schema: &serde_json::Value) -> Compiled {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let made = jsonschema::options()
        // No network and no files: a `$ref` must resolve inside the schema.
        .build(schema)
        .map(Arc::new)
        .map_err(|e| format!("the tool's parameter schema is invalid: {e}"));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, made.clone());
    made
}

/// `Ok` when `args` satisfies `schema`; otherwise what is wrong, where (at most three
/// problems, so the model can fix them in one go).
pub fn check(args: &serde_json::Value, schema: &serde_json::Value) -> Result<(), String> {
    let validator = compiled(schema)?;
    let problems: Vec<String> = validator
        .iter_errors(args)
        .take(3)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::check;
    use serde_json::json;

    #[test]
    fn what_a_hand_written_check_would_wave_through_is_refused() {
        let schema = json!({
            "type": "object",
            "properties": {
                "mode": {"anyOf": [{"const": "fast"}, {"type": "integer", "minimum": 1}]},
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "size": {"type": ["integer", "null"]},
                "target": {"$ref": "#/$defs/target"}
            },
            "required": ["name"],
            "additionalProperties": false,
            "$defs": {"target": {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}}
        });
        assert!(
            check(
                &json!({"name": "ok", "mode": "fast", "size": null, "target": {"path": "/a"}}),
                &schema
            )
            .is_ok()
        );
        assert!(check(&json!({"name": "ok", "mode": 3, "size": 4}), &schema).is_ok());
        let bad = [
            json!({"name": "ok", "mode": "slow"}),
            json!({"name": "Not Ok"}),
            json!({"name": "ok", "size": "big"}),
            json!({"name": "ok", "target": {}}),
            json!({"name": "ok", "extra": 1}),
            json!({}),
        ];
        for b in bad {
            assert!(check(&b, &schema).is_err(), "{b} must be refused");
        }
        let e = check(&json!({"name": "ok", "target": {"path": 5}}), &schema).unwrap_err();
        assert!(e.starts_with("at /target/path: "), "{e}");
    }

    #[test]
    fn a_broken_schema_is_reported_not_passed() {
        let e = check(&json!({}), &json!({"type": "no-such-type"})).unwrap_err();
        assert!(e.contains("schema is invalid"), "{e}");
    }
}
