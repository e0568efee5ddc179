-- GOOD: a nullable column, and a column with a STABLE default (now() is
-- evaluated once, PostgreSQL 11+ stores it without a rewrite). Both take
-- ACCESS EXCLUSIVE only for a moment, bounded by the lock_timeout.
SET lock_timeout = '2s';

ALTER TABLE users ADD COLUMN last_login_at timestamptz;
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
