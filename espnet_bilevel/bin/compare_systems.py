#!/usr/bin/env python3
"""Compare trained systems: one markdown table (WER/CER, wall time, parameters) and PNG plots.

Usage (bilevel_asr.sh stage 16):
  python -m espnet_bilevel.bin.compare_systems \\
      --system supervised=exp/asr_supervised_raw_char --system ptft=exp/asr_ptft_raw_char \\
      --pre_exp ptft=exp/asr_pt_raw_char --system bljust=exp/asr_bljust_raw_char \\
      --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave --test_sets dev test \\
      --valid_set dev --out_dir exp/compare_raw_char

Reads, per system exp dir E:
  E/<decode_dir>/<set>/scoring/result.json   WER/CER (stage 13)
  E/train_wall_seconds                     training wall time measured by the recipe (stage 11)
  E/export/model.pth (else E/<N>epoch.pth) parameter count
  E/checkpoint.pth (reporter) or E/train.log   per-epoch validation cer_ctc and epoch times
  E/steps/epoch*.jsonl                     per-step losses and gamma (BL-JUST plot)
``--pre_exp NAME=DIR`` adds a preceding run (the PT half of PT+FT): its wall time is added and its
epochs come first on the time axis.

Writes <out_dir>/compare.md, compare.json, dev_cer_vs_wall_time.png and (when a bljust system with
steps/*.jsonl is given) bljust_losses.png. Exit status 1 with "ERROR: ..." on missing inputs.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple


class CompareError(Exception):
    pass


def _pair(value: str) -> Tuple[str, Path]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    name, path = value.split("=", 1)
    return name, Path(path)


# ------------------------------------------------------------------------------------ readers


def read_scores(exp: Path, decode_dir: str, sets: List[str]) -> Dict[str, Dict[str, float]]:
    out = {}
    for s in sets:
        p = exp / decode_dir / s / "scoring" / "result.json"
        if not p.is_file():
            raise CompareError(f"{p}: not found (run stage 13 scoring first)")
        r = json.loads(p.read_text(encoding="utf-8"))
        out[s] = {}
        for metric in ("wer", "cer"):
            entry = r.get(metric) or {}
            v = entry.get("sclite") or entry.get("python") or {}
            out[s][metric] = v.get("err")
    return out


def read_wall(exp: Path) -> Optional[float]:
    p = exp / "train_wall_seconds"
    if p.is_file():
        try:
            return float(p.read_text().split()[0])
        except (ValueError, IndexError):
            return None
    return None


def count_params(exp: Path) -> Optional[int]:
    import torch

    candidates = [exp / "export" / "model.pth"] + sorted(exp.glob("*epoch.pth"))
    for p in candidates:
        if p.is_file():
            state = torch.load(p, map_location="cpu", weights_only=False)
            if isinstance(state, dict) and "model" in state and "optimizers" in state:
                state = state["model"]
            return int(sum(v.numel() for v in state.values() if hasattr(v, "numel")))
    return None


_LOG_EPOCH = re.compile(r"(\d+)epoch results: (.*)$")


def _seconds(value) -> float:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


def read_epochs(exp: Path) -> List[Dict[str, float]]:
    """[{epoch, seconds, cer_ctc}] from checkpoint.pth's reporter (fallback: train.log)."""
    ckpt = exp / "checkpoint.pth"
    rows: List[Dict[str, float]] = []
    if ckpt.is_file():
        import torch

        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        stats = (state.get("reporter") or {}).get("stats", {})
        for epoch in sorted(stats):
            e = stats[epoch]
            seconds = sum(_seconds(e[m]["time"]) for m in ("train", "valid") if m in e and "time" in e[m])
            cer = e.get("valid", {}).get("cer_ctc")
            rows.append({"epoch": int(epoch), "seconds": seconds,
                         "cer_ctc": float(cer) if cer is not None else math.nan})
        return rows
    log = exp / "train.log"
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _LOG_EPOCH.search(line)
            if not m:
                continue
            seconds = sum(float(t) for t in re.findall(r"time=([0-9.]+) seconds", m.group(2)))
            cer = re.search(r"\[valid\].*?cer_ctc=([0-9.]+)", m.group(2))
            rows.append({"epoch": int(m.group(1)), "seconds": seconds,
                         "cer_ctc": float(cer.group(1)) if cer else math.nan})
    return rows


