//! Building the ISO 8583 requests an acquirer's host sends, as `junctiond` expects them
//! (see `tests/src/lib.rs`: `financial`, `network`, `original_data`).
//!
//! A request's key at the switch is fields 32, 41, 11 and 7 (acquirer, terminal, STAN,
//! transmission time): the same key is the same request. Loadgen keeps keys unique in a
//! run and across runs: field 41 is a per-connection terminal whose id carries a per-run
//! nonce, field 11 a per-connection counter, field 7 the scheduled send time to the
//! second. A connection would have to send a million requests in one second for a key to
//! repeat.

use anyhow::{Context, Result};
use junction_wire::iso8583::{mac, Iso8583Message, MacKey};

/// STANs are six digits.
pub const STAN_MODULUS: u32 = 1_000_000;

/// Field 7 (MMDDhhmmss) as a number, with the STAN: the key that matches an answer to its
/// request on one connection.
pub fn match_key(stan: u32, transmission_time: u64) -> u64 {
    u64::from(stan) * 10_000_000_000 + transmission_time
}

/// Field 7, 12 and 13 of one second, UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix_s: u64,
    /// MMDDhhmmss.
    pub transmission: String,
    pub transmission_number: u64,
    /// hhmmss.
    pub local_time: String,
    /// MMDD.
    pub local_date: String,
}

impl Stamp {
    pub fn of(unix_s: u64) -> Stamp {
        let days = unix_s / 86_400;
        let seconds_of_day = unix_s % 86_400;
        let (_, month, day) = junction_wire::calendar::civil_from_days(days as i64);
        let (hour, minute, second) = (seconds_of_day / 3600, seconds_of_day / 60 % 60, seconds_of_day % 60);
        let transmission = format!("{month:02}{day:02}{hour:02}{minute:02}{second:02}");
        let transmission_number = transmission.parse().unwrap_or_default();
        Stamp {
            unix_s,
            transmission,
            transmission_number,
            local_time: format!("{hour:02}{minute:02}{second:02}"),
            local_date: format!("{month:02}{day:02}"),
        }
    }
}

/// What one financial request carries besides the constant fields.
pub struct Financial<'a> {
    pub mti: &'a str,
    pub processing: &'a str,
    pub pan: &'a str,
    pub amount: u64,
    pub currency: u16,
    pub stan: u32,
    pub stamp: &'a Stamp,
    pub terminal: &'a str,
    pub merchant: &'a str,
    /// Field 90 for completions and reversals.
    pub original: Option<&'a str>,
}

/// Builds and signs a connection's requests, reusing one message so that a request costs
/// in-place copies of its fields, one MAC and one encoding.
pub struct Builder {
    key: MacKey,
    institution: String,
    message: Iso8583Message,
    rrn_prefix: String,
    rrn_counter: u64,
}

impl Builder {
    pub fn new(key: MacKey, institution: &str, connection: u32) -> Result<Builder> {
        let mut message = Iso8583Message::new("0200").context("creating a message template")?;
        message.set(22, "051").context("setting field 22")?;
        message.set(32, institution).context("setting field 32 (is --institution 1-11 digits?)")?;
        Ok(Builder {
            key,
            institution: institution.to_string(),
            message,
            rrn_prefix: format!("{:04}", connection % 10_000),
            rrn_counter: 0,
        })
    }

    pub fn key(&self) -> &MacKey {
        &self.key
    }

    /// Appends the framed, signed request to `out`.
    pub fn financial(&mut self, request: &Financial<'_>, out: &mut Vec<u8>) -> Result<()> {
        let message = &mut self.message;
        message.set_mti(request.mti).context("setting the MTI")?;
        message.set(2, request.pan).context("setting field 2")?;
        message.set(3, request.processing).context("setting field 3")?;
        message.set(4, &format!("{:012}", request.amount)).context("setting field 4")?;
        message.set(7, &request.stamp.transmission).context("setting field 7")?;
        message.set(11, &format!("{:06}", request.stan % STAN_MODULUS)).context("setting field 11")?;
        message.set(12, &request.stamp.local_time).context("setting field 12")?;
        message.set(13, &request.stamp.local_date).context("setting field 13")?;
        message.set(18, merchant_category(request.merchant)).context("setting field 18")?;
        self.rrn_counter = (self.rrn_counter + 1) % 100_000_000;
        message.set(37, &format!("{}{:08}", self.rrn_prefix, self.rrn_counter)).context("setting field 37")?;
        message.set(41, request.terminal).context("setting field 41")?;
        message.set(42, request.merchant).context("setting field 42")?;
        message.set(49, &format!("{:03}", request.currency)).context("setting field 49")?;
        match request.original {
            Some(original) => message.set(90, original).context("setting field 90")?,
            None => {
                message.remove(90);
            }
        }
        mac::sign_framed(message, &self.key, out).context("encoding a request")?;
        Ok(())
    }

