//! A party's feature slice: a CSV (optionally gzip-compressed) keyed by customer id.
//!
//! The first column named `id_column` holds customer ids (strings); an optional label column
//! holds 0/1; every other column is a numeric feature. Errors name the file, line and column,
//! never a feature value.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView1};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::wire::MAX_ID_LEN;

/// Errors loading a feature table.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CSV structure is wrong (header, ragged row, encoding).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column, without feature values.
        message: String,
    },
    /// More rows than the configured maximum.
    #[error("{path}: more than {max} rows (raise data.max_rows if this is intended)")]
    TooManyRows {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
}

/// Options for [`FeatureTable::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Name of the id column. Default `id`.
    pub id_column: String,
    /// Name of the label column, if this party holds labels.
    pub label_column: Option<String>,
    /// Most rows accepted; loading fails beyond it. Default 5,000,000.
    pub max_rows: usize,
    /// Keep only the first `limit` rows (for tests and quick runs). Default: all.
    pub limit: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            id_column: "id".into(),
            label_column: None,
            max_rows: 5_000_000,
            limit: None,
        }
    }
}

/// Customer ids, their features and optionally labels, with an index from id to row.
#[derive(Clone, Debug)]
pub struct FeatureTable {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    /// Feature names in column order.
    pub feature_names: Vec<String>,
    features: Array2<f64>,
    labels: Option<Vec<u8>>,
}

