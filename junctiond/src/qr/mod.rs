//! The cross-border QR gateway: HTTP/JSON for wallet participants, merged into the daemon's
//! HTTP router. A wallet scans a merchant's EMV QR code, asks for a quote (the merchant's
//! acquirer from the routing table, the FX rate locked until the quote expires), and pays
//! it; the engine moves the money as one linked group through the FX provider.
//!
//! | endpoint | auth | what |
//! |---|---|---|
//! | `POST /v1/qr/decode` | none | `{"payload"}` -> the parsed QR, its scheme and route; moves nothing |
//! | `POST /v1/qr/quotes` | wallet | `{"payload", "payer_currency", "amount"?, "tip"?}` -> a quote |
//! | `POST /v1/qr/payments` | wallet + idempotency key | `{"quote_id"}` or `{"payload", "payer_currency", "amount"?, "tip"?}` |
//! | `GET /v1/qr/payments/{id}` | the wallet, the acquirer, or admin | the payment and its refunds |
//! | `POST /v1/qr/payments/{id}/refund` | the acquirer or admin + idempotency key | `{"amount"?}` (default: the rest) |
//! | `GET /v1/admin/fx/rates` | read token or admin token (like the other admin views) | the rate table |
//! | `POST /v1/admin/fx/rates` | admin token | `{"rates": [{"provider", "base", "quote", "rate", "spread_bps"}]}` |
//!
//! Signatures: see `auth.rs`. Amounts in requests are decimal strings in the merchant's
//! currency (`"12.50"`, never JSON numbers); answers carry integer minor units (`*_minor`)
//! and formatted decimals. Rounding: see `fx.rs`.
//!
//! Errors are `{"error": {"code", "message", ...}}` with a stable `code`: `bad_json`,
//! `bad_request`, `idempotency_key_required`, `unauthorized`, `bad_signature`,
//! `stale_timestamp`, `unknown_participant`, `forbidden`, `qr_invalid` (with `id`, the
//! failing data object, and `reason`, the parser's code), `unsupported_currency`,
//! `unroutable`, `no_fx_rate`, `amount_required`, `amount_mismatch`, `invalid_amount`,
//! `tip_not_allowed`, `unknown_quote`, `quote_expired`, `quote_already_used`,
//! `unknown_payment`, `in_progress`, `duplicate_conflict`, `insufficient_headroom`,
//! `declined` (with `decline`, the engine's reason), `not_refundable`, `already_refunded`,
//! `refund_exceeds_payment`, `refund_too_small`, `too_many_refunds`, `overloaded` (503),
//! `ledger_unavailable` (503), `system_error`.
//!
//! Idempotency: a money-moving request names a key (`Idempotency-Key` header or
//! `idempotency_key` field). The key, scoped to the caller, is the engine's request key and
//! the ledger's transfer id, so the same key moves money once. The same key with the same
//! request gets the same answer; with a different request, `duplicate_conflict`; while the
//! first is still in flight, `in_progress` (retry). Answers that never reached the ledger
//! (`overloaded`, `ledger_unavailable`) are not remembered: retrying the key tries again.
//!
//! Records are in memory (bounded, see `tables.rs`) and are not persisted: after a restart a
//! payment is answered from the ledger's transfers (approved payments only, without the
//! merchant details), and refunds of payments made before the restart are refused.
mod auth;
mod code_types;
mod errors;
mod flows;
mod gateway;
mod handlers;
mod quote;
mod requests;
mod routing;
mod tables;
mod views;

pub use auth::{
    canonical_string, Known, Signers, HEADER_IDEMPOTENCY_KEY, HEADER_PARTICIPANT, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    SIGNATURE_SCHEME,
};
pub use code_types::CodeTypes;
pub(crate) use errors::is_final;
pub use errors::ApiError;
pub use flows::{Flow, Flows};
pub use gateway::{QrGateway, REQUEST_BODY_BYTES_MAX};
pub use handlers::router;
pub use quote::{FeeRule, Quote};
pub(crate) use requests::path_and_query;
pub use requests::IDEMPOTENCY_KEY_BYTES_MAX;
pub use tables::{PAYMENTS_MAX, QUOTES_MAX, QUOTE_EXPIRED_KEPT_MS, REFUNDS_MAX, REFUNDS_PER_PAYMENT_MAX};
