-- One row per domain: last-twelve-month totals, ratios, and year-over-year growth of the latest
-- month. Portable between SQLite and PostgreSQL: no date functions, months are indexed as
-- year * 12 + month - 1; NULLIF turns zero denominators into NULL (the feature is then absent).
WITH all_months AS (
    SELECT d.*, d.year * 12 + d.month - 1 AS m_idx
    FROM domain_monthly d
),
bounds AS (
    SELECT MAX(m_idx) AS last_m FROM all_months
),
-- An absurd month (more orders than visits, orders without visits, negative revenue, visits or
-- orders, an inflated base above 10^11) counts as a missing month: averaged in, one such month
-- would make a shop "a clear leader, top 10 %" or "0 % conversion, bottom 10 %", and distort
-- its peers' quantiles. The job's data checks (sql/checks/*.sql) flag the domains concerned.
m AS (
    SELECT * FROM all_months
    WHERE COALESCE(visits, 0) >= 0 AND COALESCE(orders, 0) >= 0 AND COALESCE(revenue, 0) >= 0
      AND COALESCE(orders, 0) <= COALESCE(visits, 0)
      AND COALESCE(visits, 0) <= 100000000000 AND COALESCE(orders, 0) <= 100000000000
),
ltm AS (
    SELECT m.domain,
           MAX(m.category) AS category,
           MAX(m.country) AS country,
           SUM(m.visits) AS visits,
           SUM(m.orders) AS orders,
           SUM(m.revenue) AS revenue,
           -- A month whose share is outside 0–1 is left out of the average (and flagged by the
           -- check shares_out_of_range): one 170 % month must not lift a year's share.
           SUM(CASE WHEN m.returning_share BETWEEN 0 AND 1 THEN m.returning_share * m.orders END)
               / NULLIF(SUM(CASE WHEN m.returning_share BETWEEN 0 AND 1 THEN m.orders END), 0) AS returning_share,
           SUM(CASE WHEN m.mobile_share BETWEEN 0 AND 1 THEN m.mobile_share * m.visits END)
               / NULLIF(SUM(CASE WHEN m.mobile_share BETWEEN 0 AND 1 THEN m.visits END), 0) AS mobile_share,
           COUNT(*) AS months_reported
    FROM m CROSS JOIN bounds b
    WHERE m.m_idx > b.last_m - 12
    GROUP BY m.domain
),
yoy AS (
    SELECT m.domain,
           SUM(CASE WHEN m.m_idx = b.last_m THEN m.revenue END) AS revenue_now,
           SUM(CASE WHEN m.m_idx = b.last_m - 12 THEN m.revenue END) AS revenue_year_ago,
           SUM(CASE WHEN m.m_idx = b.last_m THEN m.orders END) AS orders_now,
           SUM(CASE WHEN m.m_idx = b.last_m - 12 THEN m.orders END) AS orders_year_ago
    FROM m CROSS JOIN bounds b
    GROUP BY m.domain
)
SELECT l.domain,
       l.category,
       l.country,
       l.months_reported,
       l.visits,
       l.orders,
       l.revenue,
       CAST(l.orders AS DOUBLE PRECISION) / NULLIF(l.visits, 0) AS conversion_rate,
       l.revenue / NULLIF(l.orders, 0) AS average_order_value,
       l.revenue / NULLIF(l.visits, 0) AS revenue_per_visit,
       y.revenue_now / NULLIF(y.revenue_year_ago, 0) - 1 AS revenue_growth_yoy,
       CAST(y.orders_now AS DOUBLE PRECISION) / NULLIF(y.orders_year_ago, 0) - 1 AS orders_growth_yoy,
       l.returning_share,
       l.mobile_share
FROM ltm l
JOIN yoy y ON y.domain = l.domain
ORDER BY l.domain
