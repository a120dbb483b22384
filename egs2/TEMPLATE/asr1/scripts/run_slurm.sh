#!/usr/bin/env bash
# Usage: scripts/run_slurm.sh [--partition P] [--gpu N] [--mem M] [--num_threads N] [--num_nodes N]
#                             [--name S] [--time T] [--extra "<srun options>"]
#                             [JOB=<first>:<last>] <log-file> <command> [<args>...]
#
# The "slurm" job runner of cmd.sh: the same interface as scripts/run_local.sh, but every job runs
# through `srun` (blocking) on the cluster. --gpu N asks for N GPUs per node (--gres=gpu:N),
# --num_nodes M starts one task per node (ESPnet's trainer with --dist_launcher slurm reads
# SLURM_PROCID/SLURM_NTASKS from it), --num_threads sets --cpus-per-task. Jobs of a JOB=a:b array
# are submitted at the same time; the exit status is 0 only if all succeed.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

if ! command -v srun > /dev/null; then
    echo "$0: srun not found: this backend needs a Slurm cluster (set cmd_backend=local in cmd.sh)" >&2
    exit 2
fi
opts=(); name=bilevel
while [ $# -gt 0 ]; do
    case $1 in
        --partition) [ -n "$2" ] && opts+=(--partition "$2"); shift 2 ;;
        --gpu) [ "$2" -gt 0 ] && opts+=(--gres "gpu:$2"); shift 2 ;;
        --mem) opts+=(--mem "$2"); shift 2 ;;
        --num_threads) opts+=(--cpus-per-task "$2"); shift 2 ;;
        --num_nodes) opts+=(--nodes "$2" --ntasks-per-node 1); shift 2 ;;
        --name) name=$2; shift 2 ;;
        --time) opts+=(--time "$2"); shift 2 ;;
        --extra) read -ra extra <<< "$2"; opts+=("${extra[@]}"); shift 2 ;;
        --help|-h) usage; exit 0 ;;
        --*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
first=1; last=1; array=false
if [[ $# -gt 0 && $1 =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
    first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; array=true; shift
fi
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
log_template=$1; shift

pids=(); logs=()
for (( j = first; j <= last; j++ )); do
    args=()
    if ${array}; then
        for a in "$@"; do args+=("${a//JOB/${j}}"); done
        log=${log_template//JOB/${j}}
    else
        args=("$@"); log=${log_template}
    fi
    mkdir -p "$(dirname "${log}")"
    {
        printf '# srun %s %s\n' "${opts[*]}" "${args[*]}"
        echo "# Submitted at $(date)"
    } >> "${log}"
    ( rc=0; srun --job-name "${name}" "${opts[@]}" "${args[@]}" >> "${log}" 2>&1 || rc=$?
      echo "# Ended (code ${rc}) at $(date)" >> "${log}"; exit "${rc}" ) &
    pids+=($!); logs+=("${log}")
done
failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "$0: job failed, see ${logs[$i]}" >&2
        failed=$((failed + 1))
    fi
done
[ "${failed}" -eq 0 ] || { echo "$0: ${failed} of ${#pids[@]} job(s) failed" >&2; exit 1; }
