//! Row accounting of a scan ([`ScanStats`]: every row read is used or rejected, by reason,
//! event type and file) and the reject-share quality gate ([`TooManyRejects`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::validate::Reason;
use crate::events::EventKind;

/// Too large a share of the input was unusable (a quality gate: nothing is published).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{:.1}% of rows rejected ({rejected} of {considered} not after as-of) exceeds validation.max_reject_share {limit}; top reasons: {top}",
    100.0 * share
)]
pub struct TooManyRejects {
    pub share: f64,
    pub limit: f64,
    pub rejected: u64,
    pub considered: u64,
    /// The commonest reasons with counts, e.g. `null_customer_id 900, future_event 12`.
    pub top: String,
}

/// Row accounting of a scan: every row read is used or rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanStats {
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rejected_by_reason: BTreeMap<Reason, u64>,
    pub event_types: BTreeMap<EventKind, u64>,
    /// Raw event_type values that mapped to `other`, with counts.
    pub unknown_event_types: BTreeMap<String, u64>,
    /// Earliest and latest used event time (µs).
    pub min_time_us: Option<i64>,
    pub max_time_us: Option<i64>,
    /// Rows per input file, in input order.
    pub rows_per_file: BTreeMap<String, u64>,
}

impl ScanStats {
    pub(super) fn reject(&mut self, reason: Reason) {
        self.rows_rejected += 1;
        *self.rejected_by_reason.entry(reason).or_insert(0) += 1;
    }

    /// Adds another partial's counts to this one.
    pub fn merge(mut self, other: ScanStats) -> ScanStats {
        self.rows_read += other.rows_read;
        self.rows_used += other.rows_used;
        self.rows_rejected += other.rows_rejected;
        for (k, v) in other.rejected_by_reason {
            *self.rejected_by_reason.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.event_types {
            *self.event_types.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.unknown_event_types {
            *self.unknown_event_types.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.rows_per_file {
            *self.rows_per_file.entry(k).or_insert(0) += v;
        }
        self.min_time_us = opt_min(self.min_time_us, other.min_time_us);
        self.max_time_us = opt_max(self.max_time_us, other.max_time_us);
        self
    }

    /// Rows rejected as unusable: every reason except `after_as_of` (valid rows merely
    /// outside the window).
    pub fn unusable(&self) -> u64 {
        self.rows_rejected
            - self
                .rejected_by_reason
                .get(&Reason::AfterAsOf)
                .copied()
                .unwrap_or(0)
    }

    /// Share of the rows not merely after as-of that were unusable:
    /// `unusable / (used + unusable)`; 0 when there are none.
    pub fn reject_share(&self) -> f64 {
        let bad = self.unusable();
        let considered = self.rows_used + bad;
        if considered == 0 {
            0.0
        } else {
            bad as f64 / considered as f64
        }
    }

    /// The reject-share gate: `Err` when [`ScanStats::reject_share`] exceeds `limit`, naming
    /// the share, the limit and the three commonest reasons.
    pub fn check_reject_share(&self, limit: f64) -> Result<(), TooManyRejects> {
        let share = self.reject_share();
        if share <= limit {
            return Ok(());
        }
        let mut reasons: Vec<(Reason, u64)> = self
            .rejected_by_reason
            .iter()
            .filter(|(r, _)| **r != Reason::AfterAsOf)
            .map(|(r, n)| (*r, *n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(TooManyRejects {
            share,
            limit,
            rejected: self.unusable(),
            considered: self.rows_used + self.unusable(),
            top,
        })
    }

    /// The rejected counts as one line, e.g. `null_customer_id 3, after_as_of 10`.
    pub fn reasons_line(&self) -> String {
        if self.rejected_by_reason.is_empty() {
            return "none".into();
        }
        self.rejected_by_reason
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(super) fn opt_min(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

pub(super) fn opt_max(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reject_share_leaves_out_rows_after_as_of() {
        let mut s = ScanStats {
            rows_read: 1000,
            rows_used: 600,
            rows_rejected: 400,
            ..ScanStats::default()
        };
        s.rejected_by_reason.insert(Reason::AfterAsOf, 300);
        s.rejected_by_reason.insert(Reason::NullCustomerId, 60);
        s.rejected_by_reason.insert(Reason::FutureEvent, 30);
        s.rejected_by_reason.insert(Reason::DuplicateKey, 10);
        assert_eq!(s.unusable(), 100);
        assert_eq!(s.reject_share(), 100.0 / 700.0);
        assert_eq!(s.check_reject_share(0.15), Ok(()));
        let e = s.check_reject_share(0.1).expect_err("over the limit");
        assert_eq!(
            e.to_string(),
            "14.3% of rows rejected (100 of 700 not after as-of) exceeds validation.max_reject_share 0.1; top reasons: null_customer_id 60, future_event 30, duplicate_key 10"
        );
        assert_eq!(ScanStats::default().reject_share(), 0.0);
    }
}
