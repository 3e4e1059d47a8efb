-- The instance a shard was taken from when it was claimed again: the claim copies
-- `instance_id` here before it overwrites it, so a summary can say which instance was lost.
ALTER TABLE shards ADD COLUMN lost_instance_id TEXT;
