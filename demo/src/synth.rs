//! A seeded synthetic federation of four banks for demos and tests: customers of one country,
//! each banking at some of four institutions, each institution holding only its own product's
//! columns, and a default label at the card issuer (the lender asking for the score).
//!
//! # The generating process
//!
//! Every customer has four independent latent risk factors `u_card`, `u_auto`, `u_savings`,
//! `u_home` ~ N(0, 1) and an income (log-normal). Their overall risk is
//! `z = 0.9·u_card + 0.7·u_savings + 0.6·u_auto + 0.6·u_home + 0.3·ε`, and they default within
//! the label's horizon with probability `sigmoid(−2.0 + 1.1·z − 0.3·(log income − mean))`
//! (about 20% default). Each factor shows only in one product's columns, with noise, so every
//! bank sees only part of the risk: federation measurably helps.
//!
//! - **card** (the lender; labels, column `y`): `credit_limit`, `utilisation`,
//!   `cash_advances_12m`, `months_delinquent_24m`, `card_tenure_months`.
//! - **auto** (auto loans): `loan_amount`, `term_months`, `ltv`, `months_on_book`,
//!   `missed_payments_12m`.
//! - **savings** (digital savings): `balance`, `balance_volatility`, `salary_inflows_6m`,
//!   `overdrafts_12m`.
//! - **home** (home loans): `mortgage_balance`, `ltv`, `arrears_months_24m`, `years_to_maturity`.
//!
//! Who banks where is drawn independently per bank with the configured shares (default card
//! 85%, auto 35%, savings 55%, home 30%); every customer is at one bank at least. Ids are
//! strings (`CUS-` and eight hexadecimal digits of a seeded hash), the same at every bank.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};

/// The four banks, the lender first.
pub const BANKS: [&str; 4] = ["card", "auto", "savings", "home"];

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Number of customers in the country (each at one bank or more).
    pub customers: usize,
    /// Share of customers at each of [`BANKS`], in order.
    pub shares: [f64; 4],
    /// Seed.
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            customers: 20_000,
            shares: [0.85, 0.35, 0.55, 0.30],
            seed: 7,
        }
    }
}

fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.r#gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> u32 {
    // Knuth's method; lambda stays small here.
    let l = (-lambda.min(30.0)).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.r#gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Writes `<out>/<bank>.csv` for the four [`BANKS`] (the card bank's with the label `y`) and
/// returns the files (lender first) and how many customers each holds.
///
/// # Errors
/// Invalid shares or unwritable output.
pub fn generate(opts: &SynthOptions, out: &Path) -> Result<(Vec<PathBuf>, Vec<usize>)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let paths: Vec<PathBuf> = BANKS.iter().map(|b| out.join(format!("{b}.csv"))).collect();
    let counts = generate_to(opts, &paths)?;
    Ok((paths, counts))
}

