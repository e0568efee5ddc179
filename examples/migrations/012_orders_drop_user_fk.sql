-- RISKY: dropping a foreign key takes ACCESS EXCLUSIVE on orders AND users
-- (drop-foreign-key) — the statement behind lockguard's founding incident.
-- Alone in its file, with a lock_timeout: about as safe as it gets.
SET lock_timeout = '2s';
ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey;
