//! The ISO 8583 front end: TCP connections from acquirers' and issuers' hosts.
//!
//! Each connection has a reader task and a writer task. The reader splits frames out of
//! large reads, checks sign-on and MACs, turns each message into an engine `Request` and
//! submits it without waiting; answers come back through the connection's channel in
//! whatever order the pipeline produces them (clients match them by STAN/RRN). The writer
//! drains every answer that is ready into one buffer and writes it with one call.
//!
//! Nothing from the wire is trusted: a malformed message is answered with 30, a bad MAC
//! with 63, an unknown MTI with 12; the connection and the daemon carry on.
//!
//! An issuer's host that signs on becomes one of its issuer's links (`issuer_links.rs`):
//! the switch writes forwarded requests on the same connection, and the responses the host
//! sends back (an odd third MTI digit) go to the request that waits for them. A request
//! for a card whose BIN routes to an issuer's host goes to `forwarding.rs` instead of the
//! engine's pipeline.

use super::activity::{Decline, Sessions};
use super::admission::Admission;
use super::cluster::{Forward, Partitions};
use super::config::normalize_institution;
use super::directory::{Directory, Key, Member};
use super::forwarding::Forwarding;
use super::issuer_links::{IssuerLinks, Link};
use super::metrics::{Metrics, INTERFACE_ISO8583};
use super::telemetry::{Telemetry, Traced};
use junction_engine::detail::{pack_reference, Channel, Detail, MaskedCard, Text};
use junction_engine::model::*;
use junction_engine::routing::{RouteMode, RouteTarget};
use junction_engine::{DeclineReason, Engine, ResponseCode};
use junction_ledger::{Currency, ParticipantId, TransferId};
use junction_wire::iso8583::{mac, next_frame, FrameError, Iso8583Message, MaskedPan, FRAME_PREFIX_SIZE_BYTES};
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

/// Messages one connection may have in flight: requests handed to the engine and not yet
/// answered, plus answers the reader built itself (sign-ons, echoes, refusals) not yet
/// written. Past it the reader stops reading until answers are written, so a client that
/// does not read its answers only stalls itself, whatever it sends.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 4096;

/// Messages waiting in one connection's queue to its writer task: at most two per message
/// in flight (a request's `Expect` and its `Answer`), so the queue never fills while the
/// in-flight bound holds. Costs about 200 bytes a slot and up to ~1 KiB per queued
/// message (the request kept to echo its fields).
pub const CONNECTION_QUEUE_DEPTH_MAX: usize = 2 * CONNECTION_IN_FLIGHT_MAX;

/// Bytes read per system call (many frames per read on a busy connection).
const READ_BUFFER_SIZE_BYTES: usize = 64 * 1024;

/// How long a connection's reads may stay behind (each one filling the read buffer: more
/// is waiting in the socket) before its new requests are answered 91 at once.
pub const SHED_AFTER_BEHIND_MS: u64 = 20;

/// Whether a connection's reads are behind what its client sends. Under overload the
/// switch cannot read as fast as requests come, and they wait in the socket's buffer (up
/// to megabytes: seconds of requests) where no bound of the switch sees them. A read that
/// fills the whole buffer says more is waiting; reads that keep doing so for
/// `SHED_AFTER_BEHIND_MS` mean the connection is behind, and its requests are declined 91
/// at the door (no engine, no ledger) until a read finds the socket drained. The excess
/// is then answered at once instead of seconds late.
#[derive(Default)]
struct Backlog {
    behind_since: Option<Instant>,
}

impl Backlog {
    /// After a read of `read` bytes into a buffer of `capacity`: whether to shed.
    fn observe(&mut self, read: usize, capacity: usize, now: Instant) -> bool {
        if read < capacity {
            self.behind_since = None;
            return false;
        }
        let since = *self.behind_since.get_or_insert(now);
        now.duration_since(since) >= std::time::Duration::from_millis(SHED_AFTER_BEHIND_MS)
    }
}

/// Who a message is MAC'd for, and with which of its keys: an answer with the key its
/// request was verified with, a message the switch originates with the key the
/// participant was last seen using (`Member::signing_key`).
#[derive(Clone)]
pub struct Signer {
    pub member: Arc<Member>,
    pub key: Arc<Key>,
}

impl Signer {
    pub fn originating(member: Arc<Member>) -> Signer {
        let key = member.signing_key();
        Signer { member, key }
    }
}

pub struct IsoContext {
    pub engine: Arc<Engine>,
    /// Every participant; only an issuer's signed-on connections become its links, and
    /// only an acquirer originates requests (purchases, refunds, reversals...). A wallet,
    /// an FX provider or an issuer that signs on may echo and, for an issuer, answer what
    /// it is sent, never originate a payment.
    pub directory: Arc<Directory>,
    pub metrics: Arc<Metrics>,
    pub connections_open: AtomicUsize,
    /// Shared with the QR gateway: requests handed to the engine and not yet answered.
    pub admission: Arc<Admission>,
    pub links: Arc<IssuerLinks>,
    pub forwarding: Arc<Forwarding>,
    /// Open connections and who signed on over them, for the console.
    pub sessions: Sessions,
    next_tag: AtomicU64,
    /// Traces a sampled share of requests (`[telemetry]`).
    pub telemetry: Option<Arc<Telemetry>>,
    /// A partitioned switch (`cluster.rs`): requests for cards of another partition's
    /// issuers go there.
    pub cluster: Option<Arc<Partitions>>,
}

