"""``make demo`` (``python -m nas_operator.demo``): a real NAS search on this machine, now.

Runs ``examples/local-demo.yaml`` — Zoph & Le's REINFORCE controller designing small CNNs for
the bundled 8x8 digits, each child trained by its own trainer process — into ``demo-out/``
with ``kubenas run``, then prints the best architecture and where everything is. A demo
interrupted with Ctrl-C resumes where it stopped; a finished one starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from nas_operator.local.output import RunFolder
from nas_operator.local.runner import EXIT_BAD_INPUT, RunOptions, run
from nas_operator.local.summary import load_summary

DEMO_NAME = "local-demo"


def find_example(name: str = DEMO_NAME) -> Path | None:
    """examples/<name>.yaml from the current directory or from this source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "examples" / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas_operator.demo",
                                     description="Run the local demo search.")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR")
    parser.add_argument("--search", type=Path, default=None, metavar="SEARCH.yaml",
                        help="another search to demo (default: examples/local-demo.yaml)")
    args = parser.parse_args(argv)
    console = Console(soft_wrap=True)
    search = args.search or find_example()
    if search is None:
        console.print("error: examples/local-demo.yaml not found; run the demo from the kubenas "
                      "source directory (make demo)", highlight=False)
        return EXIT_BAD_INPUT
    folder = RunFolder(args.out)
    options = RunOptions(search_file=search, out=args.out)
    if folder.is_run():
        summary = load_summary(folder)
        if summary.finished:
            console.print(f"{folder.root} holds a finished demo; starting a new one",
                          highlight=False)
            shutil.rmtree(folder.root)
        else:
            options = RunOptions(resume=args.out)
    code = run(options, console)
    best = folder.read_best()
    if best is not None and code in (0, 1):
        console.print()
        console.print("[bold]The best architecture found[/bold] (best.json, readable genotype):")
        console.print_json(json.dumps(best["architecture"]["genotype"]), indent=None)
        console.print(f"reward {best['reward']:.4g} from metrics "
                      + ", ".join(f"{k}={v:.4g}" for k, v in best["metrics"].items()
                                  if k in ("val_accuracy", "val_loss", "params")),
                      highlight=False)
        console.print(f"\npicture of it:      {folder.best_png.resolve()}\n"
                      f"reward per trial:   {folder.rewards_png.resolve()}\n"
                      f"every trial:        {folder.trials_csv.resolve()}\n"
                      f"summary again:      kubenas show {folder.root}", highlight=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
