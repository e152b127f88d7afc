//! Outgoing HTTP for provider components (`wasi:http/outgoing-handler`): one origin only,
//! and the credential added here, at the boundary, so it never enters the component.
//!
//! Every request the component sends passes through [`Egress::send_request`]. A request
//! to any origin but the configured base URL's is refused (the component sees
//! `HttpRequestDenied`, the host remembers what was tried). The credential header or URL
//! placeholder is applied to the request after it left the component, and any header of
//! the same name the component set is replaced.

use crate::llm::types::{LlmFailure, TimeoutPhase};
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::uri::Uri;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
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

/// Connecting is quick or broken: the longest wait for TCP (and TLS) to a provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time to first byte: a reasoning model may think for minutes before it
/// answers, so 5 minutes; the caller's deadline usually ends a call well before this.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest pause inside a response: models pause between events while they
/// work (a long tool-call argument, a reasoning block); 2 minutes of silence is a stall.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(120);
/// Default most response bytes accepted for one model call: 8 MiB. A long answer of
/// 32k output tokens streamed as SSE is well under 1 MiB even with per-token JSON
/// framing and usage chunks, so this is several times any real answer and still stops
/// a server that ignores `max_output_tokens` long before it hurts.
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// How often a waiting provider call checks its cancel flag and its deadlines.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The bounds of a provider's HTTP exchanges, per provider. The field names are the keys
/// named in the messages of [`LlmFailure::Timeout`] and [`LlmFailure::ResponseTooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// TCP (and TLS) connect. Default [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// From sending the request to its response headers. Default [`FIRST_BYTE_TIMEOUT`].
    pub first_byte_timeout: Duration,
    /// The longest pause between two pieces of the response body. Default
    /// [`BETWEEN_BYTES_TIMEOUT`].
    pub between_bytes_timeout: Duration,
    /// Most body bytes of one response. Default [`MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: CONNECT_TIMEOUT,
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
            between_bytes_timeout: BETWEEN_BYTES_TIMEOUT,
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }
}

/// A flag the caller sets to cancel a provider call; polled every [`POLL_INTERVAL`]
/// while the call waits on the network, and whenever the component runs.
pub trait CancelFlag: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

impl CancelFlag for AtomicBool {
    fn is_cancelled(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
}

/// The watch over one attempt of one provider call: what bounds its waits, and what
/// stopped it. Shared by the host (which sets the event deadline and reads the stop) and
/// the egress hooks (whose futures run on the wasi runtime's threads).
pub struct Watch {
    pub(crate) limits: HttpLimits,
    /// The caller's deadline, and the setting it came from.
    deadline: Option<(Instant, String)>,
    /// When the call (not this attempt) started: what `after` of a deadline counts from.
    call_started: Instant,
    /// While the component works on an event: when it started, and the longest it may
    /// take (`limits.deadline_ms`). `None` between events, while nobody reads the body.
    event: Mutex<Option<(Instant, Duration)>>,
    cancel: Option<Arc<dyn CancelFlag>>,
    /// When the last body bytes arrived, for the between-bytes bound.
    last_bytes: Mutex<Option<Instant>>,
    stop: Mutex<Option<LlmFailure>>,
}

/// The key named when one event takes too long.
/// The per-event deadline of a provider call is set from `runtime.turn_timeout_secs`.
pub const EVENT_LIMIT_KEY: &str = "runtime.turn_timeout_secs";

impl Watch {
    pub fn new(
        limits: HttpLimits,
        call_started: Instant,
        deadline: Option<(Instant, String)>,
        cancel: Option<Arc<dyn CancelFlag>>,
    ) -> Watch {
        Watch {
            limits,
            deadline,
            call_started,
            event: Mutex::new(None),
            cancel,
            last_bytes: Mutex::new(None),
            stop: Mutex::new(None),
        }
    }

    /// Start an event: the component may run and wait for `length` from now.
    pub fn start_event(&self, length: Duration) {
        if let Ok(mut e) = self.event.lock() {
            *e = Some((Instant::now(), length));
        }
    }

    /// The event is out: until the next starts, nothing waits on the component.
    pub fn end_event(&self) {
        if let Ok(mut e) = self.event.lock() {
            *e = None;
        }
    }

    fn event(&self) -> Option<(Instant, Duration)> {
        self.event.lock().ok().and_then(|e| *e)
    }

    /// What stopped this attempt, if a bound did.
    pub fn stopped(&self) -> Option<LlmFailure> {
        self.stop.lock().ok().and_then(|s| s.clone())
    }

