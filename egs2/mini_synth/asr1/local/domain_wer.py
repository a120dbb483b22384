#!/usr/bin/env python3
"""WER per domain of the synthesized corpus: where do the systems differ, on the accents and
speaking styles that the labeled set has ("seen") or on those that only the unlabeled audio has
("unseen")?

Usage (from egs2/mini_synth/asr1, after stage 13):
  python3 local/domain_wer.py --corpus_info downloads/mini_synth_seed0/corpus_info.json \\
      --text data/test/text --utt2spk data/test/utt2spk \\
      --decode_dir decode_decode_ctc_greedy_valid.cer_ctc.ave --set test \\
      --system supervised=exp/asr_supervised_raw_char_seed1,exp/asr_supervised_raw_char_seed2 \\
      --system birq_bljust=exp/asr_birq_bljust_raw_char_seed1,exp/asr_birq_bljust_raw_char_seed2 \\
      [--out exp/domain_wer_test.md]

Each speaker belongs to one domain (corpus_info.json: domains.<name>.speakers); the labeled domains
are corpus_info.json's labeled_domains. For every system the table gives the WER (%) of the seen
and of the unseen domains and of each domain, as the mean over the system's runs (with the sample
standard deviation for seen/unseen when there are several runs). Hypotheses come from
<exp>/<decode_dir>/<set>/text; an utterance without a hypothesis counts as all deletions.
Exit status 1 with "ERROR: ..." on bad input.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet_bilevel.data.kaldi_dir import DataError
from espnet_bilevel.data.scoring import read_text, score_texts


def speaker_domains(corpus_info: Path) -> Dict[str, str]:
    try:
        info = json.loads(corpus_info.read_text(encoding="utf-8"))
        return {spk: name for name, d in info["domains"].items() for spk in d["speakers"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{corpus_info}: not a corpus_info.json with domains.<name>.speakers ({e})") from e


def utterance_domains(utt2spk: Path, spk2domain: Dict[str, str]) -> Dict[str, str]:
    out = {}
    for lineno, line in enumerate(utt2spk.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, _, spk = line.partition(" ")
        spk = spk.strip()
        if spk not in spk2domain:
            raise DataError(f"{utt2spk}:{lineno}: speaker '{spk}' of '{utt}' is in no domain of the corpus_info")
        out[utt] = spk2domain[spk]
    return out


def wer(ref: Dict[str, str], hyp: Dict[str, str], utts: List[str]) -> float:
    stats = score_texts({u: ref[u] for u in utts}, hyp)
    return 100.0 * stats.errors / stats.n_ref_tokens


def mean_std(xs: List[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.1f}"
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}"


def table(ref: Dict[str, str], utt2dom: Dict[str, str], seen: List[str],
          systems: Dict[str, List[Path]], decode_dir: str, set_name: str) -> str:
    domains = sorted(set(utt2dom[u] for u in ref), key=lambda d: (d not in seen, d))
    by_dom = {d: [u for u in ref if utt2dom[u] == d] for d in domains}
    seen_utts = [u for u in ref if utt2dom[u] in seen]
    unseen_utts = [u for u in ref if utt2dom[u] not in seen]
    head = ["system", "runs", "seen WER (%)", "unseen WER (%)"] + [
        f"{d}{' (seen)' if d in seen else ''}" for d in domains]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, exps in systems.items():
        cols: Dict[str, List[float]] = {k: [] for k in ["seen", "unseen"] + domains}
        for exp in exps:
            hyp_file = exp / decode_dir / set_name / "text"
            if not hyp_file.is_file():
                raise DataError(f"{hyp_file}: no hypotheses (run stage 12 for {exp})")
            hyp = read_text(hyp_file, allow_empty=True)
            if seen_utts:
                cols["seen"].append(wer(ref, hyp, seen_utts))
            if unseen_utts:
                cols["unseen"].append(wer(ref, hyp, unseen_utts))
            for d in domains:
                cols[d].append(wer(ref, hyp, by_dom[d]))
        cells = [name, str(len(exps))] + [mean_std(cols[k]) if cols[k] else "-" for k in ("seen", "unseen")]
        cells += [f"{statistics.mean(cols[d]):.1f}" for d in domains]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_info", type=Path, required=True)
    p.add_argument("--text", type=Path, required=True, help="reference transcripts of the scored set")
    p.add_argument("--utt2spk", type=Path, required=True)
    p.add_argument("--decode_dir", required=True)
    p.add_argument("--set", dest="set_name", required=True, help="set name under <exp>/<decode_dir>/")
    p.add_argument("--system", action="append", required=True, metavar="NAME=EXP[,EXP...]")
    p.add_argument("--out", type=Path, help="also write the table to this file")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        systems: Dict[str, List[Path]] = {}
        for spec in a.system:
            name, _, dirs = spec.partition("=")
            if not name or not dirs:
                raise DataError(f"--system {spec!r}: expected NAME=EXP[,EXP...]")
            systems[name] = [Path(x) for x in dirs.split(",") if x]
        info = json.loads(a.corpus_info.read_text(encoding="utf-8")) if a.corpus_info.is_file() else None
        if info is None:
            raise DataError(f"{a.corpus_info}: not found (stage 1 writes it next to the synthesized corpus)")
        seen = list(info.get("labeled_domains") or [])
        utt2dom = utterance_domains(a.utt2spk, speaker_domains(a.corpus_info))
        ref = read_text(a.text, allow_empty=False)
        missing = [u for u in ref if u not in utt2dom]
        if missing:
            raise DataError(f"{a.utt2spk}: no speaker for {len(missing)} utterance(s) of {a.text}, e.g. {missing[0]}")
        md = table(ref, utt2dom, seen, systems, a.decode_dir, a.set_name)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(md)
    if a.out:
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(md + "\n", encoding="utf-8")
        tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
