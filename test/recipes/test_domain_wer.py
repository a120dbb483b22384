"""egs2/mini_synth/asr1/local/domain_wer.py: WER per corpus domain, seen vs unseen in the labeled set."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import EGS2

SCRIPT = EGS2 / "mini_synth" / "asr1" / "local" / "domain_wer.py"
DEC = "decode_x"


@pytest.fixture
def corpus(tmp_path):
    info = {"domains": {"us": {"speakers": ["us_a"]}, "gb": {"speakers": ["gb_a", "gb_b"]},
                        "car": {"speakers": ["car_a"]}},
            "labeled_domains": ["us", "gb"]}
    (tmp_path / "corpus_info.json").write_text(json.dumps(info))
    refs = {"us_a-1": "ONE TWO THREE FOUR", "gb_a-1": "GO LEFT", "gb_b-1": "RED CAT",
            "car_a-1": "SIX SEVEN EIGHT NINE"}
    (tmp_path / "text").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
    (tmp_path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in refs))
    return tmp_path


def hyp(exp, lines):
    d = exp / DEC / "test"
    d.mkdir(parents=True)
    (d / "text").write_text("".join(f"{line}\n" for line in lines))
    return exp


def run(corpus, *systems, extra=()):
    args = [sys.executable, str(SCRIPT), "--corpus_info", str(corpus / "corpus_info.json"),
            "--text", str(corpus / "text"), "--utt2spk", str(corpus / "utt2spk"), "--decode_dir", DEC,
            "--set", "test", *extra]
    for s in systems:
        args += ["--system", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_seen_unseen_and_per_domain_wer_over_runs(corpus):
    # run 1: one substitution in us (1/4), gb perfect, car all deleted (missing hyp: 4/4)
    r1 = hyp(corpus / "r1", ["us_a-1 ONE TWO THREE FIVE", "gb_a-1 GO LEFT", "gb_b-1 RED CAT"])
    # run 2: everything right but one insertion in gb (1/4 of gb's words) and half of car wrong
    r2 = hyp(corpus / "r2", ["us_a-1 ONE TWO THREE FOUR", "gb_a-1 GO GO LEFT", "gb_b-1 RED CAT",
                             "car_a-1 SIX SEVEN ONE ONE"])
    out = corpus / "table.md"
    proc = run(corpus, f"sys={r1},{r2}", f"one={r2}", extra=["--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "| system | runs | seen WER (%) | unseen WER (%) | gb (seen) | us (seen) | car |"
    # seen = us + gb = 8 words: run 1 1/8, run 2 1/8 -> 12.5 ± 0; unseen: 100 and 50 -> 75.0 ± 35.4
    assert lines[2] == "| sys | 2 | 12.5 ± 0.0 | 75.0 ± 35.4 | 12.5 | 12.5 | 75.0 |"
    assert lines[3] == "| one | 1 | 12.5 | 50.0 | 25.0 | 0.0 | 50.0 |"
    assert out.read_text() == proc.stdout


def test_bad_input_names_the_file(corpus):
    proc = run(corpus, f"sys={corpus / 'nope'}")
    assert proc.returncode == 1
    assert "nope/decode_x/test/text: no hypotheses" in proc.stderr and "Traceback" not in proc.stderr
    (corpus / "utt2spk").write_text("us_a-1 us_a\ngb_a-1 stranger\n")
    proc = run(corpus, f"sys={hyp(corpus / 'r', ['us_a-1 ONE'])}")
    assert proc.returncode == 1
    assert "utt2spk:2: speaker 'stranger' of 'gb_a-1' is in no domain" in proc.stderr
