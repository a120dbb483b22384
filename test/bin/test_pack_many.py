"""pack_many (recipe stage 14): several packs in one process, each the same zip that
``espnet2.bin.pack asr`` makes; bad job files fail before anything is packed; a failed pack leaves
no partial zip and keeps the packs made before it."""
import zipfile

import pytest
import yaml

from espnet_bilevel.bin.pack_many import main


def fake_exp(root, name):
    """What stage 14 packs: export/{config.yaml, model.pth}, the stats file and RESULTS.md. The
    packer only copies files and rewrites the paths in the yaml, so the model need not be real."""
    exp = root / name
    (exp / "export").mkdir(parents=True)
    stats = root / "stats" / "feats_stats.npz"
    stats.parent.mkdir(exist_ok=True)
    stats.write_bytes(b"stats of the training set")
    (exp / "export" / "config.yaml").write_text(yaml.safe_dump(
        {"token_list": ["<blank>", "a", "b"], "normalize": "global_mvn",
         "normalize_conf": {"stats_file": str(stats)}}))
    (exp / "export" / "model.pth").write_bytes(name.encode() * 100)
    (exp / "RESULTS.md").write_text(f"# {name}\n")
    return exp, [str(exp / "export" / "config.yaml"), str(exp / "export" / "model.pth"), str(stats),
                 str(exp / "RESULTS.md")]


def write_jobs(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return path


def members(zip_path):
    with zipfile.ZipFile(zip_path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith("meta.yaml")}


def test_packs_equal_espnet_pack(tmp_path):
    from espnet2.bin.pack import main as espnet_pack

    rows = []
    for name in ("asr_a", "asr_b"):
        exp, (config, model, *options) = fake_exp(tmp_path, name)
        rows.append([str(exp / f"{name}.zip"), config, model, *options])
    assert main(["--jobs", str(write_jobs(tmp_path / "jobs.tsv", rows))]) == 0

    for out, config, model, *options in rows:
        ref = tmp_path / "ref.zip"
        cmd = ["asr", "--asr_train_config", config, "--asr_model_file", model]
        for o in options:
            cmd += ["--option", o]
        espnet_pack(cmd + ["--outpath", str(ref)])
        got = members(out)
        assert got == members(ref)                      # same files, same bytes (meta.yaml has a time)
        assert any(n.endswith("model.pth") and b == model.split("/")[-3].encode() * 100 for n, b in got.items())
        assert not list(tmp_path.glob("**/*.tmp.zip"))


@pytest.mark.parametrize("row,message", [
    (["out.zip", "config.yaml"], "expected <outpath.zip>"),
    (["out.tar", "{config}", "{model}"], "must be a .zip"),
    (["out.zip", "{config}", "missing_model.pth"], "file not found: missing_model.pth"),
])
def test_bad_job_file_fails_before_packing(tmp_path, capsys, row, message):
    exp, (config, model, *_) = fake_exp(tmp_path, "asr_a")
    good = [str(tmp_path / "good.zip"), config, model]
    row = [f.format(config=config, model=model) for f in row]
    jobs = write_jobs(tmp_path / "jobs.tsv", [good, row])
    with pytest.raises(SystemExit, match=f"{jobs}:2: .*{message}"):
        main(["--jobs", str(jobs)])
    assert not (tmp_path / "good.zip").exists()          # nothing packed


def test_failed_pack_leaves_no_partial_zip_and_keeps_earlier_ones(tmp_path, capsys):
    exp, (config, model, *options) = fake_exp(tmp_path, "asr_a")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the second pack's directory should be")
    jobs = write_jobs(tmp_path / "jobs.tsv", [[str(tmp_path / "first.zip"), config, model, *options],
                                              [str(blocker / "second.zip"), config, model, *options]])
    assert main(["--jobs", str(jobs)]) == 1
    err = capsys.readouterr().err
    assert f"ERROR: packing {blocker / 'second.zip'}" in err
    assert zipfile.is_zipfile(tmp_path / "first.zip")
    assert not list(tmp_path.glob("**/*.tmp.zip"))


def test_missing_job_file(tmp_path):
    with pytest.raises(SystemExit, match="job file not found"):
        main(["--jobs", str(tmp_path / "nope.tsv")])
