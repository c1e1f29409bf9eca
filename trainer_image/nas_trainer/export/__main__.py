"""``python -m nas_trainer.export (--model DIR | --trial FILE --untrained) --out DIR``.

Exit codes: 0 written; 2 unusable input (the message names the file and what is wrong).
``kubenas export RUN_DIR`` finds the folder or document in a run folder and runs this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller_policy.contract import TrialDocument
from nas_trainer.datasets.errors import DatasetError
from nas_trainer.export.bundle import clear, copy_vocab, write_bundle
from nas_trainer.export.source import SourceError
from nas_trainer.model_output import SavedModelError, describe, load_model
from nas_trainer.runtime import ConfigError

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nas_trainer.export",
                                     description="Export a found network to run without kubenas.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="DIR",
                        help="a saved model folder (final training's output: model.json, weights.pt)")
    source.add_argument("--trial", type=Path, metavar="FILE",
                        help="a trial document (JSON): its architecture, freshly initialized")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="export folder")
    parser.add_argument("--untrained", action="store_true",
                        help="architecture only: fresh weights instead of the trained ones")
    onnx = parser.add_mutually_exclusive_group()
    onnx.add_argument("--onnx", dest="onnx", action="store_true", default=None,
                      help="also write model.onnx (default: where onnx is installed)")
    onnx.add_argument("--no-onnx", dest="onnx", action="store_false", help="no model.onnx")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.model is not None:
            model, meta = load_model(args.model, trained=not args.untrained)
            vocab = copy_vocab(args.model)
        else:
            if not args.untrained:
                raise SavedModelError(f"{args.trial}: a trial document has no trained weights; "
                                      "add --untrained, or export a saved model with --model")
            from nas_trainer.child import build_child

            doc = TrialDocument.model_validate_json(args.trial.read_text())
            model, data = build_child(doc)
            meta = describe(doc, data)
            vocab = list(data.vocab) if data.kind == "language" else None
        clear(args.out)
        files = write_bundle(model, meta, args.out, vocab, onnx=args.onnx)
    except (SavedModelError, DatasetError, ConfigError, SourceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for file in files:
        print(f"wrote {file} ({file.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
