#!/usr/bin/env bash
# Usage: scripts/hubert_ptft.sh --python <python> --train_dir <dump train dir> --unlab_dir <dump unlab dir> \
#            --valid_dir <dump valid dir> --token_list <tokens.txt> --token_type <char|bpe> [--bpemodel <model>] \
#            --asr_stats_dir <asr stats dir> --pt_config <hubert pt yaml> --ft_config <ft yaml> \
#            --pt_exp <dir> --ft_exp <dir> --ngpu <n> [--pt_args "..."] [--ft_args "..."] [--n_clusters N]
#            [--nj N] [--kmeans_args "..."] [--pt_model valid.loss.best.pth]
#
# The standard ESPnet PT+FT reference system ("what ESPnet itself offers"): HuBERT pre-training with
# stock espnet2.bin.hubert_train (iteration 1: targets are k-means clusters of MFCC frames), then
# stock espnet2.bin.asr_train CTC fine-tuning initialised from the pre-trained encoder. No
# espnet_bilevel code runs inside either model; espnet_bilevel only computes the k-means labels and
# re-averages the FT checkpoints the way every other system of the compare table is averaged.
# Runs every job on this machine (--ngpu > 1: one node, ESPnet's own multiprocessing DDP).
#
# Reads:  <unlab_dir>/wav.scp (PT audio), <valid_dir>/{wav.scp,text}, <train_dir>/{wav.scp,text},
#         <token_list> [<bpemodel>], <asr_stats_dir>/{train,valid}/{speech_shape,text_shape.<token_type>}
#         (the shapes of ASR stage 10; raw audio only: feats_stats.npz is not used, because the HuBERT
#         encoder reads the waveform, without frontend or global MVN, as ESPnet's HuBERT configs do)
# Writes (each step is skipped when its marker exists; rerun after a failure to continue):
#   a  <pt_exp>/labels/{train,valid}/text, tokens.txt, km_model.npz, kmeans.json     marker labels/.done
#        espnet_bilevel.bin.hubert_kmeans_labels (fit on <unlab_dir>)          log <pt_exp>/logs/labels.log
#   b  <pt_exp>/stats/{train,valid}/{speech_shape,text_shape.word}                   marker stats/.done
#        espnet2.bin.hubert_train --collect_stats true (into stats.tmp, renamed)   log <pt_exp>/logs/stats.log
#   c  <pt_exp>/ (ESPnet files, <pt_model>), train.log, train_wall_seconds            marker .train.done
#        espnet2.bin.hubert_train on the unlabeled audio (--resume true)           log <pt_exp>/train.log
#   d  <ft_exp>/ (ESPnet files, config.yaml, valid.cer_ctc.ave.pth), train.log, train_wall_seconds
#        espnet2.bin.asr_train --init_param <pt_exp>/<pt_model>:encoder:encoder     marker .train.done
#        then python -m espnet_bilevel.bin.average_checkpoints <ft_exp>  log <ft_exp>/logs/average_checkpoints.log
# Wall times (seconds, written via *.tmp + rename): <pt_exp>/train_wall_seconds = PT training (step c),
# <ft_exp>/train_wall_seconds = FT training + checkpoint averaging (step d); the steps before PT training
# are in <pt_exp>/labels_wall_seconds (a) and <pt_exp>/stats_wall_seconds (b). A run that fails and is
# resumed reports the total time of all its attempts.
#
# Options (defaults in brackets):
#   --n_clusters   k-means clusters = HuBERT classes [100]
#   --nj           processes computing MFCCs for k-means [1]
#   --kmeans_args  extra options of hubert_kmeans_labels, e.g. "--fit_portion 1.0 --seed 1" [""]
#   --pt_model     PT checkpoint that initialises the FT encoder [valid.loss.best.pth]
#   --pt_args / --ft_args  extra options of hubert_train / asr_train [""]
#   --bpemodel     sentencepiece model for --token_type bpe [none]
set -eEuo pipefail

SCRIPT_NAME=$(basename "$0")
# shellcheck source-path=SCRIPTDIR source=log.sh
. "$(dirname "${BASH_SOURCE[0]}")/log.sh"
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