impl IsoContext {
    pub fn new(
        engine: Arc<Engine>,
        directory: Arc<Directory>,
        metrics: Arc<Metrics>,
        admission: Arc<Admission>,
        forwarding: Arc<Forwarding>,
        telemetry: Option<Arc<Telemetry>>,
        cluster: Option<Arc<Partitions>>,
    ) -> IsoContext {
        IsoContext {
            links: Arc::clone(&forwarding.links),
            forwarding,
            engine,
            directory,
            metrics,
            connections_open: AtomicUsize::new(0),
            admission,
            sessions: Sessions::default(),
            next_tag: AtomicU64::new(1),
            telemetry,
            cluster,
        }
    }
}

/// Accepts ISO 8583 connections until `shutdown`: over TLS when `tls` is set (each
/// connection's handshake in its own task, bounded by `tls::HANDSHAKE_TIMEOUT`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    context: Arc<IsoContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let context = Arc::clone(&context);
                    let shutdown = shutdown.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, %error, "iso8583 connection lost at once");
                            return;
                        }
                        context.connections_open.fetch_add(1, Ordering::Relaxed);
                        let number = context.sessions.opened(peer);
                        tracing::debug!(%peer, "iso8583 connection opened");
                        let ended = match tls {
                            None => {
                                let (reader, writer) = stream.into_split();
                                connection(reader, writer, number, &context, shutdown).await
                            }
                            Some(acceptor) => match crate::tls::handshake(&acceptor, stream).await {
                                Ok(stream) => {
                                    let (reader, writer) = tokio::io::split(stream);
                                    connection(reader, writer, number, &context, shutdown).await
                                }
                                Err(error) => {
                                    context.metrics.tls_handshake_failures.inc();
                                    tracing::info!(%peer, %error, "iso8583 TLS handshake failed");
                                    Ok(())
                                }
                            },
                        };
                        if let Err(error) = ended {
                            tracing::debug!(%peer, %error, "iso8583 connection ended");
                        }
                        context.sessions.closed(number);
                        context.connections_open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(error) => tracing::warn!(%error, "accepting an iso8583 connection failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
}

pub enum WriterMessage {
    /// A request was submitted with this tag; its answer echoes these fields.
    Expect { tag: u64, request: Box<Iso8583Message>, key: Option<Signer>, received: Instant },
    /// The engine's answer.
    Answer(Response),
    /// An answer the reader built itself (network management, refusals).
    Direct { response: Box<Iso8583Message>, key: Option<Signer> },
    /// A request the switch sends an issuer on its link (MAC'd with the issuer's key); it
    /// takes no room of the connection's in-flight bound (links have their own).
    Forward { message: Box<Iso8583Message>, key: Signer },
}

/// What a connection knows of its peer.
struct Peer {
    /// The connection's number in `IsoContext::sessions`.
    connection: u64,
    signed_on: Option<Arc<Member>>,
    /// Set while an issuer is signed on: the connection is one of its links.
    link: Option<Arc<Link>>,
}

struct ConnectionSink(mpsc::Sender<WriterMessage>);

impl ReplySink for ConnectionSink {
    fn send(&self, response: Response) {
        // A closed connection no longer wants its answers; the transfer stands regardless.
        enqueue(&self.0, WriterMessage::Answer(response));
    }
}

/// Puts a message on the connection's queue without waiting: the in-flight bound keeps
/// the queue from filling (see `CONNECTION_QUEUE_DEPTH_MAX`).
fn enqueue(sender: &mpsc::Sender<WriterMessage>, message: WriterMessage) {
    if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(message) {
        tracing::error!("a connection's writer queue is full although its in-flight bound holds; an answer is lost");
    }
}

