"""Re-average the n-best epoch checkpoints of an existing ESPnet experiment directory.

Works for runs made by espnet_bilevel and by stock ESPnet; it recomputes the
``<phase>.<key>.ave_<n>best.pth`` files (and the ``<phase>.<key>.ave.pth`` symlinks) with
espnet_bilevel.checkpoints.average_nbest, which fixes ESPnet 202511's corrupted averages
for overlapping criteria (see docs/checkpoint_averaging.md).

Usage:

  # Criteria (best_model_criterion) and n (keep_nbest_models) from exp/asr_train/config.yaml,
  # per-epoch values from exp/asr_train/checkpoint.pth:
  python -m espnet_bilevel.bin.average_checkpoints exp/asr_train

  # Explicit criteria (repeatable) and n; config.yaml is then not read:
  python -m espnet_bilevel.bin.average_checkpoints exp/asr_train \\
      --best_model_criterion valid acc max \\
      --best_model_criterion valid loss min \\
      --nbest 10

  # Several n at once, written as ave_5best and ave_10best (ave.pth -> ave_10best):
  python -m espnet_bilevel.bin.average_checkpoints exp/asr_train --nbest 5 10

  # Add a suffix to the output names (valid.acc.ave_10best.rerun.pth):
  python -m espnet_bilevel.bin.average_checkpoints exp/asr_train --suffix rerun

Inputs: ``<exp>/checkpoint.pth`` (its ``"reporter"`` entry, a Reporter state dict), and the
``<exp>/<N>epoch.pth`` files of the selected epochs.  Epochs ESPnet deleted because they were
outside the n-best union are not needed; if a selected epoch file is missing, the error
names it and nothing is written.  Exit status: 0 on success, 1 on a missing or unreadable
input, 2 on bad command-line options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

PROG = "python -m espnet_bilevel.bin.average_checkpoints"


class UsageError(Exception):
    """An expected, user-fixable problem: reported on stderr without a traceback."""


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "exp_dir", type=Path, help="experiment directory with checkpoint.pth and <N>epoch.pth"
    )
    parser.add_argument(
        "--best_model_criterion",
        "--best-model-criterion",
        nargs=3,
        action="append",
        metavar=("PHASE", "KEY", "MODE"),
        default=None,
        help="criterion such as 'valid acc max' (repeatable); default: from config.yaml",
    )
    parser.add_argument(
        "--nbest",
        type=int,
        nargs="+",
        default=None,
        help="number(s) of best epochs to average; default: keep_nbest_models in config.yaml",
    )
    parser.add_argument("--suffix", default=None, help="suffix inserted before .pth")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="training config to read criteria/nbest from; default: <exp_dir>/config.yaml",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="file holding the reporter state; default: <exp_dir>/checkpoint.pth",
    )
    parser.add_argument(
        "--log_level",
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )
    return parser


def load_config(config_path: Path) -> dict:
    import yaml

    if not config_path.is_file():
        raise UsageError(
            f"config file not found: {config_path} (pass --best_model_criterion and --nbest "
            f"to run without it)"
        )
    try:
        with config_path.open(encoding="utf-8") as config_file:
            config = yaml.safe_load(config_file)
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read config file {config_path}: {exc}") from exc
    if not isinstance(config, dict):
        raise UsageError(f"config file {config_path} is not a YAML mapping")
    return config


def criteria_from_config(config: dict, config_path: Path) -> List[List[str]]:
    criteria = config.get("best_model_criterion")
    if not criteria:
        raise UsageError(f"no best_model_criterion in {config_path}")
    if not all(isinstance(c, (list, tuple)) and len(c) == 3 for c in criteria):
        raise UsageError(
            f"best_model_criterion in {config_path} must be a list of [phase, key, min|max]: "
            f"{criteria!r}"
        )
    return [[str(part) for part in criterion] for criterion in criteria]


def nbest_from_config(config: dict, config_path: Path) -> List[int]:
    nbest = config.get("keep_nbest_models")
    if nbest is None:
        raise UsageError(f"no keep_nbest_models in {config_path}; pass --nbest")
    values = [nbest] if isinstance(nbest, int) else nbest
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        raise UsageError(f"keep_nbest_models in {config_path} must be int or list: {nbest!r}")
    return values


def load_reporter(checkpoint_path: Path) -> Any:
    import torch
    from espnet2.train.reporter import Reporter

    if not checkpoint_path.is_file():
        raise UsageError(f"checkpoint file not found: {checkpoint_path}")
    try:
        # The reporter stats hold numpy scalars and timedeltas, hence weights_only=False;
        # mmap avoids reading the whole model/optimizer into memory just for the stats.
        try:
            checkpoint = torch.load(
                checkpoint_path, map_location="cpu", weights_only=False, mmap=True
            )
        except RuntimeError:
            # mmap only works for the zip format; old-format files are loaded normally.
            checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UsageError(f"cannot read checkpoint file {checkpoint_path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or "reporter" not in checkpoint:
        raise UsageError(f"checkpoint file {checkpoint_path} has no 'reporter' entry")
    reporter = Reporter()
    try:
        reporter.load_state_dict(checkpoint["reporter"])
    except (KeyError, TypeError) as exc:
        raise UsageError(
            f"'reporter' entry of {checkpoint_path} is not a Reporter state dict: {exc}"
        ) from exc
    return reporter


def run(args: argparse.Namespace) -> None:
    from espnet_bilevel.checkpoints.average_nbest import (
        CheckpointFileError,
        average_nbest_models,
        select_nbest_epochs,
    )

    exp_dir: Path = args.exp_dir
    if not exp_dir.is_dir():
        raise UsageError(f"experiment directory not found: {exp_dir}")
    config_path = args.config if args.config is not None else exp_dir / "config.yaml"
    checkpoint_path = args.checkpoint if args.checkpoint is not None else exp_dir / "checkpoint.pth"

    criteria = args.best_model_criterion
    nbest = args.nbest
    if criteria is None or nbest is None:
        config = load_config(config_path)
        if criteria is None:
            criteria = criteria_from_config(config, config_path)
        if nbest is None:
            nbest = nbest_from_config(config, config_path)
    for phase, key, mode in criteria:
        if mode not in ("min", "max"):
            raise UsageError(f"criterion {phase} {key} {mode}: mode must be min or max")

    reporter = load_reporter(checkpoint_path)
    selections = select_nbest_epochs(reporter, criteria, nbest)
    if not selections:
        raise UsageError(
            f"none of the criteria {[' '.join(c) for c in criteria]} were reported at epoch "
            f"{reporter.get_epoch()} in {checkpoint_path}"
        )
    for phase, key, _mode in criteria:
        if not any(p == phase and k == key for p, k, _ in selections):
            logging.warning(f"{phase}.{key} is not in the reporter; skipped")

    try:
        average_nbest_models(
            output_dir=exp_dir,
            reporter=reporter,
            best_model_criterion=criteria,
            nbest=nbest,
            suffix=args.suffix,
        )
    except (FileNotFoundError, CheckpointFileError, ValueError) as exc:
        raise UsageError(str(exc)) from exc

    suffix_part = "" if args.suffix is None else f"{args.suffix}."
    for phase, key, per_n in selections:
        for n, epochs in per_n:
            output = exp_dir / f"{phase}.{key}.ave_{n}best.{suffix_part}pth"
            print(f"{output}: epochs {sorted(epochs)}")


def main(cmd: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
