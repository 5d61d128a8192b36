//! Clearing files from a real ledger: several participants and currencies (USD, JPY with
//! no decimals, KWD with three), purchases, holds posted partly and whole, a void, an
//! expired hold, a linked FX pair, on-us transfers, and three windows (the last empty).
//!
//! Every file is compared with figures this test computes itself from the transfers it
//! submitted (a model), never from the ledger's own positions; every XML file is
//! validated against the official schemas with xmllint; regeneration must be
//! byte-identical; and tampered copies must fail verification with a named problem.
#![allow(clippy::unwrap_used)] // a panic is a test failure

use junction_clearing::{
    summarize, verify_folder, window_folder_name, write_window_files, ClearingConfig, ClearingError, Manifest,
    ParticipantInfo, VerifyError,
};
use junction_ledger::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn currency(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

// ---- an independent model of what the files must say -------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Expected {
    debits: u128,
    credits: u128,
    debit_count: u64,
    credit_count: u64,
}

impl Expected {
    fn net(&self) -> i128 {
        self.credits as i128 - self.debits as i128
    }
}

/// One expected row of transfers.csv, in the test's own terms.
struct Row {
    id: u128,
    timestamp: u64,
    code: u16,
    kind: &'static str,
    linked: bool,
    pending: u128,
    debit: u128,
    credit: u128,
    currency: Currency,
    amount: u64,
    reference: String,
    user_data_64: String,
}

struct Hold {
    debit: u128,
    credit: u128,
    amount: u64,
}

struct Model {
    /// account -> participant
    owners: BTreeMap<u128, u64>,
    holds: BTreeMap<u128, Hold>,
    /// Per window (index 0 = window 1): rows and positions keyed by (participant, code).
    rows: Vec<Vec<Row>>,
    positions: Vec<BTreeMap<(u64, String), Expected>>,
    clock: u64,
}

/// Test clock start: 2025-06-15T12:00:00Z. Transfers get timestamps from this clock (the
/// ledger keeps them when they increase), so expiry is deterministic.
const CLOCK_START_NS: u64 = 1_749_988_800_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

impl Model {
    fn new(owners: &[(u128, u64)]) -> Model {
        Model {
            owners: owners.iter().copied().collect(),
            holds: BTreeMap::new(),
            rows: vec![Vec::new()],
            positions: vec![BTreeMap::new()],
            clock: CLOCK_START_NS,
        }
    }

    /// Commits a batch at the next second of the test clock; every transfer must succeed.
    fn commit(&mut self, ledger: &Ledger, transfers: &[Transfer]) {
        self.clock += SECOND_NS;
        let results = ledger.wait(ledger.submit_at(self.clock, transfers).unwrap()).unwrap();
        for (transfer, result) in transfers.iter().zip(results) {
            let ok = result.unwrap_or_else(|e| panic!("transfer {:x} failed: {e}", transfer.id.0));
            assert!(ok.created);
            assert_eq!(ok.window.0 as usize, self.rows.len(), "transfer in the expected window");
            self.record(transfer, ok.timestamp);
        }
    }

    fn advance(&mut self, seconds: u64) {
        self.clock += seconds * SECOND_NS;
    }

    fn record(&mut self, transfer: &Transfer, timestamp: u64) {
        let flags = transfer.flags;
        let (kind, moves) = if flags.contains(TransferFlags::PENDING) {
            ("hold", false)
        } else if flags.contains(TransferFlags::POST_PENDING) {
            ("post", true)
        } else if flags.contains(TransferFlags::VOID_PENDING) {
            ("void", false)
        } else {
            ("single", true)
        };
        let (mut debit, mut credit, mut amount) =
            (transfer.debit_account.0, transfer.credit_account.0, transfer.amount);
        if kind == "post" || kind == "void" {
            let hold = &self.holds[&transfer.pending_id.0];
            debit = hold.debit;
            credit = hold.credit;
            if amount == 0 {
                amount = hold.amount;
            }
        }
        if kind == "hold" {
            self.holds.insert(transfer.id.0, Hold { debit, credit, amount });
        }
        let (payer, payee) = (self.owners[&debit], self.owners[&credit]);
        if moves && payer != payee {
            let code = transfer.currency.code().to_string();
            let window = self.positions.last_mut().unwrap();
            let p = window.entry((payer, code.clone())).or_default();
            p.debits += u128::from(amount);
            p.debit_count += 1;
            let p = window.entry((payee, code)).or_default();
            p.credits += u128::from(amount);
            p.credit_count += 1;
        }
        self.rows.last_mut().unwrap().push(Row {
            id: transfer.id.0,
            timestamp,
            code: transfer.code,
            kind,
            linked: flags.contains(TransferFlags::LINKED),
            pending: transfer.pending_id.0,
            debit,
            credit,
            currency: transfer.currency,
            amount,
            reference: format!("{:032x}", transfer.user_data_128),
            user_data_64: format!("{:016x}", transfer.user_data_64),
        });
    }

    fn close(&mut self, ledger: &Ledger) -> WindowPositions {
        let closed = ledger.close_window().unwrap();
        self.rows.push(Vec::new());
        self.positions.push(BTreeMap::new());
        closed
    }

    /// Cumulative nets over windows before `window` (1-based).
    fn openings(&self, window: usize) -> BTreeMap<(u64, String), i128> {
        let mut openings = BTreeMap::new();
        for positions in &self.positions[..window - 1] {
            for (key, p) in positions {
                *openings.entry(key.clone()).or_insert(0) += p.net();
            }
        }
        openings
    }
}

