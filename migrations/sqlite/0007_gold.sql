-- Gold: one row per product of a reviews dataset, rebuilt after each ingest.
CREATE TABLE product_summary (
    dataset              TEXT    NOT NULL,
    asin                 TEXT    NOT NULL,
    review_count         INTEGER NOT NULL,
    avg_rating           DOUBLE PRECISION,
    ratings_1            INTEGER NOT NULL,
    ratings_2            INTEGER NOT NULL,
    ratings_3            INTEGER NOT NULL,
    ratings_4            INTEGER NOT NULL,
    ratings_5            INTEGER NOT NULL,
    helpful_votes        INTEGER NOT NULL,
    total_votes          INTEGER NOT NULL,
    helpful_ratio        DOUBLE PRECISION,
    recent_reviews       INTEGER NOT NULL,
    recent_avg_rating    DOUBLE PRECISION,
    earlier_avg_rating   DOUBLE PRECISION,
    rating_trend         DOUBLE PRECISION,
    first_review         TEXT,
    last_review          TEXT,
    most_helpful_excerpt TEXT,
    most_recent_excerpt  TEXT,
    PRIMARY KEY (dataset, asin)
);
