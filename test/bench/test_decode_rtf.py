"""bench/decode_decode_rtf.py --jobs: the parts its jobs decode are the recipe's key splits (stage 12's
--inference_nj decode_many jobs), so the 2-job RTF measures what the recipe runs. The timings
themselves are measurements, not tested."""

import pytest

from espnet_bilevel.data.kaldi_dir import split_scp



@pytest.mark.parametrize("n_utts,parts", [(60, 2), (7, 2), (7, 3), (5, 5), (40, 1)])
def test_jobs_decode_the_recipes_key_splits(decode_rtf, tmp_path, n_utts, parts):
    keys = [f"utt{i:03d}" for i in range(n_utts)]
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} /audio/{k}.wav\n" for k in keys))
    recipe_parts = [[line.split()[0] for line in p.read_text().splitlines()]
                    for p in split_scp(scp, parts, tmp_path / "split")]
    bench_parts = [decode_rtf.contiguous_part(keys, k, parts) for k in range(parts)]
    assert bench_parts == recipe_parts
    assert sum(bench_parts, []) == keys          # every utterance once, in order


def test_jobs_must_be_positive(decode_rtf):
    with pytest.raises(SystemExit):
        decode_rtf.parse_args(["--model_dir", "m", "--data_dir", "d", "--jobs", "0"])
