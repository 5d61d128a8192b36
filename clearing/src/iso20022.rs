//! ISO 20022 messages for banks: `camt.053.001.08` statements (one per participant and
//! currency) and `pacs.009.001.09` net settlement instructions (one per currency); and
//! the reading side that `verify_folder` uses to check their amounts.
//!
//! Element order and cardinality follow the official schemas in `ledger/schemas/`; the
//! tests validate every file against them with xmllint. Writing is by hand into a String:
//! the files are small (one per participant), and a template reads like the message.

use super::text::{amount_digits, amount_string, date_string, is_iban, xml_datetime, xml_text};
use super::ClearingError;
use junction_ledger::Currency;
use junction_ledger::{ParticipantId, Position};
use quick_xml::events::{BytesStart, Event};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

pub(crate) const CAMT053_NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08";
pub(crate) const PACS009_NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.09";

/// Scheme name under which a participant's id is given as an organisation identification.
pub(crate) const PARTICIPANT_ID_SCHEME: &str = "JUNCTION-PARTICIPANT";

/// Issuer of the proprietary bank transaction codes below.
const TRANSACTION_CODE_ISSUER: &str = "JUNCTION";
const TRANSACTION_CODE_CREDITS: &str = "CLEARING-CREDITS";
const TRANSACTION_CODE_DEBITS: &str = "CLEARING-DEBITS";

pub(crate) const BALANCE_OPENING: &str = "OPBD";
pub(crate) const BALANCE_CLOSING: &str = "CLBD";
pub(crate) const CREDIT: &str = "CRDT";
pub(crate) const DEBIT: &str = "DBIT";

/// ISO 20022 `Max35Text`: message and transaction identifiers.
const MAX35: usize = 35;
/// `Max70Text` (account name) and `Max140Text` (party and institution names).
const MAX70: usize = 70;
const MAX140: usize = 140;
/// `Max34Text`: a non-IBAN account identification.
pub(crate) const ACCOUNT_ID_CHARS_MAX: usize = 34;
/// `totalDigits` of amounts (`ActiveOrHistoricCurrencyAndAmount`) and of `DecimalNumber`.
pub(crate) const AMOUNT_DIGITS_MAX: usize = 18;
/// `Max15NumericText`: transaction counts.
const COUNT_DIGITS_MAX: usize = 15;

/// Most bytes of one XML file `verify_folder` reads into memory (a pacs.009 of 100 000
/// participants is about 80 MB). Bigger files are refused rather than exhausting memory.
pub(crate) const XML_FILE_BYTES_MAX: u64 = 256 << 20;

/// A deterministic identifier from its readable form: kept when it fits `Max35Text`,
/// otherwise `JNC-` and 31 hex digits of its SHA-256 (still unique and reproducible).
pub(crate) fn message_id(readable: &str) -> String {
    if readable.len() <= MAX35 {
        return readable.to_string();
    }
    let digest = hex::encode(Sha256::digest(readable.as_bytes()));
    format!("JNC-{}", &digest[..MAX35 - 4])
}

pub(crate) fn statement_id(window: u64, participant: ParticipantId, currency: Currency) -> String {
    message_id(&format!("JNC-{window}-{}-{currency}", participant.0))
}

pub(crate) fn instruction_message_id(window: u64, currency: Currency) -> String {
    message_id(&format!("JNC-{window}-{currency}-NET"))
}

pub(crate) fn instruction_id(window: u64, participant: ParticipantId, currency: Currency) -> String {
    message_id(&format!("JNC-{window}-{}-{currency}-NET", participant.0))
}

/// A participant as the messages name it (resolved from the configuration).
pub(crate) struct PartyRef<'a> {
    pub id: ParticipantId,
    pub name: &'a str,
    pub bic: Option<&'a str>,
    pub account: &'a str,
}

/// The switch and the settlement bank, as configured.
pub(crate) struct Hub<'a> {
    pub switch_name: &'a str,
    pub switch_bic: &'a str,
    pub settlement_bank_bic: &'a str,
}

