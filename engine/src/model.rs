//! The engine's vocabulary: participants, cards and tokens as provisioned, and the
//! requests and responses that flow through the pipeline.

use crate::codes::{DeclineReason, ResponseCode};
use crate::detail::Detail;
use crate::hosted::HostedBooking;
use junction_ledger::{AccountId, Currency, ParticipantId, TransferId, COMMAND_REFERENCE_BIT};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Issuer,
    Acquirer,
    Wallet,
    FxProvider,
    /// The switch's own participant: it receives the switch's fees (`fees.rs`) and sends
    /// no traffic.
    Switch,
    /// An instant-payment system linked through the switch (ISO 20022 credit transfers:
    /// `junctiond/src/credit/`): it sends its users' credits to another system's users and
    /// receives theirs, settling its net position in its one currency.
    PaymentSystem,
    /// A tax-refund operator in the shops' country (`junctiond/src/tax_refunds.rs`): pays
    /// tourists' refunds to their cards or wallets, and gets them back when a departure is
    /// not confirmed in time.
    RefundAgent,
    /// An acquiring service provider: connects for a list of acquirers (its `acts_for`),
    /// each request naming the acquirer in field 32 and itself in field 33. It settles
    /// nothing itself: the acquirer it sends for is the request's acquirer.
    AcquiringServiceProvider,
    /// A token requestor: a phone maker's or a wallet's token service, which asks the
    /// switch for device tokens of cards (`junctiond/src/tokens.rs`) and manages their life.
    /// It settles nothing: payments with its tokens are the cards' issuers'.
    TokenRequestor,
    /// An aggregator (payment facilitator): has sub-merchants, sends their payments for
    /// its one acquirer (`acts_for`) as an acquiring service provider does, each naming the
    /// sub-merchant; they settle through that acquirer. Its QR code kind's payments
    /// (`[[qr_code_types]]` with `aggregator`) are its sub-merchants' too.
    Aggregator,
}

/// A participant as provisioned. Keys are held by the gateways, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantSpec {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Currencies it settles in, with its net debit cap in each (minor units): the most it
    /// may owe in a window before settlement.
    pub net_debit_caps: Vec<(Currency, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Blocked,
    Closed,
}

/// Per-account limits over a rolling day. Zero means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VelocityLimits {
    pub count_per_day_max: u32,
    pub amount_per_day_max: u64,
}

/// A cardholder (or wallet user) account to provision: a ledger account plus the
/// engine's authorization state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSpec {
    pub id: AccountId,
    pub participant: ParticipantId,
    pub currency: Currency,
    /// Opening balance credited from the issuer's position account (on-us: moves no
    /// position), in minor units.
    pub opening_balance: u64,
    pub status: AccountStatus,
    pub velocity: VelocityLimits,
}

/// A card as provisioned. The PAN is hashed on the way in and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CardSpec {
    pub pan: String,
    pub account: AccountId,
    /// YYMM, as in ISO 8583 field 14.
    pub expiry_yymm: u16,
}

impl std::fmt::Debug for CardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSpec")
            .field("pan", &junction_wire::iso8583::MaskedPan(&self.pan))
            .field("account", &self.account)
            .field("expiry_yymm", &self.expiry_yymm)
            .finish()
    }
}

/// How the card was read (ISO 8583 field 22, first two digits), simplified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryMode {
    Unknown = 0,
    Manual = 1,
    MagneticStripe = 2,
    Chip = 5,
    Contactless = 7,
    Ecommerce = 81,
}

impl EntryMode {
    /// From the first two digits of field 22.
    pub fn from_pos_entry_mode(field_22: &str) -> EntryMode {
        match field_22.get(..2) {
            Some("01") => EntryMode::Manual,
            Some("02") | Some("90") => EntryMode::MagneticStripe,
            Some("05") => EntryMode::Chip,
            Some("07") | Some("91") => EntryMode::Contactless,
            Some("81") | Some("10") => EntryMode::Ecommerce,
            _ => EntryMode::Unknown,
        }
    }

