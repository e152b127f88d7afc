//! The `web` profile's capabilities: `wasi:http/outgoing-handler` through the host's
//! egress policy (`web/policy.rs`, pinned connections and redirects in `web/send.rs`),
//! and `oxydra:tool/settings` (the operator's `[tools.<name>]` table for the tool).
//!
//! Every request a `web` component sends goes through [`WebEgress::send_request`]; a
//! call without web access (any other profile never links wasi:http, and `describe`
//! runs without it) has every request refused.

mod dns;
pub mod policy;
mod send;

use crate::bindings::imports::oxydra::tool::settings;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

pub use policy::{DENIED_PREFIX, Denial, Policy, Rule};
pub(crate) use send::tls_config;
pub use send::{Conn, FINAL_URL_HEADER, Resolver, WebAccess, forward, join};
/// The body and error types of [`forward`]'s requests and responses.
pub use wasmtime_wasi_http::{Error as BodyError, WasiBody as Body};

/// What one call of a tool may reach on the web, and its settings.
pub struct WebCtx {
    http: WasiHttpCtx,
    egress: WebEgress,
    settings: Arc<str>,
}

impl WebCtx {
    pub fn new(access: Option<Arc<WebAccess>>, settings: Option<Arc<str>>) -> WebCtx {
        WebCtx {
            http: WasiHttpCtx::new(),
            egress: WebEgress { access },
            settings: settings.unwrap_or_else(|| Arc::from("{}")),
        }
    }
}

/// The hooks of one call's `wasi:http`: every request through the policy.
pub struct WebEgress {
    access: Option<Arc<WebAccess>>,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for WebEgress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let Some(access) = self.access.clone() else {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        Box::new(async move {
            let (response, conn) = send::send(access, request).await?;
            let io = async move { conn.await.map_err(HttpError::from) };
            Ok((
                response,
                Box::new(io) as Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// The store data of a call that may link the web capabilities.
pub trait WebView: WasiHttpView + Send {
    fn web(&mut self) -> &mut WebCtx;
}

/// `WasiHttpView` for a store that holds a [`WebCtx`] beside its resource table.
pub fn http_view<'a>(web: &'a mut WebCtx, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
    WasiHttpCtxView {
        ctx: &mut web.http,
        table,
        hooks: &mut web.egress,
    }
}

pub struct HasSettings;
impl HasData for HasSettings {
    type Data<'a> = &'a mut WebCtx;
}

impl settings::Host for WebCtx {
    fn get(&mut self) -> String {
        self.settings.to_string()
    }
}

/// `wasi:http/outgoing-handler` and `wasi:http/types`, through [`WebEgress`].
pub fn add_http_to_linker<T: WebView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(l)
}

/// `oxydra:tool/settings`.
pub fn add_settings_to_linker<T: WebView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    settings::add_to_linker::<T, HasSettings>(l, |t| t.web())
}