/// ISO 8601 UTC with nanoseconds, computed the slow way (walking years and months).
fn iso8601(ns: u64) -> String {
    let leap = |y: u64| matches!((y % 4, y % 100, y % 400), (0, 1.., _) | (_, _, 0));
    let seconds = ns / SECOND_NS;
    let mut days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        month + 1,
        days + 1,
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        ns % SECOND_NS
    )
}

// ---- the scenario -------------------------------------------------------------------------

const SWITCH_BIC: &str = "JUNCCNSHXXX";
const BANK_BIC: &str = "SETLCNBJ";

fn config() -> ClearingConfig {
    let info = |name: &str, bic: Option<&str>, account: &str| ParticipantInfo {
        name: name.into(),
        bic: bic.map(String::from),
        settlement_account_iban_or_id: account.into(),
    };
    let mut participants = BTreeMap::new();
    participants.insert(ParticipantId(1), info("First Issuer Bank", Some("FRSTUS33"), "GB82WEST12345698765432"));
    participants.insert(ParticipantId(2), info("Gulf Wallet, K.S.C.", None, "KW-WALLET-0002"));
    participants.insert(ParticipantId(3), info("Bangkok Acquirer & Co", Some("BKACTHBK"), "TH-ACQ-0003"));
    participants.insert(ParticipantId(4), info("FX Provider", Some("FXPRSGSG"), "SG-FX-0004"));
    // Participant 5 (a foreign wallet) is deliberately missing: it gets a placeholder.
    ClearingConfig {
        switch_name: "Junction Switch".into(),
        switch_bic: SWITCH_BIC.into(),
        settlement_bank_bic: BANK_BIC.into(),
        participants,
        fee_participant: None,
    }
}

fn expected_name(participant: u64) -> String {
    match participant {
        1 => "First Issuer Bank",
        2 => "Gulf Wallet, K.S.C.",
        3 => "Bangkok Acquirer & Co",
        4 => "FX Provider",
        _ => return format!("Participant {participant}"),
    }
    .to_string()
}

/// (account, participant, currency, kind)
const ACCOUNTS: &[(u128, u64, &str, AccountKind)] = &[
    (101, 1, "USD", AccountKind::Cardholder),
    (102, 1, "USD", AccountKind::Cardholder),
    (201, 2, "KWD", AccountKind::Cardholder),
    (301, 3, "USD", AccountKind::Merchant),
    (302, 3, "JPY", AccountKind::Merchant),
    (303, 3, "KWD", AccountKind::Merchant),
    (401, 4, "USD", AccountKind::FxLiquidity),
    (402, 4, "JPY", AccountKind::FxLiquidity),
    (501, 5, "JPY", AccountKind::Cardholder),
];

/// A reference as the ISO 8583 gateway packs it (RRN and STAN): written as plain hex.
const RRN_REFERENCE: u128 = u128::from_be_bytes(*b"000100000042\0\0\0\x2a");

fn transfer(id: u128, debit: u128, credit: u128, amount: u64, code: &str, kind_code: u16) -> Transfer {
    let mut t = Transfer::new(id, debit, credit, amount, currency(code));
    t.code = kind_code;
    // An RRN-like reference: 12 digits stay readable.
    t.user_data_128 = 0x0000_0000_0000_0000_0000_5123_4567_8901 + id;
    t
}

fn hold(id: u128, debit: u128, credit: u128, amount: u64, code: &str) -> Transfer {
    let mut t = transfer(id, debit, credit, amount, code, 10);
    t.flags = TransferFlags::PENDING;
    t
}

fn resolve(id: u128, pending: u128, amount: u64, code: &str, flags: TransferFlags) -> Transfer {
    let mut t = Transfer::new(id, 0, 0, amount, currency(code));
    t.flags = flags;
    t.pending_id = TransferId(pending);
    t.code = 11;
    t
}

struct Scenario {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    model: Model,
    closed: Vec<WindowPositions>,
}

fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger"), LedgerOptions::default()).unwrap();
    let accounts: Vec<Account> = ACCOUNTS
        .iter()
        .map(|&(id, participant, code, kind)| Account {
            id: AccountId(id),
            participant: ParticipantId(participant),
            currency: currency(code),
            kind,
            flags: AccountFlags::NONE,
            credit_limit: 0,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        })
        .collect();
    assert!(ledger.create_accounts(&accounts).unwrap().iter().all(|r| *r == Ok(true)));
    let owners: Vec<(u128, u64)> = ACCOUNTS.iter().map(|&(id, p, _, _)| (id, p)).collect();
    let mut m = Model::new(&owners);

    // Window 1.
    let mut purchase = transfer(0x1001, 101, 301, 4250, "USD", 1);
    purchase.user_data_128 = RRN_REFERENCE;
    purchase.user_data_64 = 7;
    m.commit(&ledger, &[purchase]);
    m.commit(&ledger, &[transfer(0x1002, 201, 303, 1234, "KWD", 1)]); // 1.234 KWD
    m.commit(&ledger, &[transfer(0x1003, 101, 102, 1000, "USD", 4)]); // on-us: no position
    m.commit(&ledger, &[hold(0x1004, 101, 301, 12_000, "USD")]);
    m.commit(&ledger, &[resolve(0x1005, 0x1004, 9500, "USD", TransferFlags::POST_PENDING)]); // partial post
    m.commit(&ledger, &[hold(0x1006, 201, 303, 5000, "KWD")]);
    m.commit(&ledger, &[resolve(0x1007, 0x1006, 0, "KWD", TransferFlags::VOID_PENDING)]);
    // A linked FX pair: 10.00 USD to the FX provider, 1500 JPY from it to the merchant.
    let mut usd_leg = transfer(0x1008, 101, 401, 1000, "USD", 3);
    usd_leg.flags = TransferFlags::LINKED;
    usd_leg.user_data_64 = 0xf0_0001; // FX quote id
    let mut jpy_leg = transfer(0x1009, 402, 302, 1500, "JPY", 3);
    jpy_leg.user_data_64 = 0xf0_0001;
    m.commit(&ledger, &[usd_leg, jpy_leg]);
    m.commit(&ledger, &[transfer(0x100a, 501, 302, 980, "JPY", 1)]); // participant 5, unconfigured
    m.commit(&ledger, &[hold(0x100b, 101, 301, 2000, "USD")]); // posted in window 2
    let mut expiring = hold(0x100c, 201, 303, 2000, "KWD");
    expiring.timeout_s = 1;
    m.commit(&ledger, &[expiring]);
    m.advance(5);
    m.commit(&ledger, &[transfer(0x100d, 102, 101, 300, "USD", 4)]); // on-us; expires 0x100c first
    assert!(!ledger.is_pending(TransferId(0x100c)));
    let mut closed = vec![m.close(&ledger)];

    // Window 2: no KWD activity, so KWD statements carry balances only.
    m.commit(&ledger, &[resolve(0x2001, 0x100b, 0, "USD", TransferFlags::POST_PENDING)]); // whole hold
    m.commit(&ledger, &[transfer(0x2002, 301, 101, 500, "USD", 2)]); // refund
    m.commit(&ledger, &[transfer(0x2003, 501, 302, 500, "JPY", 1)]);
    closed.push(m.close(&ledger));

    // Window 3: empty.
    closed.push(m.close(&ledger));
    Scenario { _dir: dir, ledger, model: m, closed }
}

