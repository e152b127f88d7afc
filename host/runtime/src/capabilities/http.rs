//! Outgoing HTTP for provider components (`wasi:http/outgoing-handler`): one origin only,
//! and the credential added here, at the boundary, so it never enters the component.
//!
//! Every request the component sends passes through [`Egress::send_request`]. A request
//! to any origin but the configured base URL's is refused (the component sees
//! `HttpRequestDenied`, the host remembers what was tried). The credential header or URL
//! placeholder is applied to the request after it left the component, and any header of
//! the same name the component set is replaced.

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::uri::Uri;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How the host authenticates on the component's behalf (from `describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Header(String),
    UrlPlaceholder(String),
    None,
}

/// scheme + host + port, with the scheme's default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(uri: &Uri) -> Option<Origin> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        Some(Origin { scheme, host, port })
    }

    pub fn parse(url: &str) -> Result<Origin, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let o = Origin::of(&uri)
            .ok_or_else(|| format!("`{url}` needs an http:// or https:// scheme and a host"))?;
        if o.scheme != "http" && o.scheme != "https" {
            return Err(format!("`{url}`: only http and https are supported"));
        }
        Ok(o)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Timeouts for provider requests: connecting is quick or broken; a model may think for
/// minutes before its first byte, and pause between events while it works.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(120);

/// The egress policy of one provider call.
pub struct Egress {
    allowed: Origin,
    auth: AuthScheme,
    secret: Option<String>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Origins the component tried and was refused.
    pub denied: Arc<Mutex<Vec<String>>>,
}

impl Egress {
    pub fn new(
        allowed: Origin,
        auth: AuthScheme,
        secret: Option<String>,
        extra_headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Egress {
        Egress {
            allowed,
            auth,
            secret,
            extra_headers,
            denied: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Add the credential and the operator's extra headers to a request that is allowed.
    fn authorize(&self, request: &mut http::Request<WasiBody>) -> Result<(), HttpError> {
        for (name, value) in &self.extra_headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        match &self.auth {
            AuthScheme::None => {}
            AuthScheme::Bearer => {
                let mut v = HeaderValue::from_str(&format!("Bearer {secret}"))
                    .map_err(|_| HttpError::HttpRequestDenied)?;
                v.set_sensitive(true);
                request.headers_mut().insert(AUTHORIZATION, v);
            }
            AuthScheme::Header(name) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| HttpError::HttpRequestDenied)?;
                let mut v =
                    HeaderValue::from_str(secret).map_err(|_| HttpError::HttpRequestDenied)?;
                v.set_sensitive(true);
                request.headers_mut().insert(name, v);
            }
            AuthScheme::UrlPlaceholder(placeholder) => {
                let uri = request.uri().to_string();
                if !uri.contains(placeholder.as_str()) {
                    return Err(HttpError::HttpRequestDenied);
                }
                let encoded: String = secret
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                *request.uri_mut() = uri
                    .replace(placeholder.as_str(), &encoded)
                    .parse()
                    .map_err(|_| HttpError::HttpRequestDenied)?;
            }
        }
        Ok(())
    }
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let origin = Origin::of(request.uri());
        if origin.as_ref() != Some(&self.allowed) {
            let tried = origin
                .map(|o| o.to_string())
                .unwrap_or_else(|| request.uri().to_string());
            tracing::warn!(tried = %tried, allowed = %self.allowed, "provider request denied: not its configured base URL");
            if let Ok(mut d) = self.denied.lock() {
                d.push(tried);
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Err(e) = self.authorize(&mut request) {
            return Box::new(async move { Err(e) });
        }
        let options = RequestOptions {
            connect_timeout: Some(
                options
                    .and_then(|o| o.connect_timeout)
                    .unwrap_or(CONNECT_TIMEOUT)
                    .min(CONNECT_TIMEOUT),
            ),
            first_byte_timeout: Some(
                options
                    .and_then(|o| o.first_byte_timeout)
                    .unwrap_or(FIRST_BYTE_TIMEOUT)
                    .min(FIRST_BYTE_TIMEOUT),
            ),
            between_bytes_timeout: Some(
                options
                    .and_then(|o| o.between_bytes_timeout)
                    .unwrap_or(BETWEEN_BYTES_TIMEOUT)
                    .min(BETWEEN_BYTES_TIMEOUT),
            ),
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
