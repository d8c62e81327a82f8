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

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// What `POST /v1/runs` accepts, exactly as `events::parse` decides (the first that applies:
/// `job`, then S3's test event, then `Records`, then `source`), so that what the schema calls
/// valid is accepted and what it calls invalid is a 400.
fn run_request_schema() -> Value {
    let location = json!({"type": "object", "required": ["bucket", "object"], "properties": {
        "bucket": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}},
        "object": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string", "minLength": 1}}}}});
    let has_job = json!({"required": ["job"]});
    let test_event =
        json!({"required": ["Event"], "properties": {"Event": {"const": "s3:TestEvent"}}});
    let record = json!({"type": "object", "required": ["eventSource", "eventName"],
        "properties": {"eventSource": {"const": "aws:s3"}, "eventName": {"type": "string"}},
        "if": {"properties": {"eventName": {"pattern": "^ObjectCreated"}}},
        "then": {"required": ["s3"], "properties": {"s3": location}}});
    json!({"anyOf": [
        {"title": "Job", "type": "object", "required": ["job"],
         "properties": {"job": {"type": "string", "minLength": 1}}},
        {"title": "S3TestEvent", "description": "Sent by S3 when a notification is configured: ignored",
         "type": "object", "required": ["Event"], "properties": {"Event": {"const": "s3:TestEvent"}},
         "not": has_job},
        {"title": "S3EventNotification", "description": "Objects with an `ObjectCreated*` eventName are ingested (keys form-encoded); other records are skipped",
         "type": "object", "required": ["Records"], "properties": {"Records": {"type": "array", "items": record}},
         "not": {"anyOf": [has_job, test_event]}},
        {"title": "EventBridgeEvent", "description": "An `Object Created` event is ingested (key not encoded); other detail types are ignored",
         "type": "object", "required": ["source", "detail-type"],
         "properties": {"source": {"const": "aws.s3"}, "detail-type": {"type": "string"}},
         "if": {"properties": {"detail-type": {"const": "Object Created"}}},
         "then": {"required": ["detail"], "properties": {"detail": location}},
         "not": {"anyOf": [has_job, test_event, {"required": ["Records"]}]}}
    ]})
}

fn operation(method: &str, path: &str, scope: &str, summary: &str) -> Value {
    let mut op = json!({
        "summary": summary,
        "operationId": format!("{method}{}", path.replace(['/', '{', '}', '.'], "_")),
        "responses": {"200": json_response("OK", json!({"type": "object"}))},
    });
    let mut params = Vec::new();
    for p in ["job", "key"] {
        if path.contains(&format!("{{{p}}}")) {
            params.push(json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}));
        }
    }
    if path.contains("{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}}));
    }
    // Every route: a head over serve.max_header_bytes. Every route but the probes: the server's
    // concurrency cap and request timeout.
    op["responses"]["431"] = error_response("Request line and headers over serve.max_header_bytes");
    if !matches!(path, "/healthz" | "/readyz") {
        op["responses"]["429"] =
            error_response("Over the client's or the server's limits (Retry-After)");
        op["responses"]["503"] =
            error_response("The request took longer than serve.request_timeout_seconds");
    }
    route_responses(method, path, &mut op, &mut params);
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if !scope.is_empty() {
        op["security"] = json!([{"bearer": []}]);
        op["x-scope"] = json!(scope);
        op["responses"]["401"] = error_response("Missing or unknown token");
        op["responses"]["403"] = error_response("The token lacks the scope");
    }
    op
}

