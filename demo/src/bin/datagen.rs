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
    /// Generate the synthetic four-bank federation (card = the lender with labels, auto,
    /// savings, home) into `<out>/<bank>.csv`; see docs/DATA.md for the generating process.
    Banks {
        /// Output directory.
        #[arg(long, env = "TESSERA_DATAGEN_OUT")]
        out: PathBuf,
        /// Customers in the country.
        #[arg(long, default_value_t = 20_000, env = "TESSERA_DATAGEN_CUSTOMERS")]
        customers: usize,
        /// Share of customers at card, auto, savings, home (comma-separated).
        #[arg(long, default_value = "0.85,0.35,0.55,0.30", env = "TESSERA_DATAGEN_SHARES")]
        shares: String,
        /// Seed.
        #[arg(long, default_value_t = 7, env = "TESSERA_DATAGEN_SEED")]
        seed: u64,
        /// Write each bank's file into its own directory, `<out>/<bank>/<bank>.csv` (one
        /// volume per bank).
        #[arg(long, env = "TESSERA_DATAGEN_PER_BANK_DIRS")]
        per_bank_dirs: bool,
        /// Give the written files and their directories to this `UID:GID` (when run as root
        /// to fill volumes that unprivileged services mount).
        #[arg(long, env = "TESSERA_DATAGEN_OWNER")]
        owner: Option<tessera_certs::Owner>,
        /// Do nothing if every file is already there (a restart keeps the data).
        #[arg(long, env = "TESSERA_DATAGEN_KEEP_EXISTING")]
        keep_existing: bool,
    },
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
        Cmd::Banks {
            out,
            customers,
            shares,
            seed,
            per_bank_dirs,
            keep_existing,
            owner,
        } => {
            let parsed: Vec<f64> = shares
                .split(',')
                .map(|s| s.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--shares: four numbers, comma-separated"))?;
            let shares: [f64; 4] = parsed
                .try_into()
                .map_err(|_| anyhow::anyhow!("--shares: exactly four numbers (card, auto, savings, home)"))?;
            let opts = tessera_demo::synth::SynthOptions {
                customers,
                shares,
                seed,
            };
            let paths: Vec<PathBuf> = tessera_demo::synth::BANKS
                .iter()
                .map(|b| {
                    if per_bank_dirs {
                        out.join(b).join(format!("{b}.csv"))
                    } else {
                        out.join(format!("{b}.csv"))
                    }
                })
                .collect();
            if keep_existing && paths.iter().all(|p| p.exists()) {
                println!("data already in {}: kept", out.display());
                return Ok(());
            }
            let counts = tessera_demo::synth::generate_to(&opts, &paths)?;
            for (p, n) in paths.iter().zip(counts) {
                if let (Some(o), Some(dir)) = (owner, p.parent()) {
                    tessera_certs::chown_tree(dir, o)?;
                }
                println!("{}: {n} customers", p.display());
            }
        }
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
