//! The token vault and card directory.
//!
//! Full card numbers never stay in memory or reach the disk: each PAN (or DPAN) is
//! replaced on entry by a keyed hash, HMAC-SHA256 under the vault key, truncated to 128
//! bits. The directory maps those keys to the account they draw on, the card's expiry,
//! and for device tokens their domain restrictions.
//!
//! Lookups happen on every request before it is routed to a shard, from many threads at
//! once, so the directory is a lock-free concurrent map (papaya): readers never block each
//! other or the admin side provisioning millions of cards.

use crate::codes::DeclineReason;
use crate::model::{CardSpec, EntryMode, EntryModes, PanKey, TokenSpec, TokenState};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use junction_ledger::AccountId;
use sha2::Sha256;

/// Shortest vault key accepted, in bytes.
pub const VAULT_KEY_SIZE_MIN_BYTES: usize = 16;

/// Hashes PANs under the vault key, and seals the real card numbers behind device tokens
/// of hosted issuers (AES-256-GCM under a key derived from the vault key), which the switch
/// must hand to the issuer's host. The prepared HMAC state is cloned per hash, so a hash
/// costs two SHA-256 compressions.
#[derive(Clone)]
pub struct Vault {
    mac: Hmac<Sha256>,
    cipher: Aes256Gcm,
}

/// Bytes of a sealed card number's nonce, in front of its ciphertext.
const SEAL_NONCE_BYTES: usize = 12;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("vault key must be at least {VAULT_KEY_SIZE_MIN_BYTES} bytes")]
pub struct VaultKeyTooShort;

impl Vault {
    pub fn new(key: &[u8]) -> Result<Vault, VaultKeyTooShort> {
        if key.len() < VAULT_KEY_SIZE_MIN_BYTES {
            return Err(VaultKeyTooShort);
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| VaultKeyTooShort)?;
        // The encryption key is the HMAC of a fixed label under the vault key: never the
        // vault key itself, and never one of the PAN hashes.
        let mut derive = mac.clone();
        derive.update(b"junction-vault-sealing-key");
        let sealing_key = derive.finalize().into_bytes();
        let cipher = Aes256Gcm::new_from_slice(&sealing_key).map_err(|_| VaultKeyTooShort)?;
        Ok(Vault { mac, cipher })
    }

    /// Seals a card number: a random nonce, then the ciphertext with its tag.
    pub fn seal(&self, pan: &str) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut sealed = nonce.to_vec();
        // Encryption into memory fails only past 64 GiB of plaintext.
        sealed.extend(self.cipher.encrypt(&nonce, pan.as_bytes()).unwrap_or_default());
        sealed
    }

    /// The card number of a sealed one; `None` if it was not sealed under this vault key or
    /// was altered.
    pub fn open(&self, sealed: &[u8]) -> Option<String> {
        if sealed.len() <= SEAL_NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(SEAL_NONCE_BYTES);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).ok()?;
        String::from_utf8(plain).ok()
    }

    pub fn pan_key(&self, pan: &str) -> PanKey {
        let mut mac = self.mac.clone();
        mac.update(pan.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        PanKey(u128::from_be_bytes(bytes))
    }
}

/// What the directory knows of a card or token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardEntry {
    pub account: AccountId,
    pub expiry_yymm: u16,
    /// For device tokens: where the token may be used, and whether it may be now. `None`
    /// for real cards.
    pub token: Option<TokenDomain>,
}

/// A device token's domain restriction and lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDomain {
    pub entry_modes: EntryModes,
    pub state: TokenState,
}

impl CardEntry {
    /// Why a new use of this device token is refused, if it is (`None` for real cards):
    /// suspended, deleted, expired, or outside its entry modes. `paid_in`: the token is
    /// credited, not presented at a terminal (a tax refund), so no entry mode applies.
    pub fn token_refusal(&self, mode: EntryMode, today_yymm: u16, paid_in: bool) -> Option<DeclineReason> {
        let token = self.token?;
        match token.state {
            TokenState::Active => {}
            TokenState::Suspended => return Some(DeclineReason::TokenSuspended),
            TokenState::Deleted => return Some(DeclineReason::TokenDeleted),
        }
        if is_expired(self.expiry_yymm, today_yymm) {
            return Some(DeclineReason::TokenExpired);
        }
        (!paid_in && !token.entry_modes.allows(mode)).then_some(DeclineReason::TokenDomainViolation)
    }
}

/// Most cards and tokens the directory holds. Each costs about 64 bytes.
pub const DIRECTORY_ENTRIES_MAX: usize = 50_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error("the card directory is full ({DIRECTORY_ENTRIES_MAX} entries)")]
    Full,
    #[error("card expiry {0:04} is not a YYMM date")]
    BadExpiry(u16),
}