    /// Record what stopped the attempt (the first reason wins) and return it.
    fn record(&self, f: LlmFailure) -> LlmFailure {
        match self.stop.lock() {
            Ok(mut s) => s.get_or_insert(f).clone(),
            Err(_) => f,
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.is_cancelled())
    }

    /// The cancel flag, the caller's deadline and the event's, checked now.
    pub fn check(&self) -> Option<LlmFailure> {
        if let Some(f) = self.stopped() {
            return Some(f);
        }
        let now = Instant::now();
        if self.cancelled() {
            return Some(self.record(LlmFailure::Cancelled));
        }
        if let Some((at, key)) = &self.deadline
            && now >= *at
        {
            return Some(self.record(LlmFailure::Timeout {
                phase: TimeoutPhase::Deadline,
                after: now.saturating_duration_since(self.call_started),
                limit: at.saturating_duration_since(self.call_started),
                limit_key: key.clone(),
            }));
        }
        if let Some((start, length)) = self.event()
            && now.saturating_duration_since(start) >= length
        {
            return Some(self.record(LlmFailure::Timeout {
                phase: TimeoutPhase::Event,
                after: now.saturating_duration_since(start),
                limit: length,
                limit_key: EVENT_LIMIT_KEY.into(),
            }));
        }
        None
    }

    /// [`Watch::check`], then the phase's own bound: `limit` since `since`.
    fn check_phase(
        &self,
        phase: TimeoutPhase,
        since: Instant,
        limit: Duration,
    ) -> Option<LlmFailure> {
        if let Some(f) = self.check() {
            return Some(f);
        }
        let waited = since.elapsed();
        if waited >= limit {
            let limit_key = match phase {
                TimeoutPhase::FirstByte => "reliability.first_byte_timeout_secs",
                _ => "reliability.between_bytes_timeout_secs",
            };
            return Some(self.record(LlmFailure::Timeout {
                phase,
                after: waited,
                limit,
                limit_key: limit_key.into(),
            }));
        }
        None
    }

    /// While an event is in progress: since when the component has waited for bytes.
    fn waiting_since(&self) -> Option<Instant> {
        let (start, _) = self.event()?;
        let last = self.last_bytes.lock().ok().and_then(|t| *t);
        Some(last.map_or(start, |l| l.max(start)))
    }

    fn got_bytes(&self) {
        if let Ok(mut t) = self.last_bytes.lock() {
            *t = Some(Instant::now());
        }
    }

    fn too_large(&self) -> LlmFailure {
        self.record(LlmFailure::ResponseTooLarge {
            limit_bytes: self.limits.max_response_bytes,
            limit_key: "reliability.max_response_bytes".into(),
        })
    }
}

/// Wakes registered tasks every [`POLL_INTERVAL`], so a future waiting on the network
/// also looks at its watch. One thread for the process; it sleeps while nobody waits.
fn wake_soon(waker: &Waker) {
    type Wakers = (Mutex<Vec<Waker>>, Condvar);
    static TICKER: OnceLock<Option<Arc<Wakers>>> = OnceLock::new();
    let ticker = TICKER.get_or_init(|| {
        let shared: Arc<Wakers> = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let t = shared.clone();
        let started = std::thread::Builder::new()
            .name("oxydra-http-watch".into())
            .spawn(move || {
                let (list, ready) = &*t;
                loop {
                    {
                        let Ok(mut l) = list.lock() else { return };
                        while l.is_empty() {
                            l = match ready.wait(l) {
                                Ok(l) => l,
                                Err(_) => return,
                            };
                        }
                    }
                    std::thread::sleep(POLL_INTERVAL);
                    let due = match list.lock() {
                        Ok(mut l) => std::mem::take(&mut *l),
                        Err(_) => return,
                    };
                    for w in due {
                        w.wake();
                    }
                }
            });
        match started {
            Ok(_) => Some(shared),
            Err(e) => {
                // Without it a stalled provider is stopped only by the hard timeouts.
                tracing::error!(error = %e, "could not start the provider watch thread; cancellation and deadlines will not reach a waiting provider");
                None
            }
        }
    });
    if let Some(t) = ticker {
        let (list, ready) = &**t;
        if let Ok(mut l) = list.lock() {
            if !l.iter().any(|w| w.will_wake(waker)) {
                l.push(waker.clone());
            }
            ready.notify_one();
        }
    }
}

/// Run `fut`, checking `check` every [`POLL_INTERVAL`] while it is pending; when
/// `check` gives a failure, drop `fut` and return `stopped`.
async fn watched<F: Future>(
    fut: F,
    mut check: impl FnMut() -> Option<LlmFailure>,
    stopped: impl Fn() -> F::Output,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        if check().is_some() {
            return Poll::Ready(stopped());
        }
        match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(v),
            Poll::Pending => {
                wake_soon(cx.waker());
                Poll::Pending
            }
        }
    })
    .await
}

