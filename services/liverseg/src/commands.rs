//! The subcommands other than `serve`.

use crate::cli::{AuditCommand, Command, JobsCommand};
use anyhow::Context;
use liverseg_core::{Config, time::format_millis};
use liverseg_dicom::scu;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(command: Command, config: Arc<Config>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { roles } => crate::serve::serve(config, roles).await,
        Command::Send {
            paths,
            to,
            calling_ae,
        } => send(&config, paths, to, calling_ae).await,
        Command::Echo { target } => {
            let opts = scu::SendOptions {
                calling_ae_title: config.listener.ae_title.clone(),
                tls: liverseg_dicom::tls::delivery_client(&config.delivery)?,
                ..Default::default()
            };
            scu::echo(&target, &opts).await?;
            println!(
                "{}@{}:{} answered C-ECHO",
                target.ae_title, target.host, target.port
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { command } => jobs(&config, command).await,
        Command::Segment {
            input,
            out,
            model,
            threads,
            every_slice,
        } => {
            let args = crate::offline::SegmentArgs {
                input,
                out,
                model,
                threads,
                every_slice,
                max_triangles: config.results.mesh_max_triangles as usize,
            };
            tokio::task::spawn_blocking(move || crate::offline::segment(args)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { pred, truth, json } => {
            tokio::task::spawn_blocking(move || crate::offline::eval(&pred, &truth, json))
                .await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { timeout } => health(&config, timeout).await,
        Command::Audit {
            command: AuditCommand::Export { after },
        } => audit_export(&config, after).await,
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("liverseg {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn jobs(config: &Config, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let store = liverseg_store::open(&config.storage.metadata_url, &config.storage.data_dir)
        .await
        .context("opening the metadata store")?;
    match command {
        JobsCommand::List { state, limit, json } => {
            let jobs = store.list_jobs(state, limit.max(1)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                println!(
                    "{:<36}  {:<8}  {:>8}  {:>9}  {:<24}  SERIES",
                    "JOB", "STATE", "ATTEMPTS", "INSTANCES", "UPDATED"
                );
                for j in &jobs {
                    println!(
                        "{:<36}  {:<8}  {:>8}  {:>9}  {:<24}  {}",
                        j.id.to_string(),
                        j.state.as_str(),
                        j.attempts,
                        j.instance_count,
                        format_millis(j.updated_at),
                        j.series_uid
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id } => {
            let job = store
                .get_job(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
            let shown = serde_json::json!({
                "job": job,
                "results": store.results(id).await?,
                "deliveries": store.deliveries(id).await?,
                "events": store.events(Some(&id.to_string()), 1000).await?,
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Replay { id } => {
            let queue = liverseg_queue::open(
                &config.queue.url,
                &config.storage.data_dir,
                crate::serve::queue_options(config),
            )
            .await
            .context("opening the queue")?;
            use liverseg_ingest::completion::{Replay, replay};
            match replay(store.as_ref(), queue.as_ref(), id, "from the command line").await? {
                Replay::Queued(_) => {}
                Replay::Missing => anyhow::bail!("no job {id}"),
                Replay::NotReplayable(s) => {
                    anyhow::bail!("job {id} is {s}; only dead or failed jobs are replayed")
                }
            }
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            store
                .append_audit(&liverseg_core::AuditRecord {
                    at: liverseg_core::time::now_millis(),
                    actor: format!("cli:{user}"),
                    action: "replay".into(),
                    object: id.to_string(),
                    peer: "local command line".into(),
                    outcome: "ok".into(),
                    ..Default::default()
                })
                .await?;
            println!("job {id} queued again");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn send(
    config: &Config,
    paths: Vec<std::path::PathBuf>,
    to: scu::Target,
    calling_ae: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for p in &paths {
        if p.is_dir() {
            files
                .extend(scu::collect_files(p).with_context(|| format!("reading {}", p.display()))?);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", p.display());
        }
    }
    let opts = scu::SendOptions {
        calling_ae_title: calling_ae.unwrap_or_else(|| config.listener.ae_title.clone()),
        max_pdu_length: config.listener.max_pdu_length,
        // The same TLS settings as delivery (delivery.tls, tls_ca, ...).
        tls: liverseg_dicom::tls::delivery_client(&config.delivery)?,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report = scu::send_files(&files, &to, &opts).await?;
    let secs = started.elapsed().as_secs_f64();
    for f in &report.failures {
        eprintln!("{}: {}", f.path.display(), f.reason);
    }
    println!(
        "sent {} of {} files ({} with warnings, {:.1} MB) in {:.2} s",
        report.sent,
        files.len(),
        report.warnings,
        report.bytes as f64 / 1e6,
        secs
    );
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// GET /readyz on the admin endpoint; a wildcard bind address is reached
/// on loopback (the check runs inside the container or pod).
async fn health(config: &Config, timeout: u64) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = config.admin.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let ask = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(timeout), ask)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within {timeout} s"))?
        .with_context(|| format!("asking {addr}/readyz"))?;
    let text = String::from_utf8_lossy(&answer);
    let ready = text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    println!("{}", body.trim());
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Streams the audit trail as JSON lines, a page at a time.
async fn audit_export(config: &Config, after: i64) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let store = liverseg_store::open(&config.storage.metadata_url, &config.storage.data_dir)
        .await
        .context("opening the metadata store")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut last = after;
    loop {
        let page = store.audit_trail(last, 1000).await?;
        let Some(tail) = page.last() else { break };
        last = tail.id;
        for record in &page {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
