//! The participants the front ends know, changed at runtime without a restart: onboarding,
//! key rotation with an overlap, retirement.
//!
//! The configuration's `[[participants]]` seed the directory. What the operator changes
//! at runtime (`/v1/admin/participants`, `junction participant ...`) is a record in the
//! ledger's metadata (a journal entry: it survives a kill -9 and reaches a standby), and
//! from then on a participant's record is the one in force: a later edit of the same
//! participant in the configuration is ignored with a warning. Keys in a record are sealed
//! by the vault (AES-256-GCM), never stored in clear.
//!
//! Each participant is one `Member`, shared by every connection and gateway that knows
//! it. Onboarding swaps the lookup tables whole (`ArcSwap`); a rotation swaps the
//! member's keys in place, so a connection signed on before it verifies with the new key
//! from its next message; retirement flips a flag every interface checks.
//!
//! **Keys and their overlap.** A rotation makes the new key current and keeps the old one
//! accepted until `overlap_s` from now. Whatever a participant sends is verified with the
//! current key, then with the previous one while it is accepted. An answer is signed with
//! the key its request was verified with; what the switch originates (a request to an
//! issuer's host, a push to a payment system) is signed with the key the participant was
//! last seen using, which is the new one as soon as the participant has used it once, and
//! is the new one anyway once the overlap is over.

use crate::config::{normalize_institution, ConfigError, ParticipantConfig};
use arc_swap::ArcSwap;
use hmac::Mac;
use junction_engine::model::Role;
use junction_engine::Engine;
use junction_ledger::{Currency, ParticipantId};
use junction_wire::iso8583::MacKey;
use junction_wire::qr_api::HmacSha256;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The directory's records in the ledger's metadata: `P` + participant id (big-endian).
pub const META_DIRECTORY: u8 = b'P';

/// The longest overlap a rotation may give the old key: 30 days.
pub const KEY_OVERLAP_S_MAX: u64 = 30 * 24 * 3600;

/// One key of a participant, ready for both schemes: the ISO 8583 MAC and the HTTP API's
/// signature (HMAC-SHA256 keyed once, cloned per request).
pub struct Key {
    pub mac: MacKey,
    hmac: HmacSha256,
    /// The first 8 bytes of SHA-256 of the key, in hex: names a key in the admin API and
    /// logs without revealing it.
    pub fingerprint: String,
    /// The key's hex, kept to seal it into a record again.
    hex: String,
}

impl Key {
    pub fn from_hex(hex_key: &str) -> Result<Key, String> {
        let bytes = hex::decode(hex_key).map_err(|_| "the key must be hex".to_string())?;
        if bytes.len() < 16 {
            return Err("the key must be at least 16 bytes".into());
        }
        let mac = MacKey::new(&bytes).map_err(|e| e.to_string())?;
        let hmac = HmacSha256::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        let fingerprint = hex::encode(&Sha256::digest(&bytes)[..8]);
        Ok(Key { mac, hmac, fingerprint, hex: hex_key.to_ascii_lowercase() })
    }

    /// A fresh HMAC keyed with this key, for one signature.
    pub fn hmac(&self) -> HmacSha256 {
        self.hmac.clone()
    }
}

/// A participant's keys: the current one, and the one it replaced while still accepted.
pub struct KeyRing {
    pub current: Arc<Key>,
    /// The previous key and until when it is accepted (Unix ms).
    pub previous: Option<(Arc<Key>, u64)>,
}

impl KeyRing {
    fn accepted_previous(&self, now_ms: u64) -> Option<&Arc<Key>> {
        self.previous.as_ref().filter(|(_, until)| now_ms < *until).map(|(key, _)| key)
    }
}

/// A participant as the front ends know it.
pub struct Member {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// What it puts in ISO 8583 field 32, as configured.
    pub institution_id: String,
    pub bic: String,
    /// A payment system's endpoint.
    pub endpoint: Option<String>,
    /// Currencies it settles in.
    pub currencies: Vec<Currency>,
    /// An acquiring service provider's acquirers.
    pub acts_for: Vec<ParticipantId>,
    keys: ArcSwap<KeyRing>,
    /// The key it was last seen using: what the switch signs its own messages to it with.
    in_use: ArcSwap<Key>,
    retired: AtomicBool,
}

