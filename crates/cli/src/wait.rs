//! Submitting a job and following it to the end, as `docker run`/`wasm run`/`job run` do.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bacalhau_api::Client;
use bacalhau_model::{HistoryType, Job, JobHistory, JobStateType};

use crate::args::{RuntimeFlags, TrackFlags};
use crate::output::rfc_clock;

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// Submits `job` (or prints it with --dry-run) and follows it per the runtime flags. With
/// `force`, a spec with an existing job's Name updates it even if nothing changed.
pub async fn submit_and_wait(client: &Client, job: &Job, flags: &RuntimeFlags, force: bool) -> Result<ExitCode> {
    let value = serde_json::to_value(job)?;
    if flags.dry_run {
        // A spec the user can edit and pass to `job run`: no server-owned fields.
        let mut spec = value.clone();
        if let Some(map) = spec.as_object_mut() {
            for k in bacalhau_model::SERVER_OWNED_FIELDS {
                map.remove(k);
            }
        }
        print!("{}", yaml_serde::to_string(&spec)?);
        return Ok(ExitCode::SUCCESS);
    }
    let resp = client.submit_forced(&value, force).await?;
    track(client, &resp.job_id, &resp.warnings, &flags.track).await
}

/// Follows a submitted (or rerun) job per the flags: its progress, or its logs.
pub async fn track(client: &Client, job_id: &str, warnings: &[String], flags: &TrackFlags) -> Result<ExitCode> {
    if flags.id_only {
        println!("{job_id}");
    } else {
        for w in warnings {
            eprintln!("Warning: {w}");
        }
    }
    if !flags.wait {
        if !flags.id_only {
            println!("{job_id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let quiet = flags.id_only;
    if flags.follow {
        // As Bacalhau: the output ends with the job's own log stream, nothing after it.
        if !quiet {
            println!("Job successfully submitted. Job ID: {}", job_id);
            println!("Waiting for logs... (Enter Ctrl+C to exit at any time, your job will continue running):\n");
        }
        follow_logs(client, job_id).await?;
        let job = client.get_job(job_id, "").await?.job;
        if job.state.state_type == JobStateType::Failed {
            eprintln!("\nError: job failed: {}", job.state.message);
            if flags.fail_on_job_failure {
                return Ok(ExitCode::FAILURE);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !quiet {
        println!("Job successfully submitted. Job ID: {}", job_id);
        println!("Checking job status... (Enter Ctrl+C to exit at any time, your job will continue running):\n");
        println!(" {:<13} {:<11} {:<20} EVENT", "TIME", "EXEC. ID", "TOPIC");
    }
    let deadline = Instant::now() + Duration::from_secs(flags.wait_timeout_secs);
    let mut token = String::new();
    let job = loop {
        let page = client.history(job_id, "all", "", &token).await?;
        if !page.items.is_empty() {
            token = page.items.last().map(|h| h.seq_num.to_string()).unwrap_or_default();
        }
        for h in &page.items {
            let is_error = h.event.details.get("IsError").is_some();
            if quiet || (h.r#type == HistoryType::JobLevel && !is_error && h.event.topic != "Submission") {
                continue;
            }
            print_event(h);
        }
        let job = client.get_job(job_id, "").await?.job;
        if job.state.state_type.is_terminal() && page.next_token.is_empty() {
            // One more read: entries committed with the final state.
            let tail = client.history(job_id, "execution", "", &token).await?;
            if !quiet {
                for h in &tail.items {
                    print_event(h);
                }
            }
            break job;
        }
        if Instant::now() > deadline {
            eprintln!("\nProgress tracking timed out after {}s. The job is still running.", flags.wait_timeout_secs);
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(POLL).await;
    };
    finish(&job, quiet, flags.fail_on_job_failure)
}

fn print_event(h: &JobHistory) {
    println!(" {:<13} {:<11} {:<20} {}", rfc_clock(&h.time), h.execution_id.short(), h.event.topic, h.event.message);
}

/// Prints how the job ended. A failed job is reported on stderr and, as in Bacalhau, still
/// exits 0 unless `fail_on_failure` (`--fail-on-job-failure`).
fn finish(job: &Job, quiet: bool, fail_on_failure: bool) -> Result<ExitCode> {
    let id = &job.id;
    if job.state.state_type == JobStateType::Failed {
        eprintln!("\nError: job failed: {}", job.state.message);
        if !quiet {
            println!("\nTo get more details about the run, execute:\n\tbacalhau job describe {id}");
        }
        return Ok(if fail_on_failure { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    if !quiet {
        println!("\nJob {}.", job.state.state_type.to_string().to_lowercase());
        println!("\nTo get more details about the run, execute:\n\tbacalhau job describe {id}");
        println!("\nTo get more details about the run executions, execute:\n\tbacalhau job executions {id}");
        let publishes = job.task().is_some_and(|t| !t.publisher.is_empty() && !t.publisher.is_type("noop"));
        if publishes {
            println!("\nTo download the results, execute:\n\tbacalhau job get {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for the job to have an execution, then streams its output until it ends.
pub async fn follow_logs(client: &Client, job_id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let execs = client.executions(job_id).await?;
        if !execs.items.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "job {job_id} was not scheduled within 10s; follow it later with `bacalhau job logs -f {job_id}`"
            );
        }
        tokio::time::sleep(POLL).await;
    }
    loop {
        match client.logs(job_id, "", true, |_, line| print!("{line}")).await {
            // The node may not have recorded the execution yet.
            Err(bacalhau_api::ClientError::Api { status: 404, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            other => return other.with_context(|| format!("streaming the logs of {job_id}")),
        }
    }
}
