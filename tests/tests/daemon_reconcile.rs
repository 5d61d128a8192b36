//! Clearing files that staff can reconcile, through the real daemon: a window of real
//! traffic of every kind (loadgen's purchases, authorizations, completions, reversals,
//! refunds, balance inquiries, declines and deliberate duplicates, and QR payments), its
//! files verified, every request loadgen saw answered found by RRN exactly once with its
//! amount and codes (`junction clearing reconcile` against loadgen's own `--record`), the
//! reconciliation failing and naming the row when a record is removed or an amount
//! changed, and no card number anywhere in the folder but masked in its own column.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::path::Path;
use std::process::{Command, Output};

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn reconcile(folder: &Path, records: &Path, participant: u64) -> Output {
    Command::new(binary("junction"))
        .args(["clearing", "reconcile"])
        .arg(folder)
        .arg(records)
        .args(["--participant", &participant.to_string()])
        .output()
        .unwrap()
}

/// Card numbers of the BINs this test's traffic used (loadgen's 424242, the demo's 400000),
/// anywhere in `text`: a run of 13 to 19 digits (or a window of one) that passes Luhn.
fn card_numbers_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() >= 13) {
        for start in 0..run.len() {
            for length in 13..=19 {
                let Some(candidate) = run.get(start..start + length) else { break };
                let of_ours = candidate.starts_with("424242") || candidate.starts_with("400000");
                if of_ours && junction_wire::luhn::is_valid(candidate) && (length == 16 || candidate == DEMO_PAN) {
                    found.push(candidate.to_string());
                }
            }
        }
    }
    found
}

