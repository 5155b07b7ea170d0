"""Registration with Hydra: every schema in the ConfigStore and the config resolvers."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from detector.config.schemas import (
    SCHEMAS,
    AugmentOnlyConfig,
    BenchmarkConfig,
    CheckDataConfig,
    CompareConfig,
    DiagnoseConfig,
    EvaluateConfig,
    ExportConfig,
    InspectConfig,
    ModelOnlyConfig,
    PredictConfig,
    ShowBatchConfig,
    TrainConfig,
)
from detector.datafiles import data_dir, dataset_names

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # the YAML files Hydra composes


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore and register the config resolvers ``dataset_names``,
    ``len``, ``data_dir`` and ``double`` (idempotent). Call from entry points, not at import."""
    resolvers = (
        ("dataset_names", dataset_names),
        ("len", len),
        ("data_dir", lambda: str(data_dir())),
        ("double", lambda value: 2 * int(value)),
    )
    for name, resolver in resolvers:
        OmegaConf.register_new_resolver(name, resolver, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="model_only", node=ModelOnlyConfig)
    cs.store(name="augment_only", node=AugmentOnlyConfig)
    cs.store(name="check_data_schema", node=CheckDataConfig)
    cs.store(name="show_batch_schema", node=ShowBatchConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="inspect_schema", node=InspectConfig)
    cs.store(name="benchmark_schema", node=BenchmarkConfig)
    cs.store(name="diagnose_schema", node=DiagnoseConfig)
    cs.store(name="compare_schema", node=CompareConfig)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            cs.store(group=group, name=name, node=node)