    /// Field 90 naming an original request of this acquirer: MTI, STAN, transmission time,
    /// acquirer (zero-padded to 11) and forwarding institution (none: 11 zeros).
    pub fn original_data(&self, mti: &str, stan: u32, transmission: u64) -> String {
        format!("{mti}{:06}{transmission:010}{:0>11}{:0>11}", stan % STAN_MODULUS, self.institution, 0)
    }

    /// Appends a signed 0800 network-management request (70 = `code`: 001 sign-on).
    pub fn network(&mut self, code: &str, stan: u32, stamp: &Stamp, out: &mut Vec<u8>) -> Result<()> {
        let mut message = Iso8583Message::new("0800").context("creating a 0800")?;
        message.set(7, &stamp.transmission).context("setting field 7")?;
        message.set(11, &format!("{:06}", stan % STAN_MODULUS)).context("setting field 11")?;
        message.set(32, &self.institution).context("setting field 32")?;
        message.set(70, code).context("setting field 70")?;
        mac::sign_framed(&mut message, &self.key, out).context("encoding a 0800")?;
        Ok(())
    }
}

/// Merchant category codes (ISO 18245) loadgen's merchants have: grocery, restaurants,
/// retail, transit, fuel. Interchange rules by category see a mix.
const MERCHANT_CATEGORIES: [&str; 5] = ["5411", "5812", "5999", "4111", "5541"];

/// A merchant's category (field 18), the same for every request of that merchant.
fn merchant_category(merchant: &str) -> &'static str {
    let sum = merchant.bytes().fold(0usize, |sum, byte| sum.wrapping_mul(31).wrapping_add(usize::from(byte)));
    MERCHANT_CATEGORIES[sum % MERCHANT_CATEGORIES.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        // 2024-02-29 13:45:07 UTC.
        let stamp = Stamp::of(1_709_214_307);
        assert_eq!(stamp.transmission, "0229134507");
        assert_eq!(stamp.local_time, "134507");
        assert_eq!(stamp.local_date, "0229");
        assert_eq!(stamp.transmission_number, 229_134_507);
        assert_eq!(Stamp::of(0).transmission, "0101000000");
    }

    #[test]
    fn requests_decode_and_verify() {
        let key = MacKey::new(&[0x33; 16]).expect("key");
        let mut builder = Builder::new(key.clone(), "200001", 7).expect("builder");
        let stamp = Stamp::of(1_709_214_307);
        let original = builder.original_data("0100", 42, stamp.transmission_number);
        assert_eq!(original, format!("0100{}{}{}{}", "000042", "0229134507", "00000200001", "00000000000"));
        let mut out = Vec::new();
        let request = Financial {
            mti: "0220",
            processing: "000000",
            pan: "4000001234567899",
            amount: 1234,
            currency: 840,
            stan: 1_000_043,
            stamp: &stamp,
            terminal: "LABC0007",
            merchant: "MERCHANT0000001",
            original: Some(&original),
        };
        builder.financial(&request, &mut out).expect("builds");
        let size = usize::from(u16::from_be_bytes([out[0], out[1]]));
        assert_eq!(size + 2, out.len());
        let message = mac::decode_verified(&out[2..], &key).expect("verifies");
        assert_eq!(message.get(11), Some("000043"));
        assert_eq!(message.get(4), Some("000000001234"));
        assert_eq!(message.get(90), Some(original.as_str()));
        // The next request without field 90 does not carry it.
        out.clear();
        builder.financial(&Financial { mti: "0200", original: None, ..request }, &mut out).expect("builds");
        let message = mac::decode_verified(&out[2..], &key).expect("verifies");
        assert!(!message.contains(90));
    }
}
