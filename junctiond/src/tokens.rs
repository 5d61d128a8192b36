//! Device tokens, Apple Pay style: the switch is the token service of its issuers' cards.
//!
//! | endpoint | signed by | what |
//! |---|---|---|
//! | `POST /v1/tokens` | a token requestor | `{"token_request_id", "card": {"number", "expiry"}, "entry_modes"?}` -> a device token (its number only in this answer) |
//! | `GET /v1/tokens/{token_ref}` | its requestor or the card's issuer | the token as it stands |
//! | `POST /v1/tokens/{token_ref}/suspend`, `/resume`, `/delete` | its requestor or the card's issuer | the token after the change |
//! | `POST /v1/issuer/cards` | an issuer | issue and bind: `{"request_id", "card": {"number", "expiry"}, "account": {"id", "currency", "opening_balance"?}, "token": {"requestor", "entry_modes"?}}` |
//!
//! Signatures as the QR API's (`qr/auth.rs`). Amounts are integer minor units.
//!
//! **Approval.** A card the switch authorizes for its issuer is approved by the issuer's
//! rules (its `[[token_ranges]]` entry): the card known to the switch and its expiry as
//! given, not expired, its account active, the issuer in service and not retired, the
//! requestor one the issuer accepts, the entry modes within the range's. A card whose BIN
//! routes to the issuer's host is asked of the host: an ISO 8583 account verification
//! (0100, processing code 000000, amount zero, field 25 `51`, field 48 `TKN<requestor id>`)
//! on one of its links, approved on 00. A host that does not answer in time, or answers
//! 91, 96 or 68: 503 `issuer_unavailable`, nothing remembered (retry). A card the switch
//! does not know and a wrong expiry get the same refusal (`card_not_eligible`), so token
//! requests cannot tell which card numbers exist.
//!
//! **The token.** A number of the issuer's range (random digits, then the Luhn digit),
//! never one the directory knows, expiring with the card, usable only in its entry modes.
//! The engine holds it (`Engine::add_tokens`), with the real card number sealed behind it
//! when the issuer's host must see that. Its state (active, suspended, deleted) is the
//! engine's (`Engine::set_token_state`): suspended is declined 57 (`token_suspended`),
//! deleted 14 (`token_deleted`) for good; what it approved before still completes or
//! reverses. What the issuer suspended, only the issuer resumes. A participant the
//! operator suspended changes nothing.
//!
//! **Records.** A request is known by its caller and id: the same request again gets the
//! same answer (the same token number, or the same refusal); another body with the same id
//! is `duplicate_conflict`; the same one while it is decided, `in_progress`. The record
//! (metadata `k` + request key) is written durably before the token exists and holds all
//! the token needs (its number and a hosted card's number sealed by the vault), so a crash
//! between the two is finished by a replay, a view or a change. The request's digest is
//! over the card's keyed hash, never its number.
//!
//! **Issue and bind.** An issuer creates a card (and its account, unless it names one of
//! its own) and binds a token of its range for a requestor, in one call: both are usable at
//! once, before the plastic exists.

use crate::config::{parse_entry_modes, parse_yymm, Config, TokenRangeConfig};
use crate::directory::Directory;
use crate::issuer_links::{IssuerLinks, Outcome};
use crate::qr::{ApiError, Known, Signers};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::clock;
use junction_engine::codes::ResponseCode;
use junction_engine::detail::MaskedCard;
use junction_engine::model::{
    AccountSpec, AccountStatus, CardSpec, EntryModes, PanKey, RequestKey, Role, TokenSpec, TokenState, VelocityLimits,
};
use junction_engine::routing::RouteMode;
use junction_engine::vault::is_expired;
use junction_engine::Engine;
use junction_ledger::{AccountId, Currency, ParticipantId};
use junction_wire::iso8583::Iso8583Message;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Metadata tag of token records: tag, request key (16 bytes).
const META_TOKEN: u8 = b'k';

/// Longest request id.
const REQUEST_ID_CHARS_MAX: usize = 64;

/// Tries at a fresh token number before the range is called full.
const NUMBER_TRIES_MAX: usize = 32;

/// The entry modes a token request may name, in the order the answers list them.
const ENTRY_MODE_NAMES: [&str; 5] = ["manual", "magnetic_stripe", "chip", "contactless", "ecommerce"];

