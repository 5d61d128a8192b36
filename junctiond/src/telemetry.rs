//! OpenTelemetry traces of a sampled share of requests, exported over OTLP/HTTP
//! (`[telemetry]` in the config).
//!
//! Off (no `[telemetry]`), nothing is created for any request: the front ends check one
//! `Option`. On, the front end decides at the door whether a request is traced (a
//! thread-local random draw against `sample_ratio`; a QR API request whose W3C
//! `traceparent` header says sampled is always traced, and joins the caller's trace). Only
//! a traced request gets a root span, whose trace id goes into every log line of that
//! request. The pipeline's threads do not touch the tracing library: each stage notes
//! when it had the request (`StageTimes`), and once the answer is out the completion
//! stage hands the times back (`RequestTrace::finish`), which turns them into child spans
//! with their real start and end times:
//!
//! ```text
//! iso8583 0200 (server)        received ........................................ answered
//!   issuer.host                          sent ...... answered       (hosted issuers only)
//!   engine.queue               received .. shard took it
//!   engine.authorize                       shard .... batch sealed
//!   ledger.apply                                      sealed .. applied by the sequencer
//!   ledger.durable                                              applied .. fsync done
//! ```
//!
//! Spans go to a batch processor (its own thread, a bounded queue that drops when full,
//! never blocking the pipeline) and from there to `<otlp_endpoint>/v1/traces` as protobuf,
//! posted with the daemon's own HTTP client (ureq, rustls). No span holds a card number:
//! the attributes are the MTI, processing code, RRN, STAN, institution ids and the answer.

use crate::config::TelemetryConfig;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use junction_engine::model::{RequestTrace, Response, StageTimes};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the batch processor sends what it has.
const EXPORT_INTERVAL: Duration = Duration::from_millis(1000);
/// Spans waiting for export; past it new spans are dropped (and the SDK says so).
const SPAN_QUEUE_MAX: usize = 8192;

/// The daemon's tracer: on when `[telemetry]` is configured.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// A request is traced when a uniform draw of 64 bits is below this.
    threshold: u64,
}

impl Telemetry {
    pub fn start(config: &TelemetryConfig, node: Option<&str>) -> Result<Telemetry> {
        let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(UreqClient::new(EXPORT_TIMEOUT))
            .with_endpoint(endpoint.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("the OTLP exporter for {endpoint}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(SPAN_QUEUE_MAX)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone());
        if let Some(node) = node {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", node.to_string()));
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("junctiond");
        // The ratio as a share of 2^64, exactly for 0 and 1.
        let threshold = if config.sample_ratio >= 1.0 {
            u64::MAX
        } else {
            (config.sample_ratio.max(0.0) * 18_446_744_073_709_551_616.0) as u64
        };
        tracing::info!(%endpoint, ratio = config.sample_ratio, "tracing a sampled share of requests over OTLP");
        Ok(Telemetry { provider, tracer, threshold })
    }

    /// Whether to trace the next request: a cheap thread-local draw, no lock, no atomics.
    pub fn sample(&self) -> bool {
        self.threshold != 0 && (self.threshold == u64::MAX || next_random() < self.threshold)
    }

    /// Starts a request's root span (a server span) under `parent` (a caller's trace from
    /// `traceparent`, or an empty context).
    pub fn root(&self, name: String, parent: &Context, attributes: Vec<KeyValue>) -> Traced {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        Traced::new(self.tracer.clone(), parent.with_span(span))
    }

    /// Starts a span for the pipeline's part of a request whose root is `parent` (an HTTP
    /// request's server span).
    pub fn child(&self, name: &'static str, parent: &Context) -> Traced {
        let span =
            self.tracer.span_builder(name).with_kind(SpanKind::Internal).start_with_context(&self.tracer, parent);
        Traced::new(self.tracer.clone(), parent.with_span(span))
    }

    /// Sends what is queued and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "stopping the trace exporter");
        }
    }

    /// W3C trace context of an HTTP request's headers, if it carries a valid one.
    pub fn caller_context(headers: &::http::HeaderMap) -> Option<Context> {
        use opentelemetry::propagation::TextMapPropagator;
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let context = propagator.extract(&opentelemetry_http::HeaderExtractor(headers));
        context.span().span_context().is_valid().then_some(context)
    }
}

/// One traced request: its span (the root for ISO 8583, the pipeline's span under an HTTP
/// request), the times its stages noted, and the clock pair that turns them into
/// wall-clock times.
pub struct Traced {
    tracer: SdkTracer,
    context: Context,
    started: Instant,
    started_wall: SystemTime,
    stages: StageTimes,
}

impl Traced {
    fn new(tracer: SdkTracer, context: Context) -> Traced {
        Traced {
            tracer,
            context,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            stages: StageTimes::default(),
        }
    }

