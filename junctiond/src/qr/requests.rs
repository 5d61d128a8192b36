//! Reading a request: its body, JSON, QR payload, ids and idempotency key, and the digest
//! that tells a resend from a conflicting reuse of a key.

use super::auth::HEADER_IDEMPOTENCY_KEY;
use super::errors::ApiError;
use super::tables::Digest;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Uri};
use junction_wire::qr::QrPayload;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Longest idempotency key, in bytes (visible ASCII only).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        ApiError::new(rejection.status(), "bad_body", format!("cannot read the body: {}", rejection.body_text()))
    })
}

pub(super) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", format!("the body is not valid: {e}")))
}

pub(super) fn parse_qr(payload: &str) -> Result<QrPayload, ApiError> {
    QrPayload::parse(payload).map_err(|e| ApiError::qr_invalid(&e))
}

/// What a request's signature covers: its path, with `?query` when there is one.
pub(crate) fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or_else(|| uri.path(), |p| p.as_str())
}

pub(super) fn hex_id(id: u128) -> String {
    format!("{id:032x}")
}

pub(super) fn parse_hex_id(text: &str, what: &'static str) -> Result<u128, ApiError> {
    if text.len() != 32 {
        return Err(ApiError::bad_request("bad_request", format!("{what} is 32 hex digits")));
    }
    u128::from_str_radix(text, 16).map_err(|_| ApiError::bad_request("bad_request", format!("{what} is 32 hex digits")))
}

/// A digest of what a request asks, with each part length-prefixed.
pub(super) fn digest(parts: &[&[u8]]) -> Digest {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize()[..16]);
    out
}

/// The idempotency key of a money-moving request: the header or the body field (equal if
/// both are given).
pub(super) fn idempotency_key<'a>(headers: &'a HeaderMap, field: Option<&'a str>) -> Result<&'a str, ApiError> {
    let header = match headers.get(HEADER_IDEMPOTENCY_KEY) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("bad_request", "Idempotency-Key must be visible ASCII"))?,
        ),
        None => None,
    };
    let key = match (header, field) {
        (Some(h), Some(f)) if h != f => {
            return Err(ApiError::bad_request("bad_request", "Idempotency-Key and idempotency_key differ"))
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => {
            return Err(ApiError::bad_request(
                "idempotency_key_required",
                "a request that moves money needs an Idempotency-Key header or an idempotency_key field",
            ))
        }
    };
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("an idempotency key is 1-{IDEMPOTENCY_KEY_BYTES_MAX} visible ASCII characters"),
        ));
    }
    Ok(key)
}
