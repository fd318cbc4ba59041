//! The reference for Warden's HTTP benchmarks: the same routes and the same
//! JSON bodies as the agent registry and the enforcement endpoint, with no authentication, no rate
//! limit, no validation and no storage. What it reaches is the limit of the
//! HTTP stack on this machine.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use warden_core::id::{new_id, prefix};
use warden_core::time::{now_ms, to_rfc3339};

fn agent(id: &str, name: &str) -> Value {
    let now = to_rfc3339(now_ms());
    json!({
        "data": {
            "id": id, "name": name, "description": null, "owner": null, "framework": null,
            "external_id": null, "tags": [], "status": "active", "metadata": {},
            "created_at": now, "updated_at": now,
        },
        "meta": {"request_id": new_id(prefix::REQUEST), "timestamp": now},
    })
}

async fn get_agent(Path(id): Path<String>) -> Json<Value> {
    Json(agent(&id, "bench-agent"))
}

async fn create_agent(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let name = body["name"].as_str().unwrap_or("agent").to_string();
    (
        StatusCode::CREATED,
        Json(agent(&new_id(prefix::AGENT), &name)),
    )
}

/// The same answer shape as `POST /api/v1/enforce`, decided by nothing.
async fn enforce(Json(body): Json<Value>) -> Json<Value> {
    let now = to_rfc3339(now_ms());
    let agent = body["agent_id"].as_str().unwrap_or("agent").to_string();
    Json(json!({
        "data": {
            "decision": "allow", "reason": "no policy matched; the default decision allow applies",
            "matched_policy_ids": [], "hold_token": null, "hold_expires_at": null,
            "modified_tool_args": null, "drift_score": 0.0,
            "drift": {"score": 0.0, "learning": true, "new_tool": 0.0, "unusual_transition": 0.0,
                      "unusual_rate": 0.0, "unusual_hour": 0.0, "new_argument_keys": 0.0},
            "agent_id": agent, "audit_id": new_id("aud"), "latency_ms": 0.0, "monitor_decision": null,
        },
        "meta": {"request_id": new_id(prefix::REQUEST), "timestamp": now},
    }))
}

#[tokio::main]
async fn main() {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18082".into());
    let app = Router::new()
        .route("/api/v1/agents/{id}", get(get_agent))
        .route("/api/v1/agents", axum::routing::post(create_agent))
        .route("/api/v1/enforce", axum::routing::post(enforce));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("bare endpoint listening on http://{listen}");
    axum::serve(listener, app).await.expect("serve");
}