async fn connection<R, W>(
    mut reader: R,
    writer: W,
    number: u64,
    context: &Arc<IsoContext>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(CONNECTION_QUEUE_DEPTH_MAX);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let writer_task =
        tokio::spawn(write_loop(writer, receiver, Arc::clone(context), Arc::clone(&in_flight), Arc::clone(&notify)));
    let sink: Arc<dyn ReplySink> = Arc::new(ConnectionSink(sender.clone()));
    let mut peer = Peer { connection: number, signed_on: None, link: None };
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_BUFFER_SIZE_BYTES);
    let mut discard_bytes = 0usize;
    let mut chunk = vec![0u8; READ_BUFFER_SIZE_BYTES];
    let mut backlog = Backlog::default();
    loop {
        room(&in_flight, &notify).await;
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read,
            _ = shutdown.changed() => Ok(0),
        };
        let read = match read {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                // A reset connection ends like a closed one: what it had in flight is
                // still answered into the void, and an issuer's link leaves at once.
                tracing::debug!(%error, "iso8583 read failed");
                break;
            }
        };
        let shed = backlog.observe(read, chunk.len(), Instant::now());
        let mut fresh = &chunk[..read];
        if discard_bytes > 0 {
            let skipped = discard_bytes.min(fresh.len());
            discard_bytes -= skipped;
            fresh = &fresh[skipped..];
        }
        buffer.extend_from_slice(fresh);
        let mut consumed = 0;
        loop {
            match next_frame(&buffer[consumed..]) {
                Ok(Some((raw, size))) => {
                    // One read can hold many frames: the bound holds frame by frame.
                    room(&in_flight, &notify).await;
                    handle(raw, context, &mut peer, &sender, &sink, &in_flight, shed);
                    consumed += size;
                }
                Ok(None) => break,
                Err(error) => {
                    // A length we cannot honour: answer 30 and skip what it declared.
                    context.metrics.frame_errors.inc();
                    tracing::info!(%error, "iso8583 frame refused");
                    let skip = match error {
                        FrameError::ZeroLength { .. } => FRAME_PREFIX_SIZE_BYTES,
                        FrameError::TooLarge { size_bytes, .. } => FRAME_PREFIX_SIZE_BYTES + usize::from(size_bytes),
                    };
                    let available = buffer.len() - consumed;
                    if skip > available {
                        discard_bytes = skip - available;
                        consumed = buffer.len();
                    } else {
                        consumed += skip;
                    }
                    room(&in_flight, &notify).await;
                    direct(&sender, &in_flight, format_error(None), None);
                }
            }
        }
        buffer.drain(..consumed);
    }
    if let Some(link) = peer.link.take() {
        context.links.unregister(&link);
    }
    drop(sender);
    drop(sink);
    // Let the writer send what is still coming for this connection, then stop.
    let _ = writer_task.await;
    Ok(())
}

/// Waits until the connection has fewer than its bound of requests in flight.
async fn room(in_flight: &AtomicUsize, notify: &tokio::sync::Notify) {
    while in_flight.load(Ordering::Acquire) >= CONNECTION_IN_FLIGHT_MAX {
        notify.notified().await;
    }
}

