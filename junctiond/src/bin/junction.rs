//! `junction`: the operator's command line. Talks to a running `junctiond` over its admin
//! HTTP endpoint (status, participants, positions, windows), and checks clearing folders
//! on its own, without the daemon.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "junction", version = junctiond::VERSION, about = "Junction operator CLI")]
struct Cli {
    /// The daemon's HTTP address.
    #[arg(long, env = "JUNCTION_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token (or, for views only, the read token).
    #[arg(long, env = "JUNCTION_ADMIN_TOKEN", default_value = "demo-admin-token-change-me")]
    token: String,
    /// PEM file of the CA that signed the daemon's certificate, for an https:// URL of a
    /// switch with its own CA (by default the system's roots are trusted).
    #[arg(long, env = "JUNCTION_CA_FILE", global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// Print the daemon's JSON answer instead of a table (for scripts); with `clearing
    /// verify`, the verdict as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shards, queues, connections, answers by code, ledger state.
    Status,
    /// Participants with their caps and headroom.
    Participants,
    /// Net positions of a window (default: the open one).
    Positions {
        #[arg(long)]
        window: Option<u64>,
    },
    /// Settlement windows.
    Window {
        #[command(subcommand)]
        command: WindowCommand,
    },
    /// Clearing files: verify, show and list window folders (no daemon needed).
    Clearing {
        #[command(subcommand)]
        command: ClearingCommand,
    },
    /// A partitioned switch: its partition map, moving an issuer, a cut-off of every
    /// partition at once.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The BIN table: which issuer's host authorizes which cards.
    Bins {
        #[command(subcommand)]
        command: Option<BinCommand>,
    },
    /// Issuers' hosts signed on (their links), and advices not yet acknowledged.
    Links,
    /// Which acquirer takes which merchant QR: show the table, or replace it.
    QrRoutes {
        #[command(subcommand)]
        command: Option<QrRoutesCommand>,
    },
    /// Pay a merchant's QR code as a wallet (a signed QR API request): to try the flows,
    /// inbound and outbound, by hand.
    Qr {
        #[command(subcommand)]
        command: QrCommand,
    },
    /// The fee schedule (interchange, the switch's fees): show it, or replace it.
    Fees {
        #[command(subcommand)]
        command: Option<FeesCommand>,
    },
    /// Cardholder accounts: show, provision, block, unblock, close.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Provision cards from a file (card numbers never go on a command line, where shell
    /// histories and process lists would keep them).
    Cards {
        #[command(subcommand)]
        command: CardsCommand,
    },
    /// Onboard, suspend, reinstate or retire a participant, or rotate its key, without a
    /// restart.
    Participant {
        #[command(subcommand)]
        command: ParticipantCommand,
    },
    /// A participant's net debit cap in a currency.
    Cap {
        #[command(subcommand)]
        command: CapCommand,
    },
    /// FX providers' rates: list them, or set some.
    Fx {
        #[command(subcommand)]
        command: Option<FxCommand>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Balances and owner of an account.
    Show {
        id: u64,
    },
    /// Provision one account (idempotent: an account that exists as given is left alone).
    Add {
        id: u64,
        #[arg(long)]
        participant: u64,
        /// ISO 4217 code, e.g. USD.
        #[arg(long)]
        currency: String,
        /// Opening balance, minor units.
        #[arg(long, default_value_t = 0)]
        opening_balance: u64,
        /// Approvals per rolling day (0: no limit).
        #[arg(long, default_value_t = 0)]
        velocity_count_per_day_max: u32,
        /// Amount per rolling day, minor units (0: no limit).
        #[arg(long, default_value_t = 0)]
        velocity_amount_per_day_max: u64,
    },
    /// Provision many accounts from a TOML file of `[[accounts]]` shaped like the
    /// configuration's.
    Load {
        file: std::path::PathBuf,
    },
    /// Decline its payments (05) until unblocked.
    Block {
        id: u64,
    },
    Unblock {
        id: u64,
    },
    /// Close it for good.
    Close {
        id: u64,
    },
}

#[derive(Subcommand)]
enum CardsCommand {
    /// Provision the `[[cards]]` of a TOML file shaped like the configuration's (pan,
    /// account, expiry YYMM). The switch keeps only the vault's HMAC of each number.
    Load { file: std::path::PathBuf },
}

#[derive(Subcommand)]
enum ParticipantCommand {
    /// Onboard the participants of a TOML file, each written as a `[[participants]]`
    /// entry of the configuration (its key included: keys never go on a command line).
    /// Each can sign on and be paid as soon as this returns.
    Onboard { file: std::path::PathBuf },
    /// Decline its new requests (57, `participant_suspended`) from now on.
    Suspend { participant: u64 },
    /// Let its requests through again.
    Reinstate { participant: u64 },
    /// Retire it for good: it can no longer sign on or sign a request, and nothing new of
    /// it or to it is approved; what it owes or is owed still settles.
    Retire { participant: u64 },
    /// Make a new key current; the old one is still accepted for `--overlap-s` seconds.
    /// The new key (hex) is read from `--key-file`, or from standard input.
    RotateKey {
        participant: u64,
        #[arg(long)]
        key_file: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 3600)]
        overlap_s: u64,
    },
}

