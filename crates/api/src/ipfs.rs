//! The IPFS routes: the trustless gateway (`/ipfs/{cid}[/path]`: raw blocks, CAR, file
//! content with Range, streamed) and the store's management API (CAR upload, pins, GC).

use std::io::{self, Write};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bacalhau_ipfs::{BlockStore, Cid};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::server::{ApiError, ApiResult, Params, St};
use crate::types::{CarImported, GcResult, PinInfo};

fn store(s: &crate::ApiState) -> ApiResult<Arc<BlockStore>> {
    s.ipfs.clone().ok_or_else(|| ApiError::not_found("this node has no IPFS store", ""))
}

fn parse_cid(cid: &str) -> ApiResult<Cid> {
    Cid::parse(cid).map_err(|e| ApiError::bad_request(e.to_string(), "give a CIDv0 (Qm...) or CIDv1 (b...)"))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalError",
        message: e.to_string(),
        hint: "check the server's log".into(),
    }
}

fn io_error(e: io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound => ApiError::not_found(e.to_string(), "add it with `bacalhau ipfs add`"),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => ApiError::bad_request(e.to_string(), ""),
        _ => internal(e),
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?.map_err(io_error)
}

/// What a gateway request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
    Content,
}

/// Parses `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` against a length; `Err` when unsatisfiable.
fn byte_range(header: &str, len: u64) -> Result<(u64, u64), ()> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(())?;
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (a, "") => (a.parse().map_err(|_| ())?, len.checked_sub(1).ok_or(())?),
        (a, b) => (a.parse().map_err(|_| ())?, b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))),
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok((start, end))
}

/// Writes into a response body chunk by chunk; the blocking writer waits when the client is slow.
struct BodyWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    /// Bytes still to drop before the window (a Range's start) and to pass after it.
    skip: u64,
    left: u64,
}

/// Returned once the window is full, to stop the producer early; not a failure.
const WINDOW_FULL: &str = "range complete";

