//! The record of a financial message that the ledger keeps with its command (`Memo`), so
//! that clearing files can say which message, terminal, merchant and card each row is:
//! what a gateway read, the issuer the shard found, the original's RRN. Card numbers are
//! masked here, at the source: only the first six and last four digits are ever kept.
//!
//! Layout (format 1), fixed offsets, text fields ASCII and padded with zero bytes:
//! see `Offsets`. A memo of another format is refused by `Detail::from_memo`.

use junction_ledger::{Memo, MEMO_BYTES};

/// Bumped when the layout changes.
pub const DETAIL_FORMAT: u8 = 1;

/// Which front end a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Channel {
    #[default]
    Unknown = 0,
    Iso8583 = 1,
    Qr = 2,
    CreditTransfer = 3,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Unknown => "",
            Channel::Iso8583 => "iso8583",
            Channel::Qr => "qr",
            Channel::CreditTransfer => "credit_transfer",
        }
    }

    fn from_byte(byte: u8) -> Option<Channel> {
        [Channel::Unknown, Channel::Iso8583, Channel::Qr, Channel::CreditTransfer]
            .into_iter()
            .find(|c| *c as u8 == byte)
    }
}

/// A text field of at most `N` printable ASCII characters (other bytes are dropped, so a
/// value can never break a CSV row or carry control characters into a file).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text([0; N])
    }
}

impl<const N: usize> Text<N> {
    /// The first `N` printable characters of `value` (none of `,"` or controls).
    pub fn new(value: &str) -> Text<N> {
        let mut bytes = [0; N];
        let kept = value.bytes().filter(|b| b.is_ascii_graphic() || *b == b' ').filter(|b| !matches!(b, b',' | b'"'));
        for (slot, byte) in bytes.iter_mut().zip(kept) {
            *slot = byte;
        }
        Text(bytes)
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        // Only ASCII is ever stored (`new`, `from_memo`'s check).
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A card number as clearing files may show it: its length, first six and last four
/// digits. Never more.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskedCard {
    length: u8,
    first6: [u8; 6],
    last4: [u8; 4],
}

impl MaskedCard {
    /// Masks a card number (PAN or DPAN). Numbers too short to mask safely (under 13
    /// digits, shorter than any real PAN) keep nothing but their length.
    pub fn of(pan: &str) -> MaskedCard {
        let digits = pan.as_bytes();
        let mut card = MaskedCard { length: digits.len().min(19) as u8, ..MaskedCard::default() };
        if digits.len() >= 13 && digits.iter().all(u8::is_ascii_digit) {
            card.first6.copy_from_slice(&digits[..6]);
            card.last4.copy_from_slice(&digits[digits.len() - 4..]);
        }
        card
    }

