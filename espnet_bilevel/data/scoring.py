"""WER/CER scoring: our own alignment, sclite ``trn`` files, optional sclite run, result files.

Conventions (chosen to agree with ESPnet's ``asr.sh`` stage 13 and with sclite):

* Texts are Kaldi ``text`` files ``<utt> <transcript>``. Scoring is case-sensitive and does no
  normalisation besides collapsing whitespace; sclite is run with ``-s`` (case-sensitive) so both
  scorers compare the same tokens.
* Word tokens are whitespace-separated words. Character tokens are the characters of the
  transcript with each space written as ``<space>``, exactly what ESPnet's char tokenizer produces,
  so spaces count in the CER as they do in ``asr.sh``.
* The alignment is a Levenshtein alignment: it first minimises the number of errors (so the
  error total is the edit distance), and among those alignments it minimises sclite's default
  weights (substitution 4, insertion 3, deletion 3), which fixes the Sub/Del/Ins split the way
  sclite reports it (checked against sclite on random data in test_scoring.py). Weights alone are
  not enough: 3 substitutions and 2 deletions + 2 insertions both cost 12, with 3 vs 4 errors.
* A reference utterance without a hypothesis is scored against an empty hypothesis (all
  deletions) and listed as missing; hypotheses without a reference are ignored and counted.
* trn lines are ``<tokens> (<spk>-<utt>)`` as asr.sh writes them (speaker from utt2spk).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_bilevel.data.kaldi_dir import DataError, atomic_write_lines, atomic_write_text, read_table_lines

SUB_COST, INS_COST, DEL_COST = 4, 3, 3
SPACE_TOKEN = "<space>"
SCLITE_PATHS = ("/usr/lib/sctk/bin/sclite",)


@dataclass
class ErrorStats:
    """Token and sentence error counts of one scoring run."""

    n_sentences: int = 0
    n_ref_tokens: int = 0
    correct: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    sentence_errors: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def add(self, corr: int, sub: int, dele: int, ins: int) -> None:
        self.n_sentences += 1
        self.n_ref_tokens += corr + sub + dele
        self.correct += corr
        self.substitutions += sub
        self.deletions += dele
        self.insertions += ins
        self.sentence_errors += int(sub + dele + ins > 0)

    def percentages(self) -> Dict[str, float]:
        """Corr/Sub/Del/Ins/Err as % of reference tokens, S.Err as % of sentences (sclite style)."""
        n = self.n_ref_tokens

        def pct(x: int, d: int) -> float:
            return round(100.0 * x / d, 2) if d else (0.0 if x == 0 else float("inf"))

        return {
            "corr": pct(self.correct, n),
            "sub": pct(self.substitutions, n),
            "del": pct(self.deletions, n),
            "ins": pct(self.insertions, n),
            "err": pct(self.errors, n),
            "sent_err": pct(self.sentence_errors, self.n_sentences),
        }


# ---------------------------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------------------------


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """Align two token sequences; returns ops ``(kind, ref_token, hyp_token)`` in order.

    ``kind`` is ``C`` (correct), ``S`` (substitution), ``D`` (deletion: ref token missing in the
    hypothesis) or ``I`` (insertion). Dynamic programming over sclite's weights; O(len(ref) *
    len(hyp)) time and memory.
    """
    n, m = len(ref), len(hyp)
    # Lexicographic cost (errors, sclite weight) packed into one integer: each error adds BIG,
    # and BIG exceeds any possible total weight, so the error count always dominates.
    big = SUB_COST * (n + m) + 1
    sub_cost, del_cost, ins_cost = big + SUB_COST, big + DEL_COST, big + INS_COST
    # cost[i][j]: best cost aligning ref[:i] with hyp[:j]; back[i][j]: the last op on that path.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [bytearray(m + 1) for _ in range(n + 1)]
    C, S, D, I = 0, 1, 2, 3
    for j in range(1, m + 1):
        cost[0][j] = j * ins_cost
        back[0][j] = I
    for i in range(1, n + 1):
        cost[i][0] = i * del_cost
        back[i][0] = D
        row, prev = cost[i], cost[i - 1]
        brow = back[i]
        r = ref[i - 1]
        for j in range(1, m + 1):
            if r == hyp[j - 1]:
                best, op = prev[j - 1], C
            else:
                best, op = prev[j - 1] + sub_cost, S
            c = prev[j] + del_cost
            if c < best:
                best, op = c, D
            c = row[j - 1] + ins_cost
            if c < best:
                best, op = c, I
            row[j] = best
            brow[j] = op
    ops: List[Tuple[str, Optional[str], Optional[str]]] = []
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i][j]
        if op in (C, S):
            ops.append(("C" if op == C else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif op == D:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


def edit_counts(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[int, int, int, int]:
    """Return ``(correct, substitutions, deletions, insertions)`` of the alignment."""
    counts = {"C": 0, "S": 0, "D": 0, "I": 0}
    for kind, _, _ in align(ref, hyp):
        counts[kind] += 1
    return counts["C"], counts["S"], counts["D"], counts["I"]


def word_tokens(text: str) -> List[str]:
    return text.split()


def char_tokens(text: str) -> List[str]:
    """Characters with spaces as ``<space>`` (ESPnet char tokenizer); whitespace runs collapse."""
    return [SPACE_TOKEN if ch == " " else ch for ch in " ".join(text.split())]


TOKENIZERS = {"word": word_tokens, "char": char_tokens}


def error_rate(ref: str, hyp: str, unit: str = "word") -> float:
    """Error rate of one hypothesis string against one reference string (0.0-..., not %)."""
    tok = TOKENIZERS[unit]
    r = tok(ref)
    _, s, d, i = edit_counts(r, tok(hyp))
    if not r:
        raise DataError("error_rate: empty reference")
    return (s + d + i) / len(r)


def wer(ref: str, hyp: str) -> float:
    return error_rate(ref, hyp, "word")


def cer(ref: str, hyp: str) -> float:
    return error_rate(ref, hyp, "char")


def score_texts(ref: Mapping[str, str], hyp: Mapping[str, str], unit: str = "word") -> ErrorStats:
    """Accumulate error counts over all reference utterances (missing hyp = empty hyp)."""
    tok = TOKENIZERS[unit]
    stats = ErrorStats()
    for utt in ref:
        stats.add(*edit_counts(tok(ref[utt]), tok(hyp.get(utt, ""))))
    return stats


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def read_text(path: Path, allow_empty: bool) -> Dict[str, str]:
    """Read a Kaldi text file; hypothesis files may have empty transcripts."""
    texts: Dict[str, str] = {}
    for lineno, utt, transcript in read_table_lines(path):
        if not transcript and not allow_empty:
            raise DataError(f"{path}:{lineno}: empty reference transcript for utterance '{utt}'")
        texts[utt] = transcript
    return texts


def write_trn(path: Path, texts: Mapping[str, str], unit: str, utt2spk: Optional[Mapping[str, str]] = None,
              ids: Optional[Sequence[str]] = None) -> None:
    """Write an sclite trn file ``<tokens> (<spk>-<utt>)`` for ``ids`` (default: all of texts)."""
    tok = TOKENIZERS[unit]
    lines = []
    for utt in ids if ids is not None else texts:
        spk = (utt2spk or {}).get(utt)
        label = f"{spk}-{utt}" if spk else utt
        lines.append(f"{' '.join(tok(texts.get(utt, '')))} ({label})")
    atomic_write_lines(path, lines)


def find_sclite() -> Optional[List[str]]:
    """Command prefix for sclite: PATH, Debian's /usr/lib/sctk/bin/sclite, or ``sctk sclite``."""
    exe = shutil.which("sclite")
    if exe:
        return [exe]
    for candidate in SCLITE_PATHS:
        if os.access(candidate, os.X_OK):
            return [candidate]
    sctk = shutil.which("sctk")
    if sctk:
        return [sctk, "sclite"]
    return None


