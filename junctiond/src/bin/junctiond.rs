//! `junctiond`: the Junction switch daemon. See `junctiond --help`.

use anyhow::{Context, Result};
use clap::Parser;
use junctiond::{self as daemon, config::Config};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version = junctiond::VERSION, about = "Junction payment switch daemon: ISO 8583 over TCP, admin and metrics over HTTP")]
struct Cli {
    /// TOML configuration; without it the embedded demo configuration is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the ledger and clearing files live (overrides switch.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// ISO 8583 listen address (overrides switch.iso8583_listen); port 0 picks one.
    #[arg(long)]
    iso8583_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address (overrides switch.http_listen); port 0 picks one.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    /// Authorization shards (overrides switch.shards).
    #[arg(long)]
    shards: Option<usize>,
    /// With `[replication]`: start as a standby that follows the primary's journal and
    /// takes over when the primary's lease lapses (without it, a node takes a free lease
    /// at once).
    #[arg(long)]
    standby: bool,
    /// This node's name in the replication cluster (overrides replication.node).
    #[arg(long)]
    node: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Start even though the demo configuration's published secrets (admin token, vault
    /// key, participants' keys) are in use on a listener beyond loopback: for a test
    /// network only.
    #[arg(long)]
    allow_demo_secrets: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// For crash tests: let the admin API make a pipeline thread panic
    /// (`POST /v1/admin/faults/panic`), to show that the whole process then ends.
    #[arg(long, hide = true)]
    enable_fault_injection: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Config::parse_unchecked(&text).with_context(|| format!("loading {}", path.display()))?
        }
        None => Config::parse_unchecked(junctiond::config::DEFAULT_CONFIG_TOML)
            .context("loading the embedded default configuration")?,
    };
    if let Some(dir) = cli.data_dir {
        config.switch.data_dir = dir;
    }
    if let Some(address) = cli.iso8583_listen {
        config.switch.iso8583_listen = address;
    }
    if let Some(address) = cli.http_listen {
        config.switch.http_listen = address;
    }
    if let Some(shards) = cli.shards {
        config.switch.shards = shards;
    }
    config.switch.fault_injection = cli.enable_fault_injection;
    if let (Some(node), Some(replication)) = (cli.node, config.replication.as_mut()) {
        replication.node = node;
    }
    if cli.standby && config.replication.is_none() {
        anyhow::bail!("--standby needs a [replication] section in the configuration");
    }
    config.switch.standby = cli.standby;
    config.switch.allow_demo_secrets = cli.allow_demo_secrets;
    config.validate()?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt().with_env_filter(filter).json().with_writer(std::io::stderr).init();
    } else {
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour).with_writer(std::io::stderr).init();
    }
    // A panic anywhere is a broken invariant: end the process at once, after the default
    // hook has printed it, so that a supervisor restarts the switch and recovery rebuilds
    // the state from the journal. Never run on with a stage gone or books in doubt.
    let print_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print_panic(info);
        std::process::abort();
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("junctiond-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(config))
}
