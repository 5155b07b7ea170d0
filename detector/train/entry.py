"""``python train.py``: the one place the training config is read."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from detector.data.build import build_source, load_split
from detector.device import select_device
from detector.models.summary import summary
from detector.models.zoo import instantiate_model
from detector.runs import make_run_dir, write_text_atomic


def run(cfg: DictConfig) -> Path:
    """Set up a training run from a composed, validated config and return its run directory.

    Today this selects the device, builds the model, checks the train and val splits (the
    dataset doctor; the built-in dataset is generated on first use), creates
    ``runs/train/<name>/`` with the resolved ``config.yaml`` and the problem reports, and prints
    the model summary. The training loop itself (loss, optimiser) is not implemented yet: it is
    issue 5, after evaluation (issue 4).
    """
    console = Console(stderr=True)
    device = select_device(cfg.device)
    model = instantiate_model(cfg.model).to(device)
    info = summary(model, cfg.imgsz)
    source = build_source(cfg.data)
    splits = {split: load_split(source, split, log=console.print) for split in ("train", "val")}
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)  # only once nothing can fail
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    for split, index in splits.items():
        if index.problems:
            console.print(f"{split}: problems listed in {index.write_report(run_dir / f'{split}_problems.txt')}")

    table = Table(title=f"model ({_model_choice()})", show_header=False)
    for key in ("params", "trainable_params"):
        table.add_row(key, f"{info[key]:,}")
    table.add_row(f"GFLOPs at {cfg.imgsz}", f"{info['gflops']:.2f}")
    table.add_row("strides", str(info["strides"]))
    table.add_row("classes", f"{info['num_classes']} ({', '.join(cfg.data.names)})")
    table.add_row("device", str(device))
    console.print(table)
    console.print(f"run directory: {run_dir} (resolved config in config.yaml)")
    console.print(
        "[yellow]The training loop is not implemented yet (issue 5): the config was validated, the data "
        "checked and the model built; nothing was trained.[/yellow]"
    )
    return run_dir


def _model_choice() -> str:
    """The model config's name as chosen on the command line, when running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("model", "custom"))
    return "custom"
