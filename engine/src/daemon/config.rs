//! `junctiond`'s configuration: TOML, with an embedded default that needs no file.
//!
//! Parsed at the edge and checked as a whole before anything starts; a bad config is a
//! clear error naming the field, never a half-started switch.

use crate::model::{EntryMode, EntryModes, Role};
use junction_ledger::Currency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The embedded default: a demo switch with a handful of participants, keys and cards.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub switch: SwitchConfig,
    #[serde(default)]
    pub participants: Vec<ParticipantConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub cards: Vec<CardConfig>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    pub name: String,
    pub bic: String,
    pub settlement_bank_bic: String,
    pub data_dir: PathBuf,
    pub iso8583_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub admin_token: String,
    #[serde(default)]
    pub shards: usize,
    #[serde(default = "default_commit_delay_us")]
    pub commit_delay_us: u64,
    #[serde(default = "default_queue_depth")]
    pub shard_queue_depth_max: usize,
    pub vault_key: String,
    #[serde(default)]
    pub cutoff_utc_offset_minutes: i32,
    /// Daily cut-off times, "HH:MM" in the offset above.
    #[serde(default)]
    pub cutoff_times: Vec<String>,
}

fn default_commit_delay_us() -> u64 {
    crate::COMMIT_DELAY_US_DEFAULT
}

fn default_queue_depth() -> usize {
    crate::SHARD_QUEUE_DEPTH_MAX_DEFAULT
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    pub id: u64,
    pub name: String,
    pub role: Role,
    /// What it puts in ISO 8583 field 32 (acquiring institution id), digits.
    pub institution_id: String,
    pub bic: String,
    /// Hex of its MAC/signature key (at least 16 bytes).
    pub key: String,
    /// Net debit cap per currency, minor units.
    pub net_debit_caps: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: u64,
    pub participant: u64,
    pub currency: String,
    #[serde(default)]
    pub opening_balance: u64,
    #[serde(default)]
    pub velocity_count_per_day_max: u32,
    #[serde(default)]
    pub velocity_amount_per_day_max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    pub pan: String,
    pub account: u64,
    /// YYMM.
    pub expiry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub dpan: String,
    pub account: u64,
    pub expiry: String,
    pub entry_modes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("config: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

impl Config {
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG_TOML)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Checks everything that can be checked without starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let switch = &self.switch;
        if switch.admin_token.len() < 16 {
            return Err(invalid("switch.admin_token must be at least 16 characters"));
        }
        let vault = hex::decode(&switch.vault_key).map_err(|_| invalid("switch.vault_key must be hex"))?;
        if vault.len() < crate::vault::VAULT_KEY_SIZE_MIN_BYTES {
            return Err(invalid("switch.vault_key must be at least 16 bytes"));
        }
        for bic in [&switch.bic, &switch.settlement_bank_bic] {
            check_bic(bic)?;
        }
        for time in &switch.cutoff_times {
            parse_hh_mm(time).ok_or_else(|| invalid(format!("switch.cutoff_times: {time:?} is not HH:MM")))?;
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut institutions = std::collections::BTreeSet::new();
        for p in &self.participants {
            if p.id == 0 || !ids.insert(p.id) {
                return Err(invalid(format!("participant id {} is zero or repeated", p.id)));
            }
            if p.institution_id.is_empty()
                || p.institution_id.len() > 11
                || !p.institution_id.bytes().all(|b| b.is_ascii_digit())
                || !institutions.insert(normalize_institution(&p.institution_id))
            {
                return Err(invalid(format!(
                    "participant {}: institution_id must be 1-11 digits and unique",
                    p.id
                )));
            }
            check_bic(&p.bic)?;
            let key = hex::decode(&p.key).map_err(|_| invalid(format!("participant {}: key must be hex", p.id)))?;
            if key.len() < 16 {
                return Err(invalid(format!("participant {}: key must be at least 16 bytes", p.id)));
            }
            for code in p.net_debit_caps.keys() {
                Currency::from_code(code).map_err(|e| invalid(format!("participant {}: {e}", p.id)))?;
            }
        }
        let mut accounts = std::collections::BTreeMap::new();
        for a in &self.accounts {
            let participant = self
                .participants
                .iter()
                .find(|p| p.id == a.participant)
                .ok_or_else(|| invalid(format!("account {}: unknown participant {}", a.id, a.participant)))?;
            if !participant.net_debit_caps.contains_key(&a.currency) {
                return Err(invalid(format!("account {}: participant {} does not settle in {}", a.id, a.participant, a.currency)));
            }
            if a.id == 0 || accounts.insert(a.id, a).is_some() {
                return Err(invalid(format!("account id {} is zero or repeated", a.id)));
            }
        }
        for c in &self.cards {
            check_pan(&c.pan)?;
            parse_yymm(&c.expiry).ok_or_else(|| invalid(format!("card expiry {:?} is not YYMM", c.expiry)))?;
            if !accounts.contains_key(&c.account) {
                return Err(invalid(format!("a card names unknown account {}", c.account)));
            }
        }
        for t in &self.tokens {
            check_pan(&t.dpan)?;
            parse_yymm(&t.expiry).ok_or_else(|| invalid(format!("token expiry {:?} is not YYMM", t.expiry)))?;
            if !accounts.contains_key(&t.account) {
                return Err(invalid(format!("a token names unknown account {}", t.account)));
            }
            parse_entry_modes(&t.entry_modes)?;
        }
        Ok(())
    }
}

fn check_bic(bic: &str) -> Result<(), ConfigError> {
    let ok = (bic.len() == 8 || bic.len() == 11)
        && bic[..6].bytes().all(|b| b.is_ascii_uppercase())
        && bic[6..].bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{bic:?} is not a BIC (8 or 11 characters)")))
    }
}

