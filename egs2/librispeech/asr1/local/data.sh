#!/usr/bin/env bash
# Usage: local/data.sh [--librispeech DIR] [--download true|false] [--url_base URL] [--verify true|false]
#                      [--labeled_subset_hours H] [--subset_seed 0]
#                      [--unlab_parts "train-clean-360 train-other-500"]
#
# Stage 1 of egs2/librispeech/asr1. Prepares, in ${BILEVEL_DATADIR:-data}:
#   train_clean_100            labeled set (or train_clean_100_<H>h with --labeled_subset_hours H:
#                              whole speakers in a seeded random order until H hours)
#   train_unlab                unlabeled set = --unlab_parts combined, transcripts removed
#   dev                        validation = dev_clean + dev_other
#   dev_clean dev_other test_clean test_other   test sets
# Parts missing under --librispeech (default: $LIBRISPEECH, else downloads) are downloaded from
# OpenSLR (--url_base) with --download true, SHA-256 verified (unless --verify false) and
# extracted; parts that exist are never downloaded. wav.scp points at the .flac files in place.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh:${BASH_LINENO[0]}) $*" >&2; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

librispeech=${LIBRISPEECH:-downloads}
download=true
url_base=
verify=true
labeled_subset_hours=
subset_seed=0
unlab_parts="train-clean-360 train-other-500"
while [ $# -gt 0 ]; do
    case $1 in
        --librispeech) librispeech=$2; shift 2 ;;
        --download) download=$2; shift 2 ;;
        --url_base) url_base=$2; shift 2 ;;
        --verify) verify=$2; shift 2 ;;
        --labeled_subset_hours) labeled_subset_hours=$2; shift 2 ;;
        --subset_seed) subset_seed=$2; shift 2 ;;
        --unlab_parts) unlab_parts=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        *) log "ERROR: unknown option $1"; usage >&2; exit 2 ;;
    esac
done
datadir=${BILEVEL_DATADIR:-data}
read -ra unlab <<< "${unlab_parts}"
parts=(dev-clean dev-other test-clean test-other train-clean-100 "${unlab[@]}")

opts=()
if [ "${download}" = true ]; then
    opts+=(--download)
    [ -n "${url_base}" ] && opts+=(--url_base "${url_base}")
    [ "${verify}" = true ] || opts+=(--no_verify)
fi
log "preparing ${parts[*]} from ${librispeech} (download=${download})"
python3 -m espnet_bilevel.bin.prepare_librispeech --root "${librispeech}" --out "${datadir}" \
    --parts "${parts[@]}" "${opts[@]}"

python3 pyscripts/data_tools.py combine --out "${datadir}/dev" "${datadir}/dev_clean" "${datadir}/dev_other"
unlab_dirs=()
for p in "${unlab[@]}"; do unlab_dirs+=("${datadir}/${p//-/_}"); done
python3 pyscripts/data_tools.py combine --drop_text --out "${datadir}/train_unlab" "${unlab_dirs[@]}"
if [ -n "${labeled_subset_hours}" ]; then
    python3 pyscripts/data_tools.py subset_hours --in "${datadir}/train_clean_100" \
        --out "${datadir}/train_clean_100_${labeled_subset_hours}h" --hours "${labeled_subset_hours}" --seed "${subset_seed}"
fi
log "done"
