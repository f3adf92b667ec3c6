//! `urlDownload` inputs: an http(s) URL downloaded to `Target/<file name>`, as Bacalhau does
//! (`pkg/storage/url/urldownload`): the name is the final URL's last path element, or after a
//! redirect the server's `Content-Disposition` file name, or a random one when neither names a
//! file. Bacalhau streams the body with no limit and retries every non-2xx answer; here the
//! body is charged against the job's disk budget as it arrives, only transient failures are
//! retried (with backoff), and a download the server marks with an `ETag` or `Last-Modified`
//! is kept by the node and revalidated, so the next job asking for it costs one `304`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bacalhau_executor::PreparedInput;
use bacalhau_model::{InputSource, SOURCE_URL};
use bacalhau_storage::{InputProvider, StorageError, percent_decode};
use reqwest::header::{CACHE_CONTROL, CONTENT_DISPOSITION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info};

use crate::guard::refused_address;

/// Redirects followed at most (Go's HTTP client, which Bacalhau uses, stops at 10 too).
const MAX_REDIRECTS: usize = 10;
/// The longest pause between two tries, however many came before.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Downloads the cache keeps at most, whatever their size: each is two small files.
const CACHE_ENTRIES: usize = 1024;
/// The longest file name most Linux file systems take.
const MAX_NAME_BYTES: usize = 255;
/// Buffered between the network and the file, so a 1 GiB body is a thousand writes, not a
/// hundred thousand.
const WRITE_BUFFER: usize = 1 << 20;
/// A cache entry's metadata file is a few hundred bytes; anything larger is not ours.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;
/// A data file no entry names (a download cut off by a crash) is removed once this old.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// The node's settings for `urlDownload` inputs.
#[derive(Debug, Clone)]
pub struct UrlSettings {
    /// Retries after a transient failure (Bacalhau's `InputSources.MaxRetryCount`).
    pub max_retries: u32,
    /// How long the server may send nothing before the try fails (`InputSources.ReadTimeout`).
    pub read_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// The pause before the first retry; it doubles for each one after, up to 10 s.
    pub backoff: Duration,
    /// Where downloads that carry an `ETag` or `Last-Modified` are kept; `None` keeps none.
    pub cache_dir: Option<PathBuf>,
    /// The most bytes the cache keeps; the least recently used downloads go first.
    pub cache_max_bytes: u64,
}

impl Default for UrlSettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            read_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(500),
            cache_dir: None,
            cache_max_bytes: 10 << 30,
        }
    }
}

/// The `urlDownload` input provider.
#[derive(Debug)]
pub struct UrlSource {
    client: reqwest::Client,
    settings: UrlSettings,
}

/// What one try came to, when it did not deliver the file.
enum TryError {
    /// Worth another try after a pause (a dropped connection, a 503).
    Transient(String),
    /// Any try would end the same way.
    Fatal(StorageError),
    /// The cached copy the server confirmed was removed meanwhile: ask again without it.
    CacheGone,
}

/// What the cache holds for one URL (its metadata file, JSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    /// The file name the job sees.
    name: String,
    /// The data file's name in the cache folder.
    data: String,
    bytes: u64,
}

