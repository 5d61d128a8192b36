//! ISO 20022 messages in and out: every message read is checked against its official
//! schema (libxml2, the schemas in `junctiond/schemas/` compiled in), every message
//! written is built from a template and checked the same way before it leaves.
//!
//! Reading goes in three steps, cheapest first, and stops at the first refusal:
//! 1. a bound on size (`MESSAGE_BYTES_MAX`);
//! 2. a streaming pass (quick-xml) that refuses a DOCTYPE (so no entity is ever defined,
//!    let alone expanded, and nothing external is fetched), processing instructions other
//!    than the XML declaration, nesting deeper than `DEPTH_MAX`, and a root that is not
//!    the expected message's `Document` in its namespace; it collects the leaves;
//! 3. libxml2 parses again (no network, no DTD, no recovery) and validates the document
//!    against the schema.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use std::cell::RefCell;
use std::collections::HashMap;

/// Largest message read. A pacs.008 of one transaction with every optional part is a few
/// KiB; the bound is far above any real one and far below harm.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Deepest nesting read. The deepest path of the messages used here is about 12 elements.
pub const DEPTH_MAX: usize = 32;

/// Most leaves read from one message.
const LEAVES_MAX: usize = 2_000;

/// The messages the switch reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// FI-to-FI customer credit transfer.
    Pacs008,
    /// FI-to-FI payment status report.
    Pacs002,
    /// Payment return.
    Pacs004,
    /// FI-to-FI payment cancellation request (a recall).
    Camt056,
}

impl Kind {
    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Pacs008 => "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.09",
            Kind::Pacs002 => "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.11",
            Kind::Pacs004 => "urn:iso:std:iso:20022:tech:xsd:pacs.004.001.10",
            Kind::Camt056 => "urn:iso:std:iso:20022:tech:xsd:camt.056.001.09",
        }
    }

    /// The message name id (`OrgnlMsgNmId` of a status report).
    pub fn name_id(self) -> &'static str {
        match self {
            Kind::Pacs008 => "pacs.008.001.09",
            Kind::Pacs002 => "pacs.002.001.11",
            Kind::Pacs004 => "pacs.004.001.10",
            Kind::Camt056 => "camt.056.001.09",
        }
    }

    /// Where the message's own id is (a refusal names it).
    pub fn message_id_path(self) -> &'static str {
        match self {
            Kind::Pacs008 => "FIToFICstmrCdtTrf/GrpHdr/MsgId",
            Kind::Pacs002 => "FIToFIPmtStsRpt/GrpHdr/MsgId",
            Kind::Pacs004 => "PmtRtr/GrpHdr/MsgId",
            Kind::Camt056 => "FIToFIPmtCxlReq/Assgnmt/Id",
        }
    }

    fn schema(self) -> &'static [u8] {
        match self {
            Kind::Pacs008 => include_bytes!("../../schemas/pacs.008.001.09.xsd"),
            Kind::Pacs002 => include_bytes!("../../schemas/pacs.002.001.11.xsd"),
            Kind::Pacs004 => include_bytes!("../../schemas/pacs.004.001.10.xsd"),
            Kind::Camt056 => include_bytes!("../../schemas/camt.056.001.09.xsd"),
        }
    }
}

/// Why a message was refused: the text goes into the answer's `AddtlInf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

/// A message's leaves: each element holding text, by its path of local names below
/// `Document` (`FIToFICstmrCdtTrf/GrpHdr/MsgId`), with its `Ccy` attribute if any.
#[derive(Debug, Default)]
pub struct Leaves(Vec<(String, String, Option<String>)>);

impl Leaves {
    /// The text of the first leaf at `path`.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.0.iter().find(|(p, _, _)| p == path).map(|(_, text, _)| text.as_str())
    }

    /// The text and `Ccy` of the first amount at `path`.
    pub fn amount(&self, path: &str) -> Option<(&str, &str)> {
        self.0.iter().find(|(p, _, _)| p == path).and_then(|(_, text, ccy)| Some((text.as_str(), ccy.as_deref()?)))
    }

    /// How many leaves lie under `prefix` and end at `leaf` (to count repeated blocks).
    pub fn count(&self, path: &str) -> usize {
        self.0.iter().filter(|(p, _, _)| p == path).count()
    }
}

thread_local! {
    /// Compiled schemas, per thread: libxml2's validation contexts are not shared between
    /// threads. Compiling one takes milliseconds, once per blocking thread and kind.
    static VALIDATORS: RefCell<HashMap<Kind, libxml::schemas::SchemaValidationContext>> =
        RefCell::new(HashMap::new());
}

