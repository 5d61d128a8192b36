//! The issuer-host path: requests for cards whose BIN routes to an issuer's host.
//!
//! The front end forwards such a request to the issuer and relays its answer; the engine
//! keeps what must hold around that:
//!
//! 1. A resend of a request answered before gets that answer from the ledger, and a resend
//!    of one still out at the issuer waits for the same answer (`InFlight`): one forward,
//!    one answer, whatever the number of copies.
//! 2. The paying participant's net debit cap (the issuer's; the acquirer's for a refund)
//!    is reserved before the request leaves, so an issuer cannot exceed its cap through its
//!    own host's approvals; it is given back if the request does not commit.
//! 3. The issuer's answer, or the switch's own when it stands in, goes through the shards
//!    like any other request as a `HostedBooking`: approved, it books the acquirer-issuer
//!    obligation between their position accounts; declined, it is journaled as a refusal
//!    with the issuer's code. Either way the answer is the ledger's to give again.
//! 4. Standing in follows the route's limits (`StandInLimits`), per card per rolling day,
//!    counted by the card's shard.
//! 5. An answer from the issuer that comes after the switch already answered follows the
//!    table `LATE_ANSWER_RULES`.

use crate::codes::{DeclineReason, ResponseCode};
use crate::model::{auth_code, Operation, RequestKey, Response};
use crate::routing::StandInLimits;
use junction_ledger::{CommandOutcome, ParticipantId};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// What an issuer was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostedKind {
    /// 0200: the issuer pays the acquirer.
    Purchase,
    /// 0200 with processing code 20: the acquirer pays the issuer.
    Refund,
    /// 0100: a hold on the issuer's position until completed, voided or expired.
    Authorization,
    /// 0220: posts the hold of an earlier authorization (booked by the switch, not
    /// forwarded: the issuer approved the authorization).
    Completion { original: RequestKey },
    /// 0400/0420: undoes an earlier request's obligation.
    Reversal { original: RequestKey },
}

impl HostedKind {
    /// The operation the acquirer asked for, as a local card's request would be: what a
    /// resend's digest is computed from.
    pub fn as_operation(self) -> Operation {
        match self {
            HostedKind::Purchase => Operation::Purchase,
            HostedKind::Refund => Operation::Refund,
            HostedKind::Authorization => Operation::Authorize,
            HostedKind::Completion { original } => Operation::Complete { original },
            HostedKind::Reversal { original } => Operation::Reverse { original },
        }
    }

    /// Whether the issuer pays (its cap is the one reserved); false: the acquirer pays.
    pub fn issuer_pays(self) -> bool {
        !matches!(self, HostedKind::Refund)
    }
}

/// The answer to book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostedDecision {
    /// The issuer approved, with its authorization code (field 38).
    Approved { auth_code: [u8; 6] },
    /// The issuer declined with this code.
    Declined { code: ResponseCode },
    /// The issuer did not answer in time: the card's shard decides under these limits.
    StandIn { limits: StandInLimits },
    /// Booked by the switch without asking (a completion of an approved authorization).
    Book,
    /// Refused by the switch before it asked (the paying participant's cap).
    Refused { reason: DeclineReason },
}

/// A forwarded request's outcome, booked through the card's shard (`Operation::Hosted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostedBooking {
    pub issuer: ParticipantId,
    pub kind: HostedKind,
    pub decision: HostedDecision,
    /// Cap headroom reserved from the pool when the request left (the payer's), given back
    /// unless it commits.
    pub reserved: u64,
    /// The STAN the request had on the issuer's link, if it was sent: kept with the
    /// obligation (`forwarded_reference`) so that a later reversal or advice names the
    /// original as the issuer saw it.
    pub forwarded_stan: Option<u32>,
}

/// Marks `Transfer::user_data_64` of an obligation as holding the forwarded STAN.
pub const FORWARDED_STAN_BIT: u64 = 1 << 63;

/// `user_data_64` of an obligation booked for a request sent with `stan`.
pub fn forwarded_reference(stan: Option<u32>) -> u64 {
    stan.map_or(0, |stan| FORWARDED_STAN_BIT | u64::from(stan))
}

/// The forwarded STAN kept in an obligation's `user_data_64`.
pub fn forwarded_stan(user_data_64: u64) -> Option<u32> {
    (user_data_64 & FORWARDED_STAN_BIT != 0).then_some((user_data_64 & 0xFFFF_FFFF) as u32)
}