    fn bit(self) -> u8 {
        match self {
            EntryMode::Unknown => 0,
            EntryMode::Manual => 1 << 0,
            EntryMode::MagneticStripe => 1 << 1,
            EntryMode::Chip => 1 << 2,
            EntryMode::Contactless => 1 << 3,
            EntryMode::Ecommerce => 1 << 4,
        }
    }
}

/// A set of entry modes, for a token's domain restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryModes(pub u8);

impl EntryModes {
    pub fn of(modes: &[EntryMode]) -> EntryModes {
        EntryModes(modes.iter().fold(0, |bits, m| bits | m.bit()))
    }

    pub fn allows(self, mode: EntryMode) -> bool {
        mode.bit() != 0 && self.0 & mode.bit() != 0
    }
}

/// Where a device token stands in its life. Suspended: refused until resumed (57).
/// Deleted: refused for good (14); what it approved before still completes or reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TokenState {
    Active = 0,
    Suspended = 1,
    Deleted = 2,
}

impl TokenState {
    pub fn from_u8(value: u8) -> Option<TokenState> {
        match value {
            0 => Some(TokenState::Active),
            1 => Some(TokenState::Suspended),
            2 => Some(TokenState::Deleted),
            _ => None,
        }
    }
}

/// A device token (DPAN) standing for a card's account, usable only in its domain.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub dpan: String,
    pub account: AccountId,
    pub expiry_yymm: u16,
    pub allowed_entry_modes: EntryModes,
    /// The real card number behind a token of a hosted issuer, which its host must see.
    /// Sealed by the vault on the way in, never kept in clear.
    pub fpan: Option<String>,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("dpan", &junction_wire::iso8583::MaskedPan(&self.dpan))
            .field("account", &self.account)
            .field("expiry_yymm", &self.expiry_yymm)
            .field("allowed_entry_modes", &self.allowed_entry_modes)
            .finish()
    }
}

/// A request's idempotency key: the same key is the same request. The ISO 8583 gateway
/// derives it from fields 32, 41, 11 and 7; the QR gateway from the wallet's key. It is
/// also the ledger transfer id of the money the request moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey(pub u128);

