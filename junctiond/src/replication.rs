//! The journal replicated on NATS JetStream, a leadership lease, and a hot standby.
//!
//! - **The log.** Journal entry `n` of the ledger is message `n` of the stream
//!   `<stream>` (subject `<stream>.journal`, `replication.replicas` Raft replicas). The
//!   primary publishes each entry as the ledger makes it, pipelined, each with
//!   `Nats-Expected-Last-Sequence: n - 1` (fencing: once another node has appended, an
//!   old primary can append nothing more) and `Nats-Msg-Id: <node>:<term>:<n>` (a resend
//!   after a lost acknowledgement is recognised). The ledger releases an entry's waiters
//!   only when it is synced locally *and* acknowledged by the stream.
//! - **The lease.** Key `primary` of the key-value bucket `<stream>_lease`, renewed by the
//!   primary every `lease_ms / 4` with compare-and-set on its revision. The primary
//!   admits requests only until `lease_ms / 2` after the last renewal it *sent* (see
//!   `Admission::serve_until`); a standby takes the lease only after seeing the same
//!   revision for a whole `lease_ms`. So by the time a standby can take over, the old
//!   primary has stopped admitting for at least `lease_ms / 2`, and fencing stops anything
//!   it still had in flight.
//! - **The standby** follows the stream with an ordered consumer and applies each entry
//!   to its own ledger (`Ledger::apply_replicated`: the same replay as recovery). When it
//!   wins the lease, it appends a marker entry (the new term) with the expected last
//!   sequence it has seen, retrying until the marker lands: from then on the old primary
//!   is fenced. It applies everything up to its marker, then starts as a primary.
//! - **Rejoining.** A node whose journal holds entries the stream does not (it was a
//!   primary and died before they were acknowledged: nobody was answered for them) moves
//!   its ledger folder aside and rebuilds from the stream.

use crate::admission::{monotonic_ms, monotonic_us, Admission};
use crate::config::ReplicationConfig;
use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream};
use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use junction_ledger::{JournalSink, Ledger, LedgerOptions, JOURNAL_ENTRY_BYTES_MAX};
use serde_json::json;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The lease's key in its bucket.
const LEASE_KEY: &str = "primary";

/// The metadata record a new primary's marker entry puts.
pub const TERM_RECORD: &[u8] = b"replication/term";

/// Exit status of a primary that found another node has taken over: a supervisor
/// restarts it, and it rejoins as a standby.
pub const EXIT_FENCED: i32 = 75;

/// How long the stream keeps message ids for recognising a resent entry.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long one request to NATS (a publish's acknowledgement, a lease renewal) may take.
const NATS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a starting node keeps trying to open the journal stream and the lease bucket
/// on a cluster that cannot place them yet (just formed, or a server short), and how long
/// it waits between tries.
const CLUSTER_OPEN_WAIT: Duration = Duration::from_secs(60);
const CLUSTER_OPEN_RETRY: Duration = Duration::from_millis(500);

/// Pause between attempts while NATS cannot be reached.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the node is and how far it is, for `junction status` and metrics.
#[derive(Debug, Default)]
pub struct Status {
    pub primary: AtomicBool,
    /// The last journal entry applied locally.
    pub applied_seq: AtomicU64,
    /// The stream's last sequence, as last seen.
    pub stream_seq: AtomicU64,
    /// The primary's term: its lease revision when it took over.
    pub term: AtomicU64,
    /// Publishes acknowledged, and their acknowledgement times (microseconds) in total
    /// and the longest.
    pub acknowledged: AtomicU64,
    pub ack_us_total: AtomicU64,
    pub ack_us_max: AtomicU64,
    /// How long the last takeover took: from winning the lease to serving (ms).
    pub takeover_ms: AtomicU64,
    pub node: String,
}

