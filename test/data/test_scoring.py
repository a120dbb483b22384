from __future__ import annotations

import json
import random

import pytest
from data_test_utils import write_lines

from espnet_bilevel.data.kaldi_dir import DataError
from espnet_bilevel.data.scoring import (
    align,
    cer,
    char_tokens,
    edit_counts,
    find_sclite,
    parse_sclite_summary,
    results_markdown,
    score,
    score_texts,
    wer,
)

needs_sclite = pytest.mark.skipif(find_sclite() is None, reason="sclite (Debian sctk) not installed")


@pytest.mark.parametrize(
    "ref, hyp, expected",
    [
        ("a b c d", "a b c d", (4, 0, 0, 0)),
        ("a b c d", "a x c", (2, 1, 1, 0)),  # b->x substituted, d deleted
        ("a b", "a b c d", (2, 0, 0, 2)),  # two insertions
        ("a b c", "", (0, 0, 3, 0)),
        ("", "x y", (0, 0, 0, 2)),
        ("the cat sat", "cat sat on", (2, 0, 1, 1)),  # shift: delete 'the', insert 'on'
    ],
)
def test_edit_counts_hand_computed(ref, hyp, expected):
    assert edit_counts(ref.split(), hyp.split()) == expected


def test_alignment_ops():
    assert align(["a", "b", "c"], ["a", "x", "c", "d"]) == [
        ("C", "a", "a"), ("S", "b", "x"), ("C", "c", "c"), ("I", None, "d")]


def test_prefers_fewest_errors_over_sclite_weight_ties():
    # 3 substitutions (weight 12, 3 errors) vs 2 del + 2 ins (weight 12, 4 errors).
    ref, hyp = "a b c x".split(), "b c y z".split()
    c, s, d, i = edit_counts(ref, hyp)
    assert s + d + i == 3


def test_wer_cer_values():
    assert wer("a b c d", "a x c") == pytest.approx(2 / 4)
    assert char_tokens("ab  cd") == ["a", "b", "<space>", "c", "d"]
    # ref a b <space> c d, hyp a b <space> d: one deletion of 5 characters
    assert cer("ab cd", "ab d") == pytest.approx(1 / 5)
    assert cer("abc", "abd") == pytest.approx(1 / 3)
    with pytest.raises(DataError):
        wer("", "x")


def test_score_texts_missing_is_deletion():
    stats = score_texts({"u1": "a b", "u2": "c d e"}, {"u1": "a b"})
    assert (stats.n_ref_tokens, stats.correct, stats.deletions, stats.sentence_errors) == (5, 2, 3, 1)
    assert stats.percentages()["err"] == 60.0


def test_score_writes_results(tmp_path):
    ref = write_lines(tmp_path / "ref", ["s1-u1 A B C D", "s1-u2 E F", "s2-u3 G H I"])
    hyp = write_lines(tmp_path / "hyp", ["s1-u1 A X C", "s1-u2 E F Y Z", "zz-extra Q"])
    utt2spk = write_lines(tmp_path / "utt2spk", ["s1-u1 s1", "s1-u2 s1", "s2-u3 s2"])
    result = score(ref, hyp, tmp_path / "score", utt2spk=utt2spk, use_sclite=False)
    w = result["wer"]["python"]
    assert (w["n_ref_tokens"], w["correct"], w["substitutions"], w["deletions"], w["insertions"]) == (9, 4, 1, 4, 2)
    assert w["err"] == pytest.approx(77.78) and w["sent_err"] == 100.0
    assert result["n_missing_hyps"] == 1 and result["missing_hyps"] == ["s2-u3"] and result["n_extra_hyps"] == 1
    saved = json.loads((tmp_path / "score" / "result.json").read_text())
    assert saved["wer"]["python"]["errors"] == 7
    text = (tmp_path / "score" / "result.txt").read_text()
    assert "missing: s2-u3" in text and "WER" in text and "CER" in text
    trn = (tmp_path / "score" / "score_wer" / "hyp.trn").read_text().splitlines()
    assert trn == ["A X C (s1-s1-u1)", "E F Y Z (s1-s1-u2)", " (s2-s2-u3)"]
    assert (tmp_path / "score" / "score_cer" / "ref.trn").read_text().splitlines()[1] == "E <space> F (s1-s1-u2)"


