"""Structured-config schemas: one dataclass per config node, the one home of every default.

Hydra validates every composed config against them (unknown keys and wrong types are refused
before any work starts); tasks turn the composed config into these objects with
``OmegaConf.to_object``.

Where each default lives: a default is written here, once, and nowhere else. A YAML file under
``configs/`` sets only what differs from its schema: a task's file the values that task chooses
(``train.yaml``: the short CPU run), a group option what makes that option (``augment/none.yaml``:
``close_mosaic: 0``). A field a config must always give is ``MISSING`` here. The library functions
a config feeds (``detector.data``: ``min_size``, ``min_visibility``, ``mixup``) take those values
without defaults of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING

from detector.types import Branch, CSPVariant, LossGains

# --------------------------------------------------------------------------- model components


@dataclass
class ScaleConfig:
    """Family scale that a model's parts interpolate (``${..scale.width}``)."""

    depth: float = 1.0  # repeat multiplier
    width: float = 1.0  # channel multiplier
    max_channels: int = 1024  # channel cap applied before the width multiplier
    c3k: bool = False  # YOLO11 m/l/x: C3k inner blocks everywhere


@dataclass
class CSPDarknetConfig(ScaleConfig):
    _target_: str = "detector.models.backbones.CSPDarknet"
    variant: CSPVariant = CSPVariant.yolov8


@dataclass
class TorchvisionBackboneConfig:
    _target_: str = "detector.models.backbones.TorchvisionBackbone"
    arch: Any = MISSING  # {_target_: torchvision.models.<name>, _partial_: true}
    return_nodes: list[str] = MISSING
    weights: Optional[str] = None
    normalize: bool = True


@dataclass
class PANConfig(ScaleConfig):
    _target_: str = "detector.models.necks.PAN"
    _partial_: bool = True
    variant: CSPVariant = CSPVariant.yolov8


@dataclass
class FPNConfig:
    _target_: str = "detector.models.necks.FPN"
    _partial_: bool = True
    width: float = 0.25


@dataclass
class DetectHeadConfig:
    _target_: str = "detector.models.heads.DetectHead"
    _partial_: bool = True
    num_classes: int = MISSING
    reg_max: int = 16  # bins per box side (DFL); 1: the four distances directly (YOLO26)
    depthwise_cls: bool = False
    end2end: bool = False  # add the one-to-one branch (NMS-free inference; YOLO26)
    inference: Branch | None = None  # branch used to predict: one2one | one2many; null: one2one when end2end


@dataclass
class ModelConfig:
    _target_: str = "detector.models.detector.build_detector"
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    backbone: Any = MISSING
    neck: Any = MISSING
    head: Any = MISSING


# --------------------------------------------------------------------------- training groups


@dataclass
class DataSourceConfig:
    names: list[str] = MISSING  # class names, in class-index order
    num_classes: int = MISSING  # the one place the class count is written (${len:${.names}}); models interpolate it


@dataclass
class ShapesDataConfig(DataSourceConfig):
    _target_: str = "detector.data.sources.ShapesSource"
    root: str = MISSING  # generated here on first use, regenerated when the parameters below change
    num_train: int = 1000
    num_val: int = 200
    imgsz: int = 320  # size the images are generated at
    seed: int = 0


@dataclass
class CrowdDataConfig(DataSourceConfig):
    _target_: str = "detector.data.sources.CrowdSource"
    root: str = MISSING  # generated here on first use, regenerated when the parameters below change
    num_train: int = 400  # what a CPU study can afford; raise them on a GPU
    num_val: int = 100
    imgsz: int = 512  # size the images are generated at (at least 256); object sizes scale with it
    seed: int = 0


@dataclass
class YoloDataConfig(DataSourceConfig):
    _target_: str = "detector.data.sources.YoloSource"
    file: Optional[str] = None  # an Ultralytics data.yaml; or give path / train / val / test here
    path: Optional[str] = None
    train: Any = None  # folder, .txt list of images, or a list of those (relative to path)
    val: Any = None
    test: Any = None
    download: Optional[str] = None  # how to get the dataset, shown when it is missing


@dataclass
class CocoJsonDataConfig(DataSourceConfig):
    _target_: str = "detector.data.sources.CocoJsonSource"
    train_json: Optional[str] = None
    train_images: Optional[str] = None
    val_json: Optional[str] = None
    val_images: Optional[str] = None
    test_json: Optional[str] = None
    test_images: Optional[str] = None
    download: Optional[str] = None


