//! `junctiond`'s configuration: TOML, with an embedded default that needs no file.
//!
//! Parsed at the edge and checked as a whole before anything starts; a bad config is a
//! clear error naming the field, never a half-started switch.

use junction_engine::fees::FeeScheduleSpec;
use junction_engine::model::{EntryMode, EntryModes, Role};
use junction_engine::routing::BinRoute;
use junction_ledger::{Currency, ParticipantId};
use junction_wire::iso8583::MaskedPan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The embedded default: a demo switch with a handful of participants, keys and cards.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub switch: SwitchConfig,
    /// The QR gateway's settings (quote lifetime, signature clock skew).
    #[serde(default)]
    pub qr: QrConfig,
    #[serde(default)]
    pub participants: Vec<ParticipantConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub cards: Vec<CardConfig>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The number ranges device tokens are issued from at runtime, per issuer, with the
    /// issuer's rules for approving them (`tokens.rs`).
    #[serde(default)]
    pub token_ranges: Vec<TokenRangeConfig>,
    /// The QR payments' two directions, inbound and outbound, with their own rules
    /// (`qr/flows.rs`); without it, every QR payment is one generic flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_flows: Option<QrFlowsConfig>,
    /// Which acquirer takes a merchant QR, by scheme and merchant identifier.
    #[serde(default)]
    pub qr_routes: Vec<QrRouteConfig>,
    /// Merchant codes that are not EMV (domestic aggregated codes): how to recognise each
    /// kind and read its merchant id (`qr/code_types.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qr_code_types: Vec<QrCodeTypeConfig>,
    /// FX provider rates per currency pair (changeable at runtime through the admin API).
    #[serde(default)]
    pub fx_rates: Vec<FxRateConfig>,
    /// Which issuer a card number prefix (BIN) belongs to, and whether the switch forwards
    /// to its host, stands in for it, or authorizes on its own books (`routing.rs`).
    /// Changeable at runtime through the admin API.
    #[serde(default)]
    pub bin_routes: Vec<BinRoute>,
    /// Credit transfers between payment systems in ISO 20022 (`credit/`): where each
    /// system's credits are pushed, the proxy directory, the limits per debtor.
    #[serde(default)]
    pub credit_transfers: CreditTransfersConfig,
    /// Instant tax refunds for tourists (`tax_refunds.rs`).
    #[serde(default)]
    pub tax_refunds: TaxRefundsConfig,
    /// Interchange and the switch's fees (`engine/src/fees.rs`); changeable at runtime
    /// through the admin API. Absent: no fees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<FeeScheduleSpec>,
    /// How the switch talks to issuers' hosts.
    #[serde(default)]
    pub issuer_links: IssuerLinksConfig,
    /// The journal replicated on NATS JetStream, with a hot standby (`replication.rs`).
    /// Absent: one node, its own disk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationConfig>,
    /// A partitioned switch (`cluster.rs`): this node's partition, which owns a set of
    /// issuers, and the partition map every node shares on NATS. Needs `[replication]`
    /// (each partition has its own journal stream). Absent: one switch owns every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// OpenTelemetry traces of a sampled share of requests, over OTLP/HTTP
    /// (`telemetry.rs`). Absent: nothing is traced, at no cost per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryConfig>,
    /// Secrets read from the environment or a file (`SecretSource`), by field: printed
    /// back as written, never as their values.
    #[serde(skip)]
    pub secret_sources: BTreeMap<String, String>,
}

/// Where traces go and how many requests are traced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP address (`http://host:4318`); spans are posted to
    /// `<otlp_endpoint>/v1/traces` as protobuf.
    pub otlp_endpoint: String,
    /// The share of requests traced, from 0 to 1. A QR API request whose W3C
    /// `traceparent` says its caller sampled it is traced whatever this says (and one
    /// that says not sampled is not).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// The `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_sample_ratio() -> f64 {
    0.01
}

fn default_service_name() -> String {
    "junctiond".into()
}

/// A primary and standbys sharing one journal stream on a NATS JetStream cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// The NATS servers (`nats://host:port`); the client fails over between them.
    pub nats_urls: Vec<String>,
    /// This node's name, unique in the cluster (in the lease and the log).
    pub node: String,
    /// The journal's stream; its subject is `<stream>.journal`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Replicas of the stream and of the lease bucket (3 for a real cluster).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The leadership lease: a primary renews it every quarter of this, stops approving
    /// when it could not for half of it, and a standby takes it over after all of it.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

/// A partitioned switch: see `cluster.rs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's partition (a primary and its standbys share one): letters, digits, -
    /// and _.
    pub partition: String,
    /// The key-value bucket of the partition map and the cluster's cut-offs.
    #[serde(default = "default_map_bucket")]
    pub map_bucket: String,
    /// How long a door waits for the owning partition's answer to a request it forwards
    /// (sending it again while none comes: a takeover there takes about a lease) before
    /// it answers 91.
    #[serde(default = "default_cluster_timeout_ms")]
    pub request_timeout_ms: u64,
    /// After an issuer moved here from another partition, for how long this partition asks
    /// that one first whether it booked a request of the issuer's cards (a resend, or a
    /// completion or reversal of what it booked, is answered there), seconds.
    #[serde(default = "default_moved_lookback_s")]
    pub moved_lookback_s: u64,
    /// The map's first entries (participant id -> partition: an issuer, or a wallet or
    /// payment system, whose requests the partition books), written only where the
    /// bucket has none for that participant: the map in the bucket is the one in force,
    /// changed with `junction cluster move`.
    #[serde(default)]
    pub seed: BTreeMap<String, String>,
}

fn default_map_bucket() -> String {
    "junction_partitions".into()
}

fn default_cluster_timeout_ms() -> u64 {
    10_000
}

/// Eight days: longer than an authorization's hold lives (`AUTH_HOLD_TIMEOUT_S`, 7 days),
/// so a hold's completion always finds the partition that placed it.
fn default_moved_lookback_s() -> u64 {
    8 * 86_400
}

fn default_stream() -> String {
    "JUNCTION".into()
}

fn default_replicas() -> usize {
    3
}

fn default_lease_ms() -> u64 {
    3_000
}

/// Issuers' hosts: they connect to the ISO 8583 port and sign on like acquirers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerLinksConfig {
    /// How long a forwarded request may wait for the issuer's answer before the switch
    /// stands in (or answers 91).
    #[serde(default = "default_issuer_timeout_ms")]
    pub timeout_ms: u64,
    /// How often each link is checked with an echo (0800, 70=301); a link that does not
    /// answer one within `timeout_ms` leaves the rotation until it does.
    #[serde(default = "default_echo_interval_ms")]
    pub echo_interval_ms: u64,
    /// How long an answer that came too late is still matched to its request (for the
    /// late-answer rules).
    #[serde(default = "default_late_answer_window_ms")]
    pub late_answer_window_ms: u64,
    /// How often unacknowledged advices are sent again.
    #[serde(default = "default_advice_retry_ms")]
    pub advice_retry_ms: u64,
}