def read_steps(exp: Path) -> List[dict]:
    files = sorted((exp / "steps").glob("epoch*.jsonl"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    rows = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


# ------------------------------------------------------------------------------------ outputs


def _fmt(x, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _fmt_params(n: Optional[int]) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def markdown(rows: List[dict], sets: List[str]) -> str:
    head = ["system", "params", "train wall time (s)"]
    for s in sets:
        head += [f"{s} WER (%)", f"{s} CER (%)"]
    lines = ["## Comparison of systems", "",
             "Same data, model and decoding for every system; WER/CER in %, wall time of stage 11 "
             "(for ptft: pre-training + fine-tuning).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["system"], _fmt_params(r["params"]), _fmt(r["wall_seconds"], 0)]
        for s in sets:
            cells += [_fmt(r["scores"][s]["wer"]), _fmt(r["scores"][s]["cer"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_cer_vs_time(curves: Dict[str, List[Tuple[float, float]]], out: Path, valid_set: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        pts = [(t, c) for t, c in pts if not math.isnan(c)]
        if pts:
            ax.plot([t for t, _ in pts], [100 * c for _, c in pts], marker="o", label=name)
    ax.set_xlabel("training time (s, trainer epochs)")
    ax.set_ylabel(f"{valid_set} CER (%, CTC greedy)")
    ax.set_title("Validation CER vs. training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_bljust(steps: List[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(steps) + 1))

    def series(key):
        return [(i, r[key]) for i, r in zip(x, steps) if r.get(key) is not None]

    upper = series("loss_sup") or series("loss_ctc")
    panels = [("upper loss f (supervised)", upper), ("lower loss g (SSL)", series("loss_ssl")),
              ("penalty gamma", series("gamma"))]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    colors = {"lower": "tab:blue", "joint": "tab:purple", "upper": "tab:red"}
    for ax, (title, pts) in zip(axes, panels):
        by_phase: Dict[str, List[Tuple[int, float]]] = {}
        for i, v in pts:
            by_phase.setdefault(steps[i - 1].get("phase", "?"), []).append((i, v))
        for phase, p in by_phase.items():
            ax.plot([a for a, _ in p], [b for _, b in p], ".", ms=3, color=colors.get(phase), label=phase)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[-1].legend(title="phase", fontsize=8)
    axes[-1].set_xlabel("training step")
    fig.suptitle("BL-JUST: upper loss f, lower loss g and gamma over steps")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", type=_pair, action="append", required=True, help="NAME=EXP_DIR (repeatable)")
    p.add_argument("--pre_exp", type=_pair, action="append", default=[], help="NAME=EXP_DIR of a preceding run")
    p.add_argument("--decode_dir", required=True, help="decode dir name inside each exp dir")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--valid_set", default="dev", help="name used on the CER plot's axis")
    p.add_argument("--out_dir", type=Path, required=True)
    a = p.parse_args(argv)
    pre = dict(a.pre_exp)
    try:
        rows, curves = [], {}
        for name, exp in a.system:
            if not exp.is_dir():
                raise CompareError(f"{exp}: experiment dir not found")
            wall = read_wall(exp)
            offset = 0.0
            points: List[Tuple[float, float]] = []
            if name in pre:
                pre_wall = read_wall(pre[name])
                wall = None if wall is None or pre_wall is None else wall + pre_wall
                for e in read_epochs(pre[name]):
                    offset += e["seconds"]
            t = offset
            for e in read_epochs(exp):
                t += e["seconds"]
                points.append((t, e["cer_ctc"]))
            curves[name] = points
            rows.append({"system": name, "exp": str(exp), "params": count_params(exp), "wall_seconds": wall,
                         "scores": read_scores(exp, a.decode_dir, a.test_sets),
                         "curve": points})
    except CompareError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    tmp = a.out_dir.with_name(a.out_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "compare.md").write_text(markdown(rows, a.test_sets) + "\n"
                                    + f"Plots: `{a.out_dir}/dev_cer_vs_wall_time.png`"
                                    + ("" if "bljust" not in dict(a.system) else f", `{a.out_dir}/bljust_losses.png`")
                                    + "\n", encoding="utf-8")
    (tmp / "compare.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    plot_cer_vs_time(curves, tmp / "dev_cer_vs_wall_time.png", a.valid_set)
    systems = dict(a.system)
    if "bljust" in systems:
        steps = read_steps(systems["bljust"])
        if steps:
            plot_bljust(steps, tmp / "bljust_losses.png")
        else:
            print(f"WARNING: {systems['bljust']}/steps/*.jsonl not found; no bljust_losses.png", file=sys.stderr)
    if a.out_dir.exists():
        import shutil

        shutil.rmtree(a.out_dir)
    tmp.rename(a.out_dir)
    print(markdown(rows, a.test_sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