impl UrlSource {
    /// A provider on `builder`'s client (the caller's TLS settings), with redirects bounded,
    /// timeouts set and addresses guarded.
    pub fn new(builder: reqwest::ClientBuilder, settings: UrlSettings) -> Result<Self, StorageError> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                let msg = format!("it redirected more than {MAX_REDIRECTS} times (last to {})", attempt.url());
                return attempt.error(msg);
            }
            if let Err(why) = check_url(attempt.url()) {
                let msg = format!("it redirected to {}, which {why}", attempt.url());
                return attempt.error(msg);
            }
            attempt.follow()
        });
        let client = crate::guard::guarded(builder)
            .redirect(policy)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .build()
            .map_err(|e| StorageError::Invalid(format!("cannot build the HTTP client for urlDownload inputs: {e}")))?;
        Ok(Self { client, settings })
    }

    async fn try_once(
        &self,
        url: &Url,
        cached: Option<&CacheEntry>,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<u64, TryError> {
        let mut request = self.client.get(url.clone());
        if let Some(entry) = cached {
            if let Some(etag) = &entry.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &entry.last_modified {
                request = request.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let mut response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED
            && let (Some(entry), Some(cache)) = (cached, &self.settings.cache_dir)
        {
            if entry.bytes > max_bytes {
                return Err(TryError::Fatal(over_budget(url, entry.bytes, max_bytes)));
            }
            return match place(
                &cache.join(&entry.data),
                &work_dir.join(&entry.name),
                Some(&cache.join(entry_file(url))),
            )
            .await
            {
                Ok(()) => {
                    debug!(url = %redacted(url), bytes = entry.bytes, "urlDownload input served from the node's cache");
                    Ok(entry.bytes)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TryError::CacheGone),
                Err(e) => Err(TryError::Fatal(StorageError::io(format!("placing the cached copy of {url}"))(e))),
            };
        }
        if is_transient(status) {
            return Err(TryError::Transient(format!("the server answered {status}")));
        }
        if !status.is_success() {
            return Err(TryError::Fatal(StorageError::Refused(format!(
                "downloading {url} failed: the server answered {status}"
            ))));
        }
        if let Some(len) = response.content_length()
            && len > max_bytes
        {
            return Err(TryError::Fatal(over_budget(url, len, max_bytes)));
        }
        let final_url = response.url().clone();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let disposition = (final_url != *url).then(|| header(CONTENT_DISPOSITION)).flatten();
        let name = file_name(&final_url, disposition.as_deref());
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let no_store = header(CACHE_CONTROL).is_some_and(|c| c.to_ascii_lowercase().contains("no-store"));
        let cache =
            self.settings.cache_dir.as_ref().filter(|_| (etag.is_some() || last_modified.is_some()) && !no_store);
        let dest = work_dir.join(&name);
        // A download the node will keep is written into the cache and linked into the job's
        // folder; any other goes straight to the job's folder.
        let written = match cache {
            Some(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(fatal_io("creating the URL cache folder"))?;
                dir.join(format!("{}-{}.data", cache_key(url), uuid::Uuid::new_v4().simple()))
            }
            None => dest.clone(),
        };
        let bytes = match stream_to(&mut response, &written, url, max_bytes).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&written).await;
                return Err(e);
            }
        };
        if let Some(dir) = cache {
            let entry =
                CacheEntry { url: url.to_string(), etag, last_modified, name, data: file_name_of(&written), bytes };
            let linked = place(&written, &dest, None).await;
            // The job's copy first, then the entry that names it: whoever reads the entry
            // finds its data complete.
            if let Err(e) = linked {
                let _ = tokio::fs::remove_file(&written).await;
                return Err(TryError::Fatal(StorageError::io(format!("placing the download of {url}"))(e)));
            }
            let (dir, key, max) = (dir.clone(), entry_file(url), self.settings.cache_max_bytes);
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = publish_entry(&dir, &key, &entry) {
                    debug!("could not keep the download in the URL cache: {e}");
                }
                trim(&dir, max);
            })
            .await;
        }
        Ok(bytes)
    }

    fn cached(&self, url: &Url) -> Option<CacheEntry> {
        let dir = self.settings.cache_dir.as_ref()?;
        let path = dir.join(entry_file(url));
        if std::fs::metadata(&path).ok()?.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let entry: CacheEntry = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        // The key is a hash: a collision, or an entry edited by hand, must not serve one URL
        // for another, nor name a path outside the cache.
        let sane = entry.url == url.as_str() && is_plain_name(&entry.data) && is_plain_name(&entry.name);
        (sane && dir.join(&entry.data).is_file()).then_some(entry)
    }
}

