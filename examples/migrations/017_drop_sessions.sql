-- Dropping a table deletes data (drop-table). The inline override records
-- that this one was checked: the finding is lowered to allow and logged
-- with the reason.
SET lock_timeout = '2s';

-- lockguard:allow drop-table reason="sessions moved to redis in v2.3; table unused since"
DROP TABLE sessions;
