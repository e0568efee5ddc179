-- GOOD: CONCURRENTLY builds the index while reads and writes continue. It
-- cannot run inside a transaction block, so this file has no BEGIN.
CREATE INDEX CONCURRENTLY orders_created_at_idx ON orders (created_at);