#[test]
fn a_window_of_real_traffic_reconciles_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let records = dir.path().join("acquirer-records.csv");
    let output = Command::new(binary("loadgen"))
        .args(["--iso", &daemon.iso.to_string(), "--http", &daemon.http.to_string(), "--quiet"])
        .args(["--provision", "500", "--rate", "400", "--duration", "4s", "--connections", "2", "--verify"])
        .arg("--record")
        .arg(&records)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let folder = close_window(&daemon);
    let verified = Command::new(binary("junction")).args(["clearing", "verify"]).arg(&folder).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified));

    // Every request loadgen saw answered for good is in the acquirer's file once, with its
    // amount, currency, response code and authorization code; nothing else is.
    let recorded = csv_rows(&records);
    assert!(recorded.len() > 500, "loadgen recorded {} answers", recorded.len());
    let kinds: std::collections::BTreeSet<&str> = recorded.iter().map(|r| r["mti"].as_str()).collect();
    for mti in ["0100", "0200", "0220", "0400", "0420"] {
        assert!(kinds.contains(mti), "no {mti} in the traffic: {kinds:?}");
    }
    assert!(recorded.iter().any(|r| r["response_code"] != "00"), "the traffic has declines");
    let reconciled = reconcile(&folder, &records, DEMO_ACQUIRER);
    assert!(reconciled.status.success(), "{}", text(&reconciled));
    let report = String::from_utf8_lossy(&reconciled.stdout).into_owned();
    assert!(report.contains(&format!("matched: {}", recorded.len())), "{report}");
    assert!(report.contains("RECONCILED"), "{report}");
    let acquirer_rows = csv_rows(&folder.join(format!("transactions-{DEMO_ACQUIRER}.csv")));
    for record in &recorded {
        let found: Vec<_> = acquirer_rows.iter().filter(|row| row["rrn"] == record["rrn"]).collect();
        assert_eq!(found.len(), 1, "rrn {} in the acquirer's file", record["rrn"]);
        let row = found[0];
        assert_eq!(row["mti"], record["mti"]);
        assert_eq!(row["response_code"], record["response_code"]);
        assert_eq!(row["channel"], "iso8583");
        assert_eq!(row["acquirer_institution"], ACQUIRER_INSTITUTION);
        assert!(row["terminal_id"].len() == 8 && !row["merchant_id"].is_empty(), "{row:?}");
        assert_eq!(row["mcc"].len(), 4, "loadgen sends field 18: {row:?}");
        if record["response_code"] == "00" {
            assert_eq!(row["auth_code"], record["auth_code"]);
            assert!(!row["issuer_participant"].is_empty(), "{row:?}");
        }
        // Completions and reversals name what they complete or reverse.
        if ["0220", "0400", "0420"].contains(&record["mti"].as_str()) && record["response_code"] == "00" {
            let original = &row["original_rrn"];
            assert_eq!(original.len(), 12, "{row:?}");
            assert!(acquirer_rows.iter().any(|r| &r["rrn"] == original && r["response_code"] == "00"), "{row:?}");
        }
    }
    // No card number anywhere but masked, in its own column.
    let all_rows = csv_rows(&folder.join("transactions.csv"));
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read_to_string(&path).unwrap();
        let found = card_numbers_in(&content);
        assert!(found.is_empty(), "{} holds card numbers in clear: {found:?}", path.display());
    }
    for row in all_rows.iter().filter(|row| row["channel"] == "iso8583") {
        let card = &row["card_masked"];
        assert!(card.len() == 16 && card[6..12] == *"******", "card_masked {card:?}");
    }

    // One record removed: the reconciliation fails and names the row it lacks.
    let lines: Vec<String> = std::fs::read_to_string(&records).unwrap().lines().map(str::to_string).collect();
    let removed = &recorded[recorded.len() / 2];
    let without: Vec<&String> =
        lines.iter().filter(|line| !line.starts_with(&format!("{},", removed["rrn"]))).collect();
    assert_eq!(without.len(), lines.len() - 1);
    let missing = dir.path().join("missing.csv");
    std::fs::write(&missing, without.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let output = reconcile(&folder, &missing, DEMO_ACQUIRER);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(report.contains("in the switch's files, not in your records: 1"), "{report}");
    assert!(report.contains(&format!("rrn {}", removed["rrn"])) && report.contains("DIFFERENCES FOUND"), "{report}");

    // One amount changed: it is named as different.
    let changed_rrn =
        recorded.iter().find(|r| r["response_code"] == "00" && r["amount_minor"] != "0").unwrap()["rrn"].clone();
    let changed: String = lines
        .iter()
        .map(|line| {
            let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
            if fields[0] == changed_rrn {
                fields[3] = (fields[3].parse::<u64>().unwrap() + 1).to_string();
            }
            fields.join(",") + "\n"
        })
        .collect();
    let different = dir.path().join("different.csv");
    std::fs::write(&different, changed).unwrap();
    let output = reconcile(&folder, &different, DEMO_ACQUIRER);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(report.contains("different: 1") && report.contains(&format!("rrn {changed_rrn}")), "{report}");

    // QR payments by the demo wallet (the next window: the acquirer's records above are
    // its card traffic only) are in the files with their scheme, merchant and wallet.
    let agent = http_agent();
    let merchant = usd_merchant_qr();
    let mut payment_ids = Vec::new();
    for n in 0..5u64 {
        let (status, body) =
            wallet_pays(&agent, daemon.http, &merchant, &format!("reconcile-qr-{n}"), 150 + n).unwrap();
        assert_eq!(status, 200, "{body}");
        payment_ids.push(body["payment_id"].as_str().unwrap().to_string());
    }
    let folder = close_window(&daemon);
    let verified = Command::new(binary("junction")).args(["clearing", "verify"]).arg(&folder).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified));
    let all_rows = csv_rows(&folder.join("transactions.csv"));
    let qr: Vec<_> = all_rows.iter().filter(|row| row["channel"] == "qr").collect();
    assert_eq!(qr.len(), payment_ids.len());
    for (row, (n, id)) in qr.iter().zip(payment_ids.iter().enumerate()) {
        assert_eq!(row["rrn"], id[..12], "the RRN of a QR payment is its payment id's first 12 hex digits");
        assert_eq!(row["amount"], format!("1.{}", 50 + n));
        assert_eq!(row["wallet_participant"], DEMO_WALLET.to_string());
        assert_eq!(row["acquirer_participant"], DEMO_ACQUIRER.to_string());
        assert_eq!(row["merchant_id"], "com.junction.demo", "the merchant's identifier as the switch routes on it");
        assert!(!row["qr_scheme"].is_empty() && row["response_code"] == "00", "{row:?}");
    }
    let wallet_file = std::fs::read_to_string(folder.join(format!("transactions-{DEMO_WALLET}.csv"))).unwrap();
    assert_eq!(wallet_file.lines().count(), 1 + payment_ids.len());
}