_SUM_COUNTS = re.compile(r"^\s*\|\s*Sum\s*\|([^|]*)\|([^|]*)\|\s*$")
_SUM_AVG = re.compile(r"^\s*\|\s*Sum/Avg\s*\|([^|]*)\|([^|]*)\|\s*$")


def parse_sclite_summary(report: str) -> Dict[str, float]:
    """Parse sclite's ``-o all`` report: counts from the ``Sum`` row, % from ``Sum/Avg``."""
    counts = percents = None
    for line in report.splitlines():
        m = _SUM_AVG.match(line)
        if m:
            percents = (m.group(1).split(), m.group(2).split())
            continue
        m = _SUM_COUNTS.match(line)
        if m:
            counts = (m.group(1).split(), m.group(2).split())
    if percents is None or counts is None:
        raise DataError("could not find the Sum/Avg and Sum lines in the sclite report")
    (n_snt, n_wrd), pct = percents
    _, cnt = counts
    keys = ("corr", "sub", "del", "ins", "err", "sent_err")
    result: Dict[str, float] = {"n_sentences": int(n_snt), "n_ref_tokens": int(n_wrd)}
    result.update({k: float(v) for k, v in zip(keys, pct)})
    result.update({f"n_{k}": int(v) for k, v in zip(keys, cnt)})
    return result


