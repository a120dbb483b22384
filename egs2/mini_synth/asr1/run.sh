#!/usr/bin/env bash
# Usage: ./run.sh [--small true|false] [--extra_unlabeled N] [bilevel_asr.sh options, e.g. --stage 11 --system bljust]
#        ./run.sh --help
#
# The embedded recipe: an espeak-ng corpus synthesized on the fly (local/data.sh), and the four
# systems (supervised, PT+FT, JUST, BL-JUST) with two lower-level losses, BL-JUST's own CPC/InfoNCE
# (ptft just bljust) and BiRQ (birq_ptft birq_just birq_bljust), plus ESPnet's own HuBERT PT+FT
# (hubert_ptft), trained, decoded, scored, packed, staged for Hugging Face (dry run) and compared in
# RESULTS.md. One family: --system "supervised birq_ptft birq_just birq_bljust"; PT+FT with
# BEST-RQ pre-training: --system bestrq_ptft.
#   default      conf/mini/*.yaml, 60 labeled / 600 unlabeled utterances; dirs data/ dump/ exp/
#   --small true conf/tiny/*.yaml, 16 / 24 utterances (CI, a few minutes); dirs data_small/ dump_small/ exp_small/
#   --extra_unlabeled N  N more unlabeled utterances, the labeled/dev/test sets unchanged (local/data.sh);
#                dirs data_extra<N>/ dump_extra<N>/ exp_extra<N>/, RESULTS_extra<N>.md
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"

small=false
extra_unlabeled=0
args=()
orig_args=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --small) [ $# -ge 2 ] || { echo "run.sh: --small needs a value (true|false)" >&2; exit 2; }
                 small=$2; shift 2 ;;
        --extra_unlabeled)
            [ $# -ge 2 ] || { echo "run.sh: --extra_unlabeled needs a value" >&2; exit 2; }
            extra_unlabeled=$2; shift 2 ;;
        --help|-h)
            sed -n '2,14p' "$self" | sed 's/^# \{0,1\}//'
            echo
            echo "Recipe options:"
            echo "  --small                true: CI-sized corpus and tiny models [false]"
            echo "  --extra_unlabeled      more unlabeled utterances, the other sets unchanged [0]"
            echo
            echo "Everything else goes to bilevel_asr.sh:"
            args+=(--help); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
case ${small} in
    true) scale=tiny; suffix=_small; train_jobs=2 ;;
    false) scale=mini; suffix=; train_jobs=2 ;;
    *) echo "run.sh: --small must be true or false, got '${small}'" >&2; exit 2 ;;
esac
[[ ${extra_unlabeled} =~ ^[0-9]+$ ]] || { echo "run.sh: --extra_unlabeled must be a non-negative integer, got '${extra_unlabeled}'" >&2; exit 2; }
# another corpus, so its own data/dump/exp dirs and results file (nothing of the default run is reused)
[ "${extra_unlabeled}" -eq 0 ] || suffix=${suffix}_extra${extra_unlabeled}
# the command line written into RESULTS.md and the model cards (values with spaces stay quoted)
# shellcheck source=../../TEMPLATE/asr1/scripts/shell_quote.sh
. scripts/shell_quote.sh
export_run_cmd "${orig_args[@]}"

./bilevel_asr.sh \
    --local_data_opts "--small ${small} --extra_unlabeled ${extra_unlabeled}" \
    --datadir "data${suffix}" --dumpdir "dump${suffix}" --expdir "exp${suffix}" \
    --train_set train_labeled --train_unlab_set train_unlabeled --valid_set dev --test_sets "dev test" \
    --ngpu 0 --nj 2 --inference_nj 2 --train_jobs "${train_jobs}" \
    --all_systems "supervised ptft just bljust birq_ptft birq_just birq_bljust hubert_ptft" \
    --token_type char --fs 16k --min_wav_duration 0.1 --max_wav_duration 20 \
    --supervised_config "conf/${scale}/supervised.yaml" --pt_config "conf/${scale}/pretrain.yaml" \
    --bestrq_pt_config "conf/${scale}/pretrain_bestrq.yaml" --birq_pt_config "conf/${scale}/pretrain_birq.yaml" \
    --hubert_pt_config "conf/${scale}/hubert_pretrain.yaml" --hubert_ft_config "conf/${scale}/hubert_finetune.yaml" \
    --just_config "conf/${scale}/weighted_sum.yaml" --bljust_config "conf/${scale}/bljust.yaml" \
    --birq_just_config "conf/${scale}/weighted_sum_birq.yaml" --birq_bljust_config "conf/${scale}/bljust_birq.yaml" \
    --inference_config conf/decode_ctc_greedy.yaml --inference_asr_model valid.cer_ctc.ave.pth \
    --skip_upload_hf false --hf_dry_run true --results_file "RESULTS${suffix}.md" \
    "${args[@]}"
