//! `shopscribe serve`: the HTTP API. Authenticated on-demand insights with single flight,
//! run requests (a job, an S3 event or an EventBridge event), run status, health, readiness,
//! Prometheus metrics and an OpenAPI document. `app` builds the router so tests can drive it.

pub mod auth;
pub mod conn;
pub mod entities;
pub mod error;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod runs;

use crate::config::Project;
use crate::llm::Provider;
use crate::store::Store;
use auth::{Auth, Client, Scope};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use entities::EntityService;
use error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics::Metrics;
use runs::Runner;
use serde_json::json;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::{Instrument, info};

tokio::task_local! {
    /// The id of the request being handled (see [`request_id`]).
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task is handling, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// A fresh request id: 32 hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The client's `X-Request-Id` when it is sane (1–128 characters of letters, digits and
/// `-_.:`), else a fresh one.
fn request_id(request: &Request) -> Arc<str> {
    match request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.into()
        }
        _ => new_request_id().into(),
    }
}

/// Everything the handlers share.
pub struct AppState {
    pub project: Arc<Project>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub entities: Arc<EntityService>,
    pub runner: Arc<Runner>,
    auth: Auth,
    requests: DefaultKeyedRateLimiter<String>,
    generations: DefaultKeyedRateLimiter<String>,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    /// `provider` is wrapped so its calls, tokens and cost show in `/metrics`.
    pub fn new(
        project: Arc<Project>,
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        auth: Auth,
    ) -> Arc<AppState> {
        let metrics = Arc::new(Metrics::new());
        let provider: Arc<dyn Provider> = Arc::new(metrics::Metered::new(
            provider,
            metrics.clone(),
            project.llm.price(),
        ));
        let entities = Arc::new(EntityService::new(
            project.clone(),
            store.clone(),
            provider.clone(),
            metrics.clone(),
        ));
        let runner = Arc::new(Runner::new(
            project.clone(),
            store.clone(),
            provider,
            metrics.clone(),
            Some(entities.clone()),
        ));
        let s = &project.serve;
        let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
        let requests = RateLimiter::keyed(
            Quota::per_second(nz(s.client_requests_per_second))
                .allow_burst(nz(s.client_requests_per_second.saturating_mul(2))),
        );
        let generations = RateLimiter::keyed(
            Quota::per_minute(nz(s.client_generations_per_minute))
                .allow_burst(nz(s.client_generations_per_minute)),
        );
        Arc::new(AppState {
            in_flight: Arc::new(Semaphore::new(s.max_concurrent_requests)),
            project,
            store,
            metrics,
            entities,
            runner,
            auth,
            requests,
            generations,
        })
    }
}

