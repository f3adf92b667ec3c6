//! Running one execution: prepare inputs, run the engine, write the result folder, publish.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bacalhau_executor::{
    Executor, ExecutorError, PreparedOutput, ResultFolder, RunRequest, summarize, write_exit_code,
};
use bacalhau_model::{Execution, Resources};
use bacalhau_protocol::{ComputeSender, FromCompute};
use bacalhau_storage::{InputProvider, Publisher};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, info_span};

use crate::store::Outcome;

/// The parts a run needs, resolved by the node before it starts.
pub(crate) struct RunPlan {
    pub execution: Execution,
    pub executor: Arc<dyn Executor>,
    pub inputs: Vec<Arc<dyn InputProvider>>,
    pub publisher: Option<Arc<dyn Publisher>>,
    pub exec_dir: PathBuf,
    pub resources: Resources,
    /// Bytes the inputs may take on disk, all together.
    pub disk_budget: u64,
    pub prices: Option<bacalhau_model::Prices>,
    pub cancel: CancellationToken,
    pub events: ComputeSender,
    /// Signs upload URLs for the `s3managed` publisher (through the orchestrator).
    pub uploads: Arc<crate::uploads::ManagedUploads>,
}

impl RunPlan {
    pub(crate) fn results_dir(exec_dir: &std::path::Path) -> PathBuf {
        exec_dir.join("results")
    }

    async fn event(&self, topic: &str, message: &str) {
        // Progress events are best effort: losing one loses a history line, nothing else.
        let _ = self
            .events
            .send(FromCompute::ExecutionEvent {
                execution_id: self.execution.id.clone(),
                topic: topic.into(),
                message: message.into(),
            })
            .await;
    }

    /// Runs to the end and says how it ended; never panics on bad input. An execution that
    /// ran out of disk is failed with the data directory named, and its folder removed at
    /// once: a full disk must cost one job, not the node.
    pub(crate) async fn run(self) -> Outcome {
        let exec_dir = self.exec_dir.clone();
        let outcome = self.run_inner().await;
        let Outcome::Failed { message, cancelled, retryable } = outcome else { return outcome };
        let full = message.contains("No space left on device")
            || message.contains("os error 28")
            || message.contains("disk quota exceeded")
            || message.contains("storage full");
        if !full {
            return Outcome::Failed { message, cancelled, retryable };
        }
        let dir = exec_dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        let data_dir = exec_dir.parent().and_then(|p| p.parent()).unwrap_or(&exec_dir);
        Outcome::Failed {
            message: format!(
                "the compute node's data directory {} is full: {message}. The execution's files were removed; \
                 free space there or give the node a larger disk",
                data_dir.display()
            ),
            cancelled,
            retryable: true,
        }
    }

