-- Gold: one row of metadata per product of a products dataset (asin, title, brand, category),
-- rebuilt after each ingest; a job's SQL joins it to product_summary by asin.
CREATE TABLE product_catalog (
    dataset  TEXT NOT NULL,
    asin     TEXT NOT NULL,
    title    TEXT,
    brand    TEXT,
    category TEXT,
    PRIMARY KEY (dataset, asin)
);
