//! CRC-16/CCITT-FALSE, the checksum carried in ID 63 of an EMV merchant-presented QR.

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final xor.
///
/// EMV QRCPS computes it over the UTF-8 bytes of the payload up to and including "6304".
/// Check value: `crc16_ccitt_false(b"123456789") == 0x29B1`.
pub fn crc16_ccitt_false(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Appends ID 63 to `body` (everything before "6304"): "6304" and the CRC as 4 uppercase hex
/// digits. `body` is taken as is; use it to build deliberately malformed payloads in tests.
pub fn append_crc(body: &str) -> String {
    let mut payload = String::with_capacity(body.len() + 8);
    payload.push_str(body);
    payload.push_str("6304");
    let crc = crc16_ccitt_false(payload.as_bytes());
    payload.push_str(&format!("{crc:04X}"));
    payload
}

/// Where a payload ends in what looks like a CRC object ("6304" and 4 hex digits), returns the
/// part the CRC covers (up to and including "6304") and the CRC it carries.
pub(crate) fn crc_tail(payload: &str) -> Option<(&str, u16)> {
    let split_at = payload.len().checked_sub(4)?;
    let covered = payload.get(..split_at)?;
    let digits = payload.get(split_at..)?;
    if !covered.ends_with("6304") || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let found = u16::from_str_radix(digits, 16).ok()?;
    Some((covered, found))
}