fn handle(
    raw: &[u8],
    context: &Arc<IsoContext>,
    peer: &mut Peer,
    sender: &mpsc::Sender<WriterMessage>,
    sink: &Arc<dyn ReplySink>,
    in_flight: &Arc<AtomicUsize>,
    shed: bool,
) {
    let received = Instant::now();
    let metrics = &context.metrics;
    metrics.messages_received.inc();
    let message = match Iso8583Message::decode(raw) {
        Ok(message) => message,
        Err(error) => {
            metrics.format_errors.inc();
            tracing::info!(%error, "malformed iso8583 message");
            direct(sender, in_flight, format_error(Some(raw)), None);
            return;
        }
    };
    let direct = |response: Iso8583Message, key: Option<Signer>| direct(sender, in_flight, response, key);
    if message.mti() == "0800" {
        let (response, key) = network_management(&message, context, peer, sender);
        direct(response, key);
        return;
    }
    // A sampled request is traced from here: its log lines carry the trace id.
    let mut traced = match &context.telemetry {
        Some(telemetry) if !is_response(message.mti()) && telemetry.sample() => Some(trace_root(telemetry, &message)),
        _ => None,
    };
    let log_span = traced.as_ref().map(|traced| tracing::info_span!("request", trace_id = %traced.trace_id()));
    let _in_span = log_span.as_ref().map(tracing::Span::enter);
    // Financial messages: signed on, MAC'd with the participant's key, as itself.
    let Some(member) = peer.signed_on.clone() else {
        metrics.security_refusals.inc();
        tracing::info!(mti = message.mti(), "financial message on a connection that has not signed on");
        direct(answer(&message, "63"), None);
        return;
    };
    let participant = match member.verify(|key| mac::verify_decoded(&message, &key.mac)) {
        Ok(key) => Signer { member, key },
        Err(error) => {
            metrics.security_refusals.inc();
            tracing::warn!(participant = member.id.0, mti = message.mti(), stan = message.get(11).unwrap_or("-"), %error, "MAC check failed");
            direct(answer(&message, error.response_code()), Some(Signer::originating(member)));
            return;
        }
    };
    let id = participant.member.id;
    if let Some(link) = &peer.link {
        link.seen(&participant.key);
    }
    if is_response(message.mti()) {
        // An issuer's host answering what the switch sent it on this link.
        match &peer.link {
            Some(link) if context.links.deliver(link, message) => {}
            Some(link) => {
                metrics.issuer_unmatched_answers.inc();
                tracing::info!(issuer = link.participant.id.0, "an issuer's answer matches nothing sent on its link");
            }
            None => {
                metrics.issuer_unmatched_answers.inc();
                tracing::info!(participant = id.0, "a response on a connection that is not an issuer link");
            }
        }
        return;
    }
    // A retired participant's answers to what it was sent before still count (above);
    // nothing new of it is taken.
    if participant.member.is_retired() {
        metrics.security_refusals.inc();
        tracing::warn!(participant = id.0, mti = message.mti(), "a request from a retired participant");
        direct(answer(&message, "63"), Some(participant));
        return;
    }
    let acquirer = match acquirer_of(&message, &participant.member, &context.directory) {
        Ok(acquirer) => acquirer,
        Err(why) => {
            metrics.security_refusals.inc();
            tracing::warn!(participant = id.0, mti = message.mti(), why, "a request refused for its sender's role");
            direct(answer(&message, "63"), Some(participant));
            return;
        }
    };
    // An aggregator's request names the sub-merchant it is for (field 48); a reversal or
    // completion may leave it out (its original named it).
    let follow_up = matches!(message.mti(), "0220" | "0400" | "0420");
    let sub_merchant = match participant.member.role {
        Role::Aggregator => match sub_merchant_of(&message) {
            Some(sub_merchant) => Some((participant.member.id, sub_merchant)),
            None if follow_up && !message.contains(48) => None,
            None => {
                metrics.format_errors.inc();
                direct(answer(&message, "30"), Some(participant));
                return;
            }
        },
        _ => None,
    };
    if shed {
        metrics.requests_shed.inc();
        direct(answer(&message, ResponseCode::SystemUnavailable.as_str()), Some(participant));
        return;
    }
    let tag = context.next_tag.fetch_add(1, Ordering::Relaxed);
    match to_request(&message, context, acquirer, tag, sink) {
        Ok((request, _)) if !context.admission.try_admit() => {
            // Declined at the door: answering at once keeps what is accepted moving.
            drop(request);
            metrics.requests_refused_in_flight_max.inc();
            direct(answer(&message, ResponseCode::SystemUnavailable.as_str()), Some(participant));
        }
        Ok((mut request, pan)) => {
            if let Some((aggregator, sub_merchant)) = sub_merchant {
                // Aggregator ids fit 32 bits (`ParticipantConfig::check`).
                request.detail.aggregator = u32::try_from(aggregator.0).unwrap_or(0);
                request.detail.sub_merchant = sub_merchant;
            }
            if let Some(traced) = traced.take() {
                request.trace = TraceSlot::new(Box::new(traced));
            }
            in_flight.fetch_add(1, Ordering::AcqRel);
            let target = context.engine.route(pan);
            // In a partitioned switch, whether the card's issuer is this partition's is
            // decided and the request submitted under the gate: an issuer moving away
            // drains only once what was decided here before its move was submitted.
            let _gate = context.cluster.as_ref().map(|cluster| cluster.gate());
            let issuer = target.as_ref().map(|target| target.issuer);
            let remote = context.cluster.as_ref().zip(issuer).filter(|(cluster, issuer)| cluster.forwards(*issuer));
            if let Some((cluster, issuer)) = remote {
                // Another partition's card (or an issuer on the move): its owner answers,
                // after its own commit.
                let (tag, key, reply) = (request.tag, request.key, Arc::clone(&request.reply));
                drop(request);
                let raw = bytes::Bytes::copy_from_slice(raw);
                enqueue(
                    sender,
                    WriterMessage::Expect { tag, request: Box::new(message), key: Some(participant), received },
                );
                let forward = Forward { issuer, raw, acquirer, sub_merchant };
                tokio::spawn(Arc::clone(cluster).forward(forward, tag, key, reply));
                return;
            }
            let route = target.filter(|route| route.mode != RouteMode::Switch);
            let pan = route.map(|_| pan.to_string());
            let message = Box::new(message);
            let forwarded = route.map(|_| message.clone());
            enqueue(sender, WriterMessage::Expect { tag, request: message, key: Some(participant), received });
            match (route, forwarded, pan) {
                (Some(route), Some(forwarded), Some(pan)) => {
                    let forward = Arc::clone(&context.forwarding).forward(request, forwarded, pan, route);
                    match &log_span {
                        Some(span) => tokio::spawn(forward.instrument(span.clone())),
                        None => tokio::spawn(forward),
                    };
                }
                _ => context.engine.submit(request),
            }
        }
        Err(code) => {
            if code == "30" {
                metrics.format_errors.inc();
            }
            direct(answer(&message, code), Some(participant));
        }
    }
}