#[derive(Subcommand)]
enum CapCommand {
    /// Set a participant's net debit cap, minor units (applies to the next payment).
    Set { participant: u64, currency: String, net_debit_cap: u64 },
}

#[derive(Subcommand)]
enum FxCommand {
    /// Set a provider's rate for a pair (a decimal, never a float), with its spread.
    Set {
        provider: u64,
        base: String,
        quote: String,
        rate: String,
        #[arg(long, default_value_t = 0)]
        spread_bps: u32,
    },
}

/// Suspends, reinstates or retires a participant (`action`), and says so.
fn participant_status(cli: &Cli, participant: u64, action: &str, done: &str) -> Result<()> {
    send(cli, "POST", &format!("/v1/admin/participants/{participant}/{action}"), None)?;
    println!("participant {participant} {done}");
    Ok(())
}

/// The `[[section]]` records of a TOML file, as JSON for the admin API.
fn toml_records(file: &std::path::Path, section: &str) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let records = table.get(section).with_context(|| format!("{} has no [[{section}]]", file.display()))?.clone();
    let records = serde_json::to_value(records)?;
    if records.as_array().is_none_or(|r| r.is_empty()) {
        bail!("{}: [[{section}]] must be a non-empty array of tables", file.display());
    }
    Ok(records)
}

#[derive(Subcommand)]
enum QrRoutesCommand {
    /// Replace the whole table with the `[[qr_routes]]` of a TOML file (refused whole if
    /// any rule is bad); it applies to the next request and survives restarts.
    Set { file: std::path::PathBuf },
}

#[derive(Subcommand)]
enum QrCommand {
    /// Pay `code` (an EMV payload, or a code of a `[[qr_code_types]]` kind) as wallet
    /// `--wallet`, signing with the key in `--key-file` (hex; never on a command line).
    Pay {
        code: String,
        #[arg(long)]
        wallet: u64,
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// What the wallet pays in.
        #[arg(long)]
        currency: String,
        /// The merchant's amount, in its currency ("12.50"), when the code has none.
        #[arg(long)]
        amount: Option<String>,
        /// The idempotency key (the same key again gets the same answer).
        #[arg(long)]
        idempotency_key: String,
    },
}

#[derive(Subcommand)]
enum FeesCommand {
    /// Replace the schedule with a TOML file shaped like the configuration's `[fees]`
    /// section (its keys at the top level); it applies to the next payment.
    Set { file: std::path::PathBuf },
}

#[derive(Subcommand)]
enum BinCommand {
    /// Add a route or change the route of a prefix.
    Set {
        /// Card number prefix, 6 to 11 digits.
        prefix: String,
        /// Issuer participant id.
        issuer: u64,
        /// host, host_with_stand_in or switch.
        mode: String,
        /// Stand-in: largest amount of one request, minor units (0: no limit).
        #[arg(long, default_value_t = 0)]
        amount_per_transaction_max: u64,
        /// Stand-in: approvals per card per rolling day (0: no limit).
        #[arg(long, default_value_t = 0)]
        count_per_card_per_day_max: u32,
        /// Stand-in: amount per card per rolling day, minor units (0: no limit).
        #[arg(long, default_value_t = 0)]
        amount_per_card_per_day_max: u64,
    },
    /// Remove the route of a prefix (its cards go back to the switch's books).
    Remove { prefix: String },
}