impl RequestKey {
    /// Derives a key from the parts that identify a request, with a domain tag so that
    /// keys of different kinds never collide.
    pub fn derive(domain: &str, parts: &[&[u8]]) -> RequestKey {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update((domain.len() as u32).to_be_bytes());
        hasher.update(domain.as_bytes());
        for part in parts {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // Zero is "no transfer" in the ledger.
        RequestKey(u128::from_be_bytes(bytes).max(1))
    }

    /// The key with the time its request was first sent (ISO 8583 field 7): the ledger
    /// then knows a fresh key from one that may be in its cold index without looking
    /// (`TransferId::timed`). A resend carries the same time, so it gets the same key.
    pub fn with_time(self, unix_s: u64) -> RequestKey {
        RequestKey(TransferId::timed(unix_s, self.0).0)
    }

    /// A key derived from another one (the void of a hold, the second leg of an FX
    /// payment), with the other's time if it has one.
    pub fn derive_from(parent: RequestKey, domain: &str) -> RequestKey {
        let derived = RequestKey::derive(domain, &[&parent.0.to_be_bytes()]);
        match TransferId(parent.0).time_unix_s() {
            Some(unix_s) => derived.with_time(unix_s),
            None => derived,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Place a hold (ISO 8583 0100).
    Authorize,
    /// Complete (post) an earlier authorization, fully or partly (0220).
    Complete { original: RequestKey },
    /// Authorize and post at once (0200).
    Purchase,
    /// Void a hold or reverse a posted transfer (0400/0420).
    Reverse { original: RequestKey },
    /// Credit the cardholder back from the acquirer (0200 with processing code 20).
    Refund,
    /// Report the available balance; moves nothing.
    BalanceInquiry,
    /// A payment between participants' position accounts (the QR gateway): the payer is
    /// the request's `Instrument::Account` (a participant's position account, in the
    /// request's currency), the payee another position account. With `fx`, the money goes
    /// through an FX provider: payer -> provider in the payer's currency, provider -> payee
    /// in the payee's, as one linked group.
    Payment { payee: AccountId, fx: Option<FxLeg> },
    /// The outcome of a request forwarded to (or stood in for) the card's issuer host, to
    /// book (`hosted.rs`).
    Hosted(HostedBooking),
    /// A tax refund to a card: the acquirer (a refund agent) pays the card's account the
    /// request's amount in its own currency (through `fx`'s provider when the card's
    /// currency is another), and in the same all-or-nothing group a guarantee hold of what
    /// the card received is placed on it, for `guarantee_timeout_s`: released (a reversal
    /// of the hold) when the tourist's departure is confirmed, captured (a completion) when
    /// it is not. The hold's key is `RequestKey::derive_from(key, "guarantee")`.
    TaxRefund { fx: Option<FxLeg>, guarantee_timeout_s: u32 },
}

/// The second leg of a cross-currency payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FxLeg {
    pub provider: ParticipantId,
    /// What the payee receives, in minor units of `credit_currency`.
    pub credit_amount: u64,
    pub credit_currency: Currency,
}

/// The vault's keyed hash of a PAN or DPAN (see `vault.rs`): how the engine knows a card
/// without its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PanKey(pub u128);

/// How the request names the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instrument {
    /// A card or device token, by the vault's keyed hash of its number. Whether it is a
    /// token is the directory's knowledge.
    Card(PanKey),
    /// An account named directly (wallets).
    Account(AccountId),
}

/// Where the answer goes: usually the connection that sent the request.
pub trait ReplySink: Send + Sync {
    fn send(&self, response: Response);
}

impl ReplySink for crossbeam::channel::Sender<Response> {
    fn send(&self, response: Response) {
        // A closed connection no longer wants its answers; the transfer stands regardless.
        let _ = crossbeam::channel::Sender::send(self, response);
    }
}

/// A sampled request's trace, kept by the front end's tracer: the engine knows no tracing
/// library. Each stage notes when it had the request (`stages`); the completion stage
/// hands the trace back with the answer (`finish`). A trace dropped unfinished (a request
/// answered before the pipeline, or the engine stopping) ends where it is.
pub trait RequestTrace: Send {
    fn stages(&mut self) -> &mut StageTimes;
    fn finish(self: Box<Self>, response: &Response);
}

/// When a traced request reached each stage of the pipeline. A stage it never reached
/// (declined before it) stays `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// The request went out to its issuer's host (hosted issuers only).
    pub issuer_sent: Option<Instant>,
    /// The issuer's host answered, or the switch stopped waiting for it.
    pub issuer_answered: Option<Instant>,
    /// Its shard took it off the queue.
    pub shard: Option<Instant>,
    /// Its shard's batch went to the commit stage.
    pub sealed: Option<Instant>,
    /// The commit stage's ledger batch was applied by the ledger's sequencer.
    pub applied: Option<Instant>,
    /// That ledger batch was durable (or failed).
    pub durable: Option<Instant>,
}

/// Where a request's trace travels: empty unless the front end sampled the request. A
/// copy of a request is not traced (one request, one trace).
#[derive(Default)]
pub struct TraceSlot(Option<Box<dyn RequestTrace>>);

impl TraceSlot {
    pub fn new(trace: Box<dyn RequestTrace>) -> TraceSlot {
        TraceSlot(Some(trace))
    }

    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// The stage times, if the request is traced.
    pub fn stages(&mut self) -> Option<&mut StageTimes> {
        self.0.as_mut().map(|trace| trace.stages())
    }

    /// Notes now as one of the stage times (`at` picks which), if the request is traced.
    pub fn stamp(&mut self, at: impl FnOnce(&mut StageTimes) -> &mut Option<Instant>) {
        if let Some(stages) = self.stages() {
            *at(stages) = Some(Instant::now());
        }
    }