    /// `123456******1234`, as long as the number was; empty when there was none.
    pub fn display(&self) -> String {
        if self.length == 0 {
            return String::new();
        }
        let length = usize::from(self.length);
        if self.first6[0] == 0 {
            return "*".repeat(length);
        }
        let mut out = String::with_capacity(length);
        out.extend(self.first6.iter().map(|b| char::from(*b)));
        out.extend(std::iter::repeat_n('*', length.saturating_sub(10)));
        out.extend(self.last4.iter().map(|b| char::from(*b)));
        out
    }
}

impl std::fmt::Debug for MaskedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// What clearing needs to know of a request beyond its transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Detail {
    pub channel: Channel,
    /// The switch answered for an issuer whose host did not (set by the shard).
    pub stood_in: bool,
    /// ISO 8583 message type, e.g. `0200` (QR: empty).
    pub mti: Text<4>,
    /// Field 3.
    pub processing_code: Text<6>,
    /// Field 37, or a QR payment's own reference.
    pub rrn: Text<12>,
    /// Field 11.
    pub stan: Text<6>,
    /// Field 32: the acquiring institution's id as the acquirer sent it.
    pub acquirer_institution: Text<11>,
    /// Field 41, or a QR payment's terminal label.
    pub terminal: Text<8>,
    /// Field 42, or the QR code's merchant identifier as the switch routes on it (a
    /// PromptPay proxy, a Pix key, a UnionPay acquirer IIN and merchant id, the GUI of
    /// another scheme's template).
    pub merchant: Text<35>,
    /// Field 18, or the QR code's merchant category code.
    pub mcc: Text<4>,
    pub card: MaskedCard,
    /// The RRN of the transaction a completion, reversal or refund refers to.
    pub original_rrn: Text<12>,
    /// A QR payment's scheme (EMVCo, PromptPay, ...).
    pub qr_scheme: Text<8>,
    /// The card's issuer, as the shard found it (0: not found).
    pub issuer: u64,
    /// A QR payment's wallet (the payer's participant).
    pub wallet: u64,
    /// The acquiring participant (field 32's, or a QR payee's acquirer).
    pub acquirer: u64,
    /// What the request asked for, in its own currency (ISO 4217 numeric).
    pub amount: u64,
    pub currency_numeric: u16,
    /// Its fees as booked (`fees.rs`), in minor units, negative when they flow back (a
    /// refund's interchange, a reversal's): interchange from the acquirer to the issuer
    /// and the acquirer's fee to the switch, in the settlement currency; the payer's fee
    /// to the switch (the issuer's, or a QR wallet's), in the request's currency.
    pub interchange: i64,
    pub acquirer_fee: i64,
    pub payer_fee: i64,
}

/// Where each field sits in a memo.
struct Offsets;

impl Offsets {
    const FORMAT: usize = 0;
    const CHANNEL: usize = 1;
    const FLAGS: usize = 2;
    const MTI: usize = 3;
    const PROCESSING: usize = Self::MTI + 4;
    const RRN: usize = Self::PROCESSING + 6;
    const STAN: usize = Self::RRN + 12;
    const ACQUIRER: usize = Self::STAN + 6;
    const TERMINAL: usize = Self::ACQUIRER + 11;
    const MERCHANT: usize = Self::TERMINAL + 8;
    const MCC: usize = Self::MERCHANT + 35;
    const CARD_LENGTH: usize = Self::MCC + 4;
    const CARD_FIRST6: usize = Self::CARD_LENGTH + 1;
    const CARD_LAST4: usize = Self::CARD_FIRST6 + 6;
    const ORIGINAL_RRN: usize = Self::CARD_LAST4 + 4;
    const QR_SCHEME: usize = Self::ORIGINAL_RRN + 12;
    const ISSUER: usize = Self::QR_SCHEME + 8;
    const WALLET: usize = Self::ISSUER + 8;
    const ACQUIRER_PARTICIPANT: usize = Self::WALLET + 8;
    const AMOUNT: usize = Self::ACQUIRER_PARTICIPANT + 8;
    const CURRENCY: usize = Self::AMOUNT + 8;
    const INTERCHANGE: usize = Self::CURRENCY + 2;
    const ACQUIRER_FEE: usize = Self::INTERCHANGE + 8;
    const PAYER_FEE: usize = Self::ACQUIRER_FEE + 8;
    const END: usize = Self::PAYER_FEE + 8;
}

const _: () = assert!(Offsets::END <= MEMO_BYTES);

const FLAG_STOOD_IN: u8 = 1;

/// Why a memo did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    #[error("the memo has format {0}, this build reads {DETAIL_FORMAT}")]
    Format(u8),
    #[error("the memo names an unknown channel {0}")]
    Channel(u8),
    #[error("the memo holds a byte that is not printable ASCII in a text field")]
    Text,
}