def run_sclite(ref_trn: Path, hyp_trn: Path, report_path: Path, sclite_cmd: Optional[List[str]] = None) -> Dict[str, float]:
    """Run sclite on two trn files, save its report to ``report_path``, return the parsed summary."""
    cmd = sclite_cmd or find_sclite()
    if not cmd:
        raise DataError("sclite not found (install the Debian package: apt-get install sctk)")
    full = cmd + ["-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-s", "-e", "utf-8",
                  "-o", "all", "stdout"]
    proc = subprocess.run(full, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise DataError(f"sclite failed (exit {proc.returncode}) on {hyp_trn}: {proc.stderr.strip()[-500:]}")
    atomic_write_text(report_path, proc.stdout)
    return parse_sclite_summary(proc.stdout)


def score(
    ref_text: Path,
    hyp_text: Path,
    out_dir: Path,
    utt2spk: Optional[Path] = None,
    use_sclite: bool = True,
    units: Sequence[str] = ("word", "char"),
) -> Dict:
    """Score a hypothesis text file against a reference text file and write the results.

    Writes ``out_dir/score_{wer,cer}/{ref.trn,hyp.trn[,sclite.txt]}``, ``out_dir/result.json`` and
    ``out_dir/result.txt``; returns the result dict (also the content of result.json). The
    pure-Python score is always computed; sclite runs too when found and ``use_sclite``.
    """
    ref_text, hyp_text, out_dir = Path(ref_text), Path(hyp_text), Path(out_dir)
    ref = read_text(ref_text, allow_empty=False)
    hyp = read_text(hyp_text, allow_empty=True)
    spk = {u: s for _, u, s in read_table_lines(utt2spk)} if utt2spk else None
    missing = [u for u in ref if u not in hyp]
    extra = [u for u in hyp if u not in ref]
    ids = list(ref)
    sclite_cmd = find_sclite() if use_sclite else None
    result: Dict = {
        "ref": str(ref_text),
        "hyp": str(hyp_text),
        "n_utts": len(ref),
        "n_missing_hyps": len(missing),
        "missing_hyps": missing[:20],
        "n_extra_hyps": len(extra),
        "sclite": bool(sclite_cmd),
    }
    for unit in units:
        metric = {"word": "wer", "char": "cer"}[unit]
        stats = score_texts(ref, hyp, unit)
        entry = {"python": {**asdict(stats), "errors": stats.errors, **stats.percentages()}}
        sub_dir = out_dir / f"score_{metric}"
        write_trn(sub_dir / "ref.trn", ref, unit, spk, ids)
        write_trn(sub_dir / "hyp.trn", hyp, unit, spk, ids)
        if sclite_cmd:
            entry["sclite"] = run_sclite(sub_dir / "ref.trn", sub_dir / "hyp.trn", sub_dir / "sclite.txt", sclite_cmd)
        result[metric] = entry
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out_dir / "result.txt", format_result(result))
    return result


def format_result(result: Mapping) -> str:
    """Human-readable summary of a :func:`score` result."""
    lines = [f"ref: {result['ref']}", f"hyp: {result['hyp']}",
             f"utterances: {result['n_utts']}  missing hypotheses (scored as deletions): {result['n_missing_hyps']}"
             f"  hypotheses without reference (ignored): {result['n_extra_hyps']}"]
    if result["missing_hyps"]:
        lines.append("missing: " + " ".join(result["missing_hyps"]) + (" ..." if result["n_missing_hyps"] > 20 else ""))
    lines.append(f"{'metric':<6} {'scorer':<7} {'#Snt':>6} {'#Tok':>8} {'Corr':>6} {'Sub':>6} {'Del':>6} "
                 f"{'Ins':>6} {'Err':>6} {'S.Err':>6}")
    for metric in ("wer", "cer"):
        if metric not in result:
            continue
        for scorer, v in result[metric].items():
            lines.append(f"{metric.upper():<6} {scorer:<7} {v['n_sentences']:>6} {v['n_ref_tokens']:>8} "
                         f"{v['corr']:>6.1f} {v['sub']:>6.1f} {v['del']:>6.1f} {v['ins']:>6.1f} "
                         f"{v['err']:>6.1f} {v['sent_err']:>6.1f}")
    return "\n".join(lines) + "\n"


def results_markdown(results: Mapping[str, Mapping], metric: str = "wer", scorer: str = "python") -> str:
    """Render ``{name: result_dict}`` as an ESPnet RESULTS.md-style markdown table.

    ``scorer`` "python" or "sclite" (falls back to python where sclite did not run).
    """
    header = f"### {metric.upper()}\n\n|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|"
    rows = [header]
    for name, result in results.items():
        entry = result[metric]
        v = entry.get(scorer) or entry["python"]
        rows.append(f"|{name}|{v['n_sentences']}|{v['n_ref_tokens']}|{v['corr']:.1f}|{v['sub']:.1f}|"
                    f"{v['del']:.1f}|{v['ins']:.1f}|{v['err']:.1f}|{v['sent_err']:.1f}|")
    return "\n".join(rows) + "\n"
