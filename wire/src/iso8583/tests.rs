//! Known-answer vectors from pyiso8583 (regenerate with `tests/interop/iso8583_vectors.py`),
//! malformed inputs, and property tests: random messages round-trip, random bytes never panic.

use proptest::prelude::*;

use super::mac::{MAC_FIELD_PRIMARY, MAC_FIELD_SECONDARY, RESPONSE_CODE_SECURITY_VIOLATION};
use super::message::BITMAP_SIZE_HEX;
use super::redact::{exposure, Exposure};
use super::spec::{field_spec, FIELD_NUMBER_MAX};
use super::*;

/// pyiso8583 4.0.1 `default_ascii`: `field:len_type:max_len` (0 fixed, 2 LLVAR, 3 LLLVAR).
const PYISO8583_LAYOUT: &str = "\
    2:2:19,3:0:6,4:0:12,5:0:12,6:0:12,7:0:10,8:0:8,9:0:8,10:0:8,11:0:6,\
    12:0:6,13:0:4,14:0:4,15:0:4,16:0:4,17:0:4,18:0:4,19:0:3,20:0:3,21:0:3,\
    22:0:3,23:0:3,24:0:3,25:0:2,26:0:2,27:0:1,28:0:9,29:0:9,30:0:9,31:0:9,\
    32:2:11,33:2:11,34:2:28,35:2:37,36:3:104,37:0:12,38:0:6,39:0:2,40:0:3,41:0:8,\
    42:0:15,43:0:40,44:2:25,45:2:76,46:3:999,47:3:999,48:3:999,49:0:3,50:0:3,51:0:3,\
    52:0:16,53:0:16,54:3:240,55:3:510,56:3:999,57:3:999,58:3:999,59:3:999,60:3:999,61:3:999,\
    62:3:999,63:3:999,64:0:16,65:0:16,66:0:1,67:0:2,68:0:3,69:0:3,70:0:3,71:0:4,\
    72:0:4,73:0:6,74:0:10,75:0:10,76:0:10,77:0:10,78:0:10,79:0:10,80:0:10,81:0:10,\
    82:0:12,83:0:12,84:0:12,85:0:12,86:0:16,87:0:16,88:0:16,89:0:16,90:0:42,91:0:1,\
    92:0:2,93:0:5,94:0:7,95:0:42,96:0:16,97:0:17,98:0:25,99:2:11,100:2:11,101:2:17,\
    102:2:28,103:2:28,104:3:100,105:3:999,106:3:999,107:3:999,108:3:999,109:3:999,110:3:999,111:3:999,\
    112:3:999,113:3:999,114:3:999,115:3:999,116:3:999,117:3:999,118:3:999,119:3:999,120:3:999,121:3:999,\
    122:3:999,123:3:999,124:3:999,125:3:999,126:3:999,127:3:999,128:0:16\
";

/// Hex of the MAC key used by the signed vectors.
const MAC_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// `auth_0200`, encoded by pyiso8583.
const AUTH_0200: &[u8] = b"\
    02007238040108C08000164761739001010119000000000000012345061212345600012312345606\
    1205106123456123456789012TERM0001MERCHANT0000001840\
";
const AUTH_0200_FIELDS: &[(u8, &str)] = &[
    (2, "4761739001010119"),
    (3, "000000"),
    (4, "000000012345"),
    (7, "0612123456"),
    (11, "000123"),
    (12, "123456"),
    (13, "0612"),
    (22, "051"),
    (32, "123456"),
    (37, "123456789012"),
    (41, "TERM0001"),
    (42, "MERCHANT0000001"),
    (49, "840"),
];
const AUTH_0200_MTI: &str = "0200";

/// `echo_0800`, encoded by pyiso8583.
const ECHO_0800: &[u8] = b"\
    0800822000000000000004000000000000000612123456000001301\
";
const ECHO_0800_FIELDS: &[(u8, &str)] = &[(7, "0612123456"), (11, "000001"), (70, "301")];
const ECHO_0800_MTI: &str = "0800";