impl BodyWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for BodyWriter {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        // Both are at most a slice length, so they fit a usize.
        let skip = usize::try_from(self.skip.min(n as u64)).unwrap_or(n);
        self.skip -= skip as u64;
        data = &data[skip..];
        let take = usize::try_from(self.left.min(data.len() as u64)).unwrap_or(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.left -= take as u64;
        if self.buf.len() >= 256 * 1024 {
            self.send()?;
        }
        if self.left == 0 {
            self.send()?;
            return Err(io::Error::other(WINDOW_FULL));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A streamed body produced by `f` on a blocking thread. An error after the headers went out
/// ends the body early, so the client sees a truncated transfer rather than wrong bytes.
fn stream_body(window: (u64, u64), f: impl FnOnce(&mut BodyWriter) -> io::Result<()> + Send + 'static) -> Body {
    let (tx, rx) = mpsc::channel(4);
    let mut w = BodyWriter { tx: tx.clone(), buf: Vec::with_capacity(256 * 1024), skip: window.0, left: window.1 };
    tokio::task::spawn_blocking(move || {
        let result = f(&mut w).and_then(|()| w.flush());
        if let Err(e) = result
            && e.to_string() != WINDOW_FULL
        {
            tracing::warn!("gateway response cut short: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|x| (x, rx)) });
    Body::from_stream(stream.boxed())
}

/// `GET /ipfs/{cid}`.
pub(crate) async fn gateway(
    state: St,
    Path(cid): Path<String>,
    query: Params,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    serve(state, cid, String::new(), query, headers).await
}

/// `GET /ipfs/{cid}/{*path}`.
pub(crate) async fn gateway_path(
    state: St,
    Path((cid, path)): Path<(String, String)>,
    query: Params,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    serve(state, cid, path, query, headers).await
}

/// The raw block (`?format=raw` / `Accept: application/vnd.ipld.raw`), the DAG as a CAR
/// (`?format=car` / `Accept: application/vnd.ipld.car`, with the path's folders first), or a
/// file's content (Range supported).
async fn serve(
    State(s): St,
    cid: String,
    path: String,
    Query(p): Params,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let root = parse_cid(&cid)?;
    let store = store(&s)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match p.get("format").map(String::as_str) {
        Some("raw") => Format::Raw,
        Some("car") => Format::Car,
        Some(other) if !other.is_empty() => {
            return Err(ApiError::bad_request(
                format!("format={other:?} is not supported"),
                "use format=raw or format=car",
            ));
        }
        _ if accept.contains("application/vnd.ipld.raw") => Format::Raw,
        _ if accept.contains("application/vnd.ipld.car") => Format::Car,
        _ => Format::Content,
    };
    if !store.has(&root) {
        let Some(peer) = &s.ipfs_peer else {
            return Err(ApiError::not_found(
                format!("{cid} is not in this node's IPFS store"),
                "add it with `bacalhau ipfs add`",
            ));
        };
        // The orchestrator knows which node published which result: ask those peers first.
        let providers = match &s.orchestrator {
            Some(o) => o.providers(&root.to_string()).await.unwrap_or_default(),
            None => Vec::new(),
        };
        peer.fetcher.fetch(root, providers).await.map_err(|e| {
            ApiError::not_found(
                format!("{cid} is not in this node's IPFS store and could not be fetched from its peers: {e}"),
                "check the CID, or connect a peer that has it (`serve --ipfs-peers MULTIADDR`)",
            )
        })?;
    }
    let st = store.clone();
    let (target, trail) = blocking(move || bacalhau_ipfs::resolve_trail(st.as_ref(), &root, &path))
        .await
        .map_err(|e| ApiError { hint: format!("list the folder with `bacalhau ipfs ls {cid}`"), ..e })?;
    let etag = format!("\"{target}\"");
    match format {
        Format::Raw => {
            let st = store.clone();
            let block = blocking(move || st.get(&target)).await?.unwrap_or_default();
            Ok(([(header::CONTENT_TYPE, "application/vnd.ipld.raw".to_owned()), (header::ETAG, etag)], block)
                .into_response())
        }
        Format::Car => {
            let body = stream_body((0, u64::MAX), move |w| {
                bacalhau_ipfs::export_car_path(store.as_ref(), &root, &trail, &target, w)
            });
            Ok(([(header::CONTENT_TYPE, "application/vnd.ipld.car; version=1".to_owned()), (header::ETAG, etag)], body)
                .into_response())
        }
        Format::Content => {
            let st = store.clone();
            let len = blocking(move || bacalhau_ipfs::file_size(st.as_ref(), &target))
                .await
                .map_err(|e| ApiError { hint: "ask for ?format=car to get a folder's blocks".into(), ..e })?;
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            let (status, window, content_range) = match range.map(|r| byte_range(r, len)) {
                None => (StatusCode::OK, (0, len), None),
                Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, (a, b - a + 1), Some(format!("bytes {a}-{b}/{len}"))),
                Some(Err(())) => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    )
                        .into_response());
                }
            };
            if window.1 == 0 {
                return Ok((status, [(header::CONTENT_TYPE, "application/octet-stream")], Vec::new()).into_response());
            }
            let body = stream_body(window, move |w| bacalhau_ipfs::cat(store.as_ref(), &target, w));
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
            h.insert(header::CONTENT_LENGTH, window.1.into());
            h.insert(header::ACCEPT_RANGES, header::HeaderValue::from_static("bytes"));
            if let Ok(v) = header::HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            if let Some(cr) = content_range.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
                h.insert(header::CONTENT_RANGE, cr);
            }
            Ok(resp)
        }
    }
}

/// `POST /api/v1/ipfs/car`: a CAR v1/v2 upload. The body is spooled to disk as it arrives,
/// every block verified and stored, then the roots pinned (`?label=` says why).
pub(crate) async fn import_car(State(s): St, Query(p): Params, body: Body) -> ApiResult<Json<CarImported>> {
    let store = store(&s)?;
    let label = p.get("label").cloned().unwrap_or_else(|| "imported from a CAR".into());
    import_stream(store, label, body.into_data_stream()).await
}

async fn import_stream<E: std::fmt::Display>(
    store: Arc<BlockStore>,
    label: String,
    mut stream: impl futures::Stream<Item = Result<Bytes, E>> + Unpin,
) -> ApiResult<Json<CarImported>> {
    let spool_dir = store.dir().join("incoming");
    tokio::fs::create_dir_all(&spool_dir).await.map_err(internal)?;
    let spool = spool_dir.join(format!("{}.car", spool_name()));
    let mut file = tokio::fs::File::create(&spool).await.map_err(internal)?;
    let copied = async {
        use tokio::io::AsyncWriteExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}"), ""))?;
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)
    }
    .await;
    drop(file);
    let sp = spool.clone();
    let result = match copied {
        Ok(()) => {
            blocking(move || {
                let _guard = store.writer()?;
                let f = std::fs::File::open(&sp)?;
                let got = bacalhau_ipfs::import_car(f, &mut |c, d| store.put_bytes(c, d))?;
                for root in &got.roots {
                    if store.has(root) {
                        store.pin(root, &label)?;
                    }
                }
                Ok(got)
            })
            .await
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&spool).await;
    let got = result?;
    Ok(Json(CarImported {
        roots: got.roots.iter().map(ToString::to_string).collect(),
        blocks: got.blocks,
        bytes: got.bytes,
    }))
}

fn spool_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// `GET /api/v1/ipfs/pins`.
pub(crate) async fn list_pins(State(s): St) -> ApiResult<Json<Vec<PinInfo>>> {
    let store = store(&s)?;
    let pins = blocking(move || {
        // One block read per pin: the root's links carry their subtrees' sizes.
        Ok(store
            .pins()?
            .into_iter()
            .map(|p| {
                let size = store.get(&p.cid).ok().flatten().and_then(|block| cumulative_size(&p.cid, &block));
                PinInfo { cid: p.cid.to_string(), labels: p.labels, size }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(pins))
}

/// A DAG's size from its root block: the block plus what its links say they hold (as kubo's
/// CumulativeSize; a hostile DAG can misstate it, so it is a display value only).
fn cumulative_size(cid: &bacalhau_ipfs::Cid, block: &[u8]) -> Option<u64> {
    if cid.codec() != bacalhau_ipfs::CODEC_DAG_PB {
        return Some(block.len() as u64);
    }
    let node = bacalhau_ipfs::dagpb::decode_node(block).ok()?;
    node.links.iter().try_fold(block.len() as u64, |acc, (_, _, tsize)| acc.checked_add(*tsize))
}

/// `POST /api/v1/ipfs/pins/{cid}`: pins a DAG this node holds entirely.
pub(crate) async fn pin(State(s): St, Path(cid): Path<String>, Query(p): Params) -> ApiResult<Json<PinInfo>> {
    let root = parse_cid(&cid)?;
    let store = store(&s)?;
    let label = p.get("label").cloned().unwrap_or_else(|| "pinned through the API".into());
    let labels = blocking(move || {
        // A recursive pin promises the whole DAG: check every block is here first.
        bacalhau_ipfs::export_car(store.as_ref(), &root, &mut io::sink()).map_err(|e| {
            io::Error::new(io::ErrorKind::NotFound, format!("cannot pin {root}: {e}; add or import it first"))
        })?;
        store.pin(&root, &label)?;
        Ok(store.pins()?.into_iter().find(|p| p.cid == root).map(|p| p.labels).unwrap_or_default())
    })
    .await?;
    Ok(Json(PinInfo { cid, labels, size: None }))
}

/// `DELETE /api/v1/ipfs/pins/{cid}` (`?label=` removes just that label).
pub(crate) async fn unpin(State(s): St, Path(cid): Path<String>, Query(p): Params) -> ApiResult<StatusCode> {
    let root = parse_cid(&cid)?;
    let store = store(&s)?;
    let label = p.get("label").cloned();
    let was = blocking(move || store.unpin(&root, label.as_deref())).await?;
    if !was {
        return Err(ApiError::not_found(format!("{cid} is not pinned"), "list pins with `bacalhau ipfs pin ls`"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/ipfs/gc`: deletes every block no pin reaches.
pub(crate) async fn gc(State(s): St) -> ApiResult<Json<GcResult>> {
    let store = store(&s)?;
    let r = blocking(move || store.gc()).await?;
    Ok(Json(GcResult { kept: r.kept, removed: r.removed, removed_bytes: r.removed_bytes }))
}

/// `GET /api/v1/ipfs/id`: the peer's identity, shaped as kubo's `ipfs id`.
pub(crate) async fn id(State(s): St) -> ApiResult<Json<serde_json::Value>> {
    let peer = s.ipfs_peer.as_ref().ok_or_else(|| ApiError::not_found("this node runs no IPFS peer", ""))?;
    Ok(Json(serde_json::json!({
        "ID": peer.id,
        "Addresses": peer.addrs,
        "AgentVersion": format!("bacalhau-rs/{}", env!("CARGO_PKG_VERSION")),
        "Protocols": ["/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"],
    })))
}

/// kubo's RPC `POST /api/v0/id`, so `--ipfs-connect` clients (and kubo tooling) can use a
/// node as they would a kubo daemon.
pub(crate) async fn kubo_id(s: St) -> ApiResult<Json<serde_json::Value>> {
    id(s).await
}

/// kubo's RPC `POST /api/v0/dag/export?arg=CID`: the DAG as a CAR v1 stream.
pub(crate) async fn kubo_dag_export(State(s): St, Query(p): Params) -> ApiResult<Response> {
    let store = store(&s)?;
    let arg = p.get("arg").cloned().unwrap_or_default();
    let root = parse_cid(arg.trim_start_matches("/ipfs/"))?;
    if !store.has(&root) {
        return Err(ApiError::not_found(format!("{root} is not in this node's IPFS store"), ""));
    }
    let body = stream_body((0, u64::MAX), move |w| bacalhau_ipfs::export_car(store.as_ref(), &root, w));
    Ok(([(header::CONTENT_TYPE, "application/vnd.ipld.car")], body).into_response())
}

/// kubo's RPC `POST /api/v0/dag/import` (multipart, one CAR per file part): every block
/// verified and stored, the roots pinned; one `{"Root": {"Cid": {"/": CID}}}` line per root.
pub(crate) async fn kubo_dag_import(State(s): St, mut form: axum::extract::Multipart) -> ApiResult<Response> {
    let store = store(&s)?;
    let mut lines = String::new();
    while let Some(field) = form.next_field().await.map_err(|e| ApiError::bad_request(e.to_string(), ""))? {
        let Json(got) = import_stream(store.clone(), "imported through /api/v0/dag/import".into(), field).await?;
        for root in got.roots {
            lines.push_str(&serde_json::json!({"Root": {"Cid": {"/": root}, "PinErrorMsg": ""}}).to_string());
            lines.push('\n');
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], lines).into_response())
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn parses_byte_ranges() {
        assert_eq!(byte_range("bytes=0-4", 10), Ok((0, 4)));
        assert_eq!(byte_range("bytes=5-", 10), Ok((5, 9)));
        assert_eq!(byte_range("bytes=-3", 10), Ok((7, 9)));
        assert_eq!(byte_range("bytes=8-100", 10), Ok((8, 9)));
        assert!(byte_range("bytes=10-12", 10).is_err());
        assert!(byte_range("bytes=4-2", 10).is_err());
        assert!(byte_range("items=0-1", 10).is_err());
    }
}