impl FeatureTable {
    /// Builds a table from parts.
    ///
    /// # Errors
    /// [`DataError::Format`] on duplicate or invalid ids, a shape mismatch, or non-finite values.
    pub fn new(
        ids: Vec<String>,
        feature_names: Vec<String>,
        features: Array2<f64>,
        labels: Option<Vec<u8>>,
    ) -> Result<Self, DataError> {
        let err = |message: String| DataError::Format {
            path: PathBuf::from("<memory>"),
            message,
        };
        if features.nrows() != ids.len() || features.ncols() != feature_names.len() {
            return Err(err("feature matrix shape does not match ids and names".into()));
        }
        if labels
            .as_ref()
            .is_some_and(|l| l.len() != ids.len() || l.iter().any(|&v| v > 1))
        {
            return Err(err("labels must be 0/1, one per id".into()));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(err("features must be finite".into()));
        }
        let mut index = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            validate_id(id).map_err(|m| err(format!("row {}: {m}", i + 1)))?;
            if index.insert(id.clone(), i).is_some() {
                return Err(err(format!("row {}: duplicate customer id", i + 1)));
            }
        }
        Ok(Self {
            ids,
            index,
            feature_names,
            features,
            labels,
        })
    }

    /// Loads a CSV file; a path ending in `.gz` is decompressed.
    ///
    /// # Errors
    /// [`DataError`] naming file, line and column; never a feature value.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        Self::from_reader(reader, path, opts)
    }

    fn from_reader(reader: impl Read, path: &Path, opts: &LoadOptions) -> Result<Self, DataError> {
        let fmt = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
        let headers = rdr
            .headers()
            .map_err(|e| fmt(format!("cannot read header: {e}")))?
            .clone();
        let id_col = headers
            .iter()
            .position(|h| h == opts.id_column)
            .ok_or_else(|| fmt(format!("no id column {:?} in header", opts.id_column)))?;
        let label_col = match &opts.label_column {
            Some(name) => Some(
                headers
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| fmt(format!("no label column {name:?} in header")))?,
            ),
            None => None,
        };
        let feature_cols: Vec<usize> = (0..headers.len())
            .filter(|&c| c != id_col && Some(c) != label_col)
            .collect();
        if feature_cols.is_empty() {
            return Err(fmt("no feature columns".into()));
        }
        // Each column can be a reason code of its own, and a dictionary travels in one answer.
        if feature_cols.len() > crate::wire::bounded::MAX_DICTIONARY {
            return Err(fmt(format!(
                "{} feature columns: at most {} are supported",
                feature_cols.len(),
                crate::wire::bounded::MAX_DICTIONARY
            )));
        }
        let feature_names: Vec<String> = feature_cols.iter().map(|&c| headers[c].to_string()).collect();
        let mut ids = Vec::new();
        let mut labels = label_col.map(|_| Vec::new());
        let mut values = Vec::new();
        let mut index = HashMap::new();
        for (row, record) in rdr.records().enumerate() {
            if opts.limit.is_some_and(|l| ids.len() >= l) {
                break;
            }
            if ids.len() >= opts.max_rows {
                return Err(DataError::TooManyRows {
                    path: path.to_path_buf(),
                    max: opts.max_rows,
                });
            }
            let line = row + 2;
            let record = record.map_err(|e| fmt(format!("line {line}: {e}")))?;
            if record.len() != headers.len() {
                return Err(fmt(format!(
                    "line {line}: {} fields, header has {}",
                    record.len(),
                    headers.len()
                )));
            }
            let id = record[id_col].trim().to_string();
            validate_id(&id).map_err(|m| fmt(format!("line {line}: {m}")))?;
            if index.insert(id.clone(), ids.len()).is_some() {
                return Err(fmt(format!("line {line}: duplicate customer id")));
            }
            if let (Some(c), Some(labels)) = (label_col, labels.as_mut()) {
                let label = match record[c].trim() {
                    "0" | "0.0" => 0,
                    "1" | "1.0" => 1,
                    _ => {
                        return Err(fmt(format!(
                            "line {line}: label column {:?} must be 0 or 1",
                            headers[c].to_string()
                        )));
                    }
                };
                labels.push(label);
            }
            for &c in &feature_cols {
                let v: f64 = record[c]
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| {
                        fmt(format!(
                            "line {line}: column {:?} is not a finite number",
                            headers[c].to_string()
                        ))
                    })?;
                values.push(v);
            }
            ids.push(id);
        }
        let features = Array2::from_shape_vec((ids.len(), feature_names.len()), values)
            .map_err(|e| fmt(format!("internal shape error: {e}")))?;
        Ok(Self {
            ids,
            index,
            feature_names,
            features,
            labels,
        })
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the table has no customers.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.features.ncols()
    }

    /// Customer ids in file order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Row of a customer id.
    pub fn row_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Features of one row.
    ///
    /// # Panics
    /// If `row` is out of range.
    pub fn row(&self, row: usize) -> ArrayView1<'_, f64> {
        self.features.row(row)
    }

    /// The whole feature matrix.
    pub fn features(&self) -> &Array2<f64> {
        &self.features
    }

    /// Labels, if this table holds them.
    pub fn labels(&self) -> Option<&[u8]> {
        self.labels.as_deref()
    }

    /// Gathers the rows of `ids` into a matrix; unknown ids give zero rows and `false` in the mask.
    pub fn gather(&self, ids: &[String]) -> (Array2<f64>, Vec<bool>) {
        let rows: Vec<Option<usize>> = ids.iter().map(|id| self.row_of(id)).collect();
        self.gather_rows(&rows)
    }

    /// Gathers rows by index into a matrix; `None` (or an index out of range) gives a zero row
    /// and `false` in the mask.
    pub fn gather_rows(&self, rows: &[Option<usize>]) -> (Array2<f64>, Vec<bool>) {
        let mut x = Array2::zeros((rows.len(), self.n_features()));
        let mut known = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            match r.filter(|&r| r < self.features.nrows()) {
                Some(r) => {
                    x.row_mut(i).assign(&self.features.row(r));
                    known.push(true);
                }
                None => known.push(false),
            }
        }
        (x, known)
    }
}

/// Which rule a customer id breaks. The message never echoes the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("empty customer id")]
    Empty,
    /// The id has more than [`MAX_ID_LEN`] characters.
    #[error("customer id longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// The id contains control characters.
    #[error("customer id contains control characters")]
    Control,
}

/// Checks a customer id: non-empty, at most [`MAX_ID_LEN`] characters, no control characters.
///
/// # Errors
/// [`IdError`]: which rule is broken.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

