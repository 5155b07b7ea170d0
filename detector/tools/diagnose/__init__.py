"""Side-by-side training diagnostics of our trainer and Ultralytics' (``scripts/diagnose.py``)."""
