//! What can go wrong talking to a registry. Every message names the reference (or the
//! registry) it is about; none contains a credential.

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{reference}` is not a component reference: {message}")]
    BadReference { reference: String, message: String },
    #[error(
        "`{reference}`: warg registries are not supported: the warg registry project is no longer developed and wkg dropped warg support; publish the component to an OCI registry and install it from oci://HOST/NAMESPACE/NAME:VERSION (see docs/adr/0009-oci-not-warg.md)"
    )]
    Warg { reference: String },
    #[error("{}registry {registry} is unreachable: {message}", reference.as_ref().map(|r| format!("{r}: ")).unwrap_or_default())]
    Unreachable {
        /// The reference being fetched, when known.
        reference: Option<String>,
        registry: String,
        message: String,
    },
    #[error("{reference}: {what} not found in the registry")]
    NotFound { reference: String, what: String },
    #[error("{reference}: the registry refused access ({status}): {advice}")]
    Denied {
        reference: String,
        status: u16,
        advice: String,
    },
    #[error("{reference}: the registry answered {status}: {message}")]
    Http {
        reference: String,
        status: u16,
        message: String,
    },
    #[error("{reference} is not a wasm component artifact: {message}")]
    NotWasm { reference: String, message: String },
    #[error(
        "{reference}: the {what} has digest {actual}, but {expected} was expected: the registry served different bytes than it named (tampered or corrupt); nothing was installed"
    )]
    Digest {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {what} is {size} bytes, more than the {limit} this host accepts")]
    TooLarge {
        reference: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("{0}")]
    Other(String),
}

impl RegistryError {
    pub(crate) fn other(message: impl Into<String>) -> RegistryError {
        RegistryError::Other(message.into())
    }
}
