-- BAD: gen_random_uuid() is volatile, so every existing row gets its own
-- value: the whole table is rewritten under ACCESS EXCLUSIVE
-- (add-column-volatile-default).
ALTER TABLE orders ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
