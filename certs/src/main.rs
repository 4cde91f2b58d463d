//! `tessera-certs`: one command per step of a federation's certificate lifecycle.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tessera_certs::crl::{self, Reason};
use tessera_certs::inspect::{self, CertInfo};
use tessera_certs::leaf::{self, LeafRequest};
use tessera_certs::pki::{self, InitOptions, KeyType, PkiDir};
use tessera_certs::{Identity, PartyId, k8s};

#[derive(Parser)]
#[command(
    name = "tessera-certs",
    version,
    about = "Tessera certificate lifecycle: init, issue, csr/sign, revoke, rotate, inspect, verify"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Who a certificate is for.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
struct Who {
    /// The coordinator.
    #[arg(long)]
    coordinator: bool,
    /// A party, by id.
    #[arg(long)]
    party: Option<String>,
}

impl Who {
    fn identity(&self) -> Result<Identity> {
        Ok(match &self.party {
            Some(p) => Identity::Party(PartyId::new(p.clone())?),
            None => Identity::Coordinator,
        })
    }
}

/// Names and validity of a leaf.
#[derive(Args, Clone)]
struct LeafOpts {
    /// DNS name the holder is reached at (repeatable; coordinator default: localhost).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// IP address the holder is reached at (repeatable; coordinator default: 127.0.0.1).
    #[arg(long = "ip")]
    ip: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, default_value_t = leaf::DEFAULT_LEAF_DAYS)]
    days: u32,
    /// Key algorithm: ecdsa-p256 or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    key_type: KeyType,
}

