//! BIN routing: which issuer a card number belongs to, and how the switch authorizes it.
//!
//! A route names a card number prefix of 6 to 11 digits (the longest that matches wins),
//! the issuer participant, and a mode:
//!
//! | mode | the switch |
//! |---|---|
//! | `host` | forwards the request to the issuer's host and relays its answer; a host that is down or late gets 91 |
//! | `host_with_stand_in` | forwards; when the host is down or late, authorizes on the issuer's behalf under the route's stand-in limits and tells the issuer with an advice |
//! | `switch` | authorizes on its own books, as for a card with no route |
//!
//! A device token routes by the BIN of its token range. The table is swapped whole when it
//! changes (at runtime through the admin API), so a lookup never waits.

use arc_swap::ArcSwap;
use junction_ledger::ParticipantId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Shortest and longest card number prefix a route may name.
pub const BIN_DIGITS_MIN: usize = 6;
pub const BIN_DIGITS_MAX: usize = 11;

/// Routes one table may hold.
pub const BIN_ROUTES_MAX: usize = 100_000;

/// How the switch authorizes the cards of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    Host,
    HostWithStandIn,
    Switch,
}

/// What the switch may approve on an issuer's behalf while its host is unreachable. Zero
/// means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct StandInLimits {
    /// Largest amount of one request, in minor units.
    #[serde(default)]
    pub amount_per_transaction_max: u64,
    /// Stand-in approvals per card per rolling day.
    #[serde(default)]
    pub count_per_card_per_day_max: u32,
    /// Amount approved in stand-in per card per rolling day, in minor units.
    #[serde(default)]
    pub amount_per_card_per_day_max: u64,
}

/// One route of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BinRoute {
    /// 6 to 11 digits.
    pub prefix: String,
    pub issuer: ParticipantId,
    pub mode: RouteMode,
    #[serde(default)]
    pub stand_in: StandInLimits,
}

impl BinRoute {
    pub fn target(&self) -> RouteTarget {
        RouteTarget { issuer: self.issuer, mode: self.mode, stand_in: self.stand_in }
    }
}

/// Where a card's requests go: a route without its prefix (copied per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTarget {
    pub issuer: ParticipantId,
    pub mode: RouteMode,
    pub stand_in: StandInLimits,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("BIN prefix {0:?} is not {BIN_DIGITS_MIN} to {BIN_DIGITS_MAX} digits")]
    BadPrefix(String),
    #[error("BIN prefix {0} is named twice")]
    Duplicate(String),
    #[error("a BIN table holds at most {BIN_ROUTES_MAX} routes")]
    TooMany,
}

/// Routes by prefix, immutable; see `BinRoutes` for the live table.
#[derive(Debug, Default)]
pub struct BinTable {
    routes: BTreeMap<String, BinRoute>,
}

impl BinTable {
    pub fn new(routes: Vec<BinRoute>) -> Result<BinTable, RouteError> {
        if routes.len() > BIN_ROUTES_MAX {
            return Err(RouteError::TooMany);
        }
        let mut table = BTreeMap::new();
        for route in routes {
            let digits = route.prefix.len();
            if !(BIN_DIGITS_MIN..=BIN_DIGITS_MAX).contains(&digits) || !route.prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(RouteError::BadPrefix(route.prefix));
            }
            if table.contains_key(&route.prefix) {
                return Err(RouteError::Duplicate(route.prefix));
            }
            table.insert(route.prefix.clone(), route);
        }
        Ok(BinTable { routes: table })
    }

    /// The route of the longest prefix of `pan` in the table.
    pub fn route(&self, pan: &str) -> Option<&BinRoute> {
        (BIN_DIGITS_MIN..=BIN_DIGITS_MAX.min(pan.len())).rev().find_map(|digits| self.routes.get(pan.get(..digits)?))
    }

    pub fn routes(&self) -> impl Iterator<Item = &BinRoute> {
        self.routes.values()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The live table: read without waiting, replaced whole.
#[derive(Default)]
pub struct BinRoutes {
    table: ArcSwap<BinTable>,
}

impl BinRoutes {
    pub fn route(&self, pan: &str) -> Option<RouteTarget> {
        let table = self.table.load();
        if table.is_empty() {
            return None;
        }
        table.route(pan).map(BinRoute::target)
    }

    pub fn table(&self) -> Arc<BinTable> {
        self.table.load_full()
    }

    pub fn replace(&self, table: BinTable) {
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, issuer: u64, mode: RouteMode) -> BinRoute {
        BinRoute { prefix: prefix.into(), issuer: ParticipantId(issuer), mode, stand_in: StandInLimits::default() }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let table = BinTable::new(vec![
            route("400000", 1, RouteMode::Host),
            route("40000012345", 2, RouteMode::Switch),
            route("4000009", 3, RouteMode::HostWithStandIn),
        ])
        .unwrap();
        assert_eq!(table.route("4000001234567899").unwrap().issuer, ParticipantId(2));
        assert_eq!(table.route("4000009999999999").unwrap().issuer, ParticipantId(3));
        assert_eq!(table.route("4000001111111111").unwrap().issuer, ParticipantId(1));
        assert!(table.route("5100001111111111").is_none());
        assert!(table.route("40000").is_none());
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(matches!(BinTable::new(vec![route("40000", 1, RouteMode::Host)]), Err(RouteError::BadPrefix(_))));
        assert!(matches!(
            BinTable::new(vec![route("4000001234567", 1, RouteMode::Host)]),
            Err(RouteError::BadPrefix(_))
        ));
        assert!(matches!(BinTable::new(vec![route("40000a", 1, RouteMode::Host)]), Err(RouteError::BadPrefix(_))));
        let twice = vec![route("400000", 1, RouteMode::Host), route("400000", 2, RouteMode::Host)];
        assert!(matches!(BinTable::new(twice), Err(RouteError::Duplicate(_))));
    }
}
