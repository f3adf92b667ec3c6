//! The OpenAPI document served at `/api/v1/openapi.json`.
//!
//! Written out rather than derived: the wire shapes are Bacalhau's, fixed by its clients, and
//! the model crate stays free of UI/doc derives. An end-to-end test requests every GET route
//! listed here and checks that the router serves it.

use serde_json::{Value, json};

/// Every (method, path) the server routes, as listed in the document.
pub(crate) const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/api/v1/agent/alive", "Liveness: {\"Status\":\"OK\"}"),
    (
        "get",
        "/api/v1/agent/ready",
        "Readiness: each part the node needs (job store, scheduler, engines, orchestrator link, IPFS peer) with what is wrong; 503 until all are ready",
    ),
    ("get", "/api/v1/agent/version", "Build information"),
    ("get", "/api/v1/agent/node", "This node's NodeInfo"),
    ("get", "/api/v1/livez", "Liveness as plain text (Bacalhau 1.4)"),
    ("get", "/api/v1/orchestrator/jobs", "List jobs: namespace, labels, limit, next_token, reverse, order_by"),
    (
        "put",
        "/api/v1/orchestrator/jobs",
        "Submit a job: {\"Job\": {...}, \"Force\"}; a spec with an existing job's Name updates it",
    ),
    ("post", "/api/v1/orchestrator/jobs", "Submit a job (same as PUT)"),
    ("get", "/api/v1/orchestrator/jobs/{id}", "Get a job by ID, ID prefix or name; include=history,executions"),
    ("delete", "/api/v1/orchestrator/jobs/{id}", "Stop a job; reason in the body or the query"),
    (
        "put",
        "/api/v1/orchestrator/jobs/diff",
        "How a spec differs from the job of its Name: {\"Job\": {...}} -> {Diff, Warnings}",
    ),
    (
        "put",
        "/api/v1/orchestrator/jobs/{id}/rerun",
        "Run a job again as a new version: {\"JobVersion\": 0 (latest), \"Reason\"}",
    ),
    ("get", "/api/v1/orchestrator/jobs/{id}/versions", "Every kept version of a job, oldest first"),
    (
        "get",
        "/api/v1/orchestrator/jobs/{id}/history",
        "A job's history: event_type, execution_id, node_id, limit, next_token",
    ),
    ("get", "/api/v1/orchestrator/jobs/{id}/executions", "A job's executions: limit, reverse"),
    ("get", "/api/v1/orchestrator/jobs/{id}/results", "Published results of completed executions"),
    (
        "get",
        "/api/v1/orchestrator/jobs/{id}/logs",
        "Logs: websocket of {value:{Type,Line}} frames, or plain text; execution_id, follow",
    ),
    ("get", "/api/v1/orchestrator/nodes", "List nodes"),
    ("get", "/api/v1/orchestrator/nodes/{id}", "Get a node by ID prefix"),
    (
        "put",
        "/api/v1/orchestrator/nodes",
        "A node action: {\"NodeID\", \"Action\": approve|reject|delete, \"Message\"}",
    ),
    ("put", "/api/v1/orchestrator/nodes/{id}", "The same action with the node in the path"),
    (
        "get",
        "/api/v1/local-results/{file}",
        "Download a result archive kept by the local publisher (on an orchestrator, ?job_id=ID relays one kept by a compute node)",
    ),
    ("get", "/api/v1/openapi.json", "This document"),
    ("get", "/metrics", "Prometheus metrics in the text exposition format (needs read:node when users are configured)"),
    (
        "get",
        "/ipfs/{cid}",
        "From the node's IPFS store: a block (?format=raw), the DAG as CAR v1 (?format=car), or a file's content (Range supported)",
    ),
    (
        "get",
        "/ipfs/{cid}/{path}",
        "The same for a path inside a folder (HAMT-sharded folders too); a CAR also carries the path's folder blocks",
    ),
    ("post", "/api/v1/ipfs/car", "Upload a CAR v1/v2 (body); every block verified, the roots pinned (?label=)"),
    ("get", "/api/v1/ipfs/pins", "The store's pins: [{Cid, Labels}]"),
    ("post", "/api/v1/ipfs/pins/{cid}", "Pin a DAG the store holds entirely (?label=)"),
    ("delete", "/api/v1/ipfs/pins/{cid}", "Unpin (?label= removes one label)"),
    ("post", "/api/v1/ipfs/gc", "Delete every block no pin reaches: {Kept, Removed, RemovedBytes}"),
    ("post", "/api/v0/id", "kubo RPC: the IPFS peer's identity"),
    ("post", "/api/v0/dag/export", "kubo RPC: ?arg=CID, the DAG as a CAR v1"),
    ("post", "/api/v0/dag/import", "kubo RPC: multipart CAR files; blocks stored, roots pinned"),
    (
        "get",
        "/api/v1/compute/executions/{id}/logs",
        "A running execution's log on the node that runs it, as JSON lines (?follow=true)",
    ),
    ("get", "/api/v1/ipfs/id", "The embedded IPFS peer, as kubo's `ipfs id`: {ID, Addresses, AgentVersion, Protocols}"),
];

pub(crate) fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let params: Vec<Value> = if path.contains("{id}") {
            vec![json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})]
        } else if path.contains("{path}") {
            vec![
                json!({"name": "cid", "in": "path", "required": true, "schema": {"type": "string"}}),
                json!({"name": "path", "in": "path", "required": true, "schema": {"type": "string"}}),
            ]
        } else if path.contains("{cid}") {
            vec![json!({"name": "cid", "in": "path", "required": true, "schema": {"type": "string"}})]
        } else if path.contains("{file}") {
            vec![json!({"name": "file", "in": "path", "required": true, "schema": {"type": "string"}})]
        } else {
            vec![]
        };
        let op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert((*method).to_owned(), op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Bacalhau API (bacalhau-rs)", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {
                "Status": {"type": "integer"}, "Message": {"type": "string"},
                "Code": {"type": "string"}, "Hint": {"type": "string"}
            }
        }}}
    })
}
