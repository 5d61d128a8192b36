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
use crate::directory::Directory;
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::Mac;
use junction_ledger::ParticipantId;
use std::sync::Arc;

// The scheme itself lives in the wire crate, shared with clients such as loadgen.
pub use junction_wire::qr_api::{
    canonical_string, feed_canonical, HEADER_IDEMPOTENCY_KEY, HEADER_PARTICIPANT, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    SIGNATURE_SCHEME,
};

/// A participant as the gateways know it (`directory.rs`).
pub use crate::directory::Member as Known;

/// Checks and makes request signatures with the participants' keys in force (rotated at
/// runtime, with an overlap when the old key is still accepted).
pub struct Signers {
    directory: Arc<Directory>,
    skew_s: u64,
}

impl Signers {
    pub fn new(directory: Arc<Directory>, config: &crate::config::Config) -> Signers {
        Signers { directory, skew_s: config.qr.signature_skew_s }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn get(&self, id: ParticipantId) -> Option<Arc<Known>> {
        self.directory.get(id)
    }

    /// Signs a request the switch sends to a participant (a push to a payment system) with
    /// that participant's key, as the participant signs its own: the three headers'
    /// values (participant, timestamp, signature).
    pub fn sign(
        &self,
        id: ParticipantId,
        method: &str,
        path_and_query: &str,
        idempotency_key: &str,
        body: &[u8],
        now_s: u64,
    ) -> Option<[(&'static str, String); 3]> {
        let known = self.directory.get(id)?;
        let (participant, timestamp) = (id.0.to_string(), now_s.to_string());
        let mut mac = known.signing_key().hmac();
        feed_canonical(&mut mac, method, path_and_query, &timestamp, &participant, idempotency_key, body);
        let signature = hex::encode(mac.finalize().into_bytes());
        Some([(HEADER_PARTICIPANT, participant), (HEADER_TIMESTAMP, timestamp), (HEADER_SIGNATURE, signature)])
    }

    /// Checks a signed request; the participant who signed it.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
        now_s: u64,
    ) -> Result<Arc<Known>, ApiError> {
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
            .and_then(|id| self.directory.get(ParticipantId(id)))
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
        let idempotency_key = header(HEADER_IDEMPOTENCY_KEY).unwrap_or_default();
        known
            .verify(|key| {
                let mut mac = key.hmac();
                feed_canonical(
                    &mut mac,
                    method.as_str(),
                    path_and_query,
                    timestamp,
                    participant,
                    idempotency_key,
                    body,
                );
                mac.verify_slice(&given)
            })
            .map_err(|_| unauthorized("bad_signature", "the signature does not verify"))?;
        if known.is_retired() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "participant_retired",
                "this participant is retired: it can no longer sign requests",
            ));
        }
        Ok(known)
    }
}
