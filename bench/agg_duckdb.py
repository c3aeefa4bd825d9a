"""The per-customer aggregation of the feature benchmark, in DuckDB."""
import sys

import duckdb

events, out, cutoff = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute(f"""
COPY (
  SELECT customer_id,
         count(*) AS n_events,
         count(*) FILTER (WHERE event_type = 'purchase') AS n_purchases,
         count(*) FILTER (WHERE event_type = 'refund') AS n_refunds,
         count(*) FILTER (WHERE event_type = 'page_view') AS n_page_views,
         count(*) FILTER (WHERE event_type = 'session_start') AS n_sessions,
         count(*) FILTER (WHERE event_type = 'add_to_cart') AS n_add_to_cart,
         count(*) FILTER (WHERE event_type = 'support_ticket') AS n_support_tickets,
         count(*) FILTER (WHERE event_type = 'email_open') AS n_email_opens,
         count(*) FILTER (WHERE event_type = 'email_click') AS n_email_clicks,
         count(*) FILTER (WHERE event_type = 'sms_click') AS n_sms_clicks,
         coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS purchase_amount,
         avg(amount) FILTER (WHERE event_type = 'purchase') AS avg_order_value,
         epoch_us(TIMESTAMPTZ '{cutoff} 00:00:00+00' - max(event_time) FILTER (WHERE event_type = 'purchase')) / 86400e6 AS recency_days,
         min(event_time) AS first_event,
         max(event_time) AS last_event,
         count(DISTINCT category) AS n_categories,
         count(DISTINCT channel) AS n_channels
  FROM read_parquet('{events}')
  WHERE event_time < TIMESTAMPTZ '{cutoff} 00:00:00+00'
  GROUP BY customer_id
) TO '{out}' (FORMAT parquet)
""")
