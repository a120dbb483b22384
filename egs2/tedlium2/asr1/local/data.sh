#!/usr/bin/env bash
# Usage: local/data.sh [--tedlium2 DIR] [--download true|false] [--url URL] [--verify true|false]
#                      [--n_labeled_hours 50 | --labeled_fraction F] [--seed 0]
#
# Stage 1 of egs2/tedlium2/asr1. Prepares, in ${BILEVEL_DATADIR:-data}:
#   train_labeled    whole talks (speakers) in a seeded random order until --n_labeled_hours
#                    (default 50 h of the ~207 h of training speech) or --labeled_fraction
#   train_unlabeled  all other training talks, transcripts removed
#   dev, test        the official TED-LIUM 2 dev and test sets
# Each dir has wav.scp (the .sph talks, read in place), segments, text, utt2spk, spk2utt; stage 3
# cuts the segments into wav files. --tedlium2 (default: $TEDLIUM2, else downloads) contains
# TEDLIUM_release2/; with --download true a missing corpus is downloaded from OpenSLR (SHA-256
# verified unless --verify false) and extracted.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh:${BASH_LINENO[0]}) $*" >&2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

tedlium2=${TEDLIUM2:-downloads}
download=true
url=
verify=true
n_labeled_hours=
labeled_fraction=
seed=0
while [ $# -gt 0 ]; do
    case $1 in
        --tedlium2) tedlium2=$2; shift 2 ;;
        --download) download=$2; shift 2 ;;
        --url) url=$2; shift 2 ;;
        --verify) verify=$2; shift 2 ;;
        --n_labeled_hours) n_labeled_hours=$2; shift 2 ;;
        --labeled_fraction) labeled_fraction=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        *) log "ERROR: unknown option $1"; usage >&2; exit 2 ;;
    esac
done
datadir=${BILEVEL_DATADIR:-data}
opts=(--seed "${seed}")
if [ "${download}" = true ]; then
    opts+=(--download)
    [ -n "${url}" ] && opts+=(--url "${url}")
    [ "${verify}" = true ] || opts+=(--no_verify)
fi
[ -n "${n_labeled_hours}" ] && opts+=(--n_labeled_hours "${n_labeled_hours}")
[ -n "${labeled_fraction}" ] && opts+=(--labeled_fraction "${labeled_fraction}")
log "preparing TED-LIUM 2 from ${tedlium2} (download=${download})"
python3 -m espnet_bilevel.bin.prepare_tedlium2 --root "${tedlium2}" --out "${datadir}" "${opts[@]}"
rm -f "${datadir}/train_unlabeled/text"
log "done"
