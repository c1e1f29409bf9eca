"""The trial contract between the search loop (operator or local runner) and the trainer.

Input: one ``TrialDocument`` (JSON) given to ``python -m nas_trainer`` by file
(``--trial FILE`` or ``KUBENAS_TRIAL_FILE``) or inline (``KUBENAS_TRIAL_JSON``).
Reporting: the trainer POSTs ``Report`` bodies as JSON to ``KUBENAS_REPORT_URL``
(the full URL of this trial's report endpoint) with the header
``Authorization: Bearer $KUBENAS_REPORT_TOKEN``; the final report is also
written to the termination-message file (``KUBENAS_TERMINATION_FILE``, default
``/dev/termination-log``) as one JSON ``Report``.

It lives in the core package that both images ship (``controller_policy``) and
imports only pydantic, so the operator speaks it without the trainer package.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictFloat, model_validator

from controller_policy.objective import Objective
from controller_policy.spaces.base import Architecture
from controller_policy.strict import Strict

ENV_TRIAL_FILE = "KUBENAS_TRIAL_FILE"
ENV_TRIAL_JSON = "KUBENAS_TRIAL_JSON"
ENV_REPORT_URL = "KUBENAS_REPORT_URL"
ENV_REPORT_TOKEN = "KUBENAS_REPORT_TOKEN"
ENV_TERMINATION_FILE = "KUBENAS_TERMINATION_FILE"
DEFAULT_TERMINATION_FILE = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""


DatasetName = Literal[
    "cifar10", "ptb", "digits", "pydoc-text", "synthetic", "image-folder", "idx", "arrays"
]


class DatasetSpec(Strict):
    """Which data a trial trains on. ``digits`` and ``pydoc-text`` ship offline (bundled)."""

    name: DatasetName = Field(
        default="digits",
        description="cifar10 or ptb (files under path), digits or pydoc-text (bundled), "
        "synthetic (generated); your own images: image-folder (train/<class>/*.png|jpg, "
        "optional val/ and test/), idx (MNIST-format files) or arrays (an .npz).",
    )
    path: str | None = Field(
        default=None,
        description="Directory holding the dataset files (cifar10, ptb, image-folder, idx), "
        "or the .npz file (arrays).",
    )
    validationSize: int | None = Field(
        default=None,
        ge=1,
        description="Examples held out of the training set for validation (CIFAR-10: 5000).",
    )
    maxTrainExamples: int | None = Field(
        default=None, ge=1, description="Cap on training examples (smoke tests, cheap searches)."
    )
    download: bool = Field(default=False, description="Download when missing and online.")
    imageSize: int | None = Field(
        default=None, ge=4, le=1024,
        description="image-folder, idx, arrays: scale the shorter side to this many pixels "
        "and centre-crop a square (search small, retrain large). Default: as stored.",
    )
    channels: Literal[1, 3] | None = Field(
        default=None,
        description="image-folder, idx, arrays: 1 (grey) or 3 (RGB). Default: as stored "
        "(image-folder: 1 when every image is grey).",
    )
    flip: bool | None = Field(
        default=None,
        description="Random horizontal flips in augmentation. Default: on for image-folder, "
        "cifar10 and synthetic, off for digits, idx and arrays.",
    )
    unreadableFiles: Literal["fail", "skip"] = Field(
        default="fail",
        description="image-folder: a file that cannot be decoded fails the trial (fail) or "
        "is left out and counted in the log (skip).",
    )


class ModelSpec(Strict):
    """How a genotype is turned into a network of a given size (NASNet's N@F and friends)."""

    cellsPerStage: int = Field(default=2, ge=1, description="N: cells between reductions.")
    filters: int = Field(default=16, ge=1, description="Base filter count (doubled per reduction).")
    stemMultiplier: int = Field(default=3, ge=1)
    auxiliaryHead: bool = False
    auxiliaryWeight: float = Field(default=0.4, ge=0)
    dropPath: float = Field(default=0.0, ge=0, lt=1, description="Final ScheduledDropPath rate.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout before the classifier.")
    # language models
    embeddingSize: int = Field(default=64, ge=1)
    hiddenSize: int = Field(default=64, ge=1)
    numLayers: int | None = Field(
        default=None, ge=1,
        description="Stacked recurrent cells; null = the paper's (Zoph & Le 2, ENAS 1).",
    )
    tieWeights: bool = True
    variationalDropout: float = Field(default=0.0, ge=0, lt=1)
    hiddenNormClip: float | None = Field(
        default=None, gt=0,
        description="Language models: rescale each sequence's recurrent state to at most this L2 "
        "norm after every time step (carpedm20's ENAS port: 25); null = off. Keeps cells of "
        "identity/ReLU nodes from overflowing at SGD learning rate 20.",
    )


class TrainingSpec(Strict):
    """Child-training hyper-parameters (papers' values are the defaults of a full search)."""

    epochs: int = Field(default=10, ge=1)
    batchSize: int = Field(default=64, ge=1)
    learningRate: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = True
    weightDecay: float = Field(default=1e-4, ge=0)
    schedule: Literal["cosine", "step", "sgdr", "constant"] = "cosine"
    learningRateMin: float = Field(
        default=0.0, ge=0, description="Floor of the cosine and SGDR schedules (ENAS: 0.001)."
    )
    sgdrPeriod: int = Field(default=10, ge=1, description="SGDR: first cycle in epochs (T0).")
    sgdrMultiplier: int = Field(default=2, ge=1, description="SGDR: cycle growth (T_mul).")
    stepMilestones: list[int] | None = Field(
        default=None,
        description="Step schedule: epochs at which lr is multiplied by stepFactor "
        "(default: 50% and 75% of the epochs).",
    )
    stepFactor: float = Field(default=0.1, gt=0, le=1, description="Step schedule: lr factor.")
    labelSmoothing: float = Field(default=0.0, ge=0, lt=1)
    augment: bool = True
    cutout: int = Field(default=0, ge=0, description="Cutout square size in pixels; 0 = off.")
    gradClip: float | None = Field(default=None, gt=0)
    amp: Literal["off", "bf16", "fp16"] = "off"
    channelsLast: bool = False
    bptt: int = Field(default=35, ge=1, description="Language models: BPTT length.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads.")
    reportTestAccuracy: bool = False
    model: ModelSpec = Field(default_factory=ModelSpec)


class EnasSpec(Strict):
    """Weight-sharing (ENAS) mode: one process holds the supernet and the controller."""

    controller: dict[str, Any] = Field(
        default_factory=dict, description="Controller hyper-parameters (reinforce config)."
    )
    controllerStepsPerEpoch: int = Field(default=30, ge=1)
    controllerBatch: int = Field(default=10, ge=1)
    deriveSamples: int = Field(default=100, ge=1)
    workers: int = Field(default=1, ge=1, description="Workers, each training its own child per step.")


class DartsSpec(Strict):
    """Mode ``darts`` (docs/papers.md §8, DARTS): bilevel search over the micro cell in one trial."""

    order: Literal["first", "second"] = Field(
        default="second", description="first: alpha on the current weights; second: the unrolled step."
    )
    archLearningRate: float = Field(default=3e-4, gt=0, description="Adam on alpha (paper: 3e-4).")
    archBetas: tuple[float, float] = (0.5, 0.999)
    archWeightDecay: float = Field(default=1e-3, ge=0)
    unrollEpsilon: float = Field(
        default=0.01, gt=0, description="Finite-difference step: 0.01 / ||grad of w'|| (paper)."
    )
    earlyStop: Literal["off", "skip-count"] = Field(
        default="off", description="skip-count: DARTS+ stops once the normal cell holds skipLimit skips."
    )
    skipLimit: int = Field(default=2, ge=1)
    workers: int = Field(default=1, ge=1, description="gloo/NCCL workers sharing the supernet.")
    accumulate: int = Field(
        default=1, ge=1, description="Micro-batches per worker and step (BN statistics per micro-batch)."
    )


class TrialDocument(Strict):
    """Everything a trainer needs for one trial attempt."""

    apiVersion: Literal["kubenas.dev/v1alpha1"] = "kubenas.dev/v1alpha1"
    kind: Literal["TrialDocument"] = "TrialDocument"
    namespace: str = "default"
    search: str
    trial: str
    attempt: int = Field(default=0, ge=0)
    seed: int = 0
    mode: Literal["train", "enas", "darts"] = "train"
    architecture: Architecture | None = Field(
        default=None, description="Required for mode 'train'; absent for mode 'enas'."
    )
    spaceType: str | None = Field(default=None, description="Search space (mode 'enas').")
    spaceOptions: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    objective: Objective = Field(default_factory=Objective)
    enas: EnasSpec | None = None
    darts: DartsSpec | None = None
    checkpointDir: str | None = Field(
        default=None, description="Where to checkpoint on SIGTERM and resume from."
    )
    outputDir: str | None = Field(
        default=None,
        description="Where to save the trained model (final training): weights, genotype, "
        "model settings and metrics (nas_trainer.model_output).",
    )


ReportKind = Literal["epoch", "final", "interrupted", "failed"]


MAX_REPORTED_EPOCHS = 100_000
"""More epochs than any trial trains (the spec caps training.epochs far below)."""
MAX_METRIC_MAGNITUDE = 1e15
"""Beyond any parameter count, FLOP count or duration a trial reports; larger is garbage."""
MAX_METRICS_PER_REPORT = 256

MetricValue = Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-MAX_METRIC_MAGNITUDE,
                                           le=MAX_METRIC_MAGNITUDE)]
