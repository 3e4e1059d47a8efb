//! Builds the service from its configuration and serves it. Build and serve are separate so
//! that tests and benchmarks can bind port 0, read the address, then run the real thing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::engine::Engine;
use crate::guard::{NetGuard, NetPolicy};
use crate::http::{AppState, auth, router};
use crate::service::{Batches, Cluster, Role};
use crate::store;
use crate::store::Owner;
use tokio_util::sync::CancellationToken;

/// A bound, ready-to-serve instance.
pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
    grace: Duration,
    /// Stops the heartbeat and retention loops.
    background: CancellationToken,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Config(String),
}

/// The service's OpenAPI document as YAML: what `openapi.yaml` must equal.
pub fn openapi_yaml() -> String {
    let yaml = crate::http::openapi()
        .to_yaml()
        .expect("the OpenAPI document serializes");
    quote_yaml11_booleans(&yaml)
}

/// Quotes the keys and list items YAML 1.1 reads as booleans (`on`, a check's subject, is
/// `true` to PyYAML and the tools built on it); the YAML 1.2 writer leaves them bare.
fn quote_yaml11_booleans(yaml: &str) -> String {
    const WORDS: [&str; 6] = ["on", "off", "yes", "no", "y", "n"];
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = &body[..body.len() - body.trim_start().len()];
        let rest = body.trim_start();
        let (item, word) = match rest.strip_prefix("- ") {
            Some(w) => ("- ", w),
            None => ("", rest),
        };
        let key = word
            .split_once(':')
            .filter(|(_, v)| v.is_empty() || v.starts_with(' '));
        let quoted = match key {
            Some((k, v)) if item.is_empty() && WORDS.contains(&k) => {
                Some(format!("{indent}'{k}':{v}"))
            }
            None if !item.is_empty() && WORDS.contains(&word) => {
                Some(format!("{indent}- '{word}'"))
            }
            _ => None,
        };
        match quoted {
            Some(q) => {
                out.push_str(&q);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Docker and Podman leave these behind; Kubernetes and others set `container`.
fn in_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
        || std::env::var_os("container").is_some()
}

/// The accepted tokens' digests: `--api-token` values and `--api-token-file` lines.
fn tokens(config: &Config) -> Result<Vec<[u8; 32]>, StartError> {
    let mut digests: Vec<[u8; 32]> = config
        .api_token
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| auth::digest(t))
        .collect();
    if let Some(path) = &config.api_token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StartError::Config(format!(
                "cannot read --api-token-file {}: {e}",
                path.display()
            ))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bytes: Option<Vec<u8>> = (line.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(d) => digests.push(d),
                None => {
                    return Err(StartError::Config(format!(
                        "--api-token-file line {}: not a SHA-256 hex digest (64 hex digits)",
                        n + 1
                    )));
                }
            }
        }
    }
    Ok(digests)
}

/// Test seams (the `test-hooks` feature, which only the test suite turns on): stand-ins for
/// name lookups and for dialling, so that tests can resolve names to chosen addresses and see
/// what would be dialled without connecting anywhere.
#[cfg(feature = "test-hooks")]
#[derive(Default, Clone)]
pub struct Hooks {
    pub lookup: Option<Arc<dyn crate::guard::Lookup>>,
    pub dialer: Option<Arc<dyn crate::guard::Dialer>>,
    /// Batches without `load` send through the general client (reqwest) rather than on
    /// connections of their own: the reference the differential tests compare against.
    pub general_client: bool,
}

/// How this instance shares work: its role, its leases, and whether its store is shared.
fn cluster(config: &Config) -> Result<Cluster, StartError> {
    let shared = config.database_url.starts_with("postgres");
    if !shared && config.role != Role::All {
        return Err(StartError::Config(format!(
            "--role {} needs a store other instances share (--database-url postgres://...): \
             on SQLite or memory:// one instance accepts and runs everything",
            config.role.name()
        )));
    }
    Ok(Cluster {
        role: config.role,
        owner: Owner {
            instance_id: config.instance_id(),
            token: uuid::Uuid::now_v7().to_string(),
        },
        started_at: chrono::Utc::now(),
        lease: config.stale_after,
        shard_size: config.shard_size,
        shared,
        limits: Arc::new(config.limits()),
    })
}

/// Refuses a listener open to other hosts inside a container without a token, and warns of
/// one outside a container; says what jobs may reach besides public addresses.
fn check_exposure(addr: SocketAddr, state: &AppState, config: &Config) -> Result<(), StartError> {
    if !addr.ip().is_loopback() && state.tokens.is_empty() && in_container() {
        return Err(StartError::Config(format!(
            "refusing to listen on {addr} inside a container without a token: set FANOUT_API_TOKEN \
             (or --api-token / --api-token-file), or listen on 127.0.0.1"
        )));
    }
    if !addr.ip().is_loopback() && state.tokens.is_empty() {
        tracing::warn!(%addr, "LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT --api-token: anyone who can reach it can make this host send requests and read files");
    }
    if !config.allow_net.is_empty() {
        tracing::info!(allow_net = ?config.allow_net, "HTTP jobs may reach public addresses and these");
    }
    Ok(())
}

