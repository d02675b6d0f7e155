"""Analytics: Ibis expressions over the canonical tables (KPIs, tags, segments, model tags)."""
