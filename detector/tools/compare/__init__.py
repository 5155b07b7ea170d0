"""``scripts/compare.py``: contenders, class matching by name, scoring, the data as Ultralytics reads
it, the same-recipe head-to-head and the report."""