impl Detail {
    pub fn to_memo(&self) -> Memo {
        let mut bytes = [0u8; MEMO_BYTES];
        bytes[Offsets::FORMAT] = DETAIL_FORMAT;
        bytes[Offsets::CHANNEL] = self.channel as u8;
        bytes[Offsets::FLAGS] = if self.stood_in { FLAG_STOOD_IN } else { 0 };
        let mut put = |at: usize, value: &[u8]| bytes[at..at + value.len()].copy_from_slice(value);
        put(Offsets::MTI, &self.mti.0);
        put(Offsets::PROCESSING, &self.processing_code.0);
        put(Offsets::RRN, &self.rrn.0);
        put(Offsets::STAN, &self.stan.0);
        put(Offsets::ACQUIRER, &self.acquirer_institution.0);
        put(Offsets::TERMINAL, &self.terminal.0);
        put(Offsets::MERCHANT, &self.merchant.0);
        put(Offsets::MCC, &self.mcc.0);
        put(Offsets::CARD_LENGTH, &[self.card.length]);
        put(Offsets::CARD_FIRST6, &self.card.first6);
        put(Offsets::CARD_LAST4, &self.card.last4);
        put(Offsets::ORIGINAL_RRN, &self.original_rrn.0);
        put(Offsets::QR_SCHEME, &self.qr_scheme.0);
        put(Offsets::ISSUER, &self.issuer.to_le_bytes());
        put(Offsets::WALLET, &self.wallet.to_le_bytes());
        put(Offsets::ACQUIRER_PARTICIPANT, &self.acquirer.to_le_bytes());
        put(Offsets::AMOUNT, &self.amount.to_le_bytes());
        put(Offsets::CURRENCY, &self.currency_numeric.to_le_bytes());
        put(Offsets::INTERCHANGE, &self.interchange.to_le_bytes());
        put(Offsets::ACQUIRER_FEE, &self.acquirer_fee.to_le_bytes());
        put(Offsets::PAYER_FEE, &self.payer_fee.to_le_bytes());
        Memo(bytes)
    }

    pub fn from_memo(memo: &Memo) -> Result<Detail, DetailError> {
        let bytes = &memo.0;
        if bytes[Offsets::FORMAT] != DETAIL_FORMAT {
            return Err(DetailError::Format(bytes[Offsets::FORMAT]));
        }
        let channel =
            Channel::from_byte(bytes[Offsets::CHANNEL]).ok_or(DetailError::Channel(bytes[Offsets::CHANNEL]))?;
        fn text<const N: usize>(bytes: &[u8], at: usize) -> Result<Text<N>, DetailError> {
            let mut out = [0u8; N];
            out.copy_from_slice(&bytes[at..at + N]);
            let end = out.iter().position(|b| *b == 0).unwrap_or(N);
            if !out[..end].iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                return Err(DetailError::Text);
            }
            Ok(Text(out))
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let mut first6 = [0u8; 6];
        first6.copy_from_slice(&bytes[Offsets::CARD_FIRST6..Offsets::CARD_FIRST6 + 6]);
        let mut last4 = [0u8; 4];
        last4.copy_from_slice(&bytes[Offsets::CARD_LAST4..Offsets::CARD_LAST4 + 4]);
        if !first6.iter().chain(&last4).all(|b| *b == 0 || b.is_ascii_digit()) {
            return Err(DetailError::Text);
        }
        Ok(Detail {
            channel,
            stood_in: bytes[Offsets::FLAGS] & FLAG_STOOD_IN != 0,
            mti: text(bytes, Offsets::MTI)?,
            processing_code: text(bytes, Offsets::PROCESSING)?,
            rrn: text(bytes, Offsets::RRN)?,
            stan: text(bytes, Offsets::STAN)?,
            acquirer_institution: text(bytes, Offsets::ACQUIRER)?,
            terminal: text(bytes, Offsets::TERMINAL)?,
            merchant: text(bytes, Offsets::MERCHANT)?,
            mcc: text(bytes, Offsets::MCC)?,
            card: MaskedCard { length: bytes[Offsets::CARD_LENGTH].min(19), first6, last4 },
            original_rrn: text(bytes, Offsets::ORIGINAL_RRN)?,
            qr_scheme: text(bytes, Offsets::QR_SCHEME)?,
            issuer: u64_at(Offsets::ISSUER),
            wallet: u64_at(Offsets::WALLET),
            acquirer: u64_at(Offsets::ACQUIRER_PARTICIPANT),
            amount: u64_at(Offsets::AMOUNT),
            currency_numeric: u16::from_le_bytes([bytes[Offsets::CURRENCY], bytes[Offsets::CURRENCY + 1]]),
            interchange: u64_at(Offsets::INTERCHANGE) as i64,
            acquirer_fee: u64_at(Offsets::ACQUIRER_FEE) as i64,
            payer_fee: u64_at(Offsets::PAYER_FEE) as i64,
        })
    }
}

