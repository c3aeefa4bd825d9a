//! Reading a feature table from Parquet: the metadata and every column checked against the
//! documented schema (see the parent module and docs/features.md).

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::{
    Column, FeatureTable, WindowLabels, COLUMNS, FEATURE_SLICE, LABEL_COLUMNS, META_CUTOFF,
    META_LABEL_HORIZON,
};
use crate::config::parse_date;
use crate::features::Features;
use crate::labels::Labels;

/// What the caller knows about a table it reads, and how to name it in errors.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The flag that named the file (`--features`, `--validate` …).
    pub flag: &'static str,
    /// The cutoff the table must have; the flag that gave it (`--as-of`), or where it was
    /// derived from.
    pub cutoff: Option<(NaiveDate, String)>,
    /// Whether the label columns are required, and the horizon they must have if known (and
    /// where that came from).
    pub labels: Option<Option<(u32, String)>>,
}

/// A feature-table file that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum FeatureTableError {
    #[error("{flag} {path}: cannot read")]
    Io {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: not a readable Parquet file")]
    Parquet {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{flag} {path}: missing column '{column}' ({what}; docs/features.md lists the columns of a feature table)")]
    MissingColumn {
        flag: &'static str,
        path: PathBuf,
        column: String,
        what: &'static str,
    },
    #[error("{flag} {path}: column '{column}' has type {found}; expected {expected}")]
    WrongType {
        flag: &'static str,
        path: PathBuf,
        column: String,
        found: DataType,
        expected: &'static str,
    },
    #[error(
        "{flag} {path}: column '{column}', row {row}: null, and the column does not allow nulls"
    )]
    Null {
        flag: &'static str,
        path: PathBuf,
        column: String,
        row: u64,
    },
    #[error("{flag} {path}: column '{column}', row {row}: {value} is not a count (expected ≥ 0)")]
    Negative {
        flag: &'static str,
        path: PathBuf,
        column: String,
        row: u64,
        value: i64,
    },
    #[error("{flag} {path}: customer_id {id:?} appears more than once")]
    Duplicate {
        flag: &'static str,
        path: PathBuf,
        id: String,
    },
    #[error("{flag} {path}: metadata {key} = '{value}' is not {expected}")]
    BadMetadata {
        flag: &'static str,
        path: PathBuf,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{flag} {path}: metadata {key} = {found}, but {source_of} gives {expected}")]
    Mismatch {
        flag: &'static str,
        path: PathBuf,
        key: &'static str,
        found: String,
        expected: String,
        source_of: String,
    },
    #[error("{flag} {path}: no {key} metadata and nothing gives it: {hint}")]
    Unknown {
        flag: &'static str,
        path: PathBuf,
        key: &'static str,
        hint: &'static str,
    },
}

/// An opened feature-table file: its footer read, nothing checked yet.
pub struct FeatureFile {
    flag: &'static str,
    path: PathBuf,
    builder: ParquetRecordBatchReaderBuilder<std::fs::File>,
}