#[derive(Default)]
pub struct Directory {
    entries: papaya::HashMap<PanKey, CardEntry, rustc_hash::FxBuildHasher>,
    /// The sealed real card numbers of device tokens of hosted issuers (`Vault::seal`).
    sealed: papaya::HashMap<PanKey, Vec<u8>, rustc_hash::FxBuildHasher>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    pub fn get(&self, key: PanKey) -> Option<CardEntry> {
        self.entries.pin().get(&key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn insert_entry(&self, key: PanKey, entry: CardEntry) -> Result<(), DirectoryError> {
        if !valid_yymm(entry.expiry_yymm) {
            return Err(DirectoryError::BadExpiry(entry.expiry_yymm));
        }
        if self.entries.len() >= DIRECTORY_ENTRIES_MAX {
            return Err(DirectoryError::Full);
        }
        self.entries.pin().insert(key, entry);
        Ok(())
    }

    /// A card's key and entry, checked, not yet inserted (`insert_entry`).
    pub fn card_entry(&self, vault: &Vault, card: &CardSpec) -> Result<(PanKey, CardEntry), DirectoryError> {
        let entry = CardEntry { account: card.account, expiry_yymm: card.expiry_yymm, token: None };
        check_entry(&entry)?;
        Ok((vault.pan_key(&card.pan), entry))
    }

    /// Keeps the sealed real card number of a token.
    pub(crate) fn insert_sealed(&self, key: PanKey, sealed: Vec<u8>) {
        self.sealed.pin().insert(key, sealed);
    }

    /// The sealed real card number of a token, if it has one.
    pub fn sealed(&self, key: PanKey) -> Option<Vec<u8>> {
        self.sealed.pin().get(&key).cloned()
    }

    /// A device token's key and entry, checked, not yet inserted (`insert_entry`); one
    /// already known keeps its lifecycle state (a token suspended or deleted at runtime
    /// stays so when the configuration provisions it again).
    pub fn token_entry(&self, vault: &Vault, token: &TokenSpec) -> Result<(PanKey, CardEntry), DirectoryError> {
        let key = vault.pan_key(&token.dpan);
        let state = self.get(key).and_then(|known| known.token).map_or(TokenState::Active, |t| t.state);
        let entry = CardEntry {
            account: token.account,
            expiry_yymm: token.expiry_yymm,
            token: Some(TokenDomain { entry_modes: token.allowed_entry_modes, state }),
        };
        check_entry(&entry)?;
        Ok((key, entry))
    }
}

fn check_entry(entry: &CardEntry) -> Result<(), DirectoryError> {
    if valid_yymm(entry.expiry_yymm) {
        Ok(())
    } else {
        Err(DirectoryError::BadExpiry(entry.expiry_yymm))
    }
}

fn valid_yymm(yymm: u16) -> bool {
    let month = yymm % 100;
    yymm < 10_000 && (1..=12).contains(&month)
}

/// Whether a card expiring at the end of `expiry_yymm` has expired by `today_yymm`.
pub fn is_expired(expiry_yymm: u16, today_yymm: u16) -> bool {
    // YY wraps at 2099; compare as months since 2000.
    let months = |yymm: u16| u32::from(yymm / 100) * 12 + u32::from(yymm % 100);
    months(expiry_yymm) < months(today_yymm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pan_keys_are_keyed_and_stable() {
        let vault = Vault::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = Vault::new(b"fedcba9876543210fedcba9876543210").unwrap();
        let pan = "4761739001010119";
        assert_eq!(vault.pan_key(pan), vault.pan_key(pan));
        assert_ne!(vault.pan_key(pan), other.pan_key(pan));
        assert_ne!(vault.pan_key(pan), vault.pan_key("4761739001010127"));
        assert!(Vault::new(b"short").is_err());
        assert_eq!(format!("{vault:?}"), "Vault(<key redacted>)");
    }

    #[test]
    fn sealed_card_numbers_open_only_under_their_key() {
        let vault = Vault::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = Vault::new(b"fedcba9876543210fedcba9876543210").unwrap();
        let sealed = vault.seal("4761739001010119");
        assert!(!sealed.windows(16).any(|w| w == b"4761739001010119"));
        assert_eq!(vault.open(&sealed).as_deref(), Some("4761739001010119"));
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert_eq!(vault.open(&altered), None);
        assert_ne!(vault.seal("4761739001010119"), sealed, "a fresh nonce each time");
    }

    #[test]
    fn expiry_compares_months() {
        assert!(!is_expired(2612, 2611));
        assert!(!is_expired(2611, 2611));
        assert!(is_expired(2610, 2611));
        assert!(is_expired(2512, 2601));
    }
}
