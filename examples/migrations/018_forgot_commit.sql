-- BAD: the transaction is never committed (uncommitted-txn); every lock it
-- takes stays held until the connection ends.
SET lock_timeout = '2s';

BEGIN;
ALTER TABLE coupons ADD COLUMN expires_at timestamptz;
