//! Which acquirer takes a merchant QR: the `[[qr_routes]]` table.
//!
//! A payload may name several schemes (a QRIS code that UnionPay also accepts); they are
//! tried in the parser's precedence (UnionPay, Pix, PromptPay, QRIS, other) and the first
//! one with a route whose acquirer settles in the QR's currency (ID 53) wins. Within a
//! scheme an exact identifier wins over prefixes, and a longer prefix over a shorter one.

use super::auth::Signers;
use crate::config::{parse_scheme, QrRouteConfig};
use junction_ledger::{Currency, ParticipantId};
use junction_wire::qr::{QrPayload, Scheme, SchemeMatch};
use rustc_hash::FxHashMap;

const SCHEMES: usize = 5;

fn scheme_index(scheme: Scheme) -> usize {
    match scheme {
        Scheme::UnionPay => 0,
        Scheme::Pix => 1,
        Scheme::PromptPay => 2,
        Scheme::Qris => 3,
        Scheme::Other => 4,
    }
}

#[derive(Default)]
struct SchemeRoutes {
    exact: FxHashMap<String, ParticipantId>,
    /// Longest first.
    prefixes: Vec<(String, ParticipantId)>,
}

impl SchemeRoutes {
    fn find(&self, identifier: &str) -> Option<ParticipantId> {
        self.exact.get(identifier).copied().or_else(|| {
            self.prefixes.iter().find(|(prefix, _)| identifier.starts_with(prefix.as_str())).map(|(_, id)| *id)
        })
    }
}

pub struct Routes {
    by_scheme: [SchemeRoutes; SCHEMES],
}

/// Why a payload has no acquirer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable(pub String);

impl Routes {
    /// From the validated configuration.
    pub fn new(routes: &[QrRouteConfig]) -> Result<Routes, String> {
        let mut by_scheme: [SchemeRoutes; SCHEMES] = Default::default();
        for route in routes {
            let scheme =
                parse_scheme(&route.scheme).ok_or_else(|| format!("qr_routes: unknown scheme {:?}", route.scheme))?;
            let table = &mut by_scheme[scheme_index(scheme)];
            let acquirer = ParticipantId(route.acquirer);
            match (&route.identifier, &route.identifier_prefix) {
                (Some(exact), _) => {
                    table.exact.insert(exact.clone(), acquirer);
                }
                (None, Some(prefix)) => table.prefixes.push((prefix.clone(), acquirer)),
                (None, None) => return Err("qr_routes: a rule needs identifier or identifier_prefix".into()),
            }
        }
        for table in &mut by_scheme {
            table.prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        }
        Ok(Routes { by_scheme })
    }

    /// The scheme match to pay through and its acquirer.
    pub fn route<'a>(
        &self,
        payload: &'a QrPayload,
        currency: Currency,
        signers: &Signers,
    ) -> Result<(&'a SchemeMatch, ParticipantId), Unroutable> {
        let mut wrong_currency = None;
        for candidate in payload.schemes() {
            let key = &candidate.key;
            let Some(acquirer) = self.by_scheme[scheme_index(key.scheme)].find(&key.identifier) else { continue };
            match signers.get(acquirer) {
                Some(known) if known.settles_in(currency) => return Ok((candidate, acquirer)),
                _ => {
                    wrong_currency.get_or_insert_with(|| {
                        format!(
                            "{} merchant {:?} is acquired by participant {}, which does not settle in {currency}",
                            key.scheme.as_str(),
                            key.identifier,
                            acquirer.0
                        )
                    });
                }
            }
        }
        Err(Unroutable(wrong_currency.unwrap_or_else(|| {
            let key = &payload.scheme().key;
            format!("no acquirer is routed for {} merchant {:?}", key.scheme.as_str(), key.identifier)
        })))
    }
}
