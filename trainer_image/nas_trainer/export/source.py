"""A readable, self-contained PyTorch module file for an exported network (no kubenas import).

The file states the architecture (space, genotype, model settings) and the input
contract at the top, declares every parameter and buffer under the trainer's own
``state_dict`` names (so ``weights.pt`` loads as is), and runs the forward pass as
the traced operator graph of ``nas_trainer.export.program``: one line per
operation, named after the layer it belongs to. Common ATen operators are written
as the ``torch``/``torch.nn.functional`` call that is the same operator; the rest
stay ``torch.ops.aten.*``. Only ``torch`` is imported.
"""

from __future__ import annotations

import pprint
import re
from typing import Any

import torch
from torch.export.graph_signature import InputKind

SAME_OPERATOR = {
    "relu.default": "torch.relu",
    "conv2d.default": "torch.conv2d",
    "batch_norm.default": "torch.batch_norm",
    "cat.default": "torch.cat",
    "stack.default": "torch.stack",
    "add.Tensor": "torch.add",
    "sub.Tensor": "torch.sub",
    "mul.Tensor": "torch.mul",
    "sigmoid.default": "torch.sigmoid",
    "tanh.default": "torch.tanh",
    "flatten.using_ints": "torch.flatten",
    "dropout.default": "torch.dropout",
    "embedding.default": "torch.embedding",
    "select.int": "torch.select",
    "chunk.default": "torch.chunk",
    "max_pool2d.default": "torch.max_pool2d",
    "constant_pad_nd.default": "torch.constant_pad_nd",
    "linear.default": "F.linear",
    "avg_pool2d.default": "F.avg_pool2d",
}
"""ATen overload -> the public binding of that very operator (same positional arguments)."""
_ATEN_CALL = re.compile(r"torch\.ops\.aten\.(\w+\.\w+)\(")
_RELEASE = re.compile(r";  (?:\w+ = )+None$")
"""The tracer's ``x = None`` memory releases at the end of a line: noise for a reader."""


class SourceError(RuntimeError):
    """The traced graph uses something a plain-torch file cannot express."""


def graph_function(program: torch.export.ExportedProgram) -> tuple[str, list[str], list[str]]:
    """(source of ``_graph(w, inputs...)``, the state_dict names it reads, its input names).

    Parameters and buffers are read as ``w["stem.0.weight"]`` (their state_dict names)."""
    code = program.graph_module.graph.python_code(root_module="self")
    src = code.src.strip("\n")
    unknown = sorted(name for name in set(code.globals) - {"torch", "inf", "nan", "device"}
                     if re.search(rf"\b{name}\b", src))
    if unknown or "self." in src.split("\n", 1)[1]:
        raise SourceError(f"the traced graph needs {unknown or 'module attributes'}; "
                          "it cannot be written as a plain torch file")
    state: dict[str, str] = {}
    user: list[str] = []
    for spec in program.graph_signature.input_specs:
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            state[spec.arg.name] = str(spec.target)
        elif spec.kind == InputKind.USER_INPUT:
            user.append(spec.arg.name)
        else:
            raise SourceError(f"graph input {spec.arg.name!r} of kind {spec.kind.name} is not a "
                              "parameter, buffer or input")
    lines = src.split("\n")
    if not lines[0].startswith("def forward(self, "):
        raise SourceError(f"unexpected graph header {lines[0]!r}")
    lines[0] = f"def _graph(w: dict[str, torch.Tensor], {', '.join(user)}):"
    by_name = re.compile(r"\b(" + "|".join(map(re.escape, state)) + r")\b") if state else None
    body = []
    for line in lines[1:]:
        line = _RELEASE.sub("", _ATEN_CALL.sub(_public_call, line)).rstrip()
        if by_name is not None:
            line = by_name.sub(lambda m: f"w[{state[m.group(1)]!r}]", line)
        body.append(line)
    return "\n".join([lines[0], *body]), list(state.values()), user


def _public_call(match: re.Match[str]) -> str:
    return SAME_OPERATOR.get(match.group(1), match.group(0)[:-1]) + "("


def _literal(value: Any) -> str:
    return pprint.pformat(value, indent=1, width=96, compact=True, sort_dicts=False)