#[async_trait::async_trait]
impl InputProvider for UrlSource {
    fn source_type(&self) -> &'static str {
        SOURCE_URL
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        parse_input_url(input).map(|_| ())
    }

    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        let url = parse_input_url(input)?;
        tokio::fs::create_dir_all(work_dir).await.map_err(StorageError::io("creating the input folder"))?;
        let started = std::time::Instant::now();
        let mut cached = self.cached(&url);
        let mut failures = 0u32;
        loop {
            match self.try_once(&url, cached.as_ref(), work_dir, max_bytes).await {
                Ok(bytes) => {
                    info!(url = %redacted(&url), bytes, elapsed_ms = started.elapsed().as_millis(), "urlDownload input ready");
                    break;
                }
                Err(TryError::CacheGone) if cached.is_some() => cached = None,
                Err(TryError::CacheGone) => {
                    return Err(StorageError::Invalid(format!("downloading {url} failed: its cached copy vanished")));
                }
                Err(TryError::Fatal(e)) => return Err(e),
                Err(TryError::Transient(why)) if failures < self.settings.max_retries => {
                    let pause = self.settings.backoff.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF);
                    failures += 1;
                    debug!(url = %redacted(&url), try_number = failures, "urlDownload failed ({why}); trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
                Err(TryError::Transient(why)) => {
                    return Err(StorageError::Io {
                        context: format!("downloading {url}"),
                        source: std::io::Error::other(format!("{why} (gave up after {} tries)", failures + 1)),
                    });
                }
            }
        }
        Ok(PreparedInput { host_path: work_dir.to_path_buf(), target: input.target.clone(), read_only: true })
    }
}

/// The input's URL, checked as Bacalhau checks it (quotes and spaces around it ignored, http
/// or https, a path after the host) and against the guarded addresses.
fn parse_input_url(input: &InputSource) -> Result<Url, StorageError> {
    let raw =
        input.source.param_str("URL").unwrap_or_default().trim_matches(|c: char| c == ' ' || c == '\'' || c == '"');
    if raw.is_empty() {
        return Err(StorageError::Invalid("the urlDownload input has no URL: set Source.Params.URL".into()));
    }
    let url =
        Url::parse(raw).map_err(|e| StorageError::Invalid(format!("the urlDownload URL {raw:?} is invalid: {e}")))?;
    let after_scheme = raw.split_once("://").map_or("", |(_, rest)| rest);
    if !after_scheme.contains('/') {
        return Err(StorageError::Invalid(format!(
            "the urlDownload URL {raw:?} names no file: it must have a path after the host, e.g. {raw}/data.csv"
        )));
    }
    check_url(&url).map_err(|why| StorageError::Invalid(format!("the urlDownload URL {raw:?} {why}")))?;
    Ok(url)
}

/// Why this node will not fetch `url`, if it will not.
pub(crate) fn check_url(url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("is not http or https (it is {}:)", url.scheme()));
    }
    let Some(host) = url.host_str() else { return Err("has no host".into()) };
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() else {
        // A name: the resolver checks what it resolves to.
        return Ok(());
    };
    match refused_address(ip) {
        Some(why) => Err(format!("names {ip}, {why}: this node does not download from there")),
        None => Ok(()),
    }
}

/// `url` for the node's log: no password, no query (a pre-signed URL's signature lives there).
fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("..."));
    }
    u.to_string()
}

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS | StatusCode::TOO_EARLY)
}

/// Sorts a failed request: a refused redirect or address is final, trouble on the way is not.
fn classify(e: &reqwest::Error) -> TryError {
    let why = chain(e);
    if e.is_redirect() || e.is_builder() || refused_by_guard(e) {
        TryError::Fatal(StorageError::Refused(format!("downloading {} failed: {why}", url_of(e))))
    } else {
        TryError::Transient(why)
    }
}

