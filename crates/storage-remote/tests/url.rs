//! `urlDownload` against a real HTTP server on loopback: redirects, a stalled body, a 404, a
//! flaky server, bodies past the budget, the cache's revalidation, a redirect to a metadata
//! address.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bacalhau_model::{InputSource, SpecConfig};
use bacalhau_storage::{InputProvider, StorageError};
use bacalhau_storage_remote::{UrlSettings, UrlSource};

const CSV: &str = "a,b\n1,2\n";

#[derive(Default)]
struct Counts {
    full: AtomicUsize,
    not_modified: AtomicUsize,
    flaky: AtomicUsize,
}

async fn server() -> (String, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let etagged = move |headers: HeaderMap| {
        let c = c.clone();
        async move {
            if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v1\"") {
                c.not_modified.fetch_add(1, Ordering::SeqCst);
                return StatusCode::NOT_MODIFIED.into_response();
            }
            c.full.fetch_add(1, Ordering::SeqCst);
            ([(header::ETAG, "\"v1\"")], CSV).into_response()
        }
    };
    let c = counts.clone();
    let flaky = move || {
        let c = c.clone();
        async move {
            if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            "ok".into_response()
        }
    };
    let redirect =
        |to: &'static str| move || async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() };
    let app = Router::new()
        .route("/data/file.csv", get(etagged))
        .route("/flaky/ok.txt", get(flaky))
        .route("/down/x", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/missing.txt", get(|| async { StatusCode::NOT_FOUND }))
        .route("/go", get(redirect("/data/file.csv")))
        .route("/download", get(redirect("/blob")))
        .route(
            "/blob",
            get(|| async { ([(header::CONTENT_DISPOSITION, "attachment; filename=\"../../report.txt\"")], "r") }),
        )
        .route("/loop", get(redirect("/loop")))
        .route("/meta", get(redirect("http://169.254.169.254/latest/meta-data/")))
        .route("/big.bin", get(|| async { vec![7u8; 1 << 20] }))
        .route("/endless.bin", get(|| async { Body::from_stream(endless()) }))
        .route("/slow.bin", get(|| async { Body::from_stream(stalled()) }))
        .route("/nostore.csv", get(|| async { ([(header::ETAG, "\"n\""), (header::CACHE_CONTROL, "no-store")], CSV) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), counts)
}

fn endless() -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::repeat_with(|| Ok(vec![1u8; 64 * 1024]))
}

fn stalled() -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    use futures::StreamExt as _;
    futures::stream::once(async { Ok(b"first bytes".to_vec()) }).chain(futures::stream::pending())
}

fn input(url: &str) -> InputSource {
    InputSource {
        source: SpecConfig::new("urlDownload").with_param("URL", url),
        alias: String::new(),
        target: "/inputs".into(),
    }
}

