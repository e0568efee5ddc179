-- BAD for running clients: every query that still says "name" fails once
-- this commits (rename-column).
SET lock_timeout = '2s';
ALTER TABLE users RENAME COLUMN name TO full_name;