"""A number (never a string or a boolean), finite and bounded."""
Metrics = Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)], MetricValue],
                    Field(max_length=MAX_METRICS_PER_REPORT)]


class Report(Strict):
    """One POST body. ``epoch`` reports carry one epoch's metrics; ``final`` all of them.

    Metrics are checked for type and range here, before any reward is computed from them:
    one absurd value (1e13 as an accuracy) would otherwise overflow the controller's
    float32 reward and stall its learning while the search still "succeeds".
    """

    kind: ReportKind
    trial: str = Field(max_length=253)
    attempt: int = Field(default=0, ge=0, le=MAX_REPORTED_EPOCHS, strict=True)
    epoch: int | None = Field(default=None, ge=0, lt=MAX_REPORTED_EPOCHS, strict=True,
                              description="0-based epoch (kind 'epoch').")
    metrics: Metrics = Field(
        default_factory=dict, description="This epoch's metrics, or the final metrics."
    )
    epochs: list[Metrics] = Field(
        default_factory=list, max_length=MAX_REPORTED_EPOCHS,
        description="Final report: every epoch's metrics, oldest first.",
    )
    architecture: Architecture | None = Field(
        default=None, description="ENAS mode: the derived architecture."
    )
    reason: str | None = Field(default=None, max_length=1024)
    device: str | None = Field(
        default=None, max_length=128,
        description="Final report: the device latency_ms was measured on (cpu, cuda:0 (GPU name)).",
    )

    @model_validator(mode="after")
    def _plausible(self) -> Report:
        problems = implausible_metrics(self.metrics, "metrics")
        for i, epoch in enumerate(self.epochs):
            problems += implausible_metrics(epoch, f"epochs[{i}]")
        if problems:
            raise ValueError("; ".join(problems[:5]))
        return self


def implausible_metrics(metrics: dict[str, float], where: str) -> list[str]:
    """What no real training reports: an accuracy outside [0, 1], a perplexity below 1."""
    problems = []
    for name, value in metrics.items():
        if name.endswith("accuracy") and not 0.0 <= value <= 1.0:
            problems.append(f"{where}.{name}: an accuracy must lie in [0, 1], got {value:.6g}")
        elif name.endswith("perplexity") and value < 1.0:
            problems.append(f"{where}.{name}: a perplexity is at least 1, got {value:.6g}")
    return problems