impl Default for IssuerLinksConfig {
    fn default() -> Self {
        IssuerLinksConfig {
            timeout_ms: default_issuer_timeout_ms(),
            echo_interval_ms: default_echo_interval_ms(),
            late_answer_window_ms: default_late_answer_window_ms(),
            advice_retry_ms: default_advice_retry_ms(),
        }
    }
}

fn default_issuer_timeout_ms() -> u64 {
    1_500
}

fn default_echo_interval_ms() -> u64 {
    5_000
}

fn default_late_answer_window_ms() -> u64 {
    60_000
}

fn default_advice_retry_ms() -> u64 {
    2_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    pub name: String,
    /// The switch's own institution id: field 33 (forwarding institution) of what it
    /// forwards to issuers' hosts.
    #[serde(default = "default_switch_institution_id")]
    pub institution_id: String,
    pub bic: String,
    pub settlement_bank_bic: String,
    pub data_dir: PathBuf,
    pub iso8583_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// TLS on the ISO 8583 port (absent: plain TCP, for a private network or a TLS proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso8583_tls: Option<TlsConfig>,
    /// TLS on the HTTP port: admin API, QR API, console (absent: plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tls: Option<TlsConfig>,
    /// Bearer token of every admin call. Like every secret here it may be written as
    /// `env:NAME` (read from that environment variable) or `file:/path` (read from that
    /// file, one trailing newline dropped) instead of the value itself.
    pub admin_token: String,
    /// Bearer token that may read the admin API (status, positions, windows, accounts,
    /// fees, ...) but change nothing: for dashboards and auditors. A secret like the
    /// admin token. Absent: reads need the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
    #[serde(default)]
    pub shards: usize,
    #[serde(default = "default_commit_delay_us")]
    pub commit_delay_us: u64,
    #[serde(default = "default_queue_depth")]
    pub shard_queue_depth_max: usize,
    /// Requests handed to the engine and not yet answered, over both front ends, past
    /// which new ones are declined at once (91, HTTP 503).
    #[serde(default = "default_requests_in_flight_max")]
    pub requests_in_flight_max: usize,
    /// RocksDB write-ahead log size at which memtables are flushed (0: RocksDB's own
    /// default, about four times the memtables). Smaller means less log to replay at start.
    #[serde(default)]
    pub ledger_wal_size_bytes_max: u64,
    /// Transfers the ledger's index reserves room for at start (0: `index_memory_entries_max`,
    /// the most it holds). Reserved room is never doubled under the commit lock, which
    /// paused commits for 0.1 s at half a million ids and seconds at tens of millions.
    /// 50 to 100 bytes each, taken at start.
    #[serde(default)]
    pub ledger_transfers_reserved: usize,
    /// How long a request key is remembered: a resend within it gets its original answer
    /// (approved or declined). Seconds; 48 hours by default.
    #[serde(default = "default_duplicate_window_s")]
    pub duplicate_window_s: u64,
    /// Request keys and transfer ids kept in memory (65 bytes per table slot, slots a
    /// power of two at least 8/7 of this); older ones are looked up in the ledger's cold
    /// index on disk. 50 million (4.4 GiB) when absent; the demo configuration keeps 3.5M.
    #[serde(default = "default_index_memory_entries_max")]
    pub index_memory_entries_max: usize,
    pub vault_key: String,
    #[serde(default)]
    pub cutoff_utc_offset_minutes: i32,
    /// Daily cut-off times, "HH:MM" in the offset above.
    #[serde(default)]
    pub cutoff_times: Vec<String>,
    /// Crash tests only: accept `POST /v1/admin/faults/panic` (with the admin token).
    /// Set by `junctiond --enable-fault-injection`, never from a configuration file.
    #[serde(skip)]
    pub fault_injection: bool,
    /// Start as a replication standby (`junctiond --standby`), never from a file.
    #[serde(skip)]
    pub standby: bool,
    /// Start with the demo configuration's secrets on a listener beyond loopback
    /// (`junctiond --allow-demo-secrets`), never from a file.
    #[serde(skip)]
    pub allow_demo_secrets: bool,
}

/// A listener's certificate chain and key (PEM files), and, to require client
/// certificates (mutual TLS), the CAs that sign them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

fn default_switch_institution_id() -> String {
    "999999".into()
}

fn default_commit_delay_us() -> u64 {
    junction_engine::COMMIT_DELAY_US_DEFAULT
}

fn default_duplicate_window_s() -> u64 {
    junction_ledger::DUPLICATE_WINDOW_S_DEFAULT
}

fn default_index_memory_entries_max() -> usize {
    junction_ledger::INDEX_MEMORY_ENTRIES_MAX_DEFAULT
}

fn default_requests_in_flight_max() -> usize {
    super::admission::REQUESTS_IN_FLIGHT_MAX_DEFAULT
}

fn default_queue_depth() -> usize {
    junction_engine::SHARD_QUEUE_DEPTH_MAX_DEFAULT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    pub id: u64,
    pub name: String,
    pub role: Role,
    /// What it puts in ISO 8583 field 32 (acquiring institution id), digits.
    pub institution_id: String,
    pub bic: String,
    /// Hex of its MAC/signature key (at least 16 bytes).
    pub key: String,
    /// Net debit cap per currency, minor units. Only an acquiring service provider and a
    /// token requestor, which settle nothing, have none.
    #[serde(default)]
    pub net_debit_caps: BTreeMap<String, u64>,
    /// A payment system's endpoint (`http://` or `https://`): where the switch pushes the
    /// credits for its users (pacs.008) and the returns for its own (pacs.004), and the
    /// final status (pacs.002) of a credit it was first told is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// An acquiring service provider's acquirers (participant ids): the only ones it may
    /// name in field 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acts_for: Vec<u64>,
}

