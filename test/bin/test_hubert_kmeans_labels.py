"""espnet_bilevel.bin.hubert_kmeans_labels: usage-first docstring, outputs, exit codes and one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from espnet_bilevel.bin import hubert_kmeans_labels as cli
from espnet_bilevel.data.cli import run_cli


@pytest.fixture
def scp(tmp_path):
    lines = []
    for i, freq in enumerate((300.0, 300.0, 2500.0, 2500.0)):
        t = np.arange(int(0.3 * 16000)) / 16000
        p = tmp_path / "wav" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(str(p), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, subtype="PCM_16")
        lines.append(f"u{i} {p}")
    path = tmp_path / "train" / "wav.scp"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


def test_docstring_starts_with_usage():
    assert cli.__doc__.split("\n")[2] == "Usage:"
    assert "python -m espnet_bilevel.bin.hubert_kmeans_labels" in cli.__doc__.split("\n")[4]


def test_cli_writes_labels_and_tokens(scp, tmp_path, capsys):
    out = tmp_path / "labels"
    # a bare WAV_SCP is named after its directory ("train")
    rc = run_cli(cli.main, ["--input", str(scp), "--input", f"dev={scp}", "--out_dir", str(out),
                            "--n_clusters", "2", "--fit_portion", "1"])
    assert rc == 0
    assert (out / "train" / "text").is_file() and (out / "dev" / "text").is_file()
    assert (out / "train" / "text").read_text() == (out / "dev" / "text").read_text()
    assert (out / "tokens.txt").read_text() == "0\n1\n<unk>\n<sos/eos>\n"
    err = capsys.readouterr().err
    assert "fitting 2 clusters" in err and "labels of 'dev'" in err and "wrote" in err


def test_cli_data_error_is_one_line_exit_1(tmp_path, capsys):
    rc = run_cli(cli.main, ["--input", f"x={tmp_path}/nope/wav.scp", "--out_dir", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ERROR: {tmp_path}/nope/wav.scp: file not found"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--n_clusters", "0"], "--n_clusters must be >= 1"),
    (["--fit_portion", "0"], "--fit_portion must be in (0, 1]"),
    (["--nj", "0"], "must be >= 1"),
    (["--input", "=x"], "expected NAME=WAV_SCP"),
])
def test_cli_bad_options_exit_2(args, message, scp, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--input", str(scp), "--out_dir", str(tmp_path / "o"), *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
