-- BAD: a plain CREATE INDEX on a live table blocks every INSERT, UPDATE and
-- DELETE on orders for the whole build (create-index-blocking), and there
-- is no lock_timeout (missing-lock-timeout).
CREATE INDEX orders_status_idx ON orders (status);
