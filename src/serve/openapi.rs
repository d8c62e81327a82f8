//! The OpenAPI 3.1 document served at `/openapi.json`. `ROUTES` is the one list of routes: the
//! router is built from it (`serve::app`) and so is the document; a test checks that the
//! document holds exactly these and that each one reaches its handler.

use serde_json::{Value, json};

/// (method, path, scope or "" for none, summary)
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/healthz", "", "Liveness: the process answers"),
    ("get", "/readyz", "", "Readiness: the store is reachable"),
    ("get", "/openapi.json", "", "This document"),
    (
        "get",
        "/metrics",
        "read",
        "Prometheus metrics (OpenMetrics text)",
    ),
    ("get", "/v1/jobs", "read", "The project's jobs"),
    (
        "get",
        "/v1/jobs/{job}/entities/{key}",
        "read",
        "The entity's current text; generated on demand when missing or stale (refresh=true needs write)",
    ),
    (
        "post",
        "/v1/runs",
        "write",
        "Start a run: {\"job\": NAME}, an S3 event notification or an EventBridge Object Created event",
    ),
    ("get", "/v1/runs", "read", "Recent runs, newest first"),
    ("get", "/v1/runs/{id}", "read", "One run with its figures"),
];

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn operation(method: &str, path: &str, scope: &str, summary: &str) -> Value {
    let mut op = json!({
        "summary": summary,
        "operationId": format!("{method}{}", path.replace(['/', '{', '}', '.'], "_")),
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}}},
    });
    let mut params = Vec::new();
    for p in ["job", "key", "id"] {
        if path.contains(&format!("{{{p}}}")) {
            params.push(
                json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
    }
    match (method, path) {
        ("get", "/v1/jobs/{job}/entities/{key}") => {
            params.push(json!({"name": "refresh", "in": "query", "required": false, "schema": {"type": "boolean"}, "description": "Generate again even if the inputs did not change (write scope)"}));
            op["responses"]["200"] = json!({"description": "The text", "headers": {"X-Shopscribe-Source": {"schema": {"type": "string", "enum": ["cache", "store", "generated"]}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Entity"}}}});
            op["responses"]["404"] = error_response("Unknown job or key");
            op["responses"]["502"] = error_response("No valid text could be generated");
            op["responses"]["503"] = error_response("The writer or the source is unavailable");
        }
        ("get", "/v1/runs") => {
            params.push(json!({"name": "job", "in": "query", "required": false, "schema": {"type": "string"}}));
            params.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}}));
        }
        ("get", "/v1/runs/{id}") => {
            op["responses"]["200"] = json!({"description": "The run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}});
            op["responses"]["404"] = error_response("No such run");
        }
        ("post", "/v1/runs") => {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"oneOf": [
                {"type": "object", "required": ["job"], "properties": {"job": {"type": "string"}}},
                {"type": "object", "required": ["Records"], "description": "S3 event notification", "properties": {"Records": {"type": "array"}}},
                {"type": "object", "required": ["source", "detail-type", "detail"], "description": "EventBridge Object Created event"}
            ]}}}});
            op["responses"] = json!({
                "202": {"description": "Run started or queued; or ingestion accepted", "content": {"application/json": {}}},
                "200": {"description": "Nothing to do (S3 test event, objects outside every dataset)", "content": {"application/json": {}}},
                "400": error_response("Malformed or unrecognised body"),
                "404": error_response("Unknown job"),
                "413": error_response("Body over serve.max_body_bytes"),
            });
        }
        ("get", "/readyz") => {
            op["responses"]["503"] = error_response("The store does not answer");
        }
        _ => {}
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if !scope.is_empty() {
        op["security"] = json!([{"bearer": []}]);
        op["x-scope"] = json!(scope);
        op["responses"]["401"] = error_response("Missing or unknown token");
        op["responses"]["403"] = error_response("The token lacks the scope");
        op["responses"]["429"] =
            error_response("Over the client's or the server's limits (Retry-After)");
    }
    op
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, scope, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation(method, path, scope, summary);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "shopscribe", "version": env!("CARGO_PKG_VERSION"),
                 "description": "On-demand insights and run control. Authenticate with `Authorization: Bearer TOKEN` (tokens from SHOPSCRIBE_API_TOKENS, scope read or write)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Entity": {"type": "object", "required": ["job", "key", "version", "input_hash", "generated_at", "output"], "properties": {
                    "job": {"type": "string"}, "key": {"type": "string"}, "name": {"type": "string"}, "group": {"type": ["string", "null"]},
                    "version": {"type": "integer", "description": "The generation's id"}, "run_id": {"type": "integer"},
                    "input_hash": {"type": "string"}, "generated_at": {"type": "string", "format": "date-time"},
                    "output": {"type": "object", "description": "The job's output, as its JSON schema describes"}}},
                "Run": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "job": {"type": "string"}, "status": {"type": "string"},
                    "provider": {"type": "string"}, "model": {"type": "string"},
                    "started_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]},
                    "error": {"type": ["string", "null"]}, "figures": {"type": "object"}}}
            }
        }
    })
}