/// The router: one route per row of [`openapi::ROUTES`] (so the document and the router cannot
/// drift apart), the rows with a scope behind authentication, then the layers.
pub fn app(state: Arc<AppState>) -> Router {
    let mut open = Router::new();
    let mut protected = Router::new();
    for (method, path, scope, _) in openapi::ROUTES {
        let handler = handler_for(method, path);
        if scope.is_empty() {
            open = open.route(path, handler);
        } else {
            protected = protected.route(path, handler);
        }
    }
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    open.merge(protected)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.project.serve.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// The handler of a documented route. A row without a handler is a programming error caught by
/// every test that builds the app.
fn handler_for(method: &str, path: &str) -> axum::routing::MethodRouter<Arc<AppState>> {
    match (method, path) {
        ("get", "/healthz") => get(healthz),
        ("get", "/readyz") => get(readyz),
        ("get", "/openapi.json") => get(openapi_doc),
        ("get", "/metrics") => get(metrics_text),
        ("get", "/v1/jobs") => get(list_jobs),
        ("get", "/v1/jobs/{job}/entities/{key}") => get(get_entity),
        ("post", "/v1/runs") => post(post_run),
        ("get", "/v1/runs") => get(list_runs),
        ("get", "/v1/runs/{id}") => get(get_run),
        _ => panic!("openapi::ROUTES lists {method} {path}, which has no handler"),
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `$SHOPSCRIBE_API_TOKENS` is missing or malformed.
    #[error(transparent)]
    Tokens(#[from] auth::TokensError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The writer cannot be built from the project's settings.
    #[error(transparent)]
    Provider(#[from] crate::llm::ProviderError),
    /// The address cannot be listened on (in use, not permitted, not an address).
    #[error("cannot listen on {bind}")]
    Listen {
        bind: String,
        source: std::io::Error,
    },
}

/// Runs the API until `shutdown` resolves, then finishes in-flight requests, runs and
/// generations before returning.
pub async fn serve(
    project: Project,
    bind: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let auth = Auth::from_env()?;
    let store = crate::store::open(&project.store_url).await?;
    let provider = crate::llm::from_config(&project.llm)?;
    let bind = bind.unwrap_or_else(|| project.serve.bind.clone());
    let project = Arc::new(project);
    let state = AppState::new(project, store, provider, auth);
    let listen = |source| ServeError::Listen {
        bind: bind.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(listen)?;
    info!(address = %listener.local_addr().map_err(listen)?, "serving the API");
    serve_with(state, listener, shutdown).await
}

/// Serves `state` on `listener` until `shutdown` (with the connection limits of
/// [`conn::serve`]); then stops accepting connections, lets the requests in flight finish,
/// waits for runs, ingestion and generations in progress, and records the service runs'
/// figures.
pub async fn serve_with(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = conn::Limits::of(&state.project.serve);
    conn::serve(listener, app(state.clone()), limits, shutdown).await;
    info!("no more requests; finishing runs and generations in progress");
    state.runner.drain().await;
    state.entities.close().await;
    info!("stopped");
    Ok(())
}

/// Every request: a request id (echoed or made; in the log span, the `X-Request-Id` header and
/// error bodies), `X-Content-Type-Options: nosniff`, a global concurrency cap, a timeout, and
/// metrics.
async fn edge(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = REQUEST_ID
        .scope(id.clone(), limited(state, request, next).instrument(span))
        .await;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn limited(state: Arc<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Known methods only: a label per made-up method would let anyone grow the metrics.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    // Probes stay outside the concurrency cap: a loaded server is not a dead one.
    let probe = matches!(route.as_str(), "/healthz" | "/readyz");
    let permit = if probe {
        Ok(None)
    } else {
        state.in_flight.clone().try_acquire_owned().map(Some)
    };
    // (Heads over serve.max_header_bytes never get here: the connection layer answers 431.)
    let response = match permit {
        Err(_) => ApiError::too_many(
            "busy",
            "the server is at serve.max_concurrent_requests; retry shortly",
            1,
        )
        .into_response(),
        Ok(_permit) => {
            match tokio::time::timeout(state.project.serve.request_timeout, next.run(request))
                .await
            {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the request took longer than serve.request_timeout_seconds; work it started goes on",
                )
                .into_response(),
            }
        }
    };
    state.metrics.http(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Protected routes: a valid bearer token and the client's request rate.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = state.auth.check(request.headers())?;
    if let Err(not_until) = state.requests.check_key(&client.name) {
        return Err(ApiError::too_many(
            "rate_limited",
            format!(
                "token `{}` is over serve.client_requests_per_second",
                client.name
            ),
            retry_after(&not_until),
        ));
    }
    request.extensions_mut().insert(client);
    Ok(next.run(request).await)
}

/// Whole seconds until a limiter lets the client through again (for `Retry-After`).
fn retry_after(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
    not_until
        .wait_time_from(DefaultClock::default().now())
        .as_secs_f64()
        .ceil() as u64
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            Json(json!({"status": "ready", "store": state.store.backend()})).into_response()
        }
        Ok(Err(e)) => ApiError::unavailable(
            "not_ready",
            "the store does not answer",
            crate::error::Chain(&e),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store did not answer within 2 s",
        )
        .into_response(),
    }
}

async fn openapi_doc() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), state.store.queue_depth()).await
    {
        state.metrics.set_queue_depth(n);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn list_jobs(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let jobs: Vec<_> = state
        .project
        .jobs
        .values()
        .map(|j| json!({"name": j.name, "description": j.description, "entity_label": j.entity_label, "datasets": j.datasets}))
        .collect();
    Json(json!({"jobs": jobs}))
}

/// `?a=b&c=d` as a map; repeated or undecodable parameters are a 400.
fn query_map(q: Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}`; allowed: {}",
                allowed.join(", ")
            )));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{k}` given twice"
            )));
        }
    }
    Ok(out)
}

