//! Bacalhau's `s3` input source: its params checked (`Bucket`, `Key`, `Filter`, `Region`,
//! `Endpoint`, `VersionID`, `ChecksumSHA256`, `Partition`), which objects a key names, where
//! each lands under the input's Target, and which partition of a job each object belongs to
//! (Bacalhau's `pkg/s3/partitioning.go`: FNV-1a 32 of a part of the key, modulo the job's
//! partition count).

use regex::Regex;

use crate::SpecConfig;
use crate::go_time::GoLayout;

/// An `s3` input, checked.
#[derive(Debug, Clone)]
pub struct S3Source {
    /// The bucket.
    pub bucket: String,
    /// One object's key, or a prefix (ending in `/`, or in `*`, which is dropped).
    pub key: String,
    /// Keeps only objects whose key, less the prefix, matches (an unanchored search).
    pub filter: Option<Regex>,
    /// The bucket's region.
    pub region: String,
    /// An S3-compatible server's URL (empty: AWS).
    pub endpoint: String,
    /// For one object: the version to read.
    pub version_id: String,
    /// For one object: its base64 SHA-256, checked against what is downloaded.
    pub checksum_sha256: String,
    /// How the objects are shared among the job's partitions.
    pub partition: Partition,
}

/// Bacalhau's `Partition.Type` and its settings.
#[derive(Debug, Clone)]
pub enum Partition {
    /// Every partition gets every object.
    None,
    /// By the whole key.
    Object,
    /// By the pattern's capture groups (or its whole match) in the key less the prefix.
    Regex(Regex),
    /// By characters `start..end` of the key less the prefix.
    Substring {
        /// First character (inclusive).
        start: usize,
        /// Last character (exclusive).
        end: usize,
    },
    /// By a date at the start of the key less the prefix, in Go's layout.
    Date(GoLayout, usize),
}

/// A problem with one param: its path under `Params` and what is wrong.
pub type ParamError = (String, String);

/// Valid bucket names: 3 to 63 letters, digits, dots, hyphens and underscores (AWS's rules for
/// new buckets, loosened to the older names that S3-compatible servers still take).
pub fn bucket_problem(bucket: &str) -> Option<String> {
    if bucket.trim().is_empty() {
        return Some("is required: the bucket to read from".into());
    }
    let ok_chars = bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !(3..=63).contains(&bucket.len()) || !ok_chars {
        return Some(format!(
            "is {bucket:?}: a bucket name is 3 to 63 letters, digits, '.', '-' or '_' (no scheme, no path: s3://BUCKET/KEY gives Bucket BUCKET)"
        ));
    }
    None
}

/// What is wrong with an endpoint, if anything: it is empty (AWS) or an http(s) URL.
pub fn endpoint_problem(endpoint: &str) -> Option<String> {
    let lower = endpoint.to_ascii_lowercase();
    let ok = endpoint.is_empty() || lower.starts_with("http://") || lower.starts_with("https://");
    (!ok).then(|| format!("is {endpoint:?}: an endpoint is an http:// or https:// URL"))
}