/// Who decided a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Approver {
    /// The issuer's rules, applied by the switch for a card it authorizes.
    Rules,
    /// The issuer's host, by an account verification.
    Host,
    /// The issuer itself: issue and bind.
    Issuer,
}

/// A token request as remembered: its outcome, and for an approved one the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    /// Who asked (the requestor, or the issuer for issue and bind) and its id for it.
    caller: u64,
    request_id: String,
    /// Hex of the request's digest (over the card's keyed hash, never its number): the
    /// same id with another request is a conflict.
    digest: String,
    requestor: u64,
    issuer: u64,
    approver: Approver,
    /// The issuer's refusal: its reason and response code. `None`: approved.
    refusal: Option<(String, String)>,
    /// The card, masked (first six and last four digits).
    card: String,
    /// The rest for an approved token: its number sealed by the vault (hex), its PAN key
    /// (hex), the account it draws on (0 for a hosted issuer's card), expiry and modes.
    sealed_number: Option<String>,
    /// A hosted issuer's card number, sealed (hex): its host must see it behind the token.
    #[serde(default)]
    sealed_card: Option<String>,
    pan_key: Option<String>,
    account: u64,
    expiry: String,
    entry_modes: u8,
    /// Issue and bind: the card's account was made by the call.
    created_account: bool,
    created_ms: u64,
    /// Suspended by the issuer: only the issuer resumes it.
    #[serde(default)]
    suspended_by_issuer: bool,
}

impl TokenRecord {
    fn token_key(&self) -> Option<PanKey> {
        self.pan_key.as_deref().and_then(|hex| u128::from_str_radix(hex, 16).ok()).map(PanKey)
    }
}

/// The device token service.
pub struct TokenService {
    engine: Arc<Engine>,
    signers: Signers,
    links: Arc<IssuerLinks>,
    ranges: Vec<TokenRangeConfig>,
    switch_institution: String,
    host_timeout: Duration,
    /// Request keys being decided: the same request twice at once is `in_progress`.
    in_flight: parking_lot::Mutex<std::collections::HashSet<u128>>,
    /// Numbers picked and recorded one request at a time (a disk write each; never held
    /// while an issuer's host is asked), so a number is never handed out twice, and a
    /// token's life changes one at a time.
    deciding: tokio::sync::Mutex<()>,
}

/// A request key marked in flight until dropped.
struct InFlight<'a> {
    keys: &'a parking_lot::Mutex<std::collections::HashSet<u128>>,
    key: u128,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.keys.lock().remove(&self.key);
    }
}

/// What a token request asks, read and checked.
struct Ask {
    caller: u64,
    request_id: String,
    digest: String,
    requestor: u64,
    card_number: String,
    expiry: String,
    entry_modes: EntryModes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    number: String,
    expiry: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token_request_id: String,
    card: CardBody,
    #[serde(default)]
    entry_modes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    id: u64,
    currency: String,
    #[serde(default)]
    opening_balance: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindBody {
    requestor: u64,
    #[serde(default)]
    entry_modes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    request_id: String,
    card: CardBody,
    account: AccountBody,
    token: BindBody,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unknown_token() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_token", "no token of yours has this token_ref")
}

fn ledger(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", error.to_string())
}

fn record_key(key: RequestKey) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(17);
    bytes.push(META_TOKEN);
    bytes.extend_from_slice(&key.0.to_be_bytes());
    bytes
}

fn request_key(caller: u64, request_id: &str) -> RequestKey {
    RequestKey::derive("token-request", &[&caller.to_be_bytes(), request_id.as_bytes()])
}

fn check_request_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > REQUEST_ID_CHARS_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "bad_request",
            format!("the request id must be 1-{REQUEST_ID_CHARS_MAX} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn check_card(card: &CardBody) -> Result<(), ApiError> {
    if !(12..=19).contains(&card.number.len()) || !card.number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("bad_request", "card.number must be 12-19 digits"));
    }
    if !junction_wire::luhn::is_valid(&card.number) {
        return Err(bad("bad_card_number", "card.number fails its check digit"));
    }
    parse_yymm(&card.expiry).ok_or_else(|| bad("bad_request", "card.expiry must be YYMM"))?;
    Ok(())
}

fn digest_of(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

fn mode_names(modes: EntryModes) -> Vec<&'static str> {
    ENTRY_MODE_NAMES
        .iter()
        .filter(|name| parse_entry_modes(&[name.to_string()]).is_ok_and(|one| modes.0 & one.0 != 0))
        .copied()
        .collect()
}