/// As [`generate`], writing bank `i` of [`BANKS`] to `paths[i]` (e.g. each into its own
/// bank's volume). Each file is written under a temporary name and renamed when complete.
///
/// # Errors
/// Invalid shares, not four paths, or unwritable output.
pub fn generate_to(opts: &SynthOptions, paths: &[PathBuf]) -> Result<Vec<usize>> {
    anyhow::ensure!(paths.len() == BANKS.len(), "one path per bank");
    anyhow::ensure!(opts.customers > 0, "at least one customer");
    anyhow::ensure!(
        opts.shares.iter().all(|s| (0.0..=1.0).contains(s)) && opts.shares[0] > 0.0,
        "shares must be in [0, 1], the lender's above 0"
    );
    let headers = [
        "id,y,credit_limit,utilisation,cash_advances_12m,months_delinquent_24m,card_tenure_months",
        "id,loan_amount,term_months,ltv,months_on_book,missed_payments_12m",
        "id,balance,balance_volatility,salary_inflows_6m,overdrafts_12m",
        "id,mortgage_balance,ltv,arrears_months_24m,years_to_maturity",
    ];
    let tmp: Vec<PathBuf> = paths.iter().map(|p| p.with_extension("csv.partial")).collect();
    let mut files = Vec::with_capacity(4);
    for (p, h) in tmp.iter().zip(headers) {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        );
        writeln!(w, "{h}")?;
        files.push(w);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let mut counts = [0usize; 4];
    for i in 0..opts.customers {
        let u: [f64; 4] = [
            normal(&mut rng),
            normal(&mut rng),
            normal(&mut rng),
            normal(&mut rng),
        ];
        let log_income = 10.6 + 0.45 * normal(&mut rng);
        let income = log_income.exp();
        let z = 0.9 * u[0] + 0.7 * u[2] + 0.6 * u[1] + 0.6 * u[3] + 0.3 * normal(&mut rng);
        let y = u8::from(rng.r#gen::<f64>() < sigmoid(-2.0 + 1.1 * z - 0.3 * (log_income - 10.6)));
        let mut member = [false; 4];
        for (b, m) in member.iter_mut().enumerate() {
            *m = rng.r#gen::<f64>() < opts.shares[b];
        }
        if !member.iter().any(|&m| m) {
            member[0] = true;
        }
        // A customer number as a bank would print it: stable, not a row number.
        let id = format!(
            "CUS-{:08X}",
            (i as u64 ^ opts.seed.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
        );
        let n = |rng: &mut rand_chacha::ChaCha8Rng| normal(rng);
        // Draws happen for every customer (membership or not), so a bank's rows do not
        // depend on the other banks' shares.
        let card = {
            let limit = (income * (0.3 + 0.1 * n(&mut rng)).max(0.05) / 500.0).round() * 500.0;
            let util = sigmoid(-0.6 + 0.9 * u[0] + 0.5 * n(&mut rng));
            let cash = poisson(&mut rng, (0.2 + 0.6 * u[0]).exp() * 0.5);
            let delinquent = poisson(&mut rng, (-1.2 + 0.9 * u[0]).exp());
            let tenure = (12.0 + 60.0 * rng.r#gen::<f64>() - 8.0 * u[0]).max(1.0).round();
            format!("{id},{y},{limit:.0},{util:.4},{cash},{delinquent},{tenure:.0}")
        };
        let auto = {
            let amount = (income * (0.4 + 0.15 * n(&mut rng)).max(0.05) / 100.0).round() * 100.0;
            let term = [36, 48, 60, 72][rng.gen_range(0..4)];
            let ltv = (0.75 + 0.12 * u[1] + 0.08 * n(&mut rng)).clamp(0.2, 1.5);
            let on_book = rng.gen_range(1..term);
            let missed = poisson(&mut rng, (-1.6 + 1.0 * u[1]).exp());
            format!("{id},{amount:.0},{term},{ltv:.3},{on_book},{missed}")
        };
        let savings = {
            let balance = (income * (-0.8 * u[2] + 0.6 * n(&mut rng)).exp() * 0.15).round();
            let volatility = sigmoid(-1.0 + 0.8 * u[2] + 0.4 * n(&mut rng));
            let inflows = (6.0 * sigmoid(2.0 - 1.2 * u[2] + 0.5 * n(&mut rng))).round();
            let overdrafts = poisson(&mut rng, (-1.0 + 1.0 * u[2]).exp());
            format!("{id},{balance:.0},{volatility:.4},{inflows:.0},{overdrafts}")
        };
        let home = {
            let balance = (income * (3.0 + 0.8 * n(&mut rng)).max(0.2) / 1000.0).round() * 1000.0;
            let ltv = (0.65 + 0.12 * u[3] + 0.08 * n(&mut rng)).clamp(0.1, 1.3);
            let arrears = poisson(&mut rng, (-2.0 + 1.1 * u[3]).exp());
            let years = rng.gen_range(1..30);
            format!("{id},{balance:.0},{ltv:.3},{arrears},{years}")
        };
        for (b, row) in [card, auto, savings, home].iter().enumerate() {
            if member[b] {
                writeln!(files[b], "{row}")?;
                counts[b] += 1;
            }
        }
    }
    for f in &mut files {
        f.flush()?;
    }
    drop(files);
    for (t, p) in tmp.iter().zip(paths) {
        std::fs::rename(t, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(counts.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_partial_overlap_with_string_ids_and_labels_at_the_lender() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SynthOptions {
            customers: 3_000,
            ..Default::default()
        };
        let (paths, counts) = generate(&opts, dir.path()).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let card = read(&paths[0]);
        assert!(card.starts_with("id,y,credit_limit"));
        // Shares are roughly as asked.
        for (b, &share) in opts.shares.iter().enumerate() {
            let got = counts[b] as f64 / 3_000.0;
            assert!((got - share).abs() < 0.05, "{}: {got}", BANKS[b]);
        }
        // Labels: about one in five defaults.
        let ys: Vec<u8> = card
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let rate = ys.iter().map(|&y| f64::from(y)).sum::<f64>() / ys.len() as f64;
        assert!((0.1..0.35).contains(&rate), "default rate {rate}");
        // String ids, unique, shared across banks; the same seed gives the same files.
        let id_of = |l: &str| l.split(',').next().unwrap().to_string();
        let card_ids: std::collections::HashSet<String> = card.lines().skip(1).map(id_of).collect();
        assert_eq!(card_ids.len(), counts[0]);
        assert!(card_ids.iter().all(|i| i.starts_with("CUS-") && i.len() == 12));
        let home_ids: Vec<String> = read(&paths[3]).lines().skip(1).map(id_of).collect();
        let shared = home_ids.iter().filter(|i| card_ids.contains(*i)).count();
        assert!(shared > 0 && shared < home_ids.len());
        let again = tempfile::tempdir().unwrap();
        generate(&opts, again.path()).unwrap();
        assert_eq!(card, read(&again.path().join("card.csv")));
    }
}
