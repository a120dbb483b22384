#!/usr/bin/env bash
# Usage: local/label_budget.sh [--budgets "25 50 100 200"] [--systems "supervised ptft bljust"]
#                              [--small false] [--seed 0] [--seeds ""] [--stage 1] [--stop_stage 3]
#                              [--train_jobs 2] [-- <more bilevel_asr.sh options>]
#
# Label-budget curve of the embedded recipe: WER against the number of labeled utterances for
# each system, with the unlabeled, dev and test sets held fixed. Run from egs2/mini_synth/asr1.
#   stage 1  corpus with max(budgets) labeled utterances (600 unlabeled / 40 dev / 60 test, or the
#            --small sizes) -> downloads/mini_synth_budget<max>_seed<seed>, data_budget/src/<set>;
#            nested labeled subsets balanced over the labeled domains (espnet_bilevel.bin.subset_data_dir)
#            -> data_budget/src/train_labeled_n<N>
#   stage 2  for each budget N: ./run.sh stages 1-13 (format, stats, train, decode, score) on
#            train_labeled_n<N> -> exp_budget/asr_<system>_raw_char_n<N>[_seed<k>]; the PT half of
#            ptft does not depend on N, so it is trained once per training seed (largest budget first)
#            and linked for the others
#   stage 3  espnet_bilevel.bin.label_budget_curve (WER, CER, training CPU time with PT counted for
#            PT+FT, paired-by-seed differences) -> exp_budget/label_budget/{label_budget.md,
#            label_budget.json,label_budget_wer.png}; a copy with the command and the embedded plot
#            -> ./RESULTS_label_budget.md, ./RESULTS_label_budget_figures/ (--small: *_small*)
# --seed is the corpus seed (which utterances are synthesized and which labeled subsets are drawn);
# --seeds "1 2 3" trains every system once per training seed on that same corpus (run.sh --seeds)
# and makes every cell of the table and every point of the plot a mean ± std over the seeds.
# Seeds can be added later: rerunning with more seeds trains only the missing runs.
# Every stage is idempotent (finished runs are skipped by run.sh's own markers).
# Char token list: from the largest labeled set, shared by all budgets (same output layer).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091  # path.sh puts tools/venv first on PATH
. ./path.sh
# quote_args (the command line in the results files)
# shellcheck source=../scripts/shell_quote.sh  # (run from the recipe dir)
. scripts/shell_quote.sh
# publish_figures, figure_links
# shellcheck source=../scripts/results_figures.sh  # (run from the recipe dir)
. scripts/results_figures.sh
# pt_run_of (the PT run of each PT+FT system, as bilevel_asr.sh names it)
# shellcheck source=../scripts/systems.sh  # (run from the recipe dir)
. scripts/systems.sh

# log, die
SCRIPT_NAME=local/label_budget.sh
# shellcheck source=../scripts/log.sh  # (run from the recipe dir)
. scripts/log.sh
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

budgets="25 50 100 200"
systems="supervised ptft bljust"
small=false
seed=0
seeds=""
stage=1
stop_stage=3
train_jobs=2
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --budgets) budgets=$2; shift 2 ;;
        --systems) systems=$2; shift 2 ;;
        --small) small=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --stage) stage=$2; shift 2 ;;
        --stop_stage) stop_stage=$2; shift 2 ;;
        --train_jobs) train_jobs=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) log "ERROR: unknown option $1"; usage >&2; exit 2 ;;
    esac
done
orig_extra=""
[ "${small}" = false ] || orig_extra+=" --small ${small}"
[ "${seed}" = 0 ] || orig_extra+=" --seed ${seed}"
[ -z "${seeds}" ] || orig_extra+=" --seeds \"${seeds}\""
[ "${#extra[@]}" -eq 0 ] || orig_extra+=" --$(quote_args "${extra[@]}")"
read -ra budget_list <<< "${budgets}"
[ "${#budget_list[@]}" -gt 0 ] || { log "ERROR: --budgets is empty"; exit 2; }
for n in "${budget_list[@]}"; do
    [[ ${n} =~ ^[1-9][0-9]*$ ]] || { log "ERROR: --budgets: '${n}' is not a positive integer"; exit 2; }
