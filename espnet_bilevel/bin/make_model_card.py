#!/usr/bin/env python3
"""Write a Hugging Face model card (README.md) for a trained espnet-bilevel system.

Usage:
  python -m espnet_bilevel.bin.make_model_card --exp exp/asr_bljust_raw_char --system bljust \\
      --out exp/asr_bljust_raw_char/hf_upload/README.md [--repo user/name] [--pack <zip>] \\
      [--train_set train --unlab_set train_unlab --valid_set dev] [--pt_exp exp/asr_pt_raw_char] \\
      [--recipe mini_synth] [--command "run.sh ..."] [--license cc-by-4.0] [--dump_dir dump/raw]

Reads E/config.yaml (model, solver, SSL loss, optimisation), E/steps/epoch*.jsonl (the gamma
schedule that was actually used), E/RESULTS.md (WER/CER tables) and, when present,
<dump_dir>/<set>/utt2num_samples (data sizes). Only the standard
library and PyYAML are needed. Exit status 1 with "ERROR: ..." if E/config.yaml is missing.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_bilevel.solvers import is_joint_solver

SYSTEM_TEXT = {
    "supervised": "supervised-only training on the labeled set (CTC)",
    "ptft": "self-supervised pre-training on the unlabeled set, then supervised fine-tuning (PT+FT)",
    "bestrq_ptft": "BEST-RQ pre-training on the unlabeled set, then supervised fine-tuning (PT+FT)",
    "birq_ptft": "BiRQ pre-training on the unlabeled set, then supervised fine-tuning (PT+FT)",
    "hubert_ptft": "ESPnet's HuBERT pre-training on the unlabeled set, then stock ESPnet fine-tuning "
                   "(PT+FT reference)",
    "just": "JUST: joint training on a weighted sum of the supervised and self-supervised losses",
    "bljust": "BL-JUST: bilevel joint unsupervised and supervised training (penalty-based, rising gamma)",
    "birq_just": "JUST with the BiRQ self-supervised loss: joint training on a weighted sum of CTC and BiRQ",
    "birq_bljust": "BL-JUST with the BiRQ lower level: bilevel joint training, BiRQ below and CTC above",
}


def data_summary(sets: List[tuple], dump: Path = Path("dump/raw")) -> List[str]:
    lines = []
    for role, name in sets:
        if not name:
            continue
        p = dump / name / "utt2num_samples"
        fs_file = dump / name / "fs"
        extra = ""
        if p.is_file():
            fs = int(fs_file.read_text().split()[0]) if fs_file.is_file() else 16000
            nums = [int(line.split()[1]) for line in p.read_text().splitlines() if line.strip()]
            extra = f": {len(nums)} utterances, {sum(nums) / fs / 3600:.2f} h"
        lines.append(f"- {role}: `{name}`{extra}")
    return lines


def gamma_summary(exp: Path, conf: dict) -> List[str]:
    solver_conf = conf.get("solver_conf") or {}
    lines = []
    sched = solver_conf.get("penalty_schedule")
    if sched:
        lines.append(f"- configured schedule: `{sched}` {json.dumps(solver_conf.get('penalty_schedule_conf') or {})}")
    files = sorted((exp / "steps").glob("epoch*.jsonl"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    per_epoch = []
    for f in files:
        gammas, phases = [], {}
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("gamma") is not None:
                gammas.append(float(r["gamma"]))
            phases[r.get("phase", "?")] = phases.get(r.get("phase", "?"), 0) + 1
        if gammas:
            per_epoch.append((f.stem.replace("epoch", ""), min(gammas), max(gammas), phases))
    if per_epoch:
        lines.append("")
        lines.append("| epoch | gamma min | gamma max | steps per phase |")
        lines.append("|---|---|---|---|")
        for ep, lo, hi, ph in per_epoch:
            lines.append(f"| {ep} | {lo:.3g} | {hi:.3g} | {', '.join(f'{k} {v}' for k, v in sorted(ph.items()))} |")
    return lines


def build_card(exp: Path, system: str, repo: str = "", pack: Optional[Path] = None, train_set: str = "",
               unlab_set: str = "", valid_set: str = "", pt_exp: Optional[Path] = None, recipe: str = "",
               command: str = "", license: str = "cc-by-4.0", dump_dir: Path = Path("dump/raw")) -> str:
    cfg_path = exp / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not found (train the system first)")
    conf = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    enc = conf.get("encoder_conf") or {}
    out = [
        "---",
        "tags:",
        "- espnet",
        "- audio",
        "- automatic-speech-recognition",
        "- bilevel-optimization",
        "library_name: espnet",
        f"license: {license}",
        "---",
        "",
        f"# {repo or exp.name}",
        "",
        f"ESPnet ASR model trained with [espnet-bilevel](https://github.com/) recipe `egs2/{recipe or '?'}/asr1`, "
        f"system **{system}**: {SYSTEM_TEXT.get(system, system)}.",
        "",
        "The model is a stock ESPnet `ASRTask` model (`config.yaml` + `model.pth`, exported without the "
        "self-supervised head), so it decodes with plain ESPnet.",
        "",
        "## Data",
        "",
        *data_summary([("labeled training set", train_set), ("unlabeled training set", unlab_set if system != "supervised" else ""),
                       ("validation set", valid_set)], dump_dir),
        "",
        "## Training configuration",
        "",
        f"- encoder: {conf.get('encoder')} ({enc.get('num_blocks', enc.get('encoder_num_layers', '?'))} blocks, "
        f"dim {enc.get('output_size', enc.get('encoder_embed_dim', '?'))}), "
        f"frontend: {conf.get('frontend')} {json.dumps(conf.get('frontend_conf') or {})}",
    ]
    if "solver" in conf:  # trained by espnet_bilevel
        out += [
            f"- solver: `{conf.get('solver')}` {json.dumps(conf.get('solver_conf') or {})}",
            f"- SSL loss: `{conf.get('ssl_loss')}` {json.dumps(conf.get('ssl_loss_conf') or {})}",
            f"- optimizers: {conf.get('optim')} {json.dumps(conf.get('optim_conf') or {})} (lower/SSL level), "
            f"{conf.get('optim2')} {json.dumps(conf.get('optim2_conf') or {})} (upper/supervised level)",
        ]
    else:  # a stock ESPnet ASR config (e.g. the FT half of hubert_ptft)
        out += [
            "- trainer: stock ESPnet `ASRTask` (`espnet2.bin.asr_train`)",
            f"- optimizer: {conf.get('optim')} {json.dumps(conf.get('optim_conf') or {})}",
        ]
    out.append(f"- epochs: {conf.get('max_epoch')}, batch: {conf.get('batch_type')} {conf.get('batch_size')}, "
               f"model selection: {conf.get('best_model_criterion')}")
    if pt_exp is not None and (pt_exp / "config.yaml").is_file():
        pt_conf = yaml.safe_load((pt_exp / "config.yaml").read_text(encoding="utf-8")) or {}
        how = f"solver `{pt_conf['solver']}`" if "solver" in pt_conf else "stock ESPnet task"
        out.append(f"- pre-training run: `{pt_exp}` ({how}, {pt_conf.get('max_epoch')} epochs)")
    if is_joint_solver(conf.get("solver")):  # the penalty (bljust) or weight (weighted_sum) per step
        out += ["", "## Penalty / weight schedule (gamma)", ""]
        g = gamma_summary(exp, conf)
        out += g if g else ["- no per-step log (steps/*.jsonl) found"]
    out += ["", "## Results", ""]
    res = exp / "RESULTS.md"
    if res.is_file():
        body = res.read_text(encoding="utf-8")
        out.append(re.sub(r"^#", "##", body, flags=re.M).strip())
    else:
        out.append("(no RESULTS.md yet)")
    pack_name = pack.name if pack else "<pack>.zip"
    out += [
        "",
        "## Usage",
        "",
        "```python",
        "# files of this repository, e.g. after `git clone` or huggingface_hub.snapshot_download",
        "from espnet2.bin.asr_inference import Speech2Text",
        "import soundfile",
        "# run from the repository root: config.yaml refers to the stats file by a relative path",
        "s2t = Speech2Text(asr_train_config=\"<config.yaml from meta.yaml>\", asr_model_file=\"<model.pth>\",",
        "                  ctc_weight=1.0, beam_size=10, lm_weight=0.0)",
        "speech, rate = soundfile.read(\"utt.wav\")",
        "print(s2t(speech)[0][0])",
        "```",
        "",
        f"The files are the content of `{pack_name}` (made by `espnet2.bin.pack asr`); `meta.yaml` lists "
        "the config and model paths.",
    ]
    if command:
        out += ["", "## Reproduce", "", "```bash", command, "```"]
    return "\n".join(out) + "\n"


def add_card_arguments(p: argparse.ArgumentParser) -> None:
    """The model-card options shared with hf_upload (data sets, PT run, recipe, licence)."""
    p.add_argument("--train_set", default="")
    p.add_argument("--unlab_set", default="")
    p.add_argument("--valid_set", default="")
    p.add_argument("--pt_exp", type=Path, default=None)
    p.add_argument("--recipe", default="")
    p.add_argument("--command", default="")
    p.add_argument("--license", default="cc-by-4.0")
    p.add_argument("--dump_dir", type=Path, default=Path("dump/raw"), help="formatted data dirs (for data sizes)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--system", required=True, choices=sorted(SYSTEM_TEXT))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repo", default="")
    p.add_argument("--pack", type=Path, default=None)
    add_card_arguments(p)
    a = p.parse_args(argv)
    try:
        card = build_card(a.exp, a.system, a.repo, a.pack, a.train_set, a.unlab_set, a.valid_set, a.pt_exp,
                          a.recipe, a.command, a.license, a.dump_dir)
    except FileNotFoundError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(card, encoding="utf-8")
    tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
