//! The field table: length type, length and data kind of fields 2..=128.
//!
//! Lengths follow pyiso8583's `default_ascii` spec exactly (every field ASCII, lengths as
//! ASCII digits). pyiso8583 knows nothing of data kinds, so those follow jPOS's
//! `ISO87APackager`: `IFA_NUMERIC`/`IFA_LLNUM` are `n`, `IF_CHAR`/`IFA_LLCHAR`/`IFA_LLLCHAR`
//! are `ans`, `IFA_AMOUNT` is `x+n`, `IFA_BINARY` is `b` carried as hex text. Where the two
//! disagree, pyiso8583 wins on length (54: 240 not 120, 55: 510 not 999, 93: 5 not 6, 96: 16
//! hex characters not 32) and field 65 is the tertiary bitmap indicator, not data.

use std::fmt;

/// Highest field number of a message with primary and secondary bitmaps.
pub const FIELD_NUMBER_MAX: u8 = 128;

/// Longest value any field may hold (LLLVAR fields); lengths fit in a `u16`.
pub const FIELD_SIZE_MAX_BYTES: u16 = 999;

/// What characters a field may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// `n`: ASCII digits only.
    Numeric,
    /// `x+n`: `C` (credit) or `D` (debit) followed by digits; the length counts the sign.
    SignedAmount,
    /// `ans`: printable ASCII, space (0x20) to tilde (0x7E).
    Text,
    /// `b`: binary data written as hex digits (PIN block, MAC, ICC data).
    Hex,
    /// `z`: magnetic-stripe track 2/3 code set, ASCII 0x30..=0x3F (digits and `:;<=>?`),
    /// plus `D`, the separator many hosts write instead of `=`.
    Track,
}

impl DataKind {
    /// Whether `value` holds only characters of this kind. Pure and cheap: one pass.
    pub fn accepts(self, value: &[u8]) -> bool {
        match self {
            DataKind::Numeric => value.iter().all(u8::is_ascii_digit),
            DataKind::SignedAmount => match value.split_first() {
                Some((sign, digits)) => matches!(sign, b'C' | b'D') && digits.iter().all(u8::is_ascii_digit),
                None => true,
            },
            DataKind::Text => value.iter().all(|byte| (0x20..=0x7E).contains(byte)),
            DataKind::Hex => value.iter().all(u8::is_ascii_hexdigit),
            DataKind::Track => value.iter().all(|byte| (0x30..=0x3F).contains(byte) || *byte == b'D'),
        }
    }

    /// The ISO 8583 attribute name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Numeric => "n",
            DataKind::SignedAmount => "x+n",
            DataKind::Text => "ans",
            DataKind::Hex => "b (hex)",
            DataKind::Track => "z",
        }
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a field's length is carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldLength {
    /// Exactly this many characters, no prefix.
    Fixed(u16),
    /// Two ASCII digits of length, then at most this many characters.
    LlVar(u16),
    /// Three ASCII digits of length, then at most this many characters.
    LllVar(u16),
}

impl FieldLength {
    /// Width of the ASCII length prefix in bytes.
    pub fn prefix_size_bytes(self) -> usize {
        match self {
            FieldLength::Fixed(_) => 0,
            FieldLength::LlVar(_) => 2,
            FieldLength::LllVar(_) => 3,
        }
    }

    /// The fixed length, or the maximum of a variable one.
    pub fn size_max_bytes(self) -> u16 {
        match self {
            FieldLength::Fixed(size) | FieldLength::LlVar(size) | FieldLength::LllVar(size) => size,
        }
    }
}

/// One data field's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub length: FieldLength,
    pub kind: DataKind,
}

/// Why a value does not fit its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    WrongLength { size_bytes: usize, expected_bytes: u16 },
    TooLong { size_bytes: usize, max_bytes: u16 },
    NotNumeric,
    InvalidCharacter { kind: DataKind },
}

impl FieldSpec {
    /// Checks length and characters of a value for this field.
    pub(crate) fn check(&self, value: &[u8]) -> Result<(), Violation> {
        match self.length {
            FieldLength::Fixed(expected_bytes) => {
                if value.len() != usize::from(expected_bytes) {
                    return Err(Violation::WrongLength { size_bytes: value.len(), expected_bytes });
                }
            }
            FieldLength::LlVar(max_bytes) | FieldLength::LllVar(max_bytes) => {
                if value.len() > usize::from(max_bytes) {
                    return Err(Violation::TooLong { size_bytes: value.len(), max_bytes });
                }
            }
        }
        self.check_characters(value)
    }

    pub(crate) fn check_characters(&self, value: &[u8]) -> Result<(), Violation> {
        if self.kind.accepts(value) {
            Ok(())
        } else if self.kind == DataKind::Numeric {
            Err(Violation::NotNumeric)
        } else {
            Err(Violation::InvalidCharacter { kind: self.kind })
        }
    }
}