fn check_pan(pan: &str) -> Result<(), ConfigError> {
    if (12..=19).contains(&pan.len()) && pan.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        // Never echo the number itself.
        Err(invalid(format!("a card number of {} characters is not 12-19 digits", pan.len())))
    }
}

pub fn parse_yymm(text: &str) -> Option<u16> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u16 = text.parse().ok()?;
    (1..=12).contains(&(value % 100)).then_some(value)
}

pub fn parse_hh_mm(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

pub fn parse_entry_modes(names: &[String]) -> Result<EntryModes, ConfigError> {
    let modes: Result<Vec<EntryMode>, ConfigError> = names
        .iter()
        .map(|name| match name.as_str() {
            "manual" => Ok(EntryMode::Manual),
            "magnetic_stripe" => Ok(EntryMode::MagneticStripe),
            "chip" => Ok(EntryMode::Chip),
            "contactless" => Ok(EntryMode::Contactless),
            "ecommerce" => Ok(EntryMode::Ecommerce),
            other => Err(invalid(format!("unknown entry mode {other:?}"))),
        })
        .collect();
    Ok(EntryModes::of(&modes?))
}

/// Field 32 values compare without leading zeros (field 90 carries them zero-padded).
pub fn normalize_institution(id: &str) -> &str {
    let trimmed = id.trim_start_matches('0');
    if trimmed.is_empty() {
        "0"
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_round_trips() {
        let config = Config::embedded_default().unwrap();
        assert!(config.participants.len() >= 5);
        let printed = config.to_toml();
        let again = Config::parse(&printed).unwrap();
        assert_eq!(again.to_toml(), printed);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let base = DEFAULT_CONFIG_TOML;
        let cases = [
            (base.replace("shards = 0", "shards = \"two\""), "TOML"),
            (base.replace("vault_key = \"6a75", "vault_key = \"zz75"), "vault_key"),
            (base.replace("institution_id = \"100002\"", "institution_id = \"100001\""), "institution_id"),
            (base.replace("expiry = \"2912\"", "expiry = \"2913\""), "expiry"),
            (base.replace("bic = \"FIRSUS33XXX\"", "bic = \"nope\""), "BIC"),
            (base.replace("currency = \"JPY\"", "currency = \"XYZ\""), "does not settle"),
            (format!("{base}\nunknown_table = 1\n"), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }
}
