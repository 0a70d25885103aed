//! Assembles the router in one readable place and serves it.

use crate::accounts::sessions::PgSessionStore;
use crate::http::{assets, guard, health, request_id};
use axum::handler::Handler;
use crate::portal::Portal;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use app::backend::Backend;
use app::{shell, App};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

pub const SESSION_COOKIE: &str = "tollgate_session";

pub fn router(state: AppState) -> Router {
    let backend: Backend = Portal::backend(state.clone());
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let processor_origins = app::ProcessorOrigins(state.config.stripe.as_ref().map(|s| s.browser_origins()).unwrap_or_default());

    let sessions = SessionManagerLayer::new(PgSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(
            state.config.session_idle_days,
        )));

    let trace = TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
        let id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        let path = crate::http::loggable_path(req.uri().path());
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %path)
    });

    let bench = if state.config.bench_routes {
        crate::gateway::bench_router()
    } else {
        Router::new()
    };
    // Tests only (never set from the environment): routes that panic, to
    // prove the answer a panic gets.
    async fn page_panics() -> &'static str {
        panic!("a test handler panics")
    }
    async fn api_panics() -> &'static str {
        panic!("a test API handler panics")
    }
    async fn never_renders() -> &'static str {
        std::future::pending::<()>().await;
        "never"
    }
    let panic_routes = if state.config.panic_routes {
        Router::new()
            .route("/__tests/panic", axum::routing::get(page_panics))
            .route("/v1/__tests/panic", axum::routing::get(api_panics))
            .route("/__tests/never", axum::routing::get(never_renders))
    } else {
        Router::new()
    };
    Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(backend.clone());
                provide_context(processor_origins.clone());
            },
            move || shell(options.clone()),
        )
        .fallback_service(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(assets::cache_headers))
                .service(assets::service(
                    &state.config.site_root,
                    leptos_axum::file_and_error_handler::<AppState, _>(shell).with_state(state.clone()),
                )),
        )
        .merge(crate::portal::explorer::router())
        .merge(crate::portal::docs::router())
        .merge(crate::portal::usage::router())
        .merge(crate::portal::console::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::portal::visits::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin,
        ))
        .layer(sessions)
        .layer(axum::middleware::from_fn(request_id::scope))
        .merge(health::router())
        .merge(crate::gateway::router())
        .merge(crate::http::webhooks::router())
        .merge(bench)
        .merge(panic_routes)
        // Inside the security headers and the request id: a panic's 500
        // carries both.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::panic::catch))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::security::headers,
        ))
        .layer(
            ServiceBuilder::new()
                // Request ids are ours: they key usage events and ledger postings.
                .map_request(|mut req: axum::http::Request<axum::body::Body>| {
                    req.headers_mut().remove(&request_id::HEADER);
                    req
                })
                .layer(SetRequestIdLayer::new(
                    request_id::HEADER.clone(),
                    request_id::MakeId,
                ))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id::HEADER.clone())),
        )
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C, then finishes the requests in flight.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let addr = state.config.listen_addr;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(state, listener, async {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
    })
    .await
}

/// Serves on `listener` until `stop` completes; then finishes the requests
/// in flight, stops the jobs and writes the usage events still queued.
pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::default();
    // Routes are in place before the first call (then kept current by a job).
    state.gateway.routes.reload(&state.db).await?;
    let jobs = crate::jobs::spawn_all(&state, &shutdown);
    let addr = listener.local_addr()?;
    // The sandbox processor delivers its webhooks to this instance (unless
    // configured to deliver elsewhere).
    let ip = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
    let own = std::net::SocketAddr::new(ip, addr.port());
    if let Ok(url) = format!("http://{own}/webhooks/{}", state.processor.name()).parse() {
        state.processor.listening_at(url);
    }
    tracing::info!(%addr, public_url = %state.config.public_url, "Tollgate is listening");
    let app = router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            stop.await;
            shutdown.trigger();
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    for job in jobs {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), job).await;
    }
    // Every call has been answered; its usage event may still be queued.
    state.gateway.drain(state.clock.now()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
