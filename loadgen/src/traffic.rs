//! What loadgen sends: the kinds of request, their shares, the cards they use.

use anyhow::{bail, ensure, Context, Result};
use rand::Rng;
use serde::Serialize;

/// The kinds of request in the mix. A kind whose precondition is not met when it comes
/// up (a completion with no open hold, a reversal or duplicate with nothing to repeat)
/// is sent as its fallback instead, so the schedule is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 0200, processing code 000000: authorize and post at once.
    Purchase,
    /// 0100, 000000: a hold, completed or reversed later.
    Authorization,
    /// 0220 naming an approved authorization in field 90: posts part or all of the hold.
    Completion,
    /// 0400 naming an approved purchase, or 0420 naming an open hold (a void).
    Reversal,
    /// 0200, 200000: the acquirer pays the cardholder back.
    Refund,
    /// 0100, 310000: moves nothing, answers the balance in field 54.
    BalanceInquiry,
    /// An exact resend (same bytes, same fields 32/41/11/7) of a request already answered:
    /// must get the original answer and move nothing.
    Duplicate,
    /// A purchase with a card number the switch does not know: must decline with 14.
    UnknownCard,
    /// A purchase of more than the account holds: must decline with 51.
    InsufficientFunds,
}

pub const KINDS: [Kind; 9] = [
    Kind::Purchase,
    Kind::Authorization,
    Kind::Completion,
    Kind::Reversal,
    Kind::Refund,
    Kind::BalanceInquiry,
    Kind::Duplicate,
    Kind::UnknownCard,
    Kind::InsufficientFunds,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Purchase => "purchase",
            Kind::Authorization => "authorization",
            Kind::Completion => "completion",
            Kind::Reversal => "reversal",
            Kind::Refund => "refund",
            Kind::BalanceInquiry => "balance_inquiry",
            Kind::Duplicate => "duplicate",
            Kind::UnknownCard => "unknown_card",
            Kind::InsufficientFunds => "insufficient_funds",
        }
    }

    pub fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }

    fn from_name(name: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == name || k.name().replace('_', "-") == name)
    }

    /// The response code this kind must get, where it has one regardless of state.
    pub fn expected_code(self) -> Option<&'static str> {
        match self {
            Kind::UnknownCard => Some("14"),
            Kind::InsufficientFunds => Some("51"),
            _ => None,
        }
    }

    /// Whether `code` is an acceptable decline for this kind besides `expected_code`. The
    /// switch checks the issuer's net debit cap before funds (engine/src/codes.rs), so a
    /// too-large purchase near the cap declines 05 instead of 51: still a decline, and
    /// still moves nothing.
    pub fn also_accepts(self, code: &str) -> bool {
        matches!((self, code), (Kind::InsufficientFunds, "05"))
    }
}

/// Default shares of the mix, in percent.
pub const DEFAULT_MIX: [(Kind, f64); 9] = [
    (Kind::Purchase, 50.0),
    (Kind::Authorization, 12.0),
    (Kind::Completion, 10.0),
    (Kind::Reversal, 4.0),
    (Kind::Refund, 4.0),
    (Kind::BalanceInquiry, 10.0),
    (Kind::Duplicate, 4.0),
    (Kind::UnknownCard, 3.0),
    (Kind::InsufficientFunds, 3.0),
];

/// The traffic mix: cumulative weights for drawing a kind.
#[derive(Clone, Debug)]
pub struct Mix {
    shares: Vec<(Kind, f64)>,
    cumulative: Vec<(Kind, f64)>,
}

impl Mix {
    /// `--mix purchase=60,refund=5,...`: kinds not named keep their default share; the
    /// shares need not add up to 100 (they are normalised).
    pub fn parse(text: Option<&str>) -> Result<Mix> {
        let mut shares: Vec<(Kind, f64)> = DEFAULT_MIX.to_vec();
        if let Some(text) = text {
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((name, value)) = part.split_once('=') else {
                    bail!("--mix takes KIND=SHARE,...; {part:?} has no '='");
                };
                let Some(kind) = Kind::from_name(name.trim()) else {
                    let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
                    bail!("--mix: unknown kind {name:?}; kinds are {}", names.join(", "));
                };
                let value: f64 =
                    value.trim().parse().with_context(|| format!("--mix: share of {name} is not a number"))?;
                ensure!(value >= 0.0 && value.is_finite(), "--mix: share of {name} must not be negative");
                if let Some(slot) = shares.iter_mut().find(|(k, _)| *k == kind) {
                    slot.1 = value;
                }
            }
        }
        let total: f64 = shares.iter().map(|(_, s)| s).sum();
        ensure!(total > 0.0, "--mix: the shares add up to zero");
        let mut running = 0.0;
        let cumulative = shares
            .iter()
            .map(|(kind, share)| {
                running += share / total;
                (*kind, running)
            })
            .collect();
        let shares = shares.iter().map(|(kind, share)| (*kind, share / total)).collect();
        Ok(Mix { shares, cumulative })
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Kind {
        let u: f64 = rng.gen();
        self.cumulative.iter().find(|(_, c)| u < *c).or(self.cumulative.last()).map_or(Kind::Purchase, |(k, _)| *k)
    }

    pub fn share(&self, kind: Kind) -> f64 {
        self.shares.iter().find(|(k, _)| *k == kind).map_or(0.0, |(_, s)| *s)
    }