fn refused_by_guard(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<crate::guard::AddressRefused>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn url_of(e: &reqwest::Error) -> String {
    e.url().map_or_else(|| "the URL".to_owned(), ToString::to_string)
}

/// An error and its causes on one line: reqwest's own message is only "error sending request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

fn over_budget(url: &Url, bytes: u64, max_bytes: u64) -> StorageError {
    StorageError::Refused(format!(
        "{url} is {bytes} bytes, more than the {max_bytes} bytes of disk left to the job: raise Resources.Disk"
    ))
}

fn fatal_io(context: &'static str) -> impl FnOnce(std::io::Error) -> TryError {
    move |e| TryError::Fatal(StorageError::io(context)(e))
}

/// Writes the body to `path`, stopping as soon as it passes `max_bytes`.
async fn stream_to(response: &mut reqwest::Response, path: &Path, url: &Url, max_bytes: u64) -> Result<u64, TryError> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .await
        .map_err(fatal_io("creating the download's file"))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut bytes = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Err(TryError::Transient(format!("the body was cut off after {bytes} bytes: {}", chain(&e))));
            }
        };
        bytes += chunk.len() as u64;
        if bytes > max_bytes {
            return Err(TryError::Fatal(over_budget(url, bytes, max_bytes)));
        }
        out.write_all(&chunk).await.map_err(fatal_io("writing the download"))?;
    }
    out.flush().await.map_err(fatal_io("writing the download"))?;
    Ok(bytes)
}

