-- fanout schema, portable between SQLite and PostgreSQL (run through sqlx's Any driver):
-- timestamps are fixed-width RFC 3339 text (sortable as text), integers BIGINT, JSON as TEXT.

CREATE TABLE batches (
    id               TEXT PRIMARY KEY,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL,
    label            TEXT,
    -- The batch's rules (return_exceptions, fail_fast, return_when, on_timeout, results,
    -- concurrency, timeout_ms) as JSON.
    options          TEXT NOT NULL,
    -- The request body as accepted: the jobs, so that tasks without a row yet can be shown,
    -- and so that another instance can run the batch once work is shared.
    request          TEXT NOT NULL,
    tasks_total      BIGINT NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    wall_ms          DOUBLE PRECISION,
    error            TEXT,
    summary          TEXT,
    verdict          TEXT,
    idempotency_key  TEXT UNIQUE,
    request_hash     TEXT,
    -- The first answer's HTTP status (201 or 202), replayed for a repeated Idempotency-Key.
    answer_status    BIGINT NOT NULL,
    -- Who runs it, and proof that they still do.
    instance_id      TEXT NOT NULL,
    heartbeat_at     TEXT NOT NULL,
    -- Scale-out: a lease an instance renews while it runs the batch, and how many times the
    -- batch was claimed (each claim is a new run attempt).
    lease_until      TEXT,
    run_attempt      BIGINT NOT NULL DEFAULT 1,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    interrupted_at   TEXT
);

CREATE INDEX batches_newest ON batches (created_at, id);
CREATE INDEX batches_by_status ON batches (status, created_at, id);
CREATE INDEX batches_unfinished ON batches (instance_id, finished_at);

CREATE TABLE tasks (
    batch_id      TEXT NOT NULL,
    idx           BIGINT NOT NULL,
    job_id        TEXT,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    seq           BIGINT,
    output        TEXT,
    error_code    TEXT,
    error_message TEXT,
    queued_ms     DOUBLE PRECISION,
    started_at    TEXT,
    finished_at   TEXT,
    duration_ms   DOUBLE PRECISION,
    -- The batch run attempt that wrote this row: a late writer from an older attempt must not
    -- overwrite a newer one.
    run_attempt   BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (batch_id, idx)
);