/// The error the component sees when a bound stopped its request; the host reports the
/// typed failure the watch recorded instead.
fn stop_error(f: &LlmFailure) -> HttpError {
    match f {
        LlmFailure::Timeout { .. } => HttpError::ConnectionReadTimeout,
        LlmFailure::ResponseTooLarge { limit_bytes, .. } => {
            HttpError::HttpResponseBodySize(Some(*limit_bytes))
        }
        other => HttpError::InternalError(Some(other.to_string())),
    }
}

/// The egress policy of one provider call.
pub struct Egress {
    allowed: Origin,
    auth: AuthScheme,
    secret: Option<String>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Origins the component tried and was refused.
    pub denied: Arc<Mutex<Vec<String>>>,
    /// What bounds this call's waits, and what stopped it.
    pub watch: Arc<Watch>,
}

impl Egress {
    pub fn new(
        allowed: Origin,
        auth: AuthScheme,
        secret: Option<String>,
        extra_headers: Vec<(HeaderName, HeaderValue)>,
        watch: Arc<Watch>,
    ) -> Egress {
        Egress {
            allowed,
            auth,
            secret,
            extra_headers,
            denied: Arc::new(Mutex::new(Vec::new())),
            watch,
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

type IoFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>>;

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
        // The component may ask for shorter timeouts, never for longer ones.
        let limits = self.watch.limits;
        let asked = |o: Option<Duration>, ours: Duration| o.map_or(ours, |o| o.min(ours));
        let first_byte = asked(
            options.and_then(|o| o.first_byte_timeout),
            limits.first_byte_timeout,
        );
        let between = asked(
            options.and_then(|o| o.between_bytes_timeout),
            limits.between_bytes_timeout,
        );
        // The watch enforces both (and names them); wasi-http's own timers, a second
        // later, are only a backstop.
        let backstop = Duration::from_secs(1);
        let options = RequestOptions {
            connect_timeout: Some(asked(
                options.and_then(|o| o.connect_timeout),
                limits.connect_timeout,
            )),
            first_byte_timeout: Some(first_byte.saturating_add(backstop)),
            between_bytes_timeout: Some(between.saturating_add(backstop)),
        };
        let watch = self.watch.clone();
        Box::new(async move {
            use http_body_util::{BodyExt, LengthLimitError, Limited};
            let sent = Instant::now();
            let w = watch.clone();
            let (res, io) = watched(
                async move {
                    // Inside a tier, through the runner's egress proxy.
                    if super::egress::proxy().is_some() {
                        let (res, io) = super::egress::send_request(request, Some(options)).await?;
                        return Ok((res, Box::pin(io) as IoFuture));
                    }
                    let (res, io) =
                        wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((res.map(|b| b.boxed_unsync()), Box::pin(io) as IoFuture))
                },
                || w.check_phase(TimeoutPhase::FirstByte, sent, first_byte),
                || {
                    Err(w
                        .stopped()
                        .map_or(HttpError::ConnectionReadTimeout, |f| stop_error(&f)))
                },
            )
            .await?;
            watch.got_bytes();
            // Between bytes: measured only while the component waits for its next event
            // (a slow reader is not a stalled server). Stopping the connection's driver
            // ends the body with an error the component sees at once.
            let w = watch.clone();
            let io = watched(
                io,
                move || {
                    let since = w.waiting_since()?;
                    w.check_phase(TimeoutPhase::BetweenBytes, since, between)
                },
                || Err(HttpError::ConnectionReadTimeout),
            );
            let w = watch.clone();
            let (parts, body) = res.into_parts();
            let counted = body.map_frame(move |frame| {
                if frame.is_data() {
                    w.got_bytes();
                }
                frame
            });
            let limit = usize::try_from(limits.max_response_bytes).unwrap_or(usize::MAX);
            let w = watch.clone();
            let body = Limited::new(counted, limit)
                .map_err(move |e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        return stop_error(&w.too_large());
                    }
                    match e.downcast::<HttpError>() {
                        Ok(e) => *e,
                        Err(e) => HttpError::InternalError(Some(e.to_string())),
                    }
                })
                .boxed_unsync();
            Ok((
                http::Response::from_parts(parts, body),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