impl ParticipantConfig {
    /// The engine's view of the entry: its id, name, role and caps by currency.
    pub fn spec(&self) -> Result<junction_engine::model::ParticipantSpec, ConfigError> {
        let caps = self
            .net_debit_caps
            .iter()
            .map(|(code, cap)| {
                Ok((Currency::from_code(code).map_err(|e| invalid(format!("participant {}: {e}", self.id)))?, *cap))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(junction_engine::model::ParticipantSpec {
            id: ParticipantId(self.id),
            name: self.name.clone(),
            role: self.role,
            net_debit_caps: caps,
        })
    }

    /// Checks the entry on its own (the configuration checks that ids and institution ids
    /// are unique; the directory, when one is onboarded at runtime).
    pub fn check(&self) -> Result<(), ConfigError> {
        let p = self;
        if p.id == 0 {
            return Err(invalid("participant id 0 is reserved"));
        }
        if p.name.is_empty() || p.name.len() > 140 || p.name.chars().any(char::is_control) {
            return Err(invalid(format!("participant {}: name must be 1-140 characters, none a control", p.id)));
        }
        if p.institution_id.is_empty()
            || p.institution_id.len() > 11
            || !p.institution_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid(format!("participant {}: institution_id must be 1-11 digits", p.id)));
        }
        check_bic(&p.bic)?;
        let key = hex::decode(&p.key).map_err(|_| invalid(format!("participant {}: key must be hex", p.id)))?;
        if key.len() < 16 {
            return Err(invalid(format!("participant {}: key must be at least 16 bytes", p.id)));
        }
        let provider = matches!(p.role, Role::AcquiringServiceProvider | Role::Aggregator);
        let settles_nothing = provider || p.role == Role::TokenRequestor;
        if p.net_debit_caps.is_empty() && !settles_nothing {
            return Err(invalid(format!("participant {}: net_debit_caps names no currency", p.id)));
        }
        if provider == p.acts_for.is_empty() {
            return Err(invalid(format!(
                "participant {}: an acquiring_service_provider or aggregator, and only one, names the acquirers it acts_for",
                p.id
            )));
        }
        if p.role == Role::Aggregator && (p.acts_for.len() != 1 || p.id > u64::from(u32::MAX)) {
            return Err(invalid(format!(
                "participant {}: an aggregator acts_for exactly one acquirer, and its id is below 2^32",
                p.id
            )));
        }
        for code in p.net_debit_caps.keys() {
            Currency::from_code(code).map_err(|e| invalid(format!("participant {}: {e}", p.id)))?;
        }
        match (p.role, &p.endpoint) {
            (Role::PaymentSystem, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {}
            (Role::PaymentSystem, _) => {
                return Err(invalid(format!(
                "participant {}: a payment_system needs an http:// or https:// endpoint where its credits are pushed",
                p.id
            )))
            }
            (_, Some(_)) => {
                return Err(invalid(format!("participant {}: only a payment_system has an endpoint", p.id)))
            }
            (_, None) => {}
        }
        if p.role == Role::PaymentSystem && p.net_debit_caps.len() != 1 {
            return Err(invalid(format!(
                "participant {}: a payment_system settles in exactly one currency (one net_debit_caps entry)",
                p.id
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: u64,
    pub participant: u64,
    pub currency: String,
    #[serde(default)]
    pub opening_balance: u64,
    #[serde(default)]
    pub velocity_count_per_day_max: u32,
    #[serde(default)]
    pub velocity_amount_per_day_max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    pub pan: String,
    pub account: u64,
    /// YYMM.
    pub expiry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub dpan: String,
    /// The account it draws on (0 for a token of a hosted issuer: its host decides).
    #[serde(default)]
    pub account: u64,
    pub expiry: String,
    pub entry_modes: Vec<String>,
    /// The real card number behind a token of a hosted issuer, which its host must see:
    /// sealed by the vault at start, never kept in clear.
    #[serde(default)]
    pub fpan: Option<String>,
}

/// The switch's home market and the rules of each direction of a QR payment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrFlowsConfig {
    /// Two capital letters: its merchants and wallets are domestic.
    pub home_country: String,
    /// What its merchants are paid in and its wallets pay abroad in.
    pub home_currency: String,
    /// A foreign wallet paying a domestic merchant.
    #[serde(default)]
    pub inbound: FlowRulesConfig,
    /// A domestic wallet paying a merchant abroad.
    #[serde(default)]
    pub outbound: FlowRulesConfig,
}

/// One direction's rules; an empty list allows any.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRulesConfig {
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// The currencies the wallets may pay in (inbound: foreign wallets' currencies).
    #[serde(default)]
    pub payer_currencies: Vec<String>,
    /// The merchants' countries (outbound: where domestic wallets may pay).
    #[serde(default)]
    pub merchant_countries: Vec<String>,
    /// The FX provider whose rates convert the direction's payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fx_provider: Option<u64>,
    /// The acquirers that take the direction's payments.
    #[serde(default)]
    pub acquirers: Vec<u64>,
}

impl Default for FlowRulesConfig {
    fn default() -> FlowRulesConfig {
        FlowRulesConfig {
            allowed: true,
            payer_currencies: Vec::new(),
            merchant_countries: Vec::new(),
            fx_provider: None,
            acquirers: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// A range of device token numbers of one issuer (`POST /v1/tokens`), and the issuer's
/// rules for approving tokens of its cards that the switch authorizes: a card the switch
/// knows, not expired, its account active, the issuer in service, a requestor of the list
/// (any when empty), entry modes within `entry_modes`. A card whose BIN routes to the
/// issuer's host is approved by the host instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRangeConfig {
    pub issuer: u64,
    /// The token numbers' first digits: 6 to 11 digits. Every number of the range routes
    /// as this prefix routes in `[[bin_routes]]` (so a hosted issuer's range must route to
    /// its host).
    pub prefix: String,
    /// Digits of a token number, the Luhn check digit included: 13 to 19, and at least 6
    /// more than the prefix.
    #[serde(default = "default_token_length")]
    pub length: usize,
    /// The token requestors the issuer accepts; empty: every one.
    #[serde(default)]
    pub requestors: Vec<u64>,
    /// The most a token of this range may be used for.
    #[serde(default = "default_token_entry_modes")]
    pub entry_modes: Vec<String>,
}

fn default_token_length() -> usize {
    16
}

fn default_token_entry_modes() -> Vec<String> {
    vec!["contactless".into(), "ecommerce".into()]
}

/// Longest quote lifetime the configuration accepts.
pub const QUOTE_TTL_MS_MAX: u64 = 3_600_000;
/// Widest clock skew tolerated on signed QR requests.
pub const SIGNATURE_SKEW_S_MAX: u64 = 3_600;
/// Most `[[qr_routes]]` entries (the table is searched per request: exact match by hash,
/// then prefixes longest first).
pub const QR_ROUTES_MAX: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrConfig {
    /// How long a quote locks its rate.
    #[serde(default = "default_quote_ttl_ms")]
    pub quote_ttl_ms: u64,
    /// How far a signed request's `X-Junction-Timestamp` may be from the switch's clock.
    #[serde(default = "default_signature_skew_s")]
    pub signature_skew_s: u64,
}

impl Default for QrConfig {
    fn default() -> Self {
        QrConfig { quote_ttl_ms: default_quote_ttl_ms(), signature_skew_s: default_signature_skew_s() }
    }
}

fn default_quote_ttl_ms() -> u64 {
    60_000
}

fn default_signature_skew_s() -> u64 {
    300
}

/// Credit transfers between payment systems (ISO 20022; `credit/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditTransfersConfig {
    /// How long the sender's request waits for the receiving system's answer before the
    /// switch answers "pending" (PDNG) and keeps trying in the background.
    #[serde(default = "default_ct_answer_within_ms")]
    pub answer_within_ms: u64,
    /// How long one push to the receiving system may take.
    #[serde(default = "default_ct_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// How often a push that failed (no answer, an error) is tried again.
    #[serde(default = "default_ct_retry_every_ms")]
    pub retry_every_ms: u64,
    /// How long after booking the switch keeps trying; then the money is returned to the
    /// sender and its status is final (rejected, AB05).
    #[serde(default = "default_ct_give_up_after_ms")]
    pub give_up_after_ms: u64,
    /// How long a final record is kept to answer resends (the duplicate window).
    #[serde(default = "default_ct_records_kept_s")]
    pub records_kept_s: u64,
    /// How long a quote (`POST /v1/iso20022/quotes`) locks its rate.
    #[serde(default = "default_ct_quote_ttl_ms")]
    pub quote_ttl_ms: u64,
    /// What a debtor may send, per currency of the sending system.
    #[serde(default)]
    pub limits: Vec<CreditLimitConfig>,
    /// Creditors named by a proxy (a mobile number, an email, a system's payee id).
    #[serde(default)]
    pub proxies: Vec<ProxyConfig>,
}

impl Default for CreditTransfersConfig {
    fn default() -> Self {
        CreditTransfersConfig {
            answer_within_ms: default_ct_answer_within_ms(),
            delivery_timeout_ms: default_ct_delivery_timeout_ms(),
            retry_every_ms: default_ct_retry_every_ms(),
            give_up_after_ms: default_ct_give_up_after_ms(),
            records_kept_s: default_ct_records_kept_s(),
            quote_ttl_ms: default_ct_quote_ttl_ms(),
            limits: Vec::new(),
            proxies: Vec::new(),
        }
    }
}

fn default_ct_answer_within_ms() -> u64 {
    5_000
}

fn default_ct_delivery_timeout_ms() -> u64 {
    3_000
}

fn default_ct_retry_every_ms() -> u64 {
    2_000
}

fn default_ct_give_up_after_ms() -> u64 {
    60_000
}

fn default_ct_quote_ttl_ms() -> u64 {
    60_000
}

fn default_ct_records_kept_s() -> u64 {
    3 * 24 * 3600
}

/// Instant tax refunds (`tax_refunds.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRefundsConfig {
    /// How long customs have to confirm a tourist's departure before the refund is clawed
    /// back (90 days in China's scheme).
    #[serde(default = "default_departure_within_s")]
    pub departure_within_s: u64,
    /// How often refunds past their time are looked for.
    #[serde(default = "default_tax_sweep_every_ms")]
    pub sweep_every_ms: u64,
}

impl Default for TaxRefundsConfig {
    fn default() -> Self {
        TaxRefundsConfig {
            departure_within_s: default_departure_within_s(),
            sweep_every_ms: default_tax_sweep_every_ms(),
        }
    }
}

fn default_departure_within_s() -> u64 {
    90 * 24 * 3600
}

fn default_tax_sweep_every_ms() -> u64 {
    60_000
}

/// The limits of one sending currency, in its minor units; 0 = no limit. Days and years
/// are UTC calendar days and years.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditLimitConfig {
    pub currency: String,
    #[serde(default)]
    pub per_transaction_max: u64,
    #[serde(default)]
    pub per_debtor_day_max: u64,
    #[serde(default)]
    pub per_debtor_year_max: u64,
}

/// A proxy and the creditor it names: the payment system that holds the creditor's
/// account, and the account there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `MBNO` (mobile number), `EMAL` (email) or `PAYEEID` (a system's own payee id; sent
    /// as a proprietary proxy type).
    pub kind: String,
    pub id: String,
    /// The payment system participant that holds the account.
    pub system: u64,
    pub account: String,
    #[serde(default)]
    pub name: String,
}

/// One routing rule: a merchant QR of `scheme` whose merchant identifier equals
/// `identifier` (or starts with `identifier_prefix`) is acquired by participant `acquirer`.
/// Exact rules win over prefixes, and longer prefixes over shorter ones. Identifiers are
/// those of `junction_wire::qr::MerchantKey` ("mobile:0066812345678" for PromptPay, the Pix
/// key, the QRIS NMID, the UnionPay acquirer IIN + merchant ID).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrRouteConfig {
    /// unionpay, pix, promptpay, qris or other.
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier_prefix: Option<String>,
    pub acquirer: u64,
}

/// A kind of merchant code that is not EMV (`[[qr_code_types]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrCodeTypeConfig {
    /// 1-24 of a-z, 0-9 and -: the merchant identifier is `<name>:<merchant id>`.
    pub name: String,
    /// A URL code: `http(s)://host/path...` it starts with (scheme and host compared
    /// without regard to case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_prefix: Option<String>,
    /// Or a fixed prefix of a proprietary code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The merchant id is this URL query parameter's value; without it, what follows the
    /// prefix up to `/`, `?` or `#`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id_param: Option<String>,
    /// `digits` or `alphanumeric`.
    pub merchant_id_chars: String,
    /// `[min, max]` characters.
    pub merchant_id_length: [usize; 2],
    /// What the code's merchants are paid in, where, and as what (the codes carry none of it).
    pub currency: String,
    pub country: String,
    pub mcc: String,
    pub merchant_name: String,
    pub merchant_city: String,
    /// The aggregator whose sub-merchants the codes of this kind are (their merchant ids
    /// are its sub-merchant ids, at most 15 characters): its payments settle through the
    /// aggregator's acquirer, which its routes must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<u64>,
}

