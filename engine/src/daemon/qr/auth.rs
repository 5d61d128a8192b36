//! Request signatures of the QR gateway: HMAC-SHA256 with the participant's key (the `key`
//! of its `[[participants]]` entry) over a canonical string.
//!
//! Headers:
//! - `X-Junction-Participant`: the participant id, decimal.
//! - `X-Junction-Timestamp`: Unix seconds; at most `qr.signature_skew_s` from the switch's
//!   clock (300 s by default).
//! - `X-Junction-Signature`: hex of HMAC-SHA256(key, canonical string).
//!
//! The canonical string is six lines joined by `\n` (no trailing newline):
//!
//! ```text
//! JUNCTION-HMAC-SHA256
//! POST                                  the method, upper case
//! /v1/qr/payments                       the path, with `?query` when there is one
//! 1767225600                            X-Junction-Timestamp as sent
//! 5                                     X-Junction-Participant as sent
//! pay-2026-0001                         Idempotency-Key as sent, or empty
//! 3b1f...                               hex SHA-256 of the body (of "" when empty)
//! ```
//!
//! The idempotency key is signed so that a captured request cannot be replayed under a new
//! key to move money twice; a replay with the same key gets the same answer and moves
//! nothing. The signature is compared in constant time (`Mac::verify_slice`).

use super::ApiError;
use crate::model::Role;
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, Mac};
use junction_ledger::{Currency, ParticipantId};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_PARTICIPANT: &str = "x-junction-participant";
pub const HEADER_TIMESTAMP: &str = "x-junction-timestamp";
pub const HEADER_SIGNATURE: &str = "x-junction-signature";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The first line of the canonical string: names the scheme, so that a signature made for
/// anything else never verifies here.
pub const SIGNATURE_SCHEME: &str = "JUNCTION-HMAC-SHA256";

/// A participant the gateway knows: from the configuration, with its key ready to use.
pub struct Known {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// Currencies it settles in (its net debit caps), fixed at start.
    pub currencies: Vec<Currency>,
    /// The HMAC keyed once; cloned per request (no re-keying).
    mac: HmacSha256,
}

impl Known {
    pub fn settles_in(&self, currency: Currency) -> bool {
        self.currencies.contains(&currency)
    }
}

/// Every participant, by id.
pub struct Directory {
    participants: FxHashMap<u64, Known>,
    skew_s: u64,
}

impl Directory {
    pub fn new(config: &super::super::config::Config) -> Result<Directory, String> {
        let mut participants = FxHashMap::default();
        for p in &config.participants {
            let key = hex::decode(&p.key).map_err(|_| format!("participant {}: key must be hex", p.id))?;
            let mac = HmacSha256::new_from_slice(&key).map_err(|e| format!("participant {}: {e}", p.id))?;
            let currencies = p
                .net_debit_caps
                .keys()
                .map(|code| Currency::from_code(code).map_err(|e| format!("participant {}: {e}", p.id)))
                .collect::<Result<Vec<_>, _>>()?;
            participants
                .insert(p.id, Known { id: ParticipantId(p.id), name: p.name.clone(), role: p.role, currencies, mac });
        }
        Ok(Directory { participants, skew_s: config.qr.signature_skew_s })
    }

    pub fn get(&self, id: ParticipantId) -> Option<&Known> {
        self.participants.get(&id.0)
    }

    /// Checks a signed request; the participant who signed it.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
        now_s: u64,
    ) -> Result<&Known, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let unauthorized = |code: &'static str, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let (Some(participant), Some(timestamp), Some(signature)) =
            (header(HEADER_PARTICIPANT), header(HEADER_TIMESTAMP), header(HEADER_SIGNATURE))
        else {
            return Err(unauthorized(
                "unauthorized",
                "this call must be signed: X-Junction-Participant, X-Junction-Timestamp and X-Junction-Signature",
            ));
        };
        let known = participant
            .parse::<u64>()
            .ok()
            .and_then(|id| self.participants.get(&id))
            .ok_or_else(|| unauthorized("unknown_participant", "X-Junction-Participant names no participant"))?;
        let signed_at: u64 = timestamp
            .parse()
            .map_err(|_| unauthorized("bad_timestamp", "X-Junction-Timestamp must be Unix seconds"))?;
        if signed_at.abs_diff(now_s) > self.skew_s {
            return Err(unauthorized(
                "stale_timestamp",
                &format!("X-Junction-Timestamp is more than {} s from the switch's clock", self.skew_s),
            ));
        }
        let mut given = [0u8; 32];
        hex::decode_to_slice(signature, &mut given)
            .map_err(|_| unauthorized("bad_signature", "X-Junction-Signature must be 64 hex digits"))?;
        let mut mac = known.mac.clone();
        feed_canonical(
            &mut mac,
            method.as_str(),
            path_and_query,
            timestamp,
            participant,
            header(HEADER_IDEMPOTENCY_KEY).unwrap_or_default(),
            body,
        );
        mac.verify_slice(&given).map_err(|_| unauthorized("bad_signature", "the signature does not verify"))?;
        Ok(known)
    }
}

/// Writes the canonical string into `mac` without building it.
fn feed_canonical(
    mac: &mut HmacSha256,
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    participant: &str,
    idempotency_key: &str,
    body: &[u8],
) {
    let body_hash = hex::encode(Sha256::digest(body));
    for (index, part) in [SIGNATURE_SCHEME, method, path_and_query, timestamp, participant, idempotency_key, &body_hash]
        .iter()
        .enumerate()
    {
        if index > 0 {
            mac.update(b"\n");
        }
        mac.update(part.as_bytes());
    }
}

/// The canonical string itself (for documentation, clients and tests).
pub fn canonical_string(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    participant: &str,
    idempotency_key: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    [SIGNATURE_SCHEME, method, path_and_query, timestamp, participant, idempotency_key, &body_hash].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn feeding_equals_the_canonical_string() {
        let key = [7u8; 16];
        let mut fed = HmacSha256::new_from_slice(&key).unwrap();
        feed_canonical(&mut fed, "POST", "/v1/qr/payments", "1700000000", "5", "k1", b"{}");
        let mut whole = HmacSha256::new_from_slice(&key).unwrap();
        whole.update(canonical_string("POST", "/v1/qr/payments", "1700000000", "5", "k1", b"{}").as_bytes());
        assert_eq!(fed.finalize().into_bytes(), whole.finalize().into_bytes());
        let text = canonical_string("GET", "/x", "1", "5", "", b"");
        assert!(text.ends_with("\n\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "{text}");
    }
}