// ---- reading the files back, independently of the crate's own parsers ----------------------

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The contents of every `<tag>...</tag>` (or `<tag attr>...</tag>`) in order.
fn blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        if !after.starts_with('>') && !after.starts_with(' ') {
            rest = after;
            continue;
        }
        let body_start = after.find('>').unwrap() + 1;
        let end = after.find(&close).unwrap();
        found.push(&after[body_start..end]);
        rest = &after[end + close.len()..];
    }
    found
}

fn value<'a>(xml: &'a str, tag: &str) -> &'a str {
    blocks(xml, tag).first().copied().unwrap_or_else(|| panic!("no <{tag}> in {xml}")).trim()
}

fn ccy_of(xml: &str, tag: &str) -> String {
    let open = format!("<{tag} Ccy=\"");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag} Ccy=...> in {xml}")) + open.len();
    xml[start..start + 3].to_string()
}

fn folder_files(folder: &Path) -> BTreeSet<String> {
    fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn check_transfers_csv(folder: &Path, model: &Model, window: usize) {
    let mut expected = String::from(
        "transfer_id,timestamp,code,kind,linked,pending_id,debit_account,debit_participant,credit_account,\
         credit_participant,currency,amount,amount_minor,reference,user_data_64\n",
    );
    for row in &model.rows[window - 1] {
        let reference = row.reference.clone();
        expected += &format!(
            "{:032x},{},{},{},{},{},{:x},{},{:x},{},{},{},{},{},{}\n",
            row.id,
            iso8601(row.timestamp),
            row.code,
            row.kind,
            row.linked,
            if row.pending == 0 { String::new() } else { format!("{:032x}", row.pending) },
            row.debit,
            model.owners[&row.debit],
            row.credit,
            model.owners[&row.credit],
            row.currency.code(),
            row.currency.format_minor(i128::from(row.amount)),
            row.amount,
            reference,
            row.user_data_64,
        );
    }
    let written = read(&folder.join("transfers.csv"));
    assert_eq!(written, expected, "transfers.csv of window {window}");
}

fn check_positions_csv(folder: &Path, model: &Model, window: usize) {
    let mut expected = String::from(
        "participant_id,participant_name,currency,debit_count,credit_count,debits,credits,net,\
         debits_minor,credits_minor,net_minor,gross,interchange,fees\n",
    );
    // The model's transfers are all payments (no fee codes): the net is all gross.
    for ((participant, code), p) in &model.positions[window - 1] {
        let c = currency(code);
        let name = expected_name(*participant);
        let name = if name.contains(',') { format!("\"{name}\"") } else { name };
        expected += &format!(
            "{participant},{name},{code},{},{},{},{},{},{},{},{},{},{},{}\n",
            p.debit_count,
            p.credit_count,
            c.format_minor(p.debits as i128),
            c.format_minor(p.credits as i128),
            c.format_minor(p.net()),
            p.debits,
            p.credits,
            p.net(),
            c.format_minor(p.net()),
            c.format_minor(0),
            c.format_minor(0),
        );
    }
    assert_eq!(read(&folder.join("positions.csv")), expected, "positions.csv of window {window}");
}

fn signed_amount(block: &str, code: &str) -> i128 {
    let c = currency(code);
    assert_eq!(ccy_of(block, "Amt"), code);
    let text = value(block, "Amt");
    let magnitude = parse_minor(text, c);
    match value(block, "CdtDbtInd") {
        "CRDT" => magnitude,
        "DBIT" => -magnitude,
        other => panic!("CdtDbtInd {other}"),
    }
}

/// Minor units from a decimal written with the currency's exponent (checked by formatting
/// back with `Currency::format_minor`).
fn parse_minor(text: &str, c: Currency) -> i128 {
    let digits: String = text.chars().filter(|ch| ch.is_ascii_digit()).collect();
    let minor: i128 = digits.parse().unwrap();
    assert_eq!(c.format_minor(minor), text, "amount {text} is not written with {} decimals", c.exponent());
    minor
}

fn check_statements(folder: &Path, model: &Model, window: usize, closed_at: u64) {
    let positions = &model.positions[window - 1];
    let openings = model.openings(window);
    let keys: BTreeSet<(u64, String)> =
        positions.keys().cloned().chain(openings.iter().filter(|(_, v)| **v != 0).map(|(k, _)| k.clone())).collect();
    let names: BTreeSet<String> =
        folder_files(folder).into_iter().filter(|name| name.starts_with("camt053-")).collect();
    let expected_names: BTreeSet<String> = keys.iter().map(|(p, c)| format!("camt053-{p}-{c}.xml")).collect();
    assert_eq!(names, expected_names, "statement files of window {window}");
    let iso = iso8601(closed_at);
    let (date, datetime) = (&iso[..10], format!("{}+00:00", &iso[..19]));
    let mut sums: BTreeMap<String, (i128, i128)> = BTreeMap::new();
    for (participant, code) in &keys {
        let xml = read(&folder.join(format!("camt053-{participant}-{code}.xml")));
        let opening = openings.get(&(*participant, code.clone())).copied().unwrap_or(0);
        let position = positions.get(&(*participant, code.clone())).copied().unwrap_or_default();
        let closing = opening + position.net();
        let what = format!("camt053-{participant}-{code}.xml of window {window}");
        assert_eq!(value(&xml, "MsgId"), format!("JNC-{window}-{participant}-{code}"), "{what}");
        assert_eq!(value(&xml, "CreDtTm"), datetime, "{what}");
        assert_eq!(value(&xml, "ElctrncSeqNb"), window.to_string(), "{what}");
        let account = &blocks(&xml, "Acct")[0];
        assert_eq!(value(account, "Ccy"), code, "{what}");
        let owner = &blocks(account, "Ownr")[0];
        assert_eq!(value(owner, "Nm"), expected_name(*participant).replace('&', "&amp;"), "{what}");
        assert_eq!(value(blocks(owner, "Othr")[0], "Id"), participant.to_string(), "{what}");
        let account_id = match participant {
            1 => "<IBAN>GB82WEST12345698765432</IBAN>".to_string(),
            5 => "<Id>JUNCTION-P5</Id>".to_string(), // the placeholder of an unconfigured participant
            _ => {
                format!("<Id>{}</Id>", config().participant(ParticipantId(*participant)).settlement_account_iban_or_id)
            }
        };
        assert!(account.contains(&account_id), "{what}: account {account_id}");
        let balances = blocks(&xml, "Bal");
        assert_eq!(balances.len(), 2, "{what}");
        assert_eq!(value(balances[0], "Cd"), "OPBD", "{what}");
        assert_eq!(value(balances[1], "Cd"), "CLBD", "{what}");
        assert_eq!(signed_amount(balances[0], code), opening, "{what}: opening");
        assert_eq!(signed_amount(balances[1], code), closing, "{what}: closing");
        assert!(balances.iter().all(|b| b.contains(&format!("<Dt>{date}</Dt>"))), "{what}: balance dates");
        let entries = blocks(&xml, "Ntry");
        let mut expected_entries = Vec::new();
        if position.credit_count > 0 {
            expected_entries.push((position.credits as i128, position.credit_count));
        }
        if position.debit_count > 0 {
            expected_entries.push((-(position.debits as i128), position.debit_count));
        }
        assert_eq!(entries.len(), expected_entries.len(), "{what}: one batch entry per direction");
        for (entry, (amount, count)) in entries.iter().zip(expected_entries) {
            assert_eq!(signed_amount(entry, code), amount, "{what}: entry");
            let batch = blocks(entry, "Btch")[0];
            assert_eq!(value(batch, "NbOfTxs"), count.to_string(), "{what}: batch count");
            assert_eq!(value(batch, "TtlAmt"), value(entry, "Amt"), "{what}: batch total");
            assert_eq!(value(entry, "Dt"), date, "{what}: booking date");
        }
        let sum = sums.entry(code.clone()).or_default();
        sum.0 += opening;
        sum.1 += closing;
    }
    assert!(sums.values().all(|(o, c)| *o == 0 && *c == 0), "statement balances sum to zero per currency");
}

fn check_instructions(folder: &Path, model: &Model, window: usize) {
    let positions = &model.positions[window - 1];
    let mut by_currency: BTreeMap<String, Vec<(u64, i128)>> = BTreeMap::new();
    for ((participant, code), p) in positions {
        if p.net() != 0 {
            by_currency.entry(code.clone()).or_default().push((*participant, p.net()));
        }
    }
    let names: BTreeSet<String> =
        folder_files(folder).into_iter().filter(|name| name.starts_with("pacs009-")).collect();
    let expected_names: BTreeSet<String> = by_currency.keys().map(|c| format!("pacs009-{c}.xml")).collect();
    assert_eq!(names, expected_names, "instruction files of window {window}");
    for (code, nets) in &by_currency {
        let c = currency(code);
        let xml = read(&folder.join(format!("pacs009-{code}.xml")));
        let what = format!("pacs009-{code}.xml of window {window}");
        let header = blocks(&xml, "GrpHdr")[0];
        let total: i128 = nets.iter().map(|(_, net)| net.abs()).sum();
        assert_eq!(value(header, "MsgId"), format!("JNC-{window}-{code}-NET"), "{what}");
        assert_eq!(value(header, "NbOfTxs"), nets.len().to_string(), "{what}");
        assert_eq!(value(header, "CtrlSum"), c.format_minor(total), "{what}");
        assert_eq!(value(header, "SttlmMtd"), "INDA", "{what}");
        assert_eq!(value(blocks(header, "InstgAgt")[0], "BICFI"), SWITCH_BIC, "{what}");
        assert_eq!(value(blocks(header, "InstdAgt")[0], "BICFI"), BANK_BIC, "{what}");
        let transactions = blocks(&xml, "CdtTrfTxInf");
        assert_eq!(transactions.len(), nets.len(), "{what}");
        for (tx, (participant, net)) in transactions.iter().zip(nets) {
            assert_eq!(ccy_of(tx, "IntrBkSttlmAmt"), *code);
            assert_eq!(value(tx, "IntrBkSttlmAmt"), c.format_minor(net.abs()), "{what}: participant {participant}");
            assert_eq!(value(tx, "EndToEndId"), format!("JNC-{window}-{participant}-{code}-NET"), "{what}");
            let (payer, payee) = (blocks(tx, "Dbtr")[0], blocks(tx, "Cdtr")[0]);
            let (participant_side, bank_side) = if *net < 0 { (payer, payee) } else { (payee, payer) };
            assert_eq!(value(participant_side, "MmbId"), participant.to_string(), "{what}: direction");
            assert_eq!(value(bank_side, "BICFI"), BANK_BIC, "{what}: the settlement bank's side");
            assert!(!bank_side.contains("MmbId"), "{what}");
        }
    }
}

fn check_manifest(folder: &Path, model: &Model, window: usize, closed: &WindowPositions, manifest: &Manifest) {
    let on_disk: Manifest = serde_json::from_str(&read(&folder.join("manifest.json"))).unwrap();
    assert_eq!(&on_disk, manifest);
    let WindowState::Closed { closed_at } = closed.state else { panic!("window {window} is not closed") };
    assert_eq!(manifest.format_version, 4);
    assert_eq!(manifest.window, window as u64);
    assert_eq!(manifest.cut_off, iso8601(closed_at));
    assert_eq!(manifest.cut_off_ns, closed_at);
    assert_eq!((manifest.journal_first_seq, Some(manifest.journal_last_seq)), (closed.first_seq, closed.last_seq));
    assert_eq!(manifest.records.transfers, model.rows[window - 1].len() as u64);
    assert_eq!(manifest.records.positions, model.positions[window - 1].len() as u64);
    let listed: BTreeSet<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    let mut present = folder_files(folder);
    assert!(present.remove("manifest.json"));
    assert_eq!(listed, present, "the manifest lists exactly the folder's files");
    for file in &manifest.files {
        let bytes = fs::read(folder.join(&file.name)).unwrap();
        assert_eq!(file.bytes, bytes.len() as u64, "{}", file.name);
        assert_eq!(file.sha256, hex::encode(Sha256::digest(&bytes)), "{}", file.name);
    }
    // Per currency: the summed position, participants, what net creditors receive.
    let mut totals: BTreeMap<String, (Expected, u64, u128)> = BTreeMap::new();
    for ((_, code), p) in &model.positions[window - 1] {
        let (sum, participants, settlement) = totals.entry(code.clone()).or_default();
        sum.debits += p.debits;
        sum.credits += p.credits;
        sum.debit_count += p.debit_count;
        sum.credit_count += p.credit_count;
        *participants += 1;
        *settlement += p.net().max(0) as u128;
    }
    assert_eq!(manifest.currencies.len(), totals.len());
    for (listed, (code, (sum, participants, settlement))) in manifest.currencies.iter().zip(&totals) {
        let c = currency(code);
        assert_eq!(listed.currency, *code);
        assert_eq!(listed.exponent, c.exponent());
        assert_eq!(sum.net(), 0, "the model's nets sum to zero");
        assert_eq!(
            (listed.debits_minor.as_str(), listed.credits_minor.as_str(), listed.net_sum_minor.as_str()),
            (sum.debits.to_string().as_str(), sum.credits.to_string().as_str(), "0"),
        );
        assert_eq!((listed.debit_count, listed.credit_count), (sum.debit_count, sum.credit_count));
        assert_eq!(listed.participants, *participants);
        assert_eq!(listed.debits, c.format_minor(sum.debits as i128));
        assert_eq!(listed.credits, c.format_minor(sum.credits as i128));
        assert_eq!(listed.net_sum, c.format_minor(0));
        assert_eq!(listed.settlement_amount_minor, settlement.to_string());
        assert_eq!(listed.settlement_amount, c.format_minor(*settlement as i128));
    }
}

/// Validates every XML file of a folder against the official schemas.
fn xmllint_folder(folder: &Path) {
    let available = Command::new("xmllint").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("xmllint is not installed, and CI must validate the clearing XML (apt-get install libxml2-utils)");
        }
        eprintln!(
            "!!!!!!!! xmllint not installed: the clearing XML was NOT validated against the ISO 20022 schemas !!!!!!!!"
        );
        return;
    }
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for name in folder_files(folder) {
        let schema = if name.starts_with("camt053-") {
            "camt.053.001.08.xsd"
        } else if name.starts_with("pacs009-") {
            "pacs.009.001.09.xsd"
        } else {
            continue;
        };
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(schemas.join(schema))
            .arg(folder.join(&name))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name} does not validate against {schema}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn all_bytes(folder: &Path) -> BTreeMap<String, Vec<u8>> {
    folder_files(folder).into_iter().map(|name| (name.clone(), fs::read(folder.join(&name)).unwrap())).collect()
}

