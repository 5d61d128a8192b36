//! A partitioned switch on NATS: partitions own issuers, any node is a door, and a cut-off
//! is one event for the whole switch with one merged clearing set.
//!
//! - **Partitions.** A partition is a primary and its standbys with a journal stream of
//!   its own (`replication.rs`, `replication.stream` differs per partition). It owns a
//!   set of issuers: their cards' accounts, caps and journal. The partition map (issuer ->
//!   partition) is the key-value bucket `cluster.map_bucket` (keys `issuer.<id>`), which
//!   every node reads at start and watches; `junction cluster move` changes it. An issuer
//!   the map does not name is served where the request arrives (a single switch's way).
//! - **Any node is a door.** A request for a card (by its BIN route's issuer) that another
//!   partition owns goes to that partition's primary over core NATS request/reply
//!   (subject `<bucket>.<partition>.iso8583`, queue group per partition, a deadline of
//!   `cluster.request_timeout_ms`): the ISO 8583 message as the acquirer sent it (its MAC
//!   checked at the door), the acquirer and any sub-merchant in headers. The owner takes
//!   it as if it came in on its own port, answers after its own durable commit, and the
//!   door writes the answer signed with the acquirer's key. The request key is the
//!   acquirer's fields, so a resend through any door reaches the same ledger and gets the
//!   original answer; the door itself sends again while no answer comes (a takeover in
//!   the owning partition), until `cluster.request_timeout_ms`. No answer by then: 91 (the
//!   owner may still book it; the acquirer's resend then gets that answer).
//! - **One cut-off.** `POST /v1/admin/cluster/cutoff` on any node puts `cut.<n>` with the
//!   partitions of the map at that moment. Every partition's primary sees it, closes its
//!   window (the cut's window is kept in its ledger's metadata first, so a crash in
//!   between neither loses nor repeats the close), writes and verifies its files, uploads
//!   them to the object store `<bucket>_files` under `<n>/<partition>/`, and puts
//!   `part.<n>.<partition>`. The primary of the first partition (by name) waits for every
//!   part, downloads them and merges them (`junction_clearing::merge_parts`) into
//!   `clearing/cut-<n>/`, which it uploads too, and puts `merged.<n>`.

use crate::config::{ClusterConfig, ReplicationConfig};
use crate::iso_gateway::{self, IsoContext};
use crate::windows::Windows;
use anyhow::{anyhow, bail, Context, Result};
use arc_swap::ArcSwap;
use async_nats::jetstream::{self, kv, object_store, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use junction_engine::detail::Text;
use junction_engine::model::{ReplySink, RequestKey, Response};
use junction_engine::{DeclineReason, Engine, ResponseCode};
use junction_ledger::{Currency, ParticipantId};
use junction_wire::iso8583::Iso8583Message;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Keys of the bucket: an issuer's partition, a cut-off, a partition's part of a cut, and
/// a cut's merged set.
const ISSUER_KEY: &str = "issuer.";
/// A partition that exists (put by its nodes at start): every cut-off takes a part of it,
/// whether the map gives it issuers or not (an issuer moved away leaves its books there).
const PARTITION_KEY: &str = "partition.";
const CUT_KEY: &str = "cut.";
const PART_KEY: &str = "part.";
const MERGED_KEY: &str = "merged.";
const CAP_KEY: &str = "cap.";

/// A cap's pool is leased in slices of this share of the cap, divided by the partitions.
const CAP_SLICES: u64 = 4;

/// The most rounds of cap leasing a starting partition runs before its first request.
const START_CAP_ROUNDS_MAX: usize = 20;

/// How often a partition looks at its headroom under each leased cap.
const CAP_LEASE_EVERY: Duration = Duration::from_millis(100);

/// Headers of a forwarded request.
const HEADER_ACQUIRER: &str = "Junction-Acquirer";
const HEADER_AGGREGATOR: &str = "Junction-Aggregator";
const HEADER_SUB_MERCHANT: &str = "Junction-Sub-Merchant";
/// Set on a request a partition sends the one its issuer moved from: answer it only if
/// you booked it (or its original), else say so.
const HEADER_LOOKUP: &str = "Junction-Moved-Lookup";

/// `Answer::status`: the issuer is not (or not yet) this partition's: find its owner in
/// the map and send the request there.
const STATUS_MOVED: &str = "moved";
/// `Answer::status` to a lookup: this partition did not book the request.
const STATUS_NOT_BOOKED_HERE: &str = "not_booked_here";

/// The ledger metadata that ties a cut to the window it closes in this partition.
const CUT_WINDOW_RECORD: &[u8] = b"cluster/cut/";

/// Requests a partition serves for other doors at once; past it they are answered 91.
pub const FORWARDED_IN_FLIGHT_MAX: usize = 8192;

/// Pause before watching the bucket again after its watch ended (a NATS server gone).
const REWATCH_PAUSE: Duration = Duration::from_millis(500);

/// The longest one attempt of a forwarded request waits for its answer, and the pause
/// before the next when the partition has no primary to answer.
const FORWARD_ATTEMPT_WAIT: Duration = Duration::from_millis(1_000);
const FORWARD_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long a starting node keeps trying to open the map (a cluster just formed).
const OPEN_WAIT: Duration = Duration::from_secs(60);
/// How long past the lookback a moved issuer's accounts are still swept.
const MOVED_SWEEP_GRACE_S: u64 = 86_400;

/// How long the merging node waits for every partition's part of a cut.
const PARTS_WAIT: Duration = Duration::from_secs(600);

/// A forwarded request's answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decline: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    balance: Option<(String, u16)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(default)]
    stood_in: bool,
    /// Not an answer to the acquirer: `STATUS_MOVED` or `STATUS_NOT_BOOKED_HERE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

impl Answer {
    fn of(response: &Response) -> Answer {
        Answer {
            code: response.code.as_str().to_string(),
            decline: response.decline.map(DeclineReason::id),
            auth_code: response.auth_code.map(|code| String::from_utf8_lossy(&code).into_owned()),
            balance: response.balance.map(|(minor, currency)| (minor.to_string(), currency.numeric())),
            timestamp: response.timestamp,
            stood_in: response.stood_in,
            status: None,
        }
    }

    fn refusal(code: &str) -> Answer {
        Answer {
            code: code.to_string(),
            decline: None,
            auth_code: None,
            balance: None,
            timestamp: None,
            stood_in: false,
            status: None,
        }
    }

    fn status(status: &str) -> Answer {
        Answer { status: Some(status.to_string()), ..Answer::refusal(ResponseCode::SystemUnavailable.as_str()) }
    }

    /// The door's `Response` for its own request `tag` and `key`.
    fn response(&self, tag: u64, key: RequestKey) -> Option<Response> {
        let code = ResponseCode::from_wire(&self.code)?;
        let auth_code = match &self.auth_code {
            Some(text) => Some(<[u8; 6]>::try_from(text.as_bytes()).ok()?),
            None => None,
        };
        let balance = match &self.balance {
            Some((minor, numeric)) => Some((minor.parse().ok()?, Currency::from_numeric(*numeric).ok()?)),
            None => None,
        };
        Some(Response {
            tag,
            key,
            code,
            decline: self.decline.and_then(DeclineReason::from_id),
            auth_code,
            balance,
            timestamp: self.timestamp,
            stood_in: self.stood_in,
        })
    }
}

/// A cut-off of the whole switch, as put in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CutRecord {
    pub cut: u64,
    /// Every partition of the map when the cut was made, sorted.
    pub partitions: Vec<String>,
    pub requested_by: String,
}