/// An amount for an ISO 20022 amount element: non-negative, within `totalDigits`.
fn xml_amount(minor: u128, currency: Currency, file: &str) -> Result<String, ClearingError> {
    let signed = i128::try_from(minor).map_err(|_| ClearingError::AmountTooLarge { file: file.to_string() })?;
    if amount_digits(signed, currency.exponent()) > AMOUNT_DIGITS_MAX {
        return Err(ClearingError::AmountTooLarge { file: file.to_string() });
    }
    Ok(amount_string(signed, currency.exponent()))
}

fn xml_count(count: u64, file: &str) -> Result<String, ClearingError> {
    let text = count.to_string();
    if text.len() > COUNT_DIGITS_MAX {
        return Err(ClearingError::AmountTooLarge { file: file.to_string() });
    }
    Ok(text)
}

/// `<Id>` of a `CashAccount`: the IBAN when it is one, otherwise a generic identification.
fn account_id_xml(account: &str, indent: &str) -> String {
    if is_iban(account) {
        format!("{indent}<Id>\n{indent}  <IBAN>{account}</IBAN>\n{indent}</Id>\n")
    } else {
        let id = xml_text(account, ACCOUNT_ID_CHARS_MAX, "-");
        format!("{indent}<Id>\n{indent}  <Othr>\n{indent}    <Id>{id}</Id>\n{indent}  </Othr>\n{indent}</Id>\n")
    }
}

/// `FinancialInstitutionIdentification18` of a participant: its BIC when known, always its
/// participant id as clearing-system member id (how `verify_folder` finds it), its name.
fn participant_institution_xml(party: &PartyRef<'_>, indent: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{indent}<FinInstnId>");
    if let Some(bic) = party.bic {
        let _ = writeln!(out, "{indent}  <BICFI>{bic}</BICFI>");
    }
    let _ = writeln!(out, "{indent}  <ClrSysMmbId>");
    let _ = writeln!(out, "{indent}    <MmbId>{}</MmbId>", party.id.0);
    let _ = writeln!(out, "{indent}  </ClrSysMmbId>");
    let _ = writeln!(out, "{indent}  <Nm>{}</Nm>", xml_text(party.name, MAX140, "-"));
    let _ = writeln!(out, "{indent}</FinInstnId>");
    out
}

/// What a camt.053 statement reports for one participant and currency.
pub(crate) struct StatementInput<'a> {
    pub file: &'a str,
    pub window: u64,
    pub cut_off_ns: u64,
    pub party: PartyRef<'a>,
    pub currency: Currency,
    /// Cumulative net before this window: positive is owed to the participant.
    pub opening_minor: i128,
    /// This window's movement (default when the participant did not move).
    pub position: Position,
    /// The parts of its net that are interchange and the switch's fees (positions.csv's
    /// columns): reported as the charges of the statement's first entry.
    pub charges: [i128; 2],
}

/// `Tp/Prtry/Id` of the charges records of a statement, in the order of
/// `StatementInput::charges`.
pub(crate) const CHARGE_TYPES: [&str; 2] = ["INTERCHANGE", "SWITCH-FEES"];

fn balance_xml(
    out: &mut String,
    code: &str,
    minor: i128,
    input: &StatementInput<'_>,
    date: &str,
) -> Result<(), ClearingError> {
    let amount = xml_amount(minor.unsigned_abs(), input.currency, input.file)?;
    let indicator = if minor < 0 { DEBIT } else { CREDIT };
    let currency = input.currency;
    let _ = write!(
        out,
        "      <Bal>
        <Tp>
          <CdOrPrtry>
            <Cd>{code}</Cd>
          </CdOrPrtry>
        </Tp>
        <Amt Ccy=\"{currency}\">{amount}</Amt>
        <CdtDbtInd>{indicator}</CdtDbtInd>
        <Dt>
          <Dt>{date}</Dt>
        </Dt>
      </Bal>
"
    );
    Ok(())
}

struct BatchEntry<'a> {
    reference: &'a str,
    indicator: &'a str,
    transaction_code: &'a str,
    count: u64,
    total: u128,
    /// Interchange and fees included in the window's entries, as signed nets.
    charges: Option<[i128; 2]>,
}

