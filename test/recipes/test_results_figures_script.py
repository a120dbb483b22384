"""egs2/TEMPLATE/asr1/scripts/results_figures.sh: plots copied next to a results file and linked."""
import subprocess

from conftest import EGS2

SCRIPT = EGS2 / "TEMPLATE" / "asr1" / "scripts" / "results_figures.sh"


def _bash(body: str, cwd) -> subprocess.CompletedProcess:
    prog = f'set -euo pipefail; . "{SCRIPT}"\n{body}'
    return subprocess.run(["bash", "-c", prog], cwd=cwd, capture_output=True, text=True, timeout=30)


def test_publish_replaces_the_old_plots_and_links_only_present_ones(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(b"A1")
    (tmp_path / "src" / "b.png").write_bytes(b"B1")
    old = tmp_path / "out" / "RESULTS_x_figures"
    old.mkdir(parents=True)
    (old / "stale.png").write_bytes(b"S")
    proc = _bash("publish_figures out/RESULTS_x.md src/a.png src/b.png\n"
                 "figure_links out/RESULTS_x.md b missing a", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in old.iterdir()) == ["a.png", "b.png"]  # stale.png is gone
    assert (old / "a.png").read_bytes() == b"A1"
    # relative to the results file, in the order asked, nothing for a plot that is not there
    assert proc.stdout == "![b](RESULTS_x_figures/b.png)\n\n![a](RESULTS_x_figures/a.png)\n\n"
    assert not (tmp_path / "out" / "RESULTS_x_figures.tmp").exists()


def test_failed_copy_keeps_the_old_plots(tmp_path):
    figs = tmp_path / "RESULTS_figures"
    figs.mkdir()
    (figs / "a.png").write_bytes(b"old")
    proc = _bash("publish_figures RESULTS.md does_not_exist.png", tmp_path)
    assert proc.returncode != 0 and "does_not_exist.png" in proc.stderr
    assert (figs / "a.png").read_bytes() == b"old"
    assert not (tmp_path / "RESULTS_figures.tmp").exists()