fn modes_of(names: &Option<Vec<String>>, range: &TokenRangeConfig) -> Result<EntryModes, ApiError> {
    let allowed = parse_entry_modes(&range.entry_modes).map_err(|_| ApiError::system_error())?;
    let Some(names) = names else { return Ok(allowed) };
    let asked = parse_entry_modes(names).map_err(|e| bad("bad_request", e.to_string()))?;
    if asked.0 == 0 {
        return Err(bad("bad_request", "entry_modes names none"));
    }
    if asked.0 & !allowed.0 != 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "entry_modes_not_allowed",
            format!("the issuer allows tokens of this range only {}", allowed_names(allowed)),
        ));
    }
    Ok(asked)
}

fn allowed_names(modes: EntryModes) -> String {
    mode_names(modes).join(", ")
}

fn now_ms() -> u64 {
    crate::activity::now_unix_ms()
}

impl TokenService {
    pub fn new(
        engine: Arc<Engine>,
        directory: &Arc<Directory>,
        config: &Config,
        links: Arc<IssuerLinks>,
    ) -> TokenService {
        TokenService {
            engine,
            signers: Signers::new(Arc::clone(directory), config),
            links,
            ranges: config.token_ranges.clone(),
            switch_institution: config.switch.institution_id.clone(),
            host_timeout: Duration::from_millis(config.issuer_links.timeout_ms),
            in_flight: parking_lot::Mutex::new(std::collections::HashSet::new()),
            deciding: tokio::sync::Mutex::new(()),
        }
    }

