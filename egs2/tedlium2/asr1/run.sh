#!/usr/bin/env bash
# Usage: ./run.sh [--n_labeled_hours 50 | --labeled_fraction F] [--tedlium2 DIR] [bilevel_asr.sh options]
#        ./run.sh --help
#
# TED-LIUM 2: a labeled subset of the training talks (default 50 h of ~207 h, whole talks chosen
# with a fixed seed), the remaining talks unlabeled, decoded on dev and test.
# Models: conf/tedlium2/*.yaml (GPU-sized conformer, hybrid CTC/attention, BPE 500).
# Data: $TEDLIUM2 (or --tedlium2) holds TEDLIUM_release2/; it is downloaded when missing.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"

n_labeled_hours=
labeled_fraction=
tedlium2=${TEDLIUM2:-downloads}
local_extra=
args=()
orig_args=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --n_labeled_hours) n_labeled_hours=$2; shift 2 ;;
        --labeled_fraction) labeled_fraction=$2; shift 2 ;;
        --tedlium2) tedlium2=$2; shift 2 ;;
        --local_extra) local_extra=$2; shift 2 ;;
        --help|-h)
            sed -n '2,8p' "$self" | sed 's/^# \{0,1\}//'
            echo
            echo "Recipe options:"
            echo "  --n_labeled_hours        hours of labeled training talks [50]"
            echo "  --labeled_fraction       fraction of training audio to label instead of hours []"
            echo "  --tedlium2               corpus root containing TEDLIUM_release2/ [\${TEDLIUM2:-downloads}]"
            echo "  --local_extra            more options for local/data.sh (e.g. \"--url URL --verify false\") []"
            echo
            echo "Everything else goes to bilevel_asr.sh:"
            args+=(--help); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
split_opts=
[ -n "${n_labeled_hours}" ] && split_opts="--n_labeled_hours ${n_labeled_hours}"
[ -n "${labeled_fraction}" ] && split_opts="--labeled_fraction ${labeled_fraction}"
# the command line written into RESULTS.md and the model cards (values with spaces stay quoted)
# shellcheck source=../../TEMPLATE/asr1/scripts/shell_quote.sh
. scripts/shell_quote.sh
export_run_cmd "${orig_args[@]}"

./bilevel_asr.sh \
    --local_data_opts "--tedlium2 ${tedlium2} ${split_opts} ${local_extra}" \
    --train_set train_labeled --train_unlab_set train_unlabeled --valid_set dev --test_sets "dev test" \
    --ngpu 1 --nj 16 --inference_nj 8 \
    --token_type bpe --nbpe 500 --bpemode unigram --bpe_train_text data/train_labeled/text \
    --speed_perturb_factors "0.9 1.0 1.1" --max_wav_duration 30 \
    --supervised_config conf/tedlium2/supervised.yaml --pt_config conf/tedlium2/pretrain.yaml \
    --just_config conf/tedlium2/weighted_sum.yaml --bljust_config conf/tedlium2/bljust.yaml \
    --inference_config conf/decode_hybrid_beam10.yaml --inference_asr_model valid.acc.ave.pth \
    "${args[@]}"