# ------------------------------------------------------------------------------------------ options
python=""; train_dir=""; unlab_dir=""; valid_dir=""; token_list=""; token_type=""; bpemodel=none
asr_stats_dir=""; pt_config=""; ft_config=""; pt_exp=""; ft_exp=""; ngpu=""
pt_args=""; ft_args=""; n_clusters=100; nj=1; kmeans_args=""; pt_model=valid.loss.best.pth
ORIGINAL_ARGS=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --help|-h) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
        --*) [ $# -ge 2 ] || { usage >&2; die "option $1 needs a value"; }
             _name=$1; _value=$2; shift 2 ;;
        *) usage >&2; die "unexpected argument '$1'" ;;
    esac
    _name=${_name#--}; _name=${_name//-/_}
    case ${_name} in
        python|train_dir|unlab_dir|valid_dir|token_list|token_type|bpemodel|asr_stats_dir|pt_config|ft_config|\
        pt_exp|ft_exp|ngpu|pt_args|ft_args|n_clusters|nj|kmeans_args|pt_model)
            printf -v "${_name}" '%s' "${_value}" ;;
        *) usage >&2; die "unknown option --${_name}" ;;
    esac
done
for _o in python train_dir unlab_dir valid_dir token_list token_type asr_stats_dir pt_config ft_config pt_exp ft_exp ngpu; do
    [ -n "${!_o}" ] || { usage >&2; die "--${_o} is required"; }
done
case ${token_type} in char|bpe) ;; *) die "--token_type must be char or bpe, got '${token_type}'" ;; esac
for _n in ngpu n_clusters nj; do
    [[ ${!_n} =~ ^[0-9]+$ ]] || die "--${_n} must be a non-negative integer, got '${!_n}'"
done
[ "${n_clusters}" -ge 2 ] || die "--n_clusters must be >= 2"
[ "${nj}" -ge 1 ] || die "--nj must be >= 1"
[ "${pt_exp}" != "${ft_exp}" ] || die "--pt_exp and --ft_exp must differ"

# every input exists before anything runs
need() { [ -e "$1" ] || die "required input '$1' is missing${2:+ ($2)}"; }
for _f in "${unlab_dir}/wav.scp" "${valid_dir}/wav.scp" "${valid_dir}/text" "${train_dir}/wav.scp" \
          "${train_dir}/text" "${token_list}" "${pt_config}" "${ft_config}"; do
    need "${_f}"
done
for _m in train valid; do
    need "${asr_stats_dir}/${_m}/speech_shape" "ASR statistics, stage 10"
    need "${asr_stats_dir}/${_m}/text_shape.${token_type}" "ASR statistics, stage 10"
done
if [ "${token_type}" = bpe ]; then need "${bpemodel}" "--bpemodel, needed by --token_type bpe"; fi
# the HuBERT encoder reads waveforms: the shapes must be sample counts (raw), not (frames,dim) of fbank
if head -n 1 "${asr_stats_dir}/train/speech_shape" | grep -q ','; then
    die "${asr_stats_dir}/train/speech_shape holds feature shapes (--feats_type fbank?); the HuBERT system needs raw audio (--feats_type raw)"
fi
[ -x "$(command -v "${python}")" ] || die "--python ${python}: not an executable"

# shellcheck disable=SC2206  # these options are lists of words
pt_extra=(${pt_args})
# shellcheck disable=SC2206
ft_extra=(${ft_args})
# shellcheck disable=SC2206
km_extra=(${kmeans_args})

labels_dir=${pt_exp}/labels
stats_dir=${pt_exp}/stats
mkdir -p "${pt_exp}/logs" "${ft_exp}/logs"

# ------------------------------------------------------------------------------------------ helpers
rerun_hint="fix the problem and rerun the same command (finished steps are not redone)"
# on_error (ERR trap) and run_logged
# shellcheck source-path=SCRIPTDIR source=error_trap.sh
. "$(dirname "${BASH_SOURCE[0]}")/error_trap.sh"

# shellcheck source-path=SCRIPTDIR source=wall_time.sh
. "$(dirname "${BASH_SOURCE[0]}")/wall_time.sh"

# timed_train <exp> <log> <command...>: run_logged with wall-time bookkeeping; sets TRAIN_SECONDS and
# writes <exp>/train_cpu_seconds
# (a failed attempt's time is added when a rerun finishes, see wall_time.sh)
timed_train() {
    local exp=$1 logfile=$2 rc=0
    shift 2
    wall_time_begin "${exp}"
    current_log=${logfile}
    echo "# $(date '+%Y-%m-%dT%H:%M:%S') $*" >> "${logfile}"
    "$@" >> "${logfile}" 2>&1 || rc=$?
    if [ "${rc}" -ne 0 ]; then
        wall_time_failed "${exp}"
        return "${rc}"
    fi
    current_log=""
    cpu_time_done "${exp}" "${exp}/train_cpu_seconds"  # before wall_time_done (see wall_time.sh)
    TRAIN_SECONDS=$(wall_time_done "${exp}")
}