/// An ISO 8583 request's RRN (field 37, 12 characters) and STAN (field 11) packed into a
/// transfer's 128-bit reference (`Transfer::user_data_128`).
pub fn pack_reference(rrn: Option<&str>, stan: Option<&str>) -> u128 {
    let mut bytes = [b' '; 16];
    if let Some(rrn) = rrn {
        for (slot, byte) in bytes[..12].iter_mut().zip(rrn.bytes()) {
            *slot = byte;
        }
    }
    let stan: u32 = stan.and_then(|s| s.parse().ok()).unwrap_or(0);
    bytes[12..].copy_from_slice(&stan.to_be_bytes());
    u128::from_be_bytes(bytes)
}

/// The RRN of a reference packed by `pack_reference` (spaces trimmed).
pub fn rrn_of_reference(reference: u128) -> Text<12> {
    let bytes = reference.to_be_bytes();
    let rrn = std::str::from_utf8(&bytes[..12]).unwrap_or("");
    Text::new(rrn.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_survives_its_memo() {
        let detail = Detail {
            channel: Channel::Iso8583,
            stood_in: true,
            mti: Text::new("0200"),
            processing_code: Text::new("000000"),
            rrn: Text::new("000100000042"),
            stan: Text::new("000042"),
            acquirer_institution: Text::new("10000000001"),
            terminal: Text::new("TERM0001"),
            merchant: Text::new("MERCHANT0000001"),
            mcc: Text::new("5411"),
            card: MaskedCard::of("4000001234567899"),
            original_rrn: Text::new("000100000041"),
            qr_scheme: Text::default(),
            issuer: 2,
            wallet: 0,
            acquirer: 1,
            amount: 12_345,
            currency_numeric: 840,
            interchange: -62,
            acquirer_fee: 3,
            payer_fee: 1,
        };
        let back = Detail::from_memo(&detail.to_memo()).expect("decodes");
        assert_eq!(back, detail);
        assert_eq!(back.card.display(), "400000******7899");
        assert!(!detail.to_memo().is_empty());
    }

    #[test]
    fn the_memo_never_holds_the_middle_digits() {
        let memo = Detail { card: MaskedCard::of("4000001234567899"), ..Detail::default() }.to_memo();
        let text = String::from_utf8_lossy(&memo.0);
        assert!(!text.contains("123456"), "middle digits must not be stored");
        assert_eq!(MaskedCard::of("1234").display(), "****");
        assert_eq!(MaskedCard::of("").display(), "");
        assert_eq!(MaskedCard::of("5555444433331111999").display().len(), 19);
    }

    #[test]
    fn text_keeps_csv_safe_ascii_only() {
        assert_eq!(Text::<8>::new("A,B\"C\nD").as_str(), "ABCD");
        assert_eq!(Text::<4>::new("123456").as_str(), "1234");
        assert_eq!(rrn_of_reference(pack_reference(Some("000100000042"), Some("42"))).as_str(), "000100000042");
    }

    #[test]
    fn a_memo_of_another_format_is_refused() {
        let mut memo = Detail::default().to_memo();
        memo.0[0] = 9;
        assert_eq!(Detail::from_memo(&memo), Err(DetailError::Format(9)));
    }
}
