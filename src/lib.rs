//! # fanout
//!
//! Runs a batch of jobs (HTTP fetches, sleeps, file reads) concurrently and reports every job's
//! result and timing, with the semantics of Python's `asyncio.gather` and `asyncio.wait`, and
//! runs load tests whose verdict a CI job can fail a build on.
//!
//! # Layout
//!
//! Dependencies point one way: [`cli`] and [`http`] call [`service`]; [`service`] uses
//! [`engine`], [`request`] and [`store`]; [`store`] and [`request`] use [`engine`]'s types.
//! The engine knows neither axum, sqlx nor the metrics recorder (it reports through
//! [`engine::meter::Meter`]), so it can be tested alone; nothing below [`service`] knows roles,
//! configuration or the HTTP layer. [`app`] wires everything together for `serve`.
//!
//! The way of a `POST /batches`: [`http::batches`] reads the body and parses it with
//! [`request::parse_batch`] into an [`engine::spec::BatchSpec`]; [`service::Batches::submit`]
//! (the one entry `fanout run` calls too) resolves its baseline, has the engine admit it,
//! commits its row through the store's group-commit writer and starts it; the engine's drivers
//! ([`engine::run`]) run its tasks and report them into the [`engine::Batch`], which applies
//! the answer rules ([`engine::batch::rules`]); the handler waits for the answer and
//! serializes the batch's view ([`engine::batch::view`]).
//!
//! - [`config`]: the `serve` options, each with a `FANOUT_*` environment twin; the limits and
//!   the engine's settings are built from them in one place.
//! - [`request`]: the `POST /batches` body as clients send it, and its validation into the
//!   engine's types; every invalid field is reported with its path.
//! - [`service`]: what an instance does with batches: the registry of those it runs
//!   ([`service::Batches`]), submitting one, claiming and rescuing shards with the other
//!   instances on its store, cancelling, and the reads behind the page.
//! - [`engine`]: the heart. [`engine::spec`] holds the validated batch and job types;
//!   [`engine::run`] admits batches and drives their tasks (the schedule in its `issuer`, the
//!   attempts, the general and the slot drivers); [`engine::batch`] holds a batch's live state
//!   and its answer rules; [`engine::jobs`] has one module per job kind, and the lean HTTP
//!   client every batch sends on ([`engine::jobs::lean`]: HTTP/1.1 read by its I/O-free `h1`,
//!   HTTP/2, HTTPS), with the general client (reqwest) left for what it does not cover;
//!   [`engine::summary`] and [`engine::verdict`] make the figures and judge thresholds;
//!   [`engine::picture`] draws the page's timeline and latency; [`engine::check`] judges an
//!   answer against checks (subjects and predicates compiled once), which the API does not
//!   accept yet.
//! - [`guard`]: what jobs may reach: the outbound address policy and its resolver, and the
//!   files-root sandbox.
//! - [`store`]: where batches live once accepted: the [`store::Store`] trait with SQLite and
//!   PostgreSQL ([`store::sql`]) and `memory://` ([`store::memory`]), and idempotency keys; it
//!   knows rows, leases and checkpoints, not what they are for.
//! - [`http`]: the axum API: one module per resource, the JSON extractor that reports bad input
//!   as problem details, the single [`http::error::ApiError`] type, and the OpenAPI document.
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`, and the engine's meter.
//! - [`app`]: builds the whole service ([`app::App::build`]) and serves it ([`app::App::run`]);
//!   tests bind port 0 through it.
//! - [`cli`]: the sub-commands: `serve`, `run` (in-process or against a server, with text,
//!   JSON, JUnit and HTML reports), `compare`, `report`, `healthcheck` and `openapi`.
//! - [`ui`]: the page (`/ui`), embedded in the binary, and the one-file HTML report made of it.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod request;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod ui;