    /// The trace id, as log lines and collectors write it (32 hex digits).
    pub fn trace_id(&self) -> String {
        self.context.span().span_context().trace_id().to_string()
    }

    /// The span's context, for children made elsewhere.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Adds attributes to the span.
    pub fn annotate(&self, attributes: Vec<KeyValue>) {
        self.context.span().set_attributes(attributes);
    }

    /// Ends the span now, with these attributes.
    pub fn end_with(self, attributes: Vec<KeyValue>) {
        let span = self.context.span();
        span.set_attributes(attributes);
        span.end();
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.started_wall + at.saturating_duration_since(self.started)
    }

    fn stage(&self, name: &'static str, from: Option<Instant>, to: Option<Instant>) {
        let (Some(from), Some(to)) = (from, to) else { return };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(self.wall(from))
            .start_with_context(&self.tracer, &self.context);
        let mut span = span;
        span.end_with_timestamp(self.wall(to));
    }
}

impl RequestTrace for Traced {
    fn stages(&mut self) -> &mut StageTimes {
        &mut self.stages
    }

    fn finish(self: Box<Self>, response: &Response) {
        let answered = Instant::now();
        let stages = self.stages;
        self.stage("issuer.host", stages.issuer_sent, stages.issuer_answered);
        let queued = stages.issuer_answered.unwrap_or(self.started);
        self.stage("engine.queue", Some(queued), stages.shard);
        self.stage("engine.authorize", stages.shard, stages.sealed);
        self.stage("ledger.apply", stages.sealed, stages.applied);
        self.stage("ledger.durable", stages.applied, stages.durable);
        let span = self.context.span();
        span.set_attributes([
            KeyValue::new("junction.response_code", response.code.as_str().to_string()),
            KeyValue::new("junction.stood_in", response.stood_in),
        ]);
        if let Some(reason) = response.decline {
            span.set_attribute(KeyValue::new("junction.decline_reason", format!("{reason:?}")));
        }
        if matches!(response.code.as_str(), "91" | "96") {
            span.set_status(Status::error(response.code.as_str().to_string()));
        }
        let elapsed_us = answered.saturating_duration_since(self.started).as_micros() as u64;
        tracing::debug!(trace_id = %self.trace_id(), code = response.code.as_str(), elapsed_us, "request answered");
        span.end_with_timestamp(self.wall(answered));
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // Unfinished (answered before the pipeline, or dropped while stopping): the span
        // ends here; ending twice is a no-op.
        self.context.span().end();
    }
}

tokio::task_local! {
    /// The server span of a traced HTTP request, while its handler runs.
    static HTTP_REQUEST: Context;
}

/// Runs an HTTP request's handler inside its server span's context.
pub async fn in_http_request<F: std::future::Future>(context: Context, handler: F) -> F::Output {
    HTTP_REQUEST.scope(context, handler).await
}

/// `future` with the traced HTTP request's context (and log span) of the task that makes
/// it, for a task spawned to finish the request's work.
pub fn carried<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    use tracing::Instrument as _;
    let context = http_request();
    let log_span = tracing::Span::current();
    async move {
        match context {
            Some(context) => HTTP_REQUEST.scope(context, future).instrument(log_span).await,
            None => future.await,
        }
    }
}

/// The server span's context of the traced HTTP request being handled, if any.
pub fn http_request() -> Option<Context> {
    HTTP_REQUEST.try_with(Context::clone).ok()
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(seed());
}

/// xorshift64*: uniform enough for sampling, a few instructions per draw.
fn next_random() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish() | 1
}

/// OTLP's HTTP client: the daemon's own (ureq with rustls), called from the batch
/// processor's thread, where blocking is what it expects.
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    fn new(timeout: Duration) -> UreqClient {
        let agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().new_agent();
        UreqClient { agent }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: ::http::Request<Bytes>,
    ) -> Result<::http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let request = ::http::Request::from_parts(parts, body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let body = body.read_to_vec()?;
        Ok(::http::Response::from_parts(parts, Bytes::from(body)))
    }
}
