//! Components from OCI registries, the way the WebAssembly ecosystem distributes them:
//! `oci://HOST[:PORT]/NAMESPACE/NAME:VERSION` references ([`reference`]), a small
//! client of the OCI distribution API over hyper with the registry token flow
//! ([`client`]), the wasm OCI artifact layout that `wkg` and `oras` use ([`artifact`]),
//! cosign-compatible key-pair signatures ([`cosign`]) and the `components.lock` file
//! that pins what was installed ([`lock`]).
//!
//! This crate knows nothing of wasmtime: whether a layer is a component and what it may
//! import is the runtime's business, asked by the caller after the bytes are verified.

pub mod artifact;
pub mod client;
pub mod cosign;
mod error;
pub mod lock;
pub mod reference;
mod time;
pub use time::now_rfc3339;

pub use client::{Client, ClientOptions, Credentials};
pub use error::RegistryError;
pub use reference::Reference;
