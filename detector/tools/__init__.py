"""Applications built on the library: the comparison report and the benchmark against Ultralytics."""