/// What one route adds to its operation: its own responses, query parameters and body.
fn route_responses(method: &str, path: &str, op: &mut Value, params: &mut Vec<Value>) {
    match (method, path) {
        ("get", "/healthz") => {
            op["responses"]["200"] = json_response(
                "Alive",
                json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
            );
        }
        ("get", "/readyz") => {
            op["responses"]["200"] = json_response(
                "Ready",
                json!({"type": "object", "required": ["status", "store"], "properties": {"status": {"const": "ready"}, "store": {"type": "string"}}}),
            );
            op["responses"]["503"] = error_response("The store does not answer");
        }
        ("get", "/metrics") => {
            op["responses"]["200"] = json!({"description": "The metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}});
        }
        ("get", "/v1/jobs") => {
            op["responses"]["200"] = json_response(
                "The jobs",
                json!({"type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": {"type": "object", "required": ["name", "description", "entity_label", "datasets"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "entity_label": {"type": "string"},
                "datasets": {"type": "array", "items": {"type": "string"}}}}}}}),
            );
        }
        ("get", "/v1/jobs/{job}/entities/{key}") => {
            params.push(json!({"name": "refresh", "in": "query", "required": false, "schema": {"type": "boolean"}, "description": "Generate again even if the inputs did not change (write scope)"}));
            op["responses"]["200"] = json!({"description": "The text", "headers": {"X-Shopscribe-Source": {"schema": {"type": "string", "enum": ["cache", "store", "generated"]}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Entity"}}}});
            op["responses"]["400"] = error_response("A malformed path or query parameter");
            op["responses"]["404"] = error_response("Unknown job or key");
            op["responses"]["500"] =
                error_response("The server failed (details in its log, under the request id)");
            op["responses"]["502"] = error_response("No valid text could be generated");
            op["responses"]["503"] = error_response(
                "The LLM provider or the source is unavailable, or the request took longer than serve.request_timeout_seconds",
            );
        }
        ("get", "/v1/runs") => {
            params.push(json!({"name": "job", "in": "query", "required": false, "schema": {"type": "string"}}));
            params.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}}));
            op["responses"]["200"] = json_response(
                "Runs, newest first",
                json!({"type": "object", "required": ["runs"], "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}}}),
            );
            op["responses"]["400"] = error_response("An unknown or malformed query parameter");
            op["responses"]["503"] = error_response(
                "The store is unavailable, or the request took longer than serve.request_timeout_seconds",
            );
        }
        ("get", "/v1/runs/{id}") => {
            op["responses"]["200"] =
                json_response("The run", json!({"$ref": "#/components/schemas/Run"}));
            op["responses"]["400"] = error_response("The id is not a number");
            op["responses"]["404"] = error_response("No such run");
            op["responses"]["503"] = error_response(
                "The store is unavailable, or the request took longer than serve.request_timeout_seconds",
            );
        }
        ("post", "/v1/runs") => {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": run_request_schema()}}});
            op["responses"]["202"] = json_response(
                "Run started or queued; or ingestion accepted",
                json!({"type": "object"}),
            );
            op["responses"]["200"] = json_response(
                "Nothing to do (S3 test event, objects outside every dataset)",
                json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ignored"}}}),
            );
            op["responses"]["400"] = error_response("Malformed or unrecognised body");
            op["responses"]["404"] = error_response("Unknown job");
            op["responses"]["413"] = error_response("Body over serve.max_body_bytes");
        }
        _ => {}
    }
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
                 "description": "On-demand insights and run control. Authenticate with `Authorization: Bearer TOKEN` (tokens from SHOPSCRIBE_API_TOKENS, scope read or write). Every response has an `X-Request-Id` (the client's, when sane, or a new one); every error is JSON with a stable code, and 5xx details are only in the server's log under that id."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}},
                "Entity": {"type": "object", "required": ["job", "key", "version", "input_hash", "generated_at", "output"], "properties": {
                    "job": {"type": "string"}, "key": {"type": "string"}, "name": {"type": "string"}, "group": {"type": ["string", "null"]},
                    "version": {"type": "integer", "description": "The generation's id"}, "run_id": {"type": "integer"},
                    "input_hash": {"type": "string"}, "generated_at": {"type": "string"},
                    "output": {"type": "object", "description": "The job's output, as its JSON schema describes"}}},
                "Run": {"type": "object", "required": ["id", "job", "status", "provider", "model", "started_at", "finished_at", "error", "figures"], "properties": {
                    "id": {"type": "integer"}, "job": {"type": "string"}, "status": {"type": "string"},
                    "provider": {"type": "string"}, "model": {"type": "string"},
                    "started_at": {"type": "string"}, "finished_at": {"type": ["string", "null"]},
                    "error": {"type": ["string", "null"], "description": "For read-scope tokens only whether there was one; the recorded error for write scope"},
                    "figures": {"type": "object"}}}
            }
        }
    })
}
