//! Request bodies and answer shapes of the QR gateway (JSON).

use super::quote::{FeeRule, Quote};
use super::requests::{digest, hex_id};
use super::tables::{Digest, RefundRecord, State as PaymentState};
use crate::config::FxRateConfig;
use junction_engine::model::RequestKey;
use junction_wire::qr::QrPayload;
use serde::{Deserialize, Serialize};

/// What prices a payment: the QR and the wallet's inputs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PricingFields {
    pub(super) payload: Option<String>,
    pub(super) payer_currency: Option<String>,
    /// Decimal string in the merchant's currency; only when the QR has no amount (or equal).
    pub(super) amount: Option<String>,
    /// Decimal string in the merchant's currency; only when the QR asks for a tip (55 = 01).
    pub(super) tip: Option<String>,
}

impl PricingFields {
    pub(super) fn is_empty(&self) -> bool {
        self.payload.is_none() && self.payer_currency.is_none() && self.amount.is_none() && self.tip.is_none()
    }

    pub(super) fn digest(&self) -> Digest {
        fn field(value: &Option<String>) -> &[u8] {
            value.as_deref().map_or(b"\0".as_slice(), str::as_bytes)
        }
        digest(&[b"direct", field(&self.payload), field(&self.payer_currency), field(&self.amount), field(&self.tip)])
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecodeBody {
    pub(super) payload: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PaymentBody {
    pub(super) quote_id: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) payer_currency: Option<String>,
    pub(super) amount: Option<String>,
    pub(super) tip: Option<String>,
}

impl PaymentBody {
    /// The pricing fields (moved out), leaving the rest.
    pub(super) fn take_pricing(&mut self) -> PricingFields {
        PricingFields {
            payload: self.payload.take(),
            payer_currency: self.payer_currency.take(),
            amount: self.amount.take(),
            tip: self.tip.take(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundBody {
    /// Decimal string in the merchant's currency; the rest of the payment when absent.
    pub(super) amount: Option<String>,
    pub(super) idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RatesBody {
    pub(super) rates: Vec<FxRateConfig>,
}

#[derive(Serialize)]
pub(super) struct FxView {
    pub(super) provider: u64,
    /// "USD/THB": one base buys `mid_rate` quote.
    pub(super) pair: String,
    pub(super) mid_rate: String,
    pub(super) spread_bps: u32,
    /// What the payer pays per unit of the merchant's currency, spread included (display;
    /// the amounts are computed exactly).
    pub(super) rate: String,
}

#[derive(Serialize)]
pub(super) struct PricingView<'a> {
    pub(super) wallet: u64,
    pub(super) acquirer: u64,
    pub(super) scheme: &'static str,
    pub(super) merchant_id: &'a str,
    pub(super) merchant_name: Option<&'a str>,
    pub(super) payee_currency: &'a str,
    pub(super) amount_minor: u64,
    pub(super) tip_minor: u64,
    pub(super) fee_minor: u64,
    pub(super) fee_rule: FeeRule,
    pub(super) payee_amount_minor: u64,
    pub(super) payee_amount: String,
    pub(super) payer_currency: &'a str,
    pub(super) payer_amount_minor: u64,
    pub(super) payer_amount: String,
    pub(super) fx: Option<FxView>,
    /// `domestic`, `inbound`, `outbound` or `cross_border`, when the switch has a home
    /// market.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) flow: Option<&'static str>,
    /// The aggregator whose sub-merchant the merchant is, and the sub-merchant's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) aggregator: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sub_merchant_id: Option<&'a str>,
}

impl PricingView<'_> {
    pub(super) fn of(quote: &Quote) -> PricingView<'_> {
        PricingView {
            wallet: quote.wallet.0,
            acquirer: quote.acquirer.0,
            scheme: quote.scheme.as_str(),
            merchant_id: &quote.merchant_identifier,
            merchant_name: quote.merchant_name.as_deref(),
            payee_currency: quote.payee_currency.code(),
            amount_minor: quote.amount_minor,
            tip_minor: quote.tip_minor,
            fee_minor: quote.fee_minor,
            fee_rule: quote.fee_rule,
            payee_amount_minor: quote.payee_minor,
            payee_amount: quote.payee_currency.format_minor(quote.payee_minor.into()),
            payer_currency: quote.payer_currency.code(),
            payer_amount_minor: quote.payer_minor,
            payer_amount: quote.payer_currency.format_minor(quote.payer_minor.into()),
            fx: quote.fx.map(|rate| FxView {
                provider: rate.provider.0,
                pair: format!("{}/{}", rate.base, rate.quote),
                mid_rate: rate.mid.to_string(),
                spread_bps: rate.spread_bps,
                rate: rate.customer_rate(quote.payer_currency).to_string(),
            }),
            flow: quote.flow.map(super::Flow::name),
            aggregator: quote.aggregator.as_ref().map(|(id, _)| id.0),
            sub_merchant_id: quote.aggregator.as_ref().map(|(_, sub)| sub.as_str()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct QuoteView<'a> {
    pub(super) quote_id: String,
    pub(super) expires_at_ms: u64,
    pub(super) expires_in_ms: u64,
    #[serde(flatten)]
    pub(super) pricing: PricingView<'a>,
}

#[derive(Serialize)]
pub(super) struct RefundView<'a> {
    pub(super) refund_id: String,
    pub(super) payment_id: String,
    pub(super) state: &'static str,
    pub(super) decline: Option<&'static str>,
    pub(super) auth_code: Option<String>,
    pub(super) ledger_timestamp_ns: Option<u64>,
    pub(super) payee_currency: &'a str,
    pub(super) refund_amount_minor: u64,
    pub(super) refund_amount: String,
    pub(super) payer_currency: &'a str,
    pub(super) credited_amount_minor: u64,
    pub(super) credited_amount: String,
}

pub(super) fn state_fields(state: PaymentState) -> (&'static str, Option<&'static str>, Option<String>, Option<u64>) {
    match state {
        PaymentState::Pending => ("pending", None, None, None),
        PaymentState::Approved { ledger_timestamp_ns, auth_code } => {
            ("approved", None, Some(String::from_utf8_lossy(&auth_code).into_owned()), Some(ledger_timestamp_ns))
        }
        PaymentState::Declined(reason) => ("declined", Some(reason.name()), None, None),
    }
}

impl RefundView<'_> {
    pub(super) fn of<'a>(record: &RefundRecord, quote: &'a Quote) -> RefundView<'a> {
        let (state, decline, auth_code, ledger_timestamp_ns) = state_fields(record.state);
        RefundView {
            refund_id: hex_id(record.id.0),
            payment_id: hex_id(record.payment.0),
            state,
            decline,
            auth_code,
            ledger_timestamp_ns,
            payee_currency: quote.payee_currency.code(),
            refund_amount_minor: record.payee_minor,
            refund_amount: quote.payee_currency.format_minor(record.payee_minor.into()),
            payer_currency: quote.payer_currency.code(),
            credited_amount_minor: record.payer_minor,
            credited_amount: quote.payer_currency.format_minor(record.payer_minor.into()),
        }
    }
}

#[derive(Serialize)]
pub(super) struct PaymentView<'a> {
    pub(super) payment_id: String,
    pub(super) state: &'static str,
    pub(super) decline: Option<&'static str>,
    pub(super) auth_code: Option<String>,
    pub(super) ledger_timestamp_ns: Option<u64>,
    pub(super) quote_id: String,
    #[serde(flatten)]
    pub(super) pricing: PricingView<'a>,
    pub(super) refunded_payee_minor: u64,
    pub(super) refunded_payer_minor: u64,
    pub(super) refunds: Vec<RefundView<'a>>,
}

impl PaymentView<'_> {
    pub(super) fn of<'a>(
        quote: &'a Quote,
        id: RequestKey,
        state: PaymentState,
        refunded_payee_minor: u64,
        refunded_payer_minor: u64,
        refunds: Vec<RefundView<'a>>,
    ) -> PaymentView<'a> {
        let (state, decline, auth_code, ledger_timestamp_ns) = state_fields(state);
        PaymentView {
            payment_id: hex_id(id.0),
            state,
            decline,
            auth_code,
            ledger_timestamp_ns,
            quote_id: hex_id(quote.id),
            pricing: PricingView::of(quote),
            refunded_payee_minor,
            refunded_payer_minor,
            refunds,
        }
    }
}

#[derive(Serialize)]
pub(super) struct RouteView<'a> {
    pub(super) scheme: &'static str,
    pub(super) merchant_id: &'a str,
    pub(super) acquirer: u64,
    pub(super) acquirer_name: Option<String>,
    pub(super) currency: String,
}

#[derive(Serialize)]
pub(super) struct RouteErrorView {
    pub(super) code: &'static str,
    pub(super) message: String,
}

/// `POST /v1/qr/decode`: the scheme to route by, the route (or why there is none), and
/// the parsed payload (typed fields, every scheme it names, the raw data objects).
#[derive(Serialize)]
pub(super) struct DecodeView<'a> {
    pub(super) scheme: &'static str,
    pub(super) merchant_id: &'a str,
    pub(super) currency: Option<&'a str>,
    pub(super) route: Option<RouteView<'a>>,
    pub(super) route_error: Option<RouteErrorView>,
    pub(super) qr: &'a QrPayload,
}