    fn claim(&self, key: RequestKey) -> Result<InFlight<'_>, ApiError> {
        if !self.in_flight.lock().insert(key.0) {
            return Err(ApiError::conflict("in_progress", "this request is being decided; retry"));
        }
        Ok(InFlight { keys: &self.in_flight, key: key.0 })
    }

    /// A token requestor or an issuer the operator suspended changes nothing.
    fn in_service(&self, known: &Known) -> Result<(), ApiError> {
        if self.engine.is_suspended(known.id) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "participant_suspended",
                "this participant is suspended by the operator",
            ));
        }
        Ok(())
    }

    fn verify(&self, headers: &HeaderMap, method: &Method, uri: &Uri, body: &[u8]) -> Result<Arc<Known>, ApiError> {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        self.signers.verify(headers, method, path, body, now_ms() / 1000)
    }

    fn range_of(&self, issuer: ParticipantId) -> Result<&TokenRangeConfig, ApiError> {
        self.ranges.iter().find(|r| r.issuer == issuer.0).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_token_range",
                "the card's issuer has no token range: it does not take part in tokenization",
            )
        })
    }

    fn stored(&self, key: RequestKey) -> Result<Option<TokenRecord>, ApiError> {
        let value = self.engine.ledger().metadata(&record_key(key)).map_err(ledger)?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    async fn persist(&self, key: RequestKey, record: &TokenRecord) -> Result<(), ApiError> {
        let value = serde_json::to_vec(record).map_err(|_| ApiError::system_error())?;
        let ledger_handle = Arc::clone(self.engine.ledger());
        tokio::task::spawn_blocking(move || ledger_handle.put_metadata(&[(record_key(key), value)]))
            .await
            .map_err(|_| ApiError::system_error())?
            .map_err(ledger)
    }

    /// A fresh token number of the range: random digits, then the Luhn digit, never one
    /// the directory knows.
    fn fresh_number(&self, range: &TokenRangeConfig) -> Result<String, ApiError> {
        let mut rng = rand::thread_rng();
        for _ in 0..NUMBER_TRIES_MAX {
            let mut number = range.prefix.clone();
            while number.len() < range.length - 1 {
                number.push(char::from(b'0' + rng.gen_range(0..10u8)));
            }
            number.push(char::from(b'0' + junction_wire::luhn::check_digit(&number)));
            if self.engine.card_entry(self.engine.pan_key(&number)).is_none() {
                return Ok(number);
            }
        }
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "token_range_full", "no free number found in the range"))
    }

    // ---- POST /v1/tokens ------------------------------------------------------------------

    async fn request_token(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> Result<HttpResponse, ApiError> {
        let known = self.verify(&headers, &method, &uri, &body)?;
        if known.role != Role::TokenRequestor {
            return Err(forbidden("only token_requestor participants ask for device tokens"));
        }
        self.in_service(&known)?;
        let request: TokenBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_json", format!("the body is not valid: {e}")))?;
        check_request_id(&request.token_request_id)?;
        check_card(&request.card)?;
        let pan_key = self.engine.pan_key(&request.card.number);
        let modes_text = request.entry_modes.clone().unwrap_or_default().join(",");
        let digest = digest_of(&[&pan_key.0.to_be_bytes(), request.card.expiry.as_bytes(), modes_text.as_bytes()]);
        let key = request_key(known.id.0, &request.token_request_id);
        let _claimed = self.claim(key)?;
        if let Some(record) = self.stored(key)? {
            return self.replay(record, &digest);
        }
        // The card's issuer: from the switch's own books, or its BIN's route to a host. A
        // card the switch does not know and a wrong expiry get the same refusal, so that
        // token requests cannot tell which card numbers exist.
        let not_eligible = || {
            ApiError::unprocessable("token_declined", "the card is not eligible for a token")
                .with("reason", "card_not_eligible")
                .with("issuer_code", ResponseCode::InvalidCard.as_str())
        };
        let hosted = self.engine.route(&request.card.number).filter(|route| route.mode != RouteMode::Switch);
        let card = self.engine.card_entry(pan_key);
        let on_books = card.filter(|entry| entry.token.is_none()).and_then(|entry| {
            self.engine
                .account_status(entry.account)
                .map(|(issuer, currency, status)| (entry, issuer, currency, status))
        });
        let issuer = match (&hosted, &on_books) {
            (Some(route), _) => route.issuer,
            (None, Some((_, issuer, _, _))) => *issuer,
            (None, None) => return Err(not_eligible()),
        };
        let range = self.range_of(issuer)?;
        let entry_modes = modes_of(&request.entry_modes, range)?;
        let ask = Ask {
            caller: known.id.0,
            request_id: request.token_request_id.clone(),
            digest,
            requestor: known.id.0,
            card_number: request.card.number.clone(),
            expiry: request.card.expiry.clone(),
            entry_modes,
        };
        // The issuer's decision.
        let (approver, refusal, account) = match (&hosted, on_books) {
            (Some(_), _) => (Approver::Host, self.ask_host(issuer, &ask).await?, 0),
            (None, Some((entry, _, _, status))) => {
                let refusal = self.rules(issuer, range, &ask, entry.expiry_yymm, status);
                (Approver::Rules, refusal, entry.account.0 as u64)
            }
            (None, None) => return Err(ApiError::system_error()),
        };
        let _one = self.deciding.lock().await;
        let mut record = self.decide(&ask, issuer, range, approver, refusal, account, false)?;
        if hosted.is_some() && record.refusal.is_none() {
            record.sealed_card = Some(hex::encode(self.engine.seal(&ask.card_number)));
        }
        self.persist(key, &record).await?;
        self.provision(&record)?;
        self.answer(&record, StatusCode::CREATED)
    }

    /// The issuer's rules for a card the switch authorizes: the refusal's reason and
    /// response code, or `None`.
    fn rules(
        &self,
        issuer: ParticipantId,
        range: &TokenRangeConfig,
        ask: &Ask,
        card_expiry: u16,
        status: AccountStatus,
    ) -> Option<(String, String)> {
        let refuse = |reason: &str, code: ResponseCode| Some((reason.to_string(), code.as_str().to_string()));
        let today = clock::yymm(clock::now_unix_s());
        if parse_yymm(&ask.expiry) != Some(card_expiry) || is_expired(card_expiry, today) {
            // As for a card the switch does not know (`request_token`).
            return refuse("card_not_eligible", ResponseCode::InvalidCard);
        }
        if status != AccountStatus::Active {
            return refuse("account_not_active", ResponseCode::DoNotHonor);
        }
        let in_service = self.signers.get(issuer).is_some_and(|m| !m.is_retired()) && !self.engine.is_suspended(issuer);
        if !in_service {
            return refuse("issuer_not_in_service", ResponseCode::NotPermitted);
        }
        if !range.requestors.is_empty() && !range.requestors.contains(&ask.requestor) {
            return refuse("requestor_not_accepted", ResponseCode::NotPermitted);
        }
        None
    }

    /// Asks the issuer's host: an account verification on one of its links. `None`: it
    /// approved.
    async fn ask_host(&self, issuer: ParticipantId, ask: &Ask) -> Result<Option<(String, String)>, ApiError> {
        let unavailable = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "issuer_unavailable",
                "the card's issuer did not answer the token request; retry",
            )
        };
        let message = self.verification(ask).ok_or_else(ApiError::system_error)?;
        let key = request_key(ask.caller, &ask.request_id);
        let link = self.links.links_of(issuer).into_iter().find(|link| link.is_healthy()).ok_or_else(unavailable)?;
        let mut pending = self.links.forward_on(&link, key, message).ok_or_else(unavailable)?;
        match pending.wait(self.host_timeout).await {
            Outcome::Answered(answer) => match answer.message.get(39) {
                Some("00") => Ok(None),
                // "Try again" is not a decision: nothing is remembered.
                None | Some("91" | "96" | "68") => Err(unavailable()),
                Some(code) => Ok(Some(("issuer_declined".to_string(), code.to_string()))),
            },
            _ => Err(unavailable()),
        }
    }

    /// The account verification a token request becomes for the issuer's host.
    fn verification(&self, ask: &Ask) -> Option<Iso8583Message> {
        let mut message = Iso8583Message::new("0100").ok()?;
        let time = crate::iso_gateway::transmission_time_now();
        let rrn: String =
            ask.digest.chars().filter(char::is_ascii_digit).chain(std::iter::repeat('0')).take(12).collect();
        let fields: [(u8, &str); 11] = [
            (2, &ask.card_number),
            (3, "000000"),
            (4, "000000000000"),
            (7, &time),
            (14, &ask.expiry),
            (22, "810"),
            (25, "51"),
            (32, &self.switch_institution),
            (33, &self.switch_institution),
            (37, &rrn),
            (41, "TOKENSVC"),
        ];
        for (field, value) in fields {
            message.set(field, value).ok()?;
        }
        message.set(48, &format!("TKN{}", ask.requestor)).ok()?;
        Some(message)
    }

    /// The record of a decided request: with a fresh token number when approved.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        ask: &Ask,
        issuer: ParticipantId,
        range: &TokenRangeConfig,
        approver: Approver,
        refusal: Option<(String, String)>,
        account: u64,
        created_account: bool,
    ) -> Result<TokenRecord, ApiError> {
        let mut record = TokenRecord {
            caller: ask.caller,
            request_id: ask.request_id.clone(),
            digest: ask.digest.clone(),
            requestor: ask.requestor,
            issuer: issuer.0,
            approver,
            refusal,
            card: MaskedCard::of(&ask.card_number).display(),
            sealed_number: None,
            pan_key: None,
            account,
            expiry: ask.expiry.clone(),
            entry_modes: ask.entry_modes.0,
            created_account,
            created_ms: now_ms(),
            sealed_card: None,
            suspended_by_issuer: false,
        };
        if record.refusal.is_none() {
            let number = self.fresh_number(range)?;
            record.pan_key = Some(format!("{:032x}", self.engine.pan_key(&number).0));
            record.sealed_number = Some(hex::encode(self.engine.seal(&number)));
        }
        Ok(record)
    }

    /// Gives the engine the token of an approved record (again, after a crash between the
    /// record and the token: the same entry).
    fn provision(&self, record: &TokenRecord) -> Result<(), ApiError> {
        if record.refusal.is_some() {
            return Ok(());
        }
        let number = self.number_of(record)?;
        let fpan = match &record.sealed_card {
            Some(sealed) => Some(self.open(sealed)?),
            None => None,
        };
        let spec = TokenSpec {
            dpan: number,
            account: AccountId(u128::from(record.account)),
            expiry_yymm: parse_yymm(&record.expiry).unwrap_or(0),
            allowed_entry_modes: EntryModes(record.entry_modes),
            fpan,
        };
        self.engine.add_tokens(&[spec]).map_err(ledger)?;
        Ok(())
    }

    /// An approved record's token in the engine: made now if a crash came between the
    /// record and the token (the record holds all it needs).
    fn ensure_token(&self, record: &TokenRecord) -> Result<(), ApiError> {
        match record.token_key() {
            Some(key) if record.refusal.is_none() && self.engine.card_entry(key).is_none() => self.provision(record),
            _ => Ok(()),
        }
    }

    fn open(&self, sealed_hex: &str) -> Result<String, ApiError> {
        hex::decode(sealed_hex).ok().and_then(|sealed| self.engine.open_sealed(&sealed)).ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "system_error", "a sealed number does not open")
        })
    }

    fn number_of(&self, record: &TokenRecord) -> Result<String, ApiError> {
        self.open(record.sealed_number.as_deref().unwrap_or_default())
    }

    /// The same request again: the same answer (the token made again if a crash came
    /// between its record and the engine). Another request under the same id: a conflict.
    fn replay(&self, record: TokenRecord, digest: &str) -> Result<HttpResponse, ApiError> {
        if record.digest != digest {
            return Err(ApiError::conflict("duplicate_conflict", "this request id was used for another request"));
        }
        self.ensure_token(&record)?;
        self.answer(&record, StatusCode::OK)
    }

    /// The answer to a token request: the token with its number, or the issuer's refusal.
    fn answer(&self, record: &TokenRecord, status: StatusCode) -> Result<HttpResponse, ApiError> {
        if let Some((reason, code)) = &record.refusal {
            let message = match reason.as_str() {
                "card_not_eligible" => "the card is not eligible for a token",
                _ => "the card's issuer declined the token",
            };
            return Ok(ApiError::unprocessable("token_declined", message)
                .with("reason", reason.as_str())
                .with("issuer_code", code.as_str())
                .into_response());
        }
        let mut view = self.view(record)?;
        view["token_number"] = Value::String(self.number_of(record)?);
        Ok((status, Json(view)).into_response())
    }

    /// A token as its requestor and issuer see it: never the card's number, nor the
    /// token's beyond its last four digits.
    fn view(&self, record: &TokenRecord) -> Result<Value, ApiError> {
        let key = record.token_key().ok_or_else(ApiError::system_error)?;
        let state = match self.engine.card_entry(key).and_then(|entry| entry.token) {
            Some(token) => json!(token.state),
            None => json!("pending"),
        };
        let number = self.number_of(record)?;
        Ok(json!({
            "token_ref": format!("{:032x}", request_key(record.caller, &record.request_id).0),
            "state": state,
            "token_last4": &number[number.len() - 4..],
            "token_expiry": record.expiry,
            "entry_modes": mode_names(EntryModes(record.entry_modes)),
            "card": record.card,
            "issuer": record.issuer,
            "requestor": record.requestor,
            "approver": record.approver,
            "created_ms": record.created_ms,
        }))
    }

    // ---- the token's life -------------------------------------------------------------------

    /// The record behind a token ref, if the caller may see it: its requestor or its issuer.
    fn owned(&self, known: &Known, token_ref: &str) -> Result<(RequestKey, TokenRecord), ApiError> {
        let id = (token_ref.len() == 32).then(|| u128::from_str_radix(token_ref, 16).ok()).flatten();
        let key = RequestKey(id.ok_or_else(unknown_token)?);
        let record = self.stored(key)?.filter(|r| r.refusal.is_none()).ok_or_else(unknown_token)?;
        if record.requestor != known.id.0 && record.issuer != known.id.0 {
            return Err(unknown_token());
        }
        Ok((key, record))
    }

    async fn show(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        token_ref: String,
    ) -> Result<HttpResponse, ApiError> {
        let known = self.verify(&headers, &method, &uri, b"")?;
        let (_, record) = self.owned(&known, &token_ref)?;
        self.ensure_token(&record)?;
        Ok(Json(self.view(&record)?).into_response())
    }

    async fn change(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        body: Bytes,
        token_ref: String,
        state: TokenState,
    ) -> Result<HttpResponse, ApiError> {
        let known = self.verify(&headers, &method, &uri, &body)?;
        self.in_service(&known)?;
        let _one = self.deciding.lock().await;
        let (request_key, mut record) = self.owned(&known, &token_ref)?;
        self.ensure_token(&record)?;
        let key = record.token_key().ok_or_else(ApiError::system_error)?;
        let current = self.engine.card_entry(key).and_then(|entry| entry.token).ok_or_else(ApiError::system_error)?;
        if current.state == TokenState::Deleted && state != TokenState::Deleted {
            return Err(ApiError::conflict("token_deleted", "the token is deleted; a deleted token never comes back"));
        }
        // What the issuer suspended, only the issuer resumes.
        let by_issuer = known.id.0 == record.issuer;
        if state == TokenState::Active
            && current.state == TokenState::Suspended
            && record.suspended_by_issuer
            && !by_issuer
        {
            return Err(ApiError::conflict(
                "suspended_by_issuer",
                "the card's issuer suspended this token: it resumes it",
            ));
        }
        let held = match state {
            TokenState::Suspended => {
                by_issuer || (record.suspended_by_issuer && current.state == TokenState::Suspended)
            }
            TokenState::Active | TokenState::Deleted => false,
        };
        if held != record.suspended_by_issuer {
            // Recorded before the state changes: a crash between leaves the stricter rule.
            record.suspended_by_issuer = held;
            self.persist(request_key, &record).await?;
        }
        let engine = Arc::clone(&self.engine);
        let changed = tokio::task::spawn_blocking(move || engine.set_token_state(key, state))
            .await
            .map_err(|_| ApiError::system_error())?
            .map_err(ledger)?;
        tracing::info!(token_ref, by = known.id.0, before = ?changed, after = ?state, "device token changed");
        Ok(Json(self.view(&record)?).into_response())
    }

    // ---- POST /v1/issuer/cards ----------------------------------------------------------------

    async fn issue_and_bind(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> Result<HttpResponse, ApiError> {
        let known = self.verify(&headers, &method, &uri, &body)?;
        if known.role != Role::Issuer {
            return Err(forbidden("only issuers issue cards"));
        }
        let request: IssueBody =
            serde_json::from_slice(&body).map_err(|e| bad("bad_json", format!("the body is not valid: {e}")))?;
        check_request_id(&request.request_id)?;
        check_card(&request.card)?;
        self.in_service(&known)?;
        let issuer = known.id;
        let currency = Currency::from_code(&request.account.currency).map_err(|e| bad("bad_request", e.to_string()))?;
        let modes_text = request.token.entry_modes.clone().unwrap_or_default().join(",");
        let digest = digest_of(&[
            &self.engine.pan_key(&request.card.number).0.to_be_bytes(),
            request.card.expiry.as_bytes(),
            &request.account.id.to_be_bytes(),
            currency.code().as_bytes(),
            &request.account.opening_balance.to_be_bytes(),
            &request.token.requestor.to_be_bytes(),
            modes_text.as_bytes(),
        ]);
        let key = request_key(issuer.0, &request.request_id);
        let _claimed = self.claim(key)?;
        // The same request again: what it made, finished if a crash cut it short; never
        // provisioned again (an account blocked since stays blocked).
        if let Some(record) = self.stored(key)? {
            if record.digest != digest {
                return Err(ApiError::conflict("duplicate_conflict", "this request id was used for another request"));
            }
            let (account, card) = self.card_specs(&request, currency, issuer);
            self.finish_card(&account, &card, record.created_account)?;
            return self.replay(record, &digest);
        }
        let range = self.range_of(issuer)?;
        let entry_modes = modes_of(&request.token.entry_modes, range)?;
        if !known.currencies.contains(&currency) {
            return Err(ApiError::unprocessable("unsupported_currency", "the issuer does not settle in this currency"));
        }
        let requestor = self.signers.get(ParticipantId(request.token.requestor));
        if !requestor.is_some_and(|r| r.role == Role::TokenRequestor && !r.is_retired()) {
            return Err(ApiError::unprocessable(
                "unknown_requestor",
                "token.requestor names no token requestor in service",
            ));
        }
        if request.account.id == 0 {
            return Err(bad("bad_request", "account.id must not be 0"));
        }
        let _one = self.deciding.lock().await;
        // The card must be new, or this issuer's on this account; the account new, or this
        // issuer's in this currency.
        let account_id = AccountId(u128::from(request.account.id));
        let created_account = match self.engine.account_status(account_id) {
            None if self.engine.ledger().account(account_id).is_some() => {
                return Err(ApiError::conflict("account_taken", "account.id is not a cardholder account"))
            }
            None => true,
            Some((owner, account_currency, _)) if owner == issuer && account_currency == currency => false,
            Some(_) => {
                return Err(ApiError::conflict(
                    "account_taken",
                    "account.id is another issuer's, or in another currency",
                ))
            }
        };
        if self.engine.route(&request.card.number).is_some_and(|route| route.issuer != issuer) {
            return Err(ApiError::conflict("card_taken", "the card's BIN routes to another issuer"));
        }
        match self.engine.card_entry(self.engine.pan_key(&request.card.number)) {
            Some(entry) if entry.token.is_some() || entry.account != account_id => {
                return Err(ApiError::conflict("card_taken", "this card number is already in use"))
            }
            _ => {}
        }
        let ask = Ask {
            caller: issuer.0,
            request_id: request.request_id.clone(),
            digest,
            requestor: request.token.requestor,
            card_number: request.card.number.clone(),
            expiry: request.card.expiry.clone(),
            entry_modes,
        };
        let record = self.decide(&ask, issuer, range, Approver::Issuer, None, request.account.id, created_account)?;
        self.persist(key, &record).await?;
        let (account, card) = self.card_specs(&request, currency, issuer);
        self.make_card(&account, &card, created_account)?;
        self.provision(&record)?;
        tracing::info!(issuer = issuer.0, requestor = ask.requestor, card = %record.card, "card issued and token bound");
        self.answer(&record, StatusCode::CREATED)
    }

    fn card_specs(&self, request: &IssueBody, currency: Currency, issuer: ParticipantId) -> (AccountSpec, CardSpec) {
        let account = AccountSpec {
            id: AccountId(u128::from(request.account.id)),
            participant: issuer,
            currency,
            opening_balance: request.account.opening_balance,
            status: AccountStatus::Active,
            velocity: VelocityLimits::default(),
        };
        let card = CardSpec {
            pan: request.card.number.clone(),
            account: account.id,
            expiry_yymm: parse_yymm(&request.card.expiry).unwrap_or(0),
        };
        (account, card)
    }

    /// What a replayed issue and bind finds missing: the account it made (and its opening
    /// balance), the card. Nothing that exists is provisioned again.
    fn finish_card(&self, account: &AccountSpec, card: &CardSpec, created_account: bool) -> Result<(), ApiError> {
        if created_account {
            match self.engine.account_status(account.id) {
                None => self.engine.add_accounts(std::slice::from_ref(account)).map_err(ledger)?,
                Some(_) => self.engine.ensure_opening_balance(account).map_err(ledger)?,
            }
        }
        if self.engine.card_entry(self.engine.pan_key(&card.pan)).is_none() {
            self.engine.add_cards(std::slice::from_ref(card)).map_err(ledger)?;
        }
        Ok(())
    }

    /// The card (and its account when the call made it).
    fn make_card(&self, account: &AccountSpec, card: &CardSpec, created_account: bool) -> Result<(), ApiError> {
        if created_account {
            self.engine.add_accounts(std::slice::from_ref(account)).map_err(ledger)?;
        }
        self.engine.add_cards(std::slice::from_ref(card)).map_err(ledger)?;
        Ok(())
    }
}

