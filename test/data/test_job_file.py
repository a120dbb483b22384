"""Job files of decode_many / pack_many: tab-separated fields, comments and blank lines skipped,
line numbers kept for error messages."""
import pytest

from espnet_bilevel.data.job_file import read_job_lines


def test_fields_and_line_numbers(tmp_path):
    path = tmp_path / "jobs.tsv"
    path.write_text("# header comment\n\nout a.zip\tconf dir/config.yaml\tmodel.pth\n   \nb.zip\tc\tm\n")
    assert read_job_lines(path) == [(3, ["out a.zip", "conf dir/config.yaml", "model.pth"]),
                                    (5, ["b.zip", "c", "m"])]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match=f"job file not found: {tmp_path / 'nope.tsv'}"):
        read_job_lines(tmp_path / "nope.tsv")
