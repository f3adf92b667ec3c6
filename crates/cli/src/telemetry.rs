//! OTLP trace export, switched on as Bacalhau switches it on: `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (or `..._TRACES_PROTOCOL`) is `http/protobuf`, and `DO_NOT_TRACK=1` turns it off. The other
//! standard `OTEL_*` variables (headers, timeouts, batching) apply as the SDK reads them.

use anyhow::{Result, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The exporter; dropping it sends what is still batched.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: sending the last traces failed: {e}");
        }
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Whether traces are to be exported.
pub fn enabled() -> bool {
    env("DO_NOT_TRACK").as_deref() != Some("1")
        && (env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
}

/// The tracer for `tracing`'s OpenTelemetry layer, and the exporter behind it.
pub fn tracer() -> Result<(opentelemetry_sdk::trace::Tracer, Telemetry)> {
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol != "http/protobuf" {
        bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: this build exports traces over http/protobuf \
             (a collector's port 4318); set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or DO_NOT_TRACK=1 for none"
        );
    }
    // The exporter's client may speak https: it needs the process's TLS provider.
    bacalhau_api::tls::install_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP trace exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("bacalhau").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    Ok((provider.tracer("bacalhau"), Telemetry { provider }))
}

/// Whether metrics are to be exported over OTLP as well as served at `/metrics`.
pub fn metrics_enabled() -> bool {
    env("DO_NOT_TRACK").as_deref() != Some("1")
        && (env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some())
}

/// A `metrics` recorder that forwards every counter, gauge and histogram to OpenTelemetry
/// instruments of the same name and labels, exported over OTLP every
/// `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default); the meter provider sends its last export
/// when dropped.
pub fn otlp_recorder() -> Result<(OtelRecorder, MetricsTelemetry)> {
    let protocol = env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol != "http/protobuf" {
        bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: this build exports metrics over http/protobuf \
             (a collector's port 4318); set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or DO_NOT_TRACK=1 for none"
        );
    }
    bacalhau_api::tls::install_provider();
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP metric exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("bacalhau").build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource)
        .build();
    use opentelemetry::metrics::MeterProvider as _;
    let recorder = OtelRecorder { meter: provider.meter("bacalhau"), instruments: Default::default() };
    Ok((recorder, MetricsTelemetry { provider }))
}

/// The OTLP metric exporter; dropping it sends the last export.
#[derive(Debug)]
pub struct MetricsTelemetry {
    provider: opentelemetry_sdk::metrics::SdkMeterProvider,
}

impl Drop for MetricsTelemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: sending the last metrics failed: {e}");
        }
    }
}

/// One instrument per metric name, made on first use.
#[derive(Default)]
struct Instruments {
    counters: std::collections::HashMap<String, opentelemetry::metrics::Counter<u64>>,
    gauges: std::collections::HashMap<String, opentelemetry::metrics::Gauge<f64>>,
    histograms: std::collections::HashMap<String, opentelemetry::metrics::Histogram<f64>>,
}

/// The bridge from the `metrics` facade to OpenTelemetry.
pub struct OtelRecorder {
    meter: opentelemetry::metrics::Meter,
    instruments: std::sync::Mutex<Instruments>,
}

impl std::fmt::Debug for OtelRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtelRecorder")
    }
}

fn attributes(key: &metrics::Key) -> Vec<opentelemetry::KeyValue> {
    key.labels().map(|l| opentelemetry::KeyValue::new(l.key().to_owned(), l.value().to_owned())).collect()
}

struct OtelCounter(opentelemetry::metrics::Counter<u64>, Vec<opentelemetry::KeyValue>);
struct OtelGauge(opentelemetry::metrics::Gauge<f64>, Vec<opentelemetry::KeyValue>);
struct OtelHistogram(opentelemetry::metrics::Histogram<f64>, Vec<opentelemetry::KeyValue>);

impl metrics::CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.0.add(value, &self.1);
    }

    // OTLP counters are sums of increments; the node never sets a counter outright.
    fn absolute(&self, _value: u64) {}
}

impl metrics::GaugeFn for OtelGauge {
    // The node only sets its gauges.
    fn increment(&self, _value: f64) {}

    fn decrement(&self, _value: f64) {}

    fn set(&self, value: f64) {
        self.0.record(value, &self.1);
    }
}

impl metrics::HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.0.record(value, &self.1);
    }
}

impl metrics::Recorder for OtelRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let Ok(mut i) = self.instruments.lock() else { return metrics::Counter::noop() };
        let c = i
            .counters
            .entry(key.name().to_owned())
            .or_insert_with(|| self.meter.u64_counter(key.name().to_owned()).build())
            .clone();
        metrics::Counter::from_arc(std::sync::Arc::new(OtelCounter(c, attributes(key))))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let Ok(mut i) = self.instruments.lock() else { return metrics::Gauge::noop() };
        let g = i
            .gauges
            .entry(key.name().to_owned())
            .or_insert_with(|| self.meter.f64_gauge(key.name().to_owned()).build())
            .clone();
        metrics::Gauge::from_arc(std::sync::Arc::new(OtelGauge(g, attributes(key))))
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        let Ok(mut i) = self.instruments.lock() else { return metrics::Histogram::noop() };
        let h = i
            .histograms
            .entry(key.name().to_owned())
            .or_insert_with(|| self.meter.f64_histogram(key.name().to_owned()).build())
            .clone();
        metrics::Histogram::from_arc(std::sync::Arc::new(OtelHistogram(h, attributes(key))))
    }
}
