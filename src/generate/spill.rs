//! Sorted runs of events and the truth rows on disk, and the k-way merge that reads the runs
//! back in the event log's one order: what lets [`super::spill`] generate any number of
//! customers in bounded memory.
//!
//! The records are fixed-size little-endian images of [`Ev`] and [`TruthRow`] (floats by
//! their bits), so what is read back is exactly what was simulated: the merged log is the
//! in-memory sort's, value for value. The files live only in the caller's scratch folder for
//! the length of one run; they are not a format anyone else reads.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::simulate::{Ev, TruthRow};
use super::GenerateError;
use crate::events::EventKind;

/// Bytes of one event record: time 8, customer 4, seq 4, cents 4, order 4, qty 2, kind 1,
/// channel 1, category flag 1 and value 1.
const EV_BYTES: usize = 30;
/// Bytes of one truth record: eight 8-byte numbers (two timestamps, a count, five floats)
/// and the alive flag.
const TRUTH_BYTES: usize = 8 * 8 + 1;
/// Read buffer of each run during the merge: one disk read per ~8,700 events, and 64 runs
/// (2M customers at the default chunk) hold 16 MiB of buffers.
const RUN_BUFFER: usize = 256 << 10;

fn scratch_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Scratch {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_ev(e: &Ev) -> [u8; EV_BYTES] {
    let mut b = [0u8; EV_BYTES];
    b[0..8].copy_from_slice(&e.t.to_le_bytes());
    b[8..12].copy_from_slice(&e.cust.to_le_bytes());
    b[12..16].copy_from_slice(&e.seq.to_le_bytes());
    b[16..20].copy_from_slice(&e.cents.to_le_bytes());
    b[20..24].copy_from_slice(&e.order.to_le_bytes());
    b[24..26].copy_from_slice(&e.qty.to_le_bytes());
    // The kind's position in `EventKind::ALL` (its declaration order, checked by a test).
    b[26] = e.kind as u8;
    b[27] = e.channel;
    b[28] = u8::from(e.category.is_some());
    b[29] = e.category.unwrap_or(0);
    b
}

fn decode_ev(b: &[u8; EV_BYTES], path: &Path) -> Result<Ev, GenerateError> {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[0..8]);
    let kind = EventKind::ALL
        .get(usize::from(b[26]))
        .copied()
        .ok_or_else(|| GenerateError::ScratchRecord {
            path: path.to_path_buf(),
            detail: format!("event kind code {}", b[26]),
        })?;
    Ok(Ev {
        t: i64::from_le_bytes(t),
        cust: u32_at(8),
        seq: u32_at(12),
        cents: u32_at(16),
        order: u32_at(20),
        qty: u16::from_le_bytes([b[24], b[25]]),
        kind,
        channel: b[27],
        category: (b[28] != 0).then_some(b[29]),
    })
}

/// One sorted run of events being written.
pub(super) struct RunWriter {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl RunWriter {
    /// Creates the run's file at `path` (a new file: it must not exist).
    pub(super) fn create(path: &Path) -> Result<Self, GenerateError> {
        Ok(RunWriter {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, create_new(path)?),
        })
    }

    /// Appends events, which must follow the ones already written in [`Ev::key`] order.
    pub(super) fn append(&mut self, events: &[Ev]) -> Result<(), GenerateError> {
        for e in events {
            self.writer
                .write_all(&encode_ev(e))
                .map_err(scratch_err(&self.path))?;
        }
        Ok(())
    }

    /// Flushes the file; returns its path.
    pub(super) fn finish(self) -> Result<PathBuf, GenerateError> {
        let path = self.path;
        match self.writer.into_inner() {
            Ok(_) => Ok(path),
            Err(e) => Err(scratch_err(&path)(e.into_error())),
        }
    }
}

/// A new file of the scratch folder.
fn create_new(path: &Path) -> Result<File, GenerateError> {
    File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(scratch_err(path))
}

/// Removes a run already merged into a longer one.
pub(super) fn remove_run(path: &Path) -> Result<(), GenerateError> {
    std::fs::remove_file(path).map_err(scratch_err(path))
}

/// One run being read during the merge: its next event, then the rest of its file.
struct Run {
    path: PathBuf,
    reader: BufReader<File>,
}