impl Member {
    fn new(config: &ParticipantConfig, currencies: Vec<Currency>, ring: KeyRing, retired: bool) -> Member {
        let in_use = Arc::clone(ring.previous.as_ref().map_or(&ring.current, |(key, _)| key));
        Member {
            id: ParticipantId(config.id),
            name: config.name.clone(),
            role: config.role,
            institution_id: config.institution_id.clone(),
            bic: config.bic.clone(),
            endpoint: config.endpoint.clone(),
            currencies,
            acts_for: config.acts_for.iter().copied().map(ParticipantId).collect(),
            keys: ArcSwap::from_pointee(ring),
            in_use: ArcSwap::new(in_use),
            retired: AtomicBool::new(retired),
        }
    }

    pub fn settles_in(&self, currency: Currency) -> bool {
        self.currencies.contains(&currency)
    }

    /// Retired: it may no longer sign on or sign anything.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The key that verifies what it sent: `check` is tried with the current key, then
    /// with the previous one while it is accepted. The current key's error otherwise.
    pub fn verify<E>(&self, check: impl Fn(&Key) -> Result<(), E>) -> Result<Arc<Key>, E> {
        let ring = self.keys.load();
        if ring.previous.is_none() {
            // No rotation in its overlap: one key, one check.
            check(&ring.current)?;
            return Ok(Arc::clone(&ring.current));
        }
        let previous = ring.accepted_previous(crate::activity::now_unix_ms());
        // The key it was last seen using first: a participant still on the old key costs
        // one MAC per message during the overlap, not two.
        let previous_first = previous.is_some_and(|p| Arc::ptr_eq(p, &self.in_use.load()));
        let accepted = |key: &Arc<Key>| {
            self.seen(key);
            Arc::clone(key)
        };
        if let Some(previous) = previous.filter(|_| previous_first) {
            if check(previous).is_ok() {
                return Ok(accepted(previous));
            }
        }
        match check(&ring.current) {
            Ok(()) => Ok(accepted(&ring.current)),
            Err(error) => match previous.filter(|_| !previous_first) {
                Some(previous) if check(previous).is_ok() => Ok(accepted(previous)),
                _ => Err(error),
            },
        }
    }

    fn seen(&self, key: &Arc<Key>) {
        if !Arc::ptr_eq(&self.in_use.load(), key) {
            self.in_use.store(Arc::clone(key));
        }
    }

    /// The key for a message the switch originates to this participant.
    pub fn signing_key(&self) -> Arc<Key> {
        let ring = self.keys.load();
        let in_use = self.in_use.load_full();
        match ring.accepted_previous(crate::activity::now_unix_ms()) {
            Some(previous) if Arc::ptr_eq(previous, &in_use) => in_use,
            _ => Arc::clone(&ring.current),
        }
    }

    /// The keys' fingerprints, for the admin API.
    pub fn key_view(&self) -> serde_json::Value {
        let ring = self.keys.load();
        serde_json::json!({
            "current": ring.current.fingerprint,
            "previous": ring.previous.as_ref().map(|(key, until)| serde_json::json!({
                "fingerprint": key.fingerprint,
                "accepted_until_unix_ms": until,
            })),
            "in_use": self.signing_key().fingerprint,
        })
    }
}