// ---- HTTP -------------------------------------------------------------------------------------

pub fn router(service: Arc<TokenService>) -> Router {
    Router::new()
        .route("/v1/tokens", post(create))
        .route("/v1/tokens/{token_ref}", get(show))
        .route("/v1/tokens/{token_ref}/{action}", post(lifecycle))
        .route("/v1/issuer/cards", post(issue))
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024))
        .with_state(service)
}

fn too_large() -> HttpResponse {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is too large").into_response()
}

async fn create(
    State(service): State<Arc<TokenService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let Ok(body) = body else { return too_large() };
    // In its own task: a caller that hangs up never leaves a token half-made.
    crate::http::detached(async move {
        service.request_token(headers, method, uri, body).await.unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn issue(
    State(service): State<Arc<TokenService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let Ok(body) = body else { return too_large() };
    crate::http::detached(async move {
        service.issue_and_bind(headers, method, uri, body).await.unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn show(
    State(service): State<Arc<TokenService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(token_ref): Path<String>,
) -> HttpResponse {
    service.show(headers, method, uri, token_ref).await.unwrap_or_else(IntoResponse::into_response)
}

/// `suspend`, `resume` or `delete`.
async fn lifecycle(
    State(service): State<Arc<TokenService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((token_ref, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let state = match action.as_str() {
        "suspend" => TokenState::Suspended,
        "resume" => TokenState::Active,
        "delete" => TokenState::Deleted,
        _ => return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such token action").into_response(),
    };
    let Ok(body) = body else { return too_large() };
    crate::http::detached(async move {
        service.change(headers, method, uri, body, token_ref, state).await.unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_mode_names_round_trip() {
        let modes = parse_entry_modes(&["contactless".into(), "ecommerce".into()]).unwrap();
        assert_eq!(mode_names(modes), vec!["contactless", "ecommerce"]);
    }
}
