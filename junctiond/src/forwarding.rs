//! Forwarding to issuers' hosts: what the ISO 8583 front end does with a request whose
//! card's BIN routes to an issuer's host (`engine/src/routing.rs`, `hosted.rs`).
//!
//! 1. A resend answered before gets that answer; a copy of a request still out at the
//!    issuer waits for the same answer (one forward, one answer).
//! 2. The paying participant's cap is reserved before anything leaves.
//! 3. The request goes to the issuer on one of its links (`issuer_links.rs`), with the real
//!    card number behind a device token. A reversal names its original as the issuer saw
//!    it (field 90 with the STAN of the original's link, kept with its obligation).
//! 4. The issuer's answer is booked (approved: the acquirer-issuer obligation; declined: a
//!    refusal with its code) and relayed. A host down or late past `timeout_ms`: the
//!    switch stands in if the route allows it (recording the advice first), else answers 91.
//! 5. A late answer goes to the late-answer rules (`LATE_ANSWER_RULES`).

use crate::advices::{original_data, AdviceKind, Advices};
use crate::issuer_links::{IssuerLinks, LateAnswer, Outcome};
use crate::metrics::Metrics;
use junction_engine::books::is_stand_in;
use junction_engine::codes::{DeclineReason, ResponseCode};
use junction_engine::hosted::{
    forwarded_stan, late_answer_action, Claim, HostedBooking, HostedDecision, HostedKind, LateAction,
};
use junction_engine::model::{Instrument, Operation, Request, RequestKey, Response};
use junction_engine::routing::{RouteMode, RouteTarget};
use junction_engine::Engine;
use junction_ledger::{CommandOutcome, Currency, TransferId};
use junction_wire::iso8583::Iso8583Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Fields of an acquirer's request that never go to an issuer as they came: the MACs (the
/// switch MACs with the issuer's key). The STAN is replaced by the link's when it is sent.
const NOT_FORWARDED: [u8; 2] = [64, 128];

/// How often a reversal (or a late answer) looks whether its original is still out.
const ORIGINAL_POLL: Duration = Duration::from_millis(5);

pub struct Forwarding {
    pub engine: Arc<Engine>,
    pub links: Arc<IssuerLinks>,
    pub advices: Arc<Advices>,
    pub metrics: Arc<Metrics>,
    pub switch_institution: String,
    pub timeout: Duration,
}

