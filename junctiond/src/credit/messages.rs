//! What the switch reads from the ISO 20022 messages it receives, and the messages it
//! writes. Every message written here is checked against its schema before it leaves
//! (`xml::check_written`); the tests validate them again with an independent validator.

use super::xml::{self, Kind, Leaves};
use std::fmt::Write as _;

/// ISO 20022 `Max35Text`.
pub const MAX35: usize = 35;
/// `Max140Text`.
const MAX140: usize = 140;
/// `Max105Text` (`AddtlInf`).
const MAX105: usize = 105;

/// How a creditor is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creditor {
    /// A proxy: its type (`MBNO`, `EMAL`, or the proprietary `PAYEEID`), if given, and id.
    Proxy { kind: Option<String>, id: String },
    /// An account at the agent named by its BIC.
    Account { account: String, bic: Option<String> },
}

/// A pacs.008's one transaction, as read.
#[derive(Debug, Clone)]
pub struct CreditTransferMessage {
    pub msg_id: String,
    pub end_to_end_id: String,
    pub tx_id: Option<String>,
    pub uetr: Option<String>,
    /// `IntrBkSttlmAmt` as written, and its currency code.
    pub amount: String,
    pub currency: String,
    pub debtor_name: Option<String>,
    pub debtor_account: Option<String>,
    pub creditor: Creditor,
    pub creditor_name: Option<String>,
    pub remittance: Option<String>,
    /// `XchgRate`: the rate of a quote the sender took (`POST /v1/iso20022/quotes`).
    pub exchange_rate: Option<String>,
}

/// A refusal of a message as a whole: an ISO status reason code and a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub info: String,
}

impl Refusal {
    pub fn new(code: &'static str, info: impl Into<String>) -> Refusal {
        Refusal { code, info: info.into() }
    }

    /// A message the switch could not read: FF01 (invalid file format).
    pub fn format(info: impl Into<String>) -> Refusal {
        Refusal::new("FF01", info)
    }
}

const TX: &str = "FIToFICstmrCdtTrf/CdtTrfTxInf";

/// The transaction of a validated pacs.008. One transaction per message: the link is
/// instant, message by message.
pub fn credit_transfer(leaves: &Leaves) -> Result<CreditTransferMessage, Refusal> {
    let owned = |path: &str| leaves.text(path).map(str::to_owned);
    if leaves.text("FIToFICstmrCdtTrf/GrpHdr/NbOfTxs") != Some("1")
        || leaves.count(&format!("{TX}/PmtId/EndToEndId")) != 1
    {
        return Err(Refusal::format("a message carries exactly one transaction (NbOfTxs 1)"));
    }
    let (amount, currency) =
        leaves.amount(&format!("{TX}/IntrBkSttlmAmt")).ok_or_else(|| Refusal::format("IntrBkSttlmAmt is missing"))?;
    let proxy = owned(&format!("{TX}/CdtrAcct/Prxy/Id"));
    let account = owned(&format!("{TX}/CdtrAcct/Id/Othr/Id")).or_else(|| owned(&format!("{TX}/CdtrAcct/Id/IBAN")));
    let creditor = match (proxy, account) {
        (Some(id), _) => Creditor::Proxy {
            kind: owned(&format!("{TX}/CdtrAcct/Prxy/Tp/Cd"))
                .or_else(|| owned(&format!("{TX}/CdtrAcct/Prxy/Tp/Prtry"))),
            id,
        },
        (None, Some(account)) => Creditor::Account { account, bic: owned(&format!("{TX}/CdtrAgt/FinInstnId/BICFI")) },
        (None, None) => return Err(Refusal::new("AC01", "the creditor's account or proxy is missing (CdtrAcct)")),
    };
    Ok(CreditTransferMessage {
        msg_id: owned("FIToFICstmrCdtTrf/GrpHdr/MsgId").unwrap_or_default(),
        end_to_end_id: owned(&format!("{TX}/PmtId/EndToEndId")).unwrap_or_default(),
        tx_id: owned(&format!("{TX}/PmtId/TxId")),
        uetr: owned(&format!("{TX}/PmtId/UETR")),
        amount: amount.to_owned(),
        currency: currency.to_owned(),
        debtor_name: owned(&format!("{TX}/Dbtr/Nm")),
        debtor_account: owned(&format!("{TX}/DbtrAcct/Id/Othr/Id"))
            .or_else(|| owned(&format!("{TX}/DbtrAcct/Id/IBAN"))),
        creditor,
        creditor_name: owned(&format!("{TX}/Cdtr/Nm")),
        remittance: owned(&format!("{TX}/RmtInf/Ustrd")),
        exchange_rate: owned(&format!("{TX}/XchgRate")),
    })
}

