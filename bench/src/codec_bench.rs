//! The ISO 8583 socket path's CPU work per request, without sockets or threads: what the
//! switch does with each purchase (frame split, decode, MAC check, answer built from the
//! request's echoed fields, MAC, frame) and what an acquirer does with the answer (decode,
//! MAC check). Single-threaded; prints nanoseconds per request.

use anyhow::{Context, Result};
use clap::Args;
use junction_wire::iso8583::{mac, next_frame, Iso8583Message, MacKey};
use std::hint::black_box;
use std::time::Instant;

#[derive(Args)]
pub struct CodecArgs {
    /// Requests per round.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Rounds; each is printed, the best is summarised.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

/// Fields a response echoes (the same list as the switch's ISO 8583 front end).
const ECHOED_FIELDS: [u8; 14] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];

fn purchase(key: &MacKey) -> Result<Vec<u8>> {
    let mut message = Iso8583Message::new("0200")?;
    for (field, value) in [
        (2, "4242420000001234"),
        (3, "000000"),
        (4, "000000012345"),
        (7, "1206180501"),
        (11, "123456"),
        (12, "180501"),
        (13, "1206"),
        (14, "2912"),
        (22, "051"),
        (32, "200001"),
        (37, "ABCD00012345"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (49, "840"),
    ] {
        message.set(field, value).with_context(|| format!("field {field}"))?;
    }
    mac::sign(&mut message, key);
    let mut framed = Vec::new();
    message.encode_framed(&mut framed)?;
    Ok(framed)
}

/// What the switch does per request on the socket path, up to the bytes of the answer.
fn switch_side(frame: &[u8], key: &MacKey, out: &mut Vec<u8>) -> Result<()> {
    let (raw, _) = next_frame(frame)?.context("a whole frame")?;
    let request = Iso8583Message::decode(raw)?;
    mac::verify_decoded(&request, key)?;
    let mut answer = Iso8583Message::new("0210")?;
    answer.copy_fields(&request, &ECHOED_FIELDS);
    answer.set(38, "123456")?;
    answer.set(39, "00")?;
    mac::sign_framed(&mut answer, key, out)?;
    Ok(())
}

fn acquirer_side(frame: &[u8], key: &MacKey) -> Result<()> {
    let (raw, _) = next_frame(frame)?.context("a whole frame")?;
    let answer = mac::decode_verified(raw, key)?;
    black_box(answer.get(39));
    Ok(())
}

pub fn run(args: &CodecArgs) -> Result<()> {
    let machine = crate::machine::Machine::detect(std::path::Path::new("-"));
    println!("machine: {} | {} cores | Linux {}", machine.cpu, machine.cores, machine.kernel);
    println!("settings: {} purchases per round, {} rounds, one thread, HMAC-SHA256 MACs", args.requests, args.rounds);
    let key = MacKey::new(&[0x11; 16])?;
    let request = purchase(&key)?;
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut best_switch, mut best_acquirer) = (f64::MAX, f64::MAX);
    for round in 1..=args.rounds {
        let started = Instant::now();
        for _ in 0..args.requests {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            switch_side(black_box(&request), &key, &mut out)?;
        }
        let switch_ns = started.elapsed().as_nanos() as f64 / args.requests as f64;
        out.clear();
        switch_side(&request, &key, &mut out)?;
        let answer = out.clone();
        let started = Instant::now();
        for _ in 0..args.requests {
            acquirer_side(black_box(&answer), &key)?;
        }
        let acquirer_ns = started.elapsed().as_nanos() as f64 / args.requests as f64;
        println!("round {round}: switch side {switch_ns:.0} ns/request, acquirer side {acquirer_ns:.0} ns/answer");
        best_switch = best_switch.min(switch_ns);
        best_acquirer = best_acquirer.min(acquirer_ns);
    }
    println!(
        "best: switch side {best_switch:.0} ns/request (decode, MAC check, answer, MAC, frame), acquirer side {best_acquirer:.0} ns/answer; request {} bytes, answer {} bytes",
        request.len(),
        out.len()
    );
    Ok(())
}
