//! # fanout
//!
//! Runs a batch of jobs (HTTP fetches, sleeps, file reads) concurrently and reports every job's
//! result and timing, with the semantics of Python's `asyncio.gather` and `asyncio.wait`.
//!
//! # Layout
//!
//! Dependencies point one way: `cli` and `http` use `engine` and `store`; the engine knows
//! neither axum nor the storage backends, so it can be tested alone and reused by the CLI.
//!
//! - [`config`]: the `serve` options, each with a `FANOUT_*` environment twin.
//! - [`engine`]: the heart. [`engine::spec`] holds the validated batch and job types,
//!   [`engine::runner`] drives a batch's jobs under its concurrency bounds, [`engine::batch`]
//!   holds a batch's live state (task records, completion order, summary accumulators) and
//!   [`engine::jobs`] has one module per job kind.
//! - [`guard`]: what jobs may reach: the outbound address policy and its resolver, and the
//!   files-root sandbox.
//! - [`store`]: where batches live once accepted: a trait and one module per backend.
//! - [`http`]: the axum API: one module per resource, the JSON extractor that reports bad input
//!   as problem details, the single [`http::error::ApiError`] type, and the OpenAPI document.
//! - [`app`]: builds the whole service ([`app::App::build`]) and serves it ([`app::App::run`]);
//!   tests bind port 0 through it.
//! - [`cli`]: the `serve` and `openapi` sub-commands.
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
