//! The CPU an ISO 20022 message costs the credit transfers' gateway before any business
//! rule: the bounded streaming scan (DTDs, depth, namespace, leaves), libxml2's parse and
//! validation against the official schema, and reading the transaction out. One thread;
//! the message is a pacs.008 of one credit built from the official schema by `xmlschema`
//! (`fuzz/seeds/iso20022_read/p8.bin`), and a pacs.002 likewise.

use anyhow::{bail, Result};
use clap::Args;
use junctiond::credit::{read_message, xml::Kind};
use std::hint::black_box;
use std::time::Instant;

#[derive(Args)]
pub struct Iso20022Args {
    /// Messages per round.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Rounds; each is printed, the best is summarised.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

const PACS008: &[u8] = include_bytes!("../../fuzz/seeds/iso20022_read/p8.bin");
const PACS002: &[u8] = include_bytes!("../../fuzz/seeds/iso20022_read/p2.bin");

pub fn run(args: &Iso20022Args) -> Result<()> {
    let machine = crate::machine::Machine::detect(std::path::Path::new("-"));
    println!("machine: {} | {} cores | Linux {}", machine.cpu, machine.cores, machine.kernel);
    println!("settings: {} messages per round, {} rounds, one thread", args.messages, args.rounds);
    // The first byte of a seed picks the fuzz target's message kind.
    for (kind, message) in [(Kind::Pacs008, &PACS008[1..]), (Kind::Pacs002, &PACS002[1..])] {
        let started = Instant::now();
        if read_message(kind, message).is_err() {
            bail!("the sample {} does not read", kind.name_id());
        }
        let first_us = started.elapsed().as_micros();
        let mut best = f64::MAX;
        for round in 1..=args.rounds {
            let started = Instant::now();
            for _ in 0..args.messages {
                black_box(read_message(kind, black_box(message)).is_ok());
            }
            let us = started.elapsed().as_nanos() as f64 / 1000.0 / args.messages as f64;
            println!("{} round {round}: {us:.1} us/message", kind.name_id());
            best = best.min(us);
        }
        println!(
            "best: {} of {} bytes read and validated in {best:.1} us (the first, compiling the schema: {first_us} us)",
            kind.name_id(),
            message.len()
        );
    }
    Ok(())
}
