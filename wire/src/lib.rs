//! Junction's wire formats, shared by the switch (`engine`) and its clients (`loadgen`):
//! ISO 8583:1987 messages with their framing and MACs, and EMV merchant-presented QR
//! payloads. Pure parsing and encoding: no I/O, no knowledge of the ledger.

pub mod calendar;
pub mod iso8583;
pub mod luhn;
pub mod qr;
pub mod qr_api;