#[test]
fn files_match_the_model_validate_and_regenerate_identically() {
    let s = scenario();
    let config = config();
    let root = tempfile::tempdir().unwrap();
    let other_root = tempfile::tempdir().unwrap();
    for (index, closed) in s.closed.iter().enumerate() {
        let window = index + 1;
        let WindowState::Closed { closed_at } = closed.state else { panic!("open") };
        let manifest = write_window_files(&s.ledger, closed.window, root.path(), &config).unwrap();
        let folder = root.path().join(window_folder_name(window as u64));
        check_transfers_csv(&folder, &s.model, window);
        check_positions_csv(&folder, &s.model, window);
        check_statements(&folder, &s.model, window, closed_at);
        check_instructions(&folder, &s.model, window);
        check_manifest(&folder, &s.model, window, closed, &manifest);
        xmllint_folder(&folder);
        let report = verify_folder(&folder).unwrap();
        assert_eq!(report.manifest, manifest);
        assert_eq!(report.files_checked, manifest.files.len() as u64);

        // Byte-identical in another place, and again after deleting the folder.
        let again = write_window_files(&s.ledger, closed.window, other_root.path(), &config).unwrap();
        assert_eq!(again, manifest);
        let other = other_root.path().join(window_folder_name(window as u64));
        assert_eq!(all_bytes(&other), all_bytes(&folder), "window {window} regenerates byte-identically");
        fs::remove_dir_all(&other).unwrap();
        write_window_files(&s.ledger, closed.window, other_root.path(), &config).unwrap();
        assert_eq!(all_bytes(&other), all_bytes(&folder));
        // Idempotent: an existing folder that verifies is left alone.
        assert_eq!(write_window_files(&s.ledger, closed.window, root.path(), &config).unwrap(), manifest);
    }
    // Nothing else appeared next to the window folders (no temporary folders left).
    let expected: BTreeSet<String> = (1..=3).map(window_folder_name).collect();
    assert_eq!(folder_files(root.path()), expected);

    // The empty window still says who owes what from before.
    let empty = root.path().join(window_folder_name(3));
    assert_eq!(read(&empty.join("transfers.csv")).lines().count(), 1);
    assert_eq!(read(&empty.join("positions.csv")).lines().count(), 1);

    let summary = summarize(&root.path().join(window_folder_name(1))).unwrap();
    assert_eq!(summary.window, 1);
    assert_eq!(summary.transfers, s.model.rows[0].len() as u64);
    let p1 = summary.participants.iter().find(|p| p.participant == 1 && p.currency == "USD").unwrap();
    assert_eq!((p1.net.as_str(), p1.net_minor), ("-147.50", -14_750));
    let shown = summary.to_string();
    assert!(shown.contains("window 1") && shown.contains("First Issuer Bank") && shown.contains("-147.50"), "{shown}");
    assert!(shown.contains("Participant 5"), "{shown}");
}