@dataclass
class AugmentConfig:
    """Transforms by name (each a ``_target_`` node, or null to leave it out): ``mosaic`` (instead of
    the letterbox), then in order affine, color, flipud, fliplr, then ``extra`` in its order. All are
    albumentations transforms except the mosaic, ``detector.data.mosaic.Mosaic`` (or
    ``albumentations.Mosaic``), which takes its geometry from ``affine``."""

    mosaic: Any = None  # detector.data.mosaic.Mosaic or albumentations.Mosaic, instead of the letterbox
    affine: Any = None
    color: Any = None
    flipud: Any = None
    fliplr: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    mixup: float = 0.0  # probability of blending with a second augmented sample
    close_mosaic: int = 10  # the last N epochs train without mosaic
    min_visibility: float = 0.1  # boxes keeping less of their area inside the image are dropped
    min_size: float = 2.0  # boxes narrower or lower than this (pixels) are dropped (Ultralytics: 2 px)
    # where a mosaic's three partner images come from: 0 (the default), the nearest positions of the
    # sample's own batch (each image decoded about once per epoch); N > 0, drawn at random from the N
    # positions before it in the epoch's order; null, from min(8 x batch, 1000) of them, as Ultralytics
    # draws them from its buffer of the images it loaded last (more distinct images per batch, more
    # decoding: measured as accurate as 0 and a slower loader, README)
    mosaic_window: Optional[int] = 0


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.01
    momentum: float = 0.937
    nesterov: bool = True
    weight_decay: float = 5e-4


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 0.002
    betas: list[float] = field(default_factory=lambda: [0.937, 0.999])
    weight_decay: float = 5e-4


@dataclass
class MuSGDConfig(SGDConfig):  # SGD's settings, and the Muon part's
    _target_: str = "detector.train.musgd.MuSGD"
    muon: float = 0.2  # the Muon step's share of lr (conv and linear weights)
    sgd: float = 1.0  # the SGD step's share of lr in those weights' groups
    cls_lr_gain: float = 3.0  # lr multiplier of the head's class branches


class RecipeLoader(str, Enum):
    """The training loader compare's recipe gives our trainer."""

    ours = "ours"  # our loader and augmentation (configs/augment/default.yaml)
    ultralytics = "ultralytics"  # Ultralytics' training loader with the same augmentation (a diagnostic)


class RecipeOptimizer(str, Enum):
    """Optimizers compare's recipe can give both trainers: ours ``optim=<name>``, theirs ``optimizer=``."""

    sgd = "sgd"  # Nesterov SGD (their SGD)
    musgd = "musgd"  # their MuSGD (YOLO26's)


class ScheduleShape(str, Enum):
    """The options of the ``schedule`` group (``configs/schedule/<name>.yaml``); compare's recipe names one."""

    cosine = "cosine"
    linear = "linear"


@dataclass
class ScheduleConfig:
    """A learning-rate schedule (``schedule=cosine|linear``): a partial of
    :class:`detector.train.optim.Schedule`, given ``epochs`` by the training task."""

    _target_: str = MISSING
    _partial_: bool = True
    final_lr_ratio: float = 0.01  # last epoch's lr as a fraction of optim.lr
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1


@dataclass
class CosineScheduleConfig(ScheduleConfig):
    _target_: str = "detector.train.optim.CosineSchedule"


@dataclass
class LinearScheduleConfig(ScheduleConfig):
    _target_: str = "detector.train.optim.LinearSchedule"


class WandbMode(str, Enum):
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    """One logger of the run, under ``logger.<key>`` (``logger=tensorboard``; several:
    ``logger=[tensorboard,mlflow]``): a partial of a class built from ``run_dir``, ``run_id`` and
    ``name`` (:func:`detector.train.loggers.open_loggers`)."""

    _target_: str = MISSING
    _partial_: bool = True


@dataclass
class CSVLoggerConfig(LoggerConfig):
    _target_: str = "detector.train.loggers.CSVLogger"


@dataclass
class TensorBoardLoggerConfig(LoggerConfig):
    _target_: str = "detector.train.loggers.TensorBoardLogger"


