//! The compute node's side of the market, wired from `serve` flags: its prices, its bid
//! policy (including an outside probe, like Bacalhau's `--job-selection-probe-*`), and a
//! test-only fault that tampers with results so verification has something to catch.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bacalhau_compute::BidPolicy;
use bacalhau_model::{ExecutionId, Job, Prices, SpecConfig};
use bacalhau_storage::{Publisher, StorageError};

use crate::args::ServeArgs;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's prices, if any price flag is set.
pub fn prices(args: &ServeArgs) -> Result<Option<Prices>> {
    let all = [
        ("--price-cpu-second", args.price_cpu_second),
        ("--price-memory-gb-second", args.price_memory_gb_second),
        ("--price-gpu-second", args.price_gpu_second),
        ("--price-output-gb", args.price_output_gb),
        ("--min-price", args.min_price),
    ];
    for (flag, v) in all {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            bail!("{flag} must be a number of at least 0");
        }
    }
    if all.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    Ok(Some(Prices {
        cpu_second: args.price_cpu_second.unwrap_or(0.0),
        memory_gb_second: args.price_memory_gb_second.unwrap_or(0.0),
        gpu_second: args.price_gpu_second.unwrap_or(0.0),
        output_gb: args.price_output_gb.unwrap_or(0.0),
        min_price: args.min_price.unwrap_or(0.0),
    }))
}

/// The node's bid policy from its flags.
pub fn bid_policy(args: &ServeArgs) -> Result<BidPolicy> {
    let probe: Option<bacalhau_compute::BidProbe> =
        match (&args.job_selection_probe_exec, &args.job_selection_probe_http) {
            (Some(_), Some(_)) => bail!("give one of --job-selection-probe-exec and --job-selection-probe-http"),
            (Some(cmd), None) => {
                let cmd = cmd.clone();
                Some(Arc::new(move |job: &Job| probe_exec(&cmd, job)))
            }
            (None, Some(url)) => {
                let target = HttpTarget::parse(url)?;
                Some(Arc::new(move |job: &Job| probe_http(&target, job)))
            }
            (None, None) => None,
        };
    Ok(BidPolicy {
        reject_networked: args.reject_networked_jobs,
        local_inputs_only: args.local_inputs_only,
        probe,
        host_network_refusal: None,
    })
}

fn probe_exec(cmd: &str, job: &Job) -> Result<(), String> {
    let json = serde_json::to_vec(job).map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the probe {cmd:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut s) = child.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut out);
                }
                return if status.success() { Ok(()) } else { Err(format!("{} ({status})", out.trim())) };
            }
            Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the probe did not answer within {}s", PROBE_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
struct HttpTarget {
    host: String,
    port: u16,
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Result<HttpTarget> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("--job-selection-probe-http {url:?}: only http:// URLs are supported");
        };
        let (hostport, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| anyhow::anyhow!("bad port in {url:?}"))?),
            None => (hostport.to_owned(), 80),
        };
        Ok(HttpTarget { host, port, path })
    }
}

fn probe_http(t: &HttpTarget, job: &Job) -> Result<(), String> {
    let body = serde_json::to_vec(&serde_json::json!({ "Job": job })).map_err(|e| e.to_string())?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(t.host.as_str(), t.port))
        .map_err(|e| format!("probe {}:{}: {e}", t.host, t.port))?
        .next()
        .ok_or_else(|| format!("probe {} has no address", t.host))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("probe: {e}"))?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    let head = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        t.path,
        t.host,
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(&body)).map_err(|e| format!("probe: {e}"))?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let status = reply.lines().next().unwrap_or_default().to_owned();
    let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(())
    } else {
        let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
        Err(format!("{status} {body}").trim().to_owned())
    }
}

/// Test-only: a publisher that alters the result folder before handing it on, as a faulty or
/// dishonest node would; verification should catch it.
#[derive(Debug)]
pub struct Tampering(pub Arc<dyn Publisher>);

#[async_trait::async_trait]
impl Publisher for Tampering {
    fn publisher_type(&self) -> &'static str {
        self.0.publisher_type()
    }

    async fn publish(&self, id: &ExecutionId, results_dir: &Path) -> Result<Option<SpecConfig>, StorageError> {
        let stdout = results_dir.join("stdout");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&stdout)
            .map_err(StorageError::io("tampering with stdout"))?;
        f.write_all(b"tampered\n").map_err(StorageError::io("tampering with stdout"))?;
        self.0.publish(id, results_dir).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_urls_parse() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/bid?x=1").expect("ok");
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 8080, "/bid?x=1"));
        assert!(HttpTarget::parse("https://x").is_err());
    }

    #[test]
    fn an_exec_probe_vetoes_with_its_output() {
        let job = Job::default();
        assert!(probe_exec("cat >/dev/null; exit 0", &job).is_ok());
        let err = probe_exec("cat >/dev/null; echo no GPUs today; exit 3", &job).expect_err("veto");
        assert!(err.contains("no GPUs today"), "{err}");
    }
}
