//! # fanout
//!
//! Runs a batch of jobs (HTTP fetches, sleeps, file reads) concurrently and reports every job's
//! result and timing, with the semantics of Python's `asyncio.gather` and `asyncio.wait`, and
//! runs load tests whose verdict a CI job can fail a build on.
//!
//! # Layout
//!
//! Dependencies point one way: [`cli`] and [`http`] use [`engine`], [`request`] and [`store`];
//! [`store`] uses [`engine`]; the engine knows neither axum, sqlx nor the metrics recorder (it
//! reports through [`engine::meter::Meter`]), so it can be tested alone and run by `fanout run`
//! without a store. [`app`] wires everything together for `serve`.
//!
//! The way of a `POST /batches`: [`http::batches`] reads the body and parses it with
//! [`request::parse_batch`] into an [`engine::spec::BatchSpec`]; [`store::Batches::submit`]
//! has the engine admit it ([`engine::Engine::admit`]), commits its row through the
//! group-commit writer ([`store`]'s `writer`) and starts it ([`engine::Engine::start`]); the
//! engine's drivers ([`engine::run`]) run its tasks and report them into the
//! [`engine::Batch`], which applies the answer rules ([`engine::batch::rules`]); the handler
//! waits for the answer and serializes the batch's view ([`engine::batch::view`]).
//!
//! - [`config`]: the `serve` options, each with a `FANOUT_*` environment twin; the limits and
//!   the engine's settings are built from them in one place.
//! - [`request`]: the `POST /batches` body as clients send it, and its validation into the
//!   engine's types; every invalid field is reported with its path.
//! - [`engine`]: the heart. [`engine::spec`] holds the validated batch and job types;
//!   [`engine::run`] admits batches and drives their tasks (the schedule in its `issuer`, the
//!   attempts, the general and the lean drivers); [`engine::batch`] holds a batch's live state
//!   and its answer rules; [`engine::jobs`] has one module per job kind, and the lean HTTP/1.1
//!   path of load runs ([`engine::jobs::lean`], with its I/O-free reader `h1`);
//!   [`engine::summary`] and [`engine::verdict`] make the figures and judge thresholds.
//! - [`guard`]: what jobs may reach: the outbound address policy and its resolver, and the
//!   files-root sandbox.
//! - [`store`]: where batches live once accepted: the registry of the batches this instance
//!   runs ([`store::Batches`]), the [`store::Store`] trait with SQLite and PostgreSQL
//!   ([`store::sql`]) and `memory://` ([`store::memory`]), the group-commit writer and
//!   idempotency keys.
//! - [`http`]: the axum API: one module per resource, the JSON extractor that reports bad input
//!   as problem details, the single [`http::error::ApiError`] type, and the OpenAPI document.
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`, and the engine's meter.
//! - [`app`]: builds the whole service ([`app::App::build`]) and serves it ([`app::App::run`]);
//!   tests bind port 0 through it.
//! - [`cli`]: the sub-commands: `serve`, `run` (in-process or against a server, with text,
//!   JSON and JUnit reports), `healthcheck` and `openapi`.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod request;
pub mod store;
pub mod telemetry;
pub mod ui;
