//! JSON Schema for argument types. `#[tool]` calls [`ArgSchema::schema`] for every
//! parameter and adds the bounds and descriptions written on it.

use serde_json::{Value, json};

/// A type that can be a tool argument.
pub trait ArgSchema {
    /// The schema of one value of this type.
    fn schema() -> Value;
    /// `Option<T>` parameters are not required.
    const OPTIONAL: bool = false;
}

impl ArgSchema for String {
    fn schema() -> Value {
        json!({"type": "string"})
    }
}

impl ArgSchema for bool {
    fn schema() -> Value {
        json!({"type": "boolean"})
    }
}

impl ArgSchema for f64 {
    fn schema() -> Value {
        json!({"type": "number"})
    }
}

impl ArgSchema for f32 {
    fn schema() -> Value {
        json!({"type": "number"})
    }
}

/// Any JSON value.
impl ArgSchema for Value {
    fn schema() -> Value {
        json!({})
    }
}

macro_rules! bounded_int {
    ($($t:ty),*) => {$(
        impl ArgSchema for $t {
            fn schema() -> Value {
                json!({"type": "integer", "minimum": <$t>::MIN, "maximum": <$t>::MAX})
            }
        }
    )*};
}
// Types whose whole range is exactly representable in JSON numbers get both bounds.
bounded_int!(u8, u16, u32, i8, i16, i32);

macro_rules! wide_unsigned {
    ($($t:ty),*) => {$(
        impl ArgSchema for $t {
            fn schema() -> Value {
                json!({"type": "integer", "minimum": 0})
            }
        }
    )*};
}
wide_unsigned!(u64, usize);

impl ArgSchema for i64 {
    fn schema() -> Value {
        json!({"type": "integer"})
    }
}

impl<T: ArgSchema> ArgSchema for Option<T> {
    fn schema() -> Value {
        T::schema()
    }
    const OPTIONAL: bool = true;
}

impl<T: ArgSchema> ArgSchema for Vec<T> {
    fn schema() -> Value {
        json!({"type": "array", "items": T::schema()})
    }
}
