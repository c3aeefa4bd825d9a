"""The per-customer aggregation of the feature benchmark, in Polars (lazy, streaming)."""
import sys
from datetime import datetime, timezone

import polars as pl

events, out, cutoff = sys.argv[1], sys.argv[2], sys.argv[3]
cut = datetime.fromisoformat(cutoff).replace(tzinfo=timezone.utc)
t = pl.col("event_type")
purchase = t == "purchase"
count = lambda name: (t == name).sum().alias  # noqa: E731
(
    pl.scan_parquet(events)
    .filter(pl.col("event_time") < cut)
    .group_by("customer_id")
    .agg(
        pl.len().alias("n_events"),
        purchase.sum().alias("n_purchases"),
        count("refund")("n_refunds"),
        count("page_view")("n_page_views"),
        count("session_start")("n_sessions"),
        count("add_to_cart")("n_add_to_cart"),
        count("support_ticket")("n_support_tickets"),
        count("email_open")("n_email_opens"),
        count("email_click")("n_email_clicks"),
        count("sms_click")("n_sms_clicks"),
        pl.col("amount").filter(purchase).sum().alias("purchase_amount"),
        pl.col("amount").filter(purchase).mean().alias("avg_order_value"),
        ((pl.lit(cut) - pl.col("event_time").filter(purchase).max()).dt.total_microseconds() / 86400e6).alias("recency_days"),
        pl.col("event_time").min().alias("first_event"),
        pl.col("event_time").max().alias("last_event"),
        pl.col("category").drop_nulls().n_unique().alias("n_categories"),
        pl.col("channel").drop_nulls().n_unique().alias("n_channels"),
    )
    .sink_parquet(out)
)
