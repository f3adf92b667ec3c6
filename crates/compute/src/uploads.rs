//! The compute node's side of the `s3managed` publisher: it asks the orchestrator for a signed
//! upload URL over its link and waits for the answer, which the node's loop hands over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bacalhau_model::ExecutionId;
use bacalhau_protocol::{ComputeSender, FromCompute};
use bacalhau_storage::{StorageError, UploadUrls};
use tokio::sync::oneshot;

/// How long an answer may take: signing is local to the orchestrator, so past this the
/// request or its answer was lost (a reconnect) and is asked again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Asks per upload before giving up.
const ATTEMPTS: u32 = 3;

/// The publishers waiting for an upload URL, by execution.
#[derive(Debug)]
pub(crate) struct ManagedUploads {
    waiting: Mutex<HashMap<ExecutionId, oneshot::Sender<Result<String, String>>>>,
    sender: ComputeSender,
}

impl ManagedUploads {
    pub(crate) fn new(sender: ComputeSender) -> Self {
        Self { waiting: Mutex::new(HashMap::new()), sender }
    }

    /// Hands an answer to its waiting publisher; false when nobody waits for it (it gave
    /// up, or the answer is not for this node's execution).
    pub(crate) fn answer(&self, execution_id: &ExecutionId, url: Result<String, String>) -> bool {
        let waiter = self.waiting.lock().ok().and_then(|mut w| w.remove(execution_id));
        waiter.is_some_and(|tx| tx.send(url).is_ok())
    }

    fn forget(&self, execution_id: &ExecutionId) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(execution_id);
        }
    }
}

#[async_trait::async_trait]
impl UploadUrls for ManagedUploads {
    async fn upload_url(&self, execution_id: &ExecutionId) -> Result<String, StorageError> {
        let mut last = String::from("no answer");
        for _ in 0..ATTEMPTS {
            let (tx, rx) = oneshot::channel();
            // One publish per execution runs at a time, so a newer ask replaces an older one.
            if let Ok(mut w) = self.waiting.lock() {
                w.insert(execution_id.clone(), tx);
            }
            if let Err(e) = self.sender.send(FromCompute::ManagedUpload { execution_id: execution_id.clone() }).await {
                self.forget(execution_id);
                return Err(StorageError::Invalid(format!(
                    "cannot ask the orchestrator for an upload URL for the s3managed publisher: {e}"
                )));
            }
            match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                Ok(Ok(Ok(url))) => return Ok(url),
                // The orchestrator's refusal is final: asking again gets the same answer.
                Ok(Ok(Err(why))) => {
                    return Err(StorageError::Refused(format!(
                        "the orchestrator would not sign an upload for the s3managed publisher: {why}"
                    )));
                }
                Ok(Err(_)) => last = "the answer was dropped".into(),
                Err(_) => last = format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            }
            self.forget(execution_id);
        }
        Err(StorageError::Io {
            context: "asking the orchestrator for an s3managed upload URL".into(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_reaches_its_waiter_and_a_refusal_is_final() {
        let (orchestrator_tx, mut orchestrator_rx) = tokio::sync::mpsc::channel(8);
        let endpoint = bacalhau_protocol::connect_in_process(orchestrator_tx, "n-1".into()).await.expect("connect");
        let uploads = std::sync::Arc::new(ManagedUploads::new(endpoint.sender()));
        let id = ExecutionId::from("e-1");
        assert!(!uploads.answer(&id, Ok("http://nobody".into())), "nobody waits yet");

        let asking = {
            let (u, id) = (uploads.clone(), id.clone());
            tokio::spawn(async move { u.upload_url(&id).await })
        };
        // The ask reaches the orchestrator's inbox; then the answer comes back.
        loop {
            match orchestrator_rx.recv().await.expect("inbox open") {
                bacalhau_protocol::OrchestratorInbound::Message(env)
                    if matches!(env.payload, FromCompute::ManagedUpload { .. }) =>
                {
                    break;
                }
                _ => {}
            }
        }
        assert!(uploads.answer(&id, Ok("http://127.0.0.1/put".into())));
        assert_eq!(asking.await.expect("task").expect("url"), "http://127.0.0.1/put");

        let refused = {
            let (u, id) = (uploads.clone(), id.clone());
            tokio::spawn(async move { u.upload_url(&id).await })
        };
        while !uploads.answer(&id, Err("not this node's execution".into())) {
            tokio::task::yield_now().await;
        }
        let err = refused.await.expect("task").expect_err("refused");
        assert!(err.to_string().contains("not this node's execution"), "{err}");
    }
}