/// A participant's record in the ledger's metadata.
#[derive(Serialize, Deserialize)]
struct Record {
    /// Its entry as in `[[participants]]`, with `key` holding the sealed key's hex.
    participant: ParticipantConfig,
    /// The previous key, sealed, and until when it is accepted.
    previous: Option<(String, u64)>,
    retired: bool,
    /// Onboarded at runtime, not from the configuration.
    onboarded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("participant {0} is unknown")]
    Unknown(u64),
    #[error(transparent)]
    Engine(#[from] junction_engine::EngineError),
    #[error("ledger: {0}")]
    Ledger(#[from] junction_ledger::LedgerError),
}

impl From<ConfigError> for DirectoryError {
    fn from(error: ConfigError) -> Self {
        DirectoryError::Invalid(error.to_string())
    }
}

#[derive(Default, Clone)]
struct Tables {
    by_id: FxHashMap<u64, Arc<Member>>,
    /// By institution id without leading zeros (as field 32 is compared).
    by_institution: FxHashMap<String, Arc<Member>>,
    by_bic: FxHashMap<String, Arc<Member>>,
}

impl Tables {
    fn insert(&mut self, member: Arc<Member>) {
        self.by_institution.insert(normalize_institution(&member.institution_id).to_string(), Arc::clone(&member));
        self.by_bic.insert(member.bic.clone(), Arc::clone(&member));
        self.by_id.insert(member.id.0, member);
    }
}

/// Every participant, by id, institution id and BIC.
pub struct Directory {
    tables: ArcSwap<Tables>,
    engine: Arc<Engine>,
    /// One change at a time (the records are read, changed and written whole).
    changes: parking_lot::Mutex<()>,
}

impl Directory {
    /// The configuration's participants, then the records of what changed at runtime.
    pub fn load(config: &crate::config::Config, engine: Arc<Engine>) -> anyhow::Result<Directory> {
        let mut records = Vec::new();
        let mut undecodable = None;
        engine.ledger().scan_metadata(&[META_DIRECTORY], |key, value| {
            match serde_json::from_slice::<Record>(value) {
                Ok(record) => records.push(record),
                Err(error) => undecodable = Some(format!("{}: {error}", hex::encode(key))),
            }
        })?;
        // Fails closed: skipping a record could bring back a retired participant's keys.
        if let Some(what) = undecodable {
            anyhow::bail!("a participant record does not decode ({what}); refusing to start without it");
        }
        let directory = Directory {
            tables: ArcSwap::from_pointee(Tables::default()),
            engine,
            changes: parking_lot::Mutex::new(()),
        };
        let mut tables = Tables::default();
        let recorded: FxHashMap<u64, &Record> = records.iter().map(|r| (r.participant.id, r)).collect();
        for p in &config.participants {
            if let Some(record) = recorded.get(&p.id) {
                if !record.onboarded && !same_entry(p, &record.participant) {
                    tracing::warn!(
                        participant = p.id,
                        "the configuration's entry differs from the participant's record, which was changed at \
                         runtime; the record is in force"
                    );
                }
                continue;
            }
            let key = Key::from_hex(&p.key).map_err(|e| anyhow::anyhow!("participant {}: {e}", p.id))?;
            let ring = KeyRing { current: Arc::new(key), previous: None };
            tables.insert(Arc::new(Member::new(p, directory.currencies(p)?, ring, false)));
        }
        for record in &records {
            // A crash may have come between an onboarding's record and its engine side.
            if record.onboarded && directory.engine.participant(ParticipantId(record.participant.id)).is_none() {
                directory.engine.add_participant(record.participant.spec()?)?;
            }
            let member = directory.member_of(record).map_err(|e| anyhow::anyhow!("participant record: {e}"))?;
            let institution = normalize_institution(&member.institution_id);
            if let Some(other) = tables.by_institution.get(institution).filter(|o| o.id != member.id) {
                anyhow::bail!(
                    "participant {}'s record claims institution id {} of participant {}",
                    member.id.0,
                    member.institution_id,
                    other.id.0
                );
            }
            if let Some(other) = tables.by_bic.get(&member.bic).filter(|o| o.id != member.id) {
                anyhow::bail!(
                    "participant {}'s record claims BIC {} of participant {}",
                    member.id.0,
                    member.bic,
                    other.id.0
                );
            }
            if let Some(p) = config.participants.iter().find(|p| p.id == record.participant.id) {
                let ring = member.keys.load();
                let configured = Key::from_hex(&p.key).map(|k| k.fingerprint).unwrap_or_default();
                if configured != ring.current.fingerprint {
                    tracing::warn!(participant = p.id, "the configuration's key is not the key in force (rotated at runtime); the configured key is ignored");
                }
            }
            // A retired participant stays suspended whatever happened since.
            if member.is_retired() && !directory.engine.is_suspended(member.id) {
                directory.engine.set_suspended(member.id, true)?;
            }
            tables.insert(Arc::new(member));
        }
        directory.tables.store(Arc::new(tables));
        directory.note_countries();
        Ok(directory)
    }

    /// Gives the fee schedule in force every participant's country (from its BIC), so an
    /// onboarded participant's payments are priced domestic or cross-border like others'.
    fn note_countries(&self) {
        let countries = self
            .members()
            .iter()
            .filter_map(|member| Some((member.id, junction_engine::fees::country_of_bic(&member.bic)?)))
            .collect::<Vec<_>>();
        self.engine.add_fee_countries(&countries);
    }

    fn currencies(&self, p: &ParticipantConfig) -> Result<Vec<Currency>, DirectoryError> {
        // The engine's caps are in force (a currency may have been added since).
        if let Some(spec) = self.engine.participant(ParticipantId(p.id)) {
            return Ok(spec.net_debit_caps.iter().map(|(currency, _)| *currency).collect());
        }
        p.net_debit_caps
            .keys()
            .map(|code| Currency::from_code(code).map_err(|e| DirectoryError::Invalid(e.to_string())))
            .collect()
    }

    fn member_of(&self, record: &Record) -> Result<Member, DirectoryError> {
        let vault = self.engine.vault();
        let open = |sealed: &str| -> Result<Key, DirectoryError> {
            let bytes = hex::decode(sealed).map_err(|_| DirectoryError::Invalid("a sealed key is not hex".into()))?;
            let key = vault.open(&bytes).ok_or_else(|| {
                DirectoryError::Invalid(format!(
                    "participant {}: its key does not open under the vault key",
                    record.participant.id
                ))
            })?;
            Key::from_hex(&key).map_err(DirectoryError::Invalid)
        };
        let current = Arc::new(open(&record.participant.key)?);
        let previous = match &record.previous {
            Some((sealed, until)) => Some((Arc::new(open(sealed)?), *until)),
            None => None,
        };
        let ring = KeyRing { current, previous };
        Ok(Member::new(&record.participant, self.currencies(&record.participant)?, ring, record.retired))
    }

    fn record_of(&self, member: &Member, onboarded: bool, config: &ParticipantConfig) -> Record {
        let vault = self.engine.vault();
        let ring = member.keys.load();
        let mut participant = config.clone();
        participant.key = hex::encode(vault.seal(&ring.current.hex));
        Record {
            participant,
            previous: ring.previous.as_ref().map(|(key, until)| (hex::encode(vault.seal(&key.hex)), *until)),
            retired: member.is_retired(),
            onboarded,
        }
    }

    fn write(&self, record: &Record) -> Result<(), DirectoryError> {
        let value = serde_json::to_vec(record).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        self.engine.ledger().put_metadata(&[(record_key(record.participant.id), value)])?;
        Ok(())
    }

    pub fn get(&self, id: ParticipantId) -> Option<Arc<Member>> {
        self.tables.load().by_id.get(&id.0).cloned()
    }

    /// By ISO 8583 field 32 (leading zeros ignored).
    pub fn by_institution(&self, institution_id: &str) -> Option<Arc<Member>> {
        self.tables.load().by_institution.get(normalize_institution(institution_id)).cloned()
    }

    pub fn by_bic(&self, bic: &str) -> Option<Arc<Member>> {
        self.tables.load().by_bic.get(bic).cloned()
    }

    /// Every participant, by id.
    pub fn members(&self) -> Vec<Arc<Member>> {
        let mut all: Vec<Arc<Member>> = self.tables.load().by_id.values().cloned().collect();
        all.sort_by_key(|m| m.id.0);
        all
    }

    /// Onboards a participant, as a `[[participants]]` entry would: its position accounts
    /// and caps in the engine, then its record; usable from the moment this returns.
    pub fn onboard(&self, entry: ParticipantConfig) -> Result<Arc<Member>, DirectoryError> {
        let _change = self.changes.lock();
        entry.check()?;
        let tables = self.tables.load();
        if tables.by_id.contains_key(&entry.id) || self.engine.participant(ParticipantId(entry.id)).is_some() {
            return Err(DirectoryError::Conflict(format!("participant {} exists", entry.id)));
        }
        if tables.by_institution.contains_key(normalize_institution(&entry.institution_id)) {
            return Err(DirectoryError::Conflict(format!(
                "institution id {} belongs to another participant",
                entry.institution_id
            )));
        }
        for acquirer in &entry.acts_for {
            if !tables.by_id.get(acquirer).is_some_and(|a| a.role == Role::Acquirer && !a.is_retired()) {
                return Err(DirectoryError::Invalid(format!("acts_for {acquirer}: not an acquirer in service")));
            }
        }
        if tables.by_bic.contains_key(&entry.bic) {
            return Err(DirectoryError::Conflict(format!("BIC {} belongs to another participant", entry.bic)));
        }
        let key = Key::from_hex(&entry.key).map_err(DirectoryError::Invalid)?;
        let spec = entry.spec()?;
        let caps = &spec.net_debit_caps;
        // Fees are charged in the payment's currency to the switch's own participant.
        if let Some(switch) = self.engine.fee_schedule().switch_participant {
            let own = self.engine.participant(switch).map(|spec| spec.net_debit_caps).unwrap_or_default();
            if let Some((missing, _)) = caps.iter().find(|(c, _)| !own.iter().any(|(o, _)| o == c)) {
                return Err(DirectoryError::Invalid(format!(
                    "the switch participant {} has no {missing} position for this participant's fees",
                    switch.0
                )));
            }
        }
        let currencies = caps.iter().map(|(currency, _)| *currency).collect();
        let member =
            Arc::new(Member::new(&entry, currencies, KeyRing { current: Arc::new(key), previous: None }, false));
        // The record first: a crash between the two leaves a record whose engine side the
        // next start provisions again from it (`load`).
        self.write(&self.record_of(&member, true, &entry))?;
        let provisioned = self.engine.add_participant(spec);
        if let Err(error) = provisioned {
            self.engine.ledger().delete_metadata(&[record_key(entry.id)])?;
            return Err(error.into());
        }
        let mut next = (**tables).clone();
        next.insert(Arc::clone(&member));
        self.tables.store(Arc::new(next));
        self.note_countries();
        tracing::info!(participant = entry.id, name = %entry.name, role = ?entry.role, "participant onboarded");
        Ok(member)
    }

    /// Rotates a participant's key: `key_hex` is current from now, the old key is accepted
    /// for `overlap_s` more (0: refused at once). The key before the old one, if still in
    /// its overlap, is dropped.
    pub fn rotate_key(&self, id: ParticipantId, key_hex: &str, overlap_s: u64) -> Result<Arc<Member>, DirectoryError> {
        let _change = self.changes.lock();
        let member = self.get(id).ok_or(DirectoryError::Unknown(id.0))?;
        if member.is_retired() {
            return Err(DirectoryError::Conflict(format!("participant {} is retired", id.0)));
        }
        if overlap_s > KEY_OVERLAP_S_MAX {
            return Err(DirectoryError::Invalid(format!("overlap_s is at most {KEY_OVERLAP_S_MAX} (30 days)")));
        }
        let key = Arc::new(Key::from_hex(key_hex).map_err(DirectoryError::Invalid)?);
        let ring = member.keys.load();
        if key.fingerprint == ring.current.fingerprint {
            return Err(DirectoryError::Conflict("the new key is the current key".into()));
        }
        let until = crate::activity::now_unix_ms() + overlap_s * 1000;
        let next = KeyRing { current: key, previous: (overlap_s > 0).then(|| (Arc::clone(&ring.current), until)) };
        let (entry, onboarded) = self.entry_of(&member)?;
        let staged = Member::new(&entry, member.currencies.clone(), next, false);
        self.write(&self.record_of(&staged, onboarded, &entry))?;
        // Swapped in place: connections signed on with this member see the new keys.
        member.keys.store(staged.keys.load_full());
        if overlap_s == 0 {
            member.in_use.store(staged.keys.load().current.clone());
        }
        tracing::info!(
            participant = id.0,
            current = %member.keys.load().current.fingerprint,
            overlap_s,
            "participant key rotated"
        );
        Ok(member)
    }

    /// Retires a participant for good: suspended in the engine (nothing new of it or to
    /// it is approved; what it approved before still completes and settles), and no
    /// longer able to sign on or sign a request.
    pub fn retire(&self, id: ParticipantId) -> Result<Arc<Member>, DirectoryError> {
        let _change = self.changes.lock();
        let member = self.get(id).ok_or(DirectoryError::Unknown(id.0))?;
        // Suspended first (idempotent): a crash after it and before the record leaves a
        // suspended participant, never a retired one the engine still serves.
        self.engine.set_suspended(id, true)?;
        if member.is_retired() {
            return Ok(member);
        }
        let (entry, onboarded) = self.entry_of(&member)?;
        let mut record = self.record_of(&member, onboarded, &entry);
        record.retired = true;
        self.write(&record)?;
        member.retired.store(true, Ordering::Relaxed);
        tracing::info!(participant = id.0, "participant retired");
        Ok(member)
    }

    /// Suspends a participant (`true`) or reinstates it, under the directory's lock so a
    /// reinstatement never crosses a retirement: a retired participant stays suspended.
    pub fn set_suspended(&self, id: ParticipantId, suspended: bool) -> Result<(), DirectoryError> {
        let _change = self.changes.lock();
        if !suspended && self.get(id).is_some_and(|m| m.is_retired()) {
            return Err(DirectoryError::Conflict(format!("participant {} is retired for good", id.0)));
        }
        self.engine.set_suspended(id, suspended)?;
        Ok(())
    }

    /// A member's `[[participants]]` entry as in force (its record's, or rebuilt from the
    /// member), and whether it was onboarded at runtime.
    fn entry_of(&self, member: &Member) -> Result<(ParticipantConfig, bool), DirectoryError> {
        if let Some(value) = self.engine.ledger().metadata(&record_key(member.id.0))? {
            if let Ok(record) = serde_json::from_slice::<Record>(&value) {
                return Ok((record.participant, record.onboarded));
            }
        }
        let caps = self
            .engine
            .participant(member.id)
            .map(|spec| spec.net_debit_caps.iter().map(|(c, cap)| (c.code().to_string(), *cap)).collect())
            .unwrap_or_default();
        Ok((
            ParticipantConfig {
                id: member.id.0,
                name: member.name.clone(),
                role: member.role,
                institution_id: member.institution_id.clone(),
                bic: member.bic.clone(),
                key: String::new(),
                net_debit_caps: caps,
                endpoint: member.endpoint.clone(),
                acts_for: member.acts_for.iter().map(|a| a.0).collect(),
            },
            false,
        ))
    }
}

fn record_key(id: u64) -> Vec<u8> {
    let mut key = vec![META_DIRECTORY];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Whether the configuration's entry says what the record said when it was written
/// (keys aside: the record's are sealed).
fn same_entry(config: &ParticipantConfig, recorded: &ParticipantConfig) -> bool {
    config.name == recorded.name
        && config.role == recorded.role
        && config.institution_id == recorded.institution_id
        && config.bic == recorded.bic
        && config.endpoint == recorded.endpoint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: Option<(&str, u64)>) -> KeyRing {
        KeyRing {
            current: Arc::new(Key::from_hex(current).unwrap()),
            previous: previous.map(|(hex_key, until)| (Arc::new(Key::from_hex(hex_key).unwrap()), until)),
        }
    }

    fn member(keys: KeyRing) -> Member {
        let entry = ParticipantConfig {
            id: 42,
            name: "Test".into(),
            role: Role::Wallet,
            institution_id: "4242".into(),
            bic: "TESTSGSGXXX".into(),
            key: String::new(),
            net_debit_caps: Default::default(),
            endpoint: None,
            acts_for: Vec::new(),
        };
        Member::new(&entry, Vec::new(), keys, false)
    }

    const OLD: &str = "00112233445566778899aabbccddeeff";
    const NEW: &str = "ffeeddccbbaa99887766554433221100";

    fn is(key: &'static str) -> impl Fn(&Key) -> Result<(), ()> {
        move |k: &Key| if k.hex == key { Ok(()) } else { Err(()) }
    }

    #[test]
    fn the_previous_key_is_accepted_only_during_its_overlap() {
        let now = crate::activity::now_unix_ms();
        let m = member(ring(NEW, Some((OLD, now + 60_000))));
        assert!(m.verify(is(NEW)).is_ok());
        assert!(m.verify(is(OLD)).is_ok(), "within the overlap");
        let m = member(ring(NEW, Some((OLD, now - 1))));
        assert!(m.verify(is(OLD)).is_err(), "after the overlap");
    }

    #[test]
    fn the_switch_signs_with_the_old_key_until_the_participant_uses_the_new_one() {
        let now = crate::activity::now_unix_ms();
        let m = member(ring(NEW, Some((OLD, now + 60_000))));
        assert_eq!(m.signing_key().hex, OLD);
        m.verify(is(OLD)).unwrap();
        assert_eq!(m.signing_key().hex, OLD);
        m.verify(is(NEW)).unwrap();
        assert_eq!(m.signing_key().hex, NEW);
        let m = member(ring(NEW, Some((OLD, now - 1))));
        assert_eq!(m.signing_key().hex, NEW, "the overlap is over");
    }

    #[test]
    fn fingerprints_name_keys_without_revealing_them() {
        let key = Key::from_hex(OLD).unwrap();
        assert_eq!(key.fingerprint.len(), 16);
        assert!(!OLD.contains(&key.fingerprint));
        assert!(Key::from_hex("0011").is_err());
        assert!(Key::from_hex("zz112233445566778899aabbccddeeff").is_err());
    }
}
