-- A month with orders but no visits at all: the traffic feed dropped that month.
-- Data check of job domain_summaries: returns the domains that FAIL it (one column, named like
-- the job's key). Only the 13 months the job reads count (the last 12 and the year-ago month).
WITH bounds AS (
    SELECT MAX(year * 12 + month - 1) AS last_m FROM domain_monthly
)
SELECT DISTINCT d.domain
FROM domain_monthly d CROSS JOIN bounds b
WHERE d.year * 12 + d.month - 1 > b.last_m - 13
  AND d.visits = 0 AND d.orders > 0
