//! Provisioning records: what the engine persists through the ledger's opaque metadata
//! (participants, cards and tokens), so that a restarted switch knows them again.
//! Cardholder accounts need no record: the ledger's account holds all the engine knows of
//! one (participant, currency, daily limits, and the status in its `user_data`). Small fixed binary layouts behind a one-byte tag; the ledger stores them
//! without reading them.

use crate::model::{EntryModes, ParticipantSpec, Role, TokenState};
use crate::vault::{CardEntry, TokenDomain};
use junction_ledger::{AccountId, Currency, ParticipantId};

pub(crate) const META_PARTICIPANT: u8 = b'p';
pub(crate) const META_CARD: u8 = b'c';
/// The sealed real card number of a token (`Vault::seal`), by the token's PAN key.
pub(crate) const META_SEALED_PAN: u8 = b'f';
/// The BIN table, as one JSON record.
pub(crate) const META_BIN_ROUTES: u8 = b'b';
/// The fee schedule (`fees.rs`), as JSON of its `FeeScheduleSpec`.
pub(crate) const META_FEES: u8 = b'$';
/// The suspended participants, as one JSON list of their ids.
pub(crate) const META_SUSPENDED: u8 = b's';

pub(crate) fn meta_key(tag: u8, id: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(tag);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredParticipant {
    id: u64,
    name: String,
    role: Role,
    caps: Vec<(String, u64)>,
}

pub(crate) fn encode_participant(spec: &ParticipantSpec) -> Vec<u8> {
    let stored = StoredParticipant {
        id: spec.id.0,
        name: spec.name.clone(),
        role: spec.role,
        caps: spec.net_debit_caps.iter().map(|(c, cap)| (c.code().to_string(), *cap)).collect(),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

pub(crate) fn decode_participant(bytes: &[u8]) -> Option<ParticipantSpec> {
    let stored: StoredParticipant = serde_json::from_slice(bytes).ok()?;
    let caps: Option<Vec<(Currency, u64)>> =
        stored.caps.iter().map(|(code, cap)| Currency::from_code(code).ok().map(|c| (c, *cap))).collect();
    Some(ParticipantSpec { id: ParticipantId(stored.id), name: stored.name, role: stored.role, net_debit_caps: caps? })
}

/// A card: account (16 bytes), expiry (2), 0, 0. A token: account, expiry, 1, its entry
/// modes, its state (a token recorded before tokens had states has no state byte: active).
pub(crate) fn encode_card(entry: &CardEntry) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(21);
    bytes.extend_from_slice(&entry.account.0.to_be_bytes());
    bytes.extend_from_slice(&entry.expiry_yymm.to_be_bytes());
    match entry.token {
        None => bytes.extend_from_slice(&[0, 0]),
        Some(token) => bytes.extend_from_slice(&[1, token.entry_modes.0, token.state as u8]),
    }
    bytes
}

pub(crate) fn decode_card(bytes: &[u8]) -> Option<CardEntry> {
    if bytes.len() != 20 && bytes.len() != 21 {
        return None;
    }
    Some(CardEntry {
        account: AccountId(u128::from_be_bytes(bytes[0..16].try_into().ok()?)),
        expiry_yymm: u16::from_be_bytes(bytes[16..18].try_into().ok()?),
        token: match (bytes[18], bytes.get(20)) {
            (0, None) => None,
            (1, state) => Some(TokenDomain {
                entry_modes: EntryModes(bytes[19]),
                state: TokenState::from_u8(state.copied().unwrap_or(0))?,
            }),
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_records_round_trip_and_old_token_records_read_as_active() {
        let card = CardEntry { account: AccountId(7), expiry_yymm: 2912, token: None };
        assert_eq!(decode_card(&encode_card(&card)), Some(card));
        for state in [TokenState::Active, TokenState::Suspended, TokenState::Deleted] {
            let token = CardEntry { token: Some(TokenDomain { entry_modes: EntryModes(0b1_1000), state }), ..card };
            assert_eq!(decode_card(&encode_card(&token)), Some(token));
        }
        // A token recorded before tokens had states: 20 bytes, active.
        let mut old = encode_card(&card);
        old[18] = 1;
        old[19] = 0b1000;
        let read = decode_card(&old).unwrap();
        assert_eq!(read.token, Some(TokenDomain { entry_modes: EntryModes(0b1000), state: TokenState::Active }));
        // A card with a state byte, or an unknown state: refused.
        let mut bad = encode_card(&card);
        bad.push(0);
        assert_eq!(decode_card(&bad), None);
        let mut unknown = encode_card(&CardEntry {
            token: Some(TokenDomain { entry_modes: EntryModes(1), state: TokenState::Active }),
            ..card
        });
        unknown[20] = 9;
        assert_eq!(decode_card(&unknown), None);
    }
}