@dataclass
class MLflowLoggerConfig(LoggerConfig):
    _target_: str = "detector.train.loggers.MLflowLogger"
    # $MLFLOW_TRACKING_URI when set, else a local database beside the run directories (no server);
    # a server: http://host:5000
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,'sqlite:///${project}/mlflow.db'}"
    experiment: str = "detector"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class WandbLoggerConfig(LoggerConfig):
    _target_: str = "detector.train.loggers.WandbLogger"
    project: str = "detector"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.online
    tags: list[str] = field(default_factory=list)


@dataclass
class TrainLoopConfig:
    """``train.*``. The defaults are the default run's (``python train.py``), sized for a CPU."""

    epochs: int = 11  # the default run: 14.6 minutes on 2 CPU cores (see README)
    batch: int = 16  # images per optimizer step over all processes (torchrun splits it)
    # nominal batch: gradients accumulate until about nbs images, weight decay scales with it. 16: one
    # optimizer step per batch, for a short CPU run (64, the usual nominal batch, on a GPU)
    nbs: int = 16
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (slower on GPU)
    workers: int = 2  # data-loader processes per training process
    cache_images: bool = False  # keep decoded, resized images in RAM
    fraction: float = 1.0  # train on this first fraction of the train split
    # mixed precision. null: on CUDA (bf16 where supported, else fp16 with a grad scaler), off on CPU;
    # true: also on a CPU with native bf16 (AVX512-BF16 / AMX), as bf16 autocast; false: off
    amp: Optional[bool] = None
    clip: float = 10.0  # gradient-norm clipping (0: off)
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    box: float = LossGains.box  # loss gains
    cls: float = LossGains.cls
    dfl: float = LossGains.dfl
    fitness: str = "mAP50-95"  # the validation metric that picks best.pt and drives patience
    patience: int = 100  # stop when fitness has not improved for this many epochs
    init: Optional[str] = None  # start from a checkpoint's weights (class-count changes re-initialise cls outputs)
    freeze: Any = None  # N (the first N layers) or a list of module-name prefixes
    max_nonfinite: int = 10  # stop after this many optimizer steps in a row with a non-finite loss
    sync_bn: bool = False  # SyncBatchNorm under torchrun
    val: bool = True  # validate every epoch
    save_period: int = 0  # also keep weights/epochN.pt every N epochs (0: only last.pt and best.pt)
    # torch.compile the model for the training batches (fused kernels; the first batch, and an epoch's
    # smaller last batch, compile first: minutes on a CPU). Checkpoints and the EMA keep the plain model
    compile: bool = False


@dataclass
class PostProcessConfig:
    """The detections a command keeps: the flat keys ``conf``, ``iou``, ``max_det`` of every command
    that predicts (evaluate, predict, compare, benchmark's predict and val). The defaults are
    Ultralytics' validation settings."""

    conf: float = 0.001  # minimum class score of a detection
    iou: float = 0.7  # NMS IoU threshold
    max_det: int = 300  # detections kept per image
    # end-to-end models (YOLO26): one2one (top-k, no NMS) or one2many (NMS); null: the model's own choice
    branch: Branch | None = None


@dataclass
class AgnosticPostProcessConfig(PostProcessConfig):
    """:class:`PostProcessConfig` and the choice of one NMS over all classes."""

    agnostic: bool = False  # one NMS over all classes instead of one per class


@dataclass
class RunConfig:
    """Settings every entry point shares, at the top level."""

    task: str = MISSING
    name: str = "exp"  # run directory: <project>/<task>/<name>, numbered (exp2, exp3, ...) if taken
    project: str = "runs"
    exist_ok: bool = False  # reuse <name> instead of numbering a new directory
    imgsz: int = 640
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps


@dataclass
class TrainConfig(RunConfig):
    task: str = "train"
    imgsz: int = 320  # the default run is sized for a CPU: raise it (640) on a GPU
    # a last.pt to continue (its run directory and config are reused), or true / last: the most recently
    # written <project>/train/<name>*/weights/last.pt (a string: the command line's true arrives as "True")
    resume: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: Any = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: Any = MISSING
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    logger: dict[str, LoggerConfig] = field(default_factory=dict)  # each typed by its option's schema
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)


@dataclass
class CheckDataConfig(RunConfig):
    task: str = "check_data"
    data: Any = MISSING
    splits: list[str] = field(default_factory=lambda: ["train", "val"])


