-- GOOD: the foreign key is added NOT VALID (a brief lock on both tables),
-- then validated in its own transaction (SHARE UPDATE EXCLUSIVE on orders,
-- ROW SHARE on coupons: reads and writes continue). No BEGIN: each
-- statement commits on its own.
SET lock_timeout = '2s';

ALTER TABLE orders ADD COLUMN coupon_id bigint;
CREATE INDEX CONCURRENTLY orders_coupon_id_idx ON orders (coupon_id);
ALTER TABLE orders ADD CONSTRAINT orders_coupon_id_fkey
    FOREIGN KEY (coupon_id) REFERENCES coupons (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_coupon_id_fkey;
