//! Outside checks on a job before the compute node bids (Bacalhau's
//! `--job-selection-probe-exec` and `--job-selection-probe-http`): each is a [`BidProbe`] the
//! node asks on a blocking thread, off its loop.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bacalhau_compute::BidProbe;
use bacalhau_model::Job;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A probe that runs `cmd` with `sh -c`, the job as JSON on its stdin: exit 0 takes the job,
/// anything else declines it with the command's output.
pub fn exec(cmd: &str) -> BidProbe {
    let cmd = cmd.to_owned();
    Arc::new(move |job: &Job| probe_exec(&cmd, job))
}

/// A probe that POSTs `{"Job": ...}` to `url` (http only): a 2xx answer takes the job.
pub fn http(url: &str) -> Result<BidProbe> {
    let target = HttpTarget::parse(url)?;
    Ok(Arc::new(move |job: &Job| probe_http(&target, job)))
}

pub(crate) fn probe_exec(cmd: &str, job: &Job) -> Result<(), String> {
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
pub(crate) struct HttpTarget {
    host: String,
    port: u16,
    path: String,
}

impl HttpTarget {
    pub(crate) fn parse(url: &str) -> Result<HttpTarget> {
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

pub(crate) fn probe_http(t: &HttpTarget, job: &Job) -> Result<(), String> {
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
