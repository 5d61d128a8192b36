//! The two directions of a cross-border QR payment, as explicit flows with their own rules
//! (`[qr_flows]` in the configuration; without it every payment is the one generic flow).
//!
//! The switch has a home market (`home_country`, `home_currency`). A payment's flow comes
//! from the wallet's country (its BIC's) and the merchant's (the code's ID 58):
//!
//! | wallet | merchant | flow | rules |
//! |---|---|---|---|
//! | home | home | `domestic` | none here |
//! | abroad | home | `inbound` | the merchant is paid in the home currency; the wallet pays in one of `inbound.payer_currencies` |
//! | home | abroad | `outbound` | the wallet pays in the home currency; the merchant is in one of `outbound.merchant_countries` |
//! | abroad | abroad | `cross_border` | none here (a hub between two other markets) |
//!
//! Each direction may also name the FX provider it converts with (`fx_provider`: the FX
//! table holds one rate per pair, so a payment whose pair's rate is another provider's is
//! refused, never converted at another rate) and
//! the acquirers that take it (`acquirers`: inbound, the home acquirers of its merchants;
//! outbound, the acquirers abroad the switch has links with), may be switched off
//! (`allowed = false`), and an empty list allows any. A payment a flow's rules refuse is
//! answered 422 `flow_not_allowed` with the flow and the rule, before anything is priced.

use super::errors::ApiError;
use crate::config::{ConfigError, FlowRulesConfig, QrFlowsConfig};
use crate::fx::FxRate;
use junction_ledger::{Currency, ParticipantId};

/// A QR payment's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Domestic,
    Inbound,
    Outbound,
    CrossBorder,
}

impl Flow {
    pub fn name(self) -> &'static str {
        match self {
            Flow::Domestic => "domestic",
            Flow::Inbound => "inbound",
            Flow::Outbound => "outbound",
            Flow::CrossBorder => "cross_border",
        }
    }
}

struct Rules {
    allowed: bool,
    payer_currencies: Vec<Currency>,
    merchant_countries: Vec<String>,
    fx_provider: Option<ParticipantId>,
    acquirers: Vec<ParticipantId>,
}

/// The flows' rules, checked at start.
pub struct Flows {
    home_country: String,
    home_currency: Currency,
    inbound: Rules,
    outbound: Rules,
}

fn refused(flow: Flow, message: String) -> ApiError {
    ApiError::unprocessable("flow_not_allowed", message).with("flow", flow.name())
}