/// A receiving system's answer to a pushed credit (its pacs.002).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    pub original_tx_id: Option<String>,
    pub original_end_to_end_id: Option<String>,
    /// `TxSts`, or the group status when there is no transaction status.
    pub status: String,
    pub reason: Option<String>,
    pub info: Option<String>,
}

pub fn status_answer(leaves: &Leaves) -> Result<StatusAnswer, Refusal> {
    const T: &str = "FIToFIPmtStsRpt/TxInfAndSts";
    let status = leaves
        .text(&format!("{T}/TxSts"))
        .or_else(|| leaves.text("FIToFIPmtStsRpt/OrgnlGrpInfAndSts/GrpSts"))
        .ok_or_else(|| Refusal::format("the status report has no TxSts"))?;
    Ok(StatusAnswer {
        original_tx_id: leaves.text(&format!("{T}/OrgnlTxId")).map(str::to_owned),
        original_end_to_end_id: leaves.text(&format!("{T}/OrgnlEndToEndId")).map(str::to_owned),
        status: status.to_owned(),
        reason: leaves
            .text(&format!("{T}/StsRsnInf/Rsn/Cd"))
            .or_else(|| leaves.text(&format!("{T}/StsRsnInf/Rsn/Prtry")))
            .map(str::to_owned),
        info: leaves.text(&format!("{T}/StsRsnInf/AddtlInf")).map(str::to_owned),
    })
}

/// A pacs.004's one returned transaction, as read.
#[derive(Debug, Clone)]
pub struct ReturnMessage {
    pub msg_id: String,
    pub return_id: Option<String>,
    pub original_end_to_end_id: Option<String>,
    pub original_tx_id: Option<String>,
    pub amount: String,
    pub currency: String,
    pub reason: Option<String>,
    pub info: Option<String>,
}

pub fn return_message(leaves: &Leaves) -> Result<ReturnMessage, Refusal> {
    const T: &str = "PmtRtr/TxInf";
    if leaves.text("PmtRtr/GrpHdr/NbOfTxs") != Some("1") || leaves.count(&format!("{T}/RtrdIntrBkSttlmAmt")) != 1 {
        return Err(Refusal::format("a return carries exactly one transaction (NbOfTxs 1)"));
    }
    let (amount, currency) = leaves
        .amount(&format!("{T}/RtrdIntrBkSttlmAmt"))
        .ok_or_else(|| Refusal::format("RtrdIntrBkSttlmAmt is missing"))?;
    Ok(ReturnMessage {
        msg_id: leaves.text("PmtRtr/GrpHdr/MsgId").unwrap_or_default().to_owned(),
        return_id: leaves.text(&format!("{T}/RtrId")).map(str::to_owned),
        original_end_to_end_id: leaves.text(&format!("{T}/OrgnlEndToEndId")).map(str::to_owned),
        original_tx_id: leaves.text(&format!("{T}/OrgnlTxId")).map(str::to_owned),
        amount: amount.to_owned(),
        currency: currency.to_owned(),
        reason: leaves
            .text(&format!("{T}/RtrRsnInf/Rsn/Cd"))
            .or_else(|| leaves.text(&format!("{T}/RtrRsnInf/Rsn/Prtry")))
            .map(str::to_owned),
        info: leaves.text(&format!("{T}/RtrRsnInf/AddtlInf")).map(str::to_owned),
    })
}

/// A camt.056's one recalled transaction, as read.
#[derive(Debug, Clone)]
pub struct RecallMessage {
    pub case_id: String,
    pub original_end_to_end_id: Option<String>,
    pub original_tx_id: Option<String>,
    pub reason: Option<String>,
}

pub fn recall_message(leaves: &Leaves) -> Result<RecallMessage, Refusal> {
    const T: &str = "FIToFIPmtCxlReq/Undrlyg/TxInf";
    if leaves.count(&format!("{T}/OrgnlEndToEndId")) > 1 || leaves.count(&format!("{T}/OrgnlTxId")) > 1 {
        return Err(Refusal::format("a recall names exactly one transaction"));
    }
    let original_end_to_end_id = leaves.text(&format!("{T}/OrgnlEndToEndId")).map(str::to_owned);
    if original_end_to_end_id.is_none() {
        return Err(Refusal::format("the recall does not name the transaction (OrgnlEndToEndId)"));
    }
    Ok(RecallMessage {
        case_id: leaves.text("FIToFIPmtCxlReq/Assgnmt/Id").unwrap_or_default().to_owned(),
        original_end_to_end_id,
        original_tx_id: leaves.text(&format!("{T}/OrgnlTxId")).map(str::to_owned),
        reason: leaves
            .text(&format!("{T}/CxlRsnInf/Rsn/Cd"))
            .or_else(|| leaves.text(&format!("{T}/CxlRsnInf/Rsn/Prtry")))
            .map(str::to_owned),
    })
}

