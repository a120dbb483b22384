#!/usr/bin/env bash
# Usage: ./run.sh [--an4_root DIR] [bilevel_asr.sh options]
#        ./run.sh --help
#
# ESPnet's mini_an4 CI corpus (real NIST .sph audio, read in place) with the tiny CPU models of
# conf/tiny. AN4 has no unlabeled audio, so the labeled training audio (train_nodev) doubles as
# the unlabeled set: the SSL level sees the same utterances without their transcripts. This
# recipe checks the plumbing on real audio; its numbers say nothing about semi-supervised gains.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")"

an4_root=${AN4_ROOT:-/work/shared/data/mini_an4/downloads/an4}
args=()
orig_args=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --an4_root) an4_root=$2; shift 2 ;;
        --help|-h)
            sed -n '2,8p' "$self" | sed 's/^# \{0,1\}//'
            echo
            echo "Recipe options:"
            echo "  --an4_root               AN4 tree with etc/ and wav/ [\${AN4_ROOT:-/work/shared/data/mini_an4/downloads/an4}]"
            echo
            echo "Everything else goes to bilevel_asr.sh:"
            args+=(--help); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
# the command line written into RESULTS.md and the model cards (values with spaces stay quoted)
# shellcheck source=../../TEMPLATE/asr1/scripts/shell_quote.sh
. scripts/shell_quote.sh
export_run_cmd "${orig_args[@]}"

./bilevel_asr.sh \
    --local_data_opts "--an4_root ${an4_root}" \
    --train_set train_nodev --train_unlab_set train_nodev --valid_set train_dev --test_sets "train_dev test" \
    --ngpu 0 --nj 1 --inference_nj 2 --train_jobs 2 \
    --token_type char --min_wav_duration 0.1 --max_wav_duration 20 \
    --supervised_config conf/tiny/supervised.yaml --pt_config conf/tiny/pretrain.yaml \
    --just_config conf/tiny/weighted_sum.yaml --bljust_config conf/tiny/bljust.yaml \
    --inference_config conf/decode_ctc_greedy.yaml --inference_asr_model valid.cer_ctc.ave.pth \
    "${args[@]}"
