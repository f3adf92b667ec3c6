//! `GET /metrics` in Prometheus' text format, and the API's own request metrics.
//!
//! Every part of the node records through the `metrics` facade (atomic counters, gauges and
//! histogram buffers); the recorder is installed once per process, the first time a router is
//! built. A scrape renders what is recorded and never waits on the orchestrator's runtime.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tracing::warn;

use crate::server::St;

/// Histogram buckets, in seconds: from a store commit (sub-millisecond) to a long job.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// A gauge nobody has set for this long is dropped (a deleted node's series), so what the
/// exporter holds is bounded by the nodes and states seen lately.
const IDLE_GAUGE: Duration = Duration::from_secs(600);

/// How often recorded histogram samples are folded into their buckets when nobody scrapes, so
/// their buffers stay small.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder: Prometheus' (for `/metrics`), and beside it `also` (the
/// binary's OTLP exporter, when one is configured), every metric going to both. Only the first
/// call (or [`handle`]) installs; later ones return what is installed.
pub fn install(also: Option<Box<dyn metrics::Recorder + Send + Sync>>) -> Option<&'static PrometheusHandle> {
    let mut also = also;
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(b) => b.idle_timeout(MetricKindMask::GAUGE, Some(IDLE_GAUGE)),
                Err(e) => {
                    warn!(error = %e, "metrics disabled");
                    return None;
                }
            };
            let prometheus = builder.build_recorder();
            let handle = prometheus.handle();
            let installed = match also.take() {
                None => metrics::set_global_recorder(prometheus).map_err(|e| e.to_string()),
                Some(other) => metrics::set_global_recorder(
                    metrics_util::layers::FanoutBuilder::default().add_recorder(prometheus).add_recorder(other).build(),
                )
                .map_err(|e| e.to_string()),
            };
            if let Err(e) = installed {
                warn!(error = %e, "metrics disabled: another recorder is installed");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at each scrape");
            }
            Some(handle)
        })
        .as_ref()
}

/// The process's recorder, installed (Prometheus only) on first use; `None` when another
/// recorder was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    install(None)
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(s): St) -> Response {
    if let Some(peer) = &s.ipfs_peer {
        #[allow(clippy::cast_precision_loss)] // a handful of peers
        let peers = (peer.peers)() as f64;
        metrics::gauge!("bacalhau_ipfs_peers").set(peers);
    }
    match handle() {
        Some(h) => {
            // Rendering folds every buffered sample: off the async workers.
            let h = h.clone();
            let body = tokio::task::spawn_blocking(move || h.render()).await.unwrap_or_default();
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
        }
        None => crate::server::ApiError::unavailable(
            "metrics are not recorded in this process",
            "another metrics recorder was installed first; see the node's log",
        )
        .into_response(),
    }
}

/// Describes the API's metrics and those of every part of the node (the `# HELP` lines).
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!("bacalhau_api_requests_total", "API requests, by method, route pattern and status");
    describe_histogram!(
        "bacalhau_api_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an API request, by method and route pattern"
    );
    bacalhau_orchestrator::describe_metrics();
    bacalhau_compute::describe_metrics();
}

/// Counts every request by method, route pattern (never the raw path, whose IDs would make a
/// series per job) and status, and times it.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = method_label(req.method());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("bacalhau_api_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("bacalhau_api_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A method as a label: a client may send any token as its method, so others are one label.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}
