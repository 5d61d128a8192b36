//! The ISO 20022 link between two instant-payment systems, end to end: a real `junctiond`,
//! and both systems played by `tests/interop/iso20022_peer.py`, which builds every message
//! from the official schemas with `xmlschema` (not with Junction's code), validates every
//! message Junction answers or pushes with it, signs its own requests and checks the
//! signatures of Junction's pushes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use junction_tests::cluster::{partition_config, NatsCluster, Node};
use junction_tests::{assert_clearing_verifies, close_window, csv_rows, demo_config, position_net, python, Daemon};
use junctiond::config::Config;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const CNY_SYSTEM: u64 = 13;
const HKD_SYSTEM: u64 = 14;
const CNY_KEY: &str = "dddddddddddddddddddddddddddddddd";
const HKD_KEY: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
const CNY_BIC: &str = "MFPSCNSHXXX";
const HKD_BIC: &str = "HFPSHKHHXXX";
/// The CNY system's net debit cap in the test: CNY 160,000.00.
const CNY_CAP: u64 = 16_000_000;

/// Both payment systems, played by the Python peer.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    ports: Value,
}

impl Peer {
    fn start() -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/iso20022_peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--system", &format!("{CNY_SYSTEM}:{CNY_KEY}:{CNY_BIC}")])
            .args(["--system", &format!("{HKD_SYSTEM}:{HKD_KEY}:{HKD_BIC}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the ISO 20022 peer (python3 with xmlschema: scripts/install-deps.sh)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("the peer said {line:?}"));
        Peer { child, stdin, stdout, ports: ready["ready"].clone() }
    }

    fn endpoint(&self, system: u64) -> String {
        format!("http://127.0.0.1:{}/iso20022", self.ports[system.to_string()])
    }

    fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("the peer answered {line:?}"))
    }

    fn send(&mut self, from: u64, kind: &str, fields: Value) -> Value {
        self.call(json!({"cmd": "send", "as": from, "kind": kind, "fields": fields}))
    }

    fn raw(&mut self, from: u64, kind: &str, body: &str) -> Value {
        self.call(json!({"cmd": "raw", "as": from, "kind": kind, "body": body}))
    }

    fn mode(&mut self, system: u64, credit: &str, recall: &str) {
        self.call(json!({"cmd": "mode", "system": system, "credit": credit, "recall": recall}));
    }

    /// What the system's endpoint was sent, of one kind.
    fn received(&mut self, system: u64, kind: &str) -> Vec<Value> {
        let all = self.call(json!({"cmd": "received", "system": system}));
        all["received"].as_array().unwrap().iter().filter(|m| m["kind"] == kind).cloned().collect()
    }

