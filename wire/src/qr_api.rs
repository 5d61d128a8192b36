//! The request signature of the QR gateway's HTTP API, in one place for the switch (which
//! verifies it) and its clients (which sign).
//!
//! HMAC-SHA256 with the participant's key over a canonical string of seven lines joined by
//! `\n` (no trailing newline): the scheme name, the method (upper case), the path with
//! `?query` when there is one, `X-Junction-Timestamp` as sent, `X-Junction-Participant` as
//! sent, the `Idempotency-Key` as sent (or empty), and the hex SHA-256 of the body. The
//! signature travels as 64 hex digits in `X-Junction-Signature`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub type HmacSha256 = Hmac<Sha256>;

pub const HEADER_PARTICIPANT: &str = "x-junction-participant";
pub const HEADER_TIMESTAMP: &str = "x-junction-timestamp";
pub const HEADER_SIGNATURE: &str = "x-junction-signature";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The first line of the canonical string: names the scheme, so that a signature made for
/// anything else never verifies.
pub const SIGNATURE_SCHEME: &str = "JUNCTION-HMAC-SHA256";

/// The lines of the canonical string, in order (joined by "\n").
fn canonical_parts<'a>(
    method: &'a str,
    path_and_query: &'a str,
    timestamp: &'a str,
    participant: &'a str,
    idempotency_key: &'a str,
    body_hash: &'a str,
) -> [&'a str; 7] {
    [SIGNATURE_SCHEME, method, path_and_query, timestamp, participant, idempotency_key, body_hash]
}

/// Writes the canonical string into `mac` without building it.
pub fn feed_canonical(
    mac: &mut HmacSha256,
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    participant: &str,
    idempotency_key: &str,
    body: &[u8],
) {
    let body_hash = hex::encode(Sha256::digest(body));
    for (index, part) in
        canonical_parts(method, path_and_query, timestamp, participant, idempotency_key, &body_hash).iter().enumerate()
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
    canonical_parts(method, path_and_query, timestamp, participant, idempotency_key, &body_hash).join("\n")
}

/// The `X-Junction-Signature` value of a request: hex HMAC-SHA256 under `secret`.
pub fn sign_hex(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    participant: &str,
    idempotency_key: &str,
    body: &[u8],
) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = HmacSha256::new_from_slice(secret)?;
    feed_canonical(&mut mac, method, path_and_query, timestamp, participant, idempotency_key, body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn feeding_equals_signing_the_canonical_string() {
        let mut whole = HmacSha256::new_from_slice(b"key").unwrap();
        whole.update(canonical_string("POST", "/v1/qr/payments", "1700000000", "5", "k1", b"{}").as_bytes());
        let expected = hex::encode(whole.finalize().into_bytes());
        assert_eq!(sign_hex(b"key", "POST", "/v1/qr/payments", "1700000000", "5", "k1", b"{}").unwrap(), expected);
        let text = canonical_string("GET", "/x", "1", "5", "", b"");
        assert!(text.starts_with("JUNCTION-HMAC-SHA256\nGET\n/x\n1\n5\n\ne3b0c442"));
    }
}
