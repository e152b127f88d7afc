//! Argument checking, shared with the host (crate `oxydra-schema`).

use crate::ToolError;
use serde_json::Value;

/// `Ok` when `value` satisfies `schema`; otherwise the first violation, named by its
/// JSON path (`limit`, `paths[2]`).
pub fn validate_arguments(value: &Value, schema: &Value) -> Result<(), ToolError> {
    oxydra_schema::validate(value, schema).map_err(ToolError::InvalidArguments)
}
