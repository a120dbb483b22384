"""egs2/TEMPLATE/asr1/scripts/systems.sh: the one table of the recipe's systems agrees with the
package (every solver it names is registered, "joint" means the same on both sides) and with
bilevel_asr.sh (every config option it names is an option of the template)."""
import re
import subprocess

from conftest import EGS2

from espnet_bilevel.solvers import SOLVERS, is_joint_solver

TEMPLATE = EGS2 / "TEMPLATE" / "asr1"
SCRIPT = TEMPLATE / "scripts" / "systems.sh"


def _tables():
    """{run: (solver, config option, joint?, pt run of it or "", two-run PT+FT?, its script or "")}
    for every system and PT run."""
    prog = f'''. "{SCRIPT}"
for s in ${{KNOWN_SYSTEMS}} "${{pt_run_of[@]}}"; do
    j=no; is_joint_run "$s" && j=yes
    t=no; is_two_run_ptft "$s" && t=yes
    printf '%s %s %s %s %s %s %s\\n' "$s" "$(solver_of "$s")" "${{config_opt_of[$s]}}" "$j" "${{pt_run_of[$s]:--}}" \\
        "$t" "${{ptft_script_of[$s]:--}}"
done'''
    proc = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        w = line.split()
        rows[w[0]] = (w[1], w[2], w[3] == "yes", "" if w[4] == "-" else w[4], w[5] == "yes",
                      "" if w[6] == "-" else w[6])
    return rows


def _default_all_systems():
    """The default of bilevel_asr.sh's --all_systems (what --system all stands for)."""
    for line in (TEMPLATE / "bilevel_asr.sh").read_text().splitlines():
        if line.strip().startswith('"all_systems|'):
            return line.strip().strip('"').split("|")[1].split()
    raise AssertionError("bilevel_asr.sh has no --all_systems option")


def test_every_run_has_a_registered_solver_and_a_template_config_option():
    rows = _tables()
    core = _default_all_systems()
    template = (TEMPLATE / "bilevel_asr.sh").read_text()
    assert {"supervised", "ptft", "pt", "just", "bljust", "birq_bljust", "birq_pt", "hubert_ptft"} <= set(rows)
    assert set(core) == {"supervised", "ptft", "just", "bljust"} and set(core) <= set(rows)
    for run, (solver, opt, joint, *_) in rows.items():
        assert solver in SOLVERS, f"{run}: solver {solver} is not registered"
        assert f'"{opt}|' in template, f"{run}: config option --{opt} is not an option of bilevel_asr.sh"
        assert joint == is_joint_solver(solver), run


def test_every_recipe_all_systems_names_known_systems():
    rows = _tables()
    found = {}
    for run_sh in sorted((TEMPLATE.parent.parent).glob("*/asr1/run.sh")):
        m = re.search(r'--all_systems "([^"]+)"', run_sh.read_text())
        if m:
            found[run_sh.parent.parent.name] = m.group(1).split()
    # the embedded recipe runs the BiRQ family and the HuBERT reference next to the core systems
    assert found["mini_synth"] == ["supervised", "ptft", "just", "bljust", "birq_ptft", "birq_just", "birq_bljust",
                                   "hubert_ptft"]
    pt_runs = {row[3] for row in rows.values() if row[3]}  # halves of PT+FT systems, not systems
    for recipe, systems in found.items():
        assert set(systems) <= set(rows) - pt_runs, (recipe, set(systems) - (set(rows) - pt_runs))


def test_pt_ft_systems_pair_a_pretrain_run_with_a_supervised_ft():
    rows = _tables()
    assert rows["ptft"][3] == "pt" and rows["birq_ptft"][3] == "birq_pt" and rows["bestrq_ptft"][3] == "bestrq_pt"
    for system, (solver, _, _, pt, *_) in rows.items():
        if pt:
            assert solver == "supervised" and rows[pt][0] == "pretrain", system
    assert rows["bljust"][0] == rows["birq_bljust"][0] == "bljust"
    assert rows["just"][0] == rows["birq_just"][0] == "weighted_sum"
    assert rows["supervised"][2] is False and rows["birq_bljust"][2] is True


def test_pt_ft_systems_are_two_stage_11_runs_unless_a_template_script_trains_them():
    # bilevel_asr.sh's stage-11 waves and label_budget.sh's PT sharing follow is_two_run_ptft
    rows = _tables()
    two_run = {r for r, row in rows.items() if row[4]}
    scripted = {r: row[5] for r, row in rows.items() if row[5]}
    assert two_run == {"ptft", "bestrq_ptft", "birq_ptft"}
    assert scripted == {"hubert_ptft": "scripts/hubert_ptft.sh"}
    for system, script in scripted.items():
        assert rows[system][3], f"{system}: a scripted system is a PT+FT system"
        assert (TEMPLATE / script).is_file(), f"{system}: {script} is not a script of the template"


def test_unknown_run_is_an_error():
    proc = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; solver_of blj'], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "solver_of: unknown run 'blj'" in proc.stderr


def test_every_system_has_a_model_card_text():
    # stage 15 calls make_model_card --system <system>, whose choices are SYSTEM_TEXT's keys
    from espnet_bilevel.bin.make_model_card import SYSTEM_TEXT

    rows = _tables()
    systems = [r for r in rows if r not in {row[3] for row in rows.values() if row[3]}]
    assert "ptft" in systems and "pt" not in systems
    assert set(systems) <= set(SYSTEM_TEXT), set(systems) - set(SYSTEM_TEXT)