#[test]
fn a_crashed_attempt_is_redone_and_bad_requests_write_nothing() {
    let s = scenario();
    let config = config();
    let root = tempfile::tempdir().unwrap();
    let window = s.closed[0].window;

    // A half-written temporary folder from a crash is removed and the window written whole.
    let temp = root.path().join(".window-00000001.tmp");
    fs::create_dir_all(&temp).unwrap();
    fs::write(temp.join("transfers.csv"), "transfer_id,timest").unwrap();
    let manifest = write_window_files(&s.ledger, window, root.path(), &config).unwrap();
    assert!(!temp.exists());
    let folder = root.path().join(window_folder_name(1));
    assert_eq!(verify_folder(&folder).unwrap().manifest, manifest);

    // The open window has no files yet.
    let open = s.ledger.current_window();
    assert!(matches!(write_window_files(&s.ledger, open, root.path(), &config), Err(ClearingError::WindowOpen(_))));
    assert!(matches!(
        write_window_files(&s.ledger, WindowId(99), root.path(), &config),
        Err(ClearingError::WindowNotFound(99))
    ));
    // A BIC the schema would refuse is refused before anything is written.
    let mut bad = config.clone();
    bad.participants.get_mut(&ParticipantId(1)).unwrap().bic = Some("first".into());
    let error = write_window_files(&s.ledger, s.closed[1].window, root.path(), &bad).unwrap_err();
    assert!(matches!(error, ClearingError::Config(_)), "{error}");
    assert!(!root.path().join(window_folder_name(2)).exists());

    // An existing folder that does not verify is not silently replaced.
    fs::write(folder.join("positions.csv"), "changed").unwrap();
    let error = write_window_files(&s.ledger, window, root.path(), &config).unwrap_err();
    assert!(matches!(error, ClearingError::ExistingFolderInvalid { .. }), "{error}");
    assert!(error.to_string().contains("positions.csv"), "{error}");
}