impl Forwarding {
    /// Forwards `request` (parsed from the acquirer's `message`, card number `pan`) to the
    /// issuer of `route`, and answers it through its reply sink.
    pub async fn forward(
        self: Arc<Self>,
        mut request: Request,
        message: Box<Iso8583Message>,
        pan: String,
        route: RouteTarget,
    ) {
        let kind = match request.operation {
            Operation::Purchase => HostedKind::Purchase,
            Operation::Refund => HostedKind::Refund,
            Operation::Authorize => HostedKind::Authorization,
            Operation::Complete { original } => HostedKind::Completion { original },
            Operation::Reverse { original } => HostedKind::Reversal { original },
            Operation::BalanceInquiry => {
                self.relay_inquiry(request, *message, pan, route).await;
                return;
            }
            // Not ISO 8583 requests: never forwarded.
            Operation::Payment { .. } | Operation::Hosted(_) | Operation::TaxRefund { .. } => {
                request.reply.send(Response::declined(request.tag, request.key, DeclineReason::SystemError));
                return;
            }
        };
        // 1. A copy of a request out at the issuer waits for its answer; a resend of one
        //    answered before gets that answer from the ledger (looked up once claimed, so
        //    that no booking can land between the look and the claim).
        match self.engine.claim_forward(&request) {
            Claim::Forward => {}
            Claim::Waiting => return,
            Claim::Full => {
                request.reply.send(Response::declined(request.tag, request.key, DeclineReason::Overloaded));
                return;
            }
        }
        if let Some(response) = self.answered_before(&request) {
            request.reply.send(response);
            self.engine.release_forward(&response);
            return;
        }
        let booking = |decision, reserved, forwarded_stan| HostedBooking {
            issuer: route.issuer,
            kind,
            decision,
            reserved,
            forwarded_stan,
        };
        let mut forwarded = match kind {
            // A completion of an approved authorization is booked without asking.
            HostedKind::Completion { .. } => {
                self.book(request, booking(HostedDecision::Book, 0, None));
                return;
            }
            HostedKind::Reversal { original } => match self.reversal_of(&message, original).await {
                Some((reversal, false)) => reversal,
                Some((mut reversal, true)) => {
                    // The switch decided the original standing in: it decides the reversal
                    // too, and the issuer hears of both by advices (the original's may not
                    // have reached it yet).
                    let card_number = self.engine.card_number_for_issuer(&pan).unwrap_or_default();
                    self.prepare(&mut reversal, &card_number);
                    let decision = match self.stand_in(&route, &request, &reversal, &card_number, true) {
                        Some(decision) => decision,
                        None => HostedDecision::Refused { reason: DeclineReason::SystemError },
                    };
                    self.book(request, booking(decision, 0, None));
                    return;
                }
                None => {
                    let decision = HostedDecision::Refused { reason: DeclineReason::OriginalNotFound };
                    self.book(request, booking(decision, 0, None));
                    return;
                }
            },
            _ => *message,
        };
        // 2. A suspended acquirer or issuer: nothing new goes out (a reversal still does,
        //    a completion was booked above); the refusal is booked like the shard's own.
        let new = !matches!(kind, HostedKind::Reversal { .. });
        if new && (self.engine.is_suspended(request.acquirer) || self.engine.is_suspended(route.issuer)) {
            let decision = HostedDecision::Refused { reason: DeclineReason::ParticipantSuspended };
            self.book(request, booking(decision, 0, None));
            return;
        }
        // A device token suspended, deleted, expired or out of its domain: the switch is its
        // token service, so the issuer never sees the request.
        if let Some(reason) = new.then(|| self.token_refusal(&request)).flatten() {
            self.book(request, booking(HostedDecision::Refused { reason }, 0, None));
            return;
        }
        // 3. The payer's cap, before anything leaves.
        let reserved = match kind {
            HostedKind::Purchase | HostedKind::Authorization | HostedKind::Refund => {
                let payer = if kind.issuer_pays() { route.issuer } else { request.acquirer };
                if !self.engine.reserve_cap(payer, request.currency, request.amount) {
                    let decision = HostedDecision::Refused { reason: DeclineReason::NetDebitCapExceeded };
                    self.book(request, booking(decision, 0, None));
                    return;
                }
                request.amount
            }
            _ => 0,
        };
        // 4. To the issuer, with the real card number.
        let Some(card_number) = self.engine.card_number_for_issuer(&pan) else {
            let decision = HostedDecision::Refused { reason: DeclineReason::UnknownCard };
            self.book(request, booking(decision, reserved, None));
            return;
        };
        self.prepare(&mut forwarded, &card_number);
        request.trace.stamp(|stages| &mut stages.issuer_sent);
        let (outcome, sent_stan) = match self.links.forward(route.issuer, request.key, forwarded) {
            Ok(mut pending) => (pending.wait(self.timeout).await, Some(pending.stan)),
            // No link: what would have been sent is what the advice tells.
            Err(unsent) => (Outcome::LinkLost(Some(unsent)), None),
        };
        request.trace.stamp(|stages| &mut stages.issuer_answered);
        // 5. Its answer, or the switch's own.
        let decision = match outcome {
            Outcome::Answered(answer) => {
                self.metrics.issuer_answers.inc();
                let code =
                    answer.message.get(39).and_then(ResponseCode::from_wire).unwrap_or(ResponseCode::SystemMalfunction);
                if code.is_approved() {
                    let mut auth = [b'0'; 6];
                    for (slot, byte) in auth.iter_mut().zip(answer.message.get(38).unwrap_or("000000").bytes()) {
                        *slot = byte;
                    }
                    HostedDecision::Approved { auth_code: auth }
                } else {
                    HostedDecision::Declined { code }
                }
            }
            Outcome::LinkLost(sent) | Outcome::TimedOut(sent) => {
                self.metrics.issuer_timeouts.inc();
                let decision = sent.and_then(|sent| self.stand_in(&route, &request, &sent, &card_number, false));
                match decision {
                    Some(decision) => decision,
                    None => {
                        self.unavailable(request, route, kind, reserved);
                        return;
                    }
                }
            }
        };
        self.book(request, booking(decision, reserved, sent_stan));
    }