#[derive(Subcommand)]
enum ClearingCommand {
    /// Check a window folder: checksums, control totals, zero-sum nets, CSV against XML.
    /// Exits non-zero naming the first problem. Works on a copy on any machine.
    Verify { folder: std::path::PathBuf },
    /// A human-readable summary of a window folder.
    Show { folder: std::path::PathBuf },
    /// Compare a participant's own records of a window (CSV: rrn, currency, amount or
    /// amount_minor, response_code, optionally auth_code) with the window's files: what is
    /// missing on either side, what differs, and totals. Exits 1 on any difference.
    Reconcile {
        /// The window's folder (`window-<id>` under the clearing directory).
        folder: std::path::PathBuf,
        /// The participant's records.
        records: std::path::PathBuf,
        /// Compare with this participant's own file (every row naming it); without it,
        /// with the whole window's transactions.csv.
        #[arg(long)]
        participant: Option<u64>,
    },
    /// Merge the parts of a partitioned switch's cut-off into one clearing set (the
    /// daemon does this itself; this is for doing it again by hand). Every partition
    /// needs its part: `--part a=/path/window-00000003 --part b=...`.
    Merge {
        /// The cut's number.
        #[arg(long)]
        cut: u64,
        /// A partition's part: `<partition>=<its window folder>`; one per partition.
        #[arg(long = "part", required = true)]
        parts: Vec<String>,
        /// Where `cut-<n>/` is written.
        #[arg(long)]
        out: std::path::PathBuf,
        /// The switch's configuration (names, BICs, settlement accounts); default: the
        /// embedded demo's.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// The window folders under a clearing directory, with whether each verifies.
    List {
        #[arg(long, default_value = "data/clearing")]
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// This node's partition, the map (issuer, wallet or payment system -> partition),
    /// requests forwarded.
    Status,
    /// Move an issuer to a partition under load: its owner drains it, hands its accounts
    /// and cards over, then the map switches (see docs/scale-out.md). Places a wallet or a
    /// payment system (once: it does not move).
    Move { issuer: u64, partition: String },
    /// A cut-off of the whole switch: every partition closes its window, and the first
    /// partition's primary merges their files into one clearing set (`cut-<n>`).
    Cutoff,
}

#[derive(Subcommand)]
enum WindowCommand {
    /// List windows.
    List,
    /// Close the open window (a consistent cut; traffic keeps flowing); files follow.
    Close,
    /// Mark a window settled once the settlement bank has confirmed it.
    Settle { window: u64 },
}

fn get(cli: &Cli, path: &str) -> Result<Value> {
    send(cli, "GET", path, None)
}

/// An HTTP agent that trusts `--ca-file` when given, and reads error answers' bodies.
fn agent(cli: &Cli) -> Result<ureq::Agent> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(path) = &cli.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let certificates: Vec<_> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(certificate)) => Some(certificate),
                _ => None,
            })
            .collect();
        if certificates.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        config = config.tls_config(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certificates)).build());
    }
    Ok(config.build().into())
}

/// With `--json`, the daemon's answer is the output, as it came: printed, and the command
/// ends there (every admin command makes one call).
fn json_out(cli: &Cli, body: &Value) -> Result<()> {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(body)?);
        std::process::exit(0);
    }
    Ok(())
}

fn post(cli: &Cli, path: &str) -> Result<Value> {
    send(cli, "POST", path, None)
}

/// A call with the token, and an optional JSON body; an error answer is an error.
fn send(cli: &Cli, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let url = format!("{}{path}", cli.url.trim_end_matches('/'));
    let agent = agent(cli)?;
    let token = format!("Bearer {}", cli.token);
    let request = match method {
        "GET" => agent.get(&url).header("authorization", &token).call(),
        "DELETE" => agent.delete(&url).header("authorization", &token).call(),
        "PUT" => {
            let request = agent.put(&url).header("authorization", &token);
            match body {
                Some(body) => request.send_json(body),
                None => request.send_empty(),
            }
        }
        _ => {
            let request = agent.post(&url).header("authorization", &token);
            match body {
                Some(body) => request.send_json(body),
                None => request.send_empty(),
            }
        }
    };
    let mut response = request.with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let body: Value = response.body_mut().read_json().with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    json_out(cli, &body)?;
    Ok(body)
}

