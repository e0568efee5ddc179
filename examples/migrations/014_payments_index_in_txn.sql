-- BAD: CREATE INDEX CONCURRENTLY cannot run inside a transaction block;
-- PostgreSQL refuses it (concurrently-in-txn).
BEGIN;
CREATE INDEX CONCURRENTLY payments_order_id_idx ON payments (order_id);
COMMIT;
