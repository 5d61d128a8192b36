//! Advices to issuers' hosts, kept durably until each issuer acknowledges it.
//!
//! - When the switch stands in for an issuer, the decision becomes an advice: 0120 for a
//!   request (0420 for a reversal), carrying the switch's response code and authorization
//!   code. The advice is recorded before the decision is booked; once the issuer has a
//!   link again it is sent, and sent again every `advice_retry_ms` until the issuer's
//!   0130/0430 comes back, then removed. A record whose request never got an answer in the
//!   ledger (the switch died between the two) is dropped: there was no decision to tell.
//! - When an issuer approves a request late, after the switch said no, the switch sends it
//!   a 0420 reversal of that approval, kept and retried the same way.
//!
//! Field 90 (original data elements) names the original request in every advice, the
//! same each time it is sent: an issuer recognises a resent advice by it. So each
//! decision reaches the issuer's books once, whichever side restarts.
//!
//! Records live in the ledger's metadata (synced). The card number in them is sealed by
//! the vault, never in clear.

use crate::issuer_links::{IssuerLinks, Outcome};
use junction_engine::hosted::decline_of_refusal;
use junction_engine::model::{auth_code, RequestKey};
use junction_engine::Engine;
use junction_ledger::{CommandOutcome, ParticipantId, TransferId};
use junction_wire::iso8583::Iso8583Message;
use std::sync::Arc;
use std::time::Duration;

/// Metadata tag of advice records: tag, request key (16 bytes), kind.
const META_ADVICE: u8 = b'v';

/// Fields never kept in an advice record: card data and the MACs.
const NOT_KEPT: [u8; 6] = [2, 35, 45, 52, 64, 128];

/// Most advices one round sends (each waits for its acknowledgement).
pub const ADVICES_PER_ROUND_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    /// The switch stood in: tell the issuer what it decided.
    StandIn,
    /// The issuer approved after the switch said no: reverse that approval.
    ReverseLateApproval,
}