# multi-GPU on one node: ESPnet spawns one DDP process per GPU (as espnet2.bin.launch does for one node)
dist_args() {
    if [ "${ngpu}" -gt 1 ]; then echo "--multiprocessing_distributed true"; fi
}

log "${SCRIPT_NAME} ${ORIGINAL_ARGS[*]}"

# ------------------------------------------------------------------------------------------ a: k-means labels
failed_what="step a (k-means labels)"
n_tokens=$(( n_clusters + 2 ))  # 0..n-1, <unk>, <sos/eos>
if [ -f "${labels_dir}/.done" ]; then
    _have=$(wc -l < "${labels_dir}/tokens.txt")
    [ "${_have}" -eq "${n_tokens}" ] || \
        die "${labels_dir} holds $(( _have - 2 )) clusters, but --n_clusters is ${n_clusters}: remove ${labels_dir} (and ${pt_exp}'s training) to redo"
    log "step a: ${labels_dir} exists; skipped"
else
    log "step a: ${n_clusters}-means MFCC labels of ${unlab_dir} (fit) and ${valid_dir} -> ${labels_dir} (log: ${pt_exp}/logs/labels.log)"
    _start=$(date +%s)
    run_logged "${pt_exp}/logs/labels.log" "${python}" -m espnet_bilevel.bin.hubert_kmeans_labels \
        --input "train=${unlab_dir}/wav.scp" --input "valid=${valid_dir}/wav.scp" --out_dir "${labels_dir}" \
        --n_clusters "${n_clusters}" --nj "${nj}" "${km_extra[@]}"
    write_seconds "${pt_exp}/labels_wall_seconds" $(( $(date +%s) - _start ))
    touch "${labels_dir}/.done"
    log "step a: done in $(cat "${pt_exp}/labels_wall_seconds") s: $(grep -o '"clusters_used": [0-9]*' "${labels_dir}/kmeans.json")"
fi

# ------------------------------------------------------------------------------------------ b: PT statistics
failed_what="step b (HuBERT statistics)"
pt_common=(--use_preprocessor true --token_type word --token_list "${labels_dir}/tokens.txt"
           --num_classes "${n_clusters}" --config "${pt_config}"
           --train_data_path_and_name_and_type "${unlab_dir}/wav.scp,speech,sound"
           --train_data_path_and_name_and_type "${labels_dir}/train/text,text,text"
           --valid_data_path_and_name_and_type "${valid_dir}/wav.scp,speech,sound"
           --valid_data_path_and_name_and_type "${labels_dir}/valid/text,text,text")
if [ -f "${stats_dir}/.done" ]; then
    log "step b: ${stats_dir} exists; skipped"
else
    log "step b: hubert_train --collect_stats -> ${stats_dir} (log: ${pt_exp}/logs/stats.log)"
    _start=$(date +%s)
    rm -rf "${stats_dir}.tmp"
    run_logged "${pt_exp}/logs/stats.log" "${python}" -m espnet2.bin.hubert_train --collect_stats true \
        "${pt_common[@]}" --ngpu 0 --train_shape_file "${unlab_dir}/wav.scp" \
        --valid_shape_file "${valid_dir}/wav.scp" --output_dir "${stats_dir}.tmp" "${pt_extra[@]}"
    for _m in train valid; do
        # as ESPnet's recipes: the vocabulary size is the last dimension of the text shapes
        awk -v n="${n_tokens}" '{ print $0 "," n }' "${stats_dir}.tmp/${_m}/text_shape" \
            > "${stats_dir}.tmp/${_m}/text_shape.word"
    done
    touch "${stats_dir}.tmp/.done"
    rm -rf "${stats_dir}"
    mv "${stats_dir}.tmp" "${stats_dir}"
    write_seconds "${pt_exp}/stats_wall_seconds" $(( $(date +%s) - _start ))
    log "step b: done in $(cat "${pt_exp}/stats_wall_seconds") s"
fi

