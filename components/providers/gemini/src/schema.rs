//! JSON Schema → the OpenAPI 3.0 subset Gemini's `functionDeclarations` accept.
//! Gemini rejects unknown keywords (`additionalProperties`, `$schema`, …) outright.

use serde_json::{Map, Value, json};

const KEPT: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "anyOf",
    "items",
    "minimum",
    "maximum",
    "title",
    "default",
];

pub fn sanitize(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            // ["string", "null"] → type string + nullable
            "type" if v.is_array() => {
                let types: Vec<&str> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if let Some(t) = types.iter().find(|t| **t != "null") {
                    out.insert("type".into(), json!(t));
                }
                if types.contains(&"null") {
                    out.insert("nullable".into(), json!(true));
                }
            }
            "const" => {
                out.insert("enum".into(), json!([v]));
            }
            "oneOf" => {
                out.insert(
                    "anyOf".into(),
                    Value::Array(v.as_array().into_iter().flatten().map(sanitize).collect()),
                );
            }
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), sanitize(s)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "anyOf" => {
                let value = match v {
                    Value::Array(a) => Value::Array(a.iter().map(sanitize).collect()),
                    other => sanitize(other),
                };
                out.insert(k.clone(), value);
            }
            "enum" => {
                // Gemini's enums are strings.
                out.insert(
                    k.clone(),
                    Value::Array(
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                json!(e.as_str().map_or_else(|| e.to_string(), str::to_string))
                            })
                            .collect(),
                    ),
                );
            }
            _ if KEPT.contains(&k.as_str()) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {} // additionalProperties, $schema, $defs, examples, …
        }
    }
    // `required` may only name properties that exist.
    if let (Some(Value::Array(req)), Some(Value::Object(props))) =
        (out.get("required").cloned(), out.get("properties"))
    {
        let kept: Vec<Value> = req
            .into_iter()
            .filter(|r| r.as_str().is_some_and(|n| props.contains_key(n)))
            .collect();
        out.insert("required".into(), Value::Array(kept));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn drops_what_gemini_rejects() {
        let s = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "path": {"type": "string", "description": "p"},
                "n": {"type": ["integer", "null"], "minimum": 1},
                "mode": {"const": "fast"},
                "tags": {"type": "array", "items": {"type": "string", "examples": ["a"]}}
            },
            "required": ["path", "ghost"]
        });
        assert_eq!(
            super::sanitize(&s),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "p"},
                    "n": {"type": "integer", "nullable": true, "minimum": 1},
                    "mode": {"enum": ["fast"]},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["path"]
            })
        );
    }
}
