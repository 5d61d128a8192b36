//! `junction`: the operator's command line. Talks to a running `junctiond` over its admin
//! HTTP endpoint (status, participants, positions, windows), and checks clearing folders
//! on its own, without the daemon.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(version, about = "Junction operator CLI")]
struct Cli {
    /// The daemon's HTTP address.
    #[arg(long, env = "JUNCTION_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token for calls that change state.
    #[arg(long, env = "JUNCTION_ADMIN_TOKEN", default_value = "demo-admin-token-change-me")]
    token: String,
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
}

#[derive(Subcommand)]
enum ClearingCommand {
    /// Check a window folder: checksums, control totals, zero-sum nets, CSV against XML.
    /// Exits non-zero naming the first problem. Works on a copy on any machine.
    Verify { folder: std::path::PathBuf },
    /// A human-readable summary of a window folder.
    Show { folder: std::path::PathBuf },
    /// The window folders under a clearing directory, with whether each verifies.
    List {
        #[arg(long, default_value = "data/clearing")]
        dir: std::path::PathBuf,
    },
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
    let url = format!("{}{path}", cli.url.trim_end_matches('/'));
    let mut response = ureq::get(&url).call().with_context(|| format!("calling {url}"))?;
    response.body_mut().read_json::<Value>().with_context(|| format!("reading the answer of {url}"))
}

fn post(cli: &Cli, path: &str) -> Result<Value> {
    let url = format!("{}{path}", cli.url.trim_end_matches('/'));
    let mut response = ureq::post(&url)
        .header("authorization", &format!("Bearer {}", cli.token))
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let body: Value = response.body_mut().read_json().with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body["error"]["message"].as_str().unwrap_or("no message"));
    }
    Ok(body)
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
        Command::Status => println!("{}", serde_json::to_string_pretty(&get(&cli, "/v1/admin/status")?)?),
        Command::Participants => {
            let body = get(&cli, "/v1/admin/participants")?;
            for p in body["participants"].as_array().into_iter().flatten() {
                println!(
                    "{:>4}  {:<24} {}",
                    p["id"].to_string(),
                    p["name"].as_str().unwrap_or("?"),
                    p["role"].as_str().unwrap_or("?")
                );
                for (currency, cap) in p["currencies"].as_object().into_iter().flatten() {
                    println!(
                        "        {currency}: net debit cap {} (headroom in pool {})",
                        cap["net_debit_cap"],
                        cap["headroom_in_pool"].as_str().unwrap_or("?")
                    );
                }
            }
        }
        Command::Positions { window } => {
            let path = match window {
                Some(w) => format!("/v1/admin/positions?window={w}"),
                None => "/v1/admin/positions".to_string(),
            };
            print_positions(&get(&cli, &path)?);
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
        Command::Clearing { command: ClearingCommand::Show { folder } } => {
            let summary =
                junction_clearing::summarize(folder).with_context(|| format!("reading {}", folder.display()))?;
            println!("{summary}");
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