fn source(cache: Option<&Path>) -> UrlSource {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = UrlSettings {
        max_retries: 3,
        read_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        cache_dir: cache.map(Path::to_path_buf),
        ..UrlSettings::default()
    };
    UrlSource::new(reqwest::Client::builder(), settings).expect("client")
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_file_lands_at_target_under_its_url_name_following_redirects() {
    let (base, _) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let p =
        source(None).prepare(&input(&format!("{base}/go")), &tmp.path().join("0"), u64::MAX).await.expect("prepare");
    assert_eq!((p.target.as_str(), p.read_only), ("/inputs", true));
    assert_eq!(listing(&p.host_path), ["file.csv"], "named after the final URL, alone in its folder");
    assert_eq!(std::fs::read_to_string(p.host_path.join("file.csv")).expect("read"), CSV);

    // After a redirect the server's Content-Disposition names it, reduced to a plain name.
    let p =
        source(None).prepare(&input(&format!("{base}/download")), &tmp.path().join("1"), 100).await.expect("prepare");
    assert_eq!(listing(&p.host_path), ["report.txt"]);
}

#[tokio::test]
async fn a_missing_file_fails_at_once_naming_the_url_and_status() {
    let (base, _) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let url = format!("{base}/missing.txt");
    let started = std::time::Instant::now();
    let err = source(None).prepare(&input(&url), tmp.path(), u64::MAX).await.expect_err("404");
    assert!(matches!(err, StorageError::Refused(_)), "a 404 is not retried anywhere: {err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5), "no retries on a 404");
}

#[tokio::test]
async fn transient_failures_are_retried_and_then_reported() {
    let (base, counts) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let p = source(None)
        .prepare(&input(&format!("{base}/flaky/ok.txt")), &tmp.path().join("a"), 100)
        .await
        .expect("third try");
    assert_eq!(std::fs::read_to_string(p.host_path.join("ok.txt")).expect("read"), "ok");
    assert_eq!(counts.flaky.load(Ordering::SeqCst), 3);

    let err =
        source(None).prepare(&input(&format!("{base}/down/x")), &tmp.path().join("b"), 100).await.expect_err("503");
    let msg = err.to_string();
    assert!(matches!(err, StorageError::Io { .. }), "another node may have better luck: {err:?}");
    assert!(msg.contains("503") && msg.contains("gave up after 4 tries") && msg.contains("/down/x"), "{msg}");
}

#[tokio::test]
async fn a_stalled_body_times_out_and_leaves_no_partial_file() {
    let (base, _) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("0");
    let err = source(None).prepare(&input(&format!("{base}/slow.bin")), &dir, u64::MAX).await.expect_err("stall");
    let msg = err.to_string();
    assert!(msg.contains("cut off") && msg.contains("gave up"), "{msg}");
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[tokio::test]
async fn bodies_past_the_disk_budget_stop_as_they_pass_it() {
    let (base, _) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    for (path, dir) in [("/big.bin", "a"), ("/endless.bin", "b")] {
        let dir = tmp.path().join(dir);
        let err = source(None).prepare(&input(&format!("{base}{path}")), &dir, 100_000).await.expect_err(path);
        assert!(matches!(err, StorageError::Refused(_)), "{err:?}");
        assert!(err.to_string().contains("raise Resources.Disk"), "{err}");
        assert!(listing(&dir).is_empty(), "{path}: {:?}", listing(&dir));
    }
}

#[tokio::test]
async fn redirects_are_bounded_and_never_reach_a_metadata_address() {
    let (base, _) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let err = source(None).prepare(&input(&format!("{base}/loop")), tmp.path(), 100).await.expect_err("loop");
    assert!(err.to_string().contains("redirected more than 10 times"), "{err}");
    let err = source(None).prepare(&input(&format!("{base}/meta")), tmp.path(), 100).await.expect_err("metadata");
    assert!(matches!(err, StorageError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("169.254.169.254") && err.to_string().contains("link-local"), "{err}");
}

#[tokio::test]
async fn a_cached_download_is_revalidated_and_linked_not_fetched_again() {
    use std::os::unix::fs::MetadataExt as _;
    let (base, counts) = server().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let source = source(Some(&cache));
    let url = format!("{base}/data/file.csv");
    let mut inodes = Vec::new();
    for i in 0..3 {
        let p = source.prepare(&input(&url), &tmp.path().join(i.to_string()), 1000).await.expect("prepare");
        let file = p.host_path.join("file.csv");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), CSV);
        inodes.push(std::fs::metadata(&file).expect("stat").ino());
    }
    assert_eq!(counts.full.load(Ordering::SeqCst), 1, "downloaded once");
    assert_eq!(counts.not_modified.load(Ordering::SeqCst), 2, "then revalidated");
    assert!(inodes.windows(2).all(|w| w[0] == w[1]), "one copy, linked: {inodes:?}");
    // A cached copy is still charged against each job's budget.
    let err = source.prepare(&input(&url), &tmp.path().join("small"), 3).await.expect_err("budget");
    assert!(matches!(err, StorageError::Refused(_)), "{err:?}");

    // `Cache-Control: no-store` is honoured.
    let before = listing(&cache).len();
    source.prepare(&input(&format!("{base}/nostore.csv")), &tmp.path().join("n"), 1000).await.expect("prepare");
    assert_eq!(listing(&cache).len(), before);

    // A tampered entry (naming a path outside the cache) is ignored, not followed.
    for name in listing(&cache).iter().filter(|n| n.ends_with(".json")) {
        let path = cache.join(name);
        let mut entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        entry["data"] = "../../../etc/passwd".into();
        std::fs::write(&path, entry.to_string()).expect("write");
    }
    let p = source.prepare(&input(&url), &tmp.path().join("t"), 1000).await.expect("prepare");
    assert_eq!(std::fs::read_to_string(p.host_path.join("file.csv")).expect("read"), CSV);
    assert_eq!(counts.full.load(Ordering::SeqCst), 2, "fetched anew");
}
