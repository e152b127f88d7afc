//! The error a tool returns; it reaches the model as the tool result.

use std::fmt;

/// Mirrors `oxydra:tool/types.tool-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    InvalidArguments(String),
    Denied(String),
    NotFound(String),
    TooLarge(String),
    Failed(String),
}

impl ToolError {
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArguments(m)
            | Self::Denied(m)
            | Self::NotFound(m)
            | Self::TooLarge(m)
            | Self::Failed(m) => m,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::InvalidArguments(_) => "invalid arguments",
            Self::Denied(_) => "denied",
            Self::NotFound(_) => "not found",
            Self::TooLarge(_) => "too large",
            Self::Failed(_) => "failed",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for ToolError {}