/// One partition's part of a cut.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartRecord {
    pub partition: String,
    pub window: u64,
    /// SHA-256 of the part's manifest.json.
    pub manifest_sha256: String,
    /// Its files in the object store: `<cut>/<partition>/<name>`.
    pub files: Vec<String>,
    pub node: String,
}

/// A request a door sends to the partition that owns its card.
pub struct Forward {
    /// The card's issuer (by its BIN route): the map says which partition owns it.
    pub issuer: ParticipantId,
    /// The ISO 8583 message as the acquirer sent it (its MAC checked at the door).
    pub raw: Bytes,
    pub acquirer: ParticipantId,
    /// An aggregator's request: the aggregator and its sub-merchant.
    pub sub_merchant: Option<(ParticipantId, Text<15>)>,
}

/// Where the map puts an issuer (the value of `issuer.<id>`): a partition's name alone, or
/// JSON while the issuer moves or after it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The partition that owns the issuer.
    pub partition: String,
    /// The issuer is moving there: `partition` drains it (doors hold its requests), hands
    /// its accounts and cards over, and then puts the issuer's new placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
    /// The issuer moved here from this partition, which still answers the resends and
    /// follow-ups of what it booked: asked first until `since` + `cluster.moved_lookback_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    /// When the move started (`moving_to`) or ended (`moved_from`), Unix seconds.
    #[serde(default)]
    pub since: u64,
}

impl Placement {
    fn settled(partition: &str) -> Placement {
        Placement { partition: partition.to_string(), moving_to: None, moved_from: None, since: 0 }
    }

    fn read(value: &[u8]) -> Placement {
        match serde_json::from_slice::<Placement>(value) {
            Ok(placement) => placement,
            Err(_) => Placement::settled(String::from_utf8_lossy(value).trim()),
        }
    }

    fn bytes(&self) -> Bytes {
        if self.moving_to.is_none() && self.moved_from.is_none() {
            return Bytes::from(self.partition.clone());
        }
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A participant's net debit cap in one currency for the whole switch, and what each
/// partition has leased of it (`cap.<participant>.<CCY>` in the bucket). The leases never
/// add up to more than the cap: a partition reserves a slice here before its own cap
/// grows, and lowers its own cap before it gives a slice back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapRecord {
    pub cap: u64,
    pub leases: BTreeMap<String, u64>,
}

impl CapRecord {
    fn leased(&self) -> u64 {
        self.leases.values().sum()
    }
}

/// This node's view of the partitioned switch.
pub struct Partitions {
    /// This node's partition.
    pub me: String,
    node: String,
    map: ArcSwap<BTreeMap<u64, Placement>>,
    /// Every partition that put `partition.<name>`.
    members: parking_lot::Mutex<BTreeSet<String>>,
    client: async_nats::Client,
    kv: kv::Store,
    files: object_store::ObjectStore,
    subject_prefix: String,
    timeout: Duration,
    moved_lookback_s: u64,
    /// Held (shared) while a request's partition is decided and the request submitted;
    /// taken alone by an issuer's move once, so that what was decided before it is in the
    /// engine when the move drains.
    gate: parking_lot::RwLock<()>,
    forwarded_in_flight: AtomicU64,
    /// The caps' pools as last seen (value and revision), kept by the bucket's watch, so
    /// that a round of `sync_caps` reads nothing from NATS unless a lease changes.
    caps: parking_lot::Mutex<BTreeMap<String, (Bytes, u64)>>,
    pub counters: Counters,
}

/// What a partition did, for its status and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests sent to other partitions and answered by them, failed (91 at the door; 503
    /// `partition_unavailable` for a wallet's or payment system's HTTP request), and served
    /// here for other doors (ISO 8583 and HTTP).
    pub forwarded: AtomicU64,
    pub forward_failures: AtomicU64,
    pub served: AtomicU64,
    /// The last cut this partition wrote its part of, and the last it merged.
    pub last_part: AtomicU64,
    pub last_merged: AtomicU64,
    /// Issuers this partition handed over to another, and sweeps of what their accounts
    /// got here afterwards.
    pub moved_away: AtomicU64,
    pub sweeps: AtomicU64,
}

impl Counters {
    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let line = |kind: &str, name: &str, help: &str, value: &AtomicU64| {
            let value = value.load(Ordering::Relaxed);
            format!("# HELP junction_cluster_{name} {help}\n# TYPE junction_cluster_{name} {kind}\njunction_cluster_{name} {value}\n")
        };
        [
            line(
                "counter",
                "forwarded_total",
                "Requests this door sent to another partition and got its answer",
                &self.forwarded,
            ),
            line(
                "counter",
                "forward_failures_total",
                "Requests this door sent to another partition and answered 91 or 503 (no answer in time)",
                &self.forward_failures,
            ),
            line(
                "counter",
                "served_total",
                "Requests this partition answered for other partitions' doors",
                &self.served,
            ),
            line(
                "gauge",
                "last_cut_part",
                "The last cluster cut-off this partition wrote its part of",
                &self.last_part,
            ),
            line("gauge", "last_cut_merged", "The last cluster cut-off this node merged", &self.last_merged),
            line(
                "counter",
                "issuers_moved_away_total",
                "Issuers this partition drained and handed over to another partition",
                &self.moved_away,
            ),
            line(
                "counter",
                "sweeps_total",
                "Sweeps of what moved issuers' accounts got here after their move, sent to their new partition",
                &self.sweeps,
            ),
        ]
        .concat()
    }
}

