//! The record of a financial message that the ledger keeps with its command (`Memo`), so
//! that clearing files can say which message, terminal, merchant and card each row is:
//! what a gateway read, the issuer the shard found, the original's RRN. Card numbers are
//! masked here, at the source: only the first six and last four digits are ever kept.
//!
//! Encoding (format 2), compact because every memo is journaled: a format byte, the channel
//! and flags, then each text field as a length byte and its characters (a field of digits
//! only, most of them, packed two digits to a byte, flagged by the length byte's top bit),
//! the masked card, then the numbers as LEB128 varints (signed ones zigzagged). A typical
//! card purchase takes 75 to 85 bytes (184 in format 1). A memo of another format is refused by
//! `Detail::from_memo`. A payment of an aggregator's sub-merchant appends the aggregator
//! (varint) and the sub-merchant id (text) after the fees; a memo without them is a memo of
//! no aggregator, so memos written before aggregators existed read the same.

use junction_ledger::{Memo, MEMO_BYTES};

/// Bumped when the layout changes.
pub const DETAIL_FORMAT: u8 = 2;

/// Which front end a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Channel {
    #[default]
    Unknown = 0,
    Iso8583 = 1,
    Qr = 2,
    CreditTransfer = 3,
    TaxRefund = 4,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Unknown => "",
            Channel::Iso8583 => "iso8583",
            Channel::Qr => "qr",
            Channel::CreditTransfer => "credit_transfer",
            Channel::TaxRefund => "tax_refund",
        }
    }

    /// Every channel, as journaled.
    pub const ALL: [Channel; 5] =
        [Channel::Unknown, Channel::Iso8583, Channel::Qr, Channel::CreditTransfer, Channel::TaxRefund];

    fn from_byte(byte: u8) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| *c as u8 == byte)
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
        // Only ASCII is ever stored (`new`, `from_memo`'s check).
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The text's bytes (printable ASCII), for writers of files that need no `str`.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        &self.0[..end]
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

    /// Back from `display` (the masked form a gateway kept): the same `MaskedCard`.
    pub fn from_display(masked: &str) -> MaskedCard {
        let bytes = masked.as_bytes();
        let mut card = MaskedCard { length: bytes.len().min(19) as u8, ..MaskedCard::default() };
        let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        if bytes.len() >= 13 && digits(&bytes[..6]) && digits(&bytes[bytes.len() - 4..]) {
            card.first6.copy_from_slice(&bytes[..6]);
            card.last4.copy_from_slice(&bytes[bytes.len() - 4..]);
        }
        card
    }

    /// `123456******1234`, as long as the number was; empty when there was none.
    pub fn display(&self) -> String {
        let mut out = Vec::with_capacity(usize::from(self.length));
        self.push_display(&mut out);
        // Only ASCII digits and stars are pushed.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends `display`'s text to `out`, without allocating.
    pub fn push_display(&self, out: &mut Vec<u8>) {
        let length = usize::from(self.length);
        if length == 0 {
            return;
        }
        if self.first6[0] == 0 {
            out.resize(out.len() + length, b'*');
            return;
        }
        out.extend_from_slice(&self.first6);
        out.resize(out.len() + length.saturating_sub(10), b'*');
        out.extend_from_slice(&self.last4);
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
    /// The aggregator (payment facilitator) whose sub-merchant was paid, 0 for none: the
    /// payment settles through its acquirer (`acquirer`). Participant ids of aggregators
    /// fit 32 bits (the configuration checks), which keeps the memo within its bytes.
    pub aggregator: u32,
    /// The sub-merchant's id at its aggregator.
    pub sub_merchant: Text<15>,
}

const FLAG_STOOD_IN: u8 = 1;

/// The length byte's flag of a text field stored as packed digits.
const PACKED_DIGITS: u8 = 0x80;

/// Why a memo did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    #[error("the memo has format {0}, this build reads {DETAIL_FORMAT}")]
    Format(u8),
    #[error("the memo names an unknown channel {0}")]
    Channel(u8),
    #[error("the memo holds a byte that is not printable ASCII in a text field")]
    Text,
    #[error("the memo ends early or has bytes left over")]
    Length,
}

/// Appends fields to a memo's bytes. Never more than `MEMO_BYTES` (see `ENCODED_BYTES_MAX`).
struct Writer {
    bytes: [u8; MEMO_BYTES],
    len: usize,
}