/// What the switch does when an issuer's answer comes after the switch answered the
/// acquirer (it stood in, or said 91). The one table of these rules:
///
/// | the switch answered | the issuer answers late | the switch then |
/// |---|---|---|
/// | approved (stood in) | approved | nothing more: the 0120 advice of the stand-in tells the issuer what was approved |
/// | approved (stood in) | declined | nothing more: the stand-in approval stands, and the advice tells the issuer |
/// | declined (stood in, or 91) | approved | sends the issuer a 0420 reversal of its approval: the acquirer was told no |
/// | declined (stood in, or 91) | declined | nothing more |
pub const LATE_ANSWER_RULES: [(bool, bool, LateAction); 4] = [
    (true, true, LateAction::Nothing),
    (true, false, LateAction::Nothing),
    (false, true, LateAction::ReverseIssuerApproval),
    (false, false, LateAction::Nothing),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateAction {
    Nothing,
    /// Send the issuer a 0420 reversal of the approval it gave late.
    ReverseIssuerApproval,
}

/// The rule of `LATE_ANSWER_RULES` for these two answers.
pub fn late_answer_action(switch_approved: bool, issuer_approved: bool) -> LateAction {
    LATE_ANSWER_RULES
        .iter()
        .find(|(switch, issuer, _)| *switch == switch_approved && *issuer == issuer_approved)
        .map_or(LateAction::Nothing, |(_, _, action)| *action)
}

/// Refusal codes of the ledger for an issuer's own decline codes: this bit, and the two
/// characters (7 bits each). Engine reasons (`DeclineReason::id`) stay below it.
pub const REFUSAL_ISSUER_CODE: u16 = 0x4000;

pub fn refusal_of_issuer_code(code: ResponseCode) -> u16 {
    let [a, b] = code.bytes();
    REFUSAL_ISSUER_CODE | (u16::from(a & 0x7F) << 7) | u16::from(b & 0x7F)
}

/// The response of a refusal code the ledger gave back: an engine reason, or an issuer's
/// own decline code.
pub fn decline_of_refusal(refusal: u16) -> (ResponseCode, DeclineReason) {
    if refusal & REFUSAL_ISSUER_CODE != 0 {
        let bytes = [((refusal >> 7) & 0x7F) as u8, (refusal & 0x7F) as u8];
        let code =
            std::str::from_utf8(&bytes).ok().and_then(ResponseCode::from_wire).unwrap_or(ResponseCode::DoNotHonor);
        return (code, DeclineReason::IssuerDeclined);
    }
    let reason = DeclineReason::from_id(refusal).unwrap_or(DeclineReason::SystemError);
    (reason.code(), reason)
}

/// The response code and authorization code a command's ledger answer was given with
/// (what the clearing files show for it): an approval's code as `Response::approved`
/// derives it, a decline's code as `Engine::answered` maps it.
pub fn answer_codes(outcome: CommandOutcome) -> (ResponseCode, Option<[u8; 6]>) {
    match outcome {
        CommandOutcome::Committed { reference, .. } => (ResponseCode::Approved, Some(auth_code(reference))),
        CommandOutcome::Failed(error) => (DeclineReason::from_ledger(error).code(), None),
        CommandOutcome::Refused(refusal) => (decline_of_refusal(refusal).0, None),
        CommandOutcome::Conflict => (DeclineReason::DuplicateConflict.code(), None),
    }
}

/// Most requests out at issuers at once (each holds its waiting copies).
pub const HOSTED_IN_FLIGHT_MAX: usize = 1 << 20;

/// Copies of one request that may wait for its answer (resends while it is out).
pub const WAITERS_PER_REQUEST_MAX: usize = 16;

/// A resend that waits for the answer of its original, still out at the issuer.
pub struct Waiter {
    pub tag: u64,
    pub reply: std::sync::Arc<dyn crate::model::ReplySink>,
}

/// Requests out at issuers, with the copies waiting for their answers.
#[derive(Default)]
pub struct InFlight {
    requests: Mutex<FxHashMap<RequestKey, Vec<Waiter>>>,
}

/// Whether a request may leave for the issuer.
pub enum Claim {
    /// This is the first copy: forward it; `finish` answers the copies that come meanwhile.
    Forward,
    /// A copy of a request out at the issuer: it gets that request's answer.
    Waiting,
    /// Too many requests out, or too many copies of this one: 91.
    Full,
}

impl InFlight {
    /// Claims `key` for forwarding, or parks the copy behind the original.
    pub fn claim(&self, key: RequestKey, tag: u64, reply: &std::sync::Arc<dyn crate::model::ReplySink>) -> Claim {
        let mut requests = self.requests.lock();
        if let Some(waiters) = requests.get_mut(&key) {
            if waiters.len() >= WAITERS_PER_REQUEST_MAX {
                return Claim::Full;
            }
            waiters.push(Waiter { tag, reply: std::sync::Arc::clone(reply) });
            return Claim::Waiting;
        }
        if requests.len() >= HOSTED_IN_FLIGHT_MAX {
            return Claim::Full;
        }
        requests.insert(key, Vec::new());
        Claim::Forward
    }

    /// The request's answer is out: every waiting copy gets it too.
    pub fn finish(&self, key: RequestKey, response: &Response) {
        let waiters = self.requests.lock().remove(&key).unwrap_or_default();
        for waiter in waiters {
            waiter.reply.send(Response { tag: waiter.tag, ..*response });
        }
    }

    pub fn len(&self) -> usize {
        self.requests.lock().len()
    }

    /// Whether `key` is out at an issuer (or being booked).
    pub fn contains(&self, key: RequestKey) -> bool {
        self.requests.lock().contains_key(&key)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_codes_survive_the_ledger() {
        for code in ["51", "05", "N7", "Q1", "00"] {
            let code = ResponseCode::from_wire(code).unwrap();
            assert_eq!(decline_of_refusal(refusal_of_issuer_code(code)), (code, DeclineReason::IssuerDeclined));
        }
        assert_eq!(
            decline_of_refusal(DeclineReason::CardExpired.id()),
            (ResponseCode::ExpiredCard, DeclineReason::CardExpired)
        );
        assert!(refusal_of_issuer_code(ResponseCode::from_wire("zz").unwrap()) < 0x8000);
    }

    #[test]
    fn late_answers_follow_the_table() {
        assert_eq!(late_answer_action(false, true), LateAction::ReverseIssuerApproval);
        assert_eq!(late_answer_action(true, false), LateAction::Nothing);
        assert_eq!(late_answer_action(true, true), LateAction::Nothing);
        assert_eq!(late_answer_action(false, false), LateAction::Nothing);
    }
}
