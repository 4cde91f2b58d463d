//! `tessera-datagen`: data for demos, tests and benchmarks.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tessera-datagen", version, about = "Tessera data tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Split the raw UCI file across four banks (repayment with labels, demographics, bills,
    /// payments), string ids `C000001`….
    UciSplit {
        /// `UCI_Credit_Card.csv` or `.csv.gz` (shipped: data/uci/UCI_Credit_Card.csv.gz).
        #[arg(long, default_value = "data/uci/UCI_Credit_Card.csv.gz")]
        input: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::UciSplit { input, out } => {
            let (paths, n) = tessera_demo::uci::split(&input, &out)?;
            println!(
                "wrote {n} customers to {} files in {}",
                paths.len(),
                out.display()
            );
        }
    }
    Ok(())
}
