//! OpenTelemetry traces from a real `junctiond` to an OTLP/HTTP collector played by this
//! test (a plain socket that decodes what it receives with the OTLP protobuf definitions):
//! - every sampled ISO 8583 request has a server span with the pipeline's stages as child
//!   spans (queue, authorize, ledger apply, ledger durable; and the issuer's host for a
//!   hosted card), in order and inside their parent, with the answer's code;
//! - a QR API request joins its caller's trace (W3C `traceparent`), and one whose caller
//!   did not sample it is not traced;
//! - the trace id is in the log lines of that request (a refusal's too);
//! - no span holds a card number.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junctiond::config::TelemetryConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message as _;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An OTLP/HTTP collector: keeps every span posted to `/v1/traces`, and the raw bodies.
struct Collector {
    address: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (kept_spans, kept_bodies) = (Arc::clone(&spans), Arc::clone(&bodies));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (spans, bodies) = (Arc::clone(&kept_spans), Arc::clone(&kept_bodies));
                std::thread::spawn(move || serve(stream, &spans, &bodies));
            }
        });
        Collector { address, spans, bodies }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until `done` holds for the spans received, or panics after 30 s.
    fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().clone();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let mut names = BTreeMap::<&str, usize>::new();
                spans.iter().for_each(|span| *names.entry(span.name.as_str()).or_default() += 1);
                panic!("{what}: not among the {} spans received ({names:?})", spans.len());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One keep-alive HTTP/1.1 connection: each POST's protobuf body decoded, answered 200.
fn serve(stream: std::net::TcpStream, spans: &Mutex<Vec<Span>>, bodies: &Mutex<Vec<Vec<u8>>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert!(request_line.starts_with("POST /v1/traces "), "unexpected request {request_line:?}");
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            assert_eq!(service, Some(AnyValue::StringValue("junction-test".into())));
            for scope in resource.scope_spans {
                spans.lock().extend(scope.spans);
            }
        }
        bodies.lock().push(body);
        writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(text) => Some(text.clone()),
        AnyValue::IntValue(number) => Some(number.to_string()),
        AnyValue::BoolValue(flag) => Some(flag.to_string()),
        _ => None,
    })
}

/// The children of `root`, by name; each in `root`'s trace, inside its time.
fn children<'a>(spans: &'a [Span], root: &Span) -> BTreeMap<String, &'a Span> {
    let mut children = BTreeMap::new();
    for span in spans.iter().filter(|span| span.parent_span_id == root.span_id) {
        assert_eq!(span.trace_id, root.trace_id);
        assert!(
            root.start_time_unix_nano <= span.start_time_unix_nano
                && span.start_time_unix_nano <= span.end_time_unix_nano
                && span.end_time_unix_nano <= root.end_time_unix_nano,
            "{} lies outside {}",
            span.name,
            root.name
        );
        children.insert(span.name.clone(), span);
    }
    children
}

/// The pipeline's stages, one after the other.
fn assert_stages_in_order(children: &BTreeMap<String, &Span>, first: &[&str]) {
    let order: Vec<&str> =
        first.iter().copied().chain(["engine.queue", "engine.authorize", "ledger.apply", "ledger.durable"]).collect();
    for name in &order {
        assert!(children.contains_key(*name), "no {name} span among {:?}", children.keys());
    }
    for pair in order.windows(2) {
        let (before, after) = (children[pair[0]], children[pair[1]]);
        assert!(before.end_time_unix_nano <= after.start_time_unix_nano, "{} ends after {} starts", pair[0], pair[1]);
    }
}