    /// The answer of a request answered before (a resend), or 91 when the ledger cannot
    /// say; `None`: it is new.
    fn answered_before(&self, request: &Request) -> Option<Response> {
        match self.engine.answered(request) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::error!(%error, "looking a request up in the ledger failed");
                Some(Response::declined(request.tag, request.key, DeclineReason::LedgerUnavailable))
            }
        }
    }

    /// Standing in, if the route allows it (or `always`): the advice is recorded first, so
    /// that once the decision is booked the issuer will hear of it. `None`: the switch may
    /// not stand in.
    fn stand_in(
        &self,
        route: &RouteTarget,
        request: &Request,
        forwarded: &Iso8583Message,
        card_number: &str,
        always: bool,
    ) -> Option<HostedDecision> {
        if route.mode != RouteMode::HostWithStandIn && !always {
            return None;
        }
        match self.advices.record(AdviceKind::StandIn, route.issuer, request.key, forwarded, card_number) {
            Ok(()) => {
                self.metrics.stand_in.inc();
                Some(HostedDecision::StandIn { limits: route.stand_in })
            }
            Err(error) => {
                tracing::error!(%error, "recording a stand-in advice failed; answering 91");
                None
            }
        }
    }

    /// No answer and no stand-in: 91, "try again", neither booked nor remembered.
    fn unavailable(&self, request: Request, route: RouteTarget, kind: HostedKind, reserved: u64) {
        let payer = if kind.issuer_pays() { route.issuer } else { request.acquirer };
        if reserved > 0 {
            self.engine.release_cap(payer, request.currency, reserved);
        }
        let response = Response::declined(request.tag, request.key, DeclineReason::IssuerUnavailable);
        request.reply.send(response);
        self.engine.release_forward(&response);
    }

    /// Books the outcome through the card's shard; its answer goes to the acquirer.
    fn book(&self, mut request: Request, booking: HostedBooking) {
        request.operation = Operation::Hosted(booking);
        self.engine.submit_hosted(request);
    }

    /// Why a device token may not be used for this request (`Engine::token_refusal`).
    fn token_refusal(&self, request: &Request) -> Option<DeclineReason> {
        match request.instrument {
            Instrument::Card(key) => self.engine.token_refusal(key, request.entry_mode),
            Instrument::Account(_) => None,
        }
    }

    /// The acquirer's request made ready for the issuer: its fields but the STAN and MACs,
    /// the real card number, field 33 naming the switch.
    fn prepare(&self, message: &mut Iso8583Message, card_number: &str) {
        for field in NOT_FORWARDED {
            message.remove(field);
        }
        if message.contains(2) {
            let _ = message.set(2, card_number);
        }
        let _ = message.set(33, &self.switch_institution);
    }

    /// A reversal as the issuer gets it: field 90 names the original as it was forwarded
    /// (the STAN it had on the issuer's link), and whether the switch booked the original
    /// standing in. Waits while the original is still out at the issuer (an acquirer that
    /// timed out often reverses at once). `None`: the original has no obligation, so there
    /// is nothing to reverse.
    async fn reversal_of(&self, message: &Iso8583Message, original: RequestKey) -> Option<(Iso8583Message, bool)> {
        let deadline = Instant::now() + self.timeout * 2;
        while self.engine.forwarding(original) && Instant::now() < deadline {
            tokio::time::sleep(ORIGINAL_POLL).await;
        }
        let obligation = TransferId(RequestKey::derive_from(original, "obligation").0);
        let record = self.engine.ledger().transfer(obligation).ok().flatten()?;
        let mut reversal = message.clone();
        let data = message.get(90).unwrap_or("");
        if let (Some(mti), Some(stan), Some(time), Some(acquirer)) =
            (data.get(..4), data.get(4..10), data.get(10..20), data.get(20..31))
        {
            let stan = forwarded_stan(record.transfer.user_data_64).map_or(stan.to_string(), |s| format!("{s:06}"));
            let _ = reversal.set(90, &original_data(mti, &stan, time, acquirer, &self.switch_institution));
        }
        Some((reversal, is_stand_in(record.transfer.code)))
    }

    /// A balance inquiry: relayed as the issuer answers it, moving nothing, remembered
    /// nowhere.
    async fn relay_inquiry(&self, request: Request, mut message: Iso8583Message, pan: String, route: RouteTarget) {
        if let Some(reason) = self.token_refusal(&request) {
            request.reply.send(Response::declined(request.tag, request.key, reason));
            return;
        }
        let outcome = match self.engine.card_number_for_issuer(&pan) {
            Some(number) => {
                self.prepare(&mut message, &number);
                match self.links.forward(route.issuer, request.key, message) {
                    Ok(mut pending) => Some(pending.wait(self.timeout).await),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let response = match outcome {
            Some(Outcome::Answered(answer)) => {
                self.metrics.issuer_answers.inc();
                let code =
                    answer.message.get(39).and_then(ResponseCode::from_wire).unwrap_or(ResponseCode::SystemMalfunction);
                if code.is_approved() {
                    let mut response =
                        Response::approved(request.tag, request.key, TransferId(request.key.0).folded(), None);
                    response.balance = answer.message.get(54).and_then(available_balance);
                    response
                } else {
                    Response { code, ..Response::declined(request.tag, request.key, DeclineReason::IssuerDeclined) }
                }
            }
            _ => {
                self.metrics.issuer_timeouts.inc();
                Response::declined(request.tag, request.key, DeclineReason::IssuerUnavailable)
            }
        };
        request.reply.send(response);
    }
}

/// The available balance of field 54 (account type, amount type 02, currency, sign C/D,
/// 12 digits), the first such amount.
fn available_balance(field: &str) -> Option<(i128, Currency)> {
    let bytes = field.as_bytes();
    (0..bytes.len() / 20).find_map(|i| {
        let amount = field.get(i * 20..i * 20 + 20)?;
        if amount.get(2..4)? != "02" {
            return None;
        }
        let currency = Currency::from_numeric(amount.get(4..7)?.parse().ok()?).ok()?;
        let value: i128 = amount.get(8..20)?.parse().ok()?;
        let sign = match amount.get(7..8)? {
            "C" => 1,
            "D" => -1,
            _ => return None,
        };
        Some((sign * value, currency))
    })
}

/// Handles answers that came after their request was answered, by `LATE_ANSWER_RULES`,
/// each in its own task (one may wait for its request's booking to be durable).
pub async fn late_answers(forwarding: Arc<Forwarding>, mut late: mpsc::Receiver<LateAnswer>) {
    while let Some(answer) = late.recv().await {
        // Only answers to authorization and financial requests follow the rules: a late
        // echo or advice acknowledgement changes nothing.
        if !matches!(answer.message.mti(), "0110" | "0210") {
            continue;
        }
        forwarding.metrics.issuer_late_answers.inc();
        tokio::spawn(late_answer(Arc::clone(&forwarding), answer));
    }
}

async fn late_answer(forwarding: Arc<Forwarding>, answer: LateAnswer) {
    // What the switch answered is in the ledger once its booking is durable.
    let deadline = Instant::now() + forwarding.timeout * 2;
    while forwarding.engine.forwarding(answer.key) && Instant::now() < deadline {
        tokio::time::sleep(ORIGINAL_POLL).await;
    }
    let issuer_approved = answer.message.get(39).and_then(ResponseCode::from_wire).is_some_and(|c| c.is_approved());
    let switch_approved = match forwarding.engine.ledger().command_answer(TransferId(answer.key.0)) {
        Ok(Some((_, CommandOutcome::Committed { .. }))) => true,
        Ok(_) => false,
        Err(error) => {
            tracing::error!(%error, "reading the switch's answer for a late issuer answer failed");
            return;
        }
    };
    tracing::debug!(issuer = answer.issuer.0, switch_approved, issuer_approved, "late issuer answer");
    if late_answer_action(switch_approved, issuer_approved) != LateAction::ReverseIssuerApproval {
        return;
    }
    // Reverse what the issuer approved, naming the request as it was forwarded (a synced
    // write: off the async threads).
    let Some(request) = answer.request else { return };
    let pan = request.get(2).unwrap_or("").to_string();
    let advices = Arc::clone(&forwarding.advices);
    let (issuer, key) = (answer.issuer, answer.key);
    let recorded = tokio::task::spawn_blocking(move || {
        advices.record(AdviceKind::ReverseLateApproval, issuer, key, &request, &pan)
    })
    .await;
    if let Ok(Err(error)) = recorded {
        tracing::error!(%error, "recording the reversal of a late approval failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_54_gives_the_available_balance() {
        let (eur, usd) = (Currency::from_code("EUR").unwrap(), Currency::from_code("USD").unwrap());
        assert_eq!(available_balance("0001978C0000000050000002978C000000012345"), Some((12_345, eur)));
        assert_eq!(available_balance("0002840D000000000100"), Some((-100, usd)));
        assert_eq!(available_balance("0002840X000000000100"), None);
        assert_eq!(available_balance("00"), None);
    }
}
