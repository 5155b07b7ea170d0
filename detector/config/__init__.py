"""Configuration: the schemas (:mod:`.schemas`), their registration with Hydra (:mod:`.store`),
composition and validation (:mod:`.compose`), error translation (:mod:`.errors`) and
instantiation of ``_target_`` nodes (:mod:`.instantiate`)."""

from detector.config.compose import compose, validate
from detector.config.errors import describe_error
from detector.config.instantiate import instantiate_node
from detector.config.store import CONFIG_DIR, register_configs

__all__ = ["CONFIG_DIR", "compose", "describe_error", "instantiate_node", "register_configs", "validate"]
