-- Gold: one row per product of a reviews dataset, rebuilt after each ingest.
CREATE TABLE product_summary (
    dataset              TEXT    NOT NULL,
    asin                 TEXT    NOT NULL,
    review_count         BIGINT NOT NULL,
    avg_rating           DOUBLE PRECISION,
    ratings_1            BIGINT NOT NULL,
    ratings_2            BIGINT NOT NULL,
    ratings_3            BIGINT NOT NULL,
    ratings_4            BIGINT NOT NULL,
    ratings_5            BIGINT NOT NULL,
    helpful_votes        BIGINT NOT NULL,
    total_votes          BIGINT NOT NULL,
    helpful_ratio        DOUBLE PRECISION,
    recent_reviews       BIGINT NOT NULL,
    recent_avg_rating    DOUBLE PRECISION,
    earlier_avg_rating   DOUBLE PRECISION,
    rating_trend         DOUBLE PRECISION,
    first_review         TEXT,
    last_review          TEXT,
    most_helpful_excerpt TEXT,
    most_recent_excerpt  TEXT,
    PRIMARY KEY (dataset, asin)
);