fn entry_xml(
    out: &mut String,
    entry: &BatchEntry<'_>,
    input: &StatementInput<'_>,
    date: &str,
) -> Result<(), ClearingError> {
    let amount = xml_amount(entry.total, input.currency, input.file)?;
    let count = xml_count(entry.count, input.file)?;
    let BatchEntry { reference, indicator, transaction_code, .. } = entry;
    let currency = input.currency;
    let _ = write!(
        out,
        "      <Ntry>
        <NtryRef>{reference}</NtryRef>
        <Amt Ccy=\"{currency}\">{amount}</Amt>
        <CdtDbtInd>{indicator}</CdtDbtInd>
        <Sts>
          <Cd>BOOK</Cd>
        </Sts>
        <BookgDt>
          <Dt>{date}</Dt>
        </BookgDt>
        <ValDt>
          <Dt>{date}</Dt>
        </ValDt>
        <BkTxCd>
          <Prtry>
            <Cd>{transaction_code}</Cd>
            <Issr>{TRANSACTION_CODE_ISSUER}</Issr>
          </Prtry>
        </BkTxCd>
"
    );
    if let Some(charges) = entry.charges {
        out.push_str("        <Chrgs>\n");
        for (net, kind) in charges.iter().zip(CHARGE_TYPES) {
            let amount = xml_amount(net.unsigned_abs(), currency, input.file)?;
            let indicator = if *net < 0 { DEBIT } else { CREDIT };
            let _ = write!(
                out,
                "          <Rcrd>
            <Amt Ccy=\"{currency}\">{amount}</Amt>
            <CdtDbtInd>{indicator}</CdtDbtInd>
            <ChrgInclInd>true</ChrgInclInd>
            <Tp>
              <Prtry>
                <Id>{kind}</Id>
                <Issr>{TRANSACTION_CODE_ISSUER}</Issr>
              </Prtry>
            </Tp>
          </Rcrd>
"
            );
        }
        out.push_str("        </Chrgs>\n");
    }
    let _ = write!(
        out,
        "        <NtryDtls>
          <Btch>
            <NbOfTxs>{count}</NbOfTxs>
            <TtlAmt Ccy=\"{currency}\">{amount}</TtlAmt>
            <CdtDbtInd>{indicator}</CdtDbtInd>
          </Btch>
        </NtryDtls>
      </Ntry>
"
    );
    Ok(())
}