/// Splits indices `0..strata.len()` into `(rest, holdout)`, taking `fraction` of each stratum
/// (e.g. the label, or label and a group) into the holdout, shuffled with `seed`: strata in
/// ascending order, one random stream. Deterministic for a given input and seed; with strata
/// `{0, 1}` it is the classic stratified split by label.
pub fn stratified_split(strata: &[u8], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut rest, mut holdout) = (Vec::new(), Vec::new());
    let mut keys: Vec<u8> = strata.to_vec();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let mut idx: Vec<usize> = (0..strata.len()).filter(|&i| strata[i] == key).collect();
        idx.shuffle(&mut rng);
        let n_hold = (idx.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
        holdout.extend_from_slice(&idx[..n_hold]);
        rest.extend_from_slice(&idx[n_hold..]);
    }
    rest.sort_unstable();
    holdout.sort_unstable();
    (rest, holdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load_str(s: &str, opts: &LoadOptions) -> Result<FeatureTable, DataError> {
        FeatureTable::from_reader(s.as_bytes(), Path::new("t.csv"), opts)
    }

    #[test]
    fn loads_ids_labels_and_features() {
        let opts = LoadOptions {
            label_column: Some("y".into()),
            ..Default::default()
        };
        let t = load_str("id,y,a,b\nC-1,1,0.5,2\nC-2,0,-1,3e2\n", &opts).unwrap();
        assert_eq!(t.ids(), &["C-1".to_string(), "C-2".to_string()]);
        assert_eq!(t.labels(), Some(&[1u8, 0][..]));
        assert_eq!(t.feature_names, vec!["a", "b"]);
        assert_eq!(t.row(1).to_vec(), vec![-1.0, 300.0]);
        let (x, known) = t.gather(&["C-2".into(), "nope".into()]);
        assert_eq!(known, vec![true, false]);
        assert_eq!(x.row(1).to_vec(), vec![0.0, 0.0]);
    }

    #[test]
    fn errors_name_line_and_column_but_not_values() {
        let opts = LoadOptions::default();
        let e = load_str("id,a\nx,1\nx,2\n", &opts).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("duplicate"), "{e}");
        let e = load_str("id,a\nx,secret-value\n", &opts).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("\"a\"") && !e.contains("secret-value"),
            "{e}"
        );
        let e = load_str("id,a\nx,NaN\n", &opts).unwrap_err().to_string();
        assert!(e.contains("finite"), "{e}");
        assert!(
            load_str("a,b\n1,2\n", &opts)
                .unwrap_err()
                .to_string()
                .contains("no id column")
        );
        assert!(load_str("id\nx\n", &opts).is_err());
        assert!(load_str("id,a\nx,1,2\n", &opts).is_err());
        let big = LoadOptions {
            max_rows: 1,
            ..Default::default()
        };
        assert!(matches!(
            load_str("id,a\nx,1\ny,2\n", &big),
            Err(DataError::TooManyRows { .. })
        ));
        let lab = LoadOptions {
            label_column: Some("y".into()),
            ..Default::default()
        };
        assert!(load_str("id,y,a\nx,2,1\n", &lab).is_err());
    }

    #[test]
    fn limit_keeps_first_rows() {
        let opts = LoadOptions {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(load_str("id,a\nx,1\ny,2\n", &opts).unwrap().len(), 1);
    }

    proptest! {
        #[test]
        fn stratified_split_partitions_and_keeps_class_ratio(labels in proptest::collection::vec(0u8..2, 0..300), seed in any::<u64>()) {
            let (rest, hold) = stratified_split(&labels, 0.2, seed);
            let mut all: Vec<usize> = rest.iter().chain(&hold).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
            for class in [0u8, 1] {
                let n = labels.iter().filter(|&&l| l == class).count();
                let h = hold.iter().filter(|&&i| labels[i] == class).count();
                prop_assert_eq!(h, (n as f64 * 0.2).round() as usize);
            }
            prop_assert_eq!(stratified_split(&labels, 0.2, seed), (rest, hold));
        }
    }
}