impl Partitions {
    /// Opens the map bucket and the files' object store (creating them if needed), seeds
    /// the map with the configuration's entries the bucket lacks, and loads it.
    pub async fn open(
        js: &jetstream::Context,
        client: async_nats::Client,
        config: &ClusterConfig,
        replication: &ReplicationConfig,
    ) -> Result<Arc<Partitions>> {
        while_bucket_forms("opening the partition map", || {
            Partitions::try_open(js, client.clone(), config, replication)
        })
        .await
    }

    /// Opens the map, then leases this partition's slices of the net debit caps (twice:
    /// the first round may create the pools), before any request is taken.
    pub async fn start(
        js: &jetstream::Context,
        client: async_nats::Client,
        config: &ClusterConfig,
        replication: &ReplicationConfig,
        engine: &Arc<Engine>,
    ) -> Result<Arc<Partitions>> {
        let partitions = Partitions::open(js, client, config, replication).await?;
        // Rounds until every cap is settled before the first request: its pool made, the
        // configuration's cap down to the (empty) lease, a first slice leased (a round
        // whose compare-and-set lost to another partition's does it again). Without, a
        // participant's first payments after a start were declined for want of headroom.
        for _ in 0..START_CAP_ROUNDS_MAX {
            if !while_bucket_forms("leasing the net debit caps", || partitions.sync_caps(engine)).await? {
                break;
            }
        }
        Ok(partitions)
    }

    async fn try_open(
        js: &jetstream::Context,
        client: async_nats::Client,
        config: &ClusterConfig,
        replication: &ReplicationConfig,
    ) -> Result<Arc<Partitions>> {
        let bucket = &config.map_bucket;
        let kv = crate::replication::open_bucket(js, bucket, replication.replicas)
            .await
            .context("opening the partition map")?;
        let files_bucket = format!("{bucket}_files");
        js.get_or_create_stream(stream::Config {
            name: format!("OBJ_{files_bucket}"),
            subjects: vec![format!("$O.{files_bucket}.C.>"), format!("$O.{files_bucket}.M.>")],
            storage: stream::StorageType::File,
            num_replicas: replication.replicas,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .with_context(|| format!("opening the clearing files' object store {files_bucket}"))?;
        let files = js
            .get_object_store(&files_bucket)
            .await
            .with_context(|| format!("opening the clearing files' object store {files_bucket}"))?;
        for (issuer, partition) in &config.seed {
            let key = format!("{ISSUER_KEY}{issuer}");
            match kv.create(&key, Bytes::from(partition.clone())).await {
                Ok(_) => tracing::info!(issuer, partition, "partition map seeded"),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => return Err(anyhow!("seeding the partition map ({key}): {error}")),
            }
        }
        let member = format!("{PARTITION_KEY}{}", config.partition);
        kv.put(&member, Bytes::from(replication.node.clone()))
            .await
            .with_context(|| format!("putting {member} in the partition map"))?;
        let partitions = Arc::new(Partitions {
            me: config.partition.clone(),
            node: replication.node.clone(),
            map: ArcSwap::default(),
            members: parking_lot::Mutex::new(BTreeSet::new()),
            client,
            kv,
            files,
            subject_prefix: bucket.clone(),
            timeout: Duration::from_millis(config.request_timeout_ms),
            moved_lookback_s: config.moved_lookback_s,
            gate: parking_lot::RwLock::new(()),
            forwarded_in_flight: AtomicU64::new(0),
            caps: parking_lot::Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
        });
        partitions.load().await?;
        Ok(partitions)
    }

    /// Reads the whole map from the bucket.
    async fn load(&self) -> Result<()> {
        let mut keys = self.kv.keys().await.context("listing the partition map")?;
        let mut map = BTreeMap::new();
        while let Some(key) = keys.next().await {
            let key = key.context("listing the partition map")?;
            if let Some(partition) = key.strip_prefix(PARTITION_KEY) {
                self.members.lock().insert(partition.to_string());
                continue;
            }
            let Some(issuer) = key.strip_prefix(ISSUER_KEY).and_then(|id| id.parse::<u64>().ok()) else {
                continue;
            };
            if let Some(value) = self.kv.get(&key).await.with_context(|| format!("reading {key}"))? {
                map.insert(issuer, Placement::read(&value));
            }
        }
        tracing::info!(partition = self.me, issuers = map.len(), "partition map loaded");
        self.map.store(Arc::new(map));
        Ok(())
    }

    /// Whether a request for `issuer`'s cards goes through NATS: another partition owns
    /// the issuer, it is moving, or it moved here lately (the partition it left is asked
    /// first). False for an issuer that is this partition's, or that the map does not name.
    pub fn forwards(&self, issuer: ParticipantId) -> bool {
        let map = self.map.load();
        let Some(placement) = map.get(&issuer.0) else { return false };
        placement.partition != self.me || placement.moving_to.is_some() || self.asks_first(placement).is_some()
    }

    /// The partition an issuer moved here from, while it is still asked first.
    fn asks_first<'p>(&self, placement: &'p Placement) -> Option<&'p str> {
        let from = placement.moved_from.as_deref()?;
        (placement.partition == self.me
            && junction_engine::clock::now_unix_s() < placement.since + self.moved_lookback_s)
            .then_some(from)
    }

    /// Where the map puts `issuer`, if it names it.
    pub fn placement(&self, issuer: u64) -> Option<Placement> {
        self.map.load().get(&issuer).cloned()
    }

    /// Every issuer this partition owns that the map says is moving away.
    pub fn moving_away(&self) -> Vec<(u64, Placement)> {
        let map = self.map.load();
        map.iter()
            .filter(|(_, placement)| placement.partition == self.me && placement.moving_to.is_some())
            .map(|(issuer, placement)| (*issuer, placement.clone()))
            .collect()
    }

    /// Every issuer that moved away from this partition within `cluster.moved_lookback_s`
    /// and a day (after it nothing new is booked here for it: its new owner no longer
    /// asks, and a hold placed before the move has expired), and its owner now.
    pub fn moved_away(&self) -> Vec<(u64, String)> {
        let map = self.map.load();
        let now = junction_engine::clock::now_unix_s();
        map.iter()
            .filter(|(_, placement)| {
                placement.moved_from.as_deref() == Some(&self.me) && placement.partition != self.me
            })
            .filter(|(_, placement)| now <= placement.since + self.moved_lookback_s + MOVED_SWEEP_GRACE_S)
            .map(|(issuer, placement)| (*issuer, placement.partition.clone()))
            .collect()
    }

