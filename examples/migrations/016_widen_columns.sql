-- Widening numeric(10,2) to numeric(12,2) is binary-coercible: no rewrite.
-- integer to bigint is not: payments is rewritten under ACCESS EXCLUSIVE
-- (change-column-type; the old type comes from 007_create_payments.sql).
SET lock_timeout = '2s';

ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);
ALTER TABLE payments ALTER COLUMN id TYPE bigint;