/// Reads a message of `kind`: bounded, scanned, validated against its schema. Blocking
/// (libxml2): call it off the async threads.
pub fn read(kind: Kind, bytes: &[u8]) -> Result<Leaves, XmlError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(XmlError(format!("the message is larger than {MESSAGE_BYTES_MAX} bytes")));
    }
    let leaves = scan(kind, bytes)?;
    validate(kind, bytes)?;
    Ok(leaves)
}

/// Checks a message the switch wrote against its schema (a failure is the switch's bug).
pub fn check_written(kind: Kind, text: &str) -> Result<(), XmlError> {
    validate(kind, text.as_bytes())
}

fn scan(kind: Kind, bytes: &[u8]) -> Result<Leaves, XmlError> {
    let refuse = |what: String| Err(XmlError(what));
    let mut reader = quick_xml::NsReader::from_reader(bytes);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = true;
    let mut path: Vec<String> = Vec::new();
    let mut leaves = Vec::new();
    let mut text = String::new();
    let mut ccy: Option<String> = None;
    let mut buffer = Vec::new();
    let mut seen_root = false;
    loop {
        let event = reader.read_resolved_event_into(&mut buffer);
        match event {
            Err(error) => return refuse(format!("not well-formed XML: {error}")),
            Ok((_, Event::DocType(_))) => return refuse("a DOCTYPE is not allowed".into()),
            Ok((_, Event::PI(_))) => return refuse("processing instructions are not allowed".into()),
            Ok((namespace, Event::Start(start))) => {
                let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    if seen_root {
                        return refuse("more than one root element".into());
                    }
                    seen_root = true;
                    let expected = kind.namespace().as_bytes();
                    let in_namespace = matches!(namespace, ResolveResult::Bound(ns) if ns.as_ref() == expected);
                    if local != "Document" || !in_namespace {
                        return refuse(format!("the root must be Document in namespace {}", kind.namespace()));
                    }
                }
                if path.len() >= DEPTH_MAX {
                    return refuse(format!("elements nest deeper than {DEPTH_MAX}"));
                }
                ccy = None;
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| XmlError(format!("a bad attribute: {e}")))?;
                    if attribute.key.local_name().as_ref() == b"Ccy" {
                        let value =
                            attribute.unescape_value().map_err(|e| XmlError(format!("a bad attribute: {e}")))?;
                        ccy = Some(value.into_owned());
                    }
                }
                path.push(local);
                text.clear();
            }
            Ok((_, Event::Text(chunk))) => {
                let chunk = chunk.unescape().map_err(|e| XmlError(format!("bad text: {e}")))?;
                text.push_str(&chunk);
            }
            Ok((_, Event::CData(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok((_, Event::End(_))) => {
                let trimmed = text.trim();
                if !trimmed.is_empty() {
                    if leaves.len() >= LEAVES_MAX {
                        return refuse(format!("more than {LEAVES_MAX} elements"));
                    }
                    // Below Document: the path without the root.
                    leaves.push((path[1..].join("/"), trimmed.to_string(), ccy.take()));
                }
                text.clear();
                path.pop();
            }
            Ok((_, Event::Eof)) => break,
            Ok(_) => {}
        }
        buffer.clear();
    }
    if !seen_root {
        return refuse("no root element".into());
    }
    Ok(Leaves(leaves))
}

fn validate(kind: Kind, bytes: &[u8]) -> Result<(), XmlError> {
    let options = libxml::parser::ParserOptions {
        recover: false,
        no_def_dtd: true,
        no_error: true,
        no_warning: true,
        no_net: true,
        huge: false,
        ..Default::default()
    };
    let document = libxml::parser::Parser::default()
        .parse_string_with_options(bytes, options)
        .map_err(|_| XmlError("not well-formed XML".into()))?;
    VALIDATORS.with(|cell| {
        let mut validators = cell.borrow_mut();
        let validator = match validators.entry(kind) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let mut parser = libxml::schemas::SchemaParserContext::from_buffer(kind.schema());
                let context = libxml::schemas::SchemaValidationContext::from_parser(&mut parser)
                    .map_err(|_| XmlError(format!("the {} schema did not compile", kind.name_id())))?;
                entry.insert(context)
            }
        };
        validator.validate_document(&document).map_err(|errors| {
            let first = errors.first().and_then(|e| e.message.clone()).unwrap_or_default();
            let first = first.trim().replace("{urn:iso:std:iso:20022:tech:xsd:", "{");
            XmlError(format!("does not validate against {}: {first}", kind.name_id()))
        })
    })
}

