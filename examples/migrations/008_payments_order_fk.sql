-- BAD: adding a validated foreign key takes SHARE ROW EXCLUSIVE on payments
-- AND orders and scans payments while holding both: every write to either
-- table waits for the scan (add-fk-validated).
BEGIN;
ALTER TABLE payments ADD CONSTRAINT payments_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id);
COMMIT;
