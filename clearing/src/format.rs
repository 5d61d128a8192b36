//! The file formats that writing and verifying share: the CSV headers, the `kind` of a
//! transfer, and how a money-moving transfer nets into positions. Writer and verifier
//! both import them from here, so neither imports the other for them.

use junction_ledger::{Currency, ParticipantId, Position, PositionKey, TransferFlags};
use rustc_hash::FxHashMap;

/// Header of `transfers.csv`. Transfer ids and references are 32 (`user_data_64`: 16)
/// lowercase hex digits; account ids are lowercase hex without leading zeros (up to 56
/// bytes a row less: at 10M rows a window, writing the file is what takes time);
/// `pending_id` (the hold a post or void resolves) is empty for other kinds; participants
/// are decimal; `amount` is in major units with the currency's exponent.
pub const TRANSFERS_HEADER: &str = "transfer_id,timestamp,code,kind,linked,pending_id,debit_account,\
debit_participant,credit_account,credit_participant,currency,amount,amount_minor,reference,user_data_64\n";

/// Header of `transactions.csv` (and of each participant's `transactions-<id>.csv`): one
/// row per request answered, approved or declined. `transaction_key` is the request's key
/// (32 hex digits); `rrn` is field 37 (a QR payment's: the first 12 hex digits of its
/// payment id); `auth_code` is empty for a decline; participants are decimal ids, empty
/// when none; `card_masked` keeps the first six and last four digits; `amount` is what the
/// request asked, in `currency`; `settlement_amount` is what its last transfer moved, in
/// `settlement_currency` (empty for a decline), and `rate` the second per unit of the
/// first; `interchange` (acquirer to issuer) and `acquirer_fee` (acquirer to the switch)
/// are in the settlement currency, `payer_fee` (the issuer's or the wallet's, to the
/// switch) in the request's, negative when they flow back, empty for a decline;
/// `original_rrn` names what a completion, reversal or refund refers to; `transfer_id` is
/// the request's first row in `transfers.csv`; `aggregator_participant` and
/// `sub_merchant_id` name the aggregator (payment facilitator) and its sub-merchant a
/// payment was for, empty when none (the payment settles through `acquirer_participant`).
pub const TRANSACTIONS_HEADER: &str = "transaction_key,timestamp,channel,mti,processing_code,rrn,stan,\
auth_code,response_code,acquirer_institution,acquirer_participant,issuer_participant,wallet_participant,\
terminal_id,merchant_id,mcc,card_masked,currency,amount,settlement_currency,settlement_amount,rate,\
interchange,acquirer_fee,payer_fee,original_rrn,stood_in,qr_scheme,transfer_id,aggregator_participant,\
sub_merchant_id\n";

/// Header of `positions.csv`: a participant's movement in one currency over the window.
/// `net` = credits - debits: positive is owed to the participant, negative it owes. It is
/// `gross` (the payments themselves) + `interchange` + `fees` (the switch's), each a net
/// of its own transfers (by transfer code).
pub const POSITIONS_HEADER: &str = "participant_id,participant_name,currency,debit_count,credit_count,\
debits,credits,net,debits_minor,credits_minor,net_minor,gross,interchange,fees\n";

/// Which part of a net a transfer is: the payment itself, interchange, or a switch fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Component {
    Gross = 0,
    Interchange = 1,
    Fees = 2,
}

impl Component {
    pub(crate) fn of_code(code: u16) -> Component {
        match code {
            junction_engine::books::TRANSFER_CODE_INTERCHANGE => Component::Interchange,
            junction_engine::books::TRANSFER_CODE_SWITCH_FEE => Component::Fees,
            _ => Component::Gross,
        }
    }
}

/// A position's net by component (`Component` as index).
pub(crate) type Components = [i128; 3];

/// Adds a money-moving transfer's amount to the components of both sides.
pub(crate) fn add_component(
    components: &mut FxHashMap<PositionKey, Components>,
    debtor: ParticipantId,
    creditor: ParticipantId,
    currency: Currency,
    code: u16,
    amount: u64,
) {
    if debtor == creditor {
        return;
    }
    let part = Component::of_code(code) as usize;
    components.entry((debtor, currency)).or_default()[part] -= i128::from(amount);
    components.entry((creditor, currency)).or_default()[part] += i128::from(amount);
}

/// What a transfer does, from its flags; the `kind` column of `transfers.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransferKind {
    /// Single-phase: moves the amount at once.
    Single,
    /// Reserves the amount; moves nothing until posted.
    Hold,
    /// Posts (all or part of) a hold: moves the posted amount.
    Post,
    /// Releases a hold: moves nothing.
    Void,
}

impl TransferKind {
    pub(crate) fn of(flags: TransferFlags) -> TransferKind {
        if flags.contains(TransferFlags::PENDING) {
            TransferKind::Hold
        } else if flags.contains(TransferFlags::POST_PENDING) {
            TransferKind::Post
        } else if flags.contains(TransferFlags::VOID_PENDING) {
            TransferKind::Void
        } else {
            TransferKind::Single
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            TransferKind::Single => "single",
            TransferKind::Hold => "hold",
            TransferKind::Post => "post",
            TransferKind::Void => "void",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<TransferKind> {
        [TransferKind::Single, TransferKind::Hold, TransferKind::Post, TransferKind::Void]
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    /// Whether the transfer moves money now (and so, between participants, positions).
    pub(crate) fn moves_money(self) -> bool {
        matches!(self, TransferKind::Single | TransferKind::Post)
    }
}

/// Adds a money-moving transfer to positions the way the ledger does: only between
/// accounts of different participants, one debit to the payer and one credit to the payee.
pub(crate) fn add_movement(
    positions: &mut FxHashMap<PositionKey, Position>,
    debtor: ParticipantId,
    creditor: ParticipantId,
    currency: Currency,
    amount: u64,
) {
    if debtor == creditor {
        return;
    }
    let debit = positions.entry((debtor, currency)).or_default();
    debit.debits += u128::from(amount);
    debit.debit_count += 1;
    let credit = positions.entry((creditor, currency)).or_default();
    credit.credits += u128::from(amount);
    credit.credit_count += 1;
}