impl AdviceKind {
    fn tag(self) -> u8 {
        match self {
            AdviceKind::StandIn => 1,
            AdviceKind::ReverseLateApproval => 2,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AdviceRecord {
    kind: AdviceKind,
    issuer: u64,
    key: String,
    /// The request as the acquirer sent it (or, for a reversal of a late approval, as the
    /// issuer answered it), without card data.
    mti: String,
    fields: Vec<(u8, String)>,
    /// The card number, sealed by the vault (hex).
    sealed_pan: String,
}

/// The advice outbox.
pub struct Advices {
    engine: Arc<Engine>,
    links: Arc<IssuerLinks>,
    switch_institution: String,
}

fn record_key(key: RequestKey, kind: AdviceKind) -> Vec<u8> {
    let mut record = vec![META_ADVICE];
    record.extend_from_slice(&key.0.to_be_bytes());
    record.push(kind.tag());
    record
}

impl Advices {
    pub fn new(engine: Arc<Engine>, links: Arc<IssuerLinks>, switch_institution: String) -> Advices {
        Advices { engine, links, switch_institution }
    }

    /// Records an advice durably (a synced write), before what it tells happens.
    pub fn record(
        &self,
        kind: AdviceKind,
        issuer: ParticipantId,
        key: RequestKey,
        message: &Iso8583Message,
        pan: &str,
    ) -> anyhow::Result<()> {
        let record = AdviceRecord {
            kind,
            issuer: issuer.0,
            key: format!("{:032x}", key.0),
            mti: message.mti().to_string(),
            fields: message
                .fields()
                .filter(|(field, _)| !NOT_KEPT.contains(field))
                .map(|(field, value)| (field, value.to_string()))
                .collect(),
            sealed_pan: hex::encode(self.engine.vault().seal(pan)),
        };
        let records = [(record_key(key, kind), serde_json::to_vec(&record)?)];
        match kind {
            // Durable with the booking that follows it (same write-ahead log), before its
            // answer is released: no fsync of its own on the request's path.
            AdviceKind::StandIn => self.engine.ledger().put_metadata_before_next_commit(&records)?,
            // Nothing follows it: its own synced write.
            AdviceKind::ReverseLateApproval => self.engine.ledger().put_metadata(&records)?,
        }
        Ok(())
    }

    /// Advices not yet acknowledged.
    pub fn outstanding(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        self.engine.ledger().scan_metadata(&[META_ADVICE], |_, _| count += 1)?;
        Ok(count)
    }

    /// Sends every advice whose issuer has a link, all at once, and forgets those the
    /// issuer acknowledges (0130, 0230 or 0430). Returns how many were acknowledged.
    pub async fn send_round(&self, timeout: Duration) -> anyhow::Result<usize> {
        let mut records = Vec::new();
        self.engine.ledger().scan_metadata(&[META_ADVICE], |key, value| {
            if records.len() < ADVICES_PER_ROUND_MAX {
                records.push((key.to_vec(), value.to_vec()));
            }
        })?;
        let mut sending = tokio::task::JoinSet::new();
        let mut forgotten = Vec::new();
        for (record_key, value) in records {
            let Ok(record) = serde_json::from_slice::<AdviceRecord>(&value) else {
                tracing::error!("an advice record does not decode; it stays for an operator to look at");
                continue;
            };
            let Some(key) = u128::from_str_radix(&record.key, 16).ok().map(RequestKey) else { continue };
            // A stand-in still being booked: its answer is not in the ledger yet.
            if self.engine.forwarding(key) {
                continue;
            }
            let Some(message) = self.build(&record, key)? else {
                // The stand-in decision never reached the books (the switch stopped between
                // the record and the booking): there is nothing to tell.
                forgotten.push(record_key);
                continue;
            };
            let issuer = ParticipantId(record.issuer);
            let Some(link) = self.links.links_of(issuer).into_iter().find(|link| link.is_healthy()) else {
                continue;
            };
            let Some(mut pending) = self.links.forward_on(&link, key, message) else { continue };
            sending.spawn(async move {
                match pending.wait(timeout).await {
                    Outcome::Answered(answer) if matches!(answer.message.mti(), "0130" | "0230" | "0430") => {
                        Some(record_key)
                    }
                    _ => None,
                }
            });
        }
        let mut acknowledged = 0;
        while let Some(done) = sending.join_next().await {
            if let Ok(Some(record_key)) = done {
                forgotten.push(record_key);
                acknowledged += 1;
            }
        }
        if !forgotten.is_empty() {
            // Lost in a crash, an acknowledged advice is sent again: the issuer knows it by
            // its field 90.
            self.engine.ledger().delete_metadata_lazily(&forgotten)?;
        }
        Ok(acknowledged)
    }

    /// The advice message of a record; `None` for a stand-in whose decision is not in the
    /// ledger.
    fn build(&self, record: &AdviceRecord, key: RequestKey) -> anyhow::Result<Option<Iso8583Message>> {
        let get = |field: u8| record.fields.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str());
        let (mti, code, auth) = match record.kind {
            AdviceKind::StandIn => {
                let Some((_, outcome)) = self.engine.ledger().command_answer(TransferId(key.0))? else {
                    return Ok(None);
                };
                let (code, auth) = match outcome {
                    CommandOutcome::Committed { reference, .. } => ("00".to_string(), Some(auth_code(reference))),
                    CommandOutcome::Refused(refusal) => (decline_of_refusal(refusal).0.as_str().to_string(), None),
                    CommandOutcome::Failed(_) | CommandOutcome::Conflict => ("05".to_string(), None),
                };
                // ISO 8583: an authorization's advice is 0120, a financial request's
                // 0220, a reversal's 0420.
                let mti = match record.mti.get(..2) {
                    Some("04") => "0420",
                    Some("02") => "0220",
                    _ => "0120",
                };
                (mti, Some(code), auth)
            }
            AdviceKind::ReverseLateApproval => ("0420", None, None),
        };
        let mut message = Iso8583Message::new(mti)?;
        for (field, value) in &record.fields {
            if !matches!(field, 11 | 38 | 39 | 90) {
                let _ = message.set(*field, value);
            }
        }
        if let Some(pan) = hex::decode(&record.sealed_pan).ok().and_then(|sealed| self.engine.vault().open(&sealed)) {
            let _ = message.set(2, &pan);
        }
        let _ = message.set(33, &self.switch_institution);
        if let Some(code) = code {
            let _ = message.set(39, &code);
        }
        if let Some(auth) = auth {
            let _ = message.set(38, std::str::from_utf8(&auth).unwrap_or("000000"));
        }
        // Field 90 names the original request as the issuer saw it (MTI, STAN on the link,
        // transmission time, acquirer, forwarder): the same every time this advice is
        // sent. A reversal's record already names the request it reverses.
        let original = match (record.mti.starts_with("04"), get(90)) {
            (true, Some(original)) => original.to_string(),
            _ => original_data(
                &record.mti,
                get(11).unwrap_or("0"),
                get(7).unwrap_or("0"),
                get(32).unwrap_or("0"),
                get(33).unwrap_or(&self.switch_institution),
            ),
        };
        let _ = message.set(90, &original);
        Ok(Some(message))
    }
}

/// Field 90, original data elements: MTI (4), STAN (6), transmission time (10), acquirer
/// (11) and forwarding institution (11), numbers zero-padded.
pub fn original_data(mti: &str, stan: &str, time: &str, acquirer: &str, forwarder: &str) -> String {
    format!("{mti:0>4}{stan:0>6}{time:0>10}{acquirer:0>11}{forwarder:0>11}")
}