fn hex_id(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn sampled_requests_are_traced_through_the_pipeline_to_an_otlp_collector() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config();
    config.issuer_links.timeout_ms = 2_000;
    config.telemetry = Some(TelemetryConfig {
        otlp_endpoint: collector.endpoint(),
        sample_ratio: 1.0,
        service_name: "junction-test".into(),
    });
    let data = dir.path().join("data");
    let config_path = data.with_extension("toml");
    std::fs::write(&config_path, config.to_toml()).unwrap();
    let daemon = Daemon::start_with_env(
        &data,
        &["--config", config_path.to_str().unwrap()],
        &[("RUST_LOG", "info,junctiond::telemetry=debug")],
    );

    // Card purchases of the switch's own issuer, every one traced.
    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let mut rrns = Vec::new();
    for _ in 0..5 {
        let stan = acquirer.next_stan();
        let purchase = financial("0200", "000000", DEMO_PAN, 1_234, &stan);
        assert_eq!(acquirer.call(&purchase).get(39), Some("00"));
        rrns.push(purchase.get(37).unwrap().to_string());
    }
    // A card of an issuer whose own host answers: the host's part is a span too.
    let mut issuer = IsoClient::connect_as(daemon.iso, HOSTED_INSTITUTION, HOSTED_KEY_HEX);
    assert_eq!(issuer.sign_on().get(39), Some("00"));
    let hosted = financial("0200", "000000", HOSTED_PAN, 4_321, &acquirer.next_stan());
    acquirer.send(&hosted, true);
    let forwarded = loop {
        let message = issuer.receive();
        if message.mti() != "0800" {
            break message;
        }
        issuer.send(&issuer_answer(&message, "00", None), true);
    };
    std::thread::sleep(Duration::from_millis(50)); // the host takes its time
    issuer.send(&issuer_answer(&forwarded, "00", Some("HT0001")), true);
    assert_eq!(acquirer.receive().get(39), Some("00"));
    // A purchase with a bad MAC: refused at the door, its log line names its trace.
    let forged = financial("0200", "000000", DEMO_PAN, 1_000, &acquirer.next_stan());
    acquirer.send(&forged, false);
    assert_ne!(acquirer.receive().get(39), Some("00"));

    // QR payments: one whose caller sampled it joins the caller's trace; one whose caller
    // did not is not traced, whatever the ratio.
    let agent = http_agent();
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let sampled = format!("00-{caller_trace}-{caller_span}-01");
    let (status, _) =
        wallet_pays_with(&agent, daemon.http, &usd_merchant_qr(), "traced-1", 250, &[("traceparent", &sampled)])
            .unwrap();
    assert_eq!(status, 200);
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = format!("00-{unsampled_trace}-b7ad6b7169203331-00");
    let (status, _) =
        wallet_pays_with(&agent, daemon.http, &usd_merchant_qr(), "traced-2", 260, &[("traceparent", &unsampled)])
            .unwrap();
    assert_eq!(status, 200);

    let spans = collector.wait_for("every request's spans", |spans| {
        let roots = spans.iter().filter(|s| s.name == "iso8583 0200").count();
        let durable = spans.iter().filter(|s| s.name == "ledger.durable").count();
        roots >= 7 && durable >= 7 && spans.iter().any(|s| s.name == "POST /v1/qr/payments")
    });

    // Each purchase: a server span without a parent, its stages under it, in order.
    for rrn in &rrns {
        let root = spans
            .iter()
            .find(|s| s.name == "iso8583 0200" && attribute(s, "iso8583.rrn").as_ref() == Some(rrn))
            .unwrap_or_else(|| panic!("no span for RRN {rrn}"));
        assert!(root.parent_span_id.is_empty(), "a root span");
        assert_eq!(root.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32);
        assert_eq!(attribute(root, "junction.response_code").as_deref(), Some("00"));
        assert_eq!(attribute(root, "iso8583.processing_code").as_deref(), Some("000000"));
        assert_stages_in_order(&children(&spans, root), &[]);
    }
    // The hosted card: the issuer's host first, then the booking of its answer.
    let root = spans
        .iter()
        .find(|s| attribute(s, "iso8583.rrn").as_deref() == hosted.get(37))
        .expect("the hosted purchase's span");
    let hosted_children = children(&spans, root);
    assert_stages_in_order(&hosted_children, &["issuer.host"]);
    let host = hosted_children["issuer.host"];
    assert!(host.end_time_unix_nano - host.start_time_unix_nano >= 50_000_000, "the host's 50 ms are in its span");
    // The forged request: a root span, nothing under it.
    let forged_root = spans
        .iter()
        .find(|s| attribute(s, "iso8583.rrn").as_deref() == forged.get(37))
        .expect("the refused request's span");
    assert!(children(&spans, forged_root).is_empty());

    // The QR payment sampled by its caller: in the caller's trace, under the caller's span.
    let qr = spans.iter().find(|s| s.name == "POST /v1/qr/payments").unwrap();
    assert_eq!(hex_id(&qr.trace_id), caller_trace);
    assert_eq!(hex_id(&qr.parent_span_id), caller_span);
    assert_eq!(attribute(qr, "http.response.status_code").as_deref(), Some("200"));
    let qr_children = children(&spans, qr);
    let engine = qr_children.get("engine").expect("the engine's span under the HTTP request");
    assert_eq!(attribute(engine, "junction.response_code").as_deref(), Some("00"));
    assert_stages_in_order(&children(&spans, engine), &[]);
    assert!(
        spans.iter().all(|s| hex_id(&s.trace_id) != unsampled_trace),
        "a request its caller did not sample was traced"
    );

    // The trace id is in the request's log lines: the answer (debug) and the refusal.
    let log = daemon.log_text();
    let first = spans.iter().find(|s| attribute(s, "iso8583.rrn").as_ref() == Some(&rrns[0])).unwrap();
    let first_trace = hex_id(&first.trace_id);
    assert!(
        log.lines().any(|line| line.contains(&first_trace) && line.contains("request answered")),
        "no log line names trace {first_trace}"
    );
    let forged_trace = hex_id(&forged_root.trace_id);
    assert!(
        log.lines().any(|line| line.contains(&forged_trace) && line.contains("MAC check failed")),
        "the refusal's log line does not name trace {forged_trace}"
    );

    // No card number in anything exported.
    for body in collector.bodies.lock().iter() {
        for pan in [DEMO_PAN, HOSTED_PAN] {
            assert!(!body.windows(pan.len()).any(|window| window == pan.as_bytes()), "a card number was exported");
        }
    }
}