/// What is wrong with a region, if anything: empty (the node's default) or AWS's form
/// (`eu-west-1`). The region becomes part of the host name requests go to, so nothing else may
/// pass (`x@169.254.169.254/` would send them elsewhere).
pub fn region_problem(region: &str) -> Option<String> {
    let ok = region.is_empty()
        || (region.len() <= 32 && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    (!ok).then(|| format!("is {region:?}: a region is lower-case letters, digits and '-', e.g. us-east-1"))
}

/// Go's RE2 classes are ASCII (`\d` is `[0-9]`) where Rust's are Unicode: the pattern is
/// rewritten so that a key with Arabic digits falls in the same partition as under Bacalhau.
fn go_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (outside, inside) = match next {
                    'd' => ("[0-9]", "0-9"),
                    'D' => ("[^0-9]", ""),
                    'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
                    'W' => ("[^0-9A-Za-z_]", ""),
                    's' => ("[\\t\\n\\f\\r ]", "\\t\\n\\f\\r "),
                    'S' => ("[^\\t\\n\\f\\r ]", ""),
                    _ => ("", ""),
                };
                let replacement = if in_class { inside } else { outside };
                if replacement.is_empty() {
                    out.push('\\');
                    out.push(next);
                } else {
                    out.push_str(replacement);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[]...]` and `[^]...]`: a leading `]` is a literal.
                let mut peek = chars.clone();
                let mut lead = String::new();
                if peek.next() == Some('^') {
                    lead.push('^');
                    chars.next();
                    peek = chars.clone();
                }
                if peek.next() == Some(']') {
                    lead.push(']');
                    chars.next();
                }
                out.push_str(&lead);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Regex::new(&out)
}

fn int_param(src: &SpecConfig, key: &str) -> Result<i64, String> {
    match src.param(key) {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(serde_json::Value::Number(n)) => {
            // Go's decoder truncates a JSON float into an int field.
            n.as_i64().or_else(|| n.as_f64().map(crate::f64_to_i64_saturating)).ok_or_else(|| "is not a number".into())
        }
        Some(serde_json::Value::String(s)) => s.trim().parse().map_err(|_| format!("is {s:?}, not a whole number")),
        Some(other) => Err(format!("is {other}, not a whole number")),
    }
}

impl Partition {
    fn from_params(params: Option<&serde_json::Value>) -> Result<Self, Vec<ParamError>> {
        let Some(p) = params.filter(|v| !v.is_null()) else { return Ok(Partition::None) };
        let Some(map) = p.as_object() else {
            return Err(vec![(
                "Partition".into(),
                "must be an object: {Type: object|regex|substring|date, ...}".into(),
            )]);
        };
        let src =
            SpecConfig { r#type: String::new(), params: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect() };
        let kind = src.param_str("Type").unwrap_or_default().trim().to_ascii_lowercase();
        let field = |k: &str| format!("Partition.{k}");
        let mut errs = Vec::new();
        let partition = match kind.as_str() {
            "" | "none" => Partition::None,
            "object" => Partition::Object,
            "regex" => {
                let pattern = src.param_str("Pattern").unwrap_or_default();
                if pattern.is_empty() {
                    errs.push((field("Pattern"), "is required for regex partitioning: a regular expression".into()));
                    Partition::None
                } else {
                    match go_regex(pattern) {
                        Ok(re) => Partition::Regex(re),
                        Err(e) => {
                            errs.push((
                                field("Pattern"),
                                format!("is {pattern:?}, which is not a valid regular expression: {e}"),
                            ));
                            Partition::None
                        }
                    }
                }
            }
            "substring" => {
                let start = int_param(&src, "StartIndex").map_err(|e| errs.push((field("StartIndex"), e))).unwrap_or(0);
                let end = int_param(&src, "EndIndex").map_err(|e| errs.push((field("EndIndex"), e))).unwrap_or(0);
                if start < 0 {
                    errs.push((field("StartIndex"), format!("is {start}: it cannot be negative")));
                } else if end <= start {
                    errs.push((field("EndIndex"), format!("is {end}: it must be greater than StartIndex ({start})")));
                }
                let to_usize = |v: i64| usize::try_from(v).unwrap_or(0);
                Partition::Substring { start: to_usize(start), end: to_usize(end) }
            }
            "date" => {
                let format = src.param_str("DateFormat").unwrap_or_default();
                if format.is_empty() {
                    errs.push((
                        field("DateFormat"),
                        "is required for date partitioning: a Go layout such as 2006-01-02".into(),
                    ));
                }
                let layout = GoLayout::new(format);
                if !format.is_empty() && layout.check().is_err() {
                    errs.push((
                        field("DateFormat"),
                        format!("is {format:?}, not a valid Go date layout (write the date 2006-01-02 15:04:05 as the keys show it, e.g. 2006-01-02)"),
                    ));
                }
                Partition::Date(layout, format.len())
            }
            other => {
                errs.push((field("Type"), format!("is {other:?}: one of none, object, regex, substring, date")));
                Partition::None
            }
        };
        if errs.is_empty() { Ok(partition) } else { Err(errs) }
    }
}

impl S3Source {
    /// Reads and checks an `s3` source's params; every problem is reported with its param path.
    pub fn from_spec(src: &SpecConfig) -> Result<Self, Vec<ParamError>> {
        let text = |k: &str| src.param_str(k).unwrap_or_default().to_owned();
        let mut errs = Vec::new();
        let bucket = text("Bucket");
        if let Some(why) = bucket_problem(&bucket) {
            errs.push(("Bucket".to_owned(), why));
        }
        let filter = match src.param_str("Filter").filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => match go_regex(f) {
                Ok(re) => Some(re),
                Err(e) => {
                    errs.push(("Filter".into(), format!("is {f:?}, which is not a valid regular expression: {e}")));
                    None
                }
            },
        };
        let endpoint = text("Endpoint");
        if let Some(why) = endpoint_problem(&endpoint) {
            errs.push(("Endpoint".into(), why));
        }
        if let Some(why) = region_problem(&text("Region")) {
            errs.push(("Region".into(), why));
        }
        let checksum = text("ChecksumSHA256");
        if !checksum.is_empty() {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(checksum.trim());
            if decoded.map(|d| d.len()) != Ok(32) {
                errs.push((
                    "ChecksumSHA256".into(),
                    format!(
                        "is {checksum:?}: it must be the object's SHA-256 in base64 (44 characters), as S3 reports it"
                    ),
                ));
            }
        }
        let partition = Partition::from_params(src.param("Partition")).unwrap_or_else(|e| {
            errs.extend(e);
            Partition::None
        });
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Self {
            bucket,
            key: text("Key"),
            filter,
            region: text("Region"),
            endpoint,
            version_id: text("VersionID"),
            checksum_sha256: checksum.trim().to_owned(),
            partition,
        })
    }

    /// Whether the key names one object (not empty, not ending in `/` or `*`).
    pub fn is_single_object(&self) -> bool {
        !self.key.is_empty() && !self.key.ends_with('*') && !self.key.ends_with('/')
    }

    /// The listing prefix: the key, trimmed, less one trailing `*`.
    pub fn prefix(&self) -> &str {
        let k = self.key.trim();
        k.strip_suffix('*').unwrap_or(k)
    }

    /// Whether a listed object passes the filter.
    pub fn keeps(&self, key: &str) -> bool {
        self.filter.as_ref().is_none_or(|re| re.is_match(key.strip_prefix(self.prefix()).unwrap_or(key)))
    }

    /// Which of `total` partitions `key` belongs to (Bacalhau's rules; anything a rule cannot
    /// read goes to partition 0).
    pub fn partition_of(&self, key: &str, total: u32) -> u32 {
        if total <= 1 {
            return 0;
        }
        let rel = key.strip_prefix(self.prefix()).unwrap_or(key);
        let rel = rel.strip_prefix('/').unwrap_or(rel);
        let hashed = match &self.partition {
            Partition::None => return 0,
            Partition::Object => fnv1a32(key.as_bytes()),
            Partition::Regex(re) => {
                let Some(caps) = re.captures(rel) else { return 0 };
                let whole = caps.get(0).map_or("", |m| m.as_str());
                if whole.is_empty() {
                    return 0;
                }
                let groups: Vec<&str> =
                    caps.iter().skip(1).flatten().map(|m| m.as_str()).filter(|s| !s.is_empty()).collect();
                if groups.is_empty() { fnv1a32(whole.as_bytes()) } else { fnv1a32(groups.join("\u{1f}").as_bytes()) }
            }
            Partition::Substring { start, end } => {
                let chars: Vec<char> = rel.chars().collect();
                if chars.len() < *end {
                    return 0;
                }
                let part: String = chars[*start..*end].iter().collect();
                fnv1a32(part.as_bytes())
            }
            Partition::Date(layout, len) => {
                // Cut by the layout's length in bytes, as Bacalhau does (on a character boundary
                // here: a cut inside one would not parse anyway).
                let mut cut = (*len).min(rel.len());
                while !rel.is_char_boundary(cut) {
                    cut -= 1;
                }
                let Ok(t) = layout.parse(&rel[..cut]) else { return 0 };
                fnv1a32(layout.format(&t).as_bytes())
            }
        };
        hashed % total
    }

    /// Whether every partition gets everything (no partitioning, or one partition).
    pub fn is_partitioned(&self) -> bool {
        !matches!(self.partition, Partition::None)
    }

    /// Where `key` lands under the input's folder, as Bacalhau lays it out: the prefix's
    /// folders are dropped, the rest kept (`dir/sub/f` under prefix `dir/` is `sub/f`). A key
    /// whose path would climb out (`..`) or that names no file is refused.
    pub fn local_path(&self, key: &str) -> Result<Vec<String>, String> {
        let prefix_tokens: Vec<&str> = self.prefix().trim().split('/').collect();
        let tokens: Vec<&str> = key.split('/').collect();
        let mut skip = 0;
        while skip + 1 < prefix_tokens.len() && tokens.get(skip) == prefix_tokens.get(skip) {
            skip += 1;
        }
        let rest: Vec<String> = tokens[skip.min(tokens.len())..]
            .iter()
            .filter(|t| !t.is_empty() && **t != ".")
            .map(|t| (*t).to_owned())
            .collect();
        if rest.iter().any(|t| t == ".." || t.contains('\0')) {
            return Err(format!(
                "the object key {key:?} has a '..' part, which would place it outside the input's folder"
            ));
        }
        if rest.is_empty() {
            return Err(format!("the object key {key:?} names no file"));
        }
        Ok(rest)
    }
}

/// An `s3` publisher, checked (Bacalhau's `Bucket`, `Key`, `Endpoint`, `Region`, `Encoding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Publisher {
    /// The bucket.
    pub bucket: String,
    /// The key, with placeholders; `.tar.gz` or `/` is added by [`S3Publisher::key_for`].
    pub key: String,
    /// An S3-compatible server's URL (empty: AWS).
    pub endpoint: String,
    /// The bucket's region.
    pub region: String,
    /// One archive (`gzip`, the default) or each file under the key (`plain`).
    pub plain: bool,
}