impl Run {
    fn open(path: &Path) -> Result<Self, GenerateError> {
        let file = File::open(path).map_err(scratch_err(path))?;
        Ok(Run {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(RUN_BUFFER, file),
        })
    }

    /// The next event, `None` at the end of the file (a torn last record is an error).
    fn next_ev(&mut self) -> Result<Option<Ev>, GenerateError> {
        let mut b = [0u8; EV_BYTES];
        match read_record(&mut self.reader, &mut b) {
            Ok(true) => decode_ev(&b, &self.path).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(scratch_err(&self.path)(e)),
        }
    }
}

/// Fills `buf` with the next record; `Ok(false)` at a clean end of file, an error for a file
/// that ends inside a record.
fn read_record(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("file ends inside a {}-byte record", buf.len()),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The head of one run in the merge heap. Ordered by the log's key only: the key is unique
/// over the whole data set (a customer lives in one run), so the run index never decides.
struct Head {
    ev: Ev,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.ev.key() == other.ev.key()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ev.key().cmp(&other.ev.key())
    }
}

/// The k-way merge of sorted runs: events in ascending [`Ev::key`], handed out in slices of
/// a fixed number of rows.
pub(super) struct Merge {
    runs: Vec<Run>,
    heap: BinaryHeap<Reverse<Head>>,
}

impl Merge {
    /// Opens every run and reads its first event.
    pub(super) fn open(paths: &[PathBuf]) -> Result<Self, GenerateError> {
        let mut runs = Vec::with_capacity(paths.len());
        let mut heap = BinaryHeap::with_capacity(paths.len());
        for path in paths {
            let mut run = Run::open(path)?;
            if let Some(ev) = run.next_ev()? {
                heap.push(Reverse(Head {
                    ev,
                    run: runs.len(),
                }));
            }
            runs.push(run);
        }
        Ok(Merge { runs, heap })
    }

    /// Refills `out` with the next (at most) `rows` events in order; empty at the end.
    pub(super) fn fill(&mut self, out: &mut Vec<Ev>, rows: usize) -> Result<(), GenerateError> {
        out.clear();
        while out.len() < rows {
            let Some(mut top) = self.heap.peek_mut() else {
                break;
            };
            out.push(top.0.ev);
            let run = top.0.run;
            match self.runs[run].next_ev()? {
                // Replacing the top in place sifts it down once (a pop and a push would
                // sift twice).
                Some(ev) => top.0.ev = ev,
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
            }
        }
        Ok(())
    }
}

fn encode_truth(r: &TruthRow) -> [u8; TRUTH_BYTES] {
    let mut b = [0u8; TRUTH_BYTES];
    let words = [
        r.birth_us.to_le_bytes(),
        r.lambda.to_bits().to_le_bytes(),
        r.mu.to_bits().to_le_bytes(),
        r.death_us.to_le_bytes(),
        r.mean_order_value.to_bits().to_le_bytes(),
        r.n_purchases.to_le_bytes(),
        r.exp_purchases.to_bits().to_le_bytes(),
        r.exp_spend.to_bits().to_le_bytes(),
    ];
    for (i, w) in words.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(w);
    }
    b[64] = u8::from(r.alive);
    b
}

fn decode_truth(b: &[u8; TRUTH_BYTES]) -> TruthRow {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    TruthRow {
        birth_us: word(0) as i64,
        lambda: f64::from_bits(word(1)),
        mu: f64::from_bits(word(2)),
        death_us: word(3) as i64,
        mean_order_value: f64::from_bits(word(4)),
        n_purchases: word(5) as i64,
        exp_purchases: f64::from_bits(word(6)),
        exp_spend: f64::from_bits(word(7)),
        alive: b[64] != 0,
    }
}

/// The truth rows, appended chunk by chunk in customer order.
pub(super) struct TruthWriter {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl TruthWriter {
    pub(super) fn create(path: &Path) -> Result<Self, GenerateError> {
        Ok(TruthWriter {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, create_new(path)?),
        })
    }

    pub(super) fn append(&mut self, rows: &[TruthRow]) -> Result<(), GenerateError> {
        for r in rows {
            self.writer
                .write_all(&encode_truth(r))
                .map_err(scratch_err(&self.path))?;
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), GenerateError> {
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| scratch_err(&path)(e.into_error()))?;
        Ok(())
    }
}

