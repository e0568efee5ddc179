-- BAD: the backfill runs while the transaction holds ACCESS EXCLUSIVE on
-- orders (work-after-access-exclusive), and the transaction then locks a
-- second table (multi-lock-txn).
SET lock_timeout = '2s';

BEGIN;
ALTER TABLE orders ADD COLUMN discount numeric(10,2);
UPDATE orders SET discount = 0;
ALTER TABLE users ADD COLUMN tier text;
COMMIT;