/// A camt.053.001.08 statement of a participant's position account at the switch in one
/// currency: opening and closing balance, and this window's credits and debits as one
/// batch entry each (not one entry per transfer: transfers.csv has those).
pub(crate) fn statement_xml(input: &StatementInput<'_>, hub: &Hub<'_>) -> Result<String, ClearingError> {
    let id = statement_id(input.window, input.party.id, input.currency);
    let created = xml_datetime(input.cut_off_ns);
    let date = date_string(input.cut_off_ns);
    let party = &input.party;
    let name = xml_text(party.name, MAX140, "-");
    let account_name = xml_text(party.name, MAX70, "-");
    let switch_name = xml_text(hub.switch_name, MAX140, "-");
    let account = account_id_xml(party.account, "        ");
    let any_bic = party.bic.map(|bic| format!("\n              <AnyBIC>{bic}</AnyBIC>")).unwrap_or_default();
    let (window, currency, participant, switch_bic) = (input.window, input.currency, party.id.0, hub.switch_bic);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<Document xmlns=\"{CAMT053_NAMESPACE}\">
  <BkToCstmrStmt>
    <GrpHdr>
      <MsgId>{id}</MsgId>
      <CreDtTm>{created}</CreDtTm>
    </GrpHdr>
    <Stmt>
      <Id>{id}</Id>
      <ElctrncSeqNb>{window}</ElctrncSeqNb>
      <CreDtTm>{created}</CreDtTm>
      <Acct>
{account}        <Ccy>{currency}</Ccy>
        <Nm>{account_name}</Nm>
        <Ownr>
          <Nm>{name}</Nm>
          <Id>
            <OrgId>{any_bic}
              <Othr>
                <Id>{participant}</Id>
                <SchmeNm>
                  <Prtry>{PARTICIPANT_ID_SCHEME}</Prtry>
                </SchmeNm>
              </Othr>
            </OrgId>
          </Id>
        </Ownr>
        <Svcr>
          <FinInstnId>
            <BICFI>{switch_bic}</BICFI>
            <Nm>{switch_name}</Nm>
          </FinInstnId>
        </Svcr>
      </Acct>
"
    );
    let closing = input.opening_minor + input.position.net();
    balance_xml(&mut out, BALANCE_OPENING, input.opening_minor, input, &date)?;
    balance_xml(&mut out, BALANCE_CLOSING, closing, input, &date)?;
    let position = &input.position;
    // The charges go with the first entry; none when the window had none.
    let mut charges = (input.charges != [0, 0]).then_some(input.charges);
    if position.credit_count > 0 {
        let reference = message_id(&format!("W{window}-{CREDIT}"));
        let entry = BatchEntry {
            reference: &reference,
            indicator: CREDIT,
            transaction_code: TRANSACTION_CODE_CREDITS,
            count: position.credit_count,
            total: position.credits,
            charges: charges.take(),
        };
        entry_xml(&mut out, &entry, input, &date)?;
    }
    if position.debit_count > 0 {
        let reference = message_id(&format!("W{window}-{DEBIT}"));
        let entry = BatchEntry {
            reference: &reference,
            indicator: DEBIT,
            transaction_code: TRANSACTION_CODE_DEBITS,
            count: position.debit_count,
            total: position.debits,
            charges: charges.take(),
        };
        entry_xml(&mut out, &entry, input, &date)?;
    }
    out.push_str("    </Stmt>\n  </BkToCstmrStmt>\n</Document>\n");
    Ok(out)
}

/// One net settlement: a participant and its non-zero net in the instruction's currency.
pub(crate) struct NetSettlement<'a> {
    pub party: PartyRef<'a>,
    pub net_minor: i128,
}

/// A pacs.009.001.09 with one credit transfer per participant whose net is not zero: a
/// net debtor pays the settlement bank, a net creditor is paid by it. Settlement method
/// INDA: the instructed agent (the settlement bank) books the transfers on the accounts
/// it holds for the participants.
pub(crate) fn instructions_xml(
    file: &str,
    window: u64,
    cut_off_ns: u64,
    currency: Currency,
    settlements: &[NetSettlement<'_>],
    hub: &Hub<'_>,
) -> Result<String, ClearingError> {
    let message = instruction_message_id(window, currency);
    let created = xml_datetime(cut_off_ns);
    let date = date_string(cut_off_ns);
    let count = xml_count(settlements.len() as u64, file)?;
    let total: u128 = settlements.iter().map(|s| s.net_minor.unsigned_abs()).sum();
    let total = xml_amount(total, currency, file)?;
    let (switch_bic, bank_bic) = (hub.switch_bic, hub.settlement_bank_bic);
    let switch_name = xml_text(hub.switch_name, MAX140, "-");
    let mut out = String::with_capacity(2048 + settlements.len() * 1024);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<Document xmlns=\"{PACS009_NAMESPACE}\">
  <FICdtTrf>
    <GrpHdr>
      <MsgId>{message}</MsgId>
      <CreDtTm>{created}</CreDtTm>
      <NbOfTxs>{count}</NbOfTxs>
      <CtrlSum>{total}</CtrlSum>
      <TtlIntrBkSttlmAmt Ccy=\"{currency}\">{total}</TtlIntrBkSttlmAmt>
      <IntrBkSttlmDt>{date}</IntrBkSttlmDt>
      <SttlmInf>
        <SttlmMtd>INDA</SttlmMtd>
      </SttlmInf>
      <InstgAgt>
        <FinInstnId>
          <BICFI>{switch_bic}</BICFI>
          <Nm>{switch_name}</Nm>
        </FinInstnId>
      </InstgAgt>
      <InstdAgt>
        <FinInstnId>
          <BICFI>{bank_bic}</BICFI>
        </FinInstnId>
      </InstdAgt>
    </GrpHdr>
"
    );
    let bank = format!("        <FinInstnId>\n          <BICFI>{bank_bic}</BICFI>\n        </FinInstnId>\n");
    for settlement in settlements {
        let party = &settlement.party;
        let id = instruction_id(window, party.id, currency);
        let amount = xml_amount(settlement.net_minor.unsigned_abs(), currency, file)?;
        let institution = participant_institution_xml(party, "        ");
        let account = account_id_xml(party.account, "        ");
        let (debtor, debtor_account, creditor, creditor_account) = if settlement.net_minor < 0 {
            (institution, format!("      <DbtrAcct>\n{account}      </DbtrAcct>\n"), bank.clone(), String::new())
        } else {
            (bank.clone(), String::new(), institution, format!("      <CdtrAcct>\n{account}      </CdtrAcct>\n"))
        };
        let _ = write!(
            out,
            "    <CdtTrfTxInf>
      <PmtId>
        <InstrId>{id}</InstrId>
        <EndToEndId>{id}</EndToEndId>
        <TxId>{id}</TxId>
      </PmtId>
      <IntrBkSttlmAmt Ccy=\"{currency}\">{amount}</IntrBkSttlmAmt>
      <Dbtr>
{debtor}      </Dbtr>
{debtor_account}      <Cdtr>
{creditor}      </Cdtr>
{creditor_account}      <RmtInf>
        <Ustrd>Net settlement of clearing window {window}</Ustrd>
      </RmtInf>
    </CdtTrfTxInf>
"
        );
    }
    out.push_str("  </FICdtTrf>\n</Document>\n");
    Ok(out)
}