def render_source(program: torch.export.ExportedProgram, model: torch.nn.Module,
                  meta: dict[str, Any]) -> str:
    """The module file for ``program`` (traced from ``model``, described by ``meta``)."""
    graph, state_names, _ = graph_function(program)
    named = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    parameters = {n: tuple(named[n].shape) for n in state_names if n in named}
    buffer_specs = {n: (tuple(buffers[n].shape), str(buffers[n].dtype).removeprefix("torch."))
                    for n in state_names if n in buffers}
    missing = [n for n in state_names if n not in parameters and n not in buffer_specs]
    if missing:
        raise SourceError(f"graph state {missing} is neither a parameter nor a buffer of the model")
    # state_dict entries the graph does not read (a tied copy, the unused auxiliary head) are
    # still declared, so that weights.pt loads strictly
    for name, tensor in named.items():
        parameters.setdefault(name, tuple(tensor.shape))
    for name, tensor in buffers.items():
        buffer_specs.setdefault(name, (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")))
    arch = meta["architecture"]
    inp = meta["input"]
    language = inp["kind"] == "language"
    head = _docstring(meta, language)
    consts = [
        f"SPACE = {arch['space']!r}",
        f"TOKENS = {list(arch.get('tokens') or [])!r}",
        f"GENOTYPE = {_literal(arch.get('genotype'))}",
        f"SPACE_OPTIONS = {_literal(meta.get('spaceOptions') or {})}",
        f"MODEL_SETTINGS = {_literal(meta.get('model') or {})}",
        f"INPUT = {_literal(inp)}",
    ]
    if language:
        hidden = model.init_hidden(1)
        consts.append(f"STATE_SHAPES = {[tuple(h.shape) for h in hidden]!r}"
                      "  # per state tensor: [layers, batch (1 here), hidden]")
    consts += [
        f"PARAMETERS = {_literal(parameters)}",
        f"BUFFERS = {_literal(buffer_specs)}",
        'WEIGHTS = Path(__file__).with_name("weights.pt")',
    ]
    return "\n".join([
        head,
        "from __future__ import annotations",
        "",
        "from math import inf, nan  # noqa: F401 - the graph may use them",
        "from pathlib import Path",
        "",
        "import torch",
        "import torch.nn.functional as F  # noqa: F401",
        "from torch import nn",
        "",
        "device = torch.device",
        *consts,
        "",
        "",
        "# The forward pass, traced by torch.export in eval mode (" +
        ("one time step" if language else "any batch size") + ").",
        "# fmt: off",
        graph,
        "# fmt: on",
        "",
        "",
        _MODULE_LANGUAGE if language else _MODULE_IMAGE,
        _LOADER,
    ])


def _docstring(meta: dict[str, Any], language: bool) -> str:
    arch, inp = meta["architecture"], meta["input"]
    if language:
        contract = (
            f"Input: token ids [batch, time] (vocabulary of {inp['vocabSize']}, see vocab.txt) "
            "and optionally the state from\n``init_state`` or a previous call; output: logits "
            f"[batch, time, {inp['vocabSize']}] and the new state."
        )
    else:
        c, h, w = inp["shape"]
        contract = (
            f"Input: float images [batch, {c}, {h}, {w}]: pixel values times {inp['scale']:.6g}, "
            "then per channel\nminus INPUT['mean'] and divided by INPUT['std'] (use "
            f"``normalize``); output: logits [batch, {inp['numClasses']}]."
        )
    genotype = _literal(arch.get("genotype")).replace("\n", "\n    ")
    return f'''"""{meta.get('trial', 'model')} of search {meta.get('search', '?')}: a {arch['space']} network found by kubenas.

Written by ``kubenas export``; needs only PyTorch (no kubenas). {contract}

    import model                  # this file, next to weights.pt
    net = model.load()            # the network in eval mode with the trained weights
    net = model.load(weights=None)  # the same architecture, freshly initialized

Architecture ({arch['space']}, model settings in MODEL_SETTINGS):

    {genotype}
"""
'''


_MODULE_IMAGE = '''class Network(nn.Module):
    """The found network: parameters under the trainer's names, forward as the traced graph."""

    def __init__(self) -> None:
        super().__init__()
        _declare(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = _graph(_state(self), x)
        return logits


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels (uint8 or float as stored) [batch, C, H, W] -> the network's input."""
    mean = torch.tensor(INPUT["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(INPUT["std"]).view(1, -1, 1, 1)
    return (images.float() * INPUT["scale"] - mean) / std
'''

_MODULE_LANGUAGE = '''class Network(nn.Module):
    """The found language model: parameters under the trainer's names; each time step runs
    the traced graph."""

    def __init__(self) -> None:
        super().__init__()
        _declare(self)

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """The zero state: one tensor [layers, batch, hidden] per state part."""
        return tuple(torch.zeros(s[0], batch_size, *s[2:]) for s in STATE_SHAPES)

    def forward(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if state is None:
            state = self.init_state(tokens.shape[0])
        weights = _state(self)
        steps = []
        for t in range(tokens.shape[1]):
            logits, *new_state = _graph(weights, tokens[:, t : t + 1], *state)
            state = tuple(new_state)
            steps.append(logits)
        return torch.cat(steps, dim=1), state
'''

_LOADER = '''

def _declare(module: nn.Module) -> None:
    """Create every parameter and buffer at its dotted state_dict name."""
    for name, shape in PARAMETERS.items():
        owner, leaf = _owner(module, name)
        owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    for name, (shape, dtype) in BUFFERS.items():
        owner, leaf = _owner(module, name)
        owner.register_buffer(leaf, torch.zeros(shape, dtype=getattr(torch, dtype)))


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    for part in path:
        if part not in module._modules:
            module.add_module(part, nn.Module())
        module = module._modules[part]
    return module, leaf


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by state_dict name, as _graph reads them."""
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    return tensors


def load(weights: str | Path | None = WEIGHTS) -> Network:
    """The network in eval mode, with ``weights`` (a state_dict file) loaded unless None."""
    net = Network()
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        _initialize(net)
    return net.eval()


def _initialize(net: Network) -> None:
    """Fresh weights for the architecture alone: He-normal convolutions and matrices, unit
    BatchNorm scales, zero biases."""
    for name, p in net.named_parameters():
        if p.dim() > 1:
            nn.init.kaiming_normal_(p)
        elif name.endswith("weight"):
            nn.init.ones_(p)
        else:
            nn.init.zeros_(p)
    for name, b in net.named_buffers():
        if name.endswith("running_var"):
            nn.init.ones_(b)
'''
