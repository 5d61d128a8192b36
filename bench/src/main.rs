//! `bench`: Junction's reproducible benchmarks. Each prints the machine, its settings and
//! what it measured; `--json FILE` writes one record per case. Not part of `cargo test`.

mod clearing_bench;
mod codec_bench;
mod iso20022_bench;
mod ledger_bench;
mod machine;
mod pipeline_bench;
mod postgres_baseline;
mod recovery_bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Junction benchmarks: run with --release")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Durable transfers per second straight into the ledger.
    Ledger(ledger_bench::LedgerArgs),
    /// The whole in-process pipeline: rules + ledger, durable.
    Pipeline(pipeline_bench::PipelineArgs),
    /// Close a window of N transfers and write its clearing files.
    Clearing(clearing_bench::ClearingArgs),
    /// Restart time: ledger open and engine reload, with and without a checkpoint.
    Recovery(recovery_bench::RecoveryArgs),
    /// CPU per request of the ISO 8583 socket path's codec work: decode, MACs, answer.
    Codec(codec_bench::CodecArgs),
    /// CPU per ISO 20022 message of the credit transfers' gateway: scan, schema validation, reading.
    Iso20022(iso20022_bench::Iso20022Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ledger(args) => ledger_bench::run(&args),
        Command::Pipeline(args) => pipeline_bench::run(&args),
        Command::Clearing(args) => clearing_bench::run(&args),
        Command::Recovery(args) => recovery_bench::run(&args),
        Command::Codec(args) => codec_bench::run(&args),
        Command::Iso20022(args) => iso20022_bench::run(&args),
    }
}
