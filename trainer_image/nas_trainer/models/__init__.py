"""Child models: any valid architecture of any space -> ``torch.nn.Module``.

Image models: ``forward(x[B,C,H,W]) -> logits[B,classes]``; with an auxiliary
head and in training mode ``forward`` returns ``(logits, aux_logits)``. Cell
models expose ``drop_path_prob`` (set by the trainer each epoch for
ScheduledDropPath).

Language models: ``forward(tokens[B,T], hidden=None) -> (logits[B,T,V], hidden)``
and ``init_hidden(batch_size)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from controller_policy.contract import ModelSpec
from controller_policy.spaces import Architecture, make_space
from nas_trainer.registry import BUILDERS, ModelBuilder, model_builder, register_builder


def build_model(
    architecture: Architecture | dict[str, Any],
    spec: ModelSpec | None = None,
    *,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    vocab_size: int | None = None,
    space_options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build the child network of ``architecture`` (validated against its space first).

    Image spaces need ``input_shape=(C, H, W)`` and ``num_classes``; language
    spaces need ``vocab_size``.
    """
    if isinstance(architecture, dict):
        architecture = Architecture.model_validate(architecture)
    space = make_space(architecture.space, space_options or {})
    tokens = space.validate_tokens(architecture.tokens)
    # The genotype may carry what tokens cannot (e.g. NASNet-A's hand-listed concat);
    # use it when it describes the same decisions, else derive it from the tokens.
    genotype = architecture.genotype
    if not genotype or space.encode(genotype) != tokens:
        genotype = space.to_genotype(tokens)
    spec = spec or ModelSpec()
    builder = model_builder(architecture.space)
    if builder is None:
        raise ValueError(f"{architecture.space}: no model builder is registered for this space")
    if space.kind == "image":
        if input_shape is None or num_classes is None:
            raise ValueError(f"{architecture.space}: input_shape and num_classes are required")
        return builder(genotype, spec=spec, input_shape=input_shape, num_classes=num_classes)
    if vocab_size is None:
        raise ValueError(f"{architecture.space}: vocab_size is required")
    return builder(genotype, spec=spec, vocab_size=vocab_size)


__all__ = ["BUILDERS", "ModelBuilder", "build_model", "register_builder"]
