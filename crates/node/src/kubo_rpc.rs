//! `serve --ipfs-connect`: an external kubo daemon, through its RPC API, as the source of IPFS
//! inputs and the sink of the `ipfs` publisher (Bacalhau's mode). The node's own store stays a
//! verified cache: inputs arrive as a CAR (`dag/export`), every block checked against its CID;
//! results are added locally, then sent to kubo as a CAR (`dag/import`, roots pinned).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bacalhau_ipfs::{BlockStore, Cid, FetchFuture, Fetcher};
use bacalhau_model::{ExecutionId, SpecConfig};
use bacalhau_storage::{IpfsPublisher, Publisher, StorageError};
use futures::StreamExt;

/// A kubo RPC endpoint and the local store it fills.
#[derive(Clone, Debug)]
pub struct KuboRpc {
    base: String,
    http: reqwest::Client,
    store: Arc<BlockStore>,
}

/// `/ip4/H/tcp/P` (kubo's `Addresses.API` form), `H:P` or `http://H:P` → `http://H:P`.
fn base_url(addr: &str) -> Result<String> {
    let a = addr.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        return Ok(a.to_owned());
    }
    let parts: Vec<&str> = a.split('/').collect();
    if let ["", "ip4" | "ip6" | "dns" | "dns4" | "dns6", host, "tcp", port] = parts.as_slice() {
        let host = if parts[1] == "ip6" { format!("[{host}]") } else { (*host).to_owned() };
        return Ok(format!("http://{host}:{port}"));
    }
    if !a.contains('/') && a.contains(':') {
        return Ok(format!("http://{a}"));
    }
    bail!(
        "--ipfs-connect {addr:?} is not a kubo API address: give /ip4/HOST/tcp/PORT (kubo's Addresses.API) or http://HOST:PORT"
    )
}

impl KuboRpc {
    /// Connects to kubo's RPC API at `addr` and checks that it answers.
    pub async fn connect(addr: &str, store: Arc<BlockStore>) -> Result<KuboRpc> {
        let base = base_url(addr)?;
        bacalhau_api::tls::install_provider();
        let http = bacalhau_api::tls::http_client_builder().connect_timeout(Duration::from_secs(10)).build()?;
        let rpc = KuboRpc { base, http, store };
        let id: serde_json::Value = rpc
            .http
            .post(format!("{}/api/v0/id", rpc.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("the kubo RPC API at {} does not answer (is `ipfs daemon` running?)", rpc.base))?
            .json()
            .await
            .context("kubo's /api/v0/id answered something that is not JSON")?;
        tracing::info!("using kubo {} at {} for IPFS inputs and results", id["ID"].as_str().unwrap_or("?"), rpc.base);
        Ok(rpc)
    }

    async fn fetch_car(&self, root: Cid) -> Result<(), String> {
        let url = format!("{}/api/v0/dag/export?arg={root}", self.base);
        let resp = self.http.post(&url).send().await.map_err(|e| format!("kubo at {}: {e}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("kubo at {} could not export {root}: {status} {}", self.base, body.trim()));
        }
        // Spool, then import: the blocks are verified and stored as they are read.
        let spool = tempfile::NamedTempFile::new_in(self.store.dir()).map_err(|e| e.to_string())?;
        let mut file = tokio::fs::File::create(spool.path()).await.map_err(|e| e.to_string())?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("reading {root} from kubo: {e}"))?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(|e| e.to_string())?;
        }
        drop(file);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(spool.path())?;
            bacalhau_ipfs::import_car(f, &mut |c, d| store.put_bytes(c, d))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the CAR kubo sent for {root} is bad: {e}"))?;
        if !self.store.has(&root) {
            return Err(format!("kubo's export of {root} did not contain it"));
        }
        Ok(())
    }

    /// Sends the DAG under `root` from the local store to kubo, pinned there.
    pub async fn push(&self, root: Cid) -> Result<(), String> {
        let spool = tempfile::NamedTempFile::new_in(self.store.dir()).map_err(|e| e.to_string())?;
        let (store, path) = (self.store.clone(), spool.path().to_owned());
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
            bacalhau_ipfs::export_car(store.as_ref(), &root, &mut out)?;
            std::io::Write::flush(&mut out)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("writing {root} as a CAR: {e}"))?;
        let file = tokio::fs::File::open(spool.path()).await.map_err(|e| e.to_string())?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::stream(body).file_name("dag.car"));
        let url = format!("{}/api/v0/dag/import?pin-roots=true", self.base);
        let resp =
            self.http.post(&url).multipart(form).send().await.map_err(|e| format!("kubo at {}: {e}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("kubo at {} refused {root}: {status} {}", self.base, body.trim()));
        }
        Ok(())
    }
}

impl Fetcher for KuboRpc {
    fn fetch(&self, root: Cid, _providers: Vec<String>) -> FetchFuture<'_> {
        Box::pin(async move {
            if self.store.has(&root) {
                // A partial DAG would fail at export, which verifies every block.
                return Ok(());
            }
            self.fetch_car(root).await
        })
    }
}

/// The `ipfs` publisher in `--ipfs-connect` mode: add locally, then hand the DAG to kubo.
#[derive(Debug)]
pub struct KuboPublisher {
    local: IpfsPublisher,
    rpc: KuboRpc,
}

impl KuboPublisher {
    /// Publishes into `rpc`'s store, then to kubo.
    pub fn new(rpc: KuboRpc) -> Self {
        Self { local: IpfsPublisher::new(rpc.store.clone()), rpc }
    }
}

#[async_trait::async_trait]
impl Publisher for KuboPublisher {
    fn publisher_type(&self) -> &'static str {
        self.local.publisher_type()
    }

    async fn publish(&self, id: &ExecutionId, results_dir: &Path) -> Result<Option<SpecConfig>, StorageError> {
        let spec = self.local.publish(id, results_dir).await?;
        if let Some(cid) = spec.as_ref().and_then(|s| s.param_str("CID")).and_then(|c| Cid::parse(c).ok()) {
            self.rpc.push(cid).await.map_err(|e| StorageError::Invalid(format!("publishing to kubo: {e}")))?;
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses_become_urls() {
        assert_eq!(base_url("/ip4/127.0.0.1/tcp/5001").expect("ok"), "http://127.0.0.1:5001");
        assert_eq!(base_url("/ip6/::1/tcp/5001").expect("ok"), "http://[::1]:5001");
        assert_eq!(base_url("127.0.0.1:5001").expect("ok"), "http://127.0.0.1:5001");
        assert_eq!(base_url("http://h:1/").expect("ok"), "http://h:1");
        assert!(base_url("/ip4/1.2.3.4/udp/1").is_err());
    }
}