// ---- reading (for verify_folder) ------------------------------------------------------

/// One element of a parsed document, in document order: its opening (for grouping) or,
/// at its end, its text and `Ccy` attribute.
#[derive(Debug)]
pub(crate) enum XmlItem {
    Open { path: String },
    Leaf { path: String, currency: Option<String>, text: String },
}

fn currency_attribute(start: &BytesStart<'_>) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|attribute| attribute.key.local_name().as_ref() == b"Ccy")
        .map(|attribute| String::from_utf8_lossy(&attribute.value).into_owned())
}

/// Flattens a document into `XmlItem`s with slash-separated element paths
/// (`Document/BkToCstmrStmt/Stmt/Bal/Amt`), ignoring namespaces prefixes. Checks that the
/// root is a `Document` in `namespace`.
pub(crate) fn flatten(xml: &str, namespace: &str) -> Result<Vec<XmlItem>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut items = Vec::new();
    // (path, Ccy attribute, text so far) of each open element.
    let mut open: Vec<(String, Option<String>, String)> = Vec::new();
    let mut root_seen = false;
    loop {
        let position = reader.buffer_position();
        let event =
            reader.read_event().map_err(|error| format!("not well-formed XML near byte {position}: {error}"))?;
        match event {
            Event::Start(start) | Event::Empty(start) if !root_seen => {
                root_seen = true;
                if start.local_name().as_ref() != b"Document" {
                    return Err("the root element is not Document".into());
                }
                let declared = start
                    .attributes()
                    .flatten()
                    .find(|attribute| attribute.key.as_ref() == b"xmlns")
                    .map(|attribute| String::from_utf8_lossy(&attribute.value).into_owned());
                if declared.as_deref() != Some(namespace) {
                    return Err(format!("the document's namespace is {declared:?}, expected {namespace}"));
                }
                items.push(XmlItem::Open { path: "Document".into() });
                open.push(("Document".into(), None, String::new()));
            }
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let path = match open.last() {
                    Some((parent, _, _)) => format!("{parent}/{name}"),
                    None => return Err(format!("element {name} after the end of the document")),
                };
                items.push(XmlItem::Open { path: path.clone() });
                open.push((path, currency_attribute(&start), String::new()));
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let path = match open.last() {
                    Some((parent, _, _)) => format!("{parent}/{name}"),
                    None => return Err(format!("element {name} after the end of the document")),
                };
                items.push(XmlItem::Open { path: path.clone() });
                items.push(XmlItem::Leaf { path, currency: currency_attribute(&start), text: String::new() });
            }
            Event::Text(text) => {
                let raw = std::str::from_utf8(&text).map_err(|_| "text is not UTF-8".to_string())?;
                let unescaped =
                    quick_xml::escape::unescape(raw).map_err(|error| format!("bad escape in text: {error}"))?;
                if let Some((_, _, content)) = open.last_mut() {
                    content.push_str(&unescaped);
                }
            }
            Event::End(_) => {
                let (path, currency, text) = open.pop().ok_or_else(|| "unbalanced end tag".to_string())?;
                items.push(XmlItem::Leaf { path, currency, text: text.trim().to_string() });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen || !open.is_empty() {
        return Err("the document is incomplete".into());
    }
    Ok(items)
}

#[derive(Debug, Default)]
pub(crate) struct ParsedAmount {
    pub currency: Option<String>,
    pub text: String,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedBalance {
    pub code: String,
    pub amount: ParsedAmount,
    pub indicator: String,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedEntry {
    pub amount: ParsedAmount,
    pub indicator: String,
    pub batch_count: String,
    pub batch_amount: ParsedAmount,
    pub batch_indicator: String,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedStatement {
    pub statements: usize,
    pub message_id: String,
    pub statement_id: String,
    pub sequence_number: String,
    pub account_currency: String,
    /// Organisation ids of the account owner under `PARTICIPANT_ID_SCHEME`.
    pub participant_ids: Vec<String>,
    pub balances: Vec<ParsedBalance>,
    pub entries: Vec<ParsedEntry>,
    /// The charges records of all entries.
    pub charges: Vec<ParsedCharge>,
}

/// A `Ntry/Chrgs/Rcrd`.
#[derive(Debug, Default)]
pub(crate) struct ParsedCharge {
    pub amount: ParsedAmount,
    pub indicator: String,
    pub kind: String,
}

const STMT: &str = "Document/BkToCstmrStmt/Stmt";

pub(crate) fn parse_statement(xml: &str) -> Result<ParsedStatement, String> {
    let mut parsed = ParsedStatement::default();
    let mut other_id = String::new();
    for item in flatten(xml, CAMT053_NAMESPACE)? {
        match item {
            XmlItem::Open { path } => match path.strip_prefix(STMT) {
                Some("") => parsed.statements += 1,
                Some("/Bal") => parsed.balances.push(ParsedBalance::default()),
                Some("/Ntry") => parsed.entries.push(ParsedEntry::default()),
                Some("/Ntry/Chrgs/Rcrd") => parsed.charges.push(ParsedCharge::default()),
                _ => {}
            },
            XmlItem::Leaf { path, currency, text } => {
                if path == "Document/BkToCstmrStmt/GrpHdr/MsgId" {
                    parsed.message_id = text;
                    continue;
                }
                let Some(suffix) = path.strip_prefix(STMT) else { continue };
                let amount = || ParsedAmount { currency: currency.clone(), text: text.clone() };
                match suffix {
                    "/Id" => parsed.statement_id = text,
                    "/ElctrncSeqNb" => parsed.sequence_number = text,
                    "/Acct/Ccy" => parsed.account_currency = text,
                    "/Acct/Ownr/Id/OrgId/Othr/Id" => other_id = text,
                    "/Acct/Ownr/Id/OrgId/Othr/SchmeNm/Prtry" if text == PARTICIPANT_ID_SCHEME => {
                        parsed.participant_ids.push(std::mem::take(&mut other_id));
                    }
                    "/Bal/Tp/CdOrPrtry/Cd" => {
                        if let Some(balance) = parsed.balances.last_mut() {
                            balance.code = text;
                        }
                    }
                    "/Bal/Amt" => {
                        if let Some(balance) = parsed.balances.last_mut() {
                            balance.amount = amount();
                        }
                    }
                    "/Bal/CdtDbtInd" => {
                        if let Some(balance) = parsed.balances.last_mut() {
                            balance.indicator = text;
                        }
                    }
                    "/Ntry/Amt" => {
                        if let Some(entry) = parsed.entries.last_mut() {
                            entry.amount = amount();
                        }
                    }
                    "/Ntry/CdtDbtInd" => {
                        if let Some(entry) = parsed.entries.last_mut() {
                            entry.indicator = text;
                        }
                    }
                    "/Ntry/Chrgs/Rcrd/Amt" => {
                        if let Some(charge) = parsed.charges.last_mut() {
                            charge.amount = amount();
                        }
                    }
                    "/Ntry/Chrgs/Rcrd/CdtDbtInd" => {
                        if let Some(charge) = parsed.charges.last_mut() {
                            charge.indicator = text;
                        }
                    }
                    "/Ntry/Chrgs/Rcrd/Tp/Prtry/Id" => {
                        if let Some(charge) = parsed.charges.last_mut() {
                            charge.kind = text;
                        }
                    }
                    "/Ntry/NtryDtls/Btch/NbOfTxs" => {
                        if let Some(entry) = parsed.entries.last_mut() {
                            entry.batch_count = text;
                        }
                    }
                    "/Ntry/NtryDtls/Btch/TtlAmt" => {
                        if let Some(entry) = parsed.entries.last_mut() {
                            entry.batch_amount = amount();
                        }
                    }
                    "/Ntry/NtryDtls/Btch/CdtDbtInd" => {
                        if let Some(entry) = parsed.entries.last_mut() {
                            entry.batch_indicator = text;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(parsed)
}

#[derive(Debug, Default)]
pub(crate) struct ParsedAgent {
    pub bic: Option<String>,
    pub member_id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedTransaction {
    pub id: String,
    pub amount: ParsedAmount,
    pub debtor: ParsedAgent,
    pub creditor: ParsedAgent,
}

#[derive(Debug, Default)]
pub(crate) struct ParsedInstructions {
    pub count: String,
    pub control_sum: String,
    pub total: ParsedAmount,
    pub transactions: Vec<ParsedTransaction>,
}

const GROUP_HEADER: &str = "Document/FICdtTrf/GrpHdr";
const TRANSACTION: &str = "Document/FICdtTrf/CdtTrfTxInf";

pub(crate) fn parse_instructions(xml: &str) -> Result<ParsedInstructions, String> {
    let mut parsed = ParsedInstructions::default();
    for item in flatten(xml, PACS009_NAMESPACE)? {
        match item {
            XmlItem::Open { path } => {
                if path == TRANSACTION {
                    parsed.transactions.push(ParsedTransaction::default());
                }
            }
            XmlItem::Leaf { path, currency, text } => {
                if let Some(suffix) = path.strip_prefix(GROUP_HEADER) {
                    match suffix {
                        "/NbOfTxs" => parsed.count = text,
                        "/CtrlSum" => parsed.control_sum = text,
                        "/TtlIntrBkSttlmAmt" => parsed.total = ParsedAmount { currency, text },
                        _ => {}
                    }
                    continue;
                }
                let Some(suffix) = path.strip_prefix(TRANSACTION) else { continue };
                let Some(transaction) = parsed.transactions.last_mut() else { continue };
                match suffix {
                    "/PmtId/EndToEndId" => transaction.id = text,
                    "/IntrBkSttlmAmt" => transaction.amount = ParsedAmount { currency, text },
                    "/Dbtr/FinInstnId/BICFI" => transaction.debtor.bic = Some(text),
                    "/Dbtr/FinInstnId/ClrSysMmbId/MmbId" => transaction.debtor.member_id = Some(text),
                    "/Cdtr/FinInstnId/BICFI" => transaction.creditor.bic = Some(text),
                    "/Cdtr/FinInstnId/ClrSysMmbId/MmbId" => transaction.creditor.member_id = Some(text),
                    _ => {}
                }
            }
        }
    }
    Ok(parsed)
}
