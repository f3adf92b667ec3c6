//! `Network: HTTP`: the container sits on an internal Docker network (no route out, no
//! traffic between containers) and reaches the web only through this HTTP proxy, which the
//! node runs on that network's gateway address, one listener per execution, and which lets
//! through only the job's allowed domains (`Network.Domains`, the CLI's `--domain`). The
//! container finds it through `HTTP_PROXY`/`HTTPS_PROXY`. HTTPS goes through `CONNECT`, so
//! the proxy sees the host name, never the content.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Which hosts a job may reach: `example.com` matches that host only, `.example.com` the
/// domain and every subdomain (Bacalhau's convention).
#[derive(Clone, Debug, Default)]
pub struct AllowList(Vec<String>);

impl AllowList {
    /// The list, normalised (lower case, no trailing dot, no scheme or port).
    pub fn new(domains: &[String]) -> Self {
        Self(
            domains
                .iter()
                .map(|d| {
                    let d = d.trim().to_ascii_lowercase();
                    let d = d.split("://").last().unwrap_or_default();
                    let d = d.split(['/', ':']).next().unwrap_or_default();
                    d.trim_end_matches('.').to_owned()
                })
                .filter(|d| !d.is_empty() && d != ".")
                .collect(),
        )
    }

    /// Whether `host` may be reached.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|d| match d.strip_prefix('.') {
            Some(base) => host == base || host.ends_with(d.as_str()),
            None => host == *d,
        })
    }
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `ip` (an ephemeral port) for one execution's container.
    pub async fn start(ip: IpAddr, allow: AllowList) -> std::io::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                let allow = allow.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(conn, &allow).await {
                        debug!(%peer, error = %e, "proxy connection ended");
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The URL containers use as `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_HEAD: usize = 64 * 1024;

async fn reply(conn: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes()).await
}

/// Splits `host[:port]` (with `[v6]` literals), using `default_port` when none is given.
fn host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

async fn handle(conn: TcpStream, allow: &AllowList) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut head = Vec::new();
    // Read the request head: lines up to the empty one.
    loop {
        let n = reader.read_until(b'\n', &mut head).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let buffered = reader.buffer().to_vec();
    let mut conn = reader.into_inner();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return reply(&mut conn, "400 Bad Request", "not an HTTP request\n").await;
    };
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (authority, path) = if connect {
        (target, "")
    } else if let Some(rest) = target.strip_prefix("http://") {
        rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]))
    } else {
        return reply(&mut conn, "400 Bad Request", "this proxy takes absolute http:// URLs and CONNECT\n").await;
    };
    let Some((host, port)) = host_port(authority, if connect { 443 } else { 80 }) else {
        return reply(&mut conn, "400 Bad Request", "cannot read the host and port\n").await;
    };
    if !allow.allows(&host) {
        let msg = format!(
            "{host} is not among this job's allowed domains (Network.Domains); allow it with --domain {host}\n"
        );
        return reply(&mut conn, "403 Forbidden", &msg).await;
    }
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return reply(&mut conn, "502 Bad Gateway", &format!("cannot reach {host}:{port}: {e}\n")).await,
        Err(_) => return reply(&mut conn, "504 Gateway Timeout", &format!("{host}:{port} did not answer\n")).await,
    };
    let mut upstream = upstream;
    if connect {
        conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    } else {
        // Origin-form request line; one request per connection, so later requests on this
        // connection cannot reach another host past the check.
        let mut out = format!("{method} {path} {version}\r\n");
        for h in lines.filter(|l| !l.is_empty()) {
            let name = h.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            if !matches!(name.as_str(), "proxy-connection" | "connection" | "keep-alive" | "proxy-authorization") {
                out.push_str(h);
                out.push_str("\r\n");
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        upstream.write_all(out.as_bytes()).await?;
    }
    upstream.write_all(&buffered).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn allow_list_matches_hosts_and_subdomains() {
        let a = AllowList::new(&["Example.com".into(), ".pypi.org".into(), "https://files.host:443/x".into()]);
        assert!(a.allows("example.com") && a.allows("EXAMPLE.COM."));
        assert!(!a.allows("www.example.com") && !a.allows("badexample.com"));
        assert!(a.allows("pypi.org") && a.allows("files.pypi.org"));
        assert!(!a.allows("evilpypi.org"));
        assert!(a.allows("files.host"));
        assert!(!AllowList::new(&[]).allows("example.com"));
    }

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(host_port("a.b:8080", 80), Some(("a.b".into(), 8080)));
        assert_eq!(host_port("a.b", 443), Some(("a.b".into(), 443)));
        assert_eq!(host_port("[::1]:81", 80), Some(("::1".into(), 81)));
        assert_eq!(host_port("a:b", 80), None);
    }

    #[tokio::test]
    async fn the_proxy_forwards_allowed_hosts_and_refuses_others() {
        let origin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = origin.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = origin.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let first = req.lines().next().unwrap_or_default().to_owned();
                let body = format!("origin saw: {first}");
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = c.write_all(resp.as_bytes()).await;
            }
        });
        let proxy =
            Proxy::start("127.0.0.1".parse().expect("ip"), AllowList::new(&["localhost".into()])).await.expect("proxy");
        let ask = |req: String| {
            let addr = proxy.addr;
            async move {
                let mut c = TcpStream::connect(addr).await.expect("connect");
                c.write_all(req.as_bytes()).await.expect("write");
                let mut out = String::new();
                c.read_to_string(&mut out).await.expect("read");
                out
            }
        };
        let ok = ask(format!("GET http://localhost:{port}/x?y HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("origin saw: GET /x?y HTTP/1.1"), "{ok}");
        let denied = ask("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into()).await;
        assert!(denied.starts_with("HTTP/1.1 403") && denied.contains("--domain example.com"), "{denied}");
        let tunnel =
            ask(format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert!(tunnel.contains("200 Connection established") && tunnel.contains("GET /tunnelled"), "{tunnel}");
    }
}