impl App {
    pub async fn build(config: Config) -> Result<App, StartError> {
        let policy = NetPolicy::parse(&config.allow_net).map_err(StartError::Config)?;
        App::build_guarded(config, NetGuard::new(policy), false).await
    }

    /// With the test seams in place of the system's resolver and dialler.
    #[cfg(feature = "test-hooks")]
    pub async fn build_with(config: Config, hooks: Hooks) -> Result<App, StartError> {
        let policy = NetPolicy::parse(&config.allow_net).map_err(StartError::Config)?;
        let mut guard = NetGuard::new(policy);
        if let Some(lookup) = hooks.lookup {
            guard.lookup = lookup;
        }
        if let Some(dialer) = hooks.dialer {
            guard.dialer = dialer;
        }
        App::build_guarded(config, guard, hooks.general_client).await
    }

    async fn build_guarded(
        config: Config,
        guard: NetGuard,
        general_client: bool,
    ) -> Result<App, StartError> {
        let tokens = tokens(&config)?;
        // Before anything records: the engine's handles bind to the recorder at first use.
        let metrics_handle = crate::metrics::install();
        crate::metrics::spawn_upkeep(metrics_handle.clone());
        let store =
            store::open(&config.database_url, config.sqlite_sync, config.stale_after).await?;
        // The files root is made if missing, so that file jobs work on a fresh checkout; if
        // it cannot be, file jobs say which folder to create (and find it once it exists).
        if let Err(e) = std::fs::create_dir_all(&config.files_root) {
            tracing::warn!(files_root = %config.files_root.display(), error = %e, "cannot create the files root: file jobs fail with not_found until it exists");
        }
        let trust = crate::engine::jobs::Trust::new(&config.ca_file).map_err(StartError::Config)?;
        let mut engine_config =
            config.engine(guard, std::sync::Arc::new(trust), crate::metrics::meters());
        engine_config.general_client = general_client;
        let engine = Engine::new(engine_config);
        if !engine.has_files_root() {
            tracing::warn!(files_root = %config.files_root.display(), "the files root cannot be opened: file jobs will fail until it can");
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let cluster = cluster(&config)?;
        let batches = Batches::new(engine, store, cluster);
        let recovered = batches.recover().await?;
        if recovered > 0 {
            tracing::warn!(
                shards = recovered,
                "work left unfinished by this instance's earlier run: claimed again or ended as its on_lost says"
            );
        }
        let background = CancellationToken::new();
        batches.start_sharing(background.clone());
        if let Some(retention) = config.retention {
            batches.start_retention(retention, background.clone());
        }
        let state = AppState::new(crate::http::Shared {
            batches,
            limits: Arc::new(config.limits()),
            tokens: tokens.into(),
            metrics_token: config
                .metrics_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(auth::digest),
            metrics: metrics_handle,
            event_streams: Arc::new(tokio::sync::Semaphore::new(
                crate::http::events::MAX_STREAMS,
            )),
            draining: Arc::new(AtomicBool::new(false)),
        });
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        check_exposure(addr, &state, &config)?;
        Ok(App {
            background,
            router: router(state.clone()),
            listener,
            state,
            grace: config.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` resolves, then drains: new batches get 503, running batches get
    /// the grace period to finish, and whatever still runs after it is recorded `interrupted`.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.local_addr();
        let cluster = self.state.batches.cluster();
        if cluster.role.serves_api() {
            tracing::info!(
                "fanout listening on http://{addr} (the page at http://{addr}/ui, API docs at http://{addr}/docs, OpenAPI at http://{addr}/openapi.json)"
            );
        } else {
            tracing::info!("fanout listening on http://{addr} (a worker: health and metrics only)");
        }
        if cluster.shared {
            tracing::info!(
                instance_id = %cluster.owner.instance_id,
                role = cluster.role.name(),
                lease_ms = cluster.lease.as_millis() as u64,
                shard_size = cluster.shard_size,
                "sharing work on PostgreSQL with the instances at GET /instances"
            );
        }
        let state = self.state.clone();
        let grace = self.grace;
        // While draining the listener stays open: new batches get 503, /readyz says 503 so a
        // load balancer stops sending, and clients can still read their batches. Once every
        // batch has ended (or the grace period is over and the rest are interrupted), the
        // server stops accepting and finishes the requests in flight.
        let draining = async move {
            signal.await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: draining running batches"
            );
            state.draining.store(true, Ordering::Relaxed);
            let engine = state.batches.engine();
            if !engine.drain(grace).await {
                tracing::warn!("grace period over: interrupting the batches still running");
                engine.shutdown().await;
            }
        };
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(draining)
            .await?;
        let engine = self.state.batches.engine();
        if !engine.drain(Duration::ZERO).await {
            engine.shutdown().await;
        }
        // Every batch has ended (or been interrupted); wait for their last writes.
        self.state.batches.flush().await;
        self.background.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves at SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
