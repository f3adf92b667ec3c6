//! `job get`: fetch a job's published results into the result folder layout.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bacalhau_api::Client;
use bacalhau_executor::{EXIT_CODE_FILE, STDERR_FILE, STDOUT_FILE};
use bacalhau_storage::unpack_tar_gz;

use crate::args::GetArgs;

/// Downloads and merges every result of the job; returns the folder written.
pub async fn get(client: &Client, args: &GetArgs) -> Result<PathBuf> {
    let job = client.get_job(&args.id, "").await?.job;
    eprintln!("Fetching results of job '{}'...", job.id);
    let results = client.results(job.id.as_str()).await?.items;
    if results.is_empty() {
        bail!(
            "no results found for job {}: it has no publisher, or no execution completed yet.\nHint: see its output with `bacalhau job logs {}`",
            job.id,
            job.id
        );
    }
    let out = args.output_dir.clone().unwrap_or_else(|| PathBuf::from(format!("job-{}", args.id)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let raw = out.join("raw");
    let timeout = Duration::from_secs(args.download_timeout_secs);
    for (i, r) in results.iter().enumerate() {
        if r.is_type("ipfs") {
            let cid = bacalhau_ipfs::Cid::parse(r.param_str("CID").unwrap_or_default())?;
            let store = bacalhau_ipfs::BlockStore::open(&raw.join(".blocks"))?;
            crate::ipfs::fetch_dag(client, &store, &cid).await?;
            bacalhau_ipfs::export(&store, &cid, &raw.join(i.to_string()))
                .with_context(|| format!("writing result {cid}"))?;
            continue;
        }
        if r.is_type("s3PreSigned") {
            // Signed by the orchestrator: a plain download, no credentials of our own.
            let url = r.param_str("PreSignedURL").context("an s3PreSigned result has no PreSignedURL")?;
            let archive = raw.join(format!("{i}.tar.gz"));
            std::fs::create_dir_all(&raw)?;
            fetch_archive(client, url, &archive, timeout).await.context("downloading the s3 result")?;
            unpack_result(&archive, &raw.join(i.to_string())).await?;
            continue;
        }
        if r.is_type("s3") {
            let place = format!(
                "s3://{}/{}",
                r.param_str("Bucket").unwrap_or_default(),
                r.param_str("Key").unwrap_or_default()
            );
            bail!(
                "result {i} is in S3 at {place} and the orchestrator did not sign a URL for it (it has no S3 credentials, signing is off, or the result is not one archive): fetch it with `aws s3 cp --recursive {place} .`"
            );
        }
        if !r.is_type("urlDownload") {
            bail!(
                "result {i} is of type {}, which this client cannot download yet: {}",
                r.type_name(),
                serde_json::to_string(r)?
            );
        }
        let url = r.param_str("URL").context("a urlDownload result has no URL")?;
        let archive = raw.join(format!("{i}.tar.gz"));
        std::fs::create_dir_all(&raw)?;
        if let Err(direct) = fetch_archive(client, url, &archive, timeout).await {
            // The compute node may be out of this client's reach (behind NAT, or advertising an
            // address only its own network knows): its orchestrator relays the archive.
            let Some(file) =
                url.rsplit('/').next().filter(|f| f.ends_with(".tar.gz") && url.contains("/local-results/"))
            else {
                return Err(direct.into());
            };
            let relayed = format!("{}/api/v1/local-results/{file}?job_id={}", client.base_url(), job.id);
            if relayed == url {
                return Err(direct.into());
            }
            eprintln!("{url} is out of reach ({direct}); fetching it through the orchestrator");
            fetch_archive(client, &relayed, &archive, timeout).await.with_context(|| {
                format!("downloading result {i} failed directly ({direct}) and through the orchestrator")
            })?;
        }
        unpack_result(&archive, &raw.join(i.to_string())).await?;
    }
    let _ = std::fs::remove_dir_all(raw.join(".blocks"));
    if !args.raw {
        for i in 0..results.len() {
            merge(&raw.join(i.to_string()), &out, results.len() > 1)?;
        }
        std::fs::remove_dir_all(&raw)?;
    }
    let abs = std::fs::canonicalize(&out).unwrap_or(out);
    Ok(abs)
}

/// Downloads `url` to `archive` with a progress bar on stderr (bytes, rate, time left; drawn
/// only on a terminal). On failure nothing is left to trip the next `job get` into this folder.
async fn fetch_archive(
    client: &Client,
    url: &str,
    archive: &Path,
    timeout: Duration,
) -> Result<u64, bacalhau_api::ClientError> {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bytes:>10} / {total_bytes} [{wide_bar}] {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let got = client
        .download_with_progress(url, archive, timeout, &mut |n, total| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(n);
        })
        .await;
    bar.finish_and_clear();
    if got.is_err() {
        let _ = std::fs::remove_file(archive);
    }
    got
}

/// Unpacks a downloaded result archive into `dir` and removes the archive.
async fn unpack_result(archive: &Path, dir: &Path) -> Result<()> {
    let (a, d) = (archive.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || unpack_tar_gz(&a, &d)).await??;
    std::fs::remove_file(archive)?;
    Ok(())
}

/// Moves `from`'s contents into `to`. With several results, `stdout`, `stderr` and `exitCode`
/// are appended; any other clash is an error, as in Bacalhau. Results are untrusted: nothing
/// here follows a symlink (a result's `outputs` may be a symlink to anywhere on this machine),
/// so a result only ever adds entries inside `to`.
fn merge(from: &Path, to: &Path, append: bool) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let src = entry.path();
        let dest = to.join(&name);
        let Ok(existing) = std::fs::symlink_metadata(&dest) else {
            std::fs::rename(&src, &dest)?;
            continue;
        };
        let incoming = std::fs::symlink_metadata(&src)?;
        let is_output_file = [STDOUT_FILE, STDERR_FILE, EXIT_CODE_FILE].iter().any(|f| name == *f);
        if append && is_output_file && existing.is_file() && incoming.is_file() {
            let mut out = std::fs::OpenOptions::new().append(true).custom_flags(libc_nofollow()).open(&dest)?;
            if name == EXIT_CODE_FILE {
                out.write_all(b"\n")?;
            }
            std::io::copy(&mut std::fs::File::open(&src)?, &mut out)?;
            continue;
        }
        if existing.is_dir() && incoming.is_dir() {
            merge(&src, &dest, false)?;
            continue;
        }
        if existing.file_type().is_symlink() || incoming.file_type().is_symlink() {
            bail!(
                "cannot merge results: {} is a symlink in one result and also present in another; \
                 refusing to write through it. Try --raw",
                dest.display()
            );
        }
        bail!("cannot merge results: {} already exists. Try --raw, or an empty --output-dir", dest.display());
    }
    Ok(())
}

/// `O_NOFOLLOW`: the file appended to must be the regular file just checked, not a symlink
/// swapped in since.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits().cast_signed()
}