    /// Held while a request's partition is decided and the request submitted.
    pub fn gate(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// Waits until every request whose partition was decided before now is submitted.
    pub fn close_gate_once(&self) {
        drop(self.gate.write());
    }

    /// The NATS client (the moves' hand-overs).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The subject where `partition`'s primary takes the hand-overs of issuers moving to it.
    pub fn handover_subject(&self, partition: &str) -> String {
        format!("{}.{partition}.handover", self.subject_prefix)
    }

    /// Every partition: those that put `partition.<name>`, those the map names, and this one.
    pub fn partitions(&self) -> Vec<String> {
        let map = self.map.load();
        let mut all: BTreeSet<String> = map
            .values()
            .flat_map(|placement| std::iter::once(placement.partition.clone()).chain(placement.moving_to.clone()))
            .collect();
        all.extend(self.members.lock().iter().cloned());
        all.insert(self.me.clone());
        all.into_iter().collect()
    }

    fn subject(&self, partition: &str) -> String {
        format!("{}.{partition}.iso8583", self.subject_prefix)
    }

    /// The subject where `partition`'s primary takes the HTTP requests of the wallets and
    /// payment systems it books (`doors.rs`).
    pub fn http_subject(&self, partition: &str) -> String {
        format!("{}.{partition}.http", self.subject_prefix)
    }

    /// For `/v1/admin/status`.
    pub fn json(&self) -> serde_json::Value {
        let map = self.map.load();
        json!({
            "partition": self.me,
            "map": map.iter().map(|(issuer, placement)| (issuer.to_string(), placement.partition.clone())).collect::<BTreeMap<_, _>>(),
            "moves": map
                .iter()
                .filter(|(_, placement)| placement.moving_to.is_some() || placement.moved_from.is_some())
                .map(|(issuer, placement)| (issuer.to_string(), json!(placement)))
                .collect::<BTreeMap<_, _>>(),
            "forwarded": self.counters.forwarded.load(Ordering::Relaxed),
            "forward_failures": self.counters.forward_failures.load(Ordering::Relaxed),
            "served_for_other_doors": self.counters.served.load(Ordering::Relaxed),
            "last_cut_part": self.counters.last_part.load(Ordering::Relaxed),
            "last_cut_merged": self.counters.last_merged.load(Ordering::Relaxed),
            "issuers_moved_away": self.counters.moved_away.load(Ordering::Relaxed),
            "sweeps": self.counters.sweeps.load(Ordering::Relaxed),
        })
    }

    /// Sends a request a door received to the partition that owns its card and hands the
    /// answer to `reply` (91 when none comes in time). `raw` is the message as the
    /// acquirer sent it.
    pub async fn forward(self: Arc<Self>, request: Forward, tag: u64, key: RequestKey, reply: Arc<dyn ReplySink>) {
        let Forward { issuer, raw, acquirer, sub_merchant } = request;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ACQUIRER, acquirer.0.to_string().as_str());
        if let Some((aggregator, sub_merchant)) = &sub_merchant {
            headers.insert(HEADER_AGGREGATOR, aggregator.0.to_string().as_str());
            headers.insert(HEADER_SUB_MERCHANT, sub_merchant.as_str());
        }
        // Until the partition answers or the deadline passes: a partition between two
        // primaries (a takeover) has no responder for a moment, and an attempt that gets no
        // answer may have been booked by a primary that died before answering. Sending the
        // same request again is safe (the key is the acquirer's): the new primary answers
        // it from its books if the old one booked it, and books it once if not. While the
        // issuer moves, the request waits here; each attempt reads the map again.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut response = None;
        let mut partition = String::new();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                tracing::warn!(issuer = issuer.0, partition, "no partition answered a forwarded request in time");
                break;
            }
            match self.placement(issuer.0) {
                Some(placement) if placement.moving_to.is_none() => partition = placement.partition,
                _ => {
                    // Moving (or, briefly, out of the map): its new owner takes it soon.
                    tokio::time::sleep(FORWARD_RETRY_PAUSE.min(remaining)).await;
                    continue;
                }
            }
            match self.ask(&partition, &headers, &raw, remaining.min(FORWARD_ATTEMPT_WAIT)).await {
                Ok(answer) if answer.status.is_some() => {
                    // Moved since the map was read here: read it again.
                    tokio::time::sleep(FORWARD_RETRY_PAUSE.min(remaining)).await;
                }
                Ok(answer) => {
                    response = answer.response(tag, key);
                    if response.is_none() {
                        tracing::warn!(partition, code = answer.code, "a partition's answer is not readable");
                    }
                    break;
                }
                Err(error) => {
                    tracing::debug!(partition, %error, "a forwarded request got no answer; sending it again");
                    if error.kind() == async_nats::RequestErrorKind::NoResponders {
                        tokio::time::sleep(FORWARD_RETRY_PAUSE.min(remaining)).await;
                    }
                }
            }
        }
        match response {
            Some(response) => {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                reply.send(response);
            }
            None => {
                self.counters.forward_failures.fetch_add(1, Ordering::Relaxed);
                reply.send(Response::declined(tag, key, DeclineReason::PartitionUnavailable));
            }
        }
    }

    /// One attempt: `raw` to `partition`'s primary, its answer (an unreadable one is a
    /// 91 refusal).
    async fn ask(
        &self,
        partition: &str,
        headers: &HeaderMap,
        raw: &Bytes,
        wait: Duration,
    ) -> Result<Answer, async_nats::RequestError> {
        let request = async_nats::Request::new().headers(headers.clone()).payload(raw.clone()).timeout(Some(wait));
        let message = self.client.send_request(self.subject(partition), request).await?;
        Ok(serde_json::from_slice::<Answer>(&message.payload)
            .unwrap_or_else(|_| Answer::refusal(ResponseCode::SystemUnavailable.as_str())))
    }

    /// Serves the requests other doors send this partition until `shutdown`. Only a
    /// primary calls it (a standby has no engine to serve with).
    pub async fn serve(self: Arc<Self>, iso: Arc<IsoContext>, shutdown: watch::Receiver<bool>) -> Result<()> {
        let subject = self.subject(&self.me);
        tracing::info!(subject, "serving requests forwarded by other partitions' doors");
        let partitions = Arc::clone(&self);
        self.respond(subject, shutdown, move |message| {
            let (partitions, iso) = (Arc::clone(&partitions), Arc::clone(&iso));
            async move {
                let answer = partitions.serve_one(&iso, &message).await;
                (HeaderMap::new(), Bytes::from(serde_json::to_vec(&answer).unwrap_or_default()))
            }
        })
        .await
    }

    /// Answers the requests on `subject` (a queue group per partition: one node of it
    /// answers each) until `shutdown`, each in a task of its own, with what `answer` makes
    /// of it: headers and body.
    pub async fn respond<F, Fut>(&self, subject: String, mut shutdown: watch::Receiver<bool>, answer: F) -> Result<()>
    where
        F: Fn(async_nats::Message) -> Fut,
        Fut: std::future::Future<Output = (HeaderMap, Bytes)> + Send + 'static,
    {
        let mut requests = self
            .client
            .queue_subscribe(subject.clone(), self.me.clone())
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        loop {
            let message = tokio::select! {
                message = requests.next() => match message {
                    Some(message) => message,
                    None => break,
                },
                _ = shutdown.changed() => break,
            };
            let Some(reply) = message.reply.clone() else { continue };
            let (client, answered, subject) = (self.client.clone(), answer(message), subject.clone());
            tokio::spawn(async move {
                let (headers, body) = answered.await;
                if let Err(error) = client.publish_with_headers(reply, headers, body).await {
                    tracing::warn!(subject, %error, "answering a forwarded request failed");
                }
            });
        }
        let _ = requests.unsubscribe().await;
        Ok(())
    }

    async fn serve_one(&self, iso: &Arc<IsoContext>, message: &async_nats::Message) -> Answer {
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let Some(acquirer) = header(HEADER_ACQUIRER).and_then(|id| id.parse::<u64>().ok()) else {
            return Answer::refusal("30");
        };
        let sub_merchant = match (header(HEADER_AGGREGATOR), header(HEADER_SUB_MERCHANT)) {
            (Some(aggregator), Some(sub_merchant)) => match aggregator.parse::<u64>() {
                Ok(aggregator) => Some((ParticipantId(aggregator), Text::new(&sub_merchant))),
                Err(_) => return Answer::refusal("30"),
            },
            _ => None,
        };
        let lookup = header(HEADER_LOOKUP).is_some();
        let Ok(request) = Iso8583Message::decode(&message.payload) else {
            return Answer::refusal("30");
        };
        if self.forwarded_in_flight.fetch_add(1, Ordering::AcqRel) >= FORWARDED_IN_FLIGHT_MAX as u64 {
            self.forwarded_in_flight.fetch_sub(1, Ordering::AcqRel);
            return Answer::refusal(ResponseCode::SystemUnavailable.as_str());
        }
        let answer = self.serve_request(iso, request, ParticipantId(acquirer), sub_merchant, lookup, message).await;
        self.forwarded_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.counters.served.fetch_add(1, Ordering::Relaxed);
        answer
    }

    async fn serve_request(
        &self,
        iso: &Arc<IsoContext>,
        request: Iso8583Message,
        acquirer: ParticipantId,
        sub_merchant: Option<(ParticipantId, Text<15>)>,
        lookup: bool,
        message: &async_nats::Message,
    ) -> Answer {
        let (sender, receiver) = oneshot::channel();
        let sink: Arc<dyn ReplySink> = Arc::new(OneAnswer(parking_lot::Mutex::new(Some(sender))));
        let forwarded = match iso_gateway::prepare_forwarded(iso, &request, acquirer, sub_merchant, sink) {
            Ok(forwarded) => forwarded,
            Err(code) => return Answer::refusal(code),
        };
        let placement = forwarded.target.as_ref().and_then(|target| self.placement(target.issuer.0));
        // An issuer that moved here lately: the partition it left answers what it booked.
        let ask_first = placement.as_ref().filter(|_| !lookup).and_then(|p| self.asks_first(p)).map(str::to_string);
        if let Some(from) = ask_first {
            let mut headers = message.headers.clone().unwrap_or_default();
            headers.insert(HEADER_LOOKUP, "1");
            match self.ask(&from, &headers, &message.payload, FORWARD_ATTEMPT_WAIT).await {
                Ok(answer) if answer.status.as_deref() == Some(STATUS_NOT_BOOKED_HERE) => {}
                Ok(answer) => return answer,
                // Not known yet: the door sends it again.
                Err(_) => return Answer::status(STATUS_MOVED),
            }
        }
        let submitted = {
            let _gate = self.gate();
            // Re-read under the gate: a move that starts now waits for this submission.
            let placement = forwarded.target.as_ref().and_then(|target| self.placement(target.issuer.0));
            let ours = placement.as_ref().is_none_or(|p| p.partition == self.me && p.moving_to.is_none());
            if lookup || !ours {
                // The issuer is not (or no longer) this partition's: what it booked it
                // still answers, anything else goes to the owner.
                if !forwarded.booked_here(&iso.engine) {
                    return Answer::status(if lookup { STATUS_NOT_BOOKED_HERE } else { STATUS_MOVED });
                }
            }
            iso_gateway::submit_forwarded(iso, request, forwarded)
        };
        match submitted {
            Ok(()) => {
                let answered = receiver.await;
                iso.admission.release();
                match answered {
                    Ok(response) => Answer::of(&response),
                    Err(_) => Answer::refusal(ResponseCode::SystemUnavailable.as_str()),
                }
            }
            Err(code) => Answer::refusal(code),
        }
    }

    /// Follows the bucket: the map's changes, and cut-offs (this partition's part; the
    /// merge when this partition merges). Runs until `shutdown`.
    pub async fn follow(self: Arc<Self>, windows: Arc<Windows>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let watched = self.kv.watch_with_history(">").await;
            let mut entries = match watched {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "watching the partition map failed; trying again");
                    tokio::time::sleep(REWATCH_PAUSE).await;
                    continue;
                }
            };
            loop {
                let entry = tokio::select! {
                    entry = entries.next() => entry,
                    _ = shutdown.changed() => return,
                };
                match entry {
                    Some(Ok(entry)) => self.apply(entry, &windows),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "the partition map's watch failed; watching again");
                        break;
                    }
                    None => break,
                }
            }
            tokio::time::sleep(REWATCH_PAUSE).await;
        }
    }

    fn apply(self: &Arc<Self>, entry: kv::Entry, windows: &Arc<Windows>) {
        let deleted = entry.operation != kv::Operation::Put;
        if entry.key.starts_with(CAP_KEY) {
            if deleted {
                self.caps.lock().remove(&entry.key);
            } else {
                self.remember_cap(&entry.key, entry.value, entry.revision);
            }
            return;
        }
        if let Some(partition) = entry.key.strip_prefix(PARTITION_KEY) {
            if deleted {
                self.members.lock().remove(partition);
            } else {
                self.members.lock().insert(partition.to_string());
            }
            return;
        }
        if let Some(issuer) = entry.key.strip_prefix(ISSUER_KEY).and_then(|id| id.parse::<u64>().ok()) {
            let mut map = BTreeMap::clone(&self.map.load());
            if deleted {
                map.remove(&issuer);
            } else {
                let placement = Placement::read(&entry.value);
                tracing::info!(
                    issuer,
                    partition = placement.partition,
                    moving_to = placement.moving_to,
                    moved_from = placement.moved_from,
                    "partition map changed"
                );
                map.insert(issuer, placement);
            }
            self.map.store(Arc::new(map));
        } else if let Some(cut) = entry.key.strip_prefix(CUT_KEY).and_then(|n| n.parse::<u64>().ok()) {
            if deleted {
                return;
            }
            let Ok(record) = serde_json::from_slice::<CutRecord>(&entry.value) else {
                tracing::error!(cut, "a cut-off record is not readable");
                return;
            };
            if !record.partitions.contains(&self.me) {
                return;
            }
            let partitions = Arc::clone(self);
            let windows = Arc::clone(windows);
            tokio::spawn(async move {
                if let Err(error) = partitions.take_part(cut, &record, &windows).await {
                    tracing::error!(cut, error = format!("{error:#}"), "this partition's part of a cut-off failed");
                    return;
                }
                if record.partitions.first() == Some(&partitions.me) {
                    if let Err(error) = partitions.merge(cut, &record, &windows).await {
                        tracing::error!(cut, error = format!("{error:#}"), "merging a cut-off's parts failed");
                    }
                }
            });
        }
    }

    /// Starts a cut-off of the whole switch: `cut.<n>` with the next number. Returns it.
    pub async fn cut(&self) -> Result<CutRecord> {
        let mut next = 1;
        let mut keys = self.kv.keys().await.context("listing the cut-offs")?;
        while let Some(key) = keys.next().await {
            if let Some(cut) = key?.strip_prefix(CUT_KEY).and_then(|n| n.parse::<u64>().ok()) {
                next = next.max(cut + 1);
            }
        }
        loop {
            let record = CutRecord { cut: next, partitions: self.partitions(), requested_by: self.node.clone() };
            let body = Bytes::from(serde_json::to_vec(&record)?);
            match self.kv.create(format!("{CUT_KEY}{next}"), body).await {
                Ok(_) => {
                    tracing::info!(cut = next, partitions = ?record.partitions, "cluster cut-off started");
                    return Ok(record);
                }
                // Another node started one at the same moment: take the next number.
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => next += 1,
                Err(error) => bail!("starting cut-off {next}: {error}"),
            }
        }
    }

    /// Sets a participant's net debit cap for the whole switch: the total its partitions
    /// lease from. Leases above a lowered cap stay until their partitions give them back.
    pub async fn set_cap(&self, participant: ParticipantId, currency: Currency, cap: u64) -> Result<()> {
        let key = format!("{CAP_KEY}{}.{}", participant.0, currency.code());
        loop {
            let entry = self.kv.entry(&key).await.with_context(|| format!("reading {key}"))?;
            let (mut record, revision) = match &entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    (serde_json::from_slice::<CapRecord>(&entry.value)?, Some(entry.revision))
                }
                _ => (CapRecord::default(), None),
            };
            record.cap = cap;
            let body = Bytes::from(serde_json::to_vec(&record)?);
            let written = match revision {
                Some(revision) => self.kv.update(&key, body, revision).await.map(|_| ()).map_err(|e| e.to_string()),
                None => self.kv.create(&key, body).await.map(|_| ()).map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(()),
                // Another node changed it in between: read it again.
                Err(error) => tracing::debug!(key, error, "a cap's pool changed while it was set; again"),
            }
        }
    }

    /// Keeps this partition's share of every participant's net debit caps, until
    /// `shutdown`: each cap is a pool for the whole switch in the bucket, and a partition
    /// enforces, as its engine's own cap, what it has leased of it. When its headroom
    /// falls below a slice it leases another (a quarter of the cap over the number of partitions) if
    /// the pool has one; when it has more than it uses it gives back. `sync_caps` has run once before requests are
    /// taken.
    pub async fn lease_caps(self: Arc<Self>, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CAP_LEASE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(error) = self.sync_caps(&engine).await {
                tracing::warn!(error = format!("{error:#}"), "leasing net debit caps failed; trying again");
            }
        }
    }

    /// One round of `lease_caps`: for each participant's cap in each currency, this
    /// partition's engine cap made equal to its lease, and the lease grown or shrunk.
    /// Whether any cap changed or wanted to (another round has work).
    pub async fn sync_caps(&self, engine: &Arc<Engine>) -> Result<bool> {
        let mut busy = false;
        for participant in engine.participants() {
            for (currency, local) in participant.net_debit_caps.clone() {
                busy |= self.sync_cap(engine, participant.id, currency, local).await?;
            }
        }
        Ok(busy)
    }

    async fn sync_cap(
        &self,
        engine: &Arc<Engine>,
        participant: ParticipantId,
        currency: Currency,
        local: u64,
    ) -> Result<bool> {
        let key = format!("{CAP_KEY}{}.{}", participant.0, currency.code());
        let cached = self.caps.lock().get(&key).cloned();
        let (value, revision) = match cached {
            Some(cached) => cached,
            None => {
                let entry = self.kv.entry(&key).await.with_context(|| format!("reading {key}"))?;
                let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
                    // The first node to see this cap makes its pool, from its configuration.
                    let record = CapRecord { cap: local, leases: BTreeMap::new() };
                    let _ = self.kv.create(&key, Bytes::from(serde_json::to_vec(&record)?)).await;
                    return Ok(true);
                };
                self.remember_cap(&key, entry.value.clone(), entry.revision);
                (entry.value, entry.revision)
            }
        };
        let mut record: CapRecord = serde_json::from_slice(&value)?;
        let leased = record.leases.get(&self.me).copied().unwrap_or(0);
        let set_local = |cap: u64| {
            let engine = Arc::clone(engine);
            tokio::task::spawn_blocking(move || engine.set_net_debit_cap(participant, currency, cap))
        };
        if local > leased {
            // Enforcing more than the lease (a start from the configuration, or a give-back
            // whose record did not land): the engine's cap comes down to the lease first.
            set_local(leased).await?.map_err(|e| anyhow!("setting the cap of {}: {e}", participant.0))?;
            return Ok(true);
        }
        if leased > local {
            // A give-back whose record did not land: the record comes down to what is enforced.
            record.leases.insert(self.me.clone(), local);
            self.update_cap(&key, &record, revision).await;
            return Ok(true);
        }
        // Each partition may hold a slice of every cap while idle: slices shrink as
        // partitions are added.
        let partitions = self.partitions().len() as u64;
        let slice = (record.cap / (CAP_SLICES * partitions.max(1))).max(1);
        let headroom = engine.cap_headroom(participant, currency).unwrap_or(0);
        if headroom < i128::from(slice) {
            let free = record.cap.saturating_sub(record.leased());
            if free == 0 {
                return Ok(false);
            }
            let grant = slice.min(free);
            record.leases.insert(self.me.clone(), leased + grant);
            // Reserved in the pool first, then enforced: a crash in between leaves the
            // record above the engine's cap, which the next round corrects.
            if self.update_cap(&key, &record, revision).await {
                set_local(leased + grant).await?.map_err(|e| anyhow!("setting the cap of {}: {e}", participant.0))?;
            }
            return Ok(true);
        } else if headroom > i128::from(3 * slice) && leased > slice {
            let surplus = u64::try_from(headroom - i128::from(2 * slice)).unwrap_or(0).min(leased - slice);
            // Enforced first, then given back.
            set_local(leased - surplus).await?.map_err(|e| anyhow!("setting the cap of {}: {e}", participant.0))?;
            record.leases.insert(self.me.clone(), leased - surplus);
            self.update_cap(&key, &record, revision).await;
            return Ok(true);
        }
        Ok(false)
    }

    fn remember_cap(&self, key: &str, value: Bytes, revision: u64) {
        let mut caps = self.caps.lock();
        match caps.get(key) {
            Some((_, known)) if *known >= revision => {}
            _ => {
                caps.insert(key.to_string(), (value, revision));
            }
        }
    }

    /// Writes a cap's pool if it is still at `revision`. False when another node changed
    /// it first: the cached copy is dropped, and the next round reads it again.
    async fn update_cap(&self, key: &str, record: &CapRecord, revision: u64) -> bool {
        let Ok(body) = serde_json::to_vec(record) else { return false };
        let body = Bytes::from(body);
        match self.kv.update(key, body.clone(), revision).await {
            Ok(written) => {
                self.remember_cap(key, body, written);
                true
            }
            Err(error) => {
                tracing::debug!(key, %error, "a cap's pool changed under this partition; reading it again");
                self.caps.lock().remove(key);
                false
            }
        }
    }

    /// Moves `issuer` to `partition`: an issuer the map does not name yet is placed there
    /// at once; one another partition owns is marked moving, and that partition's primary
    /// drains it, hands it over and puts its new placement (`moving.rs`). Returns the
    /// placement put. A participant that may not move (a wallet, a payment system) is
    /// only placed: refused when the bucket places it elsewhere already.
    pub async fn assign(&self, issuer: u64, partition: &str, may_move: bool) -> Result<Placement> {
        // A move to a partition no node runs would hold the issuer's requests until the
        // doors' deadline, every one.
        if !self.partitions().iter().any(|known| known == partition) {
            bail!("no partition {partition} has started (known: {})", self.partitions().join(", "));
        }
        let key = format!("{ISSUER_KEY}{issuer}");
        let entry = self.kv.entry(&key).await.with_context(|| format!("reading {key}"))?;
        let current = entry.as_ref().filter(|entry| entry.operation == kv::Operation::Put);
        let Some(current) = current else {
            let placement = Placement::settled(partition);
            self.kv.put(&key, placement.bytes()).await.with_context(|| format!("placing issuer {issuer}"))?;
            return Ok(placement);
        };
        let placement = Placement::read(&current.value);
        if placement.moving_to.is_some() {
            bail!("issuer {issuer} is moving to {} already", placement.moving_to.unwrap_or_default());
        }
        if placement.partition == partition {
            return Ok(placement);
        }
        if !may_move {
            bail!(
                "participant {issuer} is placed in partition {} already: its payments' records stay where they \
                 were booked, so it does not move (place it once, before it pays)",
                placement.partition
            );
        }
        let moving = Placement {
            partition: placement.partition,
            moving_to: Some(partition.to_string()),
            moved_from: None,
            since: junction_engine::clock::now_unix_s(),
        };
        self.kv
            .update(&key, moving.bytes(), current.revision)
            .await
            .with_context(|| format!("moving issuer {issuer} to partition {partition} (the map changed meanwhile?)"))?;
        Ok(moving)
    }

    /// Ends a move this partition drained and handed over: the issuer is `to`'s, which
    /// asks this one first for a while. Only if the map still holds the move `moving`.
    pub async fn finish_move(&self, issuer: u64, moving: &Placement) -> Result<()> {
        let key = format!("{ISSUER_KEY}{issuer}");
        let entry = self.kv.entry(&key).await.with_context(|| format!("reading {key}"))?;
        let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
            bail!("issuer {issuer} left the map while it moved");
        };
        if Placement::read(&entry.value) != *moving {
            bail!("issuer {issuer}'s move changed while it was handed over");
        }
        let moved = Placement {
            partition: moving.moving_to.clone().context("not a move")?,
            moving_to: None,
            moved_from: Some(self.me.clone()),
            since: junction_engine::clock::now_unix_s(),
        };
        self.kv
            .update(&key, moved.bytes(), entry.revision)
            .await
            .with_context(|| format!("ending issuer {issuer}'s move"))?;
        Ok(())
    }

    /// This partition's part of cut `cut`: its window closed (once), its files written,
    /// verified and uploaded, `part.<cut>.<me>` put.
    async fn take_part(&self, cut: u64, _record: &CutRecord, windows: &Arc<Windows>) -> Result<()> {
        let part_key = format!("{PART_KEY}{cut}.{}", self.me);
        if self.kv.get(&part_key).await.with_context(|| format!("reading {part_key}"))?.is_some() {
            self.counters.last_part.fetch_max(cut, Ordering::Relaxed);
            return Ok(());
        }
        let windows_for_close = Arc::clone(windows);
        let window = tokio::task::spawn_blocking(move || close_for_cut(&windows_for_close, cut)).await??;
        let folder = windows.folder(window);
        let manifest_sha256 = sha256_of(&folder.join(junction_clearing::MANIFEST_FILE)).await?;
        let mut names = Vec::new();
        let mut listing =
            tokio::fs::read_dir(&folder).await.with_context(|| format!("listing {}", folder.display()))?;
        while let Some(item) = listing.next_entry().await? {
            names.push(item.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in &names {
            let object = format!("{cut}/{}/{name}", self.me);
            self.upload(&folder.join(name), &object).await?;
        }
        let part = PartRecord {
            partition: self.me.clone(),
            window: window.0,
            manifest_sha256,
            files: names,
            node: self.node.clone(),
        };
        self.kv
            .put(&part_key, Bytes::from(serde_json::to_vec(&part)?))
            .await
            .with_context(|| format!("putting {part_key}"))?;
        self.counters.last_part.fetch_max(cut, Ordering::Relaxed);
        tracing::info!(cut, window = window.0, "this partition's part of the cut-off is written and uploaded");
        Ok(())
    }

    async fn upload(&self, path: &Path, object: &str) -> Result<()> {
        let mut file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
        self.files.put(object, &mut file).await.map_err(|error| anyhow!("uploading {object}: {error}"))?;
        Ok(())
    }

    async fn download(&self, object: &str, path: &Path) -> Result<()> {
        let mut source = self.files.get(object).await.map_err(|error| anyhow!("downloading {object}: {error}"))?;
        let mut file = tokio::fs::File::create(path).await.with_context(|| format!("creating {}", path.display()))?;
        tokio::io::copy(&mut source, &mut file).await.with_context(|| format!("downloading {object}"))?;
        file.sync_all().await?;
        Ok(())
    }

    /// Waits for every partition's part of `cut`, downloads them, merges them into
    /// `clearing/cut-<n>/`, uploads the merged set and puts `merged.<cut>`.
    async fn merge(&self, cut: u64, record: &CutRecord, windows: &Arc<Windows>) -> Result<()> {
        let merged_key = format!("{MERGED_KEY}{cut}");
        if self.kv.get(&merged_key).await.with_context(|| format!("reading {merged_key}"))?.is_some() {
            // Merged before (the watch replays every cut when a node starts).
            self.counters.last_merged.fetch_max(cut, Ordering::Relaxed);
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + PARTS_WAIT;
        let mut parts: BTreeMap<String, PartRecord> = BTreeMap::new();
        while parts.len() < record.partitions.len() {
            for partition in &record.partitions {
                if parts.contains_key(partition) {
                    continue;
                }
                if let Some(value) = self.kv.get(format!("{PART_KEY}{cut}.{partition}")).await? {
                    parts.insert(partition.clone(), serde_json::from_slice(&value)?);
                }
            }
            if parts.len() < record.partitions.len() {
                if tokio::time::Instant::now() > deadline {
                    let missing: Vec<&String> = record.partitions.iter().filter(|p| !parts.contains_key(*p)).collect();
                    bail!("cut-off {cut}: no part from {missing:?} within {PARTS_WAIT:?}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let staging = windows.root.join(format!(".cut-{cut:08}.parts"));
        let mut inputs = Vec::new();
        for (partition, part) in &parts {
            let folder = staging.join(partition);
            if folder.exists() {
                tokio::fs::remove_dir_all(&folder).await?;
            }
            tokio::fs::create_dir_all(&folder).await?;
            for name in &part.files {
                self.download(&format!("{cut}/{partition}/{name}"), &folder.join(name)).await?;
            }
            let found = sha256_of(&folder.join(junction_clearing::MANIFEST_FILE)).await?;
            if found != part.manifest_sha256 {
                bail!(
                    "cut-off {cut}: partition {partition}'s manifest downloaded as {found}, recorded {}",
                    part.manifest_sha256
                );
            }
            inputs.push(junction_clearing::Part { partition: partition.clone(), folder });
        }
        let root = windows.root.clone();
        let config = windows.clearing_config();
        let partitions = record.partitions.clone();
        let manifest = tokio::task::spawn_blocking(move || {
            crate::background::run("clearing-merge", || {
                junction_clearing::merge_parts(cut, &partitions, &inputs, &root, &config)
            })
        })
        .await??;
        let folder = windows.root.join(junction_clearing::cut_folder_name(cut));
        let mut names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
        names.push(junction_clearing::MANIFEST_FILE.to_string());
        for name in &names {
            self.upload(&folder.join(name), &format!("{cut}/merged/{name}")).await?;
        }
        let manifest_sha256 = sha256_of(&folder.join(junction_clearing::MANIFEST_FILE)).await?;
        let body = json!({ "cut": cut, "node": self.node, "folder": folder.display().to_string(),
                           "manifest_sha256": manifest_sha256, "files": names });
        self.kv.put(&merged_key, Bytes::from(serde_json::to_vec(&body)?)).await?;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        self.counters.last_merged.fetch_max(cut, Ordering::Relaxed);
        tracing::info!(cut, folder = %folder.display(), transfers = manifest.records.transfers, "the cut-off's merged clearing set is written");
        Ok(())
    }
}

/// Closes this partition's window for cut `cut`, once: the window about to close is kept
/// in the ledger's metadata first, so a restart after a crash finds which window the cut
/// took (closed already, or still to close) instead of closing another one.
/// Runs `attempt` until it succeeds, for up to `OPEN_WAIT`: a bucket just made (by this
/// node or another starting at the same moment) may time out a request for a moment
/// while its Raft group forms.
async fn while_bucket_forms<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + OPEN_WAIT;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = format!("{error:#}"), "{what}: not yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.context(what.to_string())),
        }
    }
}

fn close_for_cut(windows: &Windows, cut: u64) -> Result<junction_ledger::WindowId> {
    let ledger = windows.engine.ledger();
    let mut key = CUT_WINDOW_RECORD.to_vec();
    key.extend_from_slice(&cut.to_be_bytes());
    let window = match ledger.metadata(&key)? {
        Some(bytes) => junction_ledger::WindowId(u64::from_be_bytes(
            bytes.as_slice().try_into().map_err(|_| anyhow!("the cut's window record is damaged"))?,
        )),
        None => {
            let open = ledger.current_window();
            ledger.put_metadata(&[(key, open.0.to_be_bytes().to_vec())])?;
            open
        }
    };
    if ledger.current_window() == window {
        let closed = windows.engine.close_window().map_err(|e| anyhow!("closing window {}: {e}", window.0))?;
        tracing::info!(
            cut,
            window = closed.window.0,
            transfers = closed.transfer_count,
            "settlement window closed for a cluster cut-off"
        );
    }
    windows.write(window).map_err(|e| anyhow!("writing window {}'s files: {e}", window.0))?;
    Ok(window)
}

async fn sha256_of(path: &Path) -> Result<String> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String> {
        use sha2::{Digest, Sha256};
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    })
    .await?
}

/// The one answer of a forwarded request.
struct OneAnswer(parking_lot::Mutex<Option<oneshot::Sender<Response>>>);

impl ReplySink for OneAnswer {
    fn send(&self, response: Response) {
        if let Some(sender) = self.0.lock().take() {
            let _ = sender.send(response);
        }
    }
}