/// `reversal_0420_signed`, encoded by pyiso8583.
const REVERSAL_0420_SIGNED: &[u8] = b"\
    0420F02000000A808000000000400400000116476173900101011900000000000001234500012412\
    345678901200TERM000184002000001230612123456000001234560000000000019ACCT-0001-000\
    2-0003FB136E5BA23F7548\
";
const REVERSAL_0420_SIGNED_FIELDS: &[(u8, &str)] = &[
    (2, "4761739001010119"),
    (3, "000000"),
    (4, "000000012345"),
    (11, "000124"),
    (37, "123456789012"),
    (39, "00"),
    (41, "TERM0001"),
    (49, "840"),
    (90, "020000012306121234560000012345600000000000"),
    (102, "ACCT-0001-0002-0003"),
    (128, "FB136E5BA23F7548"),
];
const REVERSAL_0420_SIGNED_MTI: &str = "0420";

/// `chip_0100_signed`, encoded by pyiso8583.
const CHIP_0100_SIGNED: &[u8] = b"\
    01007020040020089201165413330089010434000000000000010000000125051375413330089010\
    434D2512201000000000000050B5413330089010434^TEST/CARD^25122010000000000000009780\
    123456789ABCDEF0509F2608C1A2B3C4D5E6F7089F2701809F100706010A03A0B00044BF196D66B9\
    3222\
";
const CHIP_0100_SIGNED_FIELDS: &[(u8, &str)] = &[
    (2, "5413330089010434"),
    (3, "000000"),
    (4, "000000010000"),
    (11, "000125"),
    (22, "051"),
    (35, "5413330089010434D25122010000000000000"),
    (45, "B5413330089010434^TEST/CARD^2512201000000000000000"),
    (49, "978"),
    (52, "0123456789ABCDEF"),
    (55, "9F2608C1A2B3C4D5E6F7089F2701809F100706010A03A0B000"),
    (64, "44BF196D66B93222"),
];
const CHIP_0100_SIGNED_MTI: &str = "0100";

fn mac_key() -> MacKey {
    let key = hex::decode(MAC_KEY_HEX).expect("MAC_KEY_HEX is hex");
    MacKey::new(&key).expect("32-byte key")
}

fn build(mti: &str, fields: &[(u8, &str)]) -> Iso8583Message {
    let mut message = Iso8583Message::new(mti).expect("valid MTI");
    for (field, value) in fields {
        message.set(*field, value).expect("vector field fits its spec");
    }
    message
}

fn encode(message: &Iso8583Message) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out).expect("message fits MESSAGE_SIZE_MAX");
    out
}

fn decode_err(raw: &[u8]) -> DecodeError {
    Iso8583Message::decode(raw).expect_err("malformed input must not decode")
}

