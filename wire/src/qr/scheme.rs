//! Which payment scheme a merchant QR belongs to, and the merchant identifiers the routing
//! table keys on.

use serde::Serialize;

use super::error::{FieldPath, QrError};
use super::tlv::{find_primitive, DataObject};

/// Pix: GUI of the merchant account template (Banco Central do Brasil's BR Code manual).
const PIX_GUI: &str = "br.gov.bcb.pix";
/// PromptPay credit transfer (template 29).
const PROMPTPAY_CREDIT_TRANSFER_AID: &str = "A000000677010111";
/// PromptPay bill payment (template 30).
const PROMPTPAY_BILL_PAYMENT_AID: &str = "A000000677010112";
/// QRIS national template (51).
const QRIS_GUI: &str = "ID.CO.QRIS.WWW";
/// UnionPay's registered application provider ID: AIDs starting with it are UnionPay's.
const UNIONPAY_RID: &str = "A000000333";
/// UnionPay ID 15 starts with the acquirer IIN and the forwarding IIN, 8 digits each.
const UNIONPAY_IIN_DIGITS: usize = 8;
/// UnionPay ID 15 ends with the merchant ID, up to 15 characters.
const UNIONPAY_MERCHANT_ID_CHARS_MAX: usize = 15;

/// A payment scheme this switch recognises in a merchant-presented QR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    UnionPay,
    Pix,
    PromptPay,
    Qris,
    Other,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::UnionPay => "unionpay",
            Scheme::Pix => "pix",
            Scheme::PromptPay => "promptpay",
            Scheme::Qris => "qris",
            Scheme::Other => "other",
        }
    }
}

/// What a routing table keys on: the scheme and the merchant's identifier within it.
///
/// Identifiers: UnionPay, acquirer IIN followed by merchant ID (from ID 15), or the merchant ID
/// (sub-ID 01) of a template whose AID is UnionPay's; Pix, the key (sub-ID 01), or the location
/// URL (sub-ID 25) of a dynamic code without a key; PromptPay, the proxy prefixed by its kind
/// ("mobile:", "national_id:", "ewallet:", "bank_account:", "biller:") since a phone number and a
/// national ID are both 13 digits; QRIS, the national merchant ID (51/02); Other, the GUI (or,
/// for IDs 02-25, the value) of the lowest merchant account information ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MerchantKey {
    pub scheme: Scheme,
    pub identifier: String,
}

/// A recognised scheme: its routing key and the fields it was recognised from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemeMatch {
    #[serde(flatten)]
    pub key: MerchantKey,
    pub account: SchemeAccount,
}

