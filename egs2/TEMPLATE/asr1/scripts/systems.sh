# shellcheck shell=bash
# shellcheck disable=SC2034  # the tables are used by the scripts that source this file
# systems.sh: the recipe's systems, in one place (sourced by bilevel_asr.sh and recipes' local/
# scripts such as mini_synth's label_budget.sh). A new system is one line in one of the two tables.
#
# What this defines:
#   KNOWN_SYSTEMS                        every name --system accepts ("all" is bilevel_asr.sh's --all_systems)
#   pt_run_of[<system>]                  the PT run of a PT+FT system (ptft -> pt, birq_ptft -> birq_pt)
#   system_of_run[<PT run>]              the PT+FT system a PT run belongs to
#   config_opt_of[<run>]                 the option (variable) holding the config of a training run
#   ptft_script_of[<system>]             the script that trains both halves of a scripted PT+FT system
#   solver_of <run>                      the espnet_bilevel solver a training run uses
#   is_pt_run <run>, is_joint_run <run>  PT half of a PT+FT system / trained on f and g together
#   is_two_run_ptft <system>             a PT+FT system trained as two runs of stage 11 (PT, then FT)

# Systems trained as one run of stage 11: <system>|<option holding its config>|<solver>.
# The joint ones (solver weighted_sum, alternating or bljust) read both streams and take --solver_args.
SINGLE_RUN_SPEC=(
    "supervised|supervised_config|supervised"
    "just|just_config|weighted_sum"
    "bljust|bljust_config|bljust"
    "birq_just|birq_just_config|weighted_sum"
    "birq_bljust|birq_bljust_config|bljust"
)
# PT+FT systems: <system>|<its PT run>|<option holding the PT config>|<option holding the FT config>|<trainer>.
# <trainer> "stage11": two training runs of stage 11 (PT with solver pretrain, then FT with solver
# supervised from the PT encoder; the FT run waits for the PT run). Otherwise the script (relative to
# the recipe) that trains both halves in one go, with stock ESPnet tools (contract above
# train_scripted_ptft in bilevel_asr.sh); such a system reads waveforms (--feats_type raw).
PTFT_SPEC=(
    "ptft|pt|pt_config|ft_config|stage11"
    "bestrq_ptft|bestrq_pt|bestrq_pt_config|ft_config|stage11"
    "birq_ptft|birq_pt|birq_pt_config|ft_config|stage11"
    "hubert_ptft|hubert_pt|hubert_pt_config|hubert_ft_config|scripts/hubert_ptft.sh"
)

KNOWN_SYSTEMS=""
declare -A pt_run_of=() system_of_run=() config_opt_of=() solver_of_run=() ptft_script_of=()
for _spec in "${SINGLE_RUN_SPEC[@]}"; do
    IFS='|' read -r _s _c _solver <<< "${_spec}"
    KNOWN_SYSTEMS+="${KNOWN_SYSTEMS:+ }${_s}"
    config_opt_of[${_s}]=${_c}; solver_of_run[${_s}]=${_solver}
done
for _spec in "${PTFT_SPEC[@]}"; do
    IFS='|' read -r _s _pt _ptc _ftc _trainer <<< "${_spec}"
    KNOWN_SYSTEMS+=" ${_s}"
    pt_run_of[${_s}]=${_pt}; system_of_run[${_pt}]=${_s}
    config_opt_of[${_pt}]=${_ptc}; config_opt_of[${_s}]=${_ftc}
    solver_of_run[${_pt}]=pretrain; solver_of_run[${_s}]=supervised
    [ "${_trainer}" = stage11 ] || ptft_script_of[${_s}]=${_trainer}
done
unset _spec _s _c _solver _pt _ptc _ftc _trainer

is_pt_run() { [ -n "${system_of_run[$1]:-}" ]; }
is_two_run_ptft() { [ -n "${pt_run_of[$1]:-}" ] && [ -z "${ptft_script_of[$1]:-}" ]; }
solver_of() {
    [ -n "${solver_of_run[$1]:-}" ] || { echo "solver_of: unknown run '$1'" >&2; return 1; }
    echo "${solver_of_run[$1]}"
}
is_joint_run() {
    case ${solver_of_run[$1]:-} in weighted_sum|alternating|bljust) return 0 ;; *) return 1 ;; esac
}
