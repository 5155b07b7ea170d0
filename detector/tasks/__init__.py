"""One module per script: ``run(cfg)`` reads the composed config once, turns it into typed objects
and wires the parts of the library together. Nothing below this package takes a ``DictConfig``."""
