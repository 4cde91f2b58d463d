//! Splits the raw UCI "default of credit card clients" file (`UCI_Credit_Card.csv`, real
//! column names, optionally gzip-compressed) across four banks, each holding one kind of
//! feature, with string customer ids (`C000001`…) and the label at the repayment bank:
//!
//! | bank | columns |
//! |---|---|
//! | `repayment` (label holder, `y`) | PAY_0, PAY_2–PAY_6 |
//! | `demographics` | LIMIT_BAL, SEX, EDUCATION, MARRIAGE, AGE |
//! | `bills` | BILL_AMT1–6 |
//! | `payments` | PAY_AMT1–6 |
//!
//! Values are copied as they are (raw, not standardised): each bank's own encoder fits them.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The four banks and their columns, label holder first.
pub const BANKS: [(&str, &[&str]); 4] = [
    (
        "repayment",
        &["PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"],
    ),
    (
        "demographics",
        &["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE"],
    ),
    (
        "bills",
        &[
            "BILL_AMT1",
            "BILL_AMT2",
            "BILL_AMT3",
            "BILL_AMT4",
            "BILL_AMT5",
            "BILL_AMT6",
        ],
    ),
    (
        "payments",
        &[
            "PAY_AMT1", "PAY_AMT2", "PAY_AMT3", "PAY_AMT4", "PAY_AMT5", "PAY_AMT6",
        ],
    ),
];

/// The label column of the raw file.
const LABEL: &str = "default.payment.next.month";

/// Splits `src` into `<out>/<bank>.csv` for the four [`BANKS`]; returns the files (label
/// holder first) and the number of customers.
///
/// # Errors
/// Unreadable input, missing columns, non-integer ids, or unwritable output.
pub fn split(src: &Path, out: &Path) -> Result<(Vec<PathBuf>, usize)> {
    let file = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let reader: Box<dyn Read> = if src.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut rdr = csv::Reader::from_reader(BufReader::new(reader));
    let headers = rdr.headers().context("reading the header")?.clone();
    let col = |name: &str| -> Result<usize> {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column {name}", src.display()))
    };
    let id_col = col("ID")?;
    let label_col = col(LABEL)?;
    let cols: Vec<Vec<usize>> = BANKS
        .iter()
        .map(|(_, names)| names.iter().map(|n| col(n)).collect())
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let paths: Vec<PathBuf> = BANKS.iter().map(|(b, _)| out.join(format!("{b}.csv"))).collect();
    let mut writers = Vec::with_capacity(BANKS.len());
    for (i, (path, (_, names))) in paths.iter().zip(BANKS.iter()).enumerate() {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        let label = if i == 0 { "y," } else { "" };
        writeln!(w, "id,{label}{}", names.join(","))?;
        writers.push(w);
    }
    let mut n = 0;
    for (line, record) in rdr.records().enumerate() {
        let record = record.with_context(|| format!("{} line {}", src.display(), line + 2))?;
        let Ok(id) = record[id_col].trim().parse::<u64>() else {
            bail!("{} line {}: ID is not an integer", src.display(), line + 2);
        };
        for (i, w) in writers.iter_mut().enumerate() {
            let values: Vec<&str> = cols[i].iter().map(|&c| record[c].trim()).collect();
            let label = if i == 0 {
                format!("{},", record[label_col].trim())
            } else {
                String::new()
            };
            writeln!(w, "C{id:06},{label}{}", values.join(","))?;
        }
        n += 1;
    }
    for w in &mut writers {
        w.flush()?;
    }
    Ok((paths, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_shipped_file_into_four_banks() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/uci/UCI_Credit_Card.csv.gz");
        let dir = tempfile::tempdir().unwrap();
        let (paths, n) = split(&src, dir.path()).unwrap();
        assert_eq!(n, 30_000);
        let first = std::fs::read_to_string(&paths[0]).unwrap();
        let mut lines = first.lines();
        assert_eq!(lines.next(), Some("id,y,PAY_0,PAY_2,PAY_3,PAY_4,PAY_5,PAY_6"));
        assert_eq!(lines.next(), Some("C000001,1,2,2,-1,-1,-2,-2"));
        let demo = std::fs::read_to_string(&paths[1]).unwrap();
        assert_eq!(demo.lines().nth(1), Some("C000001,20000,2,2,1,24"));
        assert_eq!(demo.lines().count(), 30_001);
    }
}
