"""Names and limits of the kubenas.dev API that several layers must agree on.

Why a module of its own: the Job builder, the ledger and the status writers use
these without needing the resource models (docs/design.md).
"""

from __future__ import annotations

API_GROUP = "kubenas.dev"
API_VERSION = "kubenas.dev/v1alpha1"
DEFAULT_TRAINER_IMAGE = "ghcr.io/kubenas/kubenas-trainer:0.1.0"
MAX_SEARCH_NAME = 40
"""Trial and Job names append ``-t<index>-a<attempt>``; Job names must stay <= 63 chars."""
TOP_K_LIMIT = 10
FRONT_LIMIT = 20
"""The status shows at most this many members of the Pareto front (multi-objective form)."""
EPOCHS_IN_STATUS = 50
"""A NASTrial keeps at most this many per-epoch entries (the latest)."""
POD_TMP_DIR = "/tmp"
POD_CHECKPOINT_DIR = "/checkpoints"
POD_MODEL_DIR = "/models"
"""Folders every trial pod mounts for itself (``kube/jobs.py``): a dataset cannot go there.
``/models`` holds finalTraining.output's claim in final-training pods."""
BUNDLED_DATASETS = frozenset({"digits", "pydoc-text", "synthetic"})
"""Datasets inside the trainer image (or generated): they read no files."""
