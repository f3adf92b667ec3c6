//! Benchmark: an object materialised as an `s3` input and a result file published by the `s3`
//! publisher, side by side with the AWS CLI (`aws s3 cp`, PyPI awscli) copying the same bytes
//! against the same S3-compatible server (moto, on loopback) in the same run; prints each
//! time, the rate and the ratio (AWS CLI time / ours: above 1.0 we are faster). 1 GiB by
//! default (`BENCH_S3_MIB` to change), best of 3 each; under `cargo test` 8 MiB once.
//! `BENCH_S3_ONLY=input|publish` runs one side (moto serves a 1 GiB GET at ~12 MiB/s).

mod common;

use std::time::{Duration, Instant};

use bacalhau_model::{ExecutionId, InputSource, SpecConfig};
use bacalhau_storage::{InputProvider, PublishRequest, Publisher};
use bacalhau_storage_remote::{S3Publisher, S3Settings, S3Source};
use bacalhau_testkit::{S3_TEST_KEYS, S3Server};
use common::is_bench;

fn settings() -> S3Settings {
    let env = |k: &str| S3_TEST_KEYS.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
    S3Settings::from_env(env)
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)] // a report: byte counts far below 2^52
    let mib = bytes as f64 / 1_048_576.0;
    mib / d.as_secs_f64()
}

fn best<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let mib: u64 =
        if is_bench() { std::env::var("BENCH_S3_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024) } else { 8 };
    let runs = if is_bench() { 3 } else { 1 };
    let bytes = mib << 20;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let s3 = S3Server::start().expect("moto");
    s3.aws(&["s3", "mb", "s3://bench"]).expect("bucket");
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("results");
    std::fs::create_dir_all(&src).expect("mkdir");
    let file = src.join("data.bin");
    // Random bytes, written in pieces: a 1 GiB buffer would double the bench's memory.
    {
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        for i in 0..mib {
            f.write_all(&bacalhau_testkit::random_bytes(1 << 20, i + 1)).expect("write");
        }
    }
    let file_arg = file.display().to_string();
    s3.aws(&["s3", "cp", &file_arg, "s3://bench/in/data.bin", "--quiet"]).expect("upload the input");

    let only = std::env::var("BENCH_S3_ONLY").unwrap_or_default();
    let (do_input, do_publish) = (only != "publish", only != "input");
    let runs_in = if do_input { runs } else { 0 };
    let runs_out = if do_publish { runs } else { 0 };
    // Input: the object onto local disk.
    let aws_get = best(runs_in, || {
        let dest = tmp.path().join("aws-get.bin");
        let _ = std::fs::remove_file(&dest);
        let t = Instant::now();
        s3.aws(&["s3", "cp", "s3://bench/in/data.bin", &dest.display().to_string(), "--quiet"]).expect("aws get");
        t.elapsed()
    });
    let source = S3Source::new(reqwest::Client::builder(), settings()).expect("source");
    let input = InputSource {
        source: SpecConfig::new("s3")
            .with_param("Bucket", "bench")
            .with_param("Key", "in/data.bin")
            .with_param("Endpoint", s3.endpoint())
            .with_param("Region", "us-east-1"),
        alias: String::new(),
        target: "/inputs".into(),
    };
    let mut n = 0;
    let our_get = best(runs_in, || {
        n += 1;
        let dir = tmp.path().join(format!("ours-get-{n}"));
        let t = Instant::now();
        rt.block_on(source.prepare(&input, &dir, u64::MAX)).expect("our get");
        let took = t.elapsed();
        assert_eq!(std::fs::metadata(dir.join("data.bin")).expect("downloaded").len(), bytes);
        let _ = std::fs::remove_dir_all(&dir);
        took
    });

    // Result: the file up as an object (`plain`: the same bytes the AWS CLI sends).
    let aws_put = best(runs_out, || {
        let t = Instant::now();
        s3.aws(&["s3", "cp", &file_arg, "s3://bench/aws-out/data.bin", "--quiet"]).expect("aws put");
        t.elapsed()
    });
    let publisher =
        S3Publisher::new(reqwest::Client::builder(), settings(), tmp.path().join("scratch")).expect("publisher");
    let spec = SpecConfig::new("s3")
        .with_param("Bucket", "bench")
        .with_param("Key", "out/{executionID}")
        .with_param("Encoding", "plain")
        .with_param("Endpoint", s3.endpoint())
        .with_param("Region", "us-east-1");
    let exec = ExecutionId::from("e-bench");
    let our_put = best(runs_out, || {
        let request =
            PublishRequest { spec: &spec, job_id: "j-bench", execution_id: &exec, node_id: "n-bench", uploads: None };
        let t = Instant::now();
        rt.block_on(publisher.publish_for(request, &src)).expect("our put");
        t.elapsed()
    });

    println!("s3 transfer, {mib} MiB object, moto on loopback, best of {runs}:");
    println!("| copy | AWS CLI | ours | ratio (AWS CLI / ours) |");
    println!("|---|---:|---:|---:|");
    let rows = [
        ("input: object -> disk", aws_get, our_get, do_input),
        ("publish: file -> object", aws_put, our_put, do_publish),
    ];
    for (what, aws, ours, _) in rows.into_iter().filter(|r| r.3) {
        println!(
            "| {what} | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {:.2} |",
            aws.as_secs_f64(),
            mib_per_s(bytes, aws),
            ours.as_secs_f64(),
            mib_per_s(bytes, ours),
            aws.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