/// A rate as `BaseOneRate` allows it: at most 11 significant digits, 10 of them decimals.
pub fn base_one_rate(rate: rust_decimal::Decimal) -> rust_decimal::Decimal {
    let integer_digits = if rate >= rust_decimal::Decimal::ONE { rate.trunc().to_string().len() as u32 } else { 0 };
    rate.round_dp(10.min(11u32.saturating_sub(integer_digits))).normalize()
}

/// An agent by BIC.
fn agent(out: &mut String, element: &str, bic: &str) {
    let _ = write!(out, "<{element}><FinInstnId><BICFI>{}</BICFI></FinInstnId></{element}>", xml::text(bic, 11));
}

/// `Ccy="..."` and the amount with the currency's decimals.
fn amount(out: &mut String, element: &str, minor: u64, currency: junction_ledger::Currency) {
    let _ = write!(out, "<{element} Ccy=\"{}\">{}</{element}>", currency.code(), currency.format_minor(minor.into()));
}

fn optional(out: &mut String, element: &str, value: Option<&str>, max_chars: usize) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        let _ = write!(out, "<{element}>{}</{element}>", xml::text(value, max_chars));
    }
}

fn document(kind: Kind, body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"{}\">{body}</Document>\n", kind.namespace())
}

/// A status report on one message (pacs.002).
pub struct Status<'a> {
    pub msg_id: &'a str,
    pub created_ms: u64,
    /// The switch's BIC (instructing agent) and the addressee's (instructed agent).
    pub from_bic: &'a str,
    pub to_bic: Option<&'a str>,
    pub original_msg_id: &'a str,
    pub original_kind: Kind,
    pub original_end_to_end_id: Option<&'a str>,
    pub original_tx_id: Option<&'a str>,
    pub original_uetr: Option<&'a str>,
    /// ACSC (settled), ACCP (accepted), PDNG (pending) or RJCT.
    pub status: &'a str,
    pub reason: Option<(&'a str, &'a str)>,
    pub accepted_ms: Option<u64>,
    /// The switch's own reference of the transaction.
    pub reference: Option<&'a str>,
    /// The amounts as settled: what the sender was debited (the interbank amount).
    pub settled: Option<(u64, junction_ledger::Currency)>,
}

pub fn status_report(status: &Status<'_>) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("<FIToFIPmtStsRpt><GrpHdr>");
    let _ = write!(
        out,
        "<MsgId>{}</MsgId><CreDtTm>{}</CreDtTm>",
        xml::text(status.msg_id, MAX35),
        xml::datetime(status.created_ms)
    );
    agent(&mut out, "InstgAgt", status.from_bic);
    if let Some(bic) = status.to_bic {
        agent(&mut out, "InstdAgt", bic);
    }
    out.push_str("</GrpHdr><OrgnlGrpInfAndSts>");
    let _ = write!(
        out,
        "<OrgnlMsgId>{}</OrgnlMsgId><OrgnlMsgNmId>{}</OrgnlMsgNmId>",
        xml::text(status.original_msg_id, MAX35),
        status.original_kind.name_id()
    );
    out.push_str("</OrgnlGrpInfAndSts><TxInfAndSts>");
    optional(&mut out, "OrgnlEndToEndId", status.original_end_to_end_id, MAX35);
    optional(&mut out, "OrgnlTxId", status.original_tx_id, MAX35);
    optional(&mut out, "OrgnlUETR", status.original_uetr, 36);
    let _ = write!(out, "<TxSts>{}</TxSts>", xml::text(status.status, 4));
    if let Some((code, info)) = status.reason {
        let _ = write!(out, "<StsRsnInf><Rsn><Cd>{}</Cd></Rsn>", xml::text(code, 4));
        optional(&mut out, "AddtlInf", Some(info), MAX105);
        out.push_str("</StsRsnInf>");
    }
    if let Some(at) = status.accepted_ms {
        let _ = write!(out, "<AccptncDtTm>{}</AccptncDtTm>", xml::datetime(at));
    }
    optional(&mut out, "ClrSysRef", status.reference, MAX35);
    if let Some((minor, currency)) = status.settled {
        out.push_str("<OrgnlTxRef>");
        amount(&mut out, "IntrBkSttlmAmt", minor, currency);
        out.push_str("</OrgnlTxRef>");
    }
    out.push_str("</TxInfAndSts></FIToFIPmtStsRpt>");
    document(Kind::Pacs002, &out)
}

