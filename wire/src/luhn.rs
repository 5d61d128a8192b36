//! The Luhn check digit of card numbers (ISO/IEC 7812-1): the switch's token numbers,
//! loadgen's generated cards, and the tests that look for card numbers.

/// The digit that makes `body` (ASCII digits) followed by it pass the Luhn check.
pub fn check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte.wrapping_sub(b'0'));
            match index % 2 {
                0 if digit * 2 > 9 => digit * 2 - 9,
                0 => digit * 2,
                _ => digit,
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether `number` is ASCII digits whose last one is the Luhn check digit of the rest.
pub fn is_valid(number: &str) -> bool {
    match number.as_bytes().split_last() {
        Some((last, body)) if number.bytes().all(|b| b.is_ascii_digit()) => {
            last - b'0' == check_digit(std::str::from_utf8(body).unwrap_or_default())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_of_known_numbers() {
        assert!(is_valid("4000001234567899"));
        assert!(is_valid("4761730000000011"));
        assert!(!is_valid("4000001234567898"));
        assert!(!is_valid("40000012345678x9"));
        assert!(!is_valid(""));
        assert_eq!(check_digit("400000123456789"), 9);
    }
}
