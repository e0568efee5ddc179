-- BAD: SET NOT NULL scans all of users under ACCESS EXCLUSIVE (set-not-null);
-- the backfill before it runs in the same transaction.
BEGIN;
UPDATE users SET name = '' WHERE name IS NULL;
ALTER TABLE users ALTER COLUMN name SET NOT NULL;
COMMIT;