    pub fn take(&mut self) -> Option<Box<dyn RequestTrace>> {
        self.0.take()
    }
}

impl Clone for TraceSlot {
    fn clone(&self) -> TraceSlot {
        TraceSlot(None)
    }
}

impl std::fmt::Debug for TraceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_traced() { "traced" } else { "untraced" })
    }
}

/// A request as the pipeline sees it: parsed and checked by a gateway.
#[derive(Clone)]
pub struct Request {
    pub key: RequestKey,
    pub operation: Operation,
    pub instrument: Instrument,
    /// Minor units of `currency`. For a completion: the amount to post.
    pub amount: u64,
    pub currency: Currency,
    /// The acquiring participant (ISO 8583 field 32) or the payee's acquirer.
    pub acquirer: ParticipantId,
    pub entry_mode: EntryMode,
    /// YYMM the terminal read (field 14), if any.
    pub card_expiry_yymm: Option<u16>,
    /// References kept with the transfer (RRN/STAN), packed by the gateway.
    pub reference: u128,
    /// What the clearing files say of the request (message type, terminal, masked card).
    pub detail: Detail,
    /// Echoed in the response so the gateway can match it to its connection's request.
    pub tag: u64,
    pub reply: Arc<dyn ReplySink>,
    /// A sampled request's trace (empty for nearly every request).
    pub trace: TraceSlot,
}

impl Request {
    /// What the acquirer asked for: a hosted booking's underlying request (what a resend's
    /// digest is computed from).
    pub fn asked_operation(&self) -> Operation {
        match self.operation {
            Operation::Hosted(booking) => booking.kind.as_operation(),
            operation => operation,
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("key", &self.key)
            .field("operation", &self.operation)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("acquirer", &self.acquirer)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub tag: u64,
    pub key: RequestKey,
    pub code: ResponseCode,
    pub decline: Option<DeclineReason>,
    /// Six characters, for approvals (ISO 8583 field 38).
    pub auth_code: Option<[u8; 6]>,
    /// For balance inquiries: available balance in minor units, and its currency.
    pub balance: Option<(i128, Currency)>,
    /// The ledger's timestamp of the transfer, for approvals that moved money.
    pub timestamp: Option<u64>,
    /// The switch answered for an issuer whose host did not (stand-in).
    pub stood_in: bool,
}

impl Response {
    pub fn declined(tag: u64, key: RequestKey, reason: DeclineReason) -> Response {
        Response {
            tag,
            key,
            code: reason.code(),
            decline: Some(reason),
            auth_code: None,
            balance: None,
            timestamp: None,
            stood_in: false,
        }
    }

    /// `reference`: the ledger's 64-bit reference of the first transfer
    /// (`TransferId::folded`), from which the authorization code derives.
    pub fn approved(tag: u64, key: RequestKey, reference: u64, timestamp: Option<u64>) -> Response {
        Response {
            tag,
            key,
            code: ResponseCode::Approved,
            decline: None,
            auth_code: Some(auth_code(reference)),
            balance: None,
            timestamp,
            stood_in: false,
        }
    }
}

/// The ledger reference of an issuer's own authorization code (kept as the command's
/// `reference`, so that a resend gets it again).
pub fn issuer_reference(code: [u8; 6]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&code);
    COMMAND_REFERENCE_BIT | u64::from_be_bytes(bytes)
}

/// The authorization code of an approval's ledger reference: an issuer's own code as it
/// was (`issuer_reference`), or one derived from the first transfer's folded id
/// (`TransferId::folded`). Either way a resend gets the same one.
pub fn auth_code(reference: u64) -> [u8; 6] {
    if reference & COMMAND_REFERENCE_BIT != 0 {
        let bytes = reference.to_be_bytes();
        let mut code = [0u8; 6];
        code.copy_from_slice(&bytes[2..]);
        return code;
    }
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut value = reference;
    let mut code = [0u8; 6];
    for byte in &mut code {
        *byte = ALPHABET[(value % 36) as usize];
        value /= 36;
    }
    code
}