/// A rate of an FX provider: one `base` buys `rate` of `quote` (mid), and the provider adds
/// `spread_bps` in its favour. Serves both directions of the pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxRateConfig {
    pub provider: u64,
    pub base: String,
    pub quote: String,
    /// A decimal string ("36.50"): never a float.
    pub rate: String,
    #[serde(default)]
    pub spread_bps: u32,
}

/// The scheme names routes use (as `junction_wire::qr::Scheme::as_str` writes them).
pub fn parse_scheme(name: &str) -> Option<junction_wire::qr::Scheme> {
    use junction_wire::qr::Scheme;
    [Scheme::UnionPay, Scheme::Pix, Scheme::PromptPay, Scheme::Qris, Scheme::Other]
        .into_iter()
        .find(|scheme| scheme.as_str() == name)
}

impl FxRateConfig {
    /// The rate as the FX table holds it; errors name the pair.
    pub fn to_rate(&self) -> Result<super::fx::FxRate, String> {
        let pair = format!("{}/{}", self.base, self.quote);
        let currency = |code: &str| Currency::from_code(code).map_err(|e| format!("fx rate {pair}: {e}"));
        let rate = super::fx::FxRate {
            provider: junction_ledger::ParticipantId(self.provider),
            base: currency(&self.base)?,
            quote: currency(&self.quote)?,
            mid: super::fx::parse_rate(&self.rate).map_err(|e| format!("fx rate {pair}: {e}"))?,
            spread_bps: self.spread_bps,
        };
        rate.check().map_err(|e| format!("fx rate {e}"))?;
        Ok(rate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("config: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

impl Config {
    /// Each participant's country, from its BIC (domestic or cross-border interchange).
    pub fn participant_countries(&self) -> BTreeMap<ParticipantId, [u8; 2]> {
        self.participants
            .iter()
            .filter_map(|p| Some((ParticipantId(p.id), junction_engine::fees::country_of_bic(&p.bic)?)))
            .collect()
    }

    /// The configured fee schedule, checked: valid rates, and a switch participant that
    /// exists.
    pub fn fee_schedule(&self) -> Result<Option<junction_engine::fees::FeeSchedule>, ConfigError> {
        let Some(spec) = &self.fees else { return Ok(None) };
        if let Some(switch) = spec.switch_participant {
            match self.participants.iter().find(|p| p.id == switch) {
                Some(p) if p.role == Role::Switch => {}
                Some(_) => {
                    return Err(invalid(format!("fees: participant {switch} does not have the role \"switch\"")))
                }
                None => return Err(invalid(format!("fees: switch_participant {switch} is not a participant"))),
            }
        }
        spec.to_schedule(self.participant_countries()).map(Some).map_err(|e| invalid(format!("fees: {e}")))
    }

    /// Payment systems (one currency each, an endpoint), the proxies and the limits.
    fn validate_credit_transfers(&self) -> Result<(), ConfigError> {
        let ct = &self.credit_transfers;
        let tax = &self.tax_refunds;
        // The guarantee hold (a u32 of seconds) outlives the window by a week.
        if tax.departure_within_s == 0 || tax.departure_within_s > 10 * 365 * 24 * 3600 || tax.sweep_every_ms == 0 {
            return Err(invalid("tax_refunds: departure_within_s must be 1 s to 10 years, sweep_every_ms above zero"));
        }
        if ct.answer_within_ms == 0
            || ct.delivery_timeout_ms == 0
            || ct.retry_every_ms == 0
            || ct.give_up_after_ms < ct.delivery_timeout_ms
            || ct.records_kept_s == 0
            || ct.quote_ttl_ms == 0
        {
            return Err(invalid(
                "credit_transfers: the times must be above zero, and give_up_after_ms at least delivery_timeout_ms",
            ));
        }
        let mut currencies = std::collections::BTreeSet::new();
        for limit in &ct.limits {
            Currency::from_code(&limit.currency).map_err(|e| invalid(format!("credit_transfers.limits: {e}")))?;
            if !currencies.insert(&limit.currency) {
                return Err(invalid(format!("credit_transfers.limits: {} appears twice", limit.currency)));
            }
        }
        let mut proxies = std::collections::BTreeSet::new();
        for proxy in &ct.proxies {
            let what = format!("credit_transfers.proxies {:?}", proxy.id);
            if !matches!(proxy.kind.as_str(), "MBNO" | "EMAL" | "PAYEEID") {
                return Err(invalid(format!("{what}: kind must be MBNO, EMAL or PAYEEID")));
            }
            if proxy.id.is_empty() || proxy.id.len() > 2048 || proxy.account.is_empty() || proxy.account.len() > 34 {
                return Err(invalid(format!("{what}: id must be 1-2048 characters, account 1-34")));
            }
            if !proxies.insert((&proxy.kind, &proxy.id)) {
                return Err(invalid(format!("{what}: appears twice")));
            }
            match self.participants.iter().find(|p| p.id == proxy.system) {
                Some(p) if p.role == Role::PaymentSystem => {}
                _ => return Err(invalid(format!("{what}: participant {} is not a payment_system", proxy.system))),
            }
        }
        Ok(())
    }

    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG_TOML)
    }

    /// Parses, reads the secrets written as `env:` or `file:` references, and checks.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse_unchecked(text)?;
        config.validate()?;
        Ok(config)
    }

    /// `parse` without the checks, for a caller that overrides fields first (then calls
    /// `validate`).
    pub fn parse_unchecked(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)?;
        config.resolve_secrets(&|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// The configuration as TOML; secrets read from the environment or a file are
    /// printed as their references, not their values.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let sources = std::mem::take(&mut shown.secret_sources);
        for (field, value) in shown.secret_fields_mut() {
            if let Some(source) = sources.get(&field) {
                *value = source.clone();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Every secret of the configuration, named by its place in the file.
    fn secret_fields_mut(&mut self) -> Vec<(String, &mut String)> {
        let mut fields = vec![
            ("switch.admin_token".to_string(), &mut self.switch.admin_token),
            ("switch.vault_key".to_string(), &mut self.switch.vault_key),
        ];
        if let Some(token) = self.switch.read_token.as_mut() {
            fields.push(("switch.read_token".to_string(), token));
        }
        for (index, participant) in self.participants.iter_mut().enumerate() {
            fields.push((format!("participants[{index}].key"), &mut participant.key));
        }
        fields
    }

    /// Replaces each secret written as `env:NAME` or `file:/path` by what it names (an
    /// unset variable, an unreadable or empty file: an error naming the field).
    pub fn resolve_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let mut sources = BTreeMap::new();
        for (field, value) in self.secret_fields_mut() {
            let resolved = if let Some(name) = value.strip_prefix("env:") {
                env(name).ok_or_else(|| invalid(format!("{field}: environment variable {name} is not set")))?
            } else if let Some(path) = value.strip_prefix("file:") {
                let text =
                    std::fs::read_to_string(path).map_err(|e| invalid(format!("{field}: cannot read {path}: {e}")))?;
                text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string()
            } else {
                continue;
            };
            if resolved.is_empty() {
                return Err(invalid(format!("{field}: {value} is empty")));
            }
            sources.insert(field, std::mem::replace(value, resolved));
        }
        self.secret_sources.extend(sources);
        Ok(())
    }

    /// The fields holding a secret of the embedded demo configuration (published in
    /// the source and the README): fine on loopback, refused on any other address
    /// unless `allow_demo_secrets`.
    pub fn demo_secrets_in_use(&mut self) -> Vec<String> {
        let Ok(mut demo) = toml::from_str::<Config>(DEFAULT_CONFIG_TOML) else { return Vec::new() };
        let known: std::collections::BTreeSet<String> =
            demo.secret_fields_mut().into_iter().map(|(_, value)| value.clone()).collect();
        self.secret_fields_mut()
            .into_iter()
            .filter(|(_, value)| known.contains(value.as_str()))
            .map(|(f, _)| f)
            .collect()
    }

    /// Checks everything that can be checked without starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let loopback_only = self.switch.iso8583_listen.ip().is_loopback() && self.switch.http_listen.ip().is_loopback();
        if !loopback_only && !self.switch.allow_demo_secrets {
            let demo = self.clone().demo_secrets_in_use();
            if !demo.is_empty() {
                return Err(invalid(format!(
                    "{} still hold the demo configuration's published secrets, and a listener is beyond \
                     loopback: set your own (env:NAME and file:/path work), or start with \
                     --allow-demo-secrets for a test network",
                    demo.join(", ")
                )));
            }
        }
        let switch = &self.switch;
        if switch.admin_token.len() < 16 {
            return Err(invalid("switch.admin_token must be at least 16 characters"));
        }
        if let Some(token) = &switch.read_token {
            if token.len() < 16 || token == &switch.admin_token {
                return Err(invalid("switch.read_token must be at least 16 characters and not the admin token"));
            }
        }
        // The certificates and keys load now, so `--print-config` finds a bad one too.
        for (name, tls) in [("switch.iso8583_tls", &switch.iso8583_tls), ("switch.http_tls", &switch.http_tls)] {
            if let Some(tls) = tls {
                crate::tls::acceptor(tls, name).map_err(|e| invalid(format!("{e:#}")))?;
            }
        }
        if let Some(telemetry) = &self.telemetry {
            let endpoint = &telemetry.otlp_endpoint;
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid("telemetry.otlp_endpoint must be an http:// or https:// address"));
            }
            if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
                return Err(invalid("telemetry.sample_ratio must be from 0 to 1"));
            }
        }
        let vault = hex::decode(&switch.vault_key).map_err(|_| invalid("switch.vault_key must be hex"))?;
        if vault.len() < junction_engine::vault::VAULT_KEY_SIZE_MIN_BYTES {
            return Err(invalid("switch.vault_key must be at least 16 bytes"));
        }
        for bic in [&switch.bic, &switch.settlement_bank_bic] {
            check_bic(bic)?;
        }
        for time in &switch.cutoff_times {
            parse_hh_mm(time).ok_or_else(|| invalid(format!("switch.cutoff_times: {time:?} is not HH:MM")))?;
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut institutions = std::collections::BTreeSet::new();
        for p in &self.participants {
            p.check()?;
            if !ids.insert(p.id) {
                return Err(invalid(format!("participant id {} is repeated", p.id)));
            }
            if !institutions.insert(normalize_institution(&p.institution_id)) {
                return Err(invalid(format!("participant {}: institution_id must be unique", p.id)));
            }
        }
        for p in &self.participants {
            for acquirer in &p.acts_for {
                if !self.participants.iter().any(|a| a.id == *acquirer && a.role == Role::Acquirer) {
                    return Err(invalid(format!("participant {}: acts_for {acquirer}, not an acquirer", p.id)));
                }
            }
        }
        let mut accounts = std::collections::BTreeMap::new();
        for a in &self.accounts {
            let participant = self
                .participants
                .iter()
                .find(|p| p.id == a.participant)
                .ok_or_else(|| invalid(format!("account {}: unknown participant {}", a.id, a.participant)))?;
            if !participant.net_debit_caps.contains_key(&a.currency) {
                return Err(invalid(format!(
                    "account {}: participant {} does not settle in {}",
                    a.id, a.participant, a.currency
                )));
            }
            if a.id == 0 || accounts.insert(a.id, a).is_some() {
                return Err(invalid(format!("account id {} is zero or repeated", a.id)));
            }
        }
        for c in &self.cards {
            check_pan(&c.pan)?;
            parse_yymm(&c.expiry).ok_or_else(|| invalid(format!("card expiry {:?} is not YYMM", c.expiry)))?;
            if !accounts.contains_key(&c.account) {
                return Err(invalid(format!("a card names unknown account {}", c.account)));
            }
        }
        for t in &self.tokens {
            check_pan(&t.dpan)?;
            parse_yymm(&t.expiry).ok_or_else(|| invalid(format!("token expiry {:?} is not YYMM", t.expiry)))?;
            if let Some(fpan) = &t.fpan {
                check_pan(fpan)?;
            }
            if !(accounts.contains_key(&t.account) || (t.account == 0 && t.fpan.is_some())) {
                return Err(invalid(format!("a token names unknown account {} (0 needs an fpan)", t.account)));
            }
            parse_entry_modes(&t.entry_modes)?;
        }
        let role_of = |id: u64| self.participants.iter().find(|p| p.id == id).map(|p| p.role);
        for (index, range) in self.token_ranges.iter().enumerate() {
            let name = format!("token_ranges {:?}", range.prefix);
            if role_of(range.issuer) != Some(Role::Issuer) {
                return Err(invalid(format!("{name}: participant {} is not an issuer", range.issuer)));
            }
            if !(6..=11).contains(&range.prefix.len()) || !range.prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("{name}: the prefix must be 6 to 11 digits")));
            }
            if !(13..=19).contains(&range.length) || range.length < range.prefix.len() + 6 {
                return Err(invalid(format!("{name}: length must be 13 to 19, and at least 6 more than the prefix")));
            }
            if let Some(other) = self.token_ranges[..index]
                .iter()
                .find(|o| o.prefix.starts_with(&range.prefix) || range.prefix.starts_with(&o.prefix))
            {
                return Err(invalid(format!("{name}: overlaps token range {:?}", other.prefix)));
            }
            if let Some(requestor) = range.requestors.iter().find(|r| role_of(**r) != Some(Role::TokenRequestor)) {
                return Err(invalid(format!("{name}: participant {requestor} is not a token_requestor")));
            }
            if parse_entry_modes(&range.entry_modes)?.0 == 0 {
                return Err(invalid(format!("{name}: entry_modes names none")));
            }
            let routed = (6..=range.prefix.len())
                .rev()
                .find_map(|digits| self.bin_routes.iter().find(|r| r.prefix == range.prefix[..digits]));
            // A route of the range's prefix or a shorter one, or a longer one inside the range.
            let inside =
                self.bin_routes.iter().find(|r| r.prefix.starts_with(&range.prefix) && r.issuer.0 != range.issuer);
            if let Some(route) = routed.filter(|r| r.issuer.0 != range.issuer).or(inside) {
                return Err(invalid(format!(
                    "{name}: bin_routes {:?} sends its numbers to issuer {}, not to {}",
                    route.prefix, route.issuer.0, range.issuer
                )));
            }
            if let Some(card) = self.cards.iter().find(|c| c.pan.starts_with(&range.prefix)) {
                return Err(invalid(format!("{name}: card {} is in the range", MaskedPan(&card.pan))));
            }
        }
        for route in &self.bin_routes {
            match self.participants.iter().find(|p| p.id == route.issuer.0) {
                Some(p) if p.role == Role::Issuer => {}
                _ => {
                    return Err(invalid(format!(
                        "bin_routes {}: issuer {} is not an issuer",
                        route.prefix, route.issuer.0
                    )))
                }
            }
        }
        crate::qr::CodeTypes::new(&self.qr_code_types)?;
        if let Some(flows) = &self.qr_flows {
            crate::qr::Flows::new(flows)?;
            for (name, rules) in [("inbound", &flows.inbound), ("outbound", &flows.outbound)] {
                if let Some(provider) = rules.fx_provider.filter(|p| role_of(*p) != Some(Role::FxProvider)) {
                    return Err(invalid(format!("qr_flows.{name}: participant {provider} is not an fx_provider")));
                }
                if let Some(acquirer) = rules.acquirers.iter().find(|a| role_of(**a) != Some(Role::Acquirer)) {
                    return Err(invalid(format!("qr_flows.{name}: participant {acquirer} is not an acquirer")));
                }
            }
        }
        for kind in &self.qr_code_types {
            if let Some(aggregator) = kind.aggregator.filter(|id| role_of(*id) != Some(Role::Aggregator)) {
                return Err(invalid(format!(
                    "qr_code_types {:?}: participant {aggregator} is not an aggregator",
                    kind.name
                )));
            }
        }
        junction_engine::routing::BinTable::new(self.bin_routes.clone())
            .map_err(|e| invalid(format!("bin_routes: {e}")))?;
        let links = &self.issuer_links;
        if links.timeout_ms == 0
            || links.timeout_ms > 60_000
            || links.echo_interval_ms == 0
            || links.advice_retry_ms == 0
        {
            return Err(invalid("issuer_links: timeout_ms must be 1..=60000, the intervals above zero"));
        }
        if let Some(replication) = &self.replication {
            if replication.nats_urls.is_empty() {
                return Err(invalid("replication.nats_urls: name at least one NATS server"));
            }
            let name_ok = |name: &str| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if !name_ok(&replication.node) || !name_ok(&replication.stream) {
                return Err(invalid("replication.node and replication.stream: letters, digits, - and _ only"));
            }
            if !(1..=5).contains(&replication.replicas) {
                return Err(invalid("replication.replicas must be 1..=5"));
            }
            if !(400..=60_000).contains(&replication.lease_ms) {
                return Err(invalid("replication.lease_ms must be 400..=60000"));
            }
        }
        if let Some(cluster) = &self.cluster {
            let name_ok = |name: &str| {
                !name.is_empty()
                    && name.len() <= 32
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if self.replication.is_none() {
                return Err(invalid("cluster needs [replication]: each partition journals to its own stream"));
            }
            if !self.switch.cutoff_times.is_empty() {
                return Err(invalid(
                    "switch.cutoff_times with [cluster]: a partitioned switch cuts off all partitions at once \
                     (`junction cluster cutoff`, from your scheduler); a partition must not close its own windows",
                ));
            }
            if !name_ok(&cluster.partition) || !name_ok(&cluster.map_bucket) {
                return Err(invalid("cluster.partition and cluster.map_bucket: 1-32 letters, digits, - and _"));
            }
            if !(50..=60_000).contains(&cluster.request_timeout_ms) {
                return Err(invalid("cluster.request_timeout_ms must be 50..=60000"));
            }
            if cluster.moved_lookback_s > 366 * 86_400 {
                return Err(invalid("cluster.moved_lookback_s must be at most a year"));
            }
            for (issuer, partition) in &cluster.seed {
                let id: u64 =
                    issuer.parse().map_err(|_| invalid(format!("cluster.seed: {issuer:?} is not a participant id")))?;
                match self.participants.iter().find(|p| p.id == id) {
                    Some(p) if matches!(p.role, Role::Issuer | Role::Wallet | Role::PaymentSystem) => {}
                    _ => {
                        return Err(invalid(format!(
                            "cluster.seed: participant {id} is not an issuer, a wallet or a payment system"
                        )))
                    }
                }
                if !name_ok(partition) {
                    return Err(invalid(format!(
                        "cluster.seed: partition {partition:?}: 1-32 letters, digits, - and _"
                    )));
                }
            }
        }
        if switch.institution_id.is_empty()
            || switch.institution_id.len() > 11
            || !switch.institution_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid("switch.institution_id must be 1-11 digits"));
        }
        self.validate_qr()?;
        self.fee_schedule()?;
        Ok(())
    }

    /// The QR gateway's sections: routes name acquirers, rates name FX providers that
    /// settle in both currencies, and nothing is ambiguous.
    fn validate_qr(&self) -> Result<(), ConfigError> {
        let qr = &self.qr;
        if qr.quote_ttl_ms == 0 || qr.quote_ttl_ms > QUOTE_TTL_MS_MAX {
            return Err(invalid(format!("qr.quote_ttl_ms must be 1..={QUOTE_TTL_MS_MAX}")));
        }
        if qr.signature_skew_s == 0 || qr.signature_skew_s > SIGNATURE_SKEW_S_MAX {
            return Err(invalid(format!("qr.signature_skew_s must be 1..={SIGNATURE_SKEW_S_MAX}")));
        }
        let participant = |id: u64| self.participants.iter().find(|p| p.id == id);
        check_qr_routes(&self.qr_routes, &|id| participant(id).map(|p| p.role))?;
        self.validate_credit_transfers()?;
        let mut pairs = std::collections::BTreeSet::new();
        for entry in &self.fx_rates {
            let rate = entry.to_rate().map_err(invalid)?;
            let pair = format!("fx rate {}/{}", entry.base, entry.quote);
            let provider = participant(entry.provider)
                .ok_or_else(|| invalid(format!("{pair}: unknown participant {}", entry.provider)))?;
            if provider.role != Role::FxProvider {
                return Err(invalid(format!("{pair}: participant {} is not an fx_provider", entry.provider)));
            }
            for code in [&entry.base, &entry.quote] {
                if !provider.net_debit_caps.contains_key(code) {
                    return Err(invalid(format!("{pair}: participant {} does not settle in {code}", entry.provider)));
                }
            }
            let (a, b) = (rate.base.numeric(), rate.quote.numeric());
            if !pairs.insert((a.min(b), a.max(b))) {
                return Err(invalid(format!("{pair}: the pair appears twice (in either direction)")));
            }
        }
        if self.fx_rates.len() > super::fx::RATE_PAIRS_MAX {
            return Err(invalid(format!("at most {} fx_rates", super::fx::RATE_PAIRS_MAX)));
        }
        Ok(())
    }
}