def test_empty_reference_is_an_error(tmp_path):
    ref = write_lines(tmp_path / "ref", ["u1 A", "u2"])
    hyp = write_lines(tmp_path / "hyp", ["u1 A"])
    with pytest.raises(DataError, match=r"ref:2: empty reference transcript for utterance 'u2'"):
        score(ref, hyp, tmp_path / "out", use_sclite=False)


SCLITE_REPORT = """
       | SPKR   | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
       | Sum/Avg|    3      9 | 44.4   11.1   44.4   22.2   77.8  100.0 |
       |  Mean  |  1.5    4.5 | 33.3    8.3   58.3   16.7   83.3  100.0 |
        | Sum  |    3      9 |    4      1      4      2      7      3 |
"""


def test_parse_sclite_summary():
    parsed = parse_sclite_summary(SCLITE_REPORT)
    assert parsed["n_sentences"] == 3 and parsed["n_ref_tokens"] == 9
    assert parsed["err"] == 77.8 and parsed["n_del"] == 4 and parsed["n_ins"] == 2
    with pytest.raises(DataError, match="Sum/Avg"):
        parse_sclite_summary("nothing here")


def _random_texts(seed: int, n: int):
    rng = random.Random(seed)
    vocab = "a b c d e".split()
    ref, hyp = {}, {}
    for k in range(n):
        utt = f"s{k % 3}-u{k:03d}"
        ref[utt] = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 7)))
        if k % 17:
            hyp[utt] = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 7)))
    return ref, hyp


@needs_sclite
def test_agrees_with_sclite(tmp_path):
    ref, hyp = _random_texts(3, 120)
    ref_file = write_lines(tmp_path / "ref", [f"{u} {t}" for u, t in ref.items()])
    hyp_file = write_lines(tmp_path / "hyp", [f"{u} {t}".rstrip() for u, t in hyp.items()])
    result = score(ref_file, hyp_file, tmp_path / "score")
    assert result["sclite"] is True and result["n_missing_hyps"] > 0
    for metric in ("wer", "cer"):
        ours, theirs = result[metric]["python"], result[metric]["sclite"]
        assert (ours["correct"], ours["substitutions"], ours["deletions"], ours["insertions"]) == (
            theirs["n_corr"], theirs["n_sub"], theirs["n_del"], theirs["n_ins"])
        assert ours["n_ref_tokens"] == theirs["n_ref_tokens"]
        assert ours["err"] == pytest.approx(theirs["err"], abs=0.06)
    assert (tmp_path / "score" / "score_wer" / "sclite.txt").is_file()


def test_agrees_with_jiwer_error_totals():
    jiwer = pytest.importorskip("jiwer")
    ref, hyp = _random_texts(5, 60)
    keys = sorted(ref)
    hyps = [hyp.get(k, "") for k in keys]
    refs = [ref[k] for k in keys]
    stats = score_texts(ref, hyp, "word")
    n = sum(len(r.split()) for r in refs)
    # jiwer rejects empty hypothesis strings in some versions: score those as pure deletions.
    nonempty = [i for i, h in enumerate(hyps) if h]
    jiwer_errors = jiwer.wer([refs[i] for i in nonempty], [hyps[i] for i in nonempty]) * sum(
        len(refs[i].split()) for i in nonempty)
    jiwer_errors += sum(len(refs[i].split()) for i in range(len(refs)) if i not in nonempty)
    assert stats.n_ref_tokens == n
    assert stats.errors == round(jiwer_errors)


def test_results_markdown(tmp_path):
    ref = write_lines(tmp_path / "ref", ["u1 A B", "u2 C"])
    hyp = write_lines(tmp_path / "hyp", ["u1 A B", "u2 D"])
    result = score(ref, hyp, tmp_path / "s", use_sclite=False)
    table = results_markdown({"test": result})
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in table
    assert "|test|2|3|66.7|33.3|0.0|0.0|33.3|50.0|" in table
    assert "|test|2|" in results_markdown({"test": result}, metric="cer", scorer="sclite")