impl Writer {
    fn byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn text<const N: usize>(&mut self, text: &Text<N>) {
        let value = text.as_str().as_bytes();
        if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
            self.byte(PACKED_DIGITS | value.len() as u8);
            for pair in value.chunks(2) {
                let high = pair[0] - b'0';
                let low = pair.get(1).map_or(0, |digit| digit - b'0');
                self.byte(high << 4 | low);
            }
        } else {
            self.byte(value.len() as u8);
            self.bytes[self.len..self.len + value.len()].copy_from_slice(value);
            self.len += value.len();
        }
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte(value as u8 | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    fn signed(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }
}

/// Most bytes `Detail::to_memo` writes: two header bytes; ten text fields of at most 106
/// characters with their length bytes; the card's length and ten digits; four u64, a u16
/// and three i64 as varints (10, 3 and 10 bytes at most); an aggregator's u32 varint (5)
/// and its sub-merchant's text (16).
const ENCODED_BYTES_MAX: usize =
    2 + (4 + 6 + 12 + 6 + 11 + 8 + 35 + 4 + 12 + 8) + 10 + 11 + 4 * 10 + 3 + 3 * 10 + 5 + 16;
const _: () = assert!(ENCODED_BYTES_MAX <= MEMO_BYTES);

/// Reads a memo's fields back in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DetailError> {
        let (&first, rest) = self.bytes.split_first().ok_or(DetailError::Length)?;
        self.bytes = rest;
        Ok(first)
    }

    fn take(&mut self, count: usize) -> Result<&[u8], DetailError> {
        if self.bytes.len() < count {
            return Err(DetailError::Length);
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn text<const N: usize>(&mut self) -> Result<Text<N>, DetailError> {
        let length = self.byte()?;
        let mut out = [0u8; N];
        let count = usize::from(length & !PACKED_DIGITS);
        if count > N {
            return Err(DetailError::Text);
        }
        if length & PACKED_DIGITS != 0 {
            let packed = self.take(count.div_ceil(2))?;
            for (index, slot) in out[..count].iter_mut().enumerate() {
                let nibble = if index % 2 == 0 { packed[index / 2] >> 4 } else { packed[index / 2] & 0x0f };
                if nibble > 9 {
                    return Err(DetailError::Text);
                }
                *slot = b'0' + nibble;
            }
        } else {
            let value = self.take(count)?;
            if !value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                return Err(DetailError::Text);
            }
            out[..count].copy_from_slice(value);
        }
        Ok(Text(out))
    }

    fn varint(&mut self) -> Result<u64, DetailError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DetailError::Length)
    }

    fn signed(&mut self) -> Result<i64, DetailError> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }
}

impl Detail {
    pub fn to_memo(&self) -> Memo {
        let mut out = Writer { bytes: [0; MEMO_BYTES], len: 0 };
        out.byte(DETAIL_FORMAT);
        out.byte(self.channel as u8 | if self.stood_in { FLAG_STOOD_IN << 4 } else { 0 });
        out.text(&self.mti);
        out.text(&self.processing_code);
        out.text(&self.rrn);
        out.text(&self.stan);
        out.text(&self.acquirer_institution);
        out.text(&self.terminal);
        out.text(&self.merchant);
        out.text(&self.mcc);
        out.text(&self.original_rrn);
        out.text(&self.qr_scheme);
        out.byte(self.card.length);
        if self.card.length != 0 {
            self.card.first6.iter().chain(&self.card.last4).for_each(|digit| out.byte(*digit));
        }
        for value in [self.issuer, self.wallet, self.acquirer, self.amount, u64::from(self.currency_numeric)] {
            out.varint(value);
        }
        for value in [self.interchange, self.acquirer_fee, self.payer_fee] {
            out.signed(value);
        }
        if self.aggregator != 0 {
            out.varint(u64::from(self.aggregator));
            out.text(&self.sub_merchant);
        }
        Memo::from_parts(out.bytes, out.len)
    }