/// Puts `from` at `to` (a hard link, or a copy across file systems) and, for a cache hit,
/// marks the entry used.
async fn place(from: &Path, to: &Path, touch: Option<&Path>) -> std::io::Result<()> {
    let (from, to, touch) = (from.to_path_buf(), to.to_path_buf(), touch.map(Path::to_path_buf));
    tokio::task::spawn_blocking(move || {
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
        if let Some(entry) = touch {
            let _ = std::fs::File::options()
                .write(true)
                .open(entry)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Makes the data file read-only (every job's link is that one file) and swaps the entry in,
/// removing the data of the one it replaces.
fn publish_entry(dir: &Path, key: &str, entry: &CacheEntry) -> std::io::Result<()> {
    let data = dir.join(&entry.data);
    let mut perms = std::fs::metadata(&data)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&data, perms)?;
    let path = dir.join(key);
    let old: Option<CacheEntry> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let tmp = dir.join(format!(".{key}.{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, &path)?;
    if let Some(old) = old.filter(|o| o.data != entry.data && is_plain_name(&o.data)) {
        let _ = std::fs::remove_file(dir.join(old.data));
    }
    Ok(())
}

/// Keeps the cache under [`CACHE_ENTRIES`] entries and `max_bytes`, dropping the least
/// recently used first, and removes data files no entry names once they are old.
fn trim(dir: &Path, max_bytes: u64) {
    let Ok(listing) = std::fs::read_dir(dir) else { return };
    let mut entries = Vec::new();
    let mut data_files = Vec::new();
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if name.ends_with(".json") {
            let entry: Option<CacheEntry> = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
            entries.push((modified, e.path(), entry));
        } else if name.ends_with(".data") {
            data_files.push((modified, name));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut kept = std::collections::HashSet::new();
    let mut total = 0u64;
    for (i, (_, path, entry)) in entries.iter().enumerate() {
        let Some(entry) = entry.as_ref().filter(|e| is_plain_name(&e.data)) else {
            let _ = std::fs::remove_file(path);
            continue;
        };
        total = total.saturating_add(entry.bytes);
        if i < CACHE_ENTRIES && total <= max_bytes {
            kept.insert(entry.data.clone());
        } else {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(dir.join(&entry.data));
        }
    }
    let now = std::time::SystemTime::now();
    for (modified, name) in data_files {
        let old = now.duration_since(modified).is_ok_and(|age| age > ORPHAN_AGE);
        if old && !kept.contains(&name) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

fn cache_key(url: &Url) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(url.as_str().as_bytes())[..16])
}

fn entry_file(url: &Url) -> String {
    format!("{}.json", cache_key(url))
}

fn file_name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The name the job sees: after a redirect the server's `Content-Disposition` name, else the
/// final URL's last path element, else a random name (Bacalhau's order).
fn file_name(final_url: &Url, disposition: Option<&str>) -> String {
    disposition
        .and_then(disposition_name)
        .and_then(|n| clean_name(&n))
        .or_else(|| clean_name(&String::from_utf8_lossy(&percent_decode(final_url.path()))))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The last element of a path (trailing slashes ignored, as Go's `path.Base`), if it can name
/// a file inside the input's folder: not empty, `.` or `..`, no NUL, not too long.
fn clean_name(path: &str) -> Option<String> {
    let base = path.trim_end_matches('/').rsplit('/').next()?;
    let ok = !base.is_empty() && base != "." && base != ".." && !base.contains('\0') && base.len() <= MAX_NAME_BYTES;
    ok.then(|| base.to_owned())
}

/// Whether `name` names a file in a folder, as it is (no `/`, not `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    clean_name(name).is_some_and(|n| n == name)
}

/// The `filename*` (RFC 5987) or `filename` parameter of a `Content-Disposition` header.
fn disposition_name(header: &str) -> Option<String> {
    let (mut plain, mut extended) = (None, None);
    for part in header.split(';').skip(1) {
        let Some((key, value)) = part.split_once('=') else { continue };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let encoded = value.splitn(3, '\'').nth(2).unwrap_or(value);
                extended = Some(String::from_utf8_lossy(&percent_decode(encoded)).into_owned());
            }
            "filename" => plain = Some(value.trim_matches('"').replace("\\\"", "\"")),
            _ => {}
        }
    }
    extended.or(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn names_come_from_the_url_or_the_disposition_and_never_leave_the_folder() {
        assert_eq!(file_name(&url("http://h/dir/data.csv?x=1"), None), "data.csv");
        assert_eq!(file_name(&url("http://h/dir/"), None), "dir");
        assert_eq!(file_name(&url("http://h/a%20b.txt"), None), "a b.txt");
        // An escaped slash is decoded, then only the last element counts.
        assert_eq!(file_name(&url("http://h/x/..%2F..%2Fetc%2Fpasswd"), None), "passwd");
        assert_eq!(file_name(&url("http://h/x/%2e%2e"), None).len(), 36, "'..' becomes a random name");
        assert_eq!(file_name(&url("http://h/"), None).len(), 36);
        assert_eq!(file_name(&url("http://h/r"), Some("attachment; filename=\"../../etc/shadow\"")), "shadow");
        assert_eq!(file_name(&url("http://h/r"), Some("attachment; filename*=UTF-8''na%C3%AFve.txt")), "naïve.txt");
        assert_eq!(file_name(&url("http://h/r"), Some("attachment; filename=\"..\"")), "r");
        let long = format!("http://h/{}", "a".repeat(300));
        assert_eq!(file_name(&url(&long), None).len(), 36);
    }

    #[test]
    fn urls_are_checked_as_bacalhau_checks_them() {
        let input = |u: &str| InputSource {
            source: bacalhau_model::SpecConfig::new(SOURCE_URL).with_param("URL", u),
            alias: String::new(),
            target: "/inputs".into(),
        };
        assert!(parse_input_url(&input(" 'https://example.org/a.csv' ")).is_ok());
        let err = |u: &str| parse_input_url(&input(u)).expect_err(u).to_string();
        assert!(err("ftp://example.org/a").contains("not http or https"), "{}", err("ftp://example.org/a"));
        assert!(err("https://example.org").contains("names no file"));
        assert!(err("not a url").contains("invalid"));
        assert!(err("").contains("no URL"));
        assert!(err("http://169.254.169.254/latest/meta-data/").contains("link-local"));
        assert!(err("http://[fe80::1]/x").contains("link-local"));
    }
}