impl Status {
    pub fn json(&self) -> serde_json::Value {
        let applied = self.applied_seq.load(Ordering::Relaxed);
        let stream = self.stream_seq.load(Ordering::Relaxed);
        json!({
            "role": if self.primary.load(Ordering::Relaxed) { "primary" } else { "standby" },
            "node": self.node,
            "term": self.term.load(Ordering::Relaxed),
            "applied_seq": applied,
            "stream_seq": stream,
            "lag": stream.saturating_sub(applied),
            "acknowledged": self.acknowledged.load(Ordering::Relaxed),
            "ack_us_total": self.ack_us_total.load(Ordering::Relaxed),
            "ack_us_max": self.ack_us_max.load(Ordering::Relaxed),
            "takeover_ms": self.takeover_ms.load(Ordering::Relaxed),
        })
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let applied = self.applied_seq.load(Ordering::Relaxed);
        let stream = self.stream_seq.load(Ordering::Relaxed);
        format!(
            "# HELP junction_replication_primary 1 on the primary, 0 on a standby\n\
             # TYPE junction_replication_primary gauge\njunction_replication_primary {}\n\
             # HELP junction_replication_applied_seq Last journal entry applied on this node\n\
             # TYPE junction_replication_applied_seq gauge\njunction_replication_applied_seq {applied}\n\
             # HELP junction_replication_lag Entries of the stream this node has not applied\n\
             # TYPE junction_replication_lag gauge\njunction_replication_lag {}\n\
             # HELP junction_replication_acks_total Journal entries acknowledged by the stream\n\
             # TYPE junction_replication_acks_total counter\njunction_replication_acks_total {}\n\
             # HELP junction_replication_ack_seconds_total Time from publish to acknowledgement, summed\n\
             # TYPE junction_replication_ack_seconds_total counter\njunction_replication_ack_seconds_total {}\n\
             # HELP junction_replication_ack_seconds_max Longest time from publish to acknowledgement\n\
             # TYPE junction_replication_ack_seconds_max gauge\njunction_replication_ack_seconds_max {}\n",
            u8::from(self.primary.load(Ordering::Relaxed)),
            stream.saturating_sub(applied),
            self.acknowledged.load(Ordering::Relaxed),
            self.ack_us_total.load(Ordering::Relaxed) as f64 / 1e6,
            self.ack_us_max.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// The connection to the NATS cluster: the journal stream and the lease bucket.
#[derive(Clone)]
pub struct Cluster {
    config: ReplicationConfig,
    js: jetstream::Context,
    stream: stream::Stream,
    lease: kv::Store,
    subject: String,
}

impl Cluster {
    /// Connects, and creates the stream and the lease bucket if they are not there.
    pub async fn connect(config: &ReplicationConfig) -> Result<Cluster> {
        let addresses: Vec<async_nats::ServerAddr> = config
            .nats_urls
            .iter()
            .map(|url| url.parse().with_context(|| format!("replication.nats_urls: {url}")))
            .collect::<Result<_>>()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("junctiond {}", config.node))
            .connection_timeout(Duration::from_secs(5))
            .connect(addresses)
            .await
            .with_context(|| format!("connecting to NATS at {}", config.nats_urls.join(", ")))?;
        let max_payload = client.server_info().max_payload;
        if max_payload < JOURNAL_ENTRY_BYTES_MAX {
            bail!(
                "the NATS server accepts messages of {max_payload} bytes at most; journal entries need up to \
                 {JOURNAL_ENTRY_BYTES_MAX}: set max_payload: 8MB in its configuration"
            );
        }
        let mut js = jetstream::new(client);
        js.set_timeout(NATS_REQUEST_TIMEOUT);
        let subject = format!("{}.journal", config.stream);
        let bucket = format!("{}_lease", config.stream);
        // A cluster that has just formed (or lost a server) may not place a replicated
        // stream at once: its creation times out or finds too few peers for a while. A
        // node that starts meanwhile waits for it rather than exit.
        let deadline = tokio::time::Instant::now() + CLUSTER_OPEN_WAIT;
        loop {
            match Cluster::open(&js, config, &subject, &bucket).await {
                Ok((stream, lease)) => return Ok(Cluster { config: config.clone(), js, stream, lease, subject }),
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "the NATS cluster cannot open the journal yet; trying again"
                    );
                    tokio::time::sleep(CLUSTER_OPEN_RETRY).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The journal stream and the lease bucket, created if they are not there.
    async fn open(
        js: &jetstream::Context,
        config: &ReplicationConfig,
        subject: &str,
        bucket: &str,
    ) -> Result<(stream::Stream, kv::Store)> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![subject.to_string()],
                num_replicas: config.replicas,
                storage: stream::StorageType::File,
                max_message_size: JOURNAL_ENTRY_BYTES_MAX as i32,
                duplicate_window: DUPLICATE_WINDOW,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .with_context(|| format!("opening the journal stream {}", config.stream))?;
        let lease = open_bucket(js, bucket, config.replicas).await.context("opening the lease bucket")?;
        Ok((stream, lease))
    }

    /// The JetStream context and the client under it, for the partitioned switch's map
    /// and requests (`cluster.rs`).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// The stream's last sequence: the last journal entry of the cluster.
    pub async fn last_seq(&self) -> Result<u64> {
        let info = self.stream.get_info().await.context("asking the journal stream for its state")?;
        Ok(info.state.last_sequence)
    }

    /// Message `seq` of the stream: its bytes and its message id.
    async fn message(&self, seq: u64) -> Result<(Bytes, String)> {
        let message = self.stream.get_raw_message(seq).await.with_context(|| format!("reading entry {seq}"))?;
        let id = message.headers.get("Nats-Msg-Id").map(|value| value.as_str().to_string()).unwrap_or_default();
        Ok((message.payload, id))
    }

    /// A primary stopping cleanly gives its lease up, so that a standby takes over at
    /// once instead of after `lease_ms`.
    pub async fn step_down(&self) {
        match self.lease.delete(LEASE_KEY).await {
            Ok(()) => tracing::info!("lease given up"),
            Err(error) => tracing::warn!(%error, "giving the lease up; it lapses by itself"),
        }
    }

    fn message_id(&self, term: u64, seq: u64) -> String {
        format!("{}:{term}:{seq}", self.config.node)
    }

    async fn publish(&self, term: u64, seq: u64, bytes: Bytes) -> Result<jetstream::context::PublishAckFuture> {
        let message = jetstream::message::PublishMessage::build()
            .payload(bytes)
            .message_id(self.message_id(term, seq))
            .expected_last_sequence(seq - 1);
        Ok(self.js.send_publish(self.subject.clone(), message).await?)
    }
}

/// A key-value bucket (the lease's, the partition map's), created if it is not there. Its
/// stream is made here as the key-value API would make it: the API's own create asks the
/// server for account details that NATS 2.9 words differently.
pub async fn open_bucket(js: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the bucket {bucket}"))?;
    js.get_key_value(bucket).await.with_context(|| format!("opening the bucket {bucket}"))
}

/// How this node's journal stands against the stream's.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// A prefix of the stream (or equal): follow from the next entry.
    Behind,
    /// The stream is empty and this node has entries: it seeds the stream when primary.
    Seeds,
    /// It has entries the stream does not: they were never acknowledged.
    Diverged,
}

async fn standing(cluster: &Cluster, ledger: &Ledger) -> Result<Standing> {
    let local = ledger.last_seq();
    let remote = cluster.last_seq().await?;
    if local == 0 {
        return Ok(Standing::Behind);
    }
    if remote == 0 {
        return Ok(Standing::Seeds);
    }
    if local > remote {
        return Ok(Standing::Diverged);
    }
    // Entry `local` alike on both sides means the same prefix: a primary's entries carry
    // timestamps, another primary's entry at the same number never matches.
    let (theirs, _) = cluster.message(local).await?;
    let ours = ledger.journal_entry(local)?;
    Ok(if theirs.as_ref() == ours.as_slice() { Standing::Behind } else { Standing::Diverged })
}

/// Opens the ledger for a replicated node: as it is when its journal is a prefix of the
/// stream's; otherwise its folder is moved aside (kept for inspection) and a new ledger
/// is rebuilt from the stream. Returns whether this node must seed an empty stream.
pub async fn open_ledger(cluster: &Cluster, dir: &Path, options: LedgerOptions) -> Result<(Ledger, bool)> {
    let open = |options: LedgerOptions| {
        tokio::task::block_in_place(|| Ledger::open(dir, options))
            .with_context(|| format!("opening the ledger in {}", dir.display()))
    };
    let ledger = open(options.clone())?;
    match standing(cluster, &ledger).await? {
        Standing::Behind => Ok((ledger, false)),
        Standing::Seeds => {
            tracing::info!(entries = ledger.last_seq(), "the journal stream is empty: this node will seed it");
            Ok((ledger, true))
        }
        Standing::Diverged => {
            let local = ledger.last_seq();
            drop(ledger);
            let unix_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = dir.with_file_name(format!("ledger.diverged-{unix_s}"));
            std::fs::rename(dir, &aside)
                .with_context(|| format!("moving {} aside to {}", dir.display(), aside.display()))?;
            tracing::warn!(
                local_entries = local,
                aside = %aside.display(),
                "this node's journal has entries the stream never acknowledged (it was a primary that died): \
                 moved aside, rebuilding from the stream"
            );
            Ok((open(options)?, false))
        }
    }
}

/// What a standby runs until it becomes the primary: it follows the stream and watches
/// the lease. Returns the term once this node holds the lease, has fenced the old primary
/// out with its marker entry, and has applied every entry up to it.
pub async fn follow_until_primary(
    cluster: &Cluster,
    ledger: &Arc<Ledger>,
    status: &Arc<Status>,
    admission: &Arc<Admission>,
    standby: bool,
    seed: bool,
) -> Result<u64> {
    let follower = tokio::spawn(follow(cluster.clone(), Arc::clone(ledger), Arc::clone(status)));
    let result = async {
        let (term, sent_at) = acquire_lease(cluster, status, standby).await?;
        let won_at = monotonic_ms();
        admission.serve_until(sent_at + cluster.config.lease_ms / 2);
        // From here the lease must be kept even while catching up.
        tokio::spawn(keep_lease(cluster.clone(), Arc::clone(ledger), Arc::clone(admission), term));
        if seed {
            seed_stream(cluster, ledger, term).await?;
        }
        let marker = append_marker(cluster, ledger, status, term).await?;
        while ledger.last_seq() < marker {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        status.takeover_ms.store(monotonic_ms() - won_at, Ordering::Relaxed);
        Ok::<u64, anyhow::Error>(term)
    }
    .await;
    follower.abort();
    let _ = follower.await;
    result
}

/// Applies the stream's entries to the ledger as they come, from the next one it lacks.
async fn follow(cluster: Cluster, ledger: Arc<Ledger>, status: Arc<Status>) {
    loop {
        if let Err(error) = follow_once(&cluster, &ledger, &status).await {
            tracing::warn!(error = format!("{error:#}"), "following the journal stream; starting again");
            tokio::time::sleep(RETRY_PAUSE * 5).await;
        }
    }
}

async fn follow_once(cluster: &Cluster, ledger: &Ledger, status: &Status) -> Result<()> {
    let start = ledger.last_seq() + 1;
    let consumer = cluster
        .stream
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: cluster.js.client().new_inbox(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
        .context("creating the follower's consumer")?;
    let mut messages = consumer.messages().await.context("following the stream")?;
    while let Some(message) = messages.next().await {
        let message = message.context("receiving from the stream")?;
        let info = message.info().map_err(|e| anyhow!("a stream message without its metadata: {e}"))?;
        let seq = info.stream_sequence;
        status.stream_seq.fetch_max(seq + info.pending, Ordering::Relaxed);
        let applied = ledger.last_seq();
        if seq <= applied {
            // Seen already (a consumer restarted), or this node seeded it: it must match.
            if ledger.journal_entry(seq)?.as_slice() != message.payload.as_ref() {
                tracing::error!(seq, "the stream's entry differs from this node's: restart to rebuild from the stream");
                std::process::exit(EXIT_FENCED);
            }
            continue;
        }
        if seq != applied + 1 {
            bail!("the stream skipped from entry {applied} to {seq}");
        }
        tokio::task::block_in_place(|| ledger.apply_replicated(seq, &message.payload))
            .with_context(|| format!("applying entry {seq}"))?;
        status.applied_seq.store(seq, Ordering::Relaxed);
    }
    bail!("the stream's consumer ended")
}

/// Waits for the lease to be free (no key) or lapsed (the same revision for a whole
/// `lease_ms`), and takes it with compare-and-set. Returns the new revision (the term)
/// and when the winning request was sent.
async fn acquire_lease(cluster: &Cluster, status: &Status, standby: bool) -> Result<(u64, u64)> {
    let lease_ms = cluster.config.lease_ms;
    let started = monotonic_ms();
    let mut seen: Option<(u64, u64)> = None; // (revision, when first seen)
    let mut logged = false;
    loop {
        if let Ok(last) = cluster.last_seq().await {
            status.stream_seq.fetch_max(last, Ordering::Relaxed);
        }
        let value = Bytes::from(
            json!({ "node": cluster.config.node, "since_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64) })
            .to_string(),
        );
        let sent_at = monotonic_ms();
        match cluster.lease.entry(LEASE_KEY).await {
            Ok(entry) => {
                let live = entry.filter(|e| e.operation == kv::Operation::Put);
                let attempt = match (&live, seen) {
                    // No lease at all: a standby leaves it to the primary for a while.
                    (None, _) if standby && monotonic_ms() - started < lease_ms => None,
                    (None, _) => Some(cluster.lease.create(LEASE_KEY, value).await.map_err(|e| e.to_string())),
                    (Some(entry), Some((revision, since))) if revision == entry.revision => {
                        if monotonic_ms() - since >= lease_ms {
                            tracing::info!(holder = %String::from_utf8_lossy(&entry.value), "the primary's lease has lapsed: taking it");
                            Some(cluster.lease.update(LEASE_KEY, value, revision).await.map_err(|e| e.to_string()))
                        } else {
                            None
                        }
                    }
                    (Some(entry), _) => {
                        if !logged {
                            tracing::info!(holder = %String::from_utf8_lossy(&entry.value), "standby: following the primary");
                            logged = true;
                        }
                        seen = Some((entry.revision, monotonic_ms()));
                        None
                    }
                };
                match attempt {
                    Some(Ok(revision)) => {
                        tracing::info!(term = revision, "this node holds the lease");
                        return Ok((revision, sent_at));
                    }
                    Some(Err(error)) => tracing::info!(%error, "another node took the lease first"),
                    None => {}
                }
            }
            Err(error) => tracing::warn!(%error, "reading the lease"),
        }
        tokio::time::sleep(Duration::from_millis(lease_ms / 8)).await;
    }
}

/// Renews the lease every `lease_ms / 4`, and admits requests until half a lease after
/// each renewal sent. Ends the process when another node has the lease or the ledger has
/// failed (a fenced or unreachable log): it must not answer for the cluster any more.
async fn keep_lease(cluster: Cluster, ledger: Arc<Ledger>, admission: Arc<Admission>, mut revision: u64) {
    let lease_ms = cluster.config.lease_ms;
    let mut warned = false;
    loop {
        tokio::time::sleep(Duration::from_millis(lease_ms / 4)).await;
        if let Err(error) = ledger.health() {
            fenced(&ledger, &format!("the ledger stopped: {error}"));
        }
        let value = Bytes::from(json!({ "node": cluster.config.node }).to_string());
        let sent_at = monotonic_ms();
        let renewal =
            tokio::time::timeout(Duration::from_millis(lease_ms / 4), cluster.lease.update(LEASE_KEY, value, revision))
                .await;
        match renewal {
            Ok(Ok(next)) => {
                revision = next;
                if warned {
                    tracing::info!("lease renewed again: approving");
                    warned = false;
                }
                admission.serve_until(sent_at + lease_ms / 2);
            }
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                fenced(&ledger, "another node holds the lease");
            }
            Ok(Err(error)) => {
                if !warned {
                    tracing::error!(%error, "cannot renew the lease: declining (91) until it is renewed");
                    warned = true;
                }
            }
            Err(_) => {
                if !warned {
                    tracing::error!("renewing the lease timed out: declining (91) until it is renewed");
                    warned = true;
                }
            }
        }
    }
}

/// Another node leads, or this one cannot go on: stop approving at once and end, so that
/// nothing more is answered here. A supervisor restarts the node as a standby.
fn fenced(ledger: &Ledger, why: &str) -> ! {
    tracing::error!(why, "this node is no longer the primary: stopping (it rejoins as a standby on restart)");
    ledger.fail_replication(format!("fenced: {why}"));
    std::process::exit(EXIT_FENCED);
}

/// A node with a journal and an empty stream (replication turned on for an existing
/// switch) publishes its entries first.
async fn seed_stream(cluster: &Cluster, ledger: &Ledger, term: u64) -> Result<()> {
    let last = ledger.last_seq();
    let mut acks = FuturesOrdered::new();
    for seq in 1..=last {
        let bytes = Bytes::from(ledger.journal_entry(seq)?);
        let ack = cluster.publish(term, seq, bytes).await?;
        acks.push_back(async move { ack.await });
        while acks.len() >= 64 {
            acks.next().await.transpose().context("seeding the stream")?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack.context("seeding the stream")?;
    }
    tracing::info!(entries = last, "the journal stream is seeded with this node's journal");
    Ok(())
}

/// Appends the new term's marker after the last entry this node has seen, retrying
/// after whatever the old primary still appended. Returns its sequence number.
async fn append_marker(cluster: &Cluster, ledger: &Ledger, status: &Status, term: u64) -> Result<u64> {
    loop {
        let last = cluster.last_seq().await?;
        status.stream_seq.fetch_max(last, Ordering::Relaxed);
        let record = json!({ "node": cluster.config.node, "term": term }).to_string().into_bytes();
        let marker = Bytes::from(Ledger::metadata_entry(&[(TERM_RECORD.to_vec(), record)]));
        let attempt = async { cluster.publish(term, last + 1, marker).await?.await.map_err(anyhow::Error::from) };
        match attempt.await {
            Ok(ack) => {
                tracing::info!(
                    term,
                    seq = ack.sequence,
                    applied = ledger.last_seq(),
                    "new term appended: the old primary is fenced out"
                );
                return Ok(ack.sequence);
            }
            Err(error) => {
                let wrong_last = error
                    .downcast_ref::<jetstream::context::PublishError>()
                    .is_some_and(|e| e.kind() == PublishErrorKind::WrongLastSequence);
                if !wrong_last {
                    tracing::warn!(error = format!("{error:#}"), "appending the new term");
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// The ledger's side of the replicator: entries in sequence order, handed to the task.
struct Sink {
    entries: mpsc::UnboundedSender<(u64, Bytes)>,
}

impl JournalSink for Sink {
    fn publish(&self, seq: u64, bytes: &[u8]) {
        // Unbounded, but never more than REPLICATION_IN_FLIGHT_MAX entries: the ledger
        // waits for acknowledgements before it hands over more.
        let _ = self.entries.send((seq, Bytes::copy_from_slice(bytes)));
    }
}

/// Makes the ledger replicate every new entry, and runs the publisher.
pub fn start_primary(cluster: Cluster, ledger: Arc<Ledger>, status: Arc<Status>, term: u64) -> Result<()> {
    let (sender, receiver) = mpsc::unbounded_channel();
    ledger.start_replication(Arc::new(Sink { entries: sender }))?;
    status.primary.store(true, Ordering::Relaxed);
    status.term.store(term, Ordering::Relaxed);
    status.applied_seq.store(ledger.last_seq(), Ordering::Relaxed);
    tokio::spawn(publish_loop(cluster, ledger, status, term, receiver));
    Ok(())
}

type Acks =
    FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = (u64, u64, Result<u64, String>)> + Send>>>;

/// Publishes entries as they come, several in flight, and raises the ledger's replicated
/// watermark as acknowledgements arrive in order. On any failure: wait for NATS, work out
/// from the stream which entries landed, publish the rest again.
async fn publish_loop(
    cluster: Cluster,
    ledger: Arc<Ledger>,
    status: Arc<Status>,
    term: u64,
    mut entries: mpsc::UnboundedReceiver<(u64, Bytes)>,
) {
    // Published, not yet acknowledged, in order (at most REPLICATION_IN_FLIGHT_MAX).
    let mut unacked: VecDeque<(u64, Bytes)> = VecDeque::new();
    let mut acks: Acks = FuturesOrdered::new();
    loop {
        let mut failed = tokio::select! {
            entry = entries.recv() => {
                let Some((seq, bytes)) = entry else { return };
                unacked.push_back((seq, bytes.clone()));
                status.applied_seq.store(seq, Ordering::Relaxed);
                match send(&cluster, term, seq, bytes).await {
                    Ok(ack) => { acks.push_back(ack); false }
                    Err(error) => { tracing::warn!(seq, %error, "publishing a journal entry"); true }
                }
            }
            Some((seq, sent_us, result)) = acks.next(), if !acks.is_empty() => match result {
                Ok(stream_seq) if stream_seq == seq => {
                    acknowledged(&ledger, &status, &mut unacked, seq, sent_us);
                    false
                }
                Ok(stream_seq) => fenced(&ledger, &format!("entry {seq} became stream message {stream_seq}")),
                Err(error) => { tracing::warn!(seq, %error, "a journal entry was not acknowledged"); true }
            },
        };
        // Until every unacknowledged entry is out again: nothing else would retry them if
        // no new entry came (a client waiting for its answer sends nothing more).
        while failed {
            acks = FuturesOrdered::new();
            resync(&cluster, &ledger, &status, &mut unacked, term).await;
            let pending: Vec<(u64, Bytes)> = unacked.iter().cloned().collect();
            failed = false;
            for (seq, bytes) in pending {
                match send(&cluster, term, seq, bytes).await {
                    Ok(ack) => acks.push_back(ack),
                    Err(error) => {
                        tracing::warn!(seq, %error, "publishing a journal entry again");
                        failed = true;
                        break;
                    }
                }
            }
        }
    }
}

async fn send(
    cluster: &Cluster,
    term: u64,
    seq: u64,
    bytes: Bytes,
) -> Result<std::pin::Pin<Box<dyn std::future::Future<Output = (u64, u64, Result<u64, String>)> + Send>>> {
    let sent_us = monotonic_us();
    let ack = cluster.publish(term, seq, bytes).await?;
    Ok(Box::pin(async move {
        let result = ack.await.map(|ack| ack.sequence).map_err(|error| {
            if error.kind() == PublishErrorKind::WrongLastSequence {
                format!("wrong last sequence: {error}")
            } else {
                error.to_string()
            }
        });
        (seq, sent_us, result)
    }))
}

fn acknowledged(ledger: &Ledger, status: &Status, unacked: &mut VecDeque<(u64, Bytes)>, seq: u64, sent_us: u64) {
    while unacked.front().is_some_and(|(first, _)| *first <= seq) {
        unacked.pop_front();
    }
    ledger.replicated_through(seq);
    let us = monotonic_us().saturating_sub(sent_us);
    status.acknowledged.fetch_add(1, Ordering::Relaxed);
    status.ack_us_total.fetch_add(us, Ordering::Relaxed);
    status.ack_us_max.fetch_max(us, Ordering::Relaxed);
    status.stream_seq.fetch_max(seq, Ordering::Relaxed);
}

/// After a failed publish: waits until the stream answers, then counts as acknowledged
/// what landed with this term's message ids; anything else at those numbers means
/// another node leads (fenced).
async fn resync(cluster: &Cluster, ledger: &Ledger, status: &Status, unacked: &mut VecDeque<(u64, Bytes)>, term: u64) {
    loop {
        tokio::time::sleep(RETRY_PAUSE).await;
        let Ok(last) = cluster.last_seq().await else { continue };
        let first = unacked.front().map(|(seq, _)| *seq);
        let Some(first) = first else { return };
        if last < first {
            return; // none landed: publish them all again
        }
        // Everything up to `last` is ours only if message `last` is (we publish in order,
        // each expecting the one before).
        let newest_ours = unacked.back().map_or(first, |(seq, _)| *seq);
        let probe = last.min(newest_ours);
        match cluster.message(probe).await {
            Ok((_, id)) if id == cluster.message_id(term, probe) => {
                if last > newest_ours {
                    fenced(ledger, &format!("the stream has {last} entries, this primary wrote {newest_ours}"));
                }
                acknowledged(ledger, status, unacked, probe, monotonic_us());
                return;
            }
            Ok((_, id)) => fenced(ledger, &format!("stream entry {probe} is {id}, not this term's")),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "reading the stream after a failed publish"),
        }
    }
}