impl LeafOpts {
    fn request(&self, federation: &str, identity: Identity) -> LeafRequest {
        let mut req = LeafRequest::new(federation, identity);
        if !self.dns.is_empty() {
            req.dns_names = self.dns.clone();
        }
        if !self.ip.is_empty() {
            req.ips = self.ip.clone();
        }
        req.days = self.days;
        req.key_type = self.key_type;
        req
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Demo and test federations in one step (a compose `certs` service): create the PKI if it
    /// is absent, then issue the coordinator's and every party's certificate into their own
    /// directories unless one is already there. Safe to run on every start.
    Bootstrap {
        /// PKI directory (created if absent).
        #[arg(long, env = "TESSERA_CERTS_CA")]
        ca: PathBuf,
        /// Federation name.
        #[arg(long, default_value = "tessera", env = "TESSERA_CERTS_FEDERATION")]
        federation: String,
        /// Output directory of the coordinator's certificate.
        #[arg(long, env = "TESSERA_CERTS_COORDINATOR")]
        coordinator: PathBuf,
        /// DNS names the coordinator is reached at (besides localhost), comma-separated.
        #[arg(long, value_delimiter = ',', env = "TESSERA_CERTS_DNS")]
        dns: Vec<String>,
        /// `ID=DIR` for each party, comma-separated.
        #[arg(long = "party", value_delimiter = ',', env = "TESSERA_CERTS_PARTIES")]
        parties: Vec<String>,
        /// Give each holder's directory to this `UID:GID` (when run as root to fill volumes
        /// that unprivileged services mount).
        #[arg(long, env = "TESSERA_CERTS_OWNER")]
        owner: Option<tessera_certs::Owner>,
    },
    /// Create the federation's root CA and intermediate CA (then move root/ca.key offline).
    Init {
        /// PKI directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Federation name, part of every identity URI.
        #[arg(long, default_value = "tessera")]
        federation: String,
        /// Key algorithm: ecdsa-p256 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: KeyType,
        /// Root validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_ROOT_DAYS)]
        root_days: u32,
        /// Intermediate validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_INTERMEDIATE_DAYS)]
        intermediate_days: u32,
        /// Overwrite an existing PKI.
        #[arg(long)]
        force: bool,
    },
    /// Issue a key and certificate (tls.crt, tls.key, ca.crt, crl.pem) for the coordinator or a party.
    Issue {
        /// PKI directory (from init).
        #[arg(long)]
        ca: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        leaf: LeafOpts,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Bank side: create a private key and a CSR to send to the federation operator.
    Csr {
        /// Output directory (tls.key, request.csr).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        who: Who,
        /// Federation name.
        #[arg(long, default_value = "tessera")]
        federation: String,
        #[command(flatten)]
        leaf: LeafOpts,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Operator side: sign a bank's CSR for the identity you name (only its public key is used).
    Sign {
        /// PKI directory.
        #[arg(long)]
        ca: PathBuf,
        /// The CSR file.
        #[arg(long)]
        csr: PathBuf,
        /// Output directory (tls.crt, ca.crt, crl.pem).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        leaf: LeafOpts,
    },
    /// Revoke a certificate (by serial or file) and publish a new CRL (pki/crl.pem).
    Revoke {
        /// PKI directory.
        #[arg(long)]
        ca: PathBuf,
        /// Serial number, hex (as `inspect` or `openssl x509 -serial` prints it).
        #[arg(long, required_unless_present = "cert", conflicts_with = "cert")]
        serial: Option<String>,
        /// A certificate file to revoke.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation.
        #[arg(long, default_value = "unspecified")]
        reason: Reason,
    },
    /// Sign a fresh CRL from the revocation ledger and write it (also to pki/crl.pem).
    Crl {
        /// PKI directory.
        #[arg(long)]
        ca: PathBuf,
        /// Where to write the CRL (PEM).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity of the CRL in days.
        #[arg(long, default_value_t = crl::DEFAULT_CRL_DAYS)]
        days: u32,
    },
    /// Issue the next key and certificate for a leaf directory, replacing its files atomically.
    Rotate {
        /// PKI directory.
        #[arg(long)]
        ca: PathBuf,
        /// The leaf directory (tls.crt, tls.key).
        #[arg(long)]
        dir: PathBuf,
        /// Validity of the new certificate in days.
        #[arg(long, default_value_t = leaf::DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Key algorithm of the new key.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: KeyType,
        /// Also revoke the old certificate (reason: superseded).
        #[arg(long)]
        revoke_old: bool,
    },
    /// Print a human-readable summary of a certificate.
    Inspect {
        /// Certificate file (PEM; the first certificate is summarised).
        cert: PathBuf,
    },
    /// Check a certificate chain against the root (and a CRL).
    Verify {
        /// Certificate chain file (PEM: leaf, then intermediates).
        cert: PathBuf,
        /// Root CA certificate (ca.crt).
        #[arg(long)]
        ca: PathBuf,
        /// CRL file to check revocation against.
        #[arg(long)]
        crl: Option<PathBuf>,
        /// Federation name.
        #[arg(long, default_value = "tessera")]
        federation: String,
    },
    /// Print a Kubernetes Secret (kubernetes.io/tls + ca.crt) for a leaf directory. Contains the key.
    K8sSecret {
        /// The leaf directory.
        #[arg(long)]
        dir: PathBuf,
        /// Secret name.
        #[arg(long, default_value = "tessera-tls")]
        name: String,
        /// Namespace.
        #[arg(long)]
        namespace: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Bootstrap {
            ca,
            federation,
            coordinator,
            dns,
            parties,
            owner,
        } => bootstrap(ca, federation, coordinator, dns, parties, owner)?,
        Cmd::Init {
            out,
            federation,
            key_type,
            root_days,
            intermediate_days,
            force,
        } => init(out, federation, key_type, root_days, intermediate_days, force)?,
        Cmd::Issue {
            ca,
            out,
            who,
            leaf: opts,
            force,
        } => {
            let p = PkiDir::open(&ca)?;
            let req = opts.request(&p.federation().context("reading the PKI")?, who.identity()?);
            let info = leaf::issue(&p, &req, &out, force)
                .with_context(|| format!("issuing into {}", out.display()))?;
            println!("issued into {}\n{info}", out.display());
        }
        Cmd::Csr {
            out,
            who,
            federation,
            leaf: opts,
            force,
        } => {
            let req = opts.request(&federation, who.identity()?);
            let path =
                leaf::csr(&req, &out, force).with_context(|| format!("creating CSR in {}", out.display()))?;
            println!(
                "private key: {} (mode 0600, keep it here)",
                out.join(leaf::LEAF_KEY).display()
            );
            println!("send this CSR to the federation operator: {}", path.display());
        }
        Cmd::Sign {
            ca,
            csr,
            out,
            who,
            leaf: opts,
        } => {
            let p = PkiDir::open(&ca)?;
            let req = opts.request(&p.federation().context("reading the PKI")?, who.identity()?);
            let info =
                leaf::sign(&p, &csr, &req, &out).with_context(|| format!("signing {}", csr.display()))?;
            println!(
                "signed into {} (send back tls.crt, ca.crt, crl.pem)\n{info}",
                out.display()
            );
        }
        Cmd::Revoke {
            ca,
            serial,
            cert,
            reason,
        } => {
            let p = PkiDir::open(&ca)?;
            let r = match (serial, cert) {
                (Some(s), _) => crl::revoke(&p, &s, reason, None)?,
                (None, Some(c)) => crl::revoke_cert(&p, &c, reason)?,
                (None, None) => bail!("--serial or --cert is required"),
            };
            println!(
                "revoked serial {} ({:?}); new CRL at {}",
                r.serial,
                r.reason,
                p.crl().display()
            );
            println!(
                "copy it to every party and the coordinator (their tls_dir/crl.pem); they reload it without restart"
            );
        }
        Cmd::Crl { ca, out, days } => {
            let p = PkiDir::open(&ca)?;
            let pem = crl::write_crl(&p, days)?;
            if let Some(out) = out {
                std::fs::write(&out, pem).with_context(|| format!("writing {}", out.display()))?;
                println!("CRL written to {} and {}", out.display(), p.crl().display());
            } else {
                println!("CRL written to {}", p.crl().display());
            }
        }
        Cmd::Rotate {
            ca,
            dir,
            days,
            key_type,
            revoke_old,
        } => rotate(ca, dir, days, key_type, revoke_old)?,
        Cmd::Inspect { cert } => println!("{}", CertInfo::from_file(&cert)?),
        Cmd::Verify {
            cert,
            ca,
            crl,
            federation,
        } => {
            let info = inspect::verify(&cert, &ca, crl.as_deref(), &federation)?;
            println!(
                "OK: {} chains to {} and is valid now{}",
                info.uris.join(", "),
                ca.display(),
                if crl.is_some() { ", not revoked" } else { "" }
            );
        }
        Cmd::K8sSecret { dir, name, namespace } => {
            print!("{}", k8s::secret_manifest(&dir, &name, &namespace)?)
        }
    }
    Ok(())
}

/// `bootstrap`: the PKI (kept if present) and every certificate not yet issued.
fn bootstrap(
    ca: PathBuf,
    federation: String,
    coordinator: PathBuf,
    dns: Vec<String>,
    parties: Vec<String>,
    owner: Option<tessera_certs::Owner>,
) -> Result<()> {
    let p = PkiDir::new(&ca);
    if p.federation().is_ok() {
        println!("PKI in {} kept", ca.display());
    } else {
        let opts = InitOptions {
            federation: federation.clone(),
            key_type: KeyType::default(),
            root_days: pki::DEFAULT_ROOT_DAYS,
            intermediate_days: pki::DEFAULT_INTERMEDIATE_DAYS,
            force: false,
        };
        pki::init(&p, &opts).with_context(|| format!("initialising PKI in {}", ca.display()))?;
        println!("PKI for federation {federation:?} created in {}", ca.display());
    }
    let federation = p.federation().context("reading the PKI")?;
    let mut wanted = vec![(tessera_certs::Identity::Coordinator, coordinator)];
    for spec in parties {
        let (id, dir) = spec
            .split_once('=')
            .with_context(|| format!("--party {spec:?}: expected ID=DIR"))?;
        let id = tessera_certs::PartyId::new(id).with_context(|| format!("--party {spec:?}"))?;
        wanted.push((tessera_certs::Identity::Party(id), PathBuf::from(dir)));
    }
    for (identity, out) in wanted {
        if out.join(leaf::LEAF_CERT).exists() {
            println!("{} kept", out.display());
            continue;
        }
        let mut req = leaf::LeafRequest::new(&federation, identity.clone());
        if identity == tessera_certs::Identity::Coordinator {
            req.dns_names.extend(dns.iter().cloned());
        }
        leaf::issue(&p, &req, &out, false).with_context(|| format!("issuing into {}", out.display()))?;
        if let Some(o) = owner {
            tessera_certs::chown_tree(&out, o).with_context(|| format!("handing {} over", out.display()))?;
        }
        println!("issued {} into {}", identity.uri(&federation), out.display());
    }
    Ok(())
}

/// `init`: a new root and intermediate CA.
fn init(
    out: PathBuf,
    federation: String,
    key_type: KeyType,
    root_days: u32,
    intermediate_days: u32,
    force: bool,
) -> Result<()> {
    let p = PkiDir::new(&out);
    let opts = InitOptions {
        federation: federation.clone(),
        key_type,
        root_days,
        intermediate_days,
        force,
    };
    pki::init(&p, &opts).with_context(|| format!("initialising PKI in {}", out.display()))?;
    println!(
        "federation {federation:?}: root and intermediate CA in {}",
        out.display()
    );
    println!(
        "distribute {} (trust anchor) and {} (CRL)",
        p.trust_anchor().display(),
        p.crl().display()
    );
    println!(
        "move {} off this machine: issuing needs only the intermediate",
        p.root_key().display()
    );
    Ok(())
}

/// `rotate`: a new key and certificate for a holder, optionally revoking the old one.
fn rotate(ca: PathBuf, dir: PathBuf, days: u32, key_type: KeyType, revoke_old: bool) -> Result<()> {
    let p = PkiDir::open(&ca)?;
    let (old, new) =
        leaf::rotate(&p, &dir, days, key_type).with_context(|| format!("rotating {}", dir.display()))?;
    println!(
        "rotated {}: serial {} -> {}",
        dir.display(),
        old.serial,
        new.serial
    );
    if revoke_old {
        crl::revoke(&p, &old.serial, Reason::Superseded, Some(old.subject))?;
        println!(
            "old certificate revoked (superseded); new CRL at {}",
            p.crl().display()
        );
    }
    println!("{new}");
    Ok(())
}