    pub fn shares(&self) -> &[(Kind, f64)] {
        &self.shares
    }
}

/// A card loadgen may use, with what it needs to build requests and check positions.
#[derive(Clone, Debug)]
pub struct Card {
    pub pan: String,
    /// The issuer participant of its account.
    pub issuer: u64,
    /// ISO 4217 numeric code (field 49).
    pub currency: u16,
    /// The account's opening balance in minor units (for amounts that must decline 51).
    pub opening_balance: u64,
}

/// How accounts (cards) are chosen for each request.
#[derive(Clone, Debug)]
pub enum Chooser {
    Uniform,
    /// Zipf: card `k` (0-based) with weight `1 / (k + 1)^s`; the cumulative table is
    /// searched by bisection (8 bytes per card).
    Zipf(Vec<f64>),
}

impl Chooser {
    pub fn zipf(cards: usize, exponent: f64) -> Chooser {
        let mut cumulative = Vec::with_capacity(cards);
        let mut running = 0.0;
        for k in 0..cards {
            running += 1.0 / ((k + 1) as f64).powf(exponent);
            cumulative.push(running);
        }
        for value in &mut cumulative {
            *value /= running;
        }
        Chooser::Zipf(cumulative)
    }

    pub fn pick(&self, cards: usize, rng: &mut impl Rng) -> usize {
        match self {
            Chooser::Uniform => rng.gen_range(0..cards),
            Chooser::Zipf(cumulative) => {
                let u: f64 = rng.gen();
                cumulative.partition_point(|c| *c <= u).min(cards - 1)
            }
        }
    }
}

/// The cards of a run and how to choose among them.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub cards: Vec<Card>,
    pub chooser: Chooser,
    /// Amounts of purchases, authorizations and refunds, minor units, inclusive.
    pub amount_min: u64,
    pub amount_max: u64,
}

impl Dataset {
    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        self.chooser.pick(self.cards.len(), rng)
    }

    pub fn amount(&self, rng: &mut impl Rng) -> u64 {
        rng.gen_range(self.amount_min..=self.amount_max)
    }
}

/// The demo cards of the embedded default configuration that plain traffic can use: one
/// USD card at issuer 1 (account 1001) and one JPY card at issuer 2 (account 2001). The
/// velocity-limited card of account 1002 is left out: it would decline after 20 uses.
pub fn demo_cards() -> Vec<Card> {
    vec![
        Card { pan: "4000001234567899".into(), issuer: 1, currency: 840, opening_balance: 1_000_000 },
        Card { pan: "3560001234567894".into(), issuer: 2, currency: 392, opening_balance: 500_000 },
    ]
}

/// Bank identification number of the cards `--provision` creates.
pub const PROVISION_BIN: &str = "424242";

/// Bank identification number of card numbers no one provisions (answered 14).
pub const UNKNOWN_BIN: &str = "499999";

/// Digits between the BIN and the check digit: 16-digit card numbers.
const PAN_SERIAL_DIGITS: usize = 9;

/// Cards one run may provision: the serial field's range.
pub const PROVISION_CARDS_MAX: u64 = 10u64.pow(PAN_SERIAL_DIGITS as u32);

/// The `serial`-th card number of a BIN, with its Luhn check digit.
pub fn pan(bin: &str, serial: u64) -> String {
    let body = format!("{bin}{serial:0width$}", width = PAN_SERIAL_DIGITS);
    let check = junction_wire::luhn::check_digit(&body);
    format!("{body}{check}")
}

/// Currency code (alpha) of the numeric codes loadgen sends, for matching positions.
pub fn currency_code(numeric: u16) -> &'static str {
    match numeric {
        840 => "USD",
        392 => "JPY",
        978 => "EUR",
        702 => "SGD",
        764 => "THB",
        986 => "BRL",
        360 => "IDR",
        156 => "CNY",
        _ => "???",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn demo_pans_pass_luhn() {
        // The demo JPY card of the default configuration does not pass Luhn; the switch
        // does not check it, and loadgen sends it as configured.
        assert!(junction_wire::luhn::is_valid(&demo_cards()[0].pan));
        let generated = pan(PROVISION_BIN, 42);
        assert_eq!(generated.len(), 16);
        assert!(junction_wire::luhn::is_valid(&generated));
        assert!(generated.starts_with("424242000000042"));
    }

    #[test]
    fn mix_defaults_and_overrides() {
        let mix = Mix::parse(None).expect("defaults");
        assert!((mix.share(Kind::Purchase) - 0.5).abs() < 1e-9);
        let mix = Mix::parse(Some("purchase=100,authorization=0,completion=0,reversal=0,refund=0,balance_inquiry=0,duplicate=0,unknown_card=0,insufficient_funds=0")).expect("valid");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        assert!((0..1000).all(|_| mix.draw(&mut rng) == Kind::Purchase));
        assert!(Mix::parse(Some("nonsense=1")).is_err());
    }

    #[test]
    fn zipf_prefers_the_first_cards() {
        let chooser = Chooser::zipf(1000, 1.0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let first = (0..10_000).filter(|_| chooser.pick(1000, &mut rng) == 0).count();
        // Weight of card 0: 1 / H(1000) ≈ 0.134.
        assert!((1000..1700).contains(&first), "{first}");
    }
}