/// A request another partition's door took and forwarded here (`cluster.rs`), read as if
/// it came in on a connection of `acquirer`'s (the door checked its MAC and its sender's
/// role): the engine's request, whose answer goes to `reply`, and its card's BIN route.
/// `Err` is a response code to answer at once.
pub fn prepare_forwarded(
    context: &Arc<IsoContext>,
    message: &Iso8583Message,
    acquirer: ParticipantId,
    sub_merchant: Option<(ParticipantId, Text<15>)>,
    reply: Arc<dyn ReplySink>,
) -> Result<Forwarded, &'static str> {
    let tag = context.next_tag.fetch_add(1, Ordering::Relaxed);
    let (mut request, pan) = to_request(message, context, acquirer, tag, &reply)?;
    if let Some((aggregator, sub_merchant)) = sub_merchant {
        request.detail.aggregator = u32::try_from(aggregator.0).unwrap_or(0);
        request.detail.sub_merchant = sub_merchant;
    }
    let target = context.engine.route(pan);
    // Only a hosted issuer's forwarding needs the card number again.
    let pan = target.as_ref().filter(|route| route.mode != RouteMode::Switch).map(|_| pan.to_string());
    Ok(Forwarded { request, pan, target })
}

/// A forwarded request, read (`prepare_forwarded`).
pub struct Forwarded {
    pub request: Request,
    /// The card number, for a hosted issuer's forwarding only.
    pan: Option<String>,
    pub target: Option<RouteTarget>,
}

impl Forwarded {
    /// Whether this partition's ledger answered the request before (a resend), has it out
    /// at the issuer's host, or booked the original it completes or reverses.
    pub fn booked_here(&self, engine: &Engine) -> bool {
        let request = &self.request;
        if engine.forwarding(request.key) || matches!(engine.answered(request), Ok(Some(_))) {
            return true;
        }
        let original = match request.operation {
            Operation::Complete { original } | Operation::Reverse { original } => original,
            _ => return false,
        };
        matches!(engine.ledger().command_answer(TransferId(original.0)), Ok(Some(_)))
    }
}

/// Submits a forwarded request as if it came in here. Its answer takes a place of the
/// admission bound until then (the caller gives it back); `Err` is a response code to
/// answer at once.
pub fn submit_forwarded(
    context: &Arc<IsoContext>,
    message: Iso8583Message,
    forwarded: Forwarded,
) -> Result<(), &'static str> {
    if !context.admission.try_admit() {
        context.metrics.requests_refused_in_flight_max.inc();
        return Err("91");
    }
    let Forwarded { request, pan, target } = forwarded;
    match (target.filter(|route| route.mode != RouteMode::Switch), pan) {
        (Some(route), Some(pan)) => {
            tokio::spawn(Arc::clone(&context.forwarding).forward(request, Box::new(message), pan, route));
        }
        _ => context.engine.submit(request),
    }
    Ok(())
}

/// The acquirer a request is for. An acquirer sends its own (field 32 is its institution
/// id); an acquiring service provider or an aggregator sends for one of its acquirers
/// (field 32 names it, field 33 the sender). No other role originates requests.
fn acquirer_of(
    message: &Iso8583Message,
    sender: &Member,
    directory: &Directory,
) -> Result<ParticipantId, &'static str> {
    let field = |n: u8| message.get(n).map(normalize_institution);
    match sender.role {
        Role::Acquirer if field(32) == Some(normalize_institution(&sender.institution_id)) => Ok(sender.id),
        Role::Acquirer => Err("field 32 names another institution"),
        Role::AcquiringServiceProvider | Role::Aggregator => {
            if field(33) != Some(normalize_institution(&sender.institution_id)) {
                return Err("an acquiring service provider's or aggregator's field 33 must be its own institution id");
            }
            let acquirer =
                message.get(32).and_then(|id| directory.by_institution(id)).ok_or("field 32 names no acquirer")?;
            if !sender.acts_for.contains(&acquirer.id) || acquirer.role != Role::Acquirer {
                return Err("field 32 names an acquirer the provider does not act for");
            }
            if acquirer.is_retired() {
                return Err("field 32 names a retired acquirer");
            }
            Ok(acquirer.id)
        }
        _ => Err("only an acquirer or its service provider sends requests"),
    }
}

/// Field 48 of an aggregator's request: `SUB` and its sub-merchant's id, 1 to 15 letters,
/// digits or dashes.
pub const SUB_MERCHANT_TAG: &str = "SUB";

fn sub_merchant_of(message: &Iso8583Message) -> Option<Text<15>> {
    let id = message.get(48)?.strip_prefix(SUB_MERCHANT_TAG)?;
    let valid = (1..=15).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| Text::new(id))
}

/// A traced ISO 8583 request's root span, named by its MTI, with the fields that identify
/// it (never the card number).
fn trace_root(telemetry: &Telemetry, message: &Iso8583Message) -> Traced {
    let mut attributes = vec![KeyValue::new("iso8583.mti", message.mti().to_string())];
    for (field, name) in [
        (3, "iso8583.processing_code"),
        (11, "iso8583.stan"),
        (32, "iso8583.acquirer_institution"),
        (37, "iso8583.rrn"),
        (41, "iso8583.terminal"),
        (49, "iso8583.currency"),
    ] {
        if let Some(value) = message.get(field) {
            attributes.push(KeyValue::new(name, value.to_string()));
        }
    }
    telemetry.root(format!("iso8583 {}", message.mti()), &opentelemetry::Context::new(), attributes)
}