# ------------------------------------------------------------------------------------------ c: PT
failed_what="step c (HuBERT pre-training)"
if [ -f "${pt_exp}/.train.done" ]; then
    log "step c: ${pt_exp} already trained; skipped"
else
    log "step c: HuBERT pre-training (${pt_config}) -> ${pt_exp} (log: ${pt_exp}/train.log)"
    # shellcheck disable=SC2046  # dist_args prints a list of words (or nothing)
    timed_train "${pt_exp}" "${pt_exp}/train.log" "${python}" -m espnet2.bin.hubert_train "${pt_common[@]}" \
        --train_shape_file "${stats_dir}/train/speech_shape" --train_shape_file "${stats_dir}/train/text_shape.word" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" --valid_shape_file "${stats_dir}/valid/text_shape.word" \
        --fold_length 80000 --fold_length 500 --resume true --ngpu "${ngpu}" $(dist_args) \
        --output_dir "${pt_exp}" "${pt_extra[@]}"
    [ -e "${pt_exp}/${pt_model}" ] || \
        die "PT finished but ${pt_exp}/${pt_model} is missing (does ${pt_config} select best_model_criterion valid loss? see --pt_model)"
    write_seconds "${pt_exp}/train_wall_seconds" "${TRAIN_SECONDS}"
    rm -f "${pt_exp}/.train_wall_partial"
    touch "${pt_exp}/.train.done"
    log "step c: done in ${TRAIN_SECONDS} s"
fi

# ------------------------------------------------------------------------------------------ d: FT
failed_what="step d (ASR fine-tuning)"
if [ -f "${ft_exp}/.train.done" ]; then
    log "step d: ${ft_exp} already trained; skipped"
else
    [ -e "${pt_exp}/${pt_model}" ] || die "PT model ${pt_exp}/${pt_model} is missing"
    log "step d: stock ASR fine-tuning (${ft_config}) from ${pt_exp}/${pt_model} -> ${ft_exp} (log: ${ft_exp}/train.log)"
    # shellcheck disable=SC2046
    timed_train "${ft_exp}" "${ft_exp}/train.log" "${python}" -m espnet2.bin.asr_train \
        --use_preprocessor true --token_type "${token_type}" --token_list "${token_list}" --bpemodel "${bpemodel}" \
        --non_linguistic_symbols none --cleaner none --g2p none --config "${ft_config}" \
        --encoder_conf "num_classes=${n_clusters}" --init_param "${pt_exp}/${pt_model}:encoder:encoder" \
        --train_data_path_and_name_and_type "${train_dir}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${train_dir}/text,text,text" \
        --valid_data_path_and_name_and_type "${valid_dir}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${valid_dir}/text,text,text" \
        --train_shape_file "${asr_stats_dir}/train/speech_shape" \
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}" \
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}" \
        --fold_length 80000 --fold_length 150 --resume true --ngpu "${ngpu}" $(dist_args) \
        --output_dir "${ft_exp}" "${ft_extra[@]}"
    _ft_seconds=${TRAIN_SECONDS}
    # the same corrected n-best averaging as every espnet_bilevel system (ESPnet 202511's own average
    # is wrong when two criteria share an epoch; see docs/checkpoint_averaging.md)
    log "step d: re-averaging the n-best checkpoints (log: ${ft_exp}/logs/average_checkpoints.log)"
    _start=$(date +%s)
    run_logged "${ft_exp}/logs/average_checkpoints.log" "${python}" -m espnet_bilevel.bin.average_checkpoints "${ft_exp}"
    [ -e "${ft_exp}/valid.cer_ctc.ave.pth" ] || \
        die "${ft_exp}/valid.cer_ctc.ave.pth is missing (does ${ft_config} select best_model_criterion valid cer_ctc?)"
    write_seconds "${ft_exp}/train_wall_seconds" $(( _ft_seconds + $(date +%s) - _start ))
    rm -f "${ft_exp}/.train_wall_partial"
    touch "${ft_exp}/.train.done"
    log "step d: done in $(cat "${ft_exp}/train_wall_seconds") s"
fi
failed_what="setup"
log "finished: PT $(cat "${pt_exp}/train_wall_seconds") s (+ labels $(cat "${pt_exp}/labels_wall_seconds" 2>/dev/null || echo '?') s, stats $(cat "${pt_exp}/stats_wall_seconds" 2>/dev/null || echo '?') s), FT $(cat "${ft_exp}/train_wall_seconds") s"