@dataclass
class ShowBatchConfig(RunConfig):
    task: str = "show_batch"
    data: Any = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: str = "train"
    batch: int = 16
    seed: int = 0
    epoch: int = 0  # which epoch's random draws (and whether mosaic is still on)


@dataclass
class EvaluateConfig(AgnosticPostProcessConfig, RunConfig):
    task: str = "evaluate"
    checkpoint: str = MISSING  # a checkpoint (.pt), or an exported .onnx or OpenVINO .xml (or its folder)
    data: Any = MISSING
    split: str = "val"
    batch: int = 16
    workers: int = 4
    plots: bool = True
    amp: bool = False  # autocast inference: fp16 / bf16 on CUDA, bf16 on a CPU with native bf16 (AVX512-BF16 / AMX)
    compile: bool = False  # torch.compile the fused model (its first batch, and a smaller last one, compile first)


class OrtOptimization(str, Enum):
    """onnxruntime's graph optimisation levels (``GraphOptimizationLevel``)."""

    disable = "disable"
    basic = "basic"  # constant folding, redundant nodes removed
    extended = "extended"  # and node fusions
    layout = "layout"  # and layout changes (NCHWc convolutions on x86)
    all = "all"  # every optimisation


class OrtExecution(str, Enum):
    sequential = "sequential"  # one node after another, each on the intra-op threads
    parallel = "parallel"  # independent nodes at once on the inter-op threads


@dataclass
class OnnxRuntimeConfig:
    """onnxruntime's session settings for an exported ``.onnx`` (``onnxruntime.*`` of predict.py,
    ``detector.load(..., onnxruntime=...)``). The defaults are what measured fastest for yolov8n at
    640 on a shared 2-core CPU, at batch 1 and at batch 8 (README, Prediction)."""

    threads: int = 0  # intra-op threads (0: onnxruntime's choice, one per physical core)
    # idle intra-op threads spin-wait for the next node instead of sleeping: off measured 1.2-1.7x
    # faster on a busy machine, where spinning threads take the cores the work needs
    spinning: bool = False
    optimization: OrtOptimization = OrtOptimization.all  # all: 1.5x faster than extended (NCHWc layouts)
    execution: OrtExecution = OrtExecution.sequential  # parallel measured 0.7-0.8x for these chains of convolutions
    inter_threads: int = 0  # threads for execution=parallel (0: onnxruntime's choice)


@dataclass
class PredictConfig(AgnosticPostProcessConfig, RunConfig):
    task: str = "predict"
    conf: float = 0.25  # prediction keeps only confident detections (validation scores down to 0.001)
    checkpoint: str = (
        MISSING  # a detector checkpoint (.pt), an Ultralytics .pt, an exported .onnx or OpenVINO .xml (or its folder)
    )
    source: str = MISSING  # an image, video, folder or glob, a stream URL, or a camera index (0)
    save_images: bool = True  # annotated images (PNG) and videos (MP4) beside the JSON
    amp: bool = False  # autocast inference: fp16 / bf16 on CUDA, bf16 on a CPU with native bf16 (AVX512-BF16 / AMX)
    batch: int = 8  # images, video frames or tiles per forward
    # torch.compile the fused PyTorch model (each new batch size or imgsz compiles first: minutes on a CPU)
    compile: bool = False
    vid_stride: int = 1  # predict every n-th video frame
    tile: Optional[int] = None  # cut each image into tile x tile windows, each predicted at imgsz (null: whole images)
    tile_overlap: float = 0.2  # neighbouring windows overlap by this fraction of a tile
    tile_full: bool = False  # the whole image as one more window (large objects), merged with the tiles
    onnxruntime: OnnxRuntimeConfig = field(default_factory=OnnxRuntimeConfig)  # an exported .onnx's session


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    openvino = "openvino"


class Int8Float(str, Enum):
    """What an INT8 OpenVINO export keeps in float (detector/export/quantize.py)."""

    none = "none"  # NNCF's choice everywhere, the decoding included
    decode = "decode"  # the decoding after the detector's layers (DFL, boxes in pixels, sigmoid, top-k)
    head = "head"  # the decoding and the head's last 1x1 convolutions


class Int8Preset(str, Enum):
    """NNCF's quantization preset of an INT8 OpenVINO export."""

    performance = "performance"  # symmetric weights and activations (int8 kernels throughout)
    mixed = "mixed"  # asymmetric activations (u8 with zero points; slower on the CPUs measured)