/// Scheme-specific merchant account details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SchemeAccount {
    UnionPay(UnionPayAccount),
    Pix(PixAccount),
    PromptPay(PromptPayAccount),
    Qris(QrisAccount),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnionPayAccount {
    /// 15 for UnionPay's primitive ID, or the 26-51 template carrying a UnionPay AID.
    #[serde(serialize_with = "serialize_id")]
    pub id: u8,
    /// The template's AID; `None` for ID 15.
    pub aid: Option<String>,
    /// From ID 15 only; templates carry acquirer-specific fields.
    pub acquirer_iin: Option<String>,
    pub forwarding_iin: Option<String>,
    pub merchant_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PixAccount {
    #[serde(serialize_with = "serialize_id")]
    pub template_id: u8,
    /// Sub-ID 01: e-mail, phone, CPF/CNPJ or random key (EVP).
    pub key: Option<String>,
    /// Sub-ID 02: free text for the payer.
    pub description: Option<String>,
    /// Sub-ID 25: location of the dynamic charge (without scheme), dynamic codes only.
    pub url: Option<String>,
    /// 62/05 as written; `None` when absent or "***" (Pix's "no txid").
    pub txid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptPayAccount {
    #[serde(serialize_with = "serialize_id")]
    pub template_id: u8,
    pub target: PromptPayTarget,
}

/// Where a PromptPay payment goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptPayTarget {
    /// 29/01: "0066" and the number without its leading 0, 13 digits.
    Mobile { proxy: String },
    /// 29/02: national ID or tax ID, 13 digits.
    NationalId { proxy: String },
    /// 29/03: e-wallet ID, 15 digits.
    EWallet { proxy: String },
    /// 29/04: bank account number.
    BankAccount { proxy: String },
    /// Template 30: biller ID (30/01) and the references the biller asked for.
    BillPayment { biller_id: String, reference_1: Option<String>, reference_2: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QrisAccount {
    /// 51/02, National Merchant ID (NMID).
    pub national_merchant_id: String,
    /// 51/03: UMI, UKE, UME, UBE (merchant size).
    pub merchant_criteria: Option<String>,
    /// Templates 26-45, one per payment provider (bank or e-wallet) that accepts for the merchant.
    pub providers: Vec<QrisProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QrisProvider {
    #[serde(serialize_with = "serialize_id")]
    pub template_id: u8,
    /// Sub-ID 00, the provider's reverse domain name, e.g. "ID.CO.BRI.WWW".
    pub gui: String,
    /// Sub-ID 01, merchant PAN (national NNS and merchant number).
    pub merchant_pan: Option<String>,
    /// Sub-ID 02, the provider's merchant ID.
    pub merchant_id: Option<String>,
    /// Sub-ID 03, merchant criteria.
    pub merchant_criteria: Option<String>,
}

fn serialize_id<S: serde::Serializer>(id: &u8, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{id:02}"))
}

/// A placeholder for payloads that name no scheme of ours; `QrPayload::scheme` falls back to it.
pub(crate) static OTHER_UNKNOWN: SchemeMatch = SchemeMatch {
    key: MerchantKey { scheme: Scheme::Other, identifier: String::new() },
    account: SchemeAccount::Other,
};

/// The GUI (sub-ID 00) of a merchant account template.
fn gui(template: &[DataObject]) -> Option<&str> {
    find_primitive(template, 0)
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

/// Whether template `id` is PromptPay's: template 29 with the credit transfer AID or template
/// 30 with the bill payment AID. Decides the PromptPay leniencies in field checks.
pub(crate) fn is_promptpay(id: u8, template: &[DataObject]) -> bool {
    match (id, gui(template)) {
        (29, Some(aid)) => aid.eq_ignore_ascii_case(PROMPTPAY_CREDIT_TRANSFER_AID),
        (30, Some(aid)) => aid.eq_ignore_ascii_case(PROMPTPAY_BILL_PAYMENT_AID),
        _ => false,
    }
}

/// All schemes the payload names, in routing precedence: UnionPay (ID 15, then UnionPay AID
/// templates), Pix, PromptPay, QRIS. A payload can carry several (a Thai QR with PromptPay and
/// UnionPay, say); UnionPay comes first because this switch is the UnionPay interconnect, where
/// ID 15 routes straight to the acquirer. Falls back to one `Other` match.
///
/// Rejects a payload that names a scheme but lacks what that scheme requires to route it (a
/// Pix template with neither key nor URL, a PromptPay template without a proxy, a QRIS template
/// without a national merchant ID, an ID 15 that is not IIN + IIN + merchant ID).
pub(crate) fn recognise(
    objects: &[DataObject],
    additional_data: Option<&[DataObject]>,
) -> Result<Vec<SchemeMatch>, QrError> {
    let mut matches = Vec::new();
    if let Some(value) = find_primitive(objects, 15) {
        matches.push(unionpay_id15(value)?);
    }
    for object in objects {
        if let (26..=51, Some(template)) = (object.id, object.as_template()) {
            if let Some(found) = unionpay_template(object.id, template) {
                matches.push(found);
            }
        }
    }
    for object in objects {
        if let (26..=51, Some(template)) = (object.id, object.as_template()) {
            if gui(template).is_some_and(|gui| gui.eq_ignore_ascii_case(PIX_GUI)) {
                matches.push(pix(object.id, template, additional_data)?);
            }
        }
    }
    for object in objects {
        if let Some(template) = object.as_template() {
            if is_promptpay(object.id, template) {
                matches.push(promptpay(object.id, template)?);
            }
        }
    }
    if let Some(template) = objects.iter().find(|object| object.id == 51).and_then(DataObject::as_template) {
        if gui(template).is_some_and(|gui| gui.eq_ignore_ascii_case(QRIS_GUI)) {
            matches.push(qris(template, objects)?);
        }
    }
    if matches.is_empty() {
        matches.push(other(objects));
    }
    Ok(matches)
}

fn unionpay_id15(value: &str) -> Result<SchemeMatch, QrError> {
    let iins_chars = 2 * UNIONPAY_IIN_DIGITS;
    let iins = value.get(..iins_chars).filter(|iins| iins.bytes().all(|b| b.is_ascii_digit()));
    let merchant_id = value.get(iins_chars..).unwrap_or_default();
    let merchant_id_chars = merchant_id.chars().count();
    let Some(iins) = iins.filter(|_| (1..=UNIONPAY_MERCHANT_ID_CHARS_MAX).contains(&merchant_id_chars)) else {
        return Err(QrError::BadValue {
            at: FieldPath::top(15),
            value: value.to_owned(),
            reason: "is not acquirer IIN (8 digits), forwarding IIN (8 digits) and merchant ID (1-15)",
        });
    };
    let (acquirer_iin, forwarding_iin) = iins.split_at(UNIONPAY_IIN_DIGITS);
    Ok(SchemeMatch {
        key: MerchantKey { scheme: Scheme::UnionPay, identifier: format!("{acquirer_iin}{merchant_id}") },
        account: SchemeAccount::UnionPay(UnionPayAccount {
            id: 15,
            aid: None,
            acquirer_iin: Some(acquirer_iin.to_owned()),
            forwarding_iin: Some(forwarding_iin.to_owned()),
            merchant_id: merchant_id.to_owned(),
        }),
    })
}

/// A 26-51 template whose AID starts with UnionPay's RID. Its content is acquirer-specific; we
/// take sub-ID 01 as the merchant ID and do not recognise the template without one.
fn unionpay_template(id: u8, template: &[DataObject]) -> Option<SchemeMatch> {
    let aid = gui(template)?;
    let is_unionpay = aid.get(..UNIONPAY_RID.len()).is_some_and(|rid| rid.eq_ignore_ascii_case(UNIONPAY_RID));
    let merchant_id = find_primitive(template, 1).filter(|_| is_unionpay)?;
    Some(SchemeMatch {
        key: MerchantKey { scheme: Scheme::UnionPay, identifier: merchant_id.to_owned() },
        account: SchemeAccount::UnionPay(UnionPayAccount {
            id,
            aid: Some(aid.to_owned()),
            acquirer_iin: None,
            forwarding_iin: None,
            merchant_id: merchant_id.to_owned(),
        }),
    })
}

fn pix(id: u8, template: &[DataObject], additional_data: Option<&[DataObject]>) -> Result<SchemeMatch, QrError> {
    let key = find_primitive(template, 1);
    let url = find_primitive(template, 25);
    let Some(identifier) = key.or(url) else {
        return Err(QrError::MissingId {
            at: FieldPath::top(id).child(1),
            reason: "a Pix template needs a key (01) or a location URL (25)",
        });
    };
    let txid = additional_data.and_then(|objects| find_primitive(objects, 5)).filter(|txid| *txid != "***");
    Ok(SchemeMatch {
        key: MerchantKey { scheme: Scheme::Pix, identifier: identifier.to_owned() },
        account: SchemeAccount::Pix(PixAccount {
            template_id: id,
            key: owned(key),
            description: owned(find_primitive(template, 2)),
            url: owned(url),
            txid: owned(txid),
        }),
    })
}

fn promptpay(id: u8, template: &[DataObject]) -> Result<SchemeMatch, QrError> {
    let missing = |reason| QrError::MissingId { at: FieldPath::top(id).child(1), reason };
    let (prefix, identifier, target) = if id == 30 {
        let biller_id =
            find_primitive(template, 1).ok_or_else(|| missing("a PromptPay bill payment needs a biller ID (01)"))?;
        let target = PromptPayTarget::BillPayment {
            biller_id: biller_id.to_owned(),
            reference_1: owned(find_primitive(template, 2)),
            reference_2: owned(find_primitive(template, 3)),
        };
        ("biller", biller_id, target)
    } else {
        // One proxy per template; if a generator put several, the lowest sub-ID wins.
        let (sub_id, proxy) = template
            .iter()
            .filter(|object| (1..=4).contains(&object.id))
            .min_by_key(|object| object.id)
            .and_then(|object| object.as_primitive().map(|proxy| (object.id, proxy)))
            .ok_or_else(|| missing("a PromptPay credit transfer needs a proxy (01-04)"))?;
        let owned_proxy = proxy.to_owned();
        let (prefix, target) = match sub_id {
            1 => ("mobile", PromptPayTarget::Mobile { proxy: owned_proxy }),
            2 => ("national_id", PromptPayTarget::NationalId { proxy: owned_proxy }),
            3 => ("ewallet", PromptPayTarget::EWallet { proxy: owned_proxy }),
            _ => ("bank_account", PromptPayTarget::BankAccount { proxy: owned_proxy }),
        };
        (prefix, proxy, target)
    };
    Ok(SchemeMatch {
        key: MerchantKey { scheme: Scheme::PromptPay, identifier: format!("{prefix}:{identifier}") },
        account: SchemeAccount::PromptPay(PromptPayAccount { template_id: id, target }),
    })
}

fn qris(template: &[DataObject], objects: &[DataObject]) -> Result<SchemeMatch, QrError> {
    let Some(national_merchant_id) = find_primitive(template, 2) else {
        return Err(QrError::MissingId {
            at: FieldPath::top(51).child(2),
            reason: "QRIS needs the national merchant ID",
        });
    };
    let providers = objects
        .iter()
        .filter(|object| (26..=45).contains(&object.id))
        .filter_map(|object| {
            let provider = object.as_template()?;
            Some(QrisProvider {
                template_id: object.id,
                gui: gui(provider)?.to_owned(),
                merchant_pan: owned(find_primitive(provider, 1)),
                merchant_id: owned(find_primitive(provider, 2)),
                merchant_criteria: owned(find_primitive(provider, 3)),
            })
        })
        .collect();
    Ok(SchemeMatch {
        key: MerchantKey { scheme: Scheme::Qris, identifier: national_merchant_id.to_owned() },
        account: SchemeAccount::Qris(QrisAccount {
            national_merchant_id: national_merchant_id.to_owned(),
            merchant_criteria: owned(find_primitive(template, 3)),
            providers,
        }),
    })
}

fn other(objects: &[DataObject]) -> SchemeMatch {
    let identifier = objects
        .iter()
        .filter(|object| (2..=51).contains(&object.id))
        .min_by_key(|object| object.id)
        .and_then(|object| object.as_primitive().or_else(|| gui(object.as_template()?)))
        .unwrap_or_default();
    SchemeMatch {
        key: MerchantKey { scheme: Scheme::Other, identifier: identifier.to_owned() },
        account: SchemeAccount::Other,
    }
}
