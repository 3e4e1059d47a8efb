-- Load runs with a warm-up: tasks started during it are left out of the summary.
ALTER TABLE tasks ADD COLUMN warmup BIGINT NOT NULL DEFAULT 0;