fn parse_bool(name: &str, v: Option<&String>) -> Result<bool, ApiError> {
    match v.map(String::as_str) {
        // As the OpenAPI document has it (a boolean query parameter): `true` or `false`.
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{name}` must be true or false, not `{other}`"
        ))),
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", e.body_text()))
}

async fn get_entity(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path((job_name, key)) = path.map_err(path_error)?;
    let q = query_map(query, &["refresh"])?;
    let refresh = parse_bool("refresh", q.get("refresh"))?;
    if refresh {
        // Forcing a paid regeneration is a write.
        client.require(Scope::Write)?;
    }
    let job = state
        .project
        .jobs
        .get(&job_name)
        .ok_or_else(|| ApiError::not_found(format!("no job named `{job_name}`")))?;
    let limiter = &state.generations;
    let (answer, source) = state
        .entities
        .get(job, &key, refresh, || {
            limiter.check_key(&client.name).map_err(|n| {
                ApiError::too_many(
                    "generation_rate_limited",
                    format!(
                        "token `{}` is over serve.client_generations_per_minute; cached answers are still served",
                        client.name
                    ),
                    retry_after(&n),
                )
            })
        })
        .await?;
    let mut response = Response::new(Body::from(answer.body.clone()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-shopscribe-source",
        HeaderValue::from_static(source.as_str()),
    );
    Ok(response)
}

async fn post_run(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    client.require(Scope::Write)?;
    let body = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, e.body_text())
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let request = events::parse(&value).map_err(ApiError::bad_request)?;
    match request {
        events::RunRequest::Job(job) => {
            if !state.project.jobs.contains_key(&job) {
                return Err(ApiError::not_found(format!("no job named `{job}`")));
            }
            let ticket = state.runner.request(&job).await;
            info!(client = %client.name, job, status = ticket.status.as_str(), "run requested");
            Ok((StatusCode::ACCEPTED, Json(json!({"runs": [ticket]}))).into_response())
        }
        events::RunRequest::Test => Ok((
            StatusCode::OK,
            Json(json!({"status": "ignored", "reason": "S3 test event"})),
        )
            .into_response()),
        events::RunRequest::Objects(uris) => {
            let (objects, jobs) = events::route(&state.project, &uris);
            if objects.is_empty() {
                return Ok((
                    StatusCode::OK,
                    Json(json!({"status": "ignored", "reason": "no dataset's `from` location holds these objects (or their format is not ingestable)", "objects": uris})),
                )
                    .into_response());
            }
            info!(client = %client.name, objects = objects.len(), jobs = ?jobs, "data arrived");
            let body = json!({
                "status": "accepted",
                "ingest": objects.iter().map(|(d, u)| json!({"dataset": d, "object": u})).collect::<Vec<_>>(),
                "jobs": jobs,
            });
            state.runner.ingest_then_run(objects, jobs);
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    }
}

/// A run as the API shows it. A run's recorded error can name the server's SQL files, lines
/// and database or provider messages: write-scope clients (operators, CI) see it, read-scope
/// clients only that there was one.
fn run_json(r: &crate::store::RunRecord, client: &Client) -> serde_json::Value {
    let error = match (&r.error, client.scope) {
        (Some(e), Scope::Write) => Some(e.clone()),
        (Some(_), Scope::Read) => Some(
            "the run failed; its error is shown to write-scope tokens and in the server's log"
                .to_string(),
        ),
        (None, _) => None,
    };
    json!({
        "id": r.id, "job": r.job, "status": r.status, "provider": r.provider, "model": r.model,
        "started_at": r.started_at, "finished_at": r.finished_at, "error": error,
        "figures": r.figures,
    })
}

async fn list_runs(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query_map(query, &["job", "limit"])?;
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::bad_request("`limit` must be a number from 1 to 1000"))?,
    };
    // Runs whose process died elsewhere since this server opened the store show as abandoned.
    crate::store::mark_abandoned_runs(state.store.as_ref()).await?;
    let runs = state
        .store
        .runs(q.get("job").map(String::as_str), limit)
        .await?;
    Ok(Json(
        json!({"runs": runs.iter().map(|r| run_json(r, &client)).collect::<Vec<_>>()}),
    ))
}

async fn get_run(
    State(state): State<Arc<AppState>>,
    Extension(client): Extension<Client>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(id) = path.map_err(path_error)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("run id `{id}` is not a number")))?;
    crate::store::mark_abandoned_runs(state.store.as_ref()).await?;
    let run = state
        .store
        .run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(Json(run_json(&run, &client)))
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route {method} {}; see /openapi.json", uri.path()),
    )
}

/// A known path with a method it does not have: 405 (with `Allow`, which `conn` removes from
/// any other answer of the method fallback), but only after the same
/// authentication as the path's routes (an anonymous client learns nothing about them).
async fn wrong_method(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    matched: Option<MatchedPath>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let rows: Vec<_> = openapi::ROUTES
        .iter()
        .filter(|(_, path, _, _)| matched.as_ref().is_some_and(|m| m.as_str() == *path))
        .collect();
    if rows.iter().any(|(_, _, scope, _)| !scope.is_empty()) {
        state.auth.check(&headers)?;
    }
    // The router adds `Allow` to what this returns.
    Ok(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
    .into_response())
}