/// Text made safe for element content: escaped, characters XML 1.0 forbids dropped, cut
/// to `max_chars` characters.
pub fn text(value: &str, max_chars: usize) -> String {
    let kept: String = value
        .chars()
        .filter(|c| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}'))
        .take(max_chars)
        .collect();
    quick_xml::escape::escape(kept.as_str()).into_owned()
}

/// `YYYY-MM-DDThh:mm:ss.mmm+00:00` of a Unix time in milliseconds (`ISODateTime`).
pub fn datetime(unix_ms: u64) -> String {
    let days = (unix_ms / 86_400_000) as i64;
    let (year, month, day) = junction_wire::calendar::civil_from_days(days);
    let in_day = unix_ms % 86_400_000;
    let (hours, minutes, seconds, millis) =
        (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}+00:00")
}

/// `YYYY-MM-DD` (`ISODate`).
pub fn date(unix_ms: u64) -> String {
    let (year, month, day) = junction_wire::calendar::civil_from_days((unix_ms / 86_400_000) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NS: &str = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.11";

    fn status_report(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{NS}"><FIToFIPmtStsRpt><GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-12-07T10:00:00.000+00:00</CreDtTm></GrpHdr>{body}</FIToFIPmtStsRpt></Document>"#
        )
    }

    #[test]
    fn a_valid_message_reads_with_its_leaves() {
        let xml =
            status_report("<TxInfAndSts><OrgnlEndToEndId>E2E-1</OrgnlEndToEndId><TxSts>ACSC</TxSts></TxInfAndSts>");
        let leaves = read(Kind::Pacs002, xml.as_bytes()).unwrap();
        assert_eq!(leaves.text("FIToFIPmtStsRpt/TxInfAndSts/TxSts"), Some("ACSC"));
        assert_eq!(leaves.text("FIToFIPmtStsRpt/GrpHdr/MsgId"), Some("M1"));
        // A prefixed namespace is the same namespace.
        let prefixed = xml.replace("<Document xmlns=", "<p:Document xmlns:p=").replace("</Document>", "</p:Document>");
        let prefixed = prefixed.replace("<FIToFIPmtStsRpt>", "<p:FIToFIPmtStsRpt>");
        assert!(read(Kind::Pacs002, prefixed.as_bytes()).is_err(), "children without the prefix are in no namespace");
    }

    #[test]
    fn hostile_and_invalid_messages_are_refused() {
        let valid = status_report("");
        assert!(read(Kind::Pacs002, valid.as_bytes()).is_ok());
        // Entities: never defined, never expanded.
        let laughs = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>{}",
            status_report("").trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        );
        assert!(read(Kind::Pacs002, laughs.as_bytes()).unwrap_err().0.contains("DOCTYPE"));
        let external = "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><d>&x;</d>";
        assert!(read(Kind::Pacs002, external.as_bytes()).unwrap_err().0.contains("DOCTYPE"));
        // Deep nesting, size, the wrong namespace, the wrong message, not XML, a schema error.
        let deep = format!("<Document xmlns=\"{NS}\">{}{}</Document>", "<a>".repeat(100), "</a>".repeat(100));
        assert!(read(Kind::Pacs002, deep.as_bytes()).unwrap_err().0.contains("deeper"));
        let huge = valid.replace("M1", &"M".repeat(MESSAGE_BYTES_MAX));
        assert!(read(Kind::Pacs002, huge.as_bytes()).unwrap_err().0.contains("larger"));
        let wrong_ns = valid.replace("pacs.002.001.11", "pacs.002.001.10");
        assert!(read(Kind::Pacs002, wrong_ns.as_bytes()).unwrap_err().0.contains("namespace"));
        assert!(read(Kind::Pacs008, valid.as_bytes()).unwrap_err().0.contains("namespace"));
        assert!(read(Kind::Pacs002, b"{\"json\": true}").is_err());
        assert!(read(Kind::Pacs002, valid.replace("</GrpHdr>", "").as_bytes()).is_err());
        let too_long = valid.replace("M1", &"M".repeat(36));
        assert!(read(Kind::Pacs002, too_long.as_bytes()).unwrap_err().0.contains("validate"));
    }

    #[test]
    fn dates_are_iso() {
        assert_eq!(datetime(1_796_644_800_123), "2026-12-07T12:00:00.123+00:00");
        assert_eq!(date(1_796_644_800_123), "2026-12-07");
    }
}
