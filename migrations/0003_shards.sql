-- Past one machine: work is claimed and run in shards, by whichever instance has room.

-- How many shards the batch was cut into (1 unless a load run exceeds --shard-size), what
-- becomes of a lost shard's unfinished tasks (`rerun` | `interrupt`), and the last `seq`
-- given to a task of a sharded batch (each shard's writes take the next ones).
ALTER TABLE batches ADD COLUMN shard_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE batches ADD COLUMN on_lost TEXT NOT NULL DEFAULT 'interrupt';
ALTER TABLE batches ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE shards (
    batch_id      TEXT NOT NULL,
    idx           BIGINT NOT NULL,
    -- Its tasks: batch task indices `idx`, `idx + shard_count`, ... (striped).
    tasks         BIGINT NOT NULL,
    -- queued | running | completed | cancelled | interrupted
    status        TEXT NOT NULL,
    -- The instance running it, and the process (a token of its own per start) that holds
    -- the lease: a restart under the same instance id holds nothing of its previous life.
    instance_id   TEXT,
    owner         TEXT,
    -- Each claim is a new attempt; every write of the shard's outcome names its attempt, and
    -- one from an older attempt changes nothing.
    attempt       BIGINT NOT NULL DEFAULT 0,
    lease_until   TEXT,
    -- When it last joined the queue (for the claim latency).
    queued_at     TEXT,
    started_at    TEXT,
    finished_at   TEXT,
    -- What has ended, as of `checkpoint_at` (JSON): a re-claimed shard resumes from it.
    checkpoint    TEXT,
    checkpoint_at TEXT,
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX shards_by_status ON shards (status, lease_until);
CREATE INDEX shards_by_owner ON shards (owner, status);

CREATE TABLE instances (
    instance_id    TEXT PRIMARY KEY,
    role           TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    heartbeat_at   TEXT NOT NULL,
    running_shards BIGINT NOT NULL DEFAULT 0
);

-- Batches accepted before shards existed are one shard each.
INSERT INTO shards (batch_id, idx, tasks, status, instance_id, attempt, started_at, finished_at)
SELECT id, 0, tasks_total,
       CASE WHEN finished_at IS NULL THEN 'running' ELSE 'completed' END,
       instance_id, run_attempt, started_at, finished_at
FROM batches;
