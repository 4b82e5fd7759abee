//! What a server shows its operators: one structured log line per request
//! (`tracing`, JSON on stderr) and Prometheus metrics at `/metrics`
//! (`prometheus-client`, the Prometheus project's Rust client).
//!
//! A request's line carries its id (the `x-request-id` it came with, else a
//! new one, returned in the answer), method, route (the pattern, never the
//! path, so no digest or name ends up in a label), status, error code, the
//! project once the key is known, bytes in and out, and latency. Never a
//! key, a token or a body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::storage::ProjectId;

/// The labels of a request's metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

/// The labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: String,
}

/// One server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteOnly, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
    storage_errors: Counter,
    /// Eval records stored (new ones, not those already held).
    pub evals_stored: Counter,
    /// Blobs stored (new ones).
    pub blobs_stored: Counter,
    next_id: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hitsave");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register("requests", "Requests answered, by method, route and status", requests.clone());
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("request_seconds", "Time to answer a request (until its headers), by route", latency.clone());
        let bytes_in = Counter::default();
        registry.register("request_bytes", "Request body bytes received (by Content-Length)", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("response_bytes", "Response body bytes sent (by Content-Length)", bytes_out.clone());
        let storage_errors = Counter::default();
        registry.register(
            "storage_errors",
            "Answers 500 or 503: storage that failed or was unavailable",
            storage_errors.clone(),
        );
        let evals_stored = Counter::default();
        registry.register("evals_stored", "Eval records stored", evals_stored.clone());
        let blobs_stored = Counter::default();
        registry.register("blobs_stored", "Blobs stored", blobs_stored.clone());
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            storage_errors,
            evals_stored,
            blobs_stored,
            next_id: AtomicU64::new(1),
        }
    }
}

impl Metrics {
    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Where the key's project is noted once the request is authenticated, for
/// the request's log line (the `Auth` extractor fills it in).
#[derive(Clone, Default)]
pub struct ProjectSlot(pub Arc<Mutex<Option<ProjectId>>>);

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok()).unwrap_or(0)
}

/// The middleware: counts and logs every request.
pub async fn observe(metrics: Arc<Metrics>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || format!("{:x}-{}", std::process::id(), metrics.next_id.fetch_add(1, Ordering::Relaxed)),
            str::to_owned,
        );
    let bytes_in = content_length(request.headers());
    let project = ProjectSlot::default();
    request.extensions_mut().insert(project.clone());
    request.extensions_mut().insert(metrics.clone());
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let bytes_out = content_length(response.headers());
    let latency = started.elapsed();
    let code = response.extensions().get::<crate::error::ErrorCode>().map(|code| code.0);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    metrics.requests.get_or_create(&RouteLabels { method: method.clone(), route: route.clone(), status }).inc();
    metrics.latency.get_or_create(&RouteOnly { route: route.clone() }).observe(latency.as_secs_f64());
    metrics.bytes_in.inc_by(bytes_in);
    metrics.bytes_out.inc_by(bytes_out);
    if status == 500 || status == 503 {
        metrics.storage_errors.inc();
    }
    let project = *project.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tracing::info!(
        target: "hitsave_server::request",
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        code = code.unwrap_or(""),
        project = project.map(|id| id.to_string()).unwrap_or_default(),
        bytes_in,
        bytes_out,
        latency_ms = latency.as_secs_f64() * 1000.0,
    );
    response
}

/// Request logs on stderr, one JSON object per line, at the level
/// `HITSAVE_SERVER_LOG` names (`error`, `warn`, `info` (the default),
/// `debug`, `off`). Called once by a server binary; a second call is a no-op.
pub fn init_logging() {
    let level = match std::env::var("HITSAVE_SERVER_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "off" | "none" => return,
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}
