-- One row per product from the gold table (rebuilt after each ingest). Portable SQL.
SELECT asin AS product,
       review_count,
       avg_rating,
       CAST(ratings_5 AS DOUBLE PRECISION) / NULLIF(review_count, 0) AS five_star_share,
       CAST(ratings_1 + ratings_2 AS DOUBLE PRECISION) / NULLIF(review_count, 0) AS low_star_share,
       helpful_ratio,
       rating_trend,
       first_review,
       last_review,
       most_helpful_excerpt,
       most_recent_excerpt
FROM product_summary
WHERE dataset = 'reviews'
ORDER BY asin
