//! Error answers of the QR gateway: `{"error": {"code", "message", ...}}` with a stable
//! machine-readable code (listed in the module docs of `qr`), and how the engine's decline
//! reasons map to them.

use crate::http;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use junction_engine::codes::DeclineReason;
use junction_wire::qr::QrError;
use serde_json::Value;

/// An error answer: `{"error": {"code", "message", ...details}}`, plus the payment or
/// refund it is about when there is one.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: serde_json::Map<String, Value>,
    attached: Option<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: serde_json::Map::new(), attached: None }
    }

    pub(crate) fn with(mut self, name: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(name.to_string(), value.into());
        self
    }

    pub(super) fn attach(mut self, name: &'static str, value: Value) -> ApiError {
        self.attached = Some((name, value));
        self
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// The gateway itself failed (a task that did not come back); the caller retries.
    pub(crate) fn system_error() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "system_error", "the gateway failed; retry")
    }

    /// The ledger did not read or write; nothing was moved.
    pub(crate) fn ledger_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", message)
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub(super) fn qr_invalid(error: &QrError) -> ApiError {
        // The CRC covers the whole payload, but it is ID 63 that failed.
        let id = match (error, error.path()) {
            (QrError::CrcMismatch { .. }, _) => Some("63".to_string()),
            (_, Some(path)) => Some(path.to_string()),
            (_, None) => None,
        };
        ApiError::unprocessable("qr_invalid", error.to_string()).with("id", id).with("reason", error.code())
    }

    /// The answer for a request the engine declined.
    pub(crate) fn declined(reason: DeclineReason) -> ApiError {
        let (status, code, message) = match reason {
            DeclineReason::NetDebitCapExceeded => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_headroom",
                "the payer participant's net debit cap has no headroom for this amount",
            ),
            DeclineReason::DuplicateConflict => {
                (StatusCode::CONFLICT, "duplicate_conflict", "this idempotency key was used for a different request")
            }
            DeclineReason::Overloaded => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the switch is overloaded; retry with the same key")
            }
            DeclineReason::LedgerUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "the ledger cannot write; nothing was moved; retry with the same key",
            ),
            DeclineReason::SystemError => {
                (StatusCode::INTERNAL_SERVER_ERROR, "system_error", "the switch failed; retry with the same key")
            }
            DeclineReason::InvalidAmount => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "the amount is zero or too large")
            }
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "declined", "the switch declined the payment"),
        };
        ApiError::new(status, code, format!("{message} ({reason})")).with("decline", reason.name())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let not_known_here = self.code == "unknown_payment";
        let mut response = self.body();
        if not_known_here {
            // In a partitioned switch, another partition may know it (`doors.rs`).
            response.extensions_mut().insert(crate::doors::NotKnownHere);
        }
        response
    }
}

impl ApiError {
    fn body(self) -> HttpResponse {
        if self.details.is_empty() && self.attached.is_none() {
            return http::error(self.status, self.code, self.message);
        }
        let mut error = self.details;
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message));
        let mut body = serde_json::Map::new();
        body.insert("error".into(), Value::Object(error));
        if let Some((name, value)) = self.attached {
            body.insert(name.into(), value);
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}

/// Whether the engine's answer may be remembered as the key's final answer. Answers
/// that never reached the ledger are not: a retry of the key is evaluated afresh.
pub(crate) fn is_final(reason: DeclineReason) -> bool {
    !matches!(
        reason,
        DeclineReason::Overloaded
            | DeclineReason::LedgerUnavailable
            | DeclineReason::SystemError
            | DeclineReason::DuplicateConflict
    )
}