/// The placeholders a publisher's Key may hold.
pub const S3_KEY_PLACEHOLDERS: [&str; 5] = ["{jobID}", "{executionID}", "{nodeID}", "{date}", "{time}"];

impl S3Publisher {
    /// Reads and checks an `s3` publisher's params; every problem is reported with its param path.
    pub fn from_spec(spec: &SpecConfig) -> Result<Self, Vec<ParamError>> {
        let text = |k: &str| spec.param_str(k).unwrap_or_default().trim().to_owned();
        let mut errs = Vec::new();
        let bucket = text("Bucket");
        if let Some(why) = bucket_problem(&bucket) {
            errs.push(("Bucket".to_owned(), why.replace("to read from", "to publish to")));
        }
        let key = text("Key");
        if key.is_empty() {
            errs.push(("Key".into(), "is required: where the results go, e.g. results/{jobID}/{executionID}".into()));
        }
        let mut rest = key.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            let name = &rest[open..=open + close];
            if !S3_KEY_PLACEHOLDERS.contains(&name) {
                errs.push((
                    "Key".into(),
                    format!("has the placeholder {name}, which does not exist: use {}", S3_KEY_PLACEHOLDERS.join(", ")),
                ));
            }
            rest = &rest[open + close + 1..];
        }
        let encoding = text("Encoding").to_ascii_lowercase();
        if !matches!(encoding.as_str(), "" | "gzip" | "plain") {
            errs.push((
                "Encoding".into(),
                format!("is {encoding:?}: one of gzip (one archive, the default) or plain (each file)"),
            ));
        }
        let endpoint = text("Endpoint");
        if let Some(why) = endpoint_problem(&endpoint) {
            errs.push(("Endpoint".into(), why));
        }
        if let Some(why) = region_problem(&text("Region")) {
            errs.push(("Region".into(), why));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Self { bucket, key, endpoint, region: text("Region"), plain: encoding == "plain" })
    }

    /// The object key (or, for `plain`, the prefix) of one execution's results, as Bacalhau
    /// forms it: `.tar.gz` (or `/`) added unless there, then the placeholders filled.
    pub fn key_for(&self, job_id: &str, execution_id: &str, node_id: &str, date: &str, time: &str) -> String {
        let suffix = if self.plain { "/" } else { ".tar.gz" };
        let mut key = self.key.clone();
        if !key.ends_with(suffix) {
            key.push_str(suffix);
        }
        key.replace("{jobID}", job_id)
            .replace("{executionID}", execution_id)
            .replace("{nodeID}", node_id)
            .replace("{date}", date)
            .replace("{time}", time)
    }
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(key: &str, partition: serde_json::Value) -> S3Source {
        let spec =
            SpecConfig::new("s3").with_param("Bucket", "bkt").with_param("Key", key).with_param("Partition", partition);
        S3Source::from_spec(&spec).expect("valid")
    }

    fn shares(s: &S3Source, keys: &[&str], total: u32) -> Vec<Vec<String>> {
        let mut out = vec![Vec::new(); total as usize];
        for k in keys.iter().filter(|k| !k.ends_with('/')) {
            out[s.partition_of(k, total) as usize].push((*k).to_owned());
        }
        out
    }

    #[test]
    fn fnv_matches_go() {
        assert_eq!(fnv1a32(b"file1.txt"), 0x3db4_d2f0);
        assert_eq!(fnv1a32(b"file2.txt"), 0xb152_1125);
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
    }

    #[test]
    fn bacalhaus_partitioning_test_vectors() {
        let object = source("", serde_json::json!({"Type": "object"}));
        assert_eq!(
            shares(&object, &["file1.txt", "file2.txt", "dir/", "file3.txt", "file4.txt"], 2),
            [vec!["file1.txt", "file3.txt"], vec!["file2.txt", "file4.txt"]]
        );
        let object = source("prefix/", serde_json::json!({"Type": "object"}));
        assert_eq!(
            shares(
                &object,
                &["prefix/subdir/file1.txt", "prefix/subdir/file2.txt", "prefix/other/file3.txt", "prefix/dir/"],
                2
            ),
            [vec!["prefix/subdir/file2.txt", "prefix/other/file3.txt"], vec!["prefix/subdir/file1.txt"]]
        );
        let users = source("prefix/", serde_json::json!({"Type": "regex", "Pattern": r"user(\d+)"}));
        let got = shares(
            &users,
            &[
                "prefix/user123/file1.txt",
                "prefix/user456/file3.txt",
                "prefix/user789/file4.txt",
                "prefix/invalid/file5.txt",
            ],
            4,
        );
        assert_eq!(got[0], ["prefix/user456/file3.txt", "prefix/invalid/file5.txt"]);
        assert_eq!(got[1], ["prefix/user789/file4.txt"]);
        assert_eq!(got[3], ["prefix/user123/file1.txt"]);
        let groups = source("", serde_json::json!({"Type": "regex", "Pattern": r"user(\d+)-group(\d+)"}));
        assert_eq!(groups.partition_of("prefix/user123-group456.txt", 3), 2);
        assert_eq!(groups.partition_of("prefix/user123-group999.txt", 3), 1);
        assert_eq!(groups.partition_of("prefix/invalid.txt", 3), 0);
        let digit = source("", serde_json::json!({"Type": "regex", "Pattern": r"\d"}));
        assert_eq!(
            shares(&digit, &["prefix/a.txt", "prefix/1.txt", "prefix/2.txt", "prefix/3.txt"], 2)[1],
            ["prefix/2.txt"]
        );
        let cjk = source("", serde_json::json!({"Type": "regex", "Pattern": r"用户(\d+)"}));
        assert_eq!(cjk.partition_of("prefix/用户123-数据.txt", 2), 1);
        assert_eq!(cjk.partition_of("prefix/用户456-数据.txt", 2), 0);
        let sub = source("prefix/", serde_json::json!({"Type": "substring", "StartIndex": 0, "EndIndex": 3}));
        assert_eq!(sub.partition_of("prefix/abc123.txt", 4), 3);
        assert_eq!(sub.partition_of("prefix/def456.txt", 4), 0);
        assert_eq!(sub.partition_of("prefix/ghi789.txt", 4), 1);
        let short = source("prefix/", serde_json::json!({"Type": "substring", "StartIndex": 0, "EndIndex": 10}));
        assert_eq!(short.partition_of("prefix/short.txt", 3), 0);
        assert_eq!(short.partition_of("prefix/very-long-name.txt", 3), 1);
        let runes = source("prefix/", serde_json::json!({"Type": "substring", "StartIndex": 0, "EndIndex": 1}));
        assert_eq!(runes.partition_of("prefix/用户123.txt", 3), 2);
        assert_eq!(runes.partition_of("prefix/户用456.txt", 3), 0);
        let date = source("prefix/", serde_json::json!({"Type": "date", "DateFormat": "2006-01-02"}));
        assert_eq!(date.partition_of("prefix/2023-01-01-data.txt", 2), 0);
        assert_eq!(date.partition_of("prefix/2023-01-02-data.txt", 2), 1);
        assert_eq!(date.partition_of("prefix/invalid-date.txt", 2), 0);
        let month = source("prefix/", serde_json::json!({"Type": "date", "DateFormat": "2006-01-02T1"}));
        assert_eq!(month.partition_of("prefix/2023-01-02T01:00:00+09:00.txt", 2), 0);
        assert_eq!(month.partition_of("prefix/2023-01-01T15:30:00-07:00.txt", 2), 1);
        let compact = source("prefix/", serde_json::json!({"Type": "date", "DateFormat": "200601"}));
        assert_eq!(compact.partition_of("prefix/20230101.txt", 3), 1);
        assert_eq!(compact.partition_of("prefix/2023-01-02.txt", 3), 0);
        let region = source("prefix/region/", serde_json::json!({"Type": "date", "DateFormat": "2006-01-02"}));
        assert_eq!(region.partition_of("prefix/region/2023-01-02.txt", 3), 1);
        assert_eq!(region.partition_of("prefix/region/2023-01-01.txt", 3), 2);
        // Bacalhau's integration set, by object (the full key is hashed): P0 {002, 101}, P1 {001, 102}.
        let r = "integration-tests-do-not-delete/set1/";
        let keys: Vec<String> = ["001", "002", "101", "102"].iter().map(|n| format!("{r}{n}.txt")).collect();
        let set = source(r, serde_json::json!({"Type": "object"}));
        let got: Vec<u32> = keys.iter().map(|k| set.partition_of(k, 2)).collect();
        assert_eq!(got, [1, 0, 0, 1]);
    }

    #[test]
    fn files_are_laid_out_as_bacalhau_lays_them_out() {
        let at = |key: &str, obj: &str| source(key, serde_json::Value::Null).local_path(obj).map(|p| p.join("/"));
        assert_eq!(at("R/set1/001.txt", "R/set1/001.txt").as_deref(), Ok("001.txt"));
        assert_eq!(at("R/set1/", "R/set1/001.txt").as_deref(), Ok("001.txt"));
        assert_eq!(at("R/set2/", "R/set2/nested/301.txt").as_deref(), Ok("nested/301.txt"));
        assert_eq!(at("R/set*", "R/set1/001.txt").as_deref(), Ok("set1/001.txt"));
        assert_eq!(at("", "R/set1/001.txt").as_deref(), Ok("R/set1/001.txt"));
        assert!(at("R/", "R/../../etc/passwd").is_err());
        assert!(at("R/", "R/a/./../x").is_err());
        assert_eq!(at("R/", "R//a.txt").as_deref(), Ok("a.txt"));
    }

    #[test]
    fn publisher_keys_are_formed_as_bacalhau_forms_them() {
        let spec = |key: &str, encoding: &str| {
            SpecConfig::new("s3").with_param("Bucket", "out").with_param("Key", key).with_param("Encoding", encoding)
        };
        let p = S3Publisher::from_spec(&spec("p/{jobID}/{executionID}", "")).expect("valid");
        assert_eq!(p.key_for("j-1", "e-2", "n-3", "20261203", "150405"), "p/j-1/e-2.tar.gz");
        let p = S3Publisher::from_spec(&spec("p/simple_plain", "PLAIN")).expect("valid");
        assert_eq!(p.key_for("j", "e", "n", "d", "t"), "p/simple_plain/");
        let p = S3Publisher::from_spec(&spec("r/{date}-{time}.tar.gz", "gzip")).expect("valid");
        assert_eq!(p.key_for("j", "e", "n", "20261203", "150405"), "r/20261203-150405.tar.gz");
        let e = S3Publisher::from_spec(&spec("r/{jobId}", "zip")).expect_err("invalid");
        assert_eq!(e.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["Key", "Encoding"]);
        assert!(e[0].1.contains("{jobId}") && e[0].1.contains("{jobID}"), "{e:?}");
        let e = S3Publisher::from_spec(&SpecConfig::new("s3")).expect_err("invalid");
        assert_eq!(e.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["Bucket", "Key"]);
    }

    #[test]
    fn bad_params_name_the_field() {
        let errs = |params: serde_json::Value| {
            let mut spec = SpecConfig::new("s3");
            for (k, v) in params.as_object().expect("object") {
                spec = spec.with_param(k, v.clone());
            }
            S3Source::from_spec(&spec).expect_err("invalid")
        };
        let e = errs(serde_json::json!({"Key": "x"}));
        assert_eq!(e[0].0, "Bucket");
        let e = errs(serde_json::json!({"Bucket": "s3://bkt/x"}));
        assert!(e[0].1.contains("no scheme"), "{e:?}");
        let e = errs(serde_json::json!({"Bucket": "bkt", "Partition": {"Type": "hash"}}));
        assert_eq!(e[0].0, "Partition.Type");
        let e = errs(serde_json::json!({"Bucket": "bkt", "Partition": {"Type": "regex", "Pattern": "(unclosed"}}));
        assert_eq!(e[0].0, "Partition.Pattern");
        let e = errs(
            serde_json::json!({"Bucket": "bkt", "Partition": {"Type": "substring", "StartIndex": 3, "EndIndex": 3}}),
        );
        assert_eq!(e[0].0, "Partition.EndIndex");
        let e = errs(
            serde_json::json!({"Bucket": "bkt", "Partition": {"Type": "substring", "StartIndex": -1, "EndIndex": 3}}),
        );
        assert_eq!(e[0].0, "Partition.StartIndex");
        let e = errs(serde_json::json!({"Bucket": "bkt", "Partition": {"Type": "date"}}));
        assert_eq!(e[0].0, "Partition.DateFormat");
        let e =
            errs(serde_json::json!({"Bucket": "bkt", "Filter": "[", "Endpoint": "ftp://x", "ChecksumSHA256": "abc"}));
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["Filter", "Endpoint", "ChecksumSHA256"]);
        // The region goes into a host name: only AWS's form passes.
        let e = errs(serde_json::json!({"Bucket": "bkt", "Region": "x@169.254.169.254/"}));
        assert_eq!(e[0].0, "Region");
        // Types in any case (Bacalhau's are lower case only).
        assert!(source("", serde_json::json!({"Type": "Object"})).is_partitioned());
    }
}