done
read -ra system_list <<< "${systems}"
[ "${#system_list[@]}" -gt 0 ] || { log "ERROR: --systems is empty"; exit 2; }
for s in "${system_list[@]}"; do
    [[ " ${KNOWN_SYSTEMS} " == *" ${s} "* ]] || { log "ERROR: --systems: unknown system '${s}' (any of: ${KNOWN_SYSTEMS})"; exit 2; }
done
# training seeds ("" = one run with the configs' seed, exp dirs without a seed suffix)
read -ra train_seeds <<< "${seeds}"
for k in "${train_seeds[@]}"; do
    [[ ${k} =~ ^[0-9]+$ ]] || { log "ERROR: --seeds: '${k}' is not a non-negative integer"; exit 2; }
done
[ "${#train_seeds[@]}" -gt 0 ] || train_seeds=("")
seeds_opt=()
[ -z "${seeds}" ] || seeds_opt=(--seeds "${seeds}")
# run_dirs <run> <N> [<prefix>]: the exp dir names of a run (system or PT run) at budget N, one per
# training seed, comma-separated, each after <prefix> (bilevel_asr.sh's naming:
# asr_<run>_<tag>[_seed<k>], tag raw_char_n<N>)
run_dirs() {
    local k out=""
    for k in "${train_seeds[@]}"; do out+="${out:+,}${3:-}asr_$1_raw_char_n$2${k:+_seed${k}}"; done
    echo "${out}"
}
# largest budget first: it trains the shared PT run
mapfile -t budget_list < <(printf '%s\n' "${budget_list[@]}" | sort -rn | uniq)
max_budget=${budget_list[0]}

case ${small} in
    true) sizes=(--n_unlabeled 24 --n_dev 6 --n_test 6); suffix=_small ;;
    false) sizes=(); suffix= ;;
    *) log "ERROR: --small must be true or false, got '${small}'"; exit 2 ;;
