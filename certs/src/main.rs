//! `tessera-certs`: create a development federation CA and issue coordinator and party certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tessera_certs::issue::{self, LeafRequest};
use tessera_certs::{Identity, PartyId};

#[derive(Parser)]
#[command(name = "tessera-certs", version, about = "Tessera certificate tooling")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a development federation CA (ca.crt, ca.key with mode 0600).
    Ca {
        /// Directory to write the CA into.
        #[arg(long)]
        out: PathBuf,
        /// Federation name, part of every identity URI.
        #[arg(long, default_value = "tessera")]
        federation: String,
        /// Validity in days.
        #[arg(long, default_value_t = issue::DEFAULT_CA_DAYS)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a leaf certificate for the coordinator or a party (tls.crt, tls.key, ca.crt).
    Issue {
        /// Directory holding the CA (ca.crt, ca.key).
        #[arg(long)]
        ca: PathBuf,
        /// Directory to write the certificate into.
        #[arg(long)]
        out: PathBuf,
        /// Issue the coordinator's certificate.
        #[arg(long, conflicts_with = "party")]
        coordinator: bool,
        /// Issue a party's certificate, with this party id.
        #[arg(long, required_unless_present = "coordinator")]
        party: Option<String>,
        /// Federation name (must match the CA's and the configs').
        #[arg(long, default_value = "tessera")]
        federation: String,
        /// DNS name the holder is reached at (repeatable; coordinator default: localhost).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP address the holder is reached at (repeatable; coordinator default: 127.0.0.1).
        #[arg(long = "ip")]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = issue::DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Ca {
            out,
            federation,
            days,
            force,
        } => {
            issue::create_ca(&out, &federation, days, force)
                .with_context(|| format!("creating CA in {}", out.display()))?;
            println!("created CA for federation {federation:?} in {}", out.display());
        }
        Cmd::Issue {
            ca,
            out,
            coordinator,
            party,
            federation,
            dns,
            ip,
            days,
            force,
        } => {
            let identity = if coordinator {
                Identity::Coordinator
            } else {
                let id = party.context("--party or --coordinator is required")?;
                Identity::Party(PartyId::new(id)?)
            };
            let mut req = LeafRequest::new(&federation, identity.clone());
            if !dns.is_empty() {
                req.dns_names = dns;
            }
            if !ip.is_empty() {
                req.ips = ip;
            }
            req.days = days;
            issue::issue_leaf(&ca, &req, &out, force)
                .with_context(|| format!("issuing certificate for {identity} into {}", out.display()))?;
            println!(
                "issued certificate for {identity} ({}) into {}",
                identity.uri(&federation),
                out.display()
            );
        }
    }
    Ok(())
}
