-- HTTP tasks: where the last attempt's time went (`timing.phases`) and whether it went on a
-- kept connection (`timing.reused`), as JSON.
ALTER TABLE tasks ADD COLUMN net TEXT;