/// The credit as the switch pushes it to the receiving system (pacs.008): the amount in
/// the receiving system's currency, the creditor's account resolved from the proxy, and
/// the switch's own reference as the transaction id (what the receiving system's status
/// report, return or recall answer names).
pub struct Push<'a> {
    pub msg_id: &'a str,
    pub created_ms: u64,
    pub switch_bic: &'a str,
    pub settlement_method: &'a str,
    pub sender_bic: &'a str,
    pub receiver_bic: &'a str,
    pub end_to_end_id: &'a str,
    pub reference: &'a str,
    pub uetr: Option<&'a str>,
    pub credit: (u64, junction_ledger::Currency),
    /// What the sender sent, when it was in another currency, and the all-in rate.
    pub instructed: Option<(u64, junction_ledger::Currency, rust_decimal::Decimal)>,
    pub debtor_name: Option<&'a str>,
    pub debtor_account: Option<&'a str>,
    pub creditor_name: Option<&'a str>,
    pub creditor_account: &'a str,
    pub remittance: Option<&'a str>,
}

pub fn push(push: &Push<'_>) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str("<FIToFICstmrCdtTrf><GrpHdr>");
    let _ = write!(
        out,
        "<MsgId>{}</MsgId><CreDtTm>{}</CreDtTm><NbOfTxs>1</NbOfTxs>",
        xml::text(push.msg_id, MAX35),
        xml::datetime(push.created_ms)
    );
    let _ = write!(out, "<SttlmInf><SttlmMtd>{}</SttlmMtd></SttlmInf>", push.settlement_method);
    agent(&mut out, "InstgAgt", push.switch_bic);
    agent(&mut out, "InstdAgt", push.receiver_bic);
    out.push_str("</GrpHdr><CdtTrfTxInf><PmtId>");
    let _ = write!(out, "<EndToEndId>{}</EndToEndId>", xml::text(push.end_to_end_id, MAX35));
    let _ = write!(out, "<TxId>{}</TxId>", xml::text(push.reference, MAX35));
    optional(&mut out, "UETR", push.uetr, 36);
    out.push_str("</PmtId>");
    amount(&mut out, "IntrBkSttlmAmt", push.credit.0, push.credit.1);
    let _ = write!(out, "<IntrBkSttlmDt>{}</IntrBkSttlmDt>", xml::date(push.created_ms));
    if let Some((minor, currency, rate)) = push.instructed {
        amount(&mut out, "InstdAmt", minor, currency);
        let _ = write!(out, "<XchgRate>{}</XchgRate>", base_one_rate(rate));
    }
    out.push_str("<ChrgBr>SLEV</ChrgBr>");
    out.push_str("<Dbtr>");
    optional(&mut out, "Nm", push.debtor_name, MAX140);
    out.push_str("</Dbtr>");
    if let Some(account) = push.debtor_account {
        let _ = write!(out, "<DbtrAcct><Id><Othr><Id>{}</Id></Othr></Id></DbtrAcct>", xml::text(account, 34));
    }
    agent(&mut out, "DbtrAgt", push.sender_bic);
    agent(&mut out, "CdtrAgt", push.receiver_bic);
    out.push_str("<Cdtr>");
    optional(&mut out, "Nm", push.creditor_name, MAX140);
    out.push_str("</Cdtr>");
    let _ = write!(out, "<CdtrAcct><Id><Othr><Id>{}</Id></Othr></Id></CdtrAcct>", xml::text(push.creditor_account, 34));
    if let Some(remittance) = push.remittance {
        let _ = write!(out, "<RmtInf><Ustrd>{}</Ustrd></RmtInf>", xml::text(remittance, MAX140));
    }
    out.push_str("</CdtTrfTxInf></FIToFICstmrCdtTrf>");
    document(Kind::Pacs008, &out)
}