/// Queues an answer the reader built itself; it counts in flight until it is written.
fn direct(
    sender: &mpsc::Sender<WriterMessage>,
    in_flight: &AtomicUsize,
    response: Iso8583Message,
    key: Option<Signer>,
) {
    in_flight.fetch_add(1, Ordering::AcqRel);
    enqueue(sender, WriterMessage::Direct { response: Box::new(response), key });
}

fn network_management(
    message: &Iso8583Message,
    context: &IsoContext,
    peer: &mut Peer,
    sender: &mpsc::Sender<WriterMessage>,
) -> (Iso8583Message, Option<Signer>) {
    let member = match message.get(32) {
        Some(id) => context.directory.by_institution(id),
        None => peer.signed_on.clone(),
    };
    let Some(member) = member else {
        context.metrics.security_refusals.inc();
        tracing::info!(institution = message.get(32).unwrap_or("-"), "network management from an unknown institution");
        return (answer(message, if message.contains(32) { "63" } else { "30" }), None);
    };
    let signer = match member.verify(|key| mac::verify_decoded(message, &key.mac)) {
        Ok(key) => Signer { member, key },
        Err(error) => {
            context.metrics.security_refusals.inc();
            tracing::warn!(participant = member.id.0, %error, "MAC check failed on network management");
            return (answer(message, error.response_code()), Some(Signer::originating(member)));
        }
    };
    if signer.member.is_retired() {
        context.metrics.security_refusals.inc();
        tracing::warn!(participant = signer.member.id.0, "network management from a retired participant");
        if let Some(link) = peer.link.take() {
            context.links.unregister(&link);
        }
        peer.signed_on = None;
        return (answer(message, "63"), Some(signer));
    }
    let participant = &signer.member;
    let code = match message.get(70) {
        Some("001") => {
            tracing::info!(participant = participant.id.0, name = %participant.name, "signed on");
            if let Some(link) = peer.link.take() {
                context.links.unregister(&link);
            }
            if participant.role == Role::Issuer {
                peer.link = Some(context.links.register(&signer, sender.clone()));
            }
            peer.signed_on = Some(Arc::clone(participant));
            context.sessions.signed_on(peer.connection, participant.id.0);
            "00"
        }
        Some("002") => {
            tracing::info!(participant = participant.id.0, "signed off");
            if let Some(link) = peer.link.take() {
                context.links.unregister(&link);
            }
            peer.signed_on = None;
            context.sessions.signed_off(peer.connection);
            "00"
        }
        Some("301") => {
            context.sessions.echoed(peer.connection);
            "00"
        }
        Some(_) => "12",
        None => "30",
    };
    (answer(message, code), Some(signer))
}

/// Whether an MTI is a response (its third digit is odd).
fn is_response(mti: &str) -> bool {
    mti.as_bytes().get(2).is_some_and(|digit| digit.is_ascii_digit() && (digit - b'0') % 2 == 1)
}

/// Field 7 now: MMDDhhmmss in UTC.
pub fn transmission_time_now() -> String {
    junction_wire::calendar::transmission_time(junction_engine::clock::now_unix_s())
}

/// ISO 8583 response MTI: the third digit goes from request (even) to response (odd).
fn response_mti(mti: &str) -> String {
    let mut bytes: Vec<u8> = mti.bytes().collect();
    if bytes.len() == 4 && bytes.iter().all(u8::is_ascii_digit) {
        if (bytes[2] - b'0').is_multiple_of(2) {
            bytes[2] += 1;
        }
        String::from_utf8(bytes).unwrap_or_else(|_| "0010".into())
    } else {
        "0010".into()
    }
}

/// Fields a response echoes so the client can match it.
const ECHOED_FIELDS: [u8; 14] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];

fn answer(request: &Iso8583Message, code: &str) -> Iso8583Message {
    let mut response = new_message(&response_mti(request.mti()));
    response.copy_fields(request, &ECHOED_FIELDS);
    let _ = response.set(39, code);
    response
}

fn new_message(mti: &str) -> Iso8583Message {
    // `response_mti` only returns four digits, which `new` always accepts.
    Iso8583Message::new(mti).expect("a four-digit MTI is valid")
}

/// The answer to bytes that do not decode: 30, with the request's MTI if it has one.
fn format_error(raw: Option<&[u8]>) -> Iso8583Message {
    let mti = raw.and_then(|r| r.get(..4)).and_then(|m| std::str::from_utf8(m).ok()).unwrap_or("0000");
    let mut response = new_message(&response_mti(mti));
    let _ = response.set(39, "30");
    response
}