impl FeatureFile {
    /// Opens `path` (named by `flag` in errors) and reads its footer.
    pub fn open(path: &Path, flag: &'static str) -> Result<FeatureFile, FeatureTableError> {
        let file = std::fs::File::open(path).map_err(|source| FeatureTableError::Io {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| {
            FeatureTableError::Parquet {
                flag,
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(FeatureFile {
            flag,
            path: path.to_path_buf(),
            builder,
        })
    }

    fn meta(&self, key: &str) -> Option<String> {
        self.builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    }

    /// Row groups in the file.
    pub fn row_groups(&self) -> usize {
        self.builder.metadata().num_row_groups()
    }

    /// The label horizon its metadata gives, if any.
    pub fn label_horizon(&self) -> Result<Option<u32>, FeatureTableError> {
        self.meta_parsed(META_LABEL_HORIZON, parse_days, "a number of days")
    }

    /// Reads the rows, checking the metadata against `expect` and every column (see the
    /// module notes).
    pub fn read(self, expect: &Expect) -> Result<FeatureTable, FeatureTableError> {
        let (flag, path) = (self.flag, self.path.clone());
        let horizon = match &expect.labels {
            None => None,
            Some(known) => Some(self.agreed(
                META_LABEL_HORIZON,
                parse_days,
                "a number of days",
                known.as_ref(),
                "give the label window's length with --horizon",
            )?),
        };
        let cutoff = self.agreed(
            META_CUTOFF,
            |t| parse_date(t).ok(),
            "a date YYYY-MM-DD",
            expect.cutoff.as_ref(),
            "give the table's cutoff with --as-of",
        )?;
        let schema = self.builder.schema().clone();
        let mut wanted: Vec<(&str, Want)> = vec![("customer_id", Want::Text)];
        for (name, c) in COLUMNS {
            wanted.push((
                name,
                match c {
                    Column::Count(..) => Want::Count,
                    Column::Real(..) => Want::Real { nullable: false },
                    Column::Maybe(..) => Want::Real { nullable: true },
                },
            ));
        }
        if horizon.is_some() {
            let [churned, days, spend, prior] = LABEL_COLUMNS;
            wanted.extend([
                (churned, Want::Flag),
                (days, Want::Count),
                (spend, Want::Real { nullable: false }),
                (prior, Want::Real { nullable: false }),
            ]);
        }
        let mut roots = Vec::with_capacity(wanted.len());
        for (name, want) in &wanted {
            let Ok(i) = schema.index_of(name) else {
                return Err(FeatureTableError::MissingColumn {
                    flag,
                    path,
                    column: name.to_string(),
                    what: if LABEL_COLUMNS.contains(name) {
                        "a label column: write the table with --label-horizon"
                    } else {
                        "a feature column"
                    },
                });
            };
            let found = schema.field(i).data_type();
            if !want.accepts(found) {
                return Err(FeatureTableError::WrongType {
                    flag,
                    path,
                    column: name.to_string(),
                    found: found.clone(),
                    expected: want.expected(),
                });
            }
            roots.push(i);
        }
        let mask = ProjectionMask::roots(self.builder.parquet_schema(), roots);
        let parquet_err = |source| FeatureTableError::Parquet {
            flag,
            path: path.clone(),
            source,
        };
        let reader = self
            .builder
            .with_projection(mask)
            .with_batch_size(FEATURE_SLICE)
            .build()
            .map_err(parquet_err)?;
        let mut table = Collected::default();
        let mut row0 = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| parquet_err(e.into()))?;
            table
                .push(&batch, &wanted, row0, horizon.is_some())
                .map_err(|p| p.at(flag, &path))?;
            row0 += batch.num_rows() as u64;
        }
        table.finish(cutoff, horizon, flag, &path)
    }

    /// The value of a metadata key, parsed.
    fn meta_parsed<T>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<Option<T>, FeatureTableError> {
        match self.meta(key) {
            Some(text) => match parse(&text) {
                Some(v) => Ok(Some(v)),
                None => Err(FeatureTableError::BadMetadata {
                    flag: self.flag,
                    path: self.path.clone(),
                    key,
                    value: text,
                    expected,
                }),
            },
            None => Ok(None),
        }
    }

    /// A value the metadata key and the caller may both give: they must agree; one of them
    /// must exist.
    fn agreed<T: PartialEq + std::fmt::Display + Copy>(
        &self,
        key: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &'static str,
        known: Option<&(T, String)>,
        hint: &'static str,
    ) -> Result<T, FeatureTableError> {
        let (flag, path) = (self.flag, self.path.clone());
        let found = self.meta_parsed(key, parse, expected)?;
        match (found, known) {
            (Some(f), Some((e, from))) if f != *e => Err(FeatureTableError::Mismatch {
                flag,
                path,
                key,
                found: f.to_string(),
                expected: e.to_string(),
                source_of: from.clone(),
            }),
            (Some(f), _) => Ok(f),
            (None, Some((e, _))) => Ok(*e),
            (None, None) => Err(FeatureTableError::Unknown {
                flag,
                path,
                key,
                hint,
            }),
        }
    }
}

fn parse_days(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|&h| h > 0)
}

/// The Arrow types a column accepts: the documented one, or one that converts to it exactly.
#[derive(Clone, Copy)]
enum Want {
    Text,
    Count,
    Real { nullable: bool },
    Flag,
}

impl Want {
    fn accepts(self, t: &DataType) -> bool {
        use DataType::*;
        match self {
            Want::Text => matches!(t, Utf8 | LargeUtf8 | Utf8View),
            Want::Count => matches!(t, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32),
            Want::Real { .. } => matches!(t, Float32 | Float64),
            Want::Flag => matches!(t, Boolean),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Want::Text => "Utf8 (or LargeUtf8)",
            Want::Count => "Int64 (or a narrower integer)",
            Want::Real { .. } => "Float64 (or Float32)",
            Want::Flag => "Boolean",
        }
    }