class Int8Ranges(str, Enum):
    """How an INT8 OpenVINO export sets each activation's range from the calibration images."""

    histogram = "histogram"  # the range that minimises the quantization error of the values' histogram
    minmax = "minmax"  # the smallest and largest value over all of them
    mean_minmax = "mean_minmax"  # the mean of each image's (NNCF's default: clips the rarer extremes)


@dataclass
class ExportConfig(RunConfig):
    task: str = "export"
    checkpoint: str = MISSING
    format: ExportFormat = ExportFormat.onnx
    dynamic: bool = False  # a dynamic batch axis
    opset: int = 17
    # end-to-end models (YOLO26): one2one exports the top-k (detections [B, max_det, 6], no NMS),
    # one2many boxes and scores for NMS; null: the model's own choice
    branch: Branch | None = None
    max_det: int = 300  # rows of an end-to-end export
    # ONNX: the graph simplified by onnxslim (constants folded, shape arithmetic removed: about half the
    # nodes, outputs equal); onnxruntime's own optimisations do the same at load, so it is not faster there
    simplify: bool = False
    half: bool = False  # openvino: fp16 weights
    int8: bool = False  # openvino: INT8 post-training quantization (NNCF), calibrated on images of data
    int8_images: int = 300  # calibration images (a seeded sample of int8_split, letterboxed as for validation)
    int8_split: str = "train"
    int8_float: Int8Float = Int8Float.decode
    int8_preset: Int8Preset = Int8Preset.performance
    int8_ranges: Int8Ranges = Int8Ranges.histogram
    # NNCF's accuracy control: at most this much mAP50-95 lost (0.01: one point), measured on the first
    # int8_val_images of int8_val_split; operations that cost the most go back to float until it holds
    int8_max_drop: Optional[float] = None
    int8_val_split: str = "val"
    int8_val_images: int = 300
    seed: int = 0  # the calibration sample
    data: Any = None  # a data option (data=shapes, data=yolo data.file=...): int8's calibration images


class BenchmarkPart(str, Enum):
    train_step = "train_step"
    loader = "loader"
    predict = "predict"
    val = "val"
    deploy = "deploy"  # not in the default parts: it exports the weights four ways per side (minutes)


class DeployRuntime(str, Enum):
    eager = "eager"  # PyTorch
    compiled = "compiled"  # PyTorch under torch.compile (ours: compile=true; theirs: compile=True)
    onnxruntime = "onnxruntime"
    openvino = "openvino"  # float32 IR
    openvino_int8 = "openvino_int8"  # INT8 IR (NNCF post-training quantization on the training split)
    # the float32 IR computing in bf16 (ours: amp=true; theirs: their float export, which OpenVINO runs in bf16 on
    # such CPUs anyway): measured only on a CPU with native bf16 (AVX512-BF16 or AMX)
    openvino_bf16 = "openvino_bf16"


@dataclass
class BenchTrainStepConfig:
    imgsz: int = 320
    batch: int = 8  # on the CPU
    batch_cuda: int = 64  # on a GPU
    steps: int = 3  # timed optimizer steps per repeat
    amp: bool = True  # on CUDA both sides autocast: bf16 where supported, else fp16 with a grad scaler
    compile: bool = False  # ours under torch.compile (train.compile=true), theirs eager; warmup compiles it


@dataclass
class BenchLoaderConfig:
    imgsz: int = 640
    batch: int = 16
    workers: int = 2
    batches: int = 20  # timed batches per repeat
    warmup: int = 3  # untimed batches first in each repeat (worker start-up)


@dataclass
class BenchPredictConfig(PostProcessConfig):
    conf: float = 0.25  # as scripts/predict.py
    imgsz: int = 640
    image: Optional[str] = None  # null: a generated shapes image of imgsz x imgsz pixels
    calls: int = 10  # timed predictions per repeat


@dataclass
class BenchValConfig(PostProcessConfig):
    split: str = "val"
    imgsz: int = 320
    batch: int = 16  # on the CPU
    batch_cuda: int = 32  # on a GPU
    workers: int = 2  # on a GPU; on the CPU both use none (Ultralytics' validator ignores workers there)


