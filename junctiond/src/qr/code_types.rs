//! Merchant codes that are not EMV: domestic aggregated codes, often a URL or a
//! proprietary string. The `[[qr_code_types]]` table says how to recognise each kind (a
//! URL prefix: scheme, host and the start of the path; or a fixed prefix) and how to read
//! the merchant id from it (what follows the prefix up to `/`, `?` or `#`, or a query
//! parameter), with the currency, country, category and name the code stands for. A new
//! kind of code is a configuration change, not code.
//!
//! A code of a known type is read into the canonical merchant-presented form: the
//! merchant account template 26 with the GUI `<type>:<merchant id>`, and the type's
//! category, currency, country and name. From there it is routed, priced, paid and
//! recorded like any EMV code: its scheme is `other`, its merchant identifier
//! `<type>:<merchant id>`, so `[[qr_routes]]` with `scheme = "other"` route a whole type
//! (`identifier_prefix = "<type>:"`) or one merchant (`identifier = "<type>:<id>"`).
//!
//! A code that starts like a known type but whose merchant id is missing, too long or
//! made of other characters is refused (`qr_invalid`, reason `merchant_id`); anything else
//! is read as EMV.

use crate::config::{ConfigError, QrCodeTypeConfig};
use junction_ledger::Currency;
use junction_wire::qr::{QrPayload, QrPayloadBuilder};

/// The longest merchant id a code type may read (it goes into a 99-character template).
pub const MERCHANT_ID_CHARS_MAX: usize = 64;

/// What a code's merchant id may be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    Digits,
    Alphanumeric,
}

struct CodeType {
    name: String,
    prefix: String,
    /// For URLs: compare the scheme and host without regard to case.
    url: bool,
    /// Read the merchant id from this query parameter instead of the path.
    query_parameter: Option<String>,
    alphabet: Alphabet,
    length: (usize, usize),
    currency_numeric: u16,
    country: String,
    mcc: String,
    merchant_name: String,
    merchant_city: String,
    aggregator: Option<u64>,
}

/// Why a code of a known type cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub code_type: String,
    pub message: String,
}

/// The table of code types, checked at start.
#[derive(Default)]
pub struct CodeTypes {
    types: Vec<CodeType>,
}

impl CodeTypes {
    pub fn new(configs: &[QrCodeTypeConfig]) -> Result<CodeTypes, ConfigError> {
        let invalid = |name: &str, message: &str| ConfigError::Invalid(format!("qr_code_types {name:?}: {message}"));
        let mut types: Vec<CodeType> = Vec::with_capacity(configs.len());
        for config in configs {
            let name = &config.name;
            if name.is_empty()
                || name.len() > 24
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(name, "name must be 1-24 of a-z, 0-9 and -"));
            }
            if types.iter().any(|t| &t.name == name) {
                return Err(invalid(name, "appears twice"));
            }
            let (prefix, url) = match (&config.url_prefix, &config.prefix) {
                (Some(url), None) => {
                    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
                    if rest.is_none_or(|rest| !rest.contains('/') || rest.starts_with('/')) {
                        return Err(invalid(name, "url_prefix must be http(s)://host/path..."));
                    }
                    (url.clone(), true)
                }
                (None, Some(prefix)) if !prefix.is_empty() => (prefix.clone(), false),
                _ => return Err(invalid(name, "give exactly one of url_prefix and a non-empty prefix")),
            };
            if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(name, "the prefix must be visible ASCII"));
            }
            if let Some(other) = types.iter().find(|t| t.prefix.starts_with(&prefix) || prefix.starts_with(&t.prefix)) {
                return Err(invalid(name, &format!("its prefix overlaps code type {:?}'s", other.name)));
            }
            if config.merchant_id_param.is_some() && !url {
                return Err(invalid(name, "merchant_id_param needs a url_prefix"));
            }
            let alphabet = match config.merchant_id_chars.as_str() {
                "digits" => Alphabet::Digits,
                "alphanumeric" => Alphabet::Alphanumeric,
                _ => return Err(invalid(name, "merchant_id_chars must be digits or alphanumeric")),
            };
            let (min, max) = (config.merchant_id_length[0], config.merchant_id_length[1]);
            if min == 0 || min > max || max > MERCHANT_ID_CHARS_MAX {
                return Err(invalid(
                    name,
                    &format!("merchant_id_length must be [min, max], 1 <= min <= max <= {MERCHANT_ID_CHARS_MAX}"),
                ));
            }
            let currency = Currency::from_code(&config.currency).map_err(|e| invalid(name, &e.to_string()))?;
            if config.country.len() != 2 || !config.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(name, "country must be two capital letters"));
            }
            if config.mcc.len() != 4 || !config.mcc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(name, "mcc must be four digits"));
            }
            let text_ok = |text: &str| !text.is_empty() && text.len() <= 25 && !text.chars().any(char::is_control);
            if !text_ok(&config.merchant_name) || !text_ok(&config.merchant_city) {
                return Err(invalid(name, "merchant_name and merchant_city must be 1-25 characters"));
            }
            if config.aggregator.is_some() && max > 15 {
                return Err(invalid(name, "an aggregator's sub-merchant ids are at most 15 characters"));
            }
            types.push(CodeType {
                aggregator: config.aggregator,
                name: name.clone(),
                prefix,
                url,
                query_parameter: config.merchant_id_param.clone(),
                alphabet,
                length: (min, max),
                currency_numeric: currency.numeric(),
                country: config.country.clone(),
                mcc: config.mcc.clone(),
                merchant_name: config.merchant_name.clone(),
                merchant_city: config.merchant_city.clone(),
            });
        }
        Ok(CodeTypes { types })
    }

    /// The aggregator and sub-merchant id of a merchant identifier `<type>:<id>` whose
    /// type is an aggregator's.
    pub fn aggregator_of<'a>(&self, identifier: &'a str) -> Option<(u64, &'a str)> {
        let (name, id) = identifier.split_once(':')?;
        let code_type = self.types.iter().find(|t| t.name == name)?;
        let aggregator = code_type.aggregator?;
        // An EMV code may name `<type>:<id>` itself: its id must be one the type reads.
        code_type.valid_id(id).then_some((aggregator, id))
    }

    /// A code read into its canonical EMV form: `None` when no code type starts it (it is
    /// then read as EMV), `Some(Err)` when one does but its merchant id is unreadable.
    pub fn read(&self, code: &str) -> Option<Result<QrPayload, Malformed>> {
        let code_type = self.types.iter().find(|t| t.starts(code))?;
        Some(code_type.read(code))
    }
}