    pub fn from_memo(memo: &Memo) -> Result<Detail, DetailError> {
        let mut input = Reader { bytes: memo.as_bytes() };
        let format = input.byte()?;
        if format != DETAIL_FORMAT {
            return Err(DetailError::Format(format));
        }
        let header = input.byte()?;
        let channel = Channel::from_byte(header & 0x0f).ok_or(DetailError::Channel(header & 0x0f))?;
        let mut detail = Detail {
            channel,
            stood_in: (header >> 4) & FLAG_STOOD_IN != 0,
            mti: input.text()?,
            processing_code: input.text()?,
            rrn: input.text()?,
            stan: input.text()?,
            acquirer_institution: input.text()?,
            terminal: input.text()?,
            merchant: input.text()?,
            mcc: input.text()?,
            original_rrn: input.text()?,
            qr_scheme: input.text()?,
            ..Detail::default()
        };
        let length = input.byte()?;
        if length != 0 {
            let digits = input.take(10)?;
            if !digits.iter().all(|b| *b == 0 || b.is_ascii_digit()) {
                return Err(DetailError::Text);
            }
            detail.card.length = length.min(19);
            detail.card.first6.copy_from_slice(&digits[..6]);
            detail.card.last4.copy_from_slice(&digits[6..]);
        }
        detail.issuer = input.varint()?;
        detail.wallet = input.varint()?;
        detail.acquirer = input.varint()?;
        detail.amount = input.varint()?;
        detail.currency_numeric = u16::try_from(input.varint()?).map_err(|_| DetailError::Length)?;
        detail.interchange = input.signed()?;
        detail.acquirer_fee = input.signed()?;
        detail.payer_fee = input.signed()?;
        if !input.bytes.is_empty() {
            detail.aggregator = u32::try_from(input.varint()?).map_err(|_| DetailError::Length)?;
            detail.sub_merchant = input.text()?;
        }
        if !input.bytes.is_empty() {
            return Err(DetailError::Length);
        }
        Ok(detail)
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

    fn purchase() -> Detail {
        Detail {
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
            aggregator: 0,
            sub_merchant: Text::default(),
        }
    }

    #[test]
    fn a_detail_survives_its_memo() {
        let detail = purchase();
        let memo = detail.to_memo();
        let back = Detail::from_memo(&memo).expect("decodes");
        assert_eq!(back, detail);
        assert_eq!(back.card.display(), "400000******7899");
        assert!(memo.as_bytes().len() <= 90, "a purchase's memo takes {} bytes", memo.as_bytes().len());
        // Every field at its longest and widest still fits, and comes back.
        let widest = Detail {
            channel: Channel::CreditTransfer,
            mti: Text::new("X200"),
            processing_code: Text::new("ABCDEF"),
            rrn: Text::new("RRN-ABCDEFGH"),
            stan: Text::new("S12345"),
            acquirer_institution: Text::new("I1234567890"),
            merchant: Text::new(&"M".repeat(40)),
            terminal: Text::new("TERMINAL"),
            mcc: Text::new("MCCX"),
            original_rrn: Text::new("ORIGINAL-RRN"),
            qr_scheme: Text::new("PROMPTPY"),
            card: MaskedCard::of("5555444433331111999"),
            issuer: u64::MAX,
            wallet: u64::MAX - 1,
            acquirer: 1 << 63,
            amount: u64::MAX,
            currency_numeric: u16::MAX,
            interchange: i64::MIN,
            acquirer_fee: i64::MAX,
            payer_fee: -1,
            stood_in: false,
            aggregator: u32::MAX,
            sub_merchant: Text::new("SUBMERCHANT-XYZ"),
        };
        assert_eq!(Detail::from_memo(&widest.to_memo()), Ok(widest));
        // Without an aggregator the memo is as before aggregators existed.
        let plain = Detail { aggregator: 0, sub_merchant: Text::default(), ..widest };
        assert_eq!(plain.to_memo().as_bytes().len() + 5 + 16, widest.to_memo().as_bytes().len());
        assert_eq!(Detail::from_memo(&Detail::default().to_memo()), Ok(Detail::default()));
    }

    #[test]
    fn the_memo_never_holds_the_middle_digits() {
        let memo = Detail { card: MaskedCard::of("4000001234567899"), ..Detail::default() }.to_memo();
        let text = String::from_utf8_lossy(memo.as_bytes());
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
        let memo = Detail::default().to_memo();
        let mut bytes = memo.as_bytes().to_vec();
        bytes[0] = 9;
        assert_eq!(Detail::from_memo(&Memo::new(&bytes).unwrap()), Err(DetailError::Format(9)));
        // Cut short anywhere, or with a byte too many, it is refused rather than misread.
        let full = purchase().to_memo();
        for cut in 0..full.as_bytes().len() {
            assert!(Detail::from_memo(&Memo::new(&full.as_bytes()[..cut]).unwrap()).is_err(), "cut at {cut}");
        }
        let mut longer = full.as_bytes().to_vec();
        longer.push(0);
        assert_eq!(Detail::from_memo(&Memo::new(&longer).unwrap()), Err(DetailError::Length));
    }
}