    async fn run_inner(self) -> Outcome {
        let fail = |message: String| Outcome::Failed { message, cancelled: false, retryable: true };
        let Some(job) = self.execution.job.as_deref() else {
            return fail("the execution arrived without its job".into());
        };
        let Some(task) = job.task() else {
            return fail("the job has no task".into());
        };
        self.event("Execution", "Running").await;

        let results_dir = Self::results_dir(&self.exec_dir);
        let folder = match ResultFolder::create(&results_dir) {
            Ok(f) => f,
            Err(e) => return fail(format!("cannot create the result folder: {e}")),
        };
        let mut prepared = Vec::new();
        // What the inputs written so far take; each new one is measured once, after it is written.
        let inputs_dir = self.exec_dir.join("inputs");
        let mut used = 0u64;
        for (i, input) in task.input_sources.iter().enumerate() {
            let Some(provider) = self.inputs.iter().find(|p| input.source.is_type(p.source_type())) else {
                return fail(format!("input source type {} is not available on this node", input.source.type_name()));
            };
            let budget = self.disk_budget.saturating_sub(used);
            let dir = inputs_dir.join(i.to_string());
            let partition =
                bacalhau_storage::Partition { index: self.execution.partition_index, count: job.partitions().max(1) };
            let span = phase(|| info_span!("prepare_input", source = input.source.type_name(), target = %input.target));
            match provider.prepare_partition(input, &dir, budget, partition).instrument(span).await {
                // Mounting a symlink mounts what it points at: a CID whose root is a link to `/`
                // would hand the job the host. An input must be a file or a folder itself.
                Ok(p) if std::fs::symlink_metadata(&p.host_path).is_ok_and(|m| m.file_type().is_symlink()) => {
                    let to = std::fs::read_link(&p.host_path).map(|t| t.display().to_string()).unwrap_or_default();
                    let message = format!(
                        "preparing input {} failed: it is a symlink (to {to}); an input must be a file or a folder",
                        input.target
                    );
                    return Outcome::Failed { message, cancelled: false, retryable: false };
                }
                Ok(p) => {
                    // `local` inputs are used in place and take nothing here.
                    let d = dir.clone();
                    used +=
                        tokio::task::spawn_blocking(move || bacalhau_executor::dir_size(&d)).await.unwrap_or(u64::MAX);
                    prepared.push(p)
                }
                Err(e @ bacalhau_storage::StorageError::Refused(_)) => {
                    let message = format!("preparing input {} failed: {e}", input.target);
                    return Outcome::Failed { message, cancelled: false, retryable: false };
                }
                Err(e) => return fail(format!("preparing input {} failed: {e}", input.target)),
            }
        }
        let mut outputs = Vec::new();
        for rp in &task.result_paths {
            match folder.output_dir(&rp.name) {
                Ok(host_path) => {
                    outputs.push(PreparedOutput { name: rp.name.clone(), path: rp.path.clone(), host_path })
                }
                Err(e) => return fail(format!("cannot create result folder {}: {e}", rp.name)),
            }
        }
        let mut env: BTreeMap<String, String> = task.env.clone();
        env.insert("BACALHAU_JOB_ID".into(), job.id.0.clone());
        env.insert("BACALHAU_JOB_TYPE".into(), job.r#type.to_string());
        env.insert("BACALHAU_EXECUTION_ID".into(), self.execution.id.0.clone());
        env.insert("BACALHAU_NODE_ID".into(), self.execution.node_id.0.clone());
        env.insert("BACALHAU_PARTITION_INDEX".into(), self.execution.partition_index.to_string());
        env.insert("BACALHAU_PARTITION_COUNT".into(), job.partitions().max(1).to_string());
        let timeout = (task.timeouts.execution_timeout > 0)
            .then(|| Duration::from_secs(task.timeouts.execution_timeout))
            .or_else(|| (task.timeouts.total_timeout > 0).then(|| Duration::from_secs(task.timeouts.total_timeout)));
        let request = RunRequest {
            job_id: job.id.clone(),
            execution_id: self.execution.id.clone(),
            engine: task.engine.clone(),
            inputs: prepared,
            outputs,
            env,
            resources: self.resources,
            network: task.network.clone(),
            timeout,
            results_dir: results_dir.clone(),
            work_dir: self.exec_dir.join("engine"),
            cancel: self.cancel.clone(),
        };
        let started = std::time::Instant::now();
        let span = phase(|| info_span!("run", engine = self.executor.engine_type()));
        let exit_code = match self.executor.run(request).instrument(span).await {
            Ok(o) => o.exit_code,
            Err(ExecutorError::Cancelled) => {
                return Outcome::Failed { message: "execution cancelled".into(), cancelled: true, retryable: false };
            }
            // These would fail the same way on another attempt.
            Err(
                e @ (ExecutorError::InvalidSpec(_)
                | ExecutorError::OutOfMemory(_)
                | ExecutorError::DiskLimit(_)
                | ExecutorError::TimedOut(_)),
            ) => {
                return Outcome::Failed { message: e.to_string(), cancelled: false, retryable: false };
            }
            Err(e) => return fail(e.to_string()),
        };
        let wall = started.elapsed().as_secs_f64();
        if let Err(e) = write_exit_code(&results_dir, exit_code) {
            return fail(format!("cannot write exitCode: {e}"));
        }
        // What the job left is untrusted: no setuid program or FIFO reaches the host's readers.
        let dir = results_dir.clone();
        match tokio::task::spawn_blocking(move || bacalhau_executor::sanitize_results(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Outcome::Failed { message, cancelled: false, retryable: false },
            Err(e) => return fail(format!("checking the result folder crashed: {e}")),
        }
        let published_result = match &self.publisher {
            None => None,
            Some(p) => {
                self.event("Publishing Results", "Publishing results").await;
                let request = bacalhau_storage::PublishRequest {
                    spec: &task.publisher,
                    job_id: job.id.as_str(),
                    execution_id: &self.execution.id,
                    node_id: self.execution.node_id.as_str(),
                    uploads: Some(self.uploads.as_ref()),
                };
                let span = phase(|| info_span!("publish", publisher = p.publisher_type()));
                match p.publish_for(request, &results_dir).instrument(span).await {
                    Ok(r) => r,
                    Err(e) => return fail(format!("publishing results failed: {e}")),
                }
            }
        };
        match summarize(&results_dir, exit_code, "") {
            Ok(run_output) => {
                let cost =
                    self.prices.map(|p| p.cost(&self.resources, wall, bacalhau_executor::dir_size(&results_dir)));
                Outcome::Completed { published_result, run_output, cost }
            }
            Err(e) => fail(format!("cannot read the result folder: {e}")),
        }
    }
}

/// A span for one phase of a traced execution (inside the execution's span); none otherwise,
/// so an untraced execution makes no spans.
fn phase(make: impl FnOnce() -> Span) -> Span {
    if Span::current().is_none() { Span::none() } else { make() }
}