impl CodeType {
    fn starts(&self, code: &str) -> bool {
        // Bytes: the prefix is ASCII, so a match ends on a character boundary.
        let (prefix, Some(head)) = (self.prefix.as_bytes(), code.as_bytes().get(..self.prefix.len())) else {
            return false;
        };
        if !self.url {
            return head == prefix;
        }
        // Scheme and host are case-insensitive; the path is not.
        let host_start = self.prefix.find("://").map_or(0, |i| i + 3);
        let host_end = self.prefix[host_start..].find('/').map_or(prefix.len(), |i| host_start + i);
        head[..host_end].eq_ignore_ascii_case(&prefix[..host_end]) && head[host_end..] == prefix[host_end..]
    }

    fn valid_id(&self, merchant: &str) -> bool {
        let (min, max) = self.length;
        let allowed = |c: char| match self.alphabet {
            Alphabet::Digits => c.is_ascii_digit(),
            Alphabet::Alphanumeric => c.is_ascii_alphanumeric(),
        };
        (min..=max).contains(&merchant.len()) && merchant.chars().all(allowed)
    }

    fn read(&self, code: &str) -> Result<QrPayload, Malformed> {
        let malformed = |message: String| Malformed { code_type: self.name.clone(), message };
        let rest = &code[self.prefix.len()..];
        let merchant = match &self.query_parameter {
            Some(parameter) => rest
                .split_once('?')
                .map(|(_, query)| query.split('#').next().unwrap_or_default())
                .and_then(|query| {
                    query.split('&').find_map(|pair| pair.strip_prefix(parameter.as_str())?.strip_prefix('='))
                })
                .ok_or_else(|| malformed(format!("the code has no {parameter} parameter")))?,
            None => rest.split(['/', '?', '#']).next().unwrap_or_default(),
        };
        let (min, max) = self.length;
        if !self.valid_id(merchant) {
            let kind = if self.alphabet == Alphabet::Digits { "digits" } else { "letters and digits" };
            return Err(malformed(format!("its merchant id must be {min}-{max} {kind}")));
        }
        let identifier = format!("{}:{merchant}", self.name);
        let canonical = QrPayloadBuilder::new()
            .merchant_account(26, &identifier, &[])
            .mcc(&self.mcc)
            .currency_numeric(self.currency_numeric)
            .country(&self.country)
            .merchant_name(&self.merchant_name)
            .merchant_city(&self.merchant_city)
            .encode()
            .and_then(|text| QrPayload::parse(&text))
            .map_err(|e| malformed(format!("it does not read into a merchant code: {e}")))?;
        Ok(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_wire::qr::Scheme;

    fn table() -> CodeTypes {
        let url = QrCodeTypeConfig {
            name: "sh-agg".into(),
            url_prefix: Some("https://pay.sh-agg.cn/m/".into()),
            prefix: None,
            merchant_id_param: None,
            merchant_id_chars: "digits".into(),
            merchant_id_length: [8, 12],
            currency: "CNY".into(),
            country: "CN".into(),
            mcc: "5812".into(),
            merchant_name: "SH AGG MERCHANT".into(),
            merchant_city: "SHANGHAI".into(),
            aggregator: Some(17),
        };
        let query = QrCodeTypeConfig {
            name: "wx-agg".into(),
            url_prefix: Some("https://qr.wx-agg.cn/pay".into()),
            merchant_id_param: Some("mid".into()),
            merchant_id_chars: "alphanumeric".into(),
            aggregator: None,
            ..url.clone()
        };
        let fixed = QrCodeTypeConfig {
            name: "lkl".into(),
            url_prefix: None,
            prefix: Some("LKL1:".into()),
            merchant_id_param: None,
            ..url.clone()
        };
        CodeTypes::new(&[url, query, fixed]).unwrap()
    }

    fn identifier(payload: &QrPayload) -> (Scheme, String) {
        (payload.scheme().key.scheme, payload.scheme().key.identifier.clone())
    }

    #[test]
    fn each_kind_reads_its_merchant_id() {
        let table = table();
        let read = |code: &str| identifier(&table.read(code).unwrap().unwrap());
        assert_eq!(read("https://pay.sh-agg.cn/m/12345678?sig=x"), (Scheme::Other, "sh-agg:12345678".into()));
        assert_eq!(read("HTTPS://PAY.SH-AGG.CN/m/123456789/x"), (Scheme::Other, "sh-agg:123456789".into()));
        assert_eq!(read("https://qr.wx-agg.cn/pay?t=1&mid=AB12CD34EF#x"), (Scheme::Other, "wx-agg:AB12CD34EF".into()));
        assert_eq!(read("LKL1:87654321"), (Scheme::Other, "lkl:87654321".into()));
        let payload = table.read("LKL1:87654321").unwrap().unwrap();
        assert_eq!((payload.currency_numeric(), payload.mcc()), (156, Some("5812")));
    }

    #[test]
    fn a_known_kind_with_a_bad_merchant_id_is_malformed_and_others_are_not_its() {
        let table = table();
        for bad in [
            "https://pay.sh-agg.cn/m/",
            "https://pay.sh-agg.cn/m/1234",
            "https://pay.sh-agg.cn/m/1234567890123",
            "https://pay.sh-agg.cn/m/12345678a",
            "https://qr.wx-agg.cn/pay?t=1",
            "https://qr.wx-agg.cn/pay?mid=AB-12CD34",
            "LKL1:8765432١",
        ] {
            assert!(matches!(table.read(bad), Some(Err(_))), "{bad}");
        }
        assert!(table.read("https://pay.sh-agg.cn/M/12345678").is_none(), "the path is case-sensitive");
        assert!(table.read("000201010211").is_none(), "EMV is not a code type");
        assert_eq!(
            table.aggregator_of("sh-agg:12345678"),
            Some((17, "12345678")),
            "sh-agg codes are 17's sub-merchants"
        );
        assert_eq!(table.aggregator_of("wx-agg:AB12CD34EF"), None);
        assert_eq!(table.aggregator_of("nokind"), None);
        assert_eq!(table.aggregator_of("sh-agg:1234567890123456789"), None, "an id the type would not read");
    }

    #[test]
    fn bad_tables_are_refused() {
        let base = QrCodeTypeConfig {
            name: "ok".into(),
            url_prefix: None,
            prefix: Some("OK:".into()),
            merchant_id_param: None,
            merchant_id_chars: "digits".into(),
            merchant_id_length: [1, 10],
            currency: "CNY".into(),
            country: "CN".into(),
            mcc: "5812".into(),
            merchant_name: "N".into(),
            merchant_city: "C".into(),
            aggregator: None,
        };
        let bad = |change: &dyn Fn(&mut QrCodeTypeConfig)| {
            let mut config = base.clone();
            change(&mut config);
            CodeTypes::new(&[config]).is_err()
        };
        assert!(!bad(&|_| {}));
        assert!(bad(&|c| c.name = "Bad Name".into()));
        assert!(bad(&|c| c.url_prefix = Some("ftp://x/".into())));
        assert!(bad(&|c| c.prefix = None));
        assert!(bad(&|c| c.merchant_id_length = [0, 3]));
        assert!(bad(&|c| c.merchant_id_length = [5, 65]));
        assert!(bad(&|c| c.currency = "XXQ".into()));
        assert!(bad(&|c| c.merchant_id_param = Some("mid".into())));
        assert!(!bad(&|c| c.aggregator = Some(17)));
        assert!(
            bad(&|c| {
                c.aggregator = Some(17);
                c.merchant_id_length = [1, 16];
            }),
            "an aggregator's sub-merchant ids are at most 15 characters"
        );
        assert!(
            CodeTypes::new(&[
                base.clone(),
                QrCodeTypeConfig { name: "two".into(), prefix: Some("OK:1".into()), ..base }
            ])
            .is_err(),
            "overlapping prefixes"
        );
    }
}