esac
corpus=downloads/mini_synth_budget${max_budget}${suffix}_seed${seed}
src=data_budget${suffix}/src
expdir=exp_budget${suffix}
decode_dir=decode_decode_ctc_greedy_valid.cer_ctc.ave
# One curve = one corpus: ${src}, the dumps and the exp dirs carry no corpus name, so a rerun with a
# larger max budget or another --seed would otherwise reuse the other corpus's sets and finished runs
# silently. ${src}/corpus names the corpus the sets were copied from.
if [ -f "${src}/corpus" ] && [ "$(cat "${src}/corpus")" != "${corpus}" ]; then
    die "${src} holds the sets of $(cat "${src}/corpus") (${src}/corpus), but --budgets \"${budgets}\" --seed ${seed} asks for ${corpus}: a curve uses one corpus; move ${src%/src}/ dump_budget${suffix}/ ${expdir}/ aside (or rerun with the largest budget and --seed that made them)"
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "stage 1: corpus with ${max_budget} labeled utterances -> ${corpus}, subsets -> ${src}"
    python3 -m espnet_bilevel.bin.synth_corpus --out "${corpus}" --seed "${seed}" \
        --n_labeled "${max_budget}" "${sizes[@]}" --jobs 2
    mkdir -p "${src}"
    for set in train_labeled train_unlabeled dev test; do
        if [ ! -f "${src}/${set}/wav.scp" ]; then
            rm -rf "${src}/${set}.tmp"
            cp -r "${corpus}/data/${set}" "${src}/${set}.tmp"
            # the unlabeled transcripts must never reach training
            [ "${set}" = train_unlabeled ] && rm -f "${src}/${set}.tmp/text"
            mv "${src}/${set}.tmp" "${src}/${set}"
        fi
    done
    echo "${corpus}" > "${src}/corpus"
    for n in "${budget_list[@]}"; do
        [ -f "${src}/train_labeled_n${n}/wav.scp" ] && continue
        python3 -m espnet_bilevel.bin.subset_data_dir "${src}/train_labeled" "${src}/train_labeled_n${n}" \
            --num_utts "${n}" --seed "${seed}"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    for n in "${budget_list[@]}"; do
        tag=raw_char_n${n}
        for s in "${system_list[@]}"; do
            # PT sees only unlabeled audio: every budget reuses the largest budget's PT run of each
            # PT+FT system trained in two runs (ptft -> asr_pt_*, birq_ptft -> asr_birq_pt_*;
            # scripts/systems.sh); not a scripted one (hubert_ptft), whose script trains both halves
            is_two_run_ptft "${s}" || continue
            [ "${n}" != "${max_budget}" ] || continue
            IFS=, read -ra froms <<< "$(run_dirs "${pt_run_of[${s}]}" "${max_budget}")"
            IFS=, read -ra tos <<< "$(run_dirs "${pt_run_of[${s}]}" "${n}")"
            for i in "${!froms[@]}"; do
                [ -f "${expdir}/${froms[i]}/.train.done" ] || die "${expdir}/${froms[i]} is not finished"
                [ -e "${expdir}/${tos[i]}" ] || ln -s "${froms[i]}" "${expdir}/${tos[i]}"
            done
        done
        log "stage 2: budget ${n}: systems ${systems} (log: ${expdir}/logs_n${n}.log)"
        mkdir -p "${expdir}"
        BILEVEL_RUN_CMD="egs2/mini_synth/asr1/local/label_budget.sh --budgets \"${budgets}\" --systems \"${systems}\"${orig_extra}" \
        ./run.sh --small "${small}" --stop_stage 13 \
            --local_data_dir "${src}" --datadir "data_budget${suffix}/n${n}" --dumpdir "dump_budget${suffix}" \
            --expdir "${expdir}" --train_set "train_labeled_n${n}" --asr_tag "${tag}" \
            --asr_stats_dir "${expdir}/asr_stats_${tag}" --bpe_train_text "${src}/train_labeled/text" \
            --system "${systems}" "${seeds_opt[@]}" --train_jobs "${train_jobs}" --skip_upload_hf true \
            --results_file "${expdir}/RESULTS_n${n}.md" "${extra[@]}" > "${expdir}/logs_n${n}.log" 2>&1 \
            || { log "ERROR: budget ${n} failed; see ${expdir}/logs_n${n}.log"; tail -5 "${expdir}/logs_n${n}.log" >&2; exit 1; }
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    points=()
    for n in "${budget_list[@]}"; do
        for s in "${system_list[@]}"; do
            points+=(--point "${s}:${n}=$(run_dirs "${s}" "${n}" "${expdir}/")")
            # PT+FT's training time includes its PT run (the shared one, counted in full at every budget)
            is_two_run_ptft "${s}" || continue
            points+=(--pre_point "${s}:${n}=$(run_dirs "${pt_run_of[${s}]}" "${n}" "${expdir}/")")
        done
    done
    log "stage 3: label-budget table and plot -> ${expdir}/label_budget"
    python3 -m espnet_bilevel.bin.label_budget_curve "${points[@]}" --decode_dir "${decode_dir}" \
        --test_sets dev test --plot_set test --out_dir "${expdir}/label_budget"
    # the recipe-level copy (exp dirs are not versioned): table + embedded plot
    results=RESULTS_label_budget${suffix}.md
    publish_figures "${results}" "${expdir}/label_budget/label_budget_wer.png"
    {
        echo "<!-- Generated by egs2/mini_synth/asr1/local/label_budget.sh (stage 3); do not edit by hand. -->"
        echo "# Label-budget curve: mini_synth/asr1"
        echo
        echo "Command (run from \`egs2/mini_synth/asr1\`):"
        echo
        echo '```bash'
        echo "local/label_budget.sh --budgets \"${budgets}\" --systems \"${systems}\"${orig_extra}"
        echo '```'
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(getconf _NPROCESSORS_ONLN) CPU core(s); corpus seed ${seed}"
        if [ -n "${seeds}" ]; then
            echo "- training seeds: ${seeds}; every cell is mean ± std over the ${#train_seeds[@]} seeds (error bars in the plot)"
            echo "- per budget N and seed k: \`${expdir}/asr_<system>_raw_char_n<N>_seed<k>\`, results \`${expdir}/RESULTS_n<N>.md\`"
        else
            echo "- training seed: the configs' own (one run per cell)"
            echo "- per budget N: \`${expdir}/asr_<system>_raw_char_n<N>\`, results \`${expdir}/RESULTS_n<N>.md\`"
        fi
        echo
        cat "${expdir}/label_budget/label_budget.md"
        echo
        figure_links "${results}" label_budget_wer
    } > "${results}.tmp"
    mv "${results}.tmp" "${results}"
    log "stage 3: ./${results} written"
fi
log "done"