    fn nullable(self) -> bool {
        matches!(self, Want::Real { nullable: true })
    }
}

/// A problem at a row of a batch, named with the file by [`Problem::at`].
struct Problem {
    column: String,
    row: u64,
    /// The negative count found; `None` for a null.
    negative: Option<i64>,
}

impl Problem {
    fn at(self, flag: &'static str, path: &Path) -> FeatureTableError {
        let (path, column, row) = (path.to_path_buf(), self.column, self.row);
        match self.negative {
            Some(value) => FeatureTableError::Negative {
                flag,
                path,
                column,
                row,
                value,
            },
            None => FeatureTableError::Null {
                flag,
                path,
                column,
                row,
            },
        }
    }
}

/// Rows read so far.
#[derive(Default)]
struct Collected {
    ids: Vec<Box<str>>,
    rows: Vec<Features>,
    churned: Vec<bool>,
    purchase_days: Vec<u64>,
    spend: Vec<f64>,
    prior: Vec<f64>,
}

impl Collected {
    fn push(
        &mut self,
        batch: &RecordBatch,
        wanted: &[(&str, Want)],
        row0: u64,
        labelled: bool,
    ) -> Result<(), Problem> {
        let n = batch.num_rows();
        let column = |name: &str, want: Want| -> Result<ArrayRef, Problem> {
            // Present and of an accepted type (checked against the footer's schema): the
            // projection holds it.
            let null_at = |row: usize| Problem {
                column: name.to_string(),
                row: row0 + row as u64,
                negative: None,
            };
            let a = batch.column_by_name(name).ok_or_else(|| null_at(0))?;
            if !want.nullable() && a.null_count() > 0 {
                return Err(null_at((0..n).find(|&i| a.is_null(i)).unwrap_or(0)));
            }
            let target = match want {
                Want::Text => DataType::Utf8,
                Want::Count => DataType::Int64,
                Want::Real { .. } => DataType::Float64,
                Want::Flag => DataType::Boolean,
            };
            // Widening casts only (see `Want::accepts`): they cannot fail.
            arrow_cast::cast(a, &target).map_err(|_| null_at(0))
        };
        let counts = |name: &str| -> Result<Vec<u64>, Problem> {
            let a = column(name, Want::Count)?;
            let a = a.as_primitive::<Int64Type>();
            a.values()
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    u64::try_from(v).map_err(|_| Problem {
                        column: name.to_string(),
                        row: row0 + i as u64,
                        negative: Some(v),
                    })
                })
                .collect()
        };
        let ids = column("customer_id", Want::Text)?;
        let ids = ids.as_string::<i32>();
        let start = self.rows.len();
        self.ids
            .extend(ids.iter().map(|s| Box::from(s.unwrap_or(""))));
        self.rows.resize(start + n, Features::default());
        let rows = &mut self.rows[start..];
        for ((name, c), (_, want)) in COLUMNS.iter().zip(&wanted[1..]) {
            match *c {
                Column::Count(_, set) => {
                    for (r, v) in rows.iter_mut().zip(counts(name)?) {
                        set(r, v);
                    }
                }
                Column::Real(_, set) => {
                    let a = column(name, *want)?;
                    for (r, &v) in rows
                        .iter_mut()
                        .zip(a.as_primitive::<Float64Type>().values())
                    {
                        set(r, v);
                    }
                }
                Column::Maybe(_, set) => {
                    let a = column(name, *want)?;
                    for (r, v) in rows.iter_mut().zip(a.as_primitive::<Float64Type>().iter()) {
                        set(r, v);
                    }
                }
            }
        }
        if labelled {
            let [churned, days, spend, prior] = LABEL_COLUMNS;
            let flags = column(churned, Want::Flag)?;
            self.churned.extend(flags.as_boolean().values().iter());
            self.purchase_days.extend(counts(days)?);
            for (name, out) in [(spend, &mut self.spend), (prior, &mut self.prior)] {
                let a = column(name, Want::Real { nullable: false })?;
                out.extend_from_slice(a.as_primitive::<Float64Type>().values());
            }
        }
        Ok(())
    }

    /// Sorted by id (a no-op for churnclv's own files), duplicates refused.
    fn finish(
        self,
        cutoff: NaiveDate,
        horizon: Option<u32>,
        flag: &'static str,
        path: &Path,
    ) -> Result<FeatureTable, FeatureTableError> {
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        if !self.ids.windows(2).all(|w| w[0] < w[1]) {
            order.sort_by(|&a, &b| self.ids[a].cmp(&self.ids[b]));
            if let Some(w) = order.windows(2).find(|w| self.ids[w[0]] == self.ids[w[1]]) {
                return Err(FeatureTableError::Duplicate {
                    flag,
                    path: path.to_path_buf(),
                    id: self.ids[w[0]].to_string(),
                });
            }
        }
        let labels = horizon.map(|horizon_days| WindowLabels {
            horizon_days,
            window: Labels {
                churned: order.iter().map(|&i| self.churned[i]).collect(),
                spend: order.iter().map(|&i| self.spend[i]).collect(),
                purchase_days: order.iter().map(|&i| self.purchase_days[i]).collect(),
            },
            prior_net_spend: order.iter().map(|&i| self.prior[i]).collect(),
        });
        let mut ids: Vec<Option<Box<str>>> = self.ids.into_iter().map(Some).collect();
        let mut rows: Vec<Option<Features>> = self.rows.into_iter().map(Some).collect();
        Ok(FeatureTable {
            cutoff,
            customer_ids: order.iter().filter_map(|&i| ids[i].take()).collect(),
            rows: order.iter().filter_map(|&i| rows[i].take()).collect(),
            labels,
        })
    }
}
