//! A short demonstration of the ledger: two issuers, an acquirer and an FX provider; card
//! purchases, a hold and its completion, a cross-currency payment as a linked group, a
//! window close with net positions, then a reopen that rebuilds the same books.
//!
//! `cargo run --release -p junction-ledger --example demo [-- DATA_DIR]`

// Amounts are written major_minor: 500_00 is 500.00 in a two-decimal currency.
#![allow(clippy::inconsistent_digit_grouping)]

use junction_ledger::*;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data/ledger-demo"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let usd = Currency::from_code("USD")?;
    let thb = Currency::from_code("THB")?;
    let names = [(1, "First Issuer Bank"), (2, "Second Issuer Bank"), (3, "Bangkok Acquirer"), (4, "FX Provider")];
    let account = |id: u128, participant: u64, currency, kind, flags| Account {
        id: AccountId(id),
        participant: ParticipantId(participant),
        currency,
        kind,
        flags,
        credit_limit: 0,
        debit_limits: junction_ledger::DebitLimits::NONE,
        user_data: 0,
    };
    let funded = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    ledger.create_accounts(&[
        account(101, 1, usd, AccountKind::Cardholder, funded),
        account(102, 2, usd, AccountKind::Cardholder, funded),
        account(190, 1, usd, AccountKind::Settlement, AccountFlags::NONE),
        account(290, 2, usd, AccountKind::Settlement, AccountFlags::NONE),
        account(301, 3, usd, AccountKind::Merchant, AccountFlags::NONE),
        account(302, 3, thb, AccountKind::Merchant, AccountFlags::NONE),
        account(401, 4, usd, AccountKind::FxLiquidity, AccountFlags::NONE),
        account(402, 4, thb, AccountKind::FxLiquidity, funded),
        account(490, 4, thb, AccountKind::Settlement, AccountFlags::NONE),
    ])?;
    println!("ledger at {}", dir.display());
    // Cardholders' deposits and the FX provider's THB liquidity (on-us: no position moves).
    ledger.commit(&[
        Transfer::new(1, 190, 101, 500_00, usd),
        Transfer::new(2, 290, 102, 300_00, usd),
        Transfer::new(3, 490, 402, 1_000_000_00, thb),
    ])?;
    let purchase = ledger.commit(&[Transfer::new(10, 101, 301, 42_50, usd)])?;
    println!("purchase 42.50 USD from card 101 at merchant 301: {:?}", purchase[0]);
    let declined = ledger.commit(&[Transfer::new(11, 102, 301, 900_00, usd)])?;
    println!("purchase 900.00 USD from card 102: {:?}", declined[0]);

    let mut hold = Transfer::new(20, 102, 301, 120_00, usd);
    hold.flags = TransferFlags::PENDING;
    hold.timeout_s = 3600;
    ledger.commit(&[hold])?;
    println!(
        "hold 120.00 USD on card 102: available now {}",
        usd.format_minor(ledger.account(AccountId(102)).map_or(0, |a| a.balances.available()))
    );
    let mut completion = Transfer::new(21, 0, 0, 95_00, usd);
    completion.flags = TransferFlags::POST_PENDING;
    completion.pending_id = TransferId(20);
    ledger.commit(&[completion])?;
    println!("completion of 95.00 USD: the remaining 25.00 USD of the hold is released");

    // A card paying a Thai merchant: USD into the FX provider, THB out of it, all or nothing.
    let mut usd_leg = Transfer::new(30, 101, 401, 10_00, usd);
    usd_leg.flags = TransferFlags::LINKED;
    let thb_leg = Transfer::new(31, 402, 302, 355_00, thb);
    let fx = ledger.commit(&[usd_leg, thb_leg])?;
    println!(
        "FX payment 10.00 USD -> 355.00 THB as one linked group: {:?}",
        fx.iter().map(|r| r.is_ok()).collect::<Vec<_>>()
    );

    let window = ledger.close_window()?;
    println!(
        "\nwindow {} closed: {} transfers; net positions (+ owed to, - owes):",
        window.window.0, window.transfer_count
    );
    for ((participant, currency), position) in &window.positions {
        let name = names.iter().find(|(id, _)| *id == participant.0).map_or("?", |(_, n)| n);
        println!(
            "  {:<20} {}  debits {:>12}  credits {:>12}  net {:>12}",
            name,
            currency,
            currency.format_minor(position.debits as i128),
            currency.format_minor(position.credits as i128),
            currency.format_minor(position.net())
        );
    }
    drop(ledger);
    let reopened = Ledger::open(&dir, LedgerOptions::default())?;
    let report = reopened.recovery();
    println!(
        "\nreopened: replayed {} journal entries ({} transfers) in {} us; card 101 balance {} USD",
        report.entries_replayed,
        report.transfers_replayed,
        report.duration_us,
        usd.format_minor(reopened.account(AccountId(101)).map_or(0, |a| a.balances.available()))
    );
    Ok(())
}
