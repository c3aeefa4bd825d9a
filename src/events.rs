//! The event vocabulary (listed in docs/config.md, `[events]`) and how raw `event_type` values map to it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of customer event. Raw values are matched case-insensitively after trimming;
/// anything unrecognised is [`EventKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Purchase,
    Refund,
    PageView,
    SessionStart,
    AddToCart,
    CheckoutStart,
    SupportTicket,
    EmailOpen,
    EmailClick,
    SmsClick,
    Review,
    Referral,
    CommunityPost,
    Other,
}

impl EventKind {
    /// Every kind, in a fixed order (the order of counts in summaries).
    pub const ALL: [EventKind; 14] = [
        EventKind::Purchase,
        EventKind::Refund,
        EventKind::PageView,
        EventKind::SessionStart,
        EventKind::AddToCart,
        EventKind::CheckoutStart,
        EventKind::SupportTicket,
        EventKind::EmailOpen,
        EventKind::EmailClick,
        EventKind::SmsClick,
        EventKind::Review,
        EventKind::Referral,
        EventKind::CommunityPost,
        EventKind::Other,
    ];

    /// The canonical snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Purchase => "purchase",
            EventKind::Refund => "refund",
            EventKind::PageView => "page_view",
            EventKind::SessionStart => "session_start",
            EventKind::AddToCart => "add_to_cart",
            EventKind::CheckoutStart => "checkout_start",
            EventKind::SupportTicket => "support_ticket",
            EventKind::EmailOpen => "email_open",
            EventKind::EmailClick => "email_click",
            EventKind::SmsClick => "sms_click",
            EventKind::Review => "review",
            EventKind::Referral => "referral",
            EventKind::CommunityPost => "community_post",
            EventKind::Other => "other",
        }
    }

    /// Parses a canonical name (case-insensitive); `None` for anything else.
    pub fn from_name(name: &str) -> Option<EventKind> {
        let lower = name.trim().to_ascii_lowercase();
        EventKind::ALL.into_iter().find(|k| k.as_str() == lower)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps raw `event_type` values to [`EventKind`]: the canonical names plus the user's aliases
/// from config `[event_types]` (`"order" = "purchase"`), all case-insensitive.
#[derive(Debug, Clone, Default)]
pub struct EventTypeMap {
    aliases: BTreeMap<String, EventKind>,
}

impl EventTypeMap {
    /// Builds the map; `aliases` keys are raw values, values canonical names.
    pub fn new(aliases: &BTreeMap<String, EventKind>) -> EventTypeMap {
        EventTypeMap {
            aliases: aliases
                .iter()
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), *v))
                .collect(),
        }
    }

    /// The kind of a raw value, and whether it was recognised.
    pub fn classify(&self, raw: &str) -> (EventKind, bool) {
        let lower = raw.trim().to_ascii_lowercase();
        if let Some(kind) = self.aliases.get(&lower) {
            return (*kind, true);
        }
        match EventKind::from_name(&lower) {
            Some(kind) => (kind, kind != EventKind::Other || lower == "other"),
            None => (EventKind::Other, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_case_insensitively() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        let map = EventTypeMap::default();
        assert_eq!(map.classify(" Purchase "), (EventKind::Purchase, true));
        assert_eq!(map.classify("ADD_TO_CART"), (EventKind::AddToCart, true));
        assert_eq!(map.classify("wishlist"), (EventKind::Other, false));
        assert_eq!(map.classify("other"), (EventKind::Other, true));
    }

    #[test]
    fn aliases_take_precedence() {
        let mut aliases = BTreeMap::new();
        aliases.insert("Order".to_string(), EventKind::Purchase);
        let map = EventTypeMap::new(&aliases);
        assert_eq!(map.classify("ORDER"), (EventKind::Purchase, true));
    }
}
