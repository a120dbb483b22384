#!/usr/bin/env bash
# Usage: ./run.sh [--labeled_subset_hours H] [--librispeech DIR] [bilevel_asr.sh options]
#        ./run.sh --help
#
# LibriSpeech: train-clean-100 labeled (or an H-hour speaker subset of it), train-clean-360 +
# train-other-500 unlabeled (860 h), dev = dev-clean + dev-other, decoded on dev/test clean/other.
# Models: conf/librispeech_100/*.yaml (GPU-sized conformer, hybrid CTC/attention, BPE 5000).
# Data: $LIBRISPEECH (or --librispeech) holds LibriSpeech/<part>/; missing parts are downloaded.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"

labeled_subset_hours=
librispeech=${LIBRISPEECH:-downloads}
local_extra=
args=()
orig_args=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --labeled_subset_hours) labeled_subset_hours=$2; shift 2 ;;
        --librispeech) librispeech=$2; shift 2 ;;
        --local_extra) local_extra=$2; shift 2 ;;
        --help|-h)
            sed -n '2,9p' "$self" | sed 's/^# \{0,1\}//'
            echo
            echo "Recipe options:"
            echo "  --labeled_subset_hours   use an H-hour subset of train-clean-100 as the labeled set []"
            echo "  --librispeech            corpus root containing LibriSpeech/ [\${LIBRISPEECH:-downloads}]"
            echo "  --local_extra            more options for local/data.sh (e.g. \"--url_base URL --verify false\") []"
            echo
            echo "Everything else goes to bilevel_asr.sh:"
            args+=(--help); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
train_set=train_clean_100
[ -n "${labeled_subset_hours}" ] && train_set=train_clean_100_${labeled_subset_hours}h
# the command line written into RESULTS.md and the model cards (values with spaces stay quoted)
# shellcheck source=../../TEMPLATE/asr1/scripts/shell_quote.sh
. scripts/shell_quote.sh
export_run_cmd "${orig_args[@]}"

./bilevel_asr.sh \
    --local_data_opts "--librispeech ${librispeech}${labeled_subset_hours:+ --labeled_subset_hours ${labeled_subset_hours}} ${local_extra}" \
    --train_set "${train_set}" --train_unlab_set train_unlab --valid_set dev \
    --test_sets "dev_clean dev_other test_clean test_other" \
    --ngpu 1 --nj 16 --inference_nj 8 --gpu_inference false \
    --token_type bpe --nbpe 5000 --bpemode unigram --bpe_train_text "data/${train_set}/text" \
    --speed_perturb_factors "0.9 1.0 1.1" --max_wav_duration 30 \
    --supervised_config conf/librispeech_100/supervised.yaml --pt_config conf/librispeech_100/pretrain.yaml \
    --just_config conf/librispeech_100/weighted_sum.yaml --bljust_config conf/librispeech_100/bljust.yaml \
    --inference_config conf/decode_hybrid_beam10.yaml --inference_asr_model valid.acc.ave.pth \
    "${args[@]}"
