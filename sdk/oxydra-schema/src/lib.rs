//! Checks a JSON value against the subset of JSON Schema that `#[tool]` generates
//! (type, enum, minimum/maximum, minLength/maxLength, minItems/maxItems, items,
//! properties, required, additionalProperties), with messages a model can act on.

use serde_json::Value;

/// `Ok` when `value` satisfies `schema`; otherwise the first violation, named by its
/// JSON path (`limit`, `paths[2]`), in words a model can act on.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    check(value, schema, "")
}

fn label(path: &str) -> String {
    if path.is_empty() {
        "the arguments".to_string()
    } else {
        format!("`{path}`")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == ty || (ty == "number" && actual == "integer");
        if !ok {
            return Err(format!(
                "{} must be {} {ty}, got {actual}",
                label(path),
                article(ty)
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!(
            "{} must be one of {}, got {value}",
            label(path),
            list.join(", ")
        ));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                return Err(format!(
                    "{} must be at least {}, got {n}",
                    label(path),
                    fmt_num(min)
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                return Err(format!(
                    "{} must be at most {}, got {n}",
                    label(path),
                    fmt_num(max)
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                return Err(format!(
                    "{} must have at least {min} characters",
                    label(path)
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                return Err(format!(
                    "{} must have at most {max} characters, got {len}",
                    label(path)
                ));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                return Err(format!(
                    "{} must have at least {min} items, got {len}",
                    label(path)
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                return Err(format!(
                    "{} must have at most {max} items, got {len}",
                    label(path)
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) || map.get(name) == Some(&Value::Null) {
                        return Err(format!("missing required argument `{}`", join(path, name)));
                    }
                }
            }
            for (key, v) in map {
                match props.and_then(|p| p.get(key)) {
                    // null means "not given" for optional arguments
                    Some(_) if v.is_null() => {}
                    Some(prop) => check(v, prop, &join(path, key))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "unknown argument `{}`; expected one of: {}",
                            join(path, key),
                            known.join(", ")
                        ));
                    }
                    None => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn article(ty: &str) -> &'static str {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}
