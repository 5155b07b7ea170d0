"""``scripts/compare.py``: contenders, class matching, the same-recipe head-to-head and the report."""
