//! W3C trace context across the API, the orchestrator and compute nodes: a job's spans are one
//! trace when traces are exported (OTLP). Without an exporter no span has a context, so nothing
//! is carried and this costs nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The longest `traceparent` accepted from outside (version 00 is 55 characters; later
/// versions may append fields).
pub const MAX_TRACEPARENT: usize = 128;

/// The span's W3C `traceparent`, when it belongs to an exported trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the span a `traceparent` names. Anyone may send one (a client's
/// header, a message): an oversized or malformed value is ignored and the span starts a trace
/// of its own.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    if traceparent.len() > MAX_TRACEPARENT {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