impl Flows {
    pub fn new(config: &QrFlowsConfig) -> Result<Flows, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid(format!("qr_flows: {message}"));
        let country = |text: &str| text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase());
        if !country(&config.home_country) {
            return Err(invalid("home_country must be two capital letters".into()));
        }
        let home_currency = Currency::from_code(&config.home_currency).map_err(|e| invalid(e.to_string()))?;
        let rules = |name: &str, rules: &FlowRulesConfig| -> Result<Rules, ConfigError> {
            let payer_currencies = rules
                .payer_currencies
                .iter()
                .map(|code| Currency::from_code(code).map_err(|e| invalid(format!("{name}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(bad) = rules.merchant_countries.iter().find(|c| !country(c)) {
                return Err(invalid(format!("{name}: merchant country {bad:?} is not two capital letters")));
            }
            Ok(Rules {
                allowed: rules.allowed,
                payer_currencies,
                merchant_countries: rules.merchant_countries.clone(),
                fx_provider: rules.fx_provider.map(ParticipantId),
                acquirers: rules.acquirers.iter().copied().map(ParticipantId).collect(),
            })
        };
        Ok(Flows {
            home_country: config.home_country.clone(),
            home_currency,
            inbound: rules("inbound", &config.inbound)?,
            outbound: rules("outbound", &config.outbound)?,
        })
    }

    /// The flow of a payment by a wallet of `wallet_country` to a merchant of
    /// `merchant_country`.
    pub fn classify(&self, wallet_country: &str, merchant_country: &str) -> Flow {
        match (wallet_country == self.home_country, merchant_country == self.home_country) {
            (true, true) => Flow::Domestic,
            (false, true) => Flow::Inbound,
            (true, false) => Flow::Outbound,
            (false, false) => Flow::CrossBorder,
        }
    }

    fn rules(&self, flow: Flow) -> Option<&Rules> {
        match flow {
            Flow::Inbound => Some(&self.inbound),
            Flow::Outbound => Some(&self.outbound),
            Flow::Domestic | Flow::CrossBorder => None,
        }
    }

    /// The flow's routing and currency rules, for a payment routed to `acquirer`.
    pub fn check(
        &self,
        flow: Flow,
        payer_currency: Currency,
        payee_currency: Currency,
        merchant_country: &str,
        acquirer: ParticipantId,
    ) -> Result<(), ApiError> {
        let Some(rules) = self.rules(flow) else { return Ok(()) };
        let name = flow.name();
        if !rules.allowed {
            return Err(refused(flow, format!("the switch takes no {name} payments")));
        }
        match flow {
            Flow::Inbound if payee_currency != self.home_currency => {
                return Err(refused(
                    flow,
                    format!(
                        "a merchant of {} is paid in {}, not {payee_currency}",
                        self.home_country, self.home_currency
                    ),
                ))
            }
            Flow::Outbound if payer_currency != self.home_currency => {
                return Err(refused(
                    flow,
                    format!(
                        "a wallet of {} pays abroad in {}, not {payer_currency}",
                        self.home_country, self.home_currency
                    ),
                ))
            }
            _ => {}
        }
        if !rules.payer_currencies.is_empty() && !rules.payer_currencies.contains(&payer_currency) {
            return Err(refused(flow, format!("{name} payments are not taken in {payer_currency}")));
        }
        if !rules.merchant_countries.is_empty() && !rules.merchant_countries.iter().any(|c| c == merchant_country) {
            return Err(refused(flow, format!("{name} payments do not go to merchants in {merchant_country:?}")));
        }
        if !rules.acquirers.is_empty() && !rules.acquirers.contains(&acquirer) {
            return Err(refused(flow, format!("acquirer {} does not take {name} payments", acquirer.0)));
        }
        Ok(())
    }

    /// The flow's FX rule: the rate must be its provider's.
    pub fn check_rate(&self, flow: Flow, rate: &FxRate) -> Result<(), ApiError> {
        match self.rules(flow).and_then(|rules| rules.fx_provider) {
            Some(provider) if provider != rate.provider => Err(refused(
                flow,
                format!(
                    "{} payments convert at FX provider {}'s rates; the {}/{} rate is provider {}'s",
                    flow.name(),
                    provider.0,
                    rate.base,
                    rate.quote,
                    rate.provider.0
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows() -> Flows {
        Flows::new(&QrFlowsConfig {
            home_country: "CN".into(),
            home_currency: "CNY".into(),
            inbound: FlowRulesConfig {
                payer_currencies: vec!["USD".into(), "SGD".into()],
                acquirers: vec![9],
                ..FlowRulesConfig::default()
            },
            outbound: FlowRulesConfig {
                merchant_countries: vec!["TH".into()],
                fx_provider: Some(6),
                ..FlowRulesConfig::default()
            },
        })
        .unwrap()
    }

    #[test]
    fn payments_are_classified_by_the_wallets_and_the_merchants_country() {
        let flows = flows();
        assert_eq!(flows.classify("CN", "CN"), Flow::Domestic);
        assert_eq!(flows.classify("SG", "CN"), Flow::Inbound);
        assert_eq!(flows.classify("CN", "TH"), Flow::Outbound);
        assert_eq!(flows.classify("SG", "TH"), Flow::CrossBorder);
    }

    #[test]
    fn each_direction_has_its_own_rules() {
        let flows = flows();
        let [usd, sgd, cny, thb, jpy] = ["USD", "SGD", "CNY", "THB", "JPY"].map(|c| Currency::from_code(c).unwrap());
        let (nine, four) = (ParticipantId(9), ParticipantId(4));
        assert!(flows.check(Flow::Inbound, sgd, cny, "CN", nine).is_ok());
        assert!(flows.check(Flow::Inbound, jpy, cny, "CN", nine).is_err(), "not an inbound currency");
        assert!(flows.check(Flow::Inbound, usd, thb, "CN", nine).is_err(), "home merchants are paid in CNY");
        assert!(flows.check(Flow::Inbound, usd, cny, "CN", four).is_err(), "not an inbound acquirer");
        assert!(flows.check(Flow::Outbound, cny, thb, "TH", four).is_ok());
        assert!(flows.check(Flow::Outbound, usd, thb, "TH", four).is_err(), "home wallets pay in CNY");
        assert!(flows.check(Flow::Outbound, cny, usd, "US", four).is_err(), "not an outbound country");
        assert!(flows.check(Flow::CrossBorder, jpy, thb, "TH", four).is_ok(), "no rules between two other markets");
        let rate = |provider| FxRate {
            provider: ParticipantId(provider),
            base: cny,
            quote: thb,
            mid: rust_decimal::Decimal::new(504, 2),
            spread_bps: 50,
        };
        assert!(flows.check_rate(Flow::Outbound, &rate(6)).is_ok());
        assert!(flows.check_rate(Flow::Outbound, &rate(7)).is_err(), "another provider's rate");
        assert!(flows.check_rate(Flow::Inbound, &rate(7)).is_ok(), "inbound names no provider");
    }

    #[test]
    fn bad_tables_are_refused() {
        let bad = |change: &dyn Fn(&mut QrFlowsConfig)| {
            let mut config =
                QrFlowsConfig { home_country: "CN".into(), home_currency: "CNY".into(), ..QrFlowsConfig::default() };
            change(&mut config);
            Flows::new(&config).is_err()
        };
        assert!(!bad(&|_| {}));
        assert!(bad(&|c| c.home_country = "China".into()));
        assert!(bad(&|c| c.home_currency = "XXQ".into()));
        assert!(bad(&|c| c.outbound.merchant_countries = vec!["th".into()]));
        assert!(bad(&|c| c.inbound.payer_currencies = vec!["US".into()]));
    }
}