/// The spec of a data field, or `None` for 0, 1 and 65 (bitmaps, not data) and above 128.
pub fn field_spec(field: u8) -> Option<&'static FieldSpec> {
    FIELD_SPECS.get(usize::from(field)).and_then(Option::as_ref)
}

const fn fixed(size: u16, kind: DataKind) -> Option<FieldSpec> {
    Some(FieldSpec { length: FieldLength::Fixed(size), kind })
}

const fn llvar(max: u16, kind: DataKind) -> Option<FieldSpec> {
    Some(FieldSpec { length: FieldLength::LlVar(max), kind })
}

const fn lllvar(max: u16, kind: DataKind) -> Option<FieldSpec> {
    Some(FieldSpec { length: FieldLength::LllVar(max), kind })
}

use DataKind::{Hex, Numeric as N, SignedAmount as XN, Text as Ans, Track as Z};

/// Indexed by field number. Checked against pyiso8583's own table in the tests.
static FIELD_SPECS: [Option<FieldSpec>; 129] = FIELD_SPECS_TABLE;

#[rustfmt::skip]
const FIELD_SPECS_TABLE: [Option<FieldSpec>; 129] = [
    /*   0 */ None, // message type indicator, handled apart
    /*   1 */ None, // secondary bitmap, computed
    /*   2 */ llvar(19, N),    // primary account number
    /*   3 */ fixed(6, N),     // processing code
    /*   4 */ fixed(12, N),    // amount, transaction
    /*   5 */ fixed(12, N),    // amount, settlement
    /*   6 */ fixed(12, N),    // amount, cardholder billing
    /*   7 */ fixed(10, N),    // transmission date and time
    /*   8 */ fixed(8, N),     // amount, cardholder billing fee
    /*   9 */ fixed(8, N),     // conversion rate, settlement
    /*  10 */ fixed(8, N),     // conversion rate, cardholder billing
    /*  11 */ fixed(6, N),     // system trace audit number
    /*  12 */ fixed(6, N),     // time, local transaction
    /*  13 */ fixed(4, N),     // date, local transaction
    /*  14 */ fixed(4, N),     // date, expiration
    /*  15 */ fixed(4, N),     // date, settlement
    /*  16 */ fixed(4, N),     // date, conversion
    /*  17 */ fixed(4, N),     // date, capture
    /*  18 */ fixed(4, N),     // merchant type
    /*  19 */ fixed(3, N),     // acquiring institution country code
    /*  20 */ fixed(3, N),     // pan extended country code
    /*  21 */ fixed(3, N),     // forwarding institution country code
    /*  22 */ fixed(3, N),     // point of service entry mode
    /*  23 */ fixed(3, N),     // card sequence number
    /*  24 */ fixed(3, N),     // network international identifier
    /*  25 */ fixed(2, N),     // point of service condition code
    /*  26 */ fixed(2, N),     // point of service pin capture code
    /*  27 */ fixed(1, N),     // authorization identification response length
    /*  28 */ fixed(9, XN),    // amount, transaction fee
    /*  29 */ fixed(9, XN),    // amount, settlement fee
    /*  30 */ fixed(9, XN),    // amount, transaction processing fee
    /*  31 */ fixed(9, XN),    // amount, settlement processing fee
    /*  32 */ llvar(11, N),    // acquiring institution id code
    /*  33 */ llvar(11, N),    // forwarding institution id code
    /*  34 */ llvar(28, Ans),  // pan extended
    /*  35 */ llvar(37, Z),    // track 2 data
    /*  36 */ lllvar(104, Z),  // track 3 data
    /*  37 */ fixed(12, Ans),  // retrieval reference number
    /*  38 */ fixed(6, Ans),   // authorization identification response
    /*  39 */ fixed(2, Ans),   // response code
    /*  40 */ fixed(3, Ans),   // service restriction code
    /*  41 */ fixed(8, Ans),   // card acceptor terminal id
    /*  42 */ fixed(15, Ans),  // card acceptor id code
    /*  43 */ fixed(40, Ans),  // card acceptor name/location
    /*  44 */ llvar(25, Ans),  // additional response data
    /*  45 */ llvar(76, Ans),  // track 1 data
    /*  46 */ lllvar(999, Ans), // additional data, iso
    /*  47 */ lllvar(999, Ans), // additional data, national
    /*  48 */ lllvar(999, Ans), // additional data, private
    /*  49 */ fixed(3, Ans),   // currency code, transaction
    /*  50 */ fixed(3, Ans),   // currency code, settlement
    /*  51 */ fixed(3, Ans),   // currency code, cardholder billing
    /*  52 */ fixed(16, Hex),  // pin block, 8 bytes as hex
    /*  53 */ fixed(16, N),    // security related control information
    /*  54 */ lllvar(240, Ans), // additional amounts
    /*  55 */ lllvar(510, Hex), // icc data, up to 255 bytes as hex
    /*  56 */ lllvar(999, Ans), // reserved iso
    /*  57 */ lllvar(999, Ans), // reserved national
    /*  58 */ lllvar(999, Ans), // reserved national
    /*  59 */ lllvar(999, Ans), // reserved national
    /*  60 */ lllvar(999, Ans), // reserved private
    /*  61 */ lllvar(999, Ans), // reserved private
    /*  62 */ lllvar(999, Ans), // reserved private
    /*  63 */ lllvar(999, Ans), // reserved private
    /*  64 */ fixed(16, Hex),  // mac, 8 bytes as hex
    /*  65 */ None, // tertiary bitmap indicator (pyiso8583 4); fields above 128 unsupported
    /*  66 */ fixed(1, N),     // settlement code
    /*  67 */ fixed(2, N),     // extended payment code
    /*  68 */ fixed(3, N),     // receiving institution country code
    /*  69 */ fixed(3, N),     // settlement institution country code
    /*  70 */ fixed(3, N),     // network management information code
    /*  71 */ fixed(4, N),     // message number
    /*  72 */ fixed(4, N),     // message number, last
    /*  73 */ fixed(6, N),     // date, action
    /*  74 */ fixed(10, N),    // credits, number
    /*  75 */ fixed(10, N),    // credits, reversal number
    /*  76 */ fixed(10, N),    // debits, number
    /*  77 */ fixed(10, N),    // debits, reversal number
    /*  78 */ fixed(10, N),    // transfer, number
    /*  79 */ fixed(10, N),    // transfer, reversal number
    /*  80 */ fixed(10, N),    // inquiries, number
    /*  81 */ fixed(10, N),    // authorizations, number
    /*  82 */ fixed(12, N),    // credits, processing fee amount
    /*  83 */ fixed(12, N),    // credits, transaction fee amount
    /*  84 */ fixed(12, N),    // debits, processing fee amount
    /*  85 */ fixed(12, N),    // debits, transaction fee amount
    /*  86 */ fixed(16, N),    // credits, amount
    /*  87 */ fixed(16, N),    // credits, reversal amount
    /*  88 */ fixed(16, N),    // debits, amount
    /*  89 */ fixed(16, N),    // debits, reversal amount
    /*  90 */ fixed(42, N),    // original data elements
    /*  91 */ fixed(1, Ans),   // file update code
    /*  92 */ fixed(2, Ans),   // file security code
    /*  93 */ fixed(5, Ans),   // response indicator
    /*  94 */ fixed(7, Ans),   // service indicator
    /*  95 */ fixed(42, Ans),  // replacement amounts
    /*  96 */ fixed(16, Hex),  // message security code
    /*  97 */ fixed(17, XN),   // amount, net settlement
    /*  98 */ fixed(25, Ans),  // payee
    /*  99 */ llvar(11, N),    // settlement institution id code
    /* 100 */ llvar(11, N),    // receiving institution id code
    /* 101 */ llvar(17, Ans),  // file name
    /* 102 */ llvar(28, Ans),  // account identification 1
    /* 103 */ llvar(28, Ans),  // account identification 2
    /* 104 */ lllvar(100, Ans), // transaction description
    /* 105 */ lllvar(999, Ans), // reserved iso
    /* 106 */ lllvar(999, Ans),
    /* 107 */ lllvar(999, Ans),
    /* 108 */ lllvar(999, Ans),
    /* 109 */ lllvar(999, Ans),
    /* 110 */ lllvar(999, Ans),
    /* 111 */ lllvar(999, Ans),
    /* 112 */ lllvar(999, Ans), // reserved national
    /* 113 */ lllvar(999, Ans),
    /* 114 */ lllvar(999, Ans),
    /* 115 */ lllvar(999, Ans),
    /* 116 */ lllvar(999, Ans),
    /* 117 */ lllvar(999, Ans),
    /* 118 */ lllvar(999, Ans),
    /* 119 */ lllvar(999, Ans),
    /* 120 */ lllvar(999, Ans), // reserved private
    /* 121 */ lllvar(999, Ans),
    /* 122 */ lllvar(999, Ans),
    /* 123 */ lllvar(999, Ans),
    /* 124 */ lllvar(999, Ans),
    /* 125 */ lllvar(999, Ans),
    /* 126 */ lllvar(999, Ans),
    /* 127 */ lllvar(999, Ans),
    /* 128 */ fixed(16, Hex), // mac 2, 8 bytes as hex
];

// A two-digit prefix cannot say more than 99; LLLVAR lengths must fit FIELD_SIZE_MAX_BYTES.
const _: () = {
    let mut field = 0;
    while field < FIELD_SPECS_TABLE.len() {
        if let Some(spec) = &FIELD_SPECS_TABLE[field] {
            match spec.length {
                FieldLength::Fixed(size) => assert!(size > 0 && size <= FIELD_SIZE_MAX_BYTES),
                FieldLength::LlVar(max) => assert!(max <= 99),
                FieldLength::LllVar(max) => assert!(max <= FIELD_SIZE_MAX_BYTES),
            }
        }
        field += 1;
    }
    assert!(FIELD_SPECS_TABLE.len() == FIELD_NUMBER_MAX as usize + 1);
};