@dataclass
class BenchDeployConfig(PostProcessConfig):
    """``parts=[deploy]``: each runtime end to end, ours against Ultralytics' own export, on the CPU."""

    runtimes: list[DeployRuntime] = field(default_factory=lambda: list(DeployRuntime))
    conf: float = 0.25  # the timed predictions keep confident detections (the mAP uses 0.001)
    imgsz: int = 640
    batch: int = 8  # images per call of the throughput figure (and per batch of the mAP pass)
    calls: int = 5  # timed calls per repeat
    map: bool = True  # each side's mAP on the split through its predictor, by our evaluator
    split: str = "val"
    int8_images: int = 300  # INT8 calibration images from the training split, both sides
    seed: int = 0  # our calibration sample


@dataclass
class BenchmarkConfig:
    task: str = "benchmark"
    name: str = "exp"
    project: str = "runs"
    exist_ok: bool = False
    device: str = "all"  # all: the CPU, and the GPU where CUDA is present; or one of cpu, cuda, cuda:N
    imgsz: int = 640  # what the augment config interpolates: configs/benchmark.yaml sets it to ${loader.imgsz}
    arch: str = "yolov8n"  # a model both libraries build from their own configs (yolov8n-x, yolo11n-x, yolo26n-x)
    checkpoint: Optional[str] = None  # weights for both sides; null: Ultralytics' initialisation (seeded)
    data: Any = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: Any = MISSING
    parts: list[BenchmarkPart] = field(
        default_factory=lambda: [p for p in BenchmarkPart if p is not BenchmarkPart.deploy]
    )
    repeats: int = 5  # measurements of each side per figure (the median is reported)
    warmup: int = 1  # untimed measurements of each side first
    threads: int = 0  # torch CPU threads for both sides; 0: the count Ultralytics sets for itself
    seed: int = 0
    # also measure ours with bf16 autocast (train.amp=true / amp=true) on a CPU with native bf16, against
    # Ultralytics in float32 (it has no half precision on a CPU): train_step, predict, val
    cpu_bf16: bool = True
    train_step: BenchTrainStepConfig = field(default_factory=BenchTrainStepConfig)
    loader: BenchLoaderConfig = field(default_factory=BenchLoaderConfig)
    predict: BenchPredictConfig = field(default_factory=BenchPredictConfig)
    val: BenchValConfig = field(default_factory=BenchValConfig)
    deploy: BenchDeployConfig = field(default_factory=BenchDeployConfig)


class CompareMode(str, Enum):
    eval = "eval"
    train = "train"


@dataclass
class CompareRecipeConfig:
    """``scripts/compare.py mode=train``: one recipe for our trainer and Ultralytics'."""

    # the defaults are the default training run's recipe (`python train.py`: TrainLoopConfig, sgd, cosine)
    model: str = "yolov8n"  # one of yolov8n-x, yolo11n-x, yolo26n-x (Ultralytics builds <model>.yaml)
    epochs: int = 11
    batch: int = 16
    nbs: int = 16
    optimizer: RecipeOptimizer = RecipeOptimizer.sgd
    lr: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    schedule: ScheduleShape = ScheduleShape.cosine
    final_lr_ratio: float = 0.01
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    close_mosaic: int = 3
    seed: int = 0
    deterministic: bool = False
    workers: int = 2  # loader workers given to both (on a CPU Ultralytics' trainer replaces them by 0)
    # torch CPU threads of our trainer; 0: the process's count when the run starts (torch's default, what
    # python train.py uses). Ultralytics' trainer always sets its own on a CPU (cpu_count - 1, 1 to 8)
    threads: int = 0
    amp: bool = True  # each trainer's mixed precision on CUDA (bf16 where supported, else fp16); off on CPU
    patience: int = 100
    ours: list[str] = field(default_factory=list)  # extra train.py overrides for our side only
    our_loader: RecipeLoader = RecipeLoader.ours  # ultralytics: our trainer on their training batches (loader swap)


@dataclass
class CompareConfig(PostProcessConfig, RunConfig):
    task: str = "compare"
    mode: CompareMode = CompareMode.eval
    models: list[str] = field(default_factory=list)  # our .pt, an Ultralytics .pt or YAML name, our model config
    data: Any = MISSING
    split: str = "val"
    batch: int = 16
    workers: int = 4
    latency_warmup: int = 10
    latency_repeats: int = 50
    ultralytics_val: bool = True  # also run Ultralytics' own validator on Ultralytics models
    ultralytics_rect: bool = False  # its rectangular batches (YOLO.val's default) instead of our square letterbox
    seed: int = 0  # initialisation of untrained baselines
    recipe: CompareRecipeConfig = field(default_factory=CompareRecipeConfig)
    seeds: list[int] = field(default_factory=list)  # mode=train: one paired run per seed; empty: [recipe.seed]
    reuse: bool = True  # mode=train: reuse seeds already trained in <project>/compare/trained/ (false: retrain)