/// Checks a `[[qr_routes]]` table: known schemes, one identifier or prefix per rule, no
/// rule twice, and acquirers only (`role_of` says what a participant id is).
pub fn check_qr_routes(routes: &[QrRouteConfig], role_of: &dyn Fn(u64) -> Option<Role>) -> Result<(), ConfigError> {
    if routes.len() > QR_ROUTES_MAX {
        return Err(invalid(format!("at most {QR_ROUTES_MAX} qr_routes")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for route in routes {
        let what = format!(
            "qr_routes ({} {})",
            route.scheme,
            route.identifier.as_deref().or(route.identifier_prefix.as_deref()).unwrap_or("?")
        );
        if parse_scheme(&route.scheme).is_none() {
            return Err(invalid(format!("{what}: scheme must be unionpay, pix, promptpay, qris or other")));
        }
        let key = match (&route.identifier, &route.identifier_prefix) {
            (Some(exact), None) if !exact.is_empty() => (route.scheme.as_str(), false, exact.as_str()),
            (None, Some(prefix)) => (route.scheme.as_str(), true, prefix.as_str()),
            _ => {
                return Err(invalid(format!("{what}: give exactly one of identifier (not empty) or identifier_prefix")))
            }
        };
        if !seen.insert(key) {
            return Err(invalid(format!("{what}: the same rule appears twice")));
        }
        match role_of(route.acquirer) {
            Some(Role::Acquirer) => {}
            Some(_) => return Err(invalid(format!("{what}: participant {} is not an acquirer", route.acquirer))),
            None => return Err(invalid(format!("{what}: unknown participant {}", route.acquirer))),
        }
    }
    Ok(())
}

fn check_bic(bic: &str) -> Result<(), ConfigError> {
    let ok = bic.is_ascii()
        && (bic.len() == 8 || bic.len() == 11)
        && bic[..6].bytes().all(|b| b.is_ascii_uppercase())
        && bic[6..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{bic:?} is not a BIC (8 or 11 characters)")))
    }
}

fn check_pan(pan: &str) -> Result<(), ConfigError> {
    if (12..=19).contains(&pan.len()) && pan.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        // Never echo the number itself.
        Err(invalid(format!("a card number of {} characters is not 12-19 digits", pan.len())))
    }
}

pub fn parse_yymm(text: &str) -> Option<u16> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u16 = text.parse().ok()?;
    (1..=12).contains(&(value % 100)).then_some(value)
}

pub fn parse_hh_mm(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

pub fn parse_entry_modes(names: &[String]) -> Result<EntryModes, ConfigError> {
    let modes: Result<Vec<EntryMode>, ConfigError> = names
        .iter()
        .map(|name| match name.as_str() {
            "manual" => Ok(EntryMode::Manual),
            "magnetic_stripe" => Ok(EntryMode::MagneticStripe),
            "chip" => Ok(EntryMode::Chip),
            "contactless" => Ok(EntryMode::Contactless),
            "ecommerce" => Ok(EntryMode::Ecommerce),
            other => Err(invalid(format!("unknown entry mode {other:?}"))),
        })
        .collect();
    Ok(EntryModes::of(&modes?))
}

/// Field 32 values compare without leading zeros (field 90 carries them zero-padded).
pub fn normalize_institution(id: &str) -> &str {
    let trimmed = id.trim_start_matches('0');
    if trimmed.is_empty() {
        "0"
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_round_trips() {
        let config = Config::embedded_default().unwrap();
        assert!(config.participants.len() >= 5);
        let printed = config.to_toml();
        let again = Config::parse(&printed).unwrap();
        assert_eq!(again.to_toml(), printed);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let base = DEFAULT_CONFIG_TOML;
        let cases = [
            (base.replace("shards = 0", "shards = \"two\""), "TOML"),
            (base.replace("vault_key = \"6a75", "vault_key = \"zz75"), "vault_key"),
            (base.replace("institution_id = \"100002\"", "institution_id = \"100001\""), "institution_id"),
            (base.replace("expiry = \"2912\"", "expiry = \"2913\""), "expiry"),
            (base.replace("bic = \"FIRSUS33XXX\"", "bic = \"nope\""), "BIC"),
            (base.replace("currency = \"JPY\"", "currency = \"XYZ\""), "does not settle"),
            (format!("{base}\nunknown_table = 1\n"), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn bad_qr_sections_name_the_problem() {
        let base = DEFAULT_CONFIG_TOML;
        let route = |body: &str| format!("{base}\n[[qr_routes]]\n{body}\n");
        let rate = |body: &str| format!("{base}\n[[fx_rates]]\n{body}\n");
        let cases = [
            (base.replace("quote_ttl_ms = 60000", "quote_ttl_ms = 0"), "qr.quote_ttl_ms"),
            (base.replace("signature_skew_s = 300", "signature_skew_s = 0"), "qr.signature_skew_s"),
            (route("scheme = \"venmo\"\nidentifier = \"x\"\nacquirer = 3"), "scheme must be"),
            (route("scheme = \"pix\"\nacquirer = 3"), "exactly one of identifier"),
            (route("scheme = \"pix\"\nidentifier = \"a\"\nidentifier_prefix = \"a\"\nacquirer = 3"), "exactly one"),
            (route("scheme = \"pix\"\nidentifier = \"k\"\nacquirer = 5"), "is not an acquirer"),
            (route("scheme = \"pix\"\nidentifier = \"k\"\nacquirer = 77"), "unknown participant 77"),
            (route("scheme = \"pix\"\nidentifier_prefix = \"\"\nacquirer = 7"), "appears twice"),
            (rate("provider = 6\nbase = \"USD\"\nquote = \"EUR\"\nrate = \"0.9\""), "does not settle in EUR"),
            (rate("provider = 5\nbase = \"USD\"\nquote = \"SGD\"\nrate = \"1.3\""), "not an fx_provider"),
            (rate("provider = 6\nbase = \"THB\"\nquote = \"USD\"\nrate = \"0.03\""), "appears twice"),
            (rate("provider = 6\nbase = \"USD\"\nquote = \"USD\"\nrate = \"1\""), "two different currencies"),
            (rate("provider = 6\nbase = \"BRL\"\nquote = \"JPY\"\nrate = \"abc\""), "not a decimal"),
            (rate("provider = 6\nbase = \"BRL\"\nquote = \"JPY\"\nrate = \"-1\""), "positive"),
            (rate("provider = 6\nbase = \"BRL\"\nquote = \"JPY\"\nrate = 30.5"), "TOML"),
            (rate("provider = 6\nbase = \"BRL\"\nquote = \"JPY\"\nrate = \"30\"\nspread_bps = 10001"), "spread_bps"),
            (rate("provider = 6\nbase = \"BRL\"\nquote = \"XXX\"\nrate = \"30\""), "XXX"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
        let fine = rate("provider = 6\nbase = \"BRL\"\nquote = \"JPY\"\nrate = \"30.5\"\nspread_bps = 40");
        assert_eq!(
            Config::parse(&fine).unwrap().fx_rates.len(),
            Config::embedded_default().unwrap().fx_rates.len() + 1
        );
    }
}
