//! `churnclv cuts` in bounded memory: the whole table's cut points from every bucket's raw
//! file without holding every customer's keys — the rank selection of [`crate::select`] over
//! passes on the raw files. The first pass merges the files in customer_id order (each is
//! sorted, as `score --raw` writes it), which checks every key and that each customer is in
//! one file only, and counts each column's keys by range; the next passes read the files one
//! after another and keep only the keys of the ranges that hold a cut point. The result is
//! exactly [`Cuts::of`]'s (the unit tests and `tests/sharded.rs` compare them).

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, PrimitiveArray, RecordBatch};

use crate::cuts::{Cuts, Key, RankCuts};
use crate::error::{Error, Result};
use crate::io::sorted_merge::{MergeError, SortedMerge};
use crate::select::{select, Passes, Target};
use crate::stages::sharded::{open_reader, raw_schema, ShardedError};

/// The keys held for sorting per range (~40 B each, at most ~20 ranges at once): ~50 MB at
/// most, whatever the number of customers. Fewer means more passes over the raw files.
pub const BUDGET: usize = 1 << 16;

/// Rows per batch read from a raw file (the merge holds one batch of every file).
const BATCH_ROWS: usize = 4096;

const FLAG: &str = "--raw";
const NAMES: [&str; 4] = ["recency_key", "frequency_key", "monetary_key", "clv"];

/// The columns selected in: the four rank keys ascending, then CLV descending (the VIP order:
/// CLV descending, ties by id ascending).
const VIP: usize = 4;

