//! Validating a row: the settings a scan validates with ([`ReadOptions`]), why a row is not
//! used ([`Reason`]), the checks in their order, and the first implausible event time
//! ([`future_limit`]).

use std::sync::Arc;

use arrow_array::Array;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::decode::{Columns, Text, NULL_TIME};
use super::dedup::Duplicates;
use crate::batch::Codes;
use crate::events::{EventKind, EventTypeMap};
use crate::time::{MAX_TIME_US, MIN_TIME_US};

/// Why a row was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NullCustomerId,
    EmptyCustomerId,
    NullEventTime,
    TimeOutOfRange,
    /// Later than the wall clock (or a later `--as-of`) plus `validation.max_future`: a
    /// clock or unit error upstream, not data to score.
    FutureEvent,
    NullEventType,
    NonFiniteAmount,
    AmountOutOfRange,
    NegativeAmount,
    /// A later row with the event_id (or event type + order_id) of an earlier one.
    DuplicateKey,
    /// Valid, but at or after the as-of cutoff (a backfill): counted, not copied.
    AfterAsOf,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NullCustomerId => "null_customer_id",
            Reason::EmptyCustomerId => "empty_customer_id",
            Reason::NullEventTime => "null_event_time",
            Reason::TimeOutOfRange => "time_out_of_range",
            Reason::FutureEvent => "future_event",
            Reason::NullEventType => "null_event_type",
            Reason::NonFiniteAmount => "non_finite_amount",
            Reason::AmountOutOfRange => "amount_out_of_range",
            Reason::NegativeAmount => "negative_amount",
            Reason::DuplicateKey => "duplicate_key",
            Reason::AfterAsOf => "after_as_of",
        }
    }

    /// Whether rows rejected for this reason are copied to `rejects.parquet`.
    pub fn copied(self) -> bool {
        self != Reason::AfterAsOf
    }
}

/// What a scan needs to know to validate rows.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Rows at or after this time are counted as `after_as_of` (`i64::MAX`: none).
    pub as_of_us: i64,
    /// Rows at or after this time are rejected as `future_event` (`i64::MAX`: none); see
    /// [`future_limit`].
    pub future_us: i64,
    pub max_abs_amount: f64,
    pub event_types: EventTypeMap,
    /// Rows to reject as `duplicate_key` (from [`super::duplicate_rows`]); `None`: none.
    pub duplicates: Option<Arc<Duplicates>>,
    /// Whether the caller should look for duplicates (config `validation.deduplicate`).
    pub deduplicate: bool,
    /// The reject-share gate the caller applies ([`super::ScanStats::check_reject_share`]; config
    /// `validation.max_reject_share`).
    pub max_reject_share: f64,
    /// Read only the rows of one shard of the customers (`run --memory-limit`); `None`: all.
    pub shard: Option<Shard>,
}

/// One of `count` hash shards of the customers. A row belongs to the shard of its customer id;
/// a row without a usable id (null or blank) to shard 0, so that it is counted and rejected
/// exactly once over the shards. Rows of other shards are skipped before anything is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The shard of a customer id's [`crate::batch::value_code`] among `count`: the hash is
    /// re-mixed, so that a shard's customers still spread over every scan partition and
    /// hash-table bucket (which read other bits of the same hash).
    pub fn of_hash(hash: u64, count: u32) -> u32 {
        let mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        (mixed % u64::from(count.max(1))) as u32
    }
}

impl Default for ReadOptions {
    /// No as-of cutoff, no future limit, amounts up to 1e9, the standard event vocabulary, no deduplication.
    fn default() -> Self {
        ReadOptions {
            as_of_us: i64::MAX,
            future_us: i64::MAX,
            max_abs_amount: 1e9,
            event_types: EventTypeMap::default(),
            duplicates: None,
            deduplicate: false,
            max_reject_share: 1.0,
            shard: None,
        }
    }
}

