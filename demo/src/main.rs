//! `tessera-demo`: the embedded demo. Issues certificates, starts two parties (bank-a, the
//! lender holding labels, and bank-b) and a coordinator as separate processes talking QUIC
//! with mutual TLS on loopback, trains on the shipped `default_credit` data, and prints a
//! ready-to-paste `curl` command. Ctrl-C stops everything.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::process::{Child, Command};

/// Marks a directory as created by the demo, so re-running may wipe it.
const MARKER: &str = ".tessera-demo";
/// bank-a's published reason dictionary (its columns: x0 = PAY_6, x1–x6 = BILL_AMT1–6,
/// x7–x12 = PAY_AMT1–6).
const REASONS_A: &str = r#"[[reasons]]
code = "PD06"
text = "Payment delay six months ago"
features = ["x0"]
[[reasons]]
code = "BL01"
text = "High recent card balance"
features = ["x1", "x2"]
[[reasons]]
code = "BL02"
text = "High balances in earlier months"
features = ["x3", "x4", "x5", "x6"]
[[reasons]]
code = "PY01"
text = "Low recent payments"
features = ["x7", "x8"]
[[reasons]]
code = "PY02"
text = "Low payments in earlier months"
features = ["x9", "x10", "x11", "x12"]
"#;

/// bank-b's dictionary (x0 = LIMIT_BAL, x1 = SEX, x2 = EDUCATION, x3 = MARRIAGE, x4 = AGE,
/// x5 = PAY_0, x6–x9 = PAY_2–5). Sex, marital status, age and education are in no reason: they
/// are never given as the reason for a decision.
const REASONS_B: &str = r#"[[reasons]]
code = "LM01"
text = "Low credit limit"
features = ["x0"]
[[reasons]]
code = "DL01"
text = "Recent payment delays"
features = ["x5", "x6"]
[[reasons]]
code = "DL02"
text = "Earlier payment delays"
features = ["x7", "x8", "x9"]
"#;

/// A customer present at both banks (first row of both files).
const SAMPLE_CUSTOMER: &str = "25115";

#[derive(Parser)]
#[command(
    name = "tessera-demo",
    version,
    about = "Run a two-bank Tessera federation on this machine"
)]
struct Cli {
    /// Working directory for certificates, configs and models (recreated on each run).
    #[arg(long, default_value = "demo-run")]
    dir: PathBuf,
    /// Directory holding default_credit_hetero_{guest,host}.csv(.gz).
    #[arg(long, default_value = "data/default_credit")]
    data_dir: PathBuf,
    /// HTTP address of the scoring API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// QUIC address the parties dial.
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic: SocketAddr,
    /// Score the sample customer once the federation is ready, print it, and exit (for CI).
    #[arg(long)]
    smoke: bool,
    /// Longest wait for training and readiness, seconds.
    #[arg(long, default_value_t = 600)]
    ready_timeout: u64,
}

fn find_data(dir: &Path, which: &str) -> Result<PathBuf> {
    for name in [
        format!("default_credit_hetero_{which}.csv"),
        format!("default_credit_hetero_{which}.csv.gz"),
    ] {
        let p = dir.join(name);
        if p.exists() {
            return std::fs::canonicalize(&p).with_context(|| format!("resolving {}", p.display()));
        }
    }
    bail!(
        "no default_credit_hetero_{which}.csv(.gz) in {} (run from the repository root or pass --data-dir)",
        dir.display()
    )
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating tessera-demo")?;
    let p = exe.parent().context("exe has no directory")?.join(name);
    if !p.exists() {
        bail!(
            "{} not found next to tessera-demo; build with `cargo build --release --workspace` (scripts/demo does)",
            p.display()
        );
    }
    Ok(p)
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by the demo; choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "created by tessera-demo; safe to delete\n")?;
    std::fs::canonicalize(dir).context("resolving demo directory")
}

fn check_free(http: SocketAddr, quic: SocketAddr) -> Result<()> {
    TcpListener::bind(http).with_context(|| format!("HTTP address {http} is in use (pass --http)"))?;
    UdpSocket::bind(quic).with_context(|| format!("QUIC address {quic} is in use (pass --quic)"))?;
    Ok(())
}