    /// Waits for the system's endpoint to have been sent `count` messages of a kind.
    fn wait_received(&mut self, system: u64, kind: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let received = self.received(system, kind);
            if received.len() >= count {
                return received;
            }
            assert!(Instant::now() < deadline, "system {system} got {} {kind}, not {count}", received.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Peer {
    /// Waits for the status report of one credit pushed to its sender.
    fn wait_notice(&mut self, system: u64, e2e: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .received(system, "pacs.002")
                .into_iter()
                .find(|m| m["fields"]["FIToFIPmtStsRpt/TxInfAndSts/OrgnlEndToEndId"] == e2e);
            if let Some(notice) = found {
                return notice;
            }
            assert!(Instant::now() < deadline, "system {system} was never told the status of {e2e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pacs.008 from the CNY system: `amount` in `ccy`, to a proxy.
fn credit(msg_id: &str, e2e: &str, amount: &str, ccy: &str, proxy: &str, debtor: &str) -> Value {
    json!({
        "msg_id": msg_id, "e2e": e2e, "tx_id": format!("TX-{e2e}"), "amount": amount, "ccy": ccy,
        "sender_bic": CNY_BIC, "proxy": proxy, "proxy_type": "MBNO", "debtor_account": debtor,
        "remittance": "family support",
    })
}

const HK_MOBILE: &str = "+852-61234567";

/// The status an answer carries: (HTTP status, TxSts, reason), after checking the body is
/// a pacs.002 that validates (the peer validated it against the official schema).
fn status(answer: &Value) -> (u64, String, String) {
    assert_eq!(answer["valid"], true, "the answer did not validate: {answer}");
    assert_eq!(answer["kind"], "pacs.002", "{answer}");
    let fields = &answer["fields"];
    let text = |path: &str| fields[path].as_str().unwrap_or_default().to_string();
    (
        answer["http"].as_u64().unwrap(),
        text("FIToFIPmtStsRpt/TxInfAndSts/TxSts"),
        text("FIToFIPmtStsRpt/TxInfAndSts/StsRsnInf/Rsn/Cd"),
    )
}

fn field(answer: &Value, path: &str) -> String {
    answer["fields"][path].as_str().unwrap_or_default().to_string()
}

fn config(peer: &Peer) -> Config {
    let mut config = demo_config();
    for p in &mut config.participants {
        if p.id == CNY_SYSTEM {
            p.endpoint = Some(peer.endpoint(CNY_SYSTEM));
            p.net_debit_caps.insert("CNY".into(), CNY_CAP);
        }
        if p.id == HKD_SYSTEM {
            p.endpoint = Some(peer.endpoint(HKD_SYSTEM));
        }
    }
    let ct = &mut config.credit_transfers;
    ct.answer_within_ms = 3_000;
    ct.delivery_timeout_ms = 500;
    ct.retry_every_ms = 300;
    ct.give_up_after_ms = 8_000;
    for limit in &mut ct.limits {
        if limit.currency == "HKD" {
            // A small yearly limit for HKD debtors: HKD 300.00.
            limit.per_debtor_day_max = 0;
            limit.per_debtor_year_max = 30_000;
        }
    }
    config
}

#[test]
fn credits_between_two_payment_systems() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut peer = Peer::start();
    let config = config(&peer);
    let mut daemon = Daemon::start_with_config(&data, &config);
    peer.call(json!({"cmd": "switch", "url": format!("http://{}", daemon.http)}));

    // 1. CNY 100.00 to a Hong Kong mobile number: accepted, converted, pushed, settled.
    let first = peer.send(CNY_SYSTEM, "pacs.008", credit("M-1", "E2E-1", "100.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&first), (200, "ACSC".into(), String::new()), "{first}");
    let reference = field(&first, "FIToFIPmtStsRpt/TxInfAndSts/ClrSysRef");
    assert!(reference.starts_with('J') && reference.len() == 33, "{reference}");
    assert_eq!(field(&first, "FIToFIPmtStsRpt/TxInfAndSts/OrgnlEndToEndId"), "E2E-1");
    assert_eq!(field(&first, "FIToFIPmtStsRpt/TxInfAndSts/OrgnlTxRef/IntrBkSttlmAmt"), "100.00");
    let pushed = peer.received(HKD_SYSTEM, "pacs.008");
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["valid"], true, "Junction's pacs.008 did not validate: {}", pushed[0]);
    assert_eq!(pushed[0]["signature_ok"], true, "Junction's push is not signed with the system's key");
    let tx = "FIToFICstmrCdtTrf/CdtTrfTxInf";
    let pushed_field =
        |message: &Value, path: &str| message["fields"][format!("{tx}/{path}")].as_str().unwrap().to_string();
    // 100.00 CNY at 1.0850 HKD per CNY less the provider's 0.20%: 108.2834..., rounded down.
    assert_eq!(pushed_field(&pushed[0], "IntrBkSttlmAmt"), "108.28");
    assert_eq!(pushed_field(&pushed[0], "IntrBkSttlmAmt@Ccy"), "HKD");
    assert_eq!(pushed_field(&pushed[0], "InstdAmt"), "100.00");
    // XchgRate as ISO 20022 states it: what the creditor gets per unit sent, all in.
    assert_eq!(pushed_field(&pushed[0], "XchgRate"), "1.0828343313");
    assert_eq!(pushed_field(&pushed[0], "CdtrAcct/Id/Othr/Id"), "HK-012-345678-001");
    assert_eq!(pushed_field(&pushed[0], "PmtId/EndToEndId"), "E2E-1");
    assert_eq!(pushed_field(&pushed[0], "PmtId/TxId"), reference);

    // 2. The same message again (a new MsgId): the same answer, nothing pushed again.
    let again = peer.send(CNY_SYSTEM, "pacs.008", credit("M-1b", "E2E-1", "100.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&again).1, "ACSC");
    assert_eq!(field(&again, "FIToFIPmtStsRpt/TxInfAndSts/ClrSysRef"), reference);
    assert_eq!(peer.received(HKD_SYSTEM, "pacs.008").len(), 1);
    // The same ids with another amount: a duplicate, refused, nothing moved.
    let dupl = peer.send(CNY_SYSTEM, "pacs.008", credit("M-1c", "E2E-1", "999.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&dupl), (200, "RJCT".into(), "DUPL".into()));

    // 3. The other way, fixing what the creditor receives: CNY 50.00 to an email, paid in HKD.
    let to_cny = json!({
        "msg_id": "H-1", "e2e": "HK-E2E-1", "tx_id": "HK-TX-1", "amount": "50.00", "ccy": "CNY",
        "sender_bic": HKD_BIC, "proxy": "li.na@example.cn", "proxy_type": "EMAL", "debtor_account": "HK-D-1",
    });
    let answer = peer.send(HKD_SYSTEM, "pacs.008", to_cny);
    assert_eq!(status(&answer).1, "ACSC", "{answer}");
    // 50.00 CNY costs 50.00 × 1.0850 × 1.002 = 54.35... HKD, rounded up: 54.36.
    assert_eq!(field(&answer, "FIToFIPmtStsRpt/TxInfAndSts/OrgnlTxRef/IntrBkSttlmAmt"), "54.36");
    let to_cny_pushed = peer.received(CNY_SYSTEM, "pacs.008");
    assert_eq!(to_cny_pushed.len(), 1);
    assert_eq!(pushed_field(&to_cny_pushed[0], "IntrBkSttlmAmt"), "50.00");
    assert_eq!(pushed_field(&to_cny_pushed[0], "CdtrAcct/Id/Othr/Id"), "6222020200112233");

    // 4. Each reason code, with a message that provokes it; nothing is pushed for any.
    let before = peer.received(HKD_SYSTEM, "pacs.008").len();
    let cases = [
        (credit("M-2", "E2E-2", "10.00", "CNY", "+852-00000000", "D-1"), "AC01"),
        (
            json!({"msg_id": "M-3", "e2e": "E2E-3", "tx_id": "TX-3", "amount": "10.00", "ccy": "CNY",
                   "sender_bic": CNY_BIC, "account": "123", "bic": "NOSUCHBKXXX", "debtor_account": "D-1"}),
            "RC01",
        ),
        (credit("M-4", "E2E-4", "10.00", "USD", HK_MOBILE, "D-1"), "AM03"),
        (credit("M-5", "E2E-5", "50000.01", "CNY", HK_MOBILE, "D-1"), "AM02"),
        (credit("M-6", "E2E-6", "10.001", "CNY", HK_MOBILE, "D-1"), "AM12"),
        (
            json!({"msg_id": "M-7", "e2e": "E2E-7", "tx_id": "TX-7", "amount": "10.00", "ccy": "CNY",
                   "sender_bic": CNY_BIC, "proxy": HK_MOBILE, "proxy_type": "MBNO"}),
            "RR01",
        ),
    ];
    for (fields, code) in cases {
        let answer = peer.send(CNY_SYSTEM, "pacs.008", fields);
        assert_eq!(status(&answer), (200, "RJCT".into(), code.into()), "{answer}");
        // A resend gets the same refusal.
        let resent = peer.raw(CNY_SYSTEM, "pacs.008", answer["sent"].as_str().unwrap());
        assert_eq!(status(&resent).2, code);
    }
    // The debtor's day: CNY 100,000.00 (with 100.00 sent already).
    for (i, expected) in [("a", "ACSC"), ("b", "ACSC"), ("c", "RJCT")] {
        let answer = peer.send(
            CNY_SYSTEM,
            "pacs.008",
            credit(&format!("M-8{i}"), &format!("E2E-8{i}"), "49950.00", "CNY", HK_MOBILE, "D-1"),
        );
        assert_eq!(status(&answer).1, expected, "{answer}");
        if expected == "RJCT" {
            assert_eq!(status(&answer).2, "AM02");
            assert!(field(&answer, "FIToFIPmtStsRpt/TxInfAndSts/StsRsnInf/AddtlInf").contains("per day"));
        }
    }
    // The CNY system's net debit cap (CNY 160,000.00; 100,000.00 out already).
    let answer = peer.send(CNY_SYSTEM, "pacs.008", credit("M-9a", "E2E-9a", "45000.00", "CNY", HK_MOBILE, "D-2"));
    assert_eq!(status(&answer).1, "ACSC", "{answer}");
    let answer = peer.send(CNY_SYSTEM, "pacs.008", credit("M-9b", "E2E-9b", "45000.00", "CNY", HK_MOBILE, "D-3"));
    assert_eq!(status(&answer), (200, "RJCT".into(), "AM04".into()), "{answer}");
    // The HKD debtors' year: HKD 300.00 (54.36 sent already).
    let hk = |e2e: &str, amount: &str| {
        json!({"msg_id": format!("H-{e2e}"), "e2e": e2e, "tx_id": e2e, "amount": amount, "ccy": "HKD",
               "sender_bic": HKD_BIC, "proxy": "li.na@example.cn", "proxy_type": "EMAL", "debtor_account": "HK-D-1"})
    };
    assert_eq!(status(&peer.send(HKD_SYSTEM, "pacs.008", hk("HK-2", "245.64"))).1, "ACSC");
    let over = peer.send(HKD_SYSTEM, "pacs.008", hk("HK-3", "1.00"));
    assert_eq!(status(&over).2, "AM02");
    assert!(field(&over, "FIToFIPmtStsRpt/TxInfAndSts/StsRsnInf/AddtlInf").contains("per year"));
    assert_eq!(peer.received(HKD_SYSTEM, "pacs.008").len(), before + 3, "only the accepted credits were pushed");

    // 5. Messages that are not a credit: FF01 (HTTP 400), never booked.
    let sample = first["sent"].as_str().unwrap().to_string();
    let depth = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
    let hostile = [
        "this is not XML".to_string(),
        sample.replace("<Document", "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n<Document"),
        sample.replace("pacs.008.001.09", "pacs.008.001.08"),
        sample.replace("<ChrgBr>SLEV</ChrgBr>", &"<ChrgBr>SLEV</ChrgBr>".repeat(2)),
        sample.replace("family support", &depth),
        sample.replace("family support", &"x".repeat(100_000)),
    ];
    for body in &hostile {
        let answer = peer.raw(CNY_SYSTEM, "pacs.008", body);
        assert_eq!(status(&answer), (400, "RJCT".into(), "FF01".into()), "{answer}");
    }
    let two = json!({"msg_id": "M-10", "e2e": "E2E-10", "tx_id": "TX-10", "amount": "1.00", "ccy": "CNY",
                     "sender_bic": CNY_BIC, "proxy": HK_MOBILE, "proxy_type": "MBNO", "debtor_account": "D-9",
                     "nb_of_txs": 2, "copies": 2});
    assert_eq!(status(&peer.send(CNY_SYSTEM, "pacs.008", two)).2, "FF01");
    // A wallet may not send credit transfers; an unsigned message is unauthorized.
    let agent = junction_tests::http_agent();
    let mut response = agent
        .post(&daemon.url("/v1/iso20022/pacs.008"))
        .header("content-type", "application/xml")
        .send(sample.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "{}", response.body_mut().read_to_string().unwrap());
    assert_eq!(peer.received(HKD_SYSTEM, "pacs.008").len(), before + 3);

    // 6. The receiving system refuses: the money comes back, the sender is told RJCT.
    peer.mode(HKD_SYSTEM, "reject:AC04", "agree");
    let refused = peer.send(CNY_SYSTEM, "pacs.008", credit("M-11", "E2E-11", "20.00", "CNY", HK_MOBILE, "D-4"));
    assert_eq!(status(&refused), (200, "RJCT".into(), "AC04".into()), "{refused}");

    // 7. The receiving system down, then back: pending, then settled, and the sender told.
    peer.mode(HKD_SYSTEM, "down", "agree");
    let pending = peer.send(CNY_SYSTEM, "pacs.008", credit("M-12", "E2E-12", "30.00", "CNY", HK_MOBILE, "D-5"));
    assert_eq!(status(&pending).1, "PDNG", "{pending}");
    peer.mode(HKD_SYSTEM, "accept", "agree");
    let notice = peer.wait_notice(CNY_SYSTEM, "E2E-12");
    assert_eq!(notice["valid"], true, "{notice}");
    assert_eq!(notice["signature_ok"], true);
    assert_eq!(notice["fields"]["FIToFIPmtStsRpt/TxInfAndSts/TxSts"], "ACSC");
    let resent = peer.send(CNY_SYSTEM, "pacs.008", credit("M-12b", "E2E-12", "30.00", "CNY", HK_MOBILE, "D-5"));
    assert_eq!(status(&resent).1, "ACSC");

    // 8. Down for good: after give_up_after_ms the money is returned, AB05.
    peer.mode(HKD_SYSTEM, "down", "agree");
    let lost = peer.send(CNY_SYSTEM, "pacs.008", credit("M-13", "E2E-13", "40.00", "CNY", HK_MOBILE, "D-6"));
    assert_eq!(status(&lost).1, "PDNG");
    let notice = peer.wait_notice(CNY_SYSTEM, "E2E-13");
    assert_eq!(notice["fields"]["FIToFIPmtStsRpt/TxInfAndSts/TxSts"], "RJCT");
    assert_eq!(notice["fields"]["FIToFIPmtStsRpt/TxInfAndSts/StsRsnInf/Rsn/Cd"], "AB05");
    peer.mode(HKD_SYSTEM, "accept", "agree");

    // 9. A return of the first credit by the receiving system (pacs.004).
    let wrong =
        json!({"msg_id": "R-0", "orgnl_e2e": "E2E-1", "orgnl_tx_id": reference, "amount": "100.00", "ccy": "HKD"});
    assert_eq!(status(&peer.send(HKD_SYSTEM, "pacs.004", wrong)).2, "AM09");
    let unknown = json!({"msg_id": "R-00", "orgnl_e2e": "E2E-1", "orgnl_tx_id": format!("J{}", "0".repeat(32)), "amount": "108.28", "ccy": "HKD"});
    assert_eq!(status(&peer.send(HKD_SYSTEM, "pacs.004", unknown)).2, "NOOR");
    let give_back = json!({"msg_id": "R-1", "orgnl_e2e": "E2E-1", "orgnl_tx_id": reference, "amount": "108.28", "ccy": "HKD", "reason": "AC04"});
    let taken = peer.send(HKD_SYSTEM, "pacs.004", give_back);
    assert_eq!(status(&taken).1, "ACSC", "{taken}");
    let returns = peer.wait_received(CNY_SYSTEM, "pacs.004", 1);
    assert_eq!(returns[0]["valid"], true, "{}", returns[0]);
    assert_eq!(returns[0]["fields"]["PmtRtr/TxInf/OrgnlEndToEndId"], "E2E-1");
    assert_eq!(returns[0]["fields"]["PmtRtr/TxInf/RtrdIntrBkSttlmAmt"], "100.00");
    assert_eq!(returns[0]["fields"]["PmtRtr/TxInf/RtrdIntrBkSttlmAmt@Ccy"], "CNY");

    // 10. A recall (camt.056) the receiving system agrees to, and one it refuses.
    let recalled = peer.send(CNY_SYSTEM, "pacs.008", credit("M-14", "E2E-14", "60.00", "CNY", HK_MOBILE, "D-7"));
    assert_eq!(status(&recalled).1, "ACSC");
    let recall = |case: &str, e2e: &str| {
        json!({"case_id": case, "assigner_bic": CNY_BIC, "assignee_bic": "JNCTSGSGXXX",
               "orgnl_e2e": e2e, "orgnl_tx_id": format!("TX-{e2e}"), "reason": "DUPL"})
    };
    let answer = peer.send(CNY_SYSTEM, "camt.056", recall("C-1", "E2E-14"));
    assert_eq!(answer["http"], 200, "{answer}");
    assert_eq!(answer["kind"], "pacs.004", "{answer}");
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(field(&answer, "PmtRtr/TxInf/RtrdIntrBkSttlmAmt"), "60.00");
    let forwarded = peer.received(HKD_SYSTEM, "camt.056");
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0]["valid"], true, "{}", forwarded[0]);
    peer.mode(HKD_SYSTEM, "accept", "refuse");
    let kept = peer.send(CNY_SYSTEM, "pacs.008", credit("M-15", "E2E-15", "70.00", "CNY", HK_MOBILE, "D-8"));
    assert_eq!(status(&kept).1, "ACSC");
    let refused = peer.send(CNY_SYSTEM, "camt.056", recall("C-2", "E2E-15"));
    assert_eq!(refused["http"], 409, "{refused}");
    assert_eq!(refused["json"]["error"]["code"], "recall_refused");

    // 11. A quote locks the rate: the credit that names it is booked at the quoted amounts
    // even after the rate moved; once used, or for another amount, it names nothing.
    peer.mode(HKD_SYSTEM, "accept", "agree");
    let quote = peer.call(json!({"cmd": "json", "as": CNY_SYSTEM, "path": "/v1/iso20022/quotes",
                                 "body": {"creditor_currency": "HKD", "amount": "100.00", "currency": "CNY"}}));
    assert_eq!(quote["http"], 200, "{quote}");
    assert_eq!(quote["json"]["credit"]["amount"], "108.28");
    let rate = quote["json"]["xchg_rate"].as_str().unwrap().to_string();
    let moved = junction_tests::http_agent()
        .post(&daemon.url("/v1/admin/fx/rates"))
        .header("authorization", &format!("Bearer {}", junction_tests::ADMIN_TOKEN))
        .header("content-type", "application/json")
        .send(
            json!({"rates": [{"provider": 6, "base": "CNY", "quote": "HKD", "rate": "1.2000", "spread_bps": 20}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(moved.status().as_u16(), 200);
    let mut quoted = credit("M-Q1", "E2E-Q1", "100.00", "CNY", HK_MOBILE, "D-Q");
    quoted["xchg_rate"] = json!(rate);
    assert_eq!(status(&peer.send(CNY_SYSTEM, "pacs.008", quoted.clone())).1, "ACSC");
    let last = |peer: &mut Peer| peer.received(HKD_SYSTEM, "pacs.008").last().cloned().unwrap();
    assert_eq!(pushed_field(&last(&mut peer), "IntrBkSttlmAmt"), "108.28", "the quoted amount, not the new rate's");
    quoted["e2e"] = json!("E2E-Q2");
    quoted["tx_id"] = json!("TX-E2E-Q2");
    assert_eq!(status(&peer.send(CNY_SYSTEM, "pacs.008", quoted)).2, "NARR", "a quote is used once");
    let now_rate = peer.send(CNY_SYSTEM, "pacs.008", credit("M-Q3", "E2E-Q3", "100.00", "CNY", HK_MOBILE, "D-Q"));
    assert_eq!(status(&now_rate).1, "ACSC");
    // 100.00 CNY at 1.2000 less 0.20%: 119.760..., rounded down.
    assert_eq!(pushed_field(&last(&mut peer), "IntrBkSttlmAmt"), "119.76");

    // 12. kill -9 with a credit still pending: after the restart it is finished, and every
    // answer and the debtors' usage are as they were.
    peer.mode(HKD_SYSTEM, "down", "agree");
    let interrupted = peer.send(CNY_SYSTEM, "pacs.008", credit("M-16", "E2E-16", "80.00", "CNY", HK_MOBILE, "D-9"));
    assert_eq!(status(&interrupted).1, "PDNG");
    daemon.kill9();
    peer.mode(HKD_SYSTEM, "accept", "agree");
    let mut daemon = Daemon::start_with_config(&data, &config);
    peer.call(json!({"cmd": "switch", "url": format!("http://{}", daemon.http)}));
    let notice = peer.wait_notice(CNY_SYSTEM, "E2E-16");
    assert_eq!(notice["fields"]["FIToFIPmtStsRpt/TxInfAndSts/TxSts"], "ACSC", "after the restart: {notice}");
    // The notices are only those of the credits answered "pending".
    let told: Vec<Value> = peer
        .received(CNY_SYSTEM, "pacs.002")
        .iter()
        .map(|m| m["fields"]["FIToFIPmtStsRpt/TxInfAndSts/OrgnlEndToEndId"].clone())
        .collect();
    assert_eq!(told, vec![json!("E2E-12"), json!("E2E-13"), json!("E2E-16")]);
    let after = peer.send(CNY_SYSTEM, "pacs.008", credit("M-1d", "E2E-1", "100.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&after), (200, "RJCT".into(), "AC04".into()), "the returned credit's answer after the restart");
    let after = peer.send(CNY_SYSTEM, "pacs.008", credit("M-8d", "E2E-8d", "1.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&after).2, "AM02", "the debtor's day is remembered across the restart");

    // 13. The window's files: both systems' nets, every step of the credits, verified.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let net = |participant: u64, currency: &str| position_net(&folder, participant, currency);
    // The CNY system sent 100.00 (returned), 99,900.00, 45,000.00, 20.00 (refused and
    // returned), 30.00, 40.00 (returned), 60.00 (recalled), 70.00, 100.00, 100.00 and 80.00:
    // 145,280.00 out, and received what the HKD system's credits were worth in CNY.
    let minor = |text: &str| -> i64 { text.replace('.', "").parse().unwrap() };
    let received: i64 =
        peer.received(CNY_SYSTEM, "pacs.008").iter().map(|m| minor(&pushed_field(m, "IntrBkSttlmAmt"))).sum();
    assert_eq!(net(CNY_SYSTEM, "CNY"), -14_528_000 + received);
    let transactions = csv_rows(&folder.join("transactions.csv"));
    let credit_rows: Vec<_> = transactions.iter().filter(|row| row["channel"] == "credit_transfer").collect();
    assert!(credit_rows.iter().any(|row| row["merchant_id"] == "E2E-1" && row["original_rrn"].is_empty()));
    assert!(
        credit_rows.iter().any(|row| row["merchant_id"] == "E2E-1" && !row["original_rrn"].is_empty()),
        "the return's row"
    );
    let _ = daemon.terminate();
}

/// A partitioned switch (3 NATS servers, partitions a and b): the CNY system is placed in
/// b, the HKD system in a. The CNY system's credit sent through a's door is booked in b;
/// its resend through b's door gets the same answer and pushes nothing again; the HKD
/// system's return of it through a's door (a never saw the credit) is booked in b, and
/// the CNY system gets its pacs.004.
#[test]
fn a_payment_systems_credits_are_booked_in_its_partition_through_any_door() {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = Peer::start();
    let nats = NatsCluster::start(&dir.path().join("nats"));
    let seed = [(CNY_SYSTEM, "b"), (HKD_SYSTEM, "a")];
    let mut a = Node::new(dir.path(), "a", &partition_config(config(&peer), &nats, "a", &seed));
    let mut b = Node::new(dir.path(), "b", &partition_config(config(&peer), &nats, "b", &seed));
    a.start(false);
    b.start(false);
    a.wait_primary(Duration::from_secs(60));
    b.wait_primary(Duration::from_secs(60));
    let through = |peer: &mut Peer, node: &Node| {
        peer.call(json!({"cmd": "switch", "url": format!("http://{}", node.http)}));
    };
    let credits_booked = |node: &Node| {
        let positions: Value = ureq::get(&format!("http://{}/v1/admin/positions", node.http))
            .header("authorization", &format!("Bearer {}", junction_tests::ADMIN_TOKEN))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let rows = positions["positions"].as_array().unwrap().clone();
        rows.iter()
            .filter(|row| row["participant"] == CNY_SYSTEM)
            .map(|row| row["debit_count"].as_u64().unwrap())
            .sum::<u64>()
    };

    through(&mut peer, &a);
    let first = peer.send(CNY_SYSTEM, "pacs.008", credit("P-1", "P-E2E-1", "100.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&first), (200, "ACSC".into(), String::new()), "{first}");
    let reference = field(&first, "FIToFIPmtStsRpt/TxInfAndSts/ClrSysRef");
    assert_eq!((credits_booked(&a), credits_booked(&b)), (0, 1), "booked once, in b");

    through(&mut peer, &b);
    let again = peer.send(CNY_SYSTEM, "pacs.008", credit("P-1b", "P-E2E-1", "100.00", "CNY", HK_MOBILE, "D-1"));
    assert_eq!(status(&again).1, "ACSC", "{again}");
    assert_eq!(field(&again, "FIToFIPmtStsRpt/TxInfAndSts/ClrSysRef"), reference);
    assert_eq!(peer.received(HKD_SYSTEM, "pacs.008").len(), 1, "pushed once");
    assert_eq!((credits_booked(&a), credits_booked(&b)), (0, 1), "still once");

    through(&mut peer, &a);
    let unknown = json!({"msg_id": "PR-0", "orgnl_e2e": "P-E2E-1", "orgnl_tx_id": format!("J{}", "0".repeat(32)), "amount": "108.28", "ccy": "HKD"});
    assert_eq!(status(&peer.send(HKD_SYSTEM, "pacs.004", unknown)).2, "NOOR", "no partition knows it");
    let give_back = json!({"msg_id": "PR-1", "orgnl_e2e": "P-E2E-1", "orgnl_tx_id": reference, "amount": "108.28", "ccy": "HKD", "reason": "AC04"});
    let taken = peer.send(HKD_SYSTEM, "pacs.004", give_back);
    assert_eq!(status(&taken).1, "ACSC", "the return, through the door that never saw the credit: {taken}");
    let returns = peer.wait_received(CNY_SYSTEM, "pacs.004", 1);
    assert_eq!(returns[0]["fields"]["PmtRtr/TxInf/OrgnlEndToEndId"], "P-E2E-1");
    assert_eq!(returns[0]["fields"]["PmtRtr/TxInf/RtrdIntrBkSttlmAmt"], "100.00");
}
