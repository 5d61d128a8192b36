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

/// Header of `positions.csv`: a participant's movement in one currency over the window.
/// `net` = credits - debits: positive is owed to the participant, negative it owes.
pub const POSITIONS_HEADER: &str = "participant_id,participant_name,currency,debit_count,credit_count,\
debits,credits,net,debits_minor,credits_minor,net_minor\n";

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