/// Reads the truth rows back in customer order.
pub(super) struct TruthReader {
    path: PathBuf,
    reader: BufReader<File>,
}

impl TruthReader {
    pub(super) fn open(path: &Path) -> Result<Self, GenerateError> {
        let file = File::open(path).map_err(scratch_err(path))?;
        Ok(TruthReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
        })
    }

    /// Refills `out` with the next (at most) `rows` rows; empty at the end.
    pub(super) fn fill(
        &mut self,
        out: &mut Vec<TruthRow>,
        rows: usize,
    ) -> Result<(), GenerateError> {
        out.clear();
        let mut b = [0u8; TRUTH_BYTES];
        while out.len() < rows {
            match read_record(&mut self.reader, &mut b) {
                Ok(true) => out.push(decode_truth(&b)),
                Ok(false) => break,
                Err(e) => return Err(scratch_err(&self.path)(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field survives the round trip, every event kind (its code is its index in
    /// `EventKind::ALL`) and both states of the category.
    #[test]
    fn events_read_back_as_written() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            for category in [None, Some(0), Some(11)] {
                let ev = Ev {
                    t: -1_700_000_000_000_000 + i as i64,
                    cust: u32::MAX - 3,
                    seq: 70_000,
                    cents: 123_456,
                    order: 9_999,
                    qty: u16::MAX,
                    kind,
                    channel: 4,
                    category,
                };
                let back = decode_ev(&encode_ev(&ev), Path::new("run")).expect("decode");
                assert_eq!(format!("{back:?}"), format!("{ev:?}"));
            }
        }
        let mut bad = encode_ev(&Ev {
            t: 0,
            cust: 0,
            seq: 0,
            cents: 0,
            order: 0,
            qty: 0,
            kind: EventKind::Other,
            channel: 0,
            category: None,
        });
        bad[26] = EventKind::ALL.len() as u8;
        let err = decode_ev(&bad, Path::new("run-00003.bin")).expect_err("unknown kind");
        assert_eq!(
            err.to_string(),
            "run-00003.bin: invalid scratch record (event kind code 14)"
        );
    }

    /// Floats come back bit for bit (NaN payloads, infinities, the sign of zero).
    #[test]
    fn truth_rows_read_back_bit_for_bit() {
        let row = TruthRow {
            birth_us: i64::MIN,
            lambda: f64::from_bits(0x7ff8_0000_0000_0001),
            mu: -0.0,
            death_us: i64::MAX,
            alive: true,
            mean_order_value: f64::INFINITY,
            n_purchases: -1,
            exp_purchases: f64::MIN_POSITIVE / 2.0,
            exp_spend: 1.0 / 3.0,
        };
        let back = decode_truth(&encode_truth(&row));
        let bits = |r: &TruthRow| {
            (
                r.birth_us,
                r.lambda.to_bits(),
                r.mu.to_bits(),
                r.death_us,
                r.alive,
                r.mean_order_value.to_bits(),
                r.n_purchases,
                r.exp_purchases.to_bits(),
                r.exp_spend.to_bits(),
            )
        };
        assert_eq!(bits(&back), bits(&row));
    }

    /// A run cut inside a record (a full disk, say) is an error naming the file, not a
    /// shorter log.
    #[test]
    fn a_torn_run_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("run-00000.bin");
        let ev = Ev {
            t: 5,
            cust: 1,
            seq: 0,
            cents: 0,
            order: 0,
            qty: 0,
            kind: EventKind::PageView,
            channel: 0,
            category: Some(2),
        };
        let mut run = RunWriter::create(&path).expect("create");
        run.append(&[ev, ev]).expect("append");
        run.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..EV_BYTES + 7]).expect("truncate");
        let mut merge = Merge::open(&[path.clone()]).expect("open");
        let mut out = Vec::new();
        let err = merge.fill(&mut out, 10).expect_err("torn");
        assert!(matches!(err, GenerateError::Scratch { .. }), "{err}");
        assert_eq!(err.to_string(), format!("{}: scratch file", path.display()));
    }
}