/// A f64 as a u64 whose order is `f64::total_cmp`'s.
fn order_bits(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

fn from_order_bits(e: u64) -> f64 {
    f64::from_bits(if e >> 63 == 1 { e & !(1 << 63) } else { !e })
}

/// The key of (value, id) in `column`: bytes whose order is the ranking's.
fn key_into(buf: &mut Vec<u8>, column: usize, v: f64, id: &str) {
    buf.clear();
    let bits = order_bits(v);
    buf.extend_from_slice(&if column == VIP { !bits } else { bits }.to_be_bytes());
    buf.extend_from_slice(id.as_bytes());
}

fn decode(column: usize, key: &[u8]) -> Result<Key> {
    let (head, id) = key.split_at(8.min(key.len()));
    let bits = u64::from_be_bytes(
        head.try_into()
            .map_err(|_| Error::Internal("a cut-point key shorter than 8 bytes".into()))?,
    );
    Ok(Key {
        value: from_order_bits(if column == VIP { !bits } else { bits }),
        customer_id: String::from_utf8(id.to_vec())
            .map_err(|_| Error::Internal("a cut-point key with a non-UTF-8 id".into()))?,
    })
}

/// Every key of one raw batch's `row`.
fn emit_row(
    batch: &RecordBatch,
    row: usize,
    buf: &mut Vec<u8>,
    emit: &mut dyn FnMut(usize, &[u8]),
) {
    let id = batch.column(0).as_string::<i32>().value(row);
    for c in 0..4 {
        let a = batch.column(c + 1).as_primitive::<Float64Type>();
        if a.is_valid(row) {
            let v = a.value(row);
            key_into(buf, c, v, id);
            emit(c, buf);
            if c == 3 {
                key_into(buf, VIP, v, id);
                emit(VIP, buf);
            }
        }
    }
}

/// Checks a raw batch (rows `row0..` of `path`): ids present, keys finite.
fn check(batch: &RecordBatch, path: &std::path::Path, row0: u64) -> Result<(), ShardedError> {
    let ids = batch.column(0).as_string::<i32>();
    if let Some(i) = (0..ids.len()).find(|&i| ids.is_null(i)) {
        return Err(ShardedError::Null {
            flag: FLAG,
            path: path.to_path_buf(),
            row: row0 as usize + i,
            column: "customer_id",
        });
    }
    // churnclv writes finite keys only; anything else would rank wrongly.
    let columns: Vec<&PrimitiveArray<Float64Type>> = (1..5)
        .map(|c| batch.column(c).as_primitive::<Float64Type>())
        .collect();
    for i in 0..batch.num_rows() {
        for (j, a) in columns.iter().enumerate() {
            if a.is_valid(i) && !a.value(i).is_finite() {
                return Err(ShardedError::NotFinite {
                    path: path.to_path_buf(),
                    row: row0 as usize + i,
                    column: NAMES[j],
                    value: a.value(i),
                });
            }
        }
    }
    Ok(())
}

fn parquet_err(path: &std::path::Path, source: parquet::errors::ParquetError) -> Error {
    ShardedError::Parquet {
        flag: FLAG,
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// The first pass: every file merged in customer_id order — every row checked, a customer in
/// two files (or twice in one) or a file out of order refused — each key emitted. Returns the
/// customers.
fn merged_scan(paths: &[PathBuf], emit: &mut dyn FnMut(usize, &[u8])) -> Result<u64> {
    let readers = paths
        .iter()
        .map(|path| Ok(open_reader(FLAG, path, &raw_schema(), BATCH_ROWS)?.0))
        .collect::<Result<Vec<_>>>()?;
    let check = |file: usize, batch: &RecordBatch, row0: u64| -> Result<()> {
        Ok(check(batch, &paths[file], row0)?)
    };
    let merge_err = |e: MergeError| -> Error {
        match e {
            MergeError::Read { file, source } => parquet_err(&paths[file], source.into()),
            MergeError::Check(e) => e,
            MergeError::NotSorted {
                file,
                row,
                id,
                previous,
            } => ShardedError::NotSorted {
                flag: FLAG,
                path: paths[file].clone(),
                row,
                id,
                previous,
            }
            .into(),
            MergeError::Twice { id, first, second } => ShardedError::Duplicate {
                flag: FLAG,
                id,
                first: paths[first.min(second)].clone(),
                second: paths[first.max(second)].clone(),
            }
            .into(),
        }
    };
    let mut merge = SortedMerge::new(readers, check).map_err(merge_err)?;
    let mut buf = Vec::new();
    let mut customers = 0u64;
    while let Some(pick) = merge.next().map_err(merge_err)? {
        emit_row(merge.batch(pick.file), pick.row, &mut buf, emit);
        customers += 1;
    }
    Ok(customers)
}

/// A later pass: the files one after another (checked by the first).
fn plain_scan(paths: &[PathBuf], emit: &mut dyn FnMut(usize, &[u8])) -> Result<()> {
    let mut buf = Vec::new();
    for path in paths {
        let (reader, _) = open_reader(FLAG, path, &raw_schema(), BATCH_ROWS)?;
        for batch in reader {
            let batch = batch.map_err(|e| parquet_err(path, e.into()))?;
            for row in 0..batch.num_rows() {
                emit_row(&batch, row, &mut buf, emit);
            }
        }
    }
    Ok(())
}

/// Where each column's answers sit in the list of targets.
struct Layout {
    /// (column, bins, index of its first boundary, boundaries) of the four rank columns.
    columns: Vec<(usize, usize, usize, usize)>,
    median: Option<usize>,
    vip: Option<usize>,
}

/// [`crate::stages::sharded::cuts_of_raw`] holding at most `budget` keys per range (tests
/// force small ones), with how the selection went.
pub fn cuts_of_raw_with(
    paths: &[PathBuf],
    vip_top_share: f64,
    budget: usize,
) -> Result<(Cuts, Passes)> {
    let mut customers = 0u64;
    let mut layout = Layout {
        columns: Vec::new(),
        median: None,
        vip: None,
    };
    let mut counts = Vec::new();
    let mut scans = 0;
    let (found, passes) = select(
        5,
        |n| {
            counts = n.to_vec();
            let mut targets = Vec::new();
            for (column, bins) in [(0, 5), (1, 5), (2, 5), (3, 10)] {
                let n = n[column] as usize;
                let start = targets.len();
                // As RankCuts::of_sorted: bin k+1 starts at rank ⌈k·n/bins⌉, if there is one.
                targets.extend(
                    (1..bins)
                        .map(|k| (k * n).div_ceil(bins))
                        .filter(|&r| r < n)
                        .map(|r| Target {
                            column,
                            rank: r as u64,
                        }),
                );
                layout
                    .columns
                    .push((column, bins, start, targets.len() - start));
            }
            let buyers = n[3] as usize;
            if buyers > 0 {
                layout.median = Some(targets.len());
                targets.push(Target {
                    column: 3,
                    rank: (buyers / 2) as u64,
                });
            }
            // As Cuts::of: round(share × buyers) VIPs; the last of them in the VIP order.
            let n_vip = ((vip_top_share * buyers as f64).round() as usize).min(buyers);
            if let Some(r) = n_vip.checked_sub(1) {
                layout.vip = Some(targets.len());
                targets.push(Target {
                    column: VIP,
                    rank: r as u64,
                });
            }
            targets
        },
        budget,
        |emit| {
            scans += 1;
            if scans == 1 {
                customers = merged_scan(paths, emit)?;
                Ok(())
            } else {
                plain_scan(paths, emit)
            }
        },
    )?;
    let key = |i: usize, column: usize| -> Result<Key> {
        let k = found
            .get(i)
            .and_then(|k| k.as_deref())
            .ok_or_else(|| Error::Internal("a cut point was not found".into()))?;
        decode(column, k)
    };
    let mut ranked = Vec::new();
    for &(column, bins, start, len) in &layout.columns {
        ranked.push(RankCuts {
            bins,
            present: counts[column],
            boundaries: (start..start + len)
                .map(|i| key(i, column))
                .collect::<Result<_>>()?,
        });
    }
    let [recency, frequency, monetary, clv]: [RankCuts; 4] = ranked
        .try_into()
        .map_err(|_| Error::Internal("four rank columns expected".into()))?;
    let cuts = Cuts {
        customers,
        recency,
        frequency,
        monetary,
        clv,
        vip_top_share,
        vip_last: layout.vip.map(|i| key(i, VIP)).transpose()?,
        clv_median: match layout.median {
            Some(i) => key(i, 3)?.value,
            None => 0.0,
        },
    };
    Ok((cuts, passes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bits_order_as_total_cmp_and_round_trip() {
        let v = [
            f64::MIN,
            -3.5,
            -1.0,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-300,
            1.0,
            2.5,
            f64::MAX,
        ];
        for w in v.windows(2) {
            assert!(order_bits(w[0]) < order_bits(w[1]), "{w:?}");
        }
        for x in v {
            assert_eq!(from_order_bits(order_bits(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn the_cut_points_equal_the_in_memory_ones_for_any_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = 3u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        // 3,000 customers in 3 files: heavy ties (frequency 1 for most), ±0, nulls.
        let mut all = Vec::new();
        let mut files = Vec::new();
        for f in 0..3 {
            let ids: Vec<String> = (0..1000).map(|i| format!("c{:05}", i * 3 + f)).collect();
            let mut col = |k: u64| -> Vec<Option<f64>> {
                (0..1000)
                    .map(|_| match next() % k {
                        0 => None,
                        1 => Some(-0.0),
                        2 => Some(0.0),
                        3 | 4 | 5 | 6 => Some(1.0),
                        x => Some(x as f64 * 0.25),
                    })
                    .collect()
            };
            let (r, fr, m, c) = (col(9), col(8), col(40), col(100));
            for i in 0..1000 {
                all.push((
                    Box::<str>::from(ids[i].as_str()),
                    crate::cuts::RankKeys {
                        recency: r[i],
                        frequency: fr[i],
                        monetary: m[i],
                        clv: c[i],
                    },
                ));
            }
            let real = |v: Vec<Option<f64>>| -> arrow_array::ArrayRef {
                std::sync::Arc::new(arrow_array::Float64Array::from(v))
            };
            let batch = RecordBatch::try_new(
                raw_schema(),
                vec![
                    std::sync::Arc::new(arrow_array::StringArray::from(ids)),
                    real(r),
                    real(fr),
                    real(m),
                    real(c),
                ],
            )
            .expect("batch");
            let path = dir.path().join(format!("{f}.parquet"));
            crate::io::output::write_parquet(
                &path,
                raw_schema(),
                &[batch],
                &crate::io::ParquetOptions::default(),
            )
            .expect("write");
            files.push(path);
        }
        for share in [0.05, 0.5] {
            let want = Cuts::of(&all, share);
            for budget in [1, 5, 64, BUDGET] {
                let (got, passes) = cuts_of_raw_with(&files, share, budget).expect("cuts");
                assert_eq!(got, want, "budget {budget}");
                // A tiny budget refines the tied ranges again (over the ids too).
                if budget <= 5 {
                    assert!(passes.scans >= 4, "{passes:?}");
                } else if budget == BUDGET {
                    assert_eq!(passes.scans, 2, "{passes:?}");
                }
            }
        }
    }
}