fn set_account_status(cli: &Cli, id: u64, status: &str) -> Result<()> {
    let body = serde_json::json!({ "status": status });
    send(cli, "POST", &format!("/v1/admin/accounts/{id}/status"), Some(&body))?;
    println!("account {id}: {status}");
    Ok(())
}

fn print_positions(body: &Value) {
    println!(
        "window {} ({}), {} transfers",
        body["window"],
        body["state"].as_str().unwrap_or("?"),
        body["transfer_count"]
    );
    println!("{:>12} {:>4} {:>10} {:>10} {:>22}", "participant", "ccy", "debits#", "credits#", "net");
    for row in body["positions"].as_array().into_iter().flatten() {
        println!(
            "{:>12} {:>4} {:>10} {:>10} {:>22}",
            row["participant"].to_string(),
            row["currency"].as_str().unwrap_or("?"),
            row["debit_count"].to_string(),
            row["credit_count"].to_string(),
            row["net"].as_str().unwrap_or("?")
        );
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Status => {
            let body = get(&cli, "/v1/admin/status")?;
            let replication = &body["replication"];
            if replication.is_object() {
                println!(
                    "role: {} (node {}, term {}); stream at entry {}, applied {}, lag {}",
                    replication["role"].as_str().unwrap_or("?"),
                    replication["node"].as_str().unwrap_or("?"),
                    replication["term"],
                    replication["stream_seq"],
                    replication["applied_seq"],
                    replication["lag"]
                );
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        Command::Participants => {
            let body = get(&cli, "/v1/admin/participants")?;
            for p in body["participants"].as_array().into_iter().flatten() {
                println!(
                    "{:>4}  {:<24} {}{}",
                    p["id"].to_string(),
                    p["name"].as_str().unwrap_or("?"),
                    p["role"].as_str().unwrap_or("?"),
                    if p["retired"].as_bool() == Some(true) {
                        "  RETIRED"
                    } else if p["suspended"].as_bool() == Some(true) {
                        "  SUSPENDED"
                    } else {
                        ""
                    }
                );
                if let Some(key) = p["keys"]["current"].as_str() {
                    let previous = &p["keys"]["previous"];
                    match previous["fingerprint"].as_str() {
                        Some(old) => {
                            let now_ms = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as u64);
                            let until_ms = previous["accepted_until_unix_ms"].as_u64().unwrap_or(0);
                            let left_s = until_ms.saturating_sub(now_ms) / 1000;
                            println!("        key {key} (previous {old} accepted for {left_s} s more)")
                        }
                        None => println!("        key {key}"),
                    }
                }
                for (currency, cap) in p["currencies"].as_object().into_iter().flatten() {
                    println!(
                        "        {currency}: net debit cap {} (headroom in pool {})",
                        cap["net_debit_cap"],
                        cap["headroom_in_pool"].as_str().unwrap_or("?")
                    );
                }
            }
        }
        Command::QrRoutes { command: None } => {
            let body = get(&cli, "/v1/admin/qr-routes")?;
            println!("{:<10} {:<40} {:>8}", "scheme", "merchant identifier", "acquirer");
            for route in body["routes"].as_array().into_iter().flatten() {
                let identifier = match (route["identifier"].as_str(), route["identifier_prefix"].as_str()) {
                    (Some(exact), _) => exact.to_string(),
                    (None, Some(prefix)) => format!("{prefix}*"),
                    (None, None) => "?".to_string(),
                };
                println!("{:<10} {identifier:<40} {:>8}", route["scheme"].as_str().unwrap_or("?"), route["acquirer"]);
            }
        }
        Command::QrRoutes { command: Some(QrRoutesCommand::Set { ref file }) } => {
            let routes = toml_records(file, "qr_routes")?;
            let body = send(&cli, "PUT", "/v1/admin/qr-routes", Some(&serde_json::json!({ "routes": routes })))?;
            println!("{} QR route(s) in force", body["routes"]);
        }
        Command::Qr {
            command: QrCommand::Pay { ref code, wallet, ref key_file, ref currency, ref amount, ref idempotency_key },
        } => {
            let key = std::fs::read_to_string(key_file).with_context(|| format!("reading {}", key_file.display()))?;
            let secret = hex::decode(key.trim()).context("the key file must hold the key in hex")?;
            let mut body = serde_json::json!({ "payload": code, "payer_currency": currency });
            if let Some(amount) = amount {
                body["amount"] = Value::String(amount.clone());
            }
            let body = body.to_string();
            let path = "/v1/qr/payments";
            let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs().to_string();
            let participant = wallet.to_string();
            let signature = junction_wire::qr_api::sign_hex(
                &secret,
                "POST",
                path,
                &timestamp,
                &participant,
                idempotency_key,
                body.as_bytes(),
            )
            .context("the key is not usable")?;
            let url = format!("{}{path}", cli.url.trim_end_matches('/'));
            let mut response = agent(&cli)?
                .post(&url)
                .header(junction_wire::qr_api::HEADER_PARTICIPANT, &participant)
                .header(junction_wire::qr_api::HEADER_TIMESTAMP, &timestamp)
                .header(junction_wire::qr_api::HEADER_SIGNATURE, &signature)
                .header(junction_wire::qr_api::HEADER_IDEMPOTENCY_KEY, idempotency_key)
                .header("content-type", "application/json")
                .send(body.as_bytes())
                .with_context(|| format!("calling {url}"))?;
            let status = response.status();
            let answer: Value = response.body_mut().read_json().unwrap_or(Value::Null);
            json_out(&cli, &answer)?;
            if !status.is_success() {
                bail!("{status}: {}", answer["error"]);
            }
            let fx = match &answer["fx"] {
                Value::Null => String::new(),
                fx => format!(
                    ", {} {} per {} (FX provider {}, {})",
                    fx["rate"].as_str().unwrap_or(""),
                    answer["payer_currency"].as_str().unwrap_or(""),
                    answer["payee_currency"].as_str().unwrap_or(""),
                    fx["provider"],
                    fx["pair"].as_str().unwrap_or(""),
                ),
            };
            println!(
                "{} {}: paid {} {} for {} {} to {} (acquirer {}){fx}",
                answer["flow"].as_str().unwrap_or("payment"),
                answer["state"].as_str().unwrap_or(""),
                answer["payer_amount"].as_str().unwrap_or(""),
                answer["payer_currency"].as_str().unwrap_or(""),
                answer["payee_amount"].as_str().unwrap_or(""),
                answer["payee_currency"].as_str().unwrap_or(""),
                answer["merchant_id"].as_str().unwrap_or(""),
                answer["acquirer"],
            );
        }
        Command::Positions { window } => {
            let path = match window {
                Some(w) => format!("/v1/admin/positions?window={w}"),
                None => "/v1/admin/positions".to_string(),
            };
            print_positions(&get(&cli, &path)?);
        }
        Command::Cluster { command: ClusterCommand::Status } => {
            let body = get(&cli, "/v1/admin/status")?;
            let cluster = &body["cluster"];
            if !cluster.is_object() {
                bail!("this switch is not partitioned (no [cluster])");
            }
            println!("partition: {}", cluster["partition"].as_str().unwrap_or("?"));
            for (issuer, partition) in cluster["map"].as_object().into_iter().flatten() {
                let placement = &cluster["moves"][issuer.as_str()];
                let how = match (placement["moving_to"].as_str(), placement["moved_from"].as_str()) {
                    (Some(to), _) => format!(" (moving to {to})"),
                    (None, Some(from)) => format!(" (moved from {from})"),
                    (None, None) => String::new(),
                };
                println!("  participant {issuer:>8} -> {}{how}", partition.as_str().unwrap_or("?"));
            }
            println!(
                "forwarded {} (failed {}), served for other doors {}, last cut part {}, last merged {}",
                cluster["forwarded"],
                cluster["forward_failures"],
                cluster["served_for_other_doors"],
                cluster["last_cut_part"],
                cluster["last_cut_merged"]
            );
        }
        Command::Cluster { command: ClusterCommand::Move { issuer, partition } } => {
            let body = serde_json::json!({ "partition": partition });
            let answer = send(&cli, "PUT", &format!("/v1/admin/cluster/issuers/{issuer}"), Some(&body))?;
            match answer["moving_to"].as_str() {
                Some(to) => println!(
                    "issuer {issuer} moving from partition {} to {to}: its requests wait while {} drains it and \
                     hands it over (`junction cluster status` shows when it is done)",
                    answer["partition"].as_str().unwrap_or("?"),
                    answer["partition"].as_str().unwrap_or("?")
                ),
                None => println!("participant {issuer} -> partition {partition}"),
            }
        }
        Command::Cluster { command: ClusterCommand::Cutoff } => {
            let body = post(&cli, "/v1/admin/cluster/cutoff")?;
            println!(
                "cut-off {} started in partitions {}; the merged set appears as clearing/cut-{:08}",
                body["cut"],
                body["partitions"],
                body["cut"].as_u64().unwrap_or(0)
            );
        }
        Command::Window { command: WindowCommand::List } => {
            let body = get(&cli, "/v1/admin/windows")?;
            for w in body["windows"].as_array().into_iter().flatten() {
                println!(
                    "window {:>6}  {:<14} {:>12} transfers  {}",
                    w["window"].to_string(),
                    w["status"].as_str().unwrap_or("?"),
                    w["transfer_count"].to_string(),
                    w["folder"].as_str().unwrap_or("")
                );
            }
        }
        Command::Window { command: WindowCommand::Close } => {
            let body = post(&cli, "/v1/admin/windows/close")?;
            print_positions(&body);
            println!("clearing files: {}", body["folder"].as_str().unwrap_or("?"));
        }
        Command::Window { command: WindowCommand::Settle { window } } => {
            post(&cli, &format!("/v1/admin/windows/{window}/settle"))?;
            println!("window {window} marked settled");
        }
        Command::Account { command: AccountCommand::Show { id } } => {
            let body = get(&cli, &format!("/v1/admin/accounts/{id}"))?;
            println!(
                "account {id}: participant {}, {}, available {}",
                body["participant"],
                body["currency"].as_str().unwrap_or("?"),
                body["available"].as_str().unwrap_or("?")
            );
            println!("{}", serde_json::to_string_pretty(&body["balances"])?);
        }
        Command::Account {
            command:
                AccountCommand::Add {
                    id,
                    participant,
                    ref currency,
                    opening_balance,
                    velocity_count_per_day_max,
                    velocity_amount_per_day_max,
                },
        } => {
            let account = serde_json::json!({ "accounts": [{
                "id": id, "participant": participant, "currency": currency,
                "opening_balance": opening_balance,
                "velocity_count_per_day_max": velocity_count_per_day_max,
                "velocity_amount_per_day_max": velocity_amount_per_day_max,
            }]});
            send(&cli, "POST", "/v1/admin/accounts", Some(&account))?;
            println!("account {id} provisioned (participant {participant}, {currency})");
        }
        Command::Account { command: AccountCommand::Load { ref file } } => {
            let accounts = toml_records(file, "accounts")?;
            let body = send(&cli, "POST", "/v1/admin/accounts", Some(&serde_json::json!({ "accounts": accounts })))?;
            println!("{} account(s) provisioned", body["provisioned"]);
        }
        Command::Account { command: AccountCommand::Block { id } } => set_account_status(&cli, *id, "blocked")?,
        Command::Account { command: AccountCommand::Unblock { id } } => set_account_status(&cli, *id, "active")?,
        Command::Account { command: AccountCommand::Close { id } } => set_account_status(&cli, *id, "closed")?,
        Command::Cards { command: CardsCommand::Load { ref file } } => {
            let cards = toml_records(file, "cards")?;
            let body = send(&cli, "POST", "/v1/admin/cards", Some(&serde_json::json!({ "cards": cards })))?;
            println!("{} card(s) provisioned", body["provisioned"]);
        }
        Command::Participant { command: ParticipantCommand::Onboard { ref file } } => {
            for entry in toml_records(file, "participants")?.as_array().into_iter().flatten() {
                let body = send(&cli, "POST", "/v1/admin/participants", Some(entry))?;
                println!(
                    "participant {} onboarded ({}, key {})",
                    body["participant"],
                    body["role"].as_str().unwrap_or("?"),
                    body["keys"]["current"].as_str().unwrap_or("?")
                );
            }
        }
        Command::Participant { command: ParticipantCommand::RotateKey { participant, ref key_file, overlap_s } } => {
            let key = match key_file {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                None => std::io::read_to_string(std::io::stdin()).context("reading the key from standard input")?,
            };
            let body = serde_json::json!({ "key": key.trim(), "overlap_s": overlap_s });
            let answer = send(&cli, "POST", &format!("/v1/admin/participants/{participant}/keys"), Some(&body))?;
            println!(
                "participant {participant}: key {} current; the old key accepted for {overlap_s} s",
                answer["keys"]["current"].as_str().unwrap_or("?")
            );
        }
        Command::Participant { command: ParticipantCommand::Suspend { participant } } => {
            participant_status(&cli, *participant, "suspend", "suspended")?
        }
        Command::Participant { command: ParticipantCommand::Reinstate { participant } } => {
            participant_status(&cli, *participant, "reinstate", "reinstated")?
        }
        Command::Participant { command: ParticipantCommand::Retire { participant } } => {
            participant_status(&cli, *participant, "retire", "retired")?
        }
        Command::Cap { command: CapCommand::Set { participant, ref currency, net_debit_cap } } => {
            let cap = serde_json::json!({ "currency": currency, "net_debit_cap": net_debit_cap });
            send(&cli, "POST", &format!("/v1/admin/participants/{participant}/caps"), Some(&cap))?;
            println!("participant {participant}: net debit cap in {currency} set to {net_debit_cap} (minor units)");
        }
        Command::Fx { command: None } => {
            let body = get(&cli, "/v1/admin/fx/rates")?;
            println!("{:>8} {:<4} {:<4} {:>16} {:>7}", "provider", "base", "quot", "rate", "spread");
            for rate in body["rates"].as_array().into_iter().flatten() {
                println!(
                    "{:>8} {:<4} {:<4} {:>16} {:>7}",
                    rate["provider"].to_string(),
                    rate["base"].as_str().unwrap_or("?"),
                    rate["quote"].as_str().unwrap_or("?"),
                    rate["mid"].as_str().unwrap_or("?"),
                    rate["spread_bps"].to_string()
                );
            }
        }
        Command::Fx { command: Some(FxCommand::Set { provider, ref base, ref quote, ref rate, spread_bps }) } => {
            let rates = serde_json::json!({ "rates": [{
                "provider": provider, "base": base, "quote": quote, "rate": rate, "spread_bps": spread_bps,
            }]});
            send(&cli, "POST", "/v1/admin/fx/rates", Some(&rates))?;
            println!("provider {provider}: {base}/{quote} = {rate} (spread {spread_bps} bps)");
        }
        Command::Bins { command: None } => {
            let body = get(&cli, "/v1/admin/bins")?;
            println!(
                "{:<12} {:>7} {:<19} {:>14} {:>10} {:>14}",
                "prefix", "issuer", "mode", "stand-in max", "per day #", "per day amt"
            );
            for route in body["routes"].as_array().into_iter().flatten() {
                let limit = |name: &str| route["stand_in"][name].to_string();
                println!(
                    "{:<12} {:>7} {:<19} {:>14} {:>10} {:>14}",
                    route["prefix"].as_str().unwrap_or("?"),
                    route["issuer"].to_string(),
                    route["mode"].as_str().unwrap_or("?"),
                    limit("amount_per_transaction_max"),
                    limit("count_per_card_per_day_max"),
                    limit("amount_per_card_per_day_max"),
                );
            }
        }
        Command::Bins {
            command:
                Some(BinCommand::Set {
                    ref prefix,
                    issuer,
                    ref mode,
                    amount_per_transaction_max,
                    count_per_card_per_day_max,
                    amount_per_card_per_day_max,
                }),
        } => {
            let route = serde_json::json!({ "routes": [{
                "prefix": prefix, "issuer": issuer, "mode": mode,
                "stand_in": {
                    "amount_per_transaction_max": amount_per_transaction_max,
                    "count_per_card_per_day_max": count_per_card_per_day_max,
                    "amount_per_card_per_day_max": amount_per_card_per_day_max,
                },
            }]});
            let body = send(&cli, "POST", "/v1/admin/bins", Some(&route))?;
            println!("BIN {prefix} -> issuer {issuer} ({mode}); {} route(s) in force", body["routes"]);
        }
        Command::Bins { command: Some(BinCommand::Remove { ref prefix }) } => {
            let body = send(&cli, "DELETE", &format!("/v1/admin/bins/{prefix}"), None)?;
            println!("BIN {prefix} removed; {} route(s) in force", body["routes"]);
        }
        Command::Fees { command: None } => {
            let body = get(&cli, "/v1/admin/fees")?;
            println!("{}", serde_json::to_string_pretty(&body["fees"])?);
        }
        Command::Fees { command: Some(FeesCommand::Set { ref file }) } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let spec: junction_engine::fees::FeeScheduleSpec =
                toml::from_str(&text).with_context(|| format!("{} is not a fee schedule", file.display()))?;
            let body = send(&cli, "PUT", "/v1/admin/fees", Some(&serde_json::to_value(&spec)?))?;
            println!("fee schedule in force:\n{}", serde_json::to_string_pretty(&body["fees"])?);
        }
        Command::Links => {
            let body = get(&cli, "/v1/admin/issuer-links")?;
            println!("{:>7} {:<24} {:>5} {:>8} {:>12}", "issuer", "name", "link", "healthy", "outstanding");
            for link in body["links"].as_array().into_iter().flatten() {
                println!(
                    "{:>7} {:<24} {:>5} {:>8} {:>12}",
                    link["issuer"].to_string(),
                    link["name"].as_str().unwrap_or("?"),
                    link["link"].to_string(),
                    link["healthy"].to_string(),
                    link["outstanding"].to_string(),
                );
            }
            println!("advices not yet acknowledged: {}", body["advices_outstanding"]);
        }
        Command::Clearing { command: ClearingCommand::Verify { folder } } if cli.json => {
            let verdict = match junction_clearing::verify_folder(folder) {
                Ok(report) => serde_json::json!({
                    "folder": folder, "verified": true, "window": report.manifest.window,
                    "files_checked": report.files_checked, "bytes_checked": report.bytes_checked,
                }),
                Err(problem) => {
                    serde_json::json!({ "folder": folder, "verified": false, "problem": problem.to_string() })
                }
            };
            println!("{}", serde_json::to_string_pretty(&verdict)?);
            if verdict["verified"] != true {
                std::process::exit(1);
            }
        }
        Command::Clearing { command: ClearingCommand::Verify { folder } } => {
            match junction_clearing::verify_folder(folder) {
                Ok(report) => println!(
                    "OK: {} verifies ({} files, {} bytes checked)",
                    folder.display(),
                    report.files_checked,
                    report.bytes_checked
                ),
                Err(problem) => {
                    eprintln!("FAILED: {}: {problem}", folder.display());
                    std::process::exit(1);
                }
            }
        }
        Command::Clearing { command: ClearingCommand::Reconcile { folder, records, participant } } => {
            match junction_clearing::reconcile(folder, *participant, records) {
                Ok(report) => {
                    println!("{report}");
                    if !report.is_clean() {
                        std::process::exit(1);
                    }
                }
                Err(problem) => {
                    eprintln!("FAILED: {problem}");
                    std::process::exit(2);
                }
            }
        }
        Command::Clearing { command: ClearingCommand::Show { folder } } => {
            let summary =
                junction_clearing::summarize(folder).with_context(|| format!("reading {}", folder.display()))?;
            println!("{summary}");
        }
        Command::Clearing { command: ClearingCommand::Merge { cut, parts, out, config } } => {
            let config = match config {
                Some(path) => junctiond::config::Config::parse(
                    &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
                )?,
                None => junctiond::config::Config::embedded_default()?,
            };
            let clearing = junctiond::windows::clearing_config(&config);
            let mut inputs = Vec::new();
            for part in parts {
                let (partition, folder) =
                    part.split_once('=').with_context(|| format!("--part {part:?}: <partition>=<folder>"))?;
                inputs.push(junction_clearing::Part { partition: partition.into(), folder: folder.into() });
            }
            let partitions: Vec<String> = inputs.iter().map(|part| part.partition.clone()).collect();
            let manifest = junction_clearing::merge_parts(*cut, &partitions, &inputs, out, &clearing)?;
            println!(
                "cut {cut}: {} partitions merged into {} ({} transfers, {} transactions)",
                partitions.len(),
                out.join(junction_clearing::cut_folder_name(*cut)).display(),
                manifest.records.transfers,
                manifest.records.transactions
            );
        }
        Command::Clearing { command: ClearingCommand::List { dir } } => {
            for folder in junctiond::windows::list_folders(dir) {
                let verdict = match junction_clearing::verify_folder(&folder) {
                    Ok(_) => "verifies".to_string(),
                    Err(problem) => format!("FAILS: {problem}"),
                };
                println!("{}  {verdict}", folder.display());
            }
        }
    }
    Ok(())
}
