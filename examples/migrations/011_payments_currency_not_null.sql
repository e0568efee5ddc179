-- GOOD: the PostgreSQL 12+ way to SET NOT NULL without a long lock: a NOT
-- VALID CHECK, validated without blocking, proves the column has no NULLs,
-- so SET NOT NULL skips its scan.
SET lock_timeout = '2s';

ALTER TABLE payments ADD CONSTRAINT payments_currency_not_null
    CHECK (currency IS NOT NULL) NOT VALID;
ALTER TABLE payments VALIDATE CONSTRAINT payments_currency_not_null;
ALTER TABLE payments ALTER COLUMN currency SET NOT NULL;
ALTER TABLE payments DROP CONSTRAINT payments_currency_not_null;