@dataclass
class _ClassCount:
    num_classes: int = 80


class InspectFormat(str, Enum):
    table = "table"  # the terminal tables only
    csv = "csv"
    json = "json"
    markdown = "markdown"


class ConvKind(str, Enum):
    regular = "regular"
    depthwise = "depthwise"
    pointwise = "pointwise"
    grouped = "grouped"
    transposed = "transposed"


@dataclass
class InspectConfig(RunConfig):
    """``scripts/inspect_layers.py``: every conv of a checkpoint (``checkpoint=``) or an untrained model (``model=``)."""

    task: str = "inspect"
    imgsz: Any = 640  # a square size, or [H, W]
    checkpoint: Optional[str] = None  # our .pt or an Ultralytics .pt
    model: Optional[ModelConfig] = None  # model=NAME: an untrained model from configs/model/
    data: _ClassCount = field(default_factory=_ClassCount)  # the class count of model=NAME
    fuse: bool = False  # fold BatchNorm into the convs first
    layers: Any = None  # module-path glob(s): layers='backbone.*' or layers='[neck.*,head.cls.*]'
    kind: Optional[ConvKind] = None
    format: Optional[InspectFormat] = None  # null: from the suffix of out, else the terminal tables only
    out: Optional[str] = None  # the file for format=csv|json|markdown (default: runs/inspect/<name>/layers.<ext>)
    zero_tol: float = 1e-3  # |w| (and |gamma|) at or below this counts as zero
    kernels: Optional[str] = None  # a conv path: PNG of its filters ('first' or empty: the first conv)
    image: Optional[str] = None  # an image whose feature maps are drawn (feature_maps)
    feature_maps: list[str] = field(default_factory=list)  # module paths drawn for image (default: the first conv)
    compare_to: Optional[str] = None  # a checkpoint of the same architecture: relative weight change per conv


@dataclass
class ModelOnlyConfig:
    """Primary config of :func:`detector.build_model`: one model and the class count it interpolates."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"model": MISSING}])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: _ClassCount = field(default_factory=_ClassCount)


@dataclass
class DiagnoseConfig(RunConfig):
    """``scripts/diagnose.py``: our trainer and Ultralytics' side by side on one recipe and seed."""

    task: str = "diagnose"
    imgsz: int = 320
    data: Any = MISSING
    batches: int = 8  # augmented batches measured per trainer, with mosaic and without
    probe: bool = True  # also train both with the recipe under the probe (false: only the batches)
    recipe: CompareRecipeConfig = field(default_factory=CompareRecipeConfig)


@dataclass
class AugmentOnlyConfig:
    """Primary config ``augment_only``: one augment option (``augment=NAME``, default ``default``) and
    the ``imgsz`` its transforms interpolate, to build the augmentation outside a task."""

    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"augment": "default"}])
    imgsz: int = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)


SCHEMAS: dict[str, dict[str, Any]] = {
    "schema/backbone": {"csp_darknet": CSPDarknetConfig, "torchvision": TorchvisionBackboneConfig},
    "schema/neck": {"pan": PANConfig, "fpn": FPNConfig},
    "schema/head": {"dfl": DetectHeadConfig, "detect": DetectHeadConfig},
    "schema/optim": {"sgd": SGDConfig, "adamw": AdamWConfig, "musgd": MuSGDConfig},
    "schema/schedule": {"cosine": CosineScheduleConfig, "linear": LinearScheduleConfig},
    "schema/logger": {
        "csv": CSVLoggerConfig,
        "tensorboard": TensorBoardLoggerConfig,
        "mlflow": MLflowLoggerConfig,
        "wandb": WandbLoggerConfig,
    },
    "schema/data": {
        "shapes": ShapesDataConfig,
        "crowd": CrowdDataConfig,
        "yolo": YoloDataConfig,
        "coco_json": CocoJsonDataConfig,
    },
}
