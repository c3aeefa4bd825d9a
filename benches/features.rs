//! Criterion benchmark of the feature aggregation kernel: `HistoryAcc::update_batch` over
//! in-memory events split into customer partitions, then `Histories::from_parts` + features at
//! the four cutoffs of a run (`tv`, `t0`, `t1`, `as_of`, H = 100 days). Reading Parquet is excluded (the end-to-end comparison with DuckDB and
//! Polars is `make bench`).

use std::hint::black_box;

use churnclv::batch::{Event, EventBatches};
use churnclv::events::EventKind;
use churnclv::features::{Histories, HistoryAcc};
use churnclv::time::DAY_US;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const EVENTS: usize = 200_000;
const CUSTOMERS: usize = 5_000;

fn ids() -> Vec<String> {
    (0..CUSTOMERS).map(|i| format!("C{i:07}")).collect()
}

fn events(ids: &[String]) -> Vec<Event<'_>> {
    // A cheap deterministic mix of customers, kinds and times (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..EVENTS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = EventKind::ALL[(x % 12) as usize];
            Event {
                customer_id: &ids[(x >> 8) as usize % CUSTOMERS],
                time_us: ((x >> 20) % (700 * DAY_US as u64)) as i64,
                kind,
                amount: (kind == EventKind::Purchase)
                    .then_some(((x >> 40) % 10_000) as f64 / 100.0),
                channel: Some((x >> 50) % 5),
                category: Some((x >> 54) % 12),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ids = ids();
    let evs = events(&ids);
    let cutoffs = [400 * DAY_US, 500 * DAY_US, 600 * DAY_US, 700 * DAY_US];
    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(EVENTS as u64));
    // The scan's kernel: batches of one customer partition into its accumulator.
    let batches = EventBatches::new(&evs, 16);
    g.bench_function("update_batch", |b| {
        b.iter(|| {
            let mut parts = HistoryAcc::partitions(&cutoffs, batches.parts());
            for (p, acc) in parts.iter_mut().enumerate() {
                acc.update_batch(black_box(&batches.batch(p)));
            }
            parts
        })
    });
    g.bench_function("update_batch_finish_features", |b| {
        b.iter(|| {
            let mut parts = HistoryAcc::partitions(&cutoffs, batches.parts());
            for (p, acc) in parts.iter_mut().enumerate() {
                acc.update_batch(&batches.batch(p));
            }
            let h = Histories::from_parts(parts);
            (0..cutoffs.len())
                .map(|k| h.features(k).rows.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
