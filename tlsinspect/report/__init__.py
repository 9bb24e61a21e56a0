"""Reports: text table, JSON; all built from the field list in `schema`."""
