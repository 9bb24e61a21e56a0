"""Reports: text table, JSON, streamed JSON Lines and CSV, HTML, DataFrames; all built from the
field list in `schema`."""
