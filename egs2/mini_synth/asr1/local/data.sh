#!/usr/bin/env bash
# Usage: local/data.sh [--small true|false] [--seed 0] [--extra_unlabeled 0] [--corpus_dir downloads/mini_synth]
#
# Stage 1 of egs2/mini_synth/asr1: synthesize the embedded espeak-ng + sox corpus (deterministic
# from --seed; needs the Debian packages espeak-ng and sox) and copy its Kaldi-style dirs to
# ${BILEVEL_DATADIR:-data}/{train_labeled,train_unlabeled,dev,test}. The transcripts of
# train_unlabeled are removed there, so nothing downstream can use them by mistake.
#   --small false: 60 labeled / 600 unlabeled / 40 dev / 60 test utterances (~1 min to synthesize)
#   --small true : 16 / 24 / 6 / 6 (CI-sized, ~2 s)
#   --extra_unlabeled N: N more unlabeled utterances; labeled, dev and test stay those without it
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh:${BASH_LINENO[0]}) $*" >&2; }
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

small=false
seed=0
extra_unlabeled=0
corpus_dir=
while [ $# -gt 0 ]; do
    case $1 in
        --small) small=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --extra_unlabeled) extra_unlabeled=$2; shift 2 ;;
        --corpus_dir) corpus_dir=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        *) log "ERROR: unknown option $1"; usage >&2; exit 2 ;;
    esac
done
datadir=${BILEVEL_DATADIR:-data}
[[ ${extra_unlabeled} =~ ^[0-9]+$ ]] || { log "ERROR: --extra_unlabeled must be a non-negative integer, got '${extra_unlabeled}'"; exit 2; }
# each corpus its own dir (synth_corpus refuses to change a finished one)
extra_tag=
[ "${extra_unlabeled}" -eq 0 ] || extra_tag=_extra${extra_unlabeled}
if [ "${small}" = true ]; then
    sizes=(--n_labeled 16 --n_unlabeled 24 --n_dev 6 --n_test 6)
    [ -n "${corpus_dir}" ] || corpus_dir=downloads/mini_synth_small${extra_tag}_seed${seed}
else
    sizes=()
    [ -n "${corpus_dir}" ] || corpus_dir=downloads/mini_synth${extra_tag}_seed${seed}
fi
for tool in espeak-ng sox; do
    command -v "${tool}" > /dev/null || { log "ERROR: ${tool} not found (apt-get install espeak-ng sox)"; exit 1; }
done

log "synthesizing the corpus into ${corpus_dir} (seed ${seed}, small=${small}, extra unlabeled ${extra_unlabeled})"
python3 -m espnet_bilevel.bin.synth_corpus --out "${corpus_dir}" --seed "${seed}" "${sizes[@]}" \
    --extra_unlabeled "${extra_unlabeled}" --jobs 2

mkdir -p "${datadir}"
for split in train_labeled train_unlabeled dev test; do
    rm -rf "${datadir}/${split}.tmp"
    cp -r "${corpus_dir}/data/${split}" "${datadir}/${split}.tmp"
    [ "${split}" = train_unlabeled ] && rm -f "${datadir}/${split}.tmp/text"
    rm -rf "${datadir:?}/${split}"
    mv "${datadir}/${split}.tmp" "${datadir}/${split}"
    log "${datadir}/${split}: $(wc -l < "${datadir}/${split}/wav.scp") utterances"
done
