fn main() { eprintln!("loadgen: not built yet (issue 7)"); std::process::exit(2); }
