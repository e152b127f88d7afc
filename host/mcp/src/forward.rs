//! The host's forwarder for one streamable HTTP server: a unix socket in a private
//! directory that rmcp's HTTP client speaks to, each request sent on through
//! [`oxydra_runtime::capabilities::web::forward`] — the web tools' egress policy, address
//! checks and pinning, the runner's egress proxy inside a tier, and the credentials the
//! config names added for the server's origin only. Nothing else is reachable through it.

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oxydra_runtime::WebAccess;
use oxydra_runtime::capabilities::web;
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;
use web::{Body, BodyError};

/// Listen on `socket` and forward every request to `upstream`'s origin.
pub fn start(socket: &Path, upstream: Uri, access: Arc<WebAccess>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let me = std::process::id();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            // Only this process's own MCP client: the forwarder adds credentials.
            let ours = stream
                .peer_cred()
                .ok()
                .and_then(|c| c.pid())
                .is_some_and(|p| u32::try_from(p).ok() == Some(me));
            if !ours {
                tracing::warn!("MCP forwarder: a connection from another process was refused");
                continue;
            }
            let upstream = upstream.clone();
            let access = access.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let upstream = upstream.clone();
                    let access = access.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, &upstream, access).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

fn refuse(status: StatusCode, text: String) -> Response<Body> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

async fn handle(req: Request<Incoming>, upstream: &Uri, access: Arc<WebAccess>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    // rmcp sends the configured URL (absolute form); only its origin is forwarded.
    if let Some(a) = parts.uri.authority()
        && Some(a) != upstream.authority()
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("this forwarder reaches only {upstream}, not {a}"),
        );
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let target = format!(
        "{}://{}{path}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str())
    );
    let Ok(uri) = target.parse::<Uri>() else {
        return refuse(StatusCode::BAD_REQUEST, format!("bad target {target}"));
    };
    parts.uri = uri;
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
    ] {
        parts.headers.remove(h);
    }
    let body: Body = body.map_err(BodyError::from).boxed_unsync();
    match web::forward(access, Request::from_parts(parts, body)).await {
        Ok((response, conn)) => {
            tokio::spawn(conn);
            response
        }
        Err(e) => refuse(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