/// The engine's request of an ISO 8583 message, and the card number it names.
fn to_request<'m>(
    message: &'m Iso8583Message,
    context: &IsoContext,
    acquirer: ParticipantId,
    tag: u64,
    sink: &Arc<dyn ReplySink>,
) -> Result<(Request, &'m str), &'static str> {
    let required = |field: u8| message.get(field).ok_or("30");
    let mti = message.mti();
    let processing = required(3)?;
    let class = processing.get(..2).ok_or("30")?;
    let original = || -> Result<RequestKey, &'static str> {
        // Field 90: original MTI (4), STAN (6), transmission time (10), acquirer (11), forwarder (11).
        let data = required(90)?;
        let stan = data.get(4..10).ok_or("30")?;
        let time = data.get(10..20).ok_or("30")?;
        let acquirer = data.get(20..31).ok_or("30")?;
        let terminal = required(41)?;
        Ok(request_key(acquirer, terminal, stan, time))
    };
    let operation = match (mti, class) {
        ("0100", "30" | "31") | ("0200", "30" | "31") => Operation::BalanceInquiry,
        ("0100", "00" | "01" | "09") => Operation::Authorize,
        ("0200", "00" | "01" | "09") => Operation::Purchase,
        ("0200", "20") => Operation::Refund,
        ("0220", _) => Operation::Complete { original: original()? },
        ("0400" | "0420", _) => Operation::Reverse { original: original()? },
        _ => return Err("12"),
    };
    let pan = match message.get(2) {
        Some(pan) => pan,
        // Track 2: the PAN is everything before the separator.
        None => required(35)?.split(['=', 'D']).next().ok_or("30")?,
    };
    let amount: u64 = match operation {
        Operation::BalanceInquiry => message.get(4).unwrap_or("0").parse().map_err(|_| "30")?,
        _ => required(4)?.parse().map_err(|_| "30")?,
    };
    let currency = Currency::from_numeric(required(49)?.parse().map_err(|_| "30")?).map_err(|_| "30")?;
    let key = request_key(required(32)?, required(41)?, required(11)?, required(7)?);
    let entry_mode = message.get(22).map_or(EntryMode::Unknown, EntryMode::from_pos_entry_mode);
    let card_expiry_yymm = message.get(14).and_then(|e| e.parse::<u16>().ok());
    let request = Request {
        key,
        operation,
        instrument: Instrument::Card(context.engine.pan_key(pan)),
        amount,
        currency,
        acquirer,
        entry_mode,
        card_expiry_yymm,
        reference: pack_reference(message.get(37), message.get(11)),
        detail: Detail {
            channel: Channel::Iso8583,
            mti: Text::new(mti),
            processing_code: Text::new(processing),
            rrn: Text::new(message.get(37).unwrap_or("")),
            stan: Text::new(message.get(11).unwrap_or("")),
            acquirer_institution: Text::new(message.get(32).unwrap_or("")),
            terminal: Text::new(message.get(41).unwrap_or("")),
            merchant: Text::new(message.get(42).unwrap_or("")),
            mcc: Text::new(message.get(18).unwrap_or("")),
            card: MaskedCard::of(pan),
            acquirer: acquirer.0,
            amount,
            currency_numeric: currency.numeric(),
            ..Detail::default()
        },
        tag,
        reply: Arc::clone(sink),
        trace: Default::default(),
    };
    Ok((request, pan))
}

/// The request key of an ISO 8583 message: acquirer (32), terminal (41), STAN (11) and
/// transmission time (7). A resend has the same key. The key carries the transmission
/// time when field 7 is a valid date (`RequestKey::with_time`), so the ledger can tell a
/// fresh request from a late resend without a look in its cold index.
pub fn request_key(acquirer: &str, terminal: &str, stan: &str, transmission_time: &str) -> RequestKey {
    let key = RequestKey::derive(
        "iso8583",
        &[
            normalize_institution(acquirer).as_bytes(),
            terminal.as_bytes(),
            stan.as_bytes(),
            transmission_time.as_bytes(),
        ],
    );
    match junction_wire::calendar::transmission_unix_s(transmission_time, junction_engine::clock::now_unix_s()) {
        Some(unix_s) => key.with_time(unix_s),
        None => key,
    }
}