/// The first implausible event time: rows at or after `max(now, as_of) + max_future` are
/// rejected as `future_event` (all times in µs; `as_of` only when the user gave it).
///
/// The reference is the wall clock when the run started, or a later `--as-of` (scoring as of
/// a future date is allowed; rows up to it are then plausible). A backfill (`--as-of` in the
/// past) keeps the wall clock as reference, so its rows after as-of stay valid data, counted
/// as `after_as_of` and not copied, and never become `future_event`. When the as-of comes
/// from the data, it is computed with this same limit ([`super::latest_event_time`]), so a row the
/// default as-of ignored is never used either.
pub fn future_limit(now_us: i64, as_of_given_us: Option<i64>, max_future_us: i64) -> i64 {
    now_us
        .max(as_of_given_us.unwrap_or(i64::MIN))
        .saturating_add(max_future_us.max(0))
}

/// What the validator keeps of a valid row.
pub(super) struct Valid {
    pub(super) customer: u32,
    pub(super) time_us: i64,
    pub(super) kind: EventKind,
    pub(super) known: bool,
    /// NaN when absent.
    pub(super) amount: f64,
}

impl Columns<'_> {
    /// Validates row `i`.
    pub(super) fn check(
        &self,
        i: usize,
        opts: &ReadOptions,
        kinds: &mut FxHashMap<String, (EventKind, bool)>,
    ) -> Result<Valid, Reason> {
        let customer = self.customer.keys[i];
        if customer == Codes::NONE {
            return Err(Reason::NullCustomerId);
        }
        if self.customer.blank[customer as usize] {
            return Err(Reason::EmptyCustomerId);
        }
        let time_us = self.times[i];
        if time_us == NULL_TIME {
            return Err(Reason::NullEventTime);
        }
        if !(MIN_TIME_US..MAX_TIME_US).contains(&time_us) {
            return Err(Reason::TimeOutOfRange);
        }
        if time_us >= opts.future_us {
            return Err(Reason::FutureEvent);
        }
        let (kind, known) = match &self.kind {
            Text::Dict(keys, _) => {
                if keys.is_null(i) {
                    return Err(Reason::NullEventType);
                }
                self.kind_by_key[keys.value(i) as usize]
            }
            other => {
                let raw = other.get(i).ok_or(Reason::NullEventType)?;
                match kinds.get(raw) {
                    Some(k) => *k,
                    None => {
                        let k = opts.event_types.classify(raw);
                        kinds.insert(raw.to_string(), k);
                        k
                    }
                }
            }
        };
        let amount = match &self.amount {
            Some(a) if !a.is_null(i) => {
                let v = a.value(i);
                if !v.is_finite() {
                    return Err(Reason::NonFiniteAmount);
                }
                if v.abs() > opts.max_abs_amount {
                    return Err(Reason::AmountOutOfRange);
                }
                if v < 0.0 {
                    return Err(Reason::NegativeAmount);
                }
                v
            }
            _ => f64::NAN,
        };
        if time_us >= opts.as_of_us {
            return Err(Reason::AfterAsOf);
        }
        Ok(Valid {
            customer,
            time_us,
            kind,
            known,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY_US;

    #[test]
    fn the_future_limit_follows_the_later_of_clock_and_given_as_of() {
        let (now, day) = (100 * DAY_US, DAY_US);
        // Wall clock only (default as-of, or a backfill).
        assert_eq!(future_limit(now, None, day), 101 * DAY_US);
        assert_eq!(future_limit(now, Some(40 * DAY_US), day), 101 * DAY_US);
        // A later --as-of moves the limit with it.
        assert_eq!(future_limit(now, Some(200 * DAY_US), day), 201 * DAY_US);
        // No overflow at the ends; a negative tolerance counts as none.
        assert_eq!(future_limit(i64::MAX - 1, None, day), i64::MAX);
        assert_eq!(future_limit(now, None, -day), now);
    }
}
