"""Post-processing, metrics and plots."""