/// A submitted request awaiting its answer: what to echo, the key to MAC with, when it came.
type Expected = (Box<Iso8583Message>, Option<Signer>, Instant);

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut receiver: mpsc::Receiver<WriterMessage>,
    context: Arc<IsoContext>,
    in_flight: Arc<AtomicUsize>,
    notify: Arc<tokio::sync::Notify>,
) {
    let mut expected: HashMap<u64, Expected> = HashMap::new();
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUFFER_SIZE_BYTES);
    let mut broken = false;
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                WriterMessage::Expect { tag, request, key, received } => {
                    expected.insert(tag, (request, key, received));
                }
                WriterMessage::Answer(response) => {
                    if let Some((request, key, received)) = expected.remove(&response.tag) {
                        if response.code != ResponseCode::Approved {
                            note_decline(&context.metrics, &request, response.code, response.decline, key.as_ref());
                        }
                        let message = engine_answer(&request, &response);
                        push(&mut out, message, key.as_ref());
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                        context.admission.release();
                        context.metrics.observe(response.code, received.elapsed());
                        notify.notify_one();
                    }
                }
                WriterMessage::Direct { response, key } => {
                    if let Some(code) = response.get(39) {
                        context.metrics.responses_by_code.with_label_values(&[INTERFACE_ISO8583, code]).inc();
                        match ResponseCode::from_wire(code) {
                            Some(code) if code != ResponseCode::Approved && !response.mti().starts_with("08") => {
                                note_decline(&context.metrics, &response, code, None, key.as_ref());
                            }
                            _ => {}
                        }
                    }
                    push(&mut out, *response, key.as_ref());
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    notify.notify_one();
                }
                WriterMessage::Forward { message, key } => push(&mut out, *message, Some(&key)),
            }
            if out.len() < READ_BUFFER_SIZE_BYTES {
                next = receiver.try_recv().ok();
            }
        }
        if !broken && !out.is_empty() {
            if let Err(error) = writer.write_all(&out).await {
                tracing::debug!(%error, "iso8583 write failed; dropping further answers");
                broken = true;
            }
        }
        out.clear();
    }
    let _ = writer.shutdown().await;
}

fn engine_answer(request: &Iso8583Message, response: &Response) -> Iso8583Message {
    let mut message = answer(request, response.code.as_str());
    if response.code == ResponseCode::Approved {
        if let Some(code) = response.auth_code {
            let _ = message.set(38, std::str::from_utf8(&code).unwrap_or("000000"));
        }
    }
    if response.stood_in {
        // Field 44 (additional response data): "1", the switch answered for the issuer.
        let _ = message.set(44, STOOD_IN_MARK);
    }
    if let Some((available, currency)) = response.balance {
        // Field 54: account type, amount type 02 (available), currency, sign, 12 digits.
        let sign = if available < 0 { 'D' } else { 'C' };
        let value = format!("0002{:03}{sign}{:012}", currency.numeric(), available.unsigned_abs().min(999_999_999_999));
        let _ = message.set(54, &value);
    }
    message
}

/// Notes a declined request for the console: `message` is the request, or an answer that
/// echoes its fields (a refusal of the gateway's own). The card number is masked here.
fn note_decline(
    metrics: &Metrics,
    message: &Iso8583Message,
    code: ResponseCode,
    reason: Option<DeclineReason>,
    participant: Option<&Signer>,
) {
    let pan = match message.get(2) {
        Some(pan) => pan,
        None => message.get(35).and_then(|track| track.split(['=', 'D']).next()).unwrap_or(""),
    };
    metrics.recent_declines.note(Decline {
        unix_ms: crate::activity::now_unix_ms(),
        interface: INTERFACE_ISO8583,
        participant: participant.map_or(0, |p| p.member.id.0),
        mti: Text::new(message.mti()),
        card: MaskedCard::of(pan),
        amount: message.get(4).and_then(|amount| amount.parse().ok()).unwrap_or(0),
        currency_numeric: message.get(49).and_then(|currency| currency.parse().ok()).unwrap_or(0),
        code,
        reason,
        stan: Text::new(message.get(11).unwrap_or("")),
        rrn: Text::new(message.get(37).unwrap_or("")),
    });
}

/// Field 44 of an answer the switch gave standing in for the issuer.
pub const STOOD_IN_MARK: &str = "1";

fn push(out: &mut Vec<u8>, mut message: Iso8583Message, key: Option<&Signer>) {
    let encoded = match key {
        Some(signer) => mac::sign_framed(&mut message, &signer.key.mac, out).map(|_| ()),
        None => message.encode_framed(out).map(|_| ()),
    };
    if let Err(error) = encoded {
        tracing::error!(%error, summary = %message.summary(), "an answer does not encode");
    }
}

/// For logs: a message's PAN masked (first 6, last 4).
pub fn masked_pan(message: &Iso8583Message) -> String {
    message.get(2).map(|pan| MaskedPan(pan).to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_connection_sheds_only_after_its_reads_stay_full_for_the_threshold() {
        let mut backlog = Backlog::default();
        let start = Instant::now();
        let after = |ms: u64| start + Duration::from_millis(ms);
        assert!(!backlog.observe(100, 1024, after(0)), "a partial read: caught up");
        assert!(!backlog.observe(1024, 1024, after(1)), "the first full read starts the clock");
        assert!(!backlog.observe(1024, 1024, after(SHED_AFTER_BEHIND_MS)));
        assert!(backlog.observe(1024, 1024, after(1 + SHED_AFTER_BEHIND_MS)), "full reads for the threshold");
        assert!(!backlog.observe(1023, 1024, after(2 + SHED_AFTER_BEHIND_MS)), "a drained socket ends it");
        assert!(!backlog.observe(1024, 1024, after(3 + SHED_AFTER_BEHIND_MS)), "and the clock starts again");
    }
}
