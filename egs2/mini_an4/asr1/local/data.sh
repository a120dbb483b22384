#!/usr/bin/env bash
# Usage: local/data.sh [--an4_root /work/shared/data/mini_an4/downloads/an4]
#
# Stage 1 of egs2/mini_an4/asr1: Kaldi-style dirs train, train_nodev, train_dev and test in
# ${BILEVEL_DATADIR:-data} from an AN4 tree (default: $AN4_ROOT, else the shared mini_an4 copy).
# wav.scp points at the NIST .sph files in place: nothing is copied, and soundfile reads them
# directly (no sph2pipe).
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh:${BASH_LINENO[0]}) $*" >&2; }
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

an4_root=${AN4_ROOT:-/work/shared/data/mini_an4/downloads/an4}
while [ $# -gt 0 ]; do
    case $1 in
        --an4_root) an4_root=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        *) log "ERROR: unknown option $1"; usage >&2; exit 2 ;;
    esac
done
datadir=${BILEVEL_DATADIR:-data}
log "preparing AN4 from ${an4_root}"
python3 -m espnet_bilevel.bin.prepare_an4 --an4_root "${an4_root}" --out "${datadir}"
log "done"