/// A return as the switch tells the sending system of it (pacs.004): its money back, in
/// its currency, naming its own original message and ids.
pub struct ReturnNotice<'a> {
    pub msg_id: &'a str,
    pub created_ms: u64,
    pub switch_bic: &'a str,
    pub to_bic: &'a str,
    pub return_id: &'a str,
    pub original_msg_id: &'a str,
    pub original_end_to_end_id: &'a str,
    pub original_tx_id: Option<&'a str>,
    pub original_amount: (u64, junction_ledger::Currency),
    pub returned: (u64, junction_ledger::Currency),
    pub reason: &'a str,
    pub info: Option<&'a str>,
}

pub fn return_notice(notice: &ReturnNotice<'_>) -> String {
    let mut out = String::with_capacity(1536);
    out.push_str("<PmtRtr><GrpHdr>");
    let _ = write!(
        out,
        "<MsgId>{}</MsgId><CreDtTm>{}</CreDtTm><NbOfTxs>1</NbOfTxs><SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf>",
        xml::text(notice.msg_id, MAX35),
        xml::datetime(notice.created_ms)
    );
    agent(&mut out, "InstgAgt", notice.switch_bic);
    agent(&mut out, "InstdAgt", notice.to_bic);
    out.push_str("</GrpHdr><TxInf>");
    let _ = write!(out, "<RtrId>{}</RtrId>", xml::text(notice.return_id, MAX35));
    let _ = write!(
        out,
        "<OrgnlGrpInf><OrgnlMsgId>{}</OrgnlMsgId><OrgnlMsgNmId>{}</OrgnlMsgNmId></OrgnlGrpInf>",
        xml::text(notice.original_msg_id, MAX35),
        Kind::Pacs008.name_id()
    );
    let _ = write!(out, "<OrgnlEndToEndId>{}</OrgnlEndToEndId>", xml::text(notice.original_end_to_end_id, MAX35));
    optional(&mut out, "OrgnlTxId", notice.original_tx_id, MAX35);
    amount(&mut out, "OrgnlIntrBkSttlmAmt", notice.original_amount.0, notice.original_amount.1);
    amount(&mut out, "RtrdIntrBkSttlmAmt", notice.returned.0, notice.returned.1);
    let _ = write!(out, "<RtrRsnInf><Rsn><Cd>{}</Cd></Rsn>", xml::text(notice.reason, 4));
    optional(&mut out, "AddtlInf", notice.info, MAX105);
    out.push_str("</RtrRsnInf></TxInf></PmtRtr>");
    document(Kind::Pacs004, &out)
}

/// A recall as the switch passes it on to the receiving system (camt.056), naming the
/// credit by the switch's own reference.
pub struct RecallNotice<'a> {
    pub case_id: &'a str,
    pub created_ms: u64,
    pub switch_bic: &'a str,
    pub to_bic: &'a str,
    pub original_msg_id: &'a str,
    pub original_end_to_end_id: &'a str,
    pub reference: &'a str,
    pub credited: (u64, junction_ledger::Currency),
    pub reason: &'a str,
}

pub fn recall_notice(notice: &RecallNotice<'_>) -> String {
    let mut out = String::with_capacity(1536);
    out.push_str("<FIToFIPmtCxlReq><Assgnmt>");
    let _ = write!(out, "<Id>{}</Id>", xml::text(notice.case_id, MAX35));
    out.push_str("<Assgnr>");
    agent(&mut out, "Agt", notice.switch_bic);
    out.push_str("</Assgnr><Assgne>");
    agent(&mut out, "Agt", notice.to_bic);
    let _ = write!(out, "</Assgne><CreDtTm>{}</CreDtTm></Assgnmt><Undrlyg><TxInf>", xml::datetime(notice.created_ms));
    let _ = write!(
        out,
        "<OrgnlGrpInf><OrgnlMsgId>{}</OrgnlMsgId><OrgnlMsgNmId>{}</OrgnlMsgNmId></OrgnlGrpInf>",
        xml::text(notice.original_msg_id, MAX35),
        Kind::Pacs008.name_id()
    );
    let _ = write!(out, "<OrgnlEndToEndId>{}</OrgnlEndToEndId>", xml::text(notice.original_end_to_end_id, MAX35));
    let _ = write!(out, "<OrgnlTxId>{}</OrgnlTxId>", xml::text(notice.reference, MAX35));
    amount(&mut out, "OrgnlIntrBkSttlmAmt", notice.credited.0, notice.credited.1);
    let _ = write!(out, "<CxlRsnInf><Rsn><Cd>{}</Cd></Rsn></CxlRsnInf>", xml::text(notice.reason, 4));
    out.push_str("</TxInf></Undrlyg></FIToFIPmtCxlReq>");
    document(Kind::Camt056, &out)
}
