-- One row per product from the gold tables (rebuilt after each ingest), its metadata joined by
-- asin: a product without metadata keeps its page, named by its ASIN (a NULL name falls back
-- to the key) and compared with all products (no category). Portable SQL.
SELECT s.asin AS product,
       c.title AS product_name,
       c.brand,
       c.category,
       s.review_count,
       s.avg_rating,
       CAST(s.ratings_5 AS DOUBLE PRECISION) / NULLIF(s.review_count, 0) AS five_star_share,
       CAST(s.ratings_1 + s.ratings_2 AS DOUBLE PRECISION) / NULLIF(s.review_count, 0) AS low_star_share,
       s.helpful_ratio,
       s.rating_trend,
       s.first_review,
       s.last_review,
       s.most_helpful_excerpt,
       s.most_recent_excerpt
FROM product_summary s
LEFT JOIN product_catalog c ON c.dataset = 'products' AND c.asin = s.asin
WHERE s.dataset = 'reviews'
ORDER BY s.asin