// ---- tampering -----------------------------------------------------------------------------

fn copy_folder(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for name in folder_files(from) {
        fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// Rewrites the manifest's size and digest of `file`, as a forger covering tracks would.
fn rehash(folder: &Path, file: &str) {
    let path = folder.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let bytes = fs::read(folder.join(file)).unwrap();
    for entry in manifest["files"].as_array_mut().unwrap() {
        if entry["name"] == file {
            entry["bytes"] = bytes.len().into();
            entry["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
        }
    }
    fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

struct Tampered {
    _dir: tempfile::TempDir,
    original: PathBuf,
    copies: tempfile::TempDir,
}

impl Tampered {
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.copies.path().join(name);
        copy_folder(&self.original, &to);
        to
    }
}

fn written_window_1() -> Tampered {
    let s = scenario();
    let dir = tempfile::tempdir().unwrap();
    write_window_files(&s.ledger, s.closed[0].window, dir.path(), &config()).unwrap();
    let original = dir.path().join(window_folder_name(1));
    Tampered { _dir: dir, original, copies: tempfile::tempdir().unwrap() }
}

fn failure(folder: &Path) -> (VerifyError, String) {
    let error = verify_folder(folder).expect_err("a tampered folder must not verify");
    let text = error.to_string();
    eprintln!("tampered {}: {text}", folder.file_name().unwrap().to_string_lossy());
    (error, text)
}

#[test]
fn tampered_copies_fail_with_the_problem_named() {
    let t = written_window_1();
    assert!(verify_folder(&t.original).is_ok());

    // One digit changed in positions.csv: the digest gives it away...
    let folder = t.copy("positions-digit");
    let path = folder.join("positions.csv");
    let text = read(&path);
    let changed = text.replacen(",137.50,", ",187.50,", 1);
    assert_ne!(changed, text, "the scenario has participant 3 crediting 137.50 USD");
    fs::write(&path, &changed).unwrap();
    let (error, message) = failure(&folder);
    assert!(matches!(error, VerifyError::HashMismatch { .. }) && message.contains("positions.csv"), "{message}");
    // ...and with the digest forged too, the amounts do.
    rehash(&folder, "positions.csv");
    let (_, message) = failure(&folder);
    assert!(message.contains("positions.csv") && message.contains("participant 3, USD"), "{message}");
    assert!(message.contains("137.50") && message.contains("187.50"), "{message}");

    // A consistent edit of one row (decimal, minor units, net) breaks the zero sum.
    let folder = t.copy("positions-row");
    let path = folder.join("positions.csv");
    let text = read(&path);
    let changed =
        text.replacen(",0.00,137.50,137.50,0,13750,13750,137.50", ",0.00,137.51,137.51,0,13751,13751,137.51", 1);
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    rehash(&folder, "positions.csv");
    let (_, message) = failure(&folder);
    assert!(
        message.contains("positions.csv") && message.contains("USD") && message.contains("sum of all nets"),
        "{message}"
    );

    // Truncated transfers.csv.
    let folder = t.copy("transfers-truncated");
    let path = folder.join("transfers.csv");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
    let (error, message) = failure(&folder);
    assert!(matches!(error, VerifyError::SizeMismatch { .. }) && message.contains("transfers.csv"), "{message}");
    rehash(&folder, "transfers.csv");
    let (_, message) = failure(&folder);
    assert!(message.contains("transfers.csv") && message.contains("line"), "{message}");
    // Cut at a row boundary: every row is well-formed, but one is missing.
    let folder = t.copy("transfers-row-missing");
    let path = folder.join("transfers.csv");
    let text = read(&path);
    let cut = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    fs::write(&path, &text[..cut]).unwrap();
    rehash(&folder, "transfers.csv");
    let (_, message) = failure(&folder);
    assert!(message.contains("transfers.csv") && message.contains("number of transfers"), "{message}");
    // An amount changed in one transfer (decimal and minor units agree): the netting does not.
    let folder = t.copy("transfers-amount");
    let path = folder.join("transfers.csv");
    let text = read(&path);
    let changed = text.replacen(",USD,42.50,4250,", ",USD,42.60,4260,", 1);
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    rehash(&folder, "transfers.csv");
    let (_, message) = failure(&folder);
    assert!(message.contains("transfers.csv") && message.contains("participant 1, USD"), "{message}");

    // Two participants' statements swapped (ids exchanged between the files).
    let folder = t.copy("camt-swapped");
    let (first, second) = (folder.join("camt053-1-USD.xml"), folder.join("camt053-3-USD.xml"));
    let (a, b) = (fs::read(&first).unwrap(), fs::read(&second).unwrap());
    fs::write(&first, &b).unwrap();
    fs::write(&second, &a).unwrap();
    let (error, message) = failure(&folder);
    let digest_or_size = matches!(error, VerifyError::HashMismatch { .. } | VerifyError::SizeMismatch { .. });
    assert!(digest_or_size && message.contains("camt053-1-USD.xml"), "{message}");
    rehash(&folder, "camt053-1-USD.xml");
    rehash(&folder, "camt053-3-USD.xml");
    let (_, message) = failure(&folder);
    assert!(message.contains("camt053-1-USD.xml") && message.contains("participant id"), "{message}");
    assert!(message.contains("should be 1 but is 3"), "{message}");

    // A closing balance edited in a statement.
    let folder = t.copy("camt-balance");
    let path = folder.join("camt053-5-JPY.xml");
    let text = read(&path);
    let changed = text.replacen("<Amt Ccy=\"JPY\">980</Amt>", "<Amt Ccy=\"JPY\">990</Amt>", 1);
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    rehash(&folder, "camt053-5-JPY.xml");
    let (_, message) = failure(&folder);
    assert!(message.contains("camt053-5-JPY.xml") && message.contains("participant 5, JPY"), "{message}");

    // A settlement amount edited in an instruction.
    let folder = t.copy("pacs-amount");
    let path = folder.join("pacs009-KWD.xml");
    let text = read(&path);
    let changed = text.replacen(
        "<IntrBkSttlmAmt Ccy=\"KWD\">1.234</IntrBkSttlmAmt>",
        "<IntrBkSttlmAmt Ccy=\"KWD\">1.243</IntrBkSttlmAmt>",
        1,
    );
    assert_ne!(changed, text);
    fs::write(&path, changed).unwrap();
    rehash(&folder, "pacs009-KWD.xml");
    let (_, message) = failure(&folder);
    assert!(message.contains("pacs009-KWD.xml") && message.contains("participant 2"), "{message}");

    // Manifest control totals edited.
    let folder = t.copy("manifest-totals");
    let path = folder.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let usd = manifest["currencies"].as_array_mut().unwrap().iter_mut().find(|c| c["currency"] == "USD").unwrap();
    usd["debits_minor"] = "14751".into();
    fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let (_, message) = failure(&folder);
    assert!(
        message.contains("manifest.json") && message.contains("USD") && message.contains("debits_minor"),
        "{message}"
    );
    assert!(message.contains("14750") && message.contains("14751"), "{message}");

    // Extra and missing files.
    let folder = t.copy("extra-file");
    fs::write(folder.join("notes.txt"), "hello").unwrap();
    let (error, message) = failure(&folder);
    assert!(matches!(error, VerifyError::ExtraFile { .. }) && message.contains("notes.txt"), "{message}");
    let folder = t.copy("missing-file");
    fs::remove_file(folder.join("pacs009-JPY.xml")).unwrap();
    let (error, message) = failure(&folder);
    assert!(matches!(error, VerifyError::MissingFile { .. }) && message.contains("pacs009-JPY.xml"), "{message}");
}

/// Two windows' folders taken as two partitions' parts of one cut (the later window first,
/// so commit order starts again at the second part, as between two ledgers): the merged
/// set has every row of both, positions and openings summed, valid XML, and verifies; a
/// set that lost a part, or a part whose counts no longer add up, does not.
#[test]
fn parts_of_a_cut_merge_into_one_set_that_names_every_partition() {
    use junction_clearing::{cut_folder_name, merge_parts, MergeError, Part};
    let s = scenario();
    let config = config();
    let root = tempfile::tempdir().unwrap();
    for closed in &s.closed[..2] {
        write_window_files(&s.ledger, closed.window, root.path(), &config).unwrap();
    }
    let part =
        |name: &str, window: u64| Part { partition: name.into(), folder: root.path().join(window_folder_name(window)) };
    let partitions = ["p1".to_string(), "p2".to_string()];
    let out = tempfile::tempdir().unwrap();
    let manifest = merge_parts(7, &partitions, &[part("p1", 2), part("p2", 1)], out.path(), &config).unwrap();
    let merged = out.path().join(cut_folder_name(7));
    xmllint_folder(&merged);
    assert_eq!(verify_folder(&merged).unwrap().manifest, manifest);
    let cluster = manifest.cluster.as_ref().unwrap();
    assert_eq!((cluster.cut, cluster.partitions.clone()), (7, partitions.to_vec()));
    assert_eq!(manifest.records.transfers, (s.model.rows[0].len() + s.model.rows[1].len()) as u64);
    let data_rows = |path: &Path| read(path).lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    let mut both = data_rows(&root.path().join(window_folder_name(2)).join("transfers.csv"));
    both.extend(data_rows(&root.path().join(window_folder_name(1)).join("transfers.csv")));
    assert_eq!(data_rows(&merged.join("transfers.csv")), both);
    // Participant 1's USD net over the two windows, and its merged statement opens with
    // the sum of the parts' openings (window 2's part opened with window 1's net).
    let net = |folder: &Path| -> i128 {
        read(&folder.join("positions.csv"))
            .lines()
            .find(|line| line.starts_with("1,") && line.contains(",USD,"))
            .map(|line| line.split(',').nth(10).unwrap().parse().unwrap())
            .unwrap()
    };
    let window_1 = net(&root.path().join(window_folder_name(1)));
    let window_2 = net(&root.path().join(window_folder_name(2)));
    assert_eq!(net(&merged), window_1 + window_2);
    let statement = read(&merged.join("camt053-1-USD.xml"));
    let opening = blocks(&statement, "Bal").into_iter().find(|b| b.contains("OPBD")).unwrap().to_string();
    assert_eq!(signed_amount(&opening, "USD"), window_1, "{opening}");
    // Merging again is idempotent.
    assert_eq!(merge_parts(7, &partitions, &[part("p1", 2), part("p2", 1)], out.path(), &config).unwrap(), manifest);

    // Refusals: a partition without a part, a part of none, the same partition twice.
    let refused = merge_parts(8, &partitions, &[part("p1", 1)], out.path(), &config);
    assert!(matches!(refused, Err(MergeError::MissingPart(ref p)) if p == "p2"), "{refused:?}");
    let refused = merge_parts(8, &partitions, &[part("p1", 1), part("p3", 2)], out.path(), &config);
    assert!(matches!(refused, Err(MergeError::UnexpectedPart(_))), "{refused:?}");
    let refused = merge_parts(8, &partitions, &[part("p1", 1), part("p1", 2), part("p2", 2)], out.path(), &config);
    assert!(matches!(refused, Err(MergeError::DuplicatePart(_))), "{refused:?}");
    assert!(!out.path().join(cut_folder_name(8)).exists());

    // A merged set that lost a part, or whose parts do not add up, fails.
    let tamper = |name: &str, change: &dyn Fn(&mut serde_json::Value)| -> String {
        let copy = out.path().join(name);
        fs::create_dir_all(&copy).unwrap();
        for entry in fs::read_dir(&merged).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let path = copy.join("manifest.json");
        let mut json: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
        change(&mut json);
        fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        verify_folder(&copy).unwrap_err().to_string()
    };
    let lost = tamper("lost", &|json| {
        json["cluster"]["parts"].as_array_mut().unwrap().remove(1);
    });
    assert!(lost.contains("partition p2's part is missing"), "{lost}");
    let short = tamper("short", &|json| {
        let transfers = json["cluster"]["parts"][0]["records"]["transfers"].as_u64().unwrap();
        json["cluster"]["parts"][0]["records"]["transfers"] = (transfers - 1).into();
    });
    assert!(short.contains("transfers of the set"), "{short}");
}