/// Name, encoding, MTI and fields of one vector.
type Vector = (&'static str, &'static [u8], &'static str, &'static [(u8, &'static str)]);

const VECTORS: &[Vector] = &[
    ("auth_0200", AUTH_0200, AUTH_0200_MTI, AUTH_0200_FIELDS),
    ("echo_0800", ECHO_0800, ECHO_0800_MTI, ECHO_0800_FIELDS),
    ("reversal_0420", REVERSAL_0420_SIGNED, REVERSAL_0420_SIGNED_MTI, REVERSAL_0420_SIGNED_FIELDS),
    ("chip_0100", CHIP_0100_SIGNED, CHIP_0100_SIGNED_MTI, CHIP_0100_SIGNED_FIELDS),
];

#[test]
fn spec_table_matches_pyiso8583_default_ascii() {
    for entry in PYISO8583_LAYOUT.split(',') {
        let numbers: Vec<u16> = entry.split(':').map(|part| part.parse().expect("layout entry is numbers")).collect();
        let [field, length_type, size] = numbers[..] else { panic!("bad layout entry {entry}") };
        let field = u8::try_from(field).expect("field number fits u8");
        if field == 65 {
            // pyiso8583 4 drops field 65 on encode and reads bit 65 as a tertiary bitmap.
            assert!(field_spec(65).is_none());
            continue;
        }
        let spec = field_spec(field).expect("every other field 2..=128 has a spec");
        let expected = match length_type {
            0 => FieldLength::Fixed(size),
            2 => FieldLength::LlVar(size),
            3 => FieldLength::LllVar(size),
            other => panic!("unknown len_type {other}"),
        };
        assert_eq!(spec.length, expected, "field {field}");
    }
    assert!(field_spec(0).is_none() && field_spec(1).is_none() && field_spec(129).is_none());
}

#[test]
fn decodes_pyiso8583_vectors() {
    for (name, raw, mti, fields) in VECTORS {
        let message = Iso8583Message::decode(raw).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(message.mti(), *mti, "{name}");
        let got: Vec<(u8, &str)> = message.fields().collect();
        assert_eq!(got, fields.to_vec(), "{name}");
    }
}

#[test]
fn encodes_pyiso8583_vectors_byte_for_byte() {
    for (name, raw, mti, fields) in VECTORS {
        let message = build(mti, fields);
        assert_eq!(encode(&message), raw.to_vec(), "{name}");
        assert_eq!(message.encoded_len(), raw.len(), "{name}");
        let decoded = Iso8583Message::decode(raw).expect("vector decodes");
        assert_eq!(encode(&decoded), raw.to_vec(), "{name} re-encoded");
        assert_eq!(decoded, message, "{name}");
    }
}

#[test]
fn secondary_bitmap_only_when_a_field_above_64_is_present() {
    let echo = Iso8583Message::decode(ECHO_0800).expect("vector decodes");
    assert!(echo.has_secondary_bitmap());
    assert_eq!(&ECHO_0800[4..20], b"8220000000000000");
    assert_eq!(&ECHO_0800[20..36], b"0400000000000000");
    let auth = Iso8583Message::decode(AUTH_0200).expect("vector decodes");
    assert!(!auth.has_secondary_bitmap());
}

#[test]
fn lowercase_bitmap_is_accepted_and_reencoded_uppercase() {
    let mut raw = AUTH_0200.to_vec();
    raw[4..20].make_ascii_lowercase();
    assert_ne!(raw, AUTH_0200);
    let message = Iso8583Message::decode(&raw).expect("lowercase hex is hex");
    assert_eq!(encode(&message), AUTH_0200.to_vec());
}

#[test]
fn mac_known_answers_from_python_hmac() {
    let key = mac_key();
    for (raw, fields, mac_field, mti) in [
        (REVERSAL_0420_SIGNED, REVERSAL_0420_SIGNED_FIELDS, MAC_FIELD_SECONDARY, REVERSAL_0420_SIGNED_MTI),
        (CHIP_0100_SIGNED, CHIP_0100_SIGNED_FIELDS, MAC_FIELD_PRIMARY, CHIP_0100_SIGNED_MTI),
    ] {
        assert_eq!(verify(raw, &key), Ok(()));
        let expected_mac = fields.iter().find(|(field, _)| *field == mac_field).map(|(_, mac)| *mac).expect("signed");
        // Sign the same message without its MAC: same field, same MAC, same bytes.
        let mut message = build(mti, fields);
        assert!(message.remove(mac_field));
        assert_eq!(sign(&mut message, &key), mac_field);
        assert_eq!(message.get(mac_field), Some(expected_mac));
        assert_eq!(encode(&message), raw.to_vec());
        let decoded = decode_verified(raw, &key).expect("verifies");
        assert_eq!(decoded, message);
    }
}

#[test]
fn mac_covers_everything_before_the_mac_data() {
    // Recompute the 0420's MAC by hand from the bytes: HMAC-SHA256 over all but the last 16.
    use hmac::{Hmac, Mac};
    let key = hex::decode(MAC_KEY_HEX).expect("hex");
    let mut hmac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key size");
    let covered = &REVERSAL_0420_SIGNED[..REVERSAL_0420_SIGNED.len() - 16];
    hmac.update(covered);
    let tag = hmac.finalize().into_bytes();
    assert_eq!(hex::encode_upper(&tag[..8]).as_bytes(), &REVERSAL_0420_SIGNED[covered.len()..]);
}

#[test]
fn verify_tells_missing_from_wrong() {
    let key = mac_key();
    let other_key = MacKey::new(b"another participant key").expect("long enough");
    assert_eq!(verify(CHIP_0100_SIGNED, &other_key), Err(MacError::Mismatch { field: 64 }));
    assert_eq!(verify(REVERSAL_0420_SIGNED, &other_key), Err(MacError::Mismatch { field: 128 }));
    assert_eq!(verify(AUTH_0200, &key), Err(MacError::Missing { field: 64 }));
    assert_eq!(verify(ECHO_0800, &key), Err(MacError::Missing { field: 128 }));
    assert_eq!(verify(b"0200", &key), Err(MacError::Malformed(DecodeError::PrimaryBitmapTruncated)));

    // One changed amount digit.
    let mut tampered = CHIP_0100_SIGNED.to_vec();
    let amount_at = tampered.windows(12).position(|window| window == b"000000010000").expect("amount");
    tampered[amount_at + 6] = b'9';
    assert_eq!(verify(&tampered, &key), Err(MacError::Mismatch { field: 64 }));
    // One changed MAC digit.
    let mut tampered = REVERSAL_0420_SIGNED.to_vec();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(verify(&tampered, &key), Err(MacError::Mismatch { field: 128 }));

    assert_eq!(MacError::Mismatch { field: 64 }.response_code(), RESPONSE_CODE_SECURITY_VIOLATION);
    assert_eq!(MacError::Missing { field: 64 }.response_code(), RESPONSE_CODE_FORMAT_ERROR);
}

#[test]
fn sign_moves_the_mac_to_128_when_a_secondary_bitmap_appears() {
    let key = mac_key();
    let mut message = build(AUTH_0200_MTI, AUTH_0200_FIELDS);
    assert_eq!(sign(&mut message, &key), 64);
    assert_eq!(verify(&encode(&message), &key), Ok(()));
    message.set(102, "ACCOUNT-1").expect("fits");
    assert_eq!(sign(&mut message, &key), 128);
    assert!(!message.contains(64), "a single MAC per message");
    assert_eq!(verify(&encode(&message), &key), Ok(()));
    message.remove(102);
    assert_eq!(sign(&mut message, &key), 64);
    assert!(!message.contains(128));
    assert_eq!(verify(&encode(&message), &key), Ok(()));
}

#[test]
fn mac_key_too_short_is_refused_and_never_printed() {
    assert!(matches!(MacKey::new(b"short"), Err(MacKeyError::TooShort { size_bytes: 5, .. })));
    assert_eq!(format!("{:?}", mac_key()), "MacKey(<redacted>)");
}

#[test]
fn malformed_inputs_are_format_errors() {
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty", b"".to_vec(), DecodeError::MtiTruncated),
        ("short", b"020".to_vec(), DecodeError::MtiTruncated),
        ("mti not digits", b"02A07238040108C08000".to_vec(), DecodeError::BadMti),
        ("bitmap truncated", b"02007238".to_vec(), DecodeError::PrimaryBitmapTruncated),
        ("garbage bitmap", b"0200ZZ38040108C08000".to_vec(), DecodeError::PrimaryBitmapNotHex),
        ("bitmap with a space", b"0200 238040108C08000".to_vec(), DecodeError::PrimaryBitmapNotHex),
        ("secondary bit, no secondary bitmap", b"02008000000000000000".to_vec(), DecodeError::SecondaryBitmapAbsent),
        (
            "secondary bitmap not hex",
            b"02008000000000000000GGGGGGGGGGGGGGGG".to_vec(),
            DecodeError::SecondaryBitmapNotHex,
        ),
        ("tertiary bitmap", b"080080000000000000008000000000000000".to_vec(), DecodeError::TertiaryBitmapUnsupported),
        // Field 2 says 20 digits; its max is 19.
        (
            "pan too long",
            b"0200400000000000000020476173900101011900".to_vec(),
            DecodeError::FieldTooLong { field: 2, size_bytes: 20, max_bytes: 19 },
        ),
        (
            "length prefix not digits",
            b"020040000000000000001X".to_vec(),
            DecodeError::LengthPrefixNotNumeric { field: 2 },
        ),
        ("length prefix cut", b"020040000000000000001".to_vec(), DecodeError::Truncated { field: 2 }),
        // Field 4 with a letter in the amount.
        ("amount not numeric", b"0200100000000000000000000001234A".to_vec(), DecodeError::NotNumeric { field: 4 }),
        ("amount truncated", b"020010000000000000000000000".to_vec(), DecodeError::Truncated { field: 4 }),
        // Bit 41 set, nothing after the bitmap.
        ("bit set, no data", b"02000000000000800000".to_vec(), DecodeError::Truncated { field: 41 }),
        (
            "terminal id not printable",
            b"02000000000000800000TERM\x00001".to_vec(),
            DecodeError::InvalidCharacter { field: 41, kind: DataKind::Text },
        ),
        (
            "pin block not hex",
            b"02000000000000001000012345678ABCDEFG".to_vec(),
            DecodeError::InvalidCharacter { field: 52, kind: DataKind::Hex },
        ),
        ("trailing bytes", [AUTH_0200, b"XY"].concat(), DecodeError::TrailingBytes { count: 2 }),
        ("cut in the last field", AUTH_0200[..AUTH_0200.len() - 1].to_vec(), DecodeError::Truncated { field: 49 }),
        ("non-ascii", b"0200\xff\xfe00000000000000".to_vec(), DecodeError::PrimaryBitmapNotHex),
        (
            "too large",
            vec![b'0'; usize::from(MESSAGE_SIZE_MAX) + 1],
            DecodeError::TooLarge { size_bytes: usize::from(MESSAGE_SIZE_MAX) + 1, max_bytes: MESSAGE_SIZE_MAX },
        ),
    ];
    for (name, raw, expected) in cases {
        let error = decode_err(&raw);
        assert_eq!(error, expected, "{name}");
        assert_eq!(error.response_code(), "30", "{name}");
        assert!(!error.to_string().is_empty());
    }
    assert_eq!(DecodeError::NotNumeric { field: 4 }.to_string(), "field 4 is not numeric");
    assert_eq!(DecodeError::NotNumeric { field: 4 }.field(), Some(4));
    assert_eq!(DecodeError::SecondaryBitmapAbsent.field(), Some(1));
}

#[test]
fn empty_secondary_bitmap_is_accepted_and_puts_the_mac_in_128() {
    // pyiso8583 reads a set bit 1 with an all-zero secondary bitmap; so do we.
    let raw = b"080080200000000000000000000000000000000001";
    let message = Iso8583Message::decode(&raw[..]).expect("decodes");
    assert_eq!(message.get(11), Some("000001"));
    assert!(!message.has_secondary_bitmap(), "not re-encoded when no field needs it");
    assert_eq!(verify(&raw[..], &mac_key()), Err(MacError::Missing { field: 128 }));
    assert_eq!(verify_decoded(&message, &mac_key()), Err(MacError::Missing { field: 128 }));
}

#[test]
fn verify_decoded_checks_a_changed_message_over_its_encoding() {
    let key = mac_key();
    let mut message = build("0200", &[(2, "4761739001010119"), (3, "000000"), (4, "000000001000"), (11, "000001")]);
    sign(&mut message, &key);
    let raw = encode(&message);
    let mut decoded = Iso8583Message::decode(&raw).expect("decodes");
    assert_eq!(verify_decoded(&decoded, &key), Ok(()));
    decoded.set(4, "000000009999").expect("fits");
    assert_eq!(verify_decoded(&decoded, &key), Err(MacError::Mismatch { field: 64 }));
    decoded.set(4, "000000001000").expect("fits");
    assert_eq!(verify_decoded(&decoded, &key), Ok(()), "the same fields again: the same encoding");
}

#[test]
fn set_checks_every_field_against_its_spec() {
    let mut message = Iso8583Message::new("0200").expect("valid MTI");
    assert_eq!(message.set(4, "12345"), Err(FieldError::WrongLength { field: 4, size_bytes: 5, expected_bytes: 12 }));
    assert_eq!(message.set(4, "00000000012A"), Err(FieldError::NotNumeric { field: 4 }));
    assert_eq!(
        message.set(2, "47617390010101190000"),
        Err(FieldError::TooLong { field: 2, size_bytes: 20, max_bytes: 19 })
    );
    assert_eq!(message.set(41, "TERM\n001"), Err(FieldError::InvalidCharacter { field: 41, kind: DataKind::Text }));
    assert_eq!(message.set(41, "TERMé01"), Err(FieldError::InvalidCharacter { field: 41, kind: DataKind::Text }));
    assert_eq!(
        message.set(28, "X00000100"),
        Err(FieldError::InvalidCharacter { field: 28, kind: DataKind::SignedAmount })
    );
    assert_eq!(message.set(28, "D00000100"), Ok(()));
    assert_eq!(message.set(35, "4761739001010119=2512"), Ok(()));
    assert_eq!(
        message.set(35, "4761739001010119^2512"),
        Err(FieldError::InvalidCharacter { field: 35, kind: DataKind::Track })
    );
    for field in [0, 1, 65, 129, 255] {
        assert_eq!(message.set(field, "1"), Err(FieldError::NoSuchField { field }));
        assert_eq!(message.get(field), None);
    }
    assert_eq!(message.set(2, ""), Ok(()), "a variable field may be empty");
    assert_eq!(message.get(2), Some(""));
    assert!(message.contains(2));
    assert_eq!(Iso8583Message::new("020").err(), Some(FieldError::BadMti));
    assert_eq!(Iso8583Message::new("02O0").err(), Some(FieldError::BadMti));
    assert_eq!(message.set_mti("0210"), Ok(()));
    assert_eq!(message.mti(), "0210");
}

#[test]
fn replacing_and_removing_fields() {
    let mut message = build(AUTH_0200_MTI, AUTH_0200_FIELDS);
    message.set(2, "5413330089010434").expect("same size, in place");
    message.set(2, "541333008901043").expect("other size");
    message.set(39, "00").expect("new field");
    assert_eq!(message.get(2), Some("541333008901043"));
    assert!(message.remove(39));
    assert!(!message.remove(39));
    message.set(2, "4761739001010119").expect("back");
    assert_eq!(message, build(AUTH_0200_MTI, AUTH_0200_FIELDS));
    assert_eq!(encode(&message), AUTH_0200.to_vec());
    // Many replacements of a large field leave the message intact (the buffer compacts).
    for round in 0..200u32 {
        let value = format!("{round:0>width$}", width = 100 + (round as usize % 7));
        message.set(48, &value).expect("fits");
        assert_eq!(message.get(48), Some(value.as_str()));
    }
    assert_eq!(message.get(2), Some("4761739001010119"));
    assert_eq!(message.get(42), Some("MERCHANT0000001"));
}

#[test]
fn encode_refuses_a_message_above_the_maximum() {
    let mut message = Iso8583Message::new("0200").expect("valid MTI");
    let text = "x".repeat(999);
    for field in 105..=127 {
        message.set(field, &text).expect("fits the field");
    }
    assert!(message.encoded_len() > usize::from(MESSAGE_SIZE_MAX));
    let mut out = Vec::new();
    assert!(matches!(message.encode(&mut out), Err(EncodeError::TooLarge { .. })));
    assert!(matches!(message.encode_framed(&mut out), Err(EncodeError::TooLarge { .. })));
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn frames_split_out_of_a_stream() {
    let auth = build(AUTH_0200_MTI, AUTH_0200_FIELDS);
    let echo = build(ECHO_0800_MTI, ECHO_0800_FIELDS);
    let mut stream = Vec::new();
    auth.encode_framed(&mut stream).expect("fits");
    write_frame(ECHO_0800, &mut stream).expect("fits");
    assert_eq!(&stream[..2], &u16::try_from(AUTH_0200.len()).expect("small").to_be_bytes());
    let complete = stream.len();
    echo.encode_framed(&mut stream).expect("fits");
    stream.truncate(stream.len() - 5); // a partial third frame

    let split = split_frames(&stream).expect("well framed");
    assert_eq!(split.frames, vec![AUTH_0200, ECHO_0800]);
    assert_eq!(split.consumed_bytes, complete);
    assert_eq!(next_frame(&stream), Ok(Some((AUTH_0200, AUTH_0200.len() + 2))));

    // Short length: one byte of prefix, or a prefix promising more than is there.
    assert_eq!(next_frame(&[0x00]), Ok(None));
    assert_eq!(next_frame(&[0x00, 0x05, b'0']), Ok(None));
    assert_eq!(split_frames(&[]).expect("empty is fine").consumed_bytes, 0);

    assert_eq!(next_frame(&[0, 0, b'x']), Err(FrameError::ZeroLength { offset: 0 }));
    let too_large = (MESSAGE_SIZE_MAX + 1).to_be_bytes();
    assert_eq!(
        split_frames(&[&stream[..complete], &too_large[..]].concat()),
        Err(FrameError::TooLarge { offset: complete, size_bytes: MESSAGE_SIZE_MAX + 1, max_bytes: MESSAGE_SIZE_MAX })
    );
    let mut out = Vec::new();
    assert_eq!(write_frame(b"", &mut out), Err(FrameError::ZeroLength { offset: 0 }));
    assert!(matches!(write_frame(&vec![b'0'; 70_000], &mut out), Err(FrameError::TooLarge { .. })));
}

#[test]
fn pan_masking() {
    assert_eq!(mask_pan("4761739001010119"), "476173******0119");
    assert_eq!(mask_pan("4761739001010119123"), "476173*********9123");
    assert_eq!(mask_pan("4761739001010"), "476******1010");
    assert_eq!(mask_pan("476173900"), "******900");
    assert_eq!(mask_pan("4761"), "****");
    assert_eq!(mask_pan(""), "");
    for size in 0..=19 {
        let pan = "1234567890123456789".get(..size).expect("ascii");
        let masked = mask_pan(pan);
        assert_eq!(masked.len(), size);
        let hidden = masked.matches('*').count();
        assert!(hidden >= size.min(6) && size - hidden <= 10, "{masked}");
    }
}

#[test]
fn debug_masks_the_pan_and_redacts_sensitive_fields() {
    let message = Iso8583Message::decode(CHIP_0100_SIGNED).expect("decodes");
    let debug = format!("{message:?}");
    assert!(debug.contains("2: \"541333******0434\""), "{debug}");
    for field in [35, 45, 52, 55] {
        assert!(debug.contains(&format!("{field}: <redacted>")), "{debug}");
        let value = message.get(field).expect("present in the vector");
        assert!(!debug.contains(value), "field {field} leaked: {debug}");
    }
    assert!(!debug.contains("5413330089010434"), "{debug}");
    assert!(!debug.contains("D2512"), "{debug}");
    assert!(debug.contains("4: \"000000010000\""), "{debug}");
    assert!(debug.contains("mti: \"0100\""), "{debug}");
    let pretty = format!("{message:#?}");
    assert!(!pretty.contains("5413330089010434"));
    assert_eq!(exposure(2), Exposure::MaskedPan);
    assert_eq!(exposure(36), Exposure::Redacted);
    assert_eq!(message.summary(), "mti=0100 fields=2,3,4,11,22,35,45,49,52,55,64");
}

// ---------------------------------------------------------------------------------------
// Properties.

/// Data fields a message may carry (every field 2..=128 but 65).
fn data_fields() -> Vec<u8> {
    (2..=FIELD_NUMBER_MAX).filter(|field| field_spec(*field).is_some()).collect()
}

/// Values that fit `field`; variable fields up to `size_cap` characters.
fn value_for(field: u8, size_cap: u16) -> BoxedStrategy<String> {
    let spec = field_spec(field).expect("data field");
    let (size_min, size_max) = match spec.length {
        FieldLength::Fixed(size) => (size, size),
        FieldLength::LlVar(max) | FieldLength::LllVar(max) => (0, max.min(size_cap)),
    };
    let pattern = match spec.kind {
        DataKind::Numeric => format!("[0-9]{{{size_min},{size_max}}}"),
        DataKind::Text => format!("[ -~]{{{size_min},{size_max}}}"),
        DataKind::Hex => format!("[0-9A-Fa-f]{{{size_min},{size_max}}}"),
        DataKind::Track => format!("[0-9:;<=>?D]{{{size_min},{size_max}}}"),
        DataKind::SignedAmount => format!("[CD][0-9]{{{},{}}}", size_min - 1, size_max - 1),
    };
    proptest::string::string_regex(&pattern).expect("valid pattern").boxed()
}

prop_compose! {
    fn message_strategy(size_cap: u16)
        (mti in "[0-9]{4}", fields in proptest::sample::subsequence(data_fields(), 0..=24))
        (mti in Just(mti), values in fields.iter().map(|field| value_for(*field, size_cap)).collect::<Vec<_>>(), fields in Just(fields))
        -> Iso8583Message
    {
        let mut message = Iso8583Message::new(&mti).expect("4 digits");
        for (field, value) in fields.iter().zip(&values) {
            message.set(*field, value).expect("generated to fit");
        }
        message
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_messages_round_trip(message in message_strategy(999)) {
        let mut out = Vec::new();
        match message.encode(&mut out) {
            Ok(()) => {
                prop_assert_eq!(out.len(), message.encoded_len());
                let decoded = Iso8583Message::decode(&out).expect("what we encode, we decode");
                prop_assert_eq!(&decoded, &message);
                let mut again = Vec::new();
                decoded.encode(&mut again).expect("same size");
                prop_assert_eq!(again, out);
            }
            Err(EncodeError::TooLarge { size_bytes, .. }) => {
                prop_assert!(size_bytes > usize::from(MESSAGE_SIZE_MAX));
                prop_assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn signed_messages_verify_and_any_covered_byte_change_fails(
        message in message_strategy(64),
        position_seed in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let key = mac_key();
        let mut message = message;
        let mac_field = sign(&mut message, &key);
        prop_assert_eq!(mac_field == 128, message.has_secondary_bitmap());
        let mut raw = Vec::new();
        message.encode(&mut raw).expect("size capped");
        prop_assert_eq!(verify(&raw, &key), Ok(()));
        prop_assert_eq!(decode_verified(&raw, &key).expect("verifies"), message);
        let decoded = Iso8583Message::decode(&raw).expect("decodes");
        prop_assert_eq!(verify_decoded(&decoded, &key), Ok(()));
        let covered = raw.len() - 16;
        raw[position_seed % covered] ^= flip;
        prop_assert!(verify(&raw, &key).is_err());
        if let Ok(tampered) = Iso8583Message::decode(&raw) {
            prop_assert!(verify_decoded(&tampered, &key).is_err());
        }
    }

    #[test]
    fn sign_framed_writes_what_sign_and_encode_framed_write(message in message_strategy(64)) {
        let key = mac_key();
        let (mut once, mut twice) = (message.clone(), message);
        let mut out = b"earlier bytes".to_vec();
        let once_field = sign_framed(&mut once, &key, &mut out).expect("size capped");
        let twice_field = sign(&mut twice, &key);
        let mut expected = b"earlier bytes".to_vec();
        twice.encode_framed(&mut expected).expect("size capped");
        prop_assert_eq!(once_field, twice_field);
        prop_assert_eq!(out, expected);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Iso8583Message::decode(&raw);
        let _ = verify(&raw, &mac_key());
        let _ = split_frames(&raw);
        let _ = next_frame(&raw);
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(
        mti in "[0-9]{4}",
        primary in any::<u64>(),
        secondary in any::<u64>(),
        body in proptest::collection::vec(prop_oneof![4 => 0x30u8..=0x39, 1 => any::<u8>()], 0..600),
    ) {
        let mut raw = mti.into_bytes();
        raw.extend_from_slice(format!("{primary:016X}{secondary:016X}").as_bytes());
        raw.extend_from_slice(&body);
        if let Ok(message) = Iso8583Message::decode(&raw) {
            let mut out = Vec::new();
            message.encode(&mut out).expect("a decoded message fits");
            prop_assert_eq!(Iso8583Message::decode(&out).expect("re-decodes"), message);
        }
        let _ = verify(&raw, &mac_key());
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        vector in 0..VECTORS.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut raw = VECTORS[vector].1.to_vec();
        for (position, byte) in edits {
            let index = position % raw.len();
            raw[index] = byte;
        }
        raw.truncate(BITMAP_SIZE_HEX + cut % raw.len());
        if let Ok(message) = Iso8583Message::decode(&raw) {
            let mut out = Vec::new();
            message.encode(&mut out).expect("a decoded message fits");
            prop_assert_eq!(Iso8583Message::decode(&out).expect("re-decodes"), message);
        }
        let _ = verify(&raw, &mac_key());
    }
}
