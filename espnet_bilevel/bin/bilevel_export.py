#!/usr/bin/env python3
"""Export a trained bilevel model as a stock ESPnet ASR model (no SSL head, ``model: espnet``).

The exported ``config.yaml`` + ``model.pth`` load with plain ``ASRTask``, so ESPnet's own tools
work on them unchanged: ``espnet2.bin.asr_inference`` (beam search, CTC or joint CTC/attention,
LM), ``espnet2.bin.pack asr`` and ``Speech2Text.from_pretrained``.

Usage:
  python -m espnet_bilevel.bin.bilevel_export \\
      --train_config exp/bljust/config.yaml \\
      --model_file exp/bljust/valid.cer_ctc.ave.pth \\
      --output_dir exp/bljust/export

  # then, e.g.
  python -m espnet2.bin.asr_inference --asr_train_config exp/bljust/export/config.yaml \\
      --asr_model_file exp/bljust/export/model.pth --ctc_weight 1.0 --beam_size 10 ...
  python -m espnet2.bin.pack asr --asr_train_config exp/bljust/export/config.yaml \\
      --asr_model_file exp/bljust/export/model.pth --option exp/asr_stats/train/feats_stats.npz \\
      --outpath exp/bljust/bljust_packed.zip

The export checks itself: the stock model built from the exported config must accept the
exported weights with ``strict=True`` (ESPnet loads with strict=False, which would hide a
mismatch).  Files are written atomically.

A stock ESPnet ASR experiment (``espnet2.bin.asr_train``, e.g. the fine-tuning half of the
recipe's hubert_ptft system) exports the same way: its config has no bilevel-only options and its
weights no SSL head, so the export is a checked copy (only the bookkeeping keys ESPnet adds to a
saved config, such as ``version``, are dropped), and stage 12 treats every system alike.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import yaml

SSL_PREFIX = "ssl_loss."


class ExportError(RuntimeError):
    pass


def _asr_option_names():
    from espnet2.tasks.asr import ASRTask

    parser = ASRTask.get_parser()
    return {a.dest for a in parser._actions}


def export_config(train_config: dict) -> dict:
    """Keep only options stock ASRTask knows; the bilevel-only ones (solver, ssl_loss, the
    unlabeled stream, optim2, ...) are dropped, and the model is the stock ``espnet`` one."""
    known = _asr_option_names()
    out = {k: v for k, v in train_config.items() if k in known}
    out["model"] = "espnet"
    return out


def export_state_dict(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(SSL_PREFIX)}


def _atomic_write(path: Path, write_fn):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; exported models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export(train_config: Path, model_file: Path, output_dir: Path) -> Path:
    import torch
    from espnet2.tasks.asr import ASRTask

    for p, what in ((train_config, "--train_config"), (model_file, "--model_file")):
        if not Path(p).exists():
            raise ExportError(f"{what}: file not found: {p}")
    with open(train_config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict):
        raise ExportError(f"{train_config}: not a YAML mapping")
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt or truncated file
        raise ExportError(f"{model_file}: cannot load ({e})") from None
    if isinstance(state, dict) and "model" in state and "optimizers" in state:
        state = state["model"]  # a checkpoint.pth was given
    asr_conf = export_config(conf)
    asr_state = export_state_dict(state)

    # self-check: the stock task builds the model and accepts every weight
    model = ASRTask.build_model(argparse.Namespace(**{**_defaults(), **asr_conf}))
    missing, unexpected = model.load_state_dict(asr_state, strict=False)
    if missing or unexpected:
        raise ExportError(
            f"exported weights do not match the stock model: missing={list(missing)[:5]} "
            f"unexpected={list(unexpected)[:5]}"
        )

    output_dir = Path(output_dir)
    _atomic_write(
        output_dir / "config.yaml",
        lambda tmp: open(tmp, "w", encoding="utf-8").write(
            yaml.safe_dump(asr_conf, sort_keys=False, allow_unicode=True)
        ),
    )
    _atomic_write(output_dir / "model.pth", lambda tmp: torch.save(asr_state, tmp))
    n_removed = len(state) - len(asr_state)
    kind = "bilevel" if "solver" in conf else "stock ESPnet"
    logging.info(
        f"exported {len(asr_state)} tensors of a {kind} model ({n_removed} SSL-head tensors dropped)"
        f" to {output_dir}"
    )
    return output_dir


def _defaults() -> dict:
    from espnet2.tasks.asr import ASRTask

    return vars(ASRTask.get_parser().parse_args(["--token_list", "dummy"]))


def get_parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train_config", required=True, type=Path)
    p.add_argument("--model_file", required=True, type=Path)
    p.add_argument("--output_dir", required=True, type=Path)
    return p


def main(cmd=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    try:
        export(args.train_config, args.model_file, args.output_dir)
    except ExportError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