async fn run_tool(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn toml_path(p: &Path) -> String {
    // TOML basic strings: escape backslashes and quotes.
    p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

fn spawn(bin: &Path, args: &[&str], name: &str) -> Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.spawn().with_context(|| format!("starting {name}"))
}

/// Ctrl-C or SIGTERM: either stops the demo and, with it, every process it started.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn stop_all(children: &mut [(String, Child)]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for (_, c) in children.iter() {
        if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (name, c) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{name} did not stop in 10 s; killing it");
                let _ = c.kill().await;
            }
        }
    }
}

async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    children: &mut [(String, Child)],
    limit: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        for (name, c) in children.iter_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("{name} exited early ({status}); see its log above");
            }
        }
        if start.elapsed() > limit {
            bail!("federation not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let certs = sibling("tessera-certs")?;
    let party = sibling("tessera-party")?;
    let coordinator = sibling("tessera-coordinator")?;
    let guest_data = find_data(&cli.data_dir, "guest")?;
    let host_data = find_data(&cli.data_dir, "host")?;
    check_free(cli.http, cli.quic)?;
    let dir = prepare_dir(&cli.dir)?;

    issue_certificates(&certs, &dir).await?;
    println!("certificates issued in {}", dir.join("pki").display());

    // One API client for the demo, with every scope; its key goes to a file beside the
    // configs (owner-only) and into the printed curl.
    let keys_file = dir.join("api-keys.toml");
    let kf = keys_file.display().to_string();
    let api_key = run_tool(
        &coordinator,
        &[
            "api-key",
            "add",
            "--keys-file",
            &kf,
            "--name",
            "demo",
            "--scopes",
            "score,decisions,admin",
        ],
    )
    .await?;
    tessera_certs::durable::write_atomic(&dir.join("api-key"), api_key.as_bytes(), true)
        .context("writing the demo's API key")?;
    let (coordinator_cfg, party_cfgs) = write_configs(&cli, &dir, &guest_data, &host_data)?;

    let mut children = Vec::new();
    let ccfg = coordinator_cfg.display().to_string();
    children.push((
        "coordinator".to_string(),
        spawn(
            &coordinator,
            &["serve", "--config", &ccfg, "--train"],
            "coordinator",
        )?,
    ));
    for (bank, cfg) in &party_cfgs {
        let cfg = cfg.display().to_string();
        children.push((bank.to_string(), spawn(&party, &["--config", &cfg], bank)?));
    }

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {api_key}")).context("API key")?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = format!("http://{}", cli.http);
    let outcome = first_score(&cli, &client, &base, &api_key, &mut children).await;
    let keep_running = match outcome {
        Ok(k) => k && !cli.smoke,
        Err(e) => {
            stop_all(&mut children).await;
            return Err(e);
        }
    };
    if keep_running {
        println!("Press Ctrl-C to stop.");
        tokio::select! {
            _ = stop_signal() => {}
            _ = watch_children(&mut children) => {}
        }
    }
    println!("stopping...");
    stop_all(&mut children).await;
    println!("stopped.");
    Ok(())
}

/// Issues the federation CA, the coordinator's certificate and one per bank under `dir/pki`.
async fn issue_certificates(certs: &Path, dir: &Path) -> Result<()> {
    let p = |s: &str| dir.join(s).display().to_string();
    run_tool(certs, &["init", "--out", &p("pki/ca")]).await?;
    run_tool(
        certs,
        &[
            "issue",
            "--ca",
            &p("pki/ca"),
            "--out",
            &p("pki/coordinator"),
            "--coordinator",
        ],
    )
    .await?;
    for bank in ["bank-a", "bank-b"] {
        run_tool(
            certs,
            &[
                "issue",
                "--ca",
                &p("pki/ca"),
                "--out",
                &p(&format!("pki/{bank}")),
                "--party",
                bank,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Writes the coordinator's and each bank's configuration; returns their paths.
fn write_configs(
    cli: &Cli,
    dir: &Path,
    guest_data: &Path,
    host_data: &Path,
) -> Result<(PathBuf, Vec<(&'static str, PathBuf)>)> {
    let coordinator_cfg = dir.join("coordinator.toml");
    std::fs::write(
        &coordinator_cfg,
        format!(
            "listen_quic = \"{}\"\nlisten_http = \"{}\"\ntls_dir = \"{}\"\nmodel_dir = \"{}\"\nparties = [\"bank-a\", \"bank-b\"]\n\n[auth]\nkeys_file = \"{}\"\n",
            cli.quic,
            cli.http,
            toml_path(&dir.join("pki/coordinator")),
            toml_path(&dir.join("models/coordinator")),
            toml_path(&dir.join("api-keys.toml")),
        ),
    )?;
    let mut party_cfgs = Vec::new();
    for (bank, data, label) in [("bank-a", guest_data, Some("y")), ("bank-b", host_data, None)] {
        let reasons = if bank == "bank-a" { REASONS_A } else { REASONS_B };
        let cfg = dir.join(format!("{bank}.toml"));
        let label = label
            .map(|l| format!("label_column = \"{l}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &cfg,
            format!(
                "party_id = \"{bank}\"\ncoordinator_addr = \"{}\"\ncoordinator_name = \"localhost\"\ntls_dir = \"{}\"\nmodel_dir = \"{}\"\n\n# This bank takes part in training runs (the default is not to).\n[training]\nenabled = true\n\n[data]\npath = \"{}\"\n{label}\n{reasons}",
                cli.quic,
                toml_path(&dir.join(format!("pki/{bank}"))),
                toml_path(&dir.join(format!("models/{bank}"))),
                toml_path(data),
            ),
        )?;
        party_cfgs.push((bank, cfg));
    }
    Ok((coordinator_cfg, party_cfgs))
}

/// Waits until the federation is ready, scores the sample customer and prints how to use it.
///
/// # Returns
/// `false` if interrupted before ready.
async fn first_score(
    cli: &Cli,
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
    children: &mut [(String, Child)],
) -> Result<bool> {
    let ready_url = format!("{base}/readyz");
    tokio::select! {
        r = wait_ready(client, &ready_url, children, Duration::from_secs(cli.ready_timeout)) => r?,
        _ = stop_signal() => return Ok(false),
    }
    let body = format!("{{\"customer_id\": \"{SAMPLE_CUSTOMER}\"}}");
    let answer = client
        .post(format!("{base}/v1/score"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .context("scoring the sample customer")?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let model: serde_json::Value = match client.get(format!("{base}/v1/model")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let m = &model["metrics"];
    println!();
    println!(
        "Model {}: holdout AUC {:.4}, KS {:.4} on {} customers ({} held out), trained in {:.1} s",
        model["model_id"].as_str().unwrap_or("?"),
        m["holdout_auc"].as_f64().unwrap_or(f64::NAN),
        m["holdout_ks"].as_f64().unwrap_or(f64::NAN),
        m["customers"],
        m["holdout_rows"],
        m["training_seconds"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "Tessera federation is up: coordinator + bank-a (lender, labels) + bank-b, mutual-TLS QUIC on {}",
        cli.quic
    );
    println!("  Web UI:  {base}/   (sign in with the demo's API key below)");
    println!(
        "  API:     {base}/v1/score   health: {base}/healthz   ready: {base}/readyz   model: {base}/v1/model   metrics: {base}/metrics"
    );
    println!(
        "  Try:     curl -s -X POST {base}/v1/score -H 'authorization: Bearer {api_key}' -H 'content-type: application/json' -d '{body}'"
    );
    println!(
        "  Key:     the demo's API key is in {}/api-key (scopes score, decisions, admin); more: tessera-coordinator api-key add --keys-file {}/api-keys.toml ...",
        cli.dir.display(),
        cli.dir.display()
    );
    println!("  Answer:  {text}");
    println!();
    if !status.is_success() {
        bail!("sample scoring request failed with {status}");
    }
    Ok(true)
}

/// Reports children that exit; returns when the coordinator does.
async fn watch_children(children: &mut [(String, Child)]) {
    let mut reported = vec![false; children.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, (name, c)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait()
                && !reported[i]
            {
                reported[i] = true;
                if i == 0 {
                    eprintln!("{name} exited ({status}); stopping the demo");
                    return;
                }
                eprintln!(
                    "{name} exited ({status}); scores are now degraded (its absent embedding is used) and /readyz says why"
                );
            }
        }
    }
}
