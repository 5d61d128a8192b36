//! What the switch keeps of each credit transfer, and of each debtor's use of its limits,
//! in the ledger's metadata (journaled and synced like provisioning; replicated with the
//! journal). Records of credits still moving are also in memory (`Live`); final ones are
//! read back from the metadata when a resend asks, and removed after
//! `credit_transfers.records_kept_s`.

use junction_engine::model::RequestKey;
use junction_ledger::Ledger;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Metadata tag of credit transfer records: tag, request key (16 bytes).
pub const META_CREDIT: u8 = b'x';
/// Metadata tag of the switch's reference of a credit: tag, reference (16 bytes) -> the
/// sender's request key. A receiving system names a credit by the switch's reference.
pub const META_CREDIT_REFERENCE: u8 = b'X';
/// Metadata tag of a debtor's usage of its limits: tag, SHA-256 of the debtor (16 bytes).
pub const META_DEBTOR_USAGE: u8 = b'u';

/// Where a credit transfer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Recorded, its payment submitted; it may or may not have committed (a crash here is
    /// settled at start by looking for the transfer in the ledger).
    Booking,
    /// Booked: the sending system's position debited, the receiving system's credited.
    /// Being pushed to the receiving system.
    Delivering,
    /// The receiving system credited its user (ACSC). Final, unless it is returned later.
    Settled { at_ms: u64 },
    /// The money goes back to the sender: the receiving system refused the credit, never
    /// answered in time, or returned it (pacs.004). The return's payment is submitted.
    Returning { code: String, info: String },
    /// The money is back with the sending system. Final.
    Returned { code: String, info: String, at_ms: u64 },
    /// Refused before anything was booked. Final.
    Rejected { code: String, info: String },
}

impl State {
    pub fn is_final(&self) -> bool {
        matches!(self, State::Settled { .. } | State::Returned { .. } | State::Rejected { .. })
    }
}

/// A credit transfer as the switch keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The sender's request key (hex): from the sending system and the message's
    /// end-to-end and transaction ids.
    pub key: String,
    /// The switch's reference: the transaction id of the credit pushed to the receiver
    /// (`J` + 32 hex digits).
    pub reference: String,
    pub sender: u64,
    pub receiver: u64,
    pub msg_id: String,
    pub end_to_end_id: String,
    pub tx_id: Option<String>,
    pub uetr: Option<String>,
    /// SHA-256 (hex) of what the message asks (not of its message id or time): the same
    /// ids with other content are a duplicate, refused.
    pub digest: String,
    pub debtor_name: Option<String>,
    pub debtor_account: Option<String>,
    pub creditor_name: Option<String>,
    pub creditor_account: String,
    pub remittance: Option<String>,
    pub debit_minor: u64,
    pub debit_currency: String,
    pub credit_minor: u64,
    pub credit_currency: String,
    /// The FX provider, when the currencies differ.
    pub provider: Option<u64>,
    /// The all-in rate (credit currency per debit currency, as `XchgRate`), as text.
    pub rate: Option<String>,
    pub received_ms: u64,
    pub state: State,
    /// Pushes tried so far.
    pub attempts: u32,
    /// The debtor's usage this credit counted in, to give back if it is not booked.
    pub usage: Option<UsageClaim>,
    /// The sender was answered with the final status (or it was pushed to it).
    pub sender_told: bool,
    /// Final statuses pushed to the sender without success.
    #[serde(default)]
    pub notices: u32,
    /// The receiving system's return (pacs.004) of the settled credit, by its id: the
    /// sender is told with a pacs.004 rather than a status report.
    #[serde(default)]
    pub return_id: Option<String>,
    /// Which key the return is booked under (0: the first; more after refusals).
    #[serde(default)]
    pub return_attempt: u32,
}

/// What a credit counted in its debtor's usage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageClaim {
    pub debtor: String,
    pub day: i64,
    pub year: i64,
    pub amount: u64,
}

impl Record {
    pub fn request_key(&self) -> Option<RequestKey> {
        u128::from_str_radix(&self.key, 16).ok().map(RequestKey)
    }
}

/// A debtor's usage of its limits: this UTC day's and this UTC year's sums.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub debtor: String,
    pub day: i64,
    pub day_amount: u64,
    pub year: i64,
    pub year_amount: u64,
}

pub fn record_key(key: RequestKey) -> Vec<u8> {
    let mut bytes = vec![META_CREDIT];
    bytes.extend_from_slice(&key.0.to_be_bytes());
    bytes
}

pub fn reference_key(reference: u128) -> Vec<u8> {
    let mut bytes = vec![META_CREDIT_REFERENCE];
    bytes.extend_from_slice(&reference.to_be_bytes());
    bytes
}

pub fn usage_key(debtor: &str) -> Vec<u8> {
    let mut bytes = vec![META_DEBTOR_USAGE];
    bytes.extend_from_slice(&Sha256::digest(debtor.as_bytes())[..16]);
    bytes
}

/// The switch's reference of a credit, from its request key: unique, not the sender's.
pub fn reference_of(key: RequestKey) -> u128 {
    RequestKey::derive("credit-reference", &[&key.0.to_be_bytes()]).0
}

pub fn reference_text(reference: u128) -> String {
    format!("J{reference:032x}")
}

pub fn parse_reference(text: &str) -> Option<u128> {
    let hex = text.strip_prefix('J').filter(|h| h.len() == 32)?;
    u128::from_str_radix(hex, 16).ok()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// One record by its metadata key, if there is one.
pub fn load<T: for<'de> Deserialize<'de>>(
    ledger: &Ledger,
    key: &[u8],
) -> Result<Option<T>, junction_ledger::LedgerError> {
    Ok(ledger.metadata(key)?.and_then(|value| serde_json::from_slice(&value).ok()))
}

/// Every record under a tag.
pub fn load_all<T: for<'de> Deserialize<'de>>(
    ledger: &Ledger,
    tag: u8,
) -> Result<Vec<T>, junction_ledger::LedgerError> {
    let mut all = Vec::new();
    ledger.scan_metadata(&[tag], |_, v| {
        if let Ok(record) = serde_json::from_slice(v) {
            all.push(record);
        } else {
            tracing::error!(tag = %char::from(tag), "a credit transfer record does not decode; skipped");
        }
    })?;
    Ok(all)
}
