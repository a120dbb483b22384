#!/usr/bin/env bash
# Usage: scripts/run_local.sh [--gpu N] [--mem M] [--num_threads N] [--num_nodes N] [--name S] [--time T]
#                             [JOB=<first>:<last>] <log-file> <command> [<args>...]
#
# The "local" job runner of cmd.sh: runs <command> on this machine and appends its output to
# <log-file> (directories are created). With JOB=a:b it starts one process per job id at the same
# time, and the word JOB in <log-file> and in every argument is replaced by the job id. Resource
# options are accepted (so cmd.sh backends are interchangeable) and ignored, except --num_nodes>1,
# which a single machine cannot provide. The exit status is 0 only if every job succeeded; on
# failure the failing log files are named on stderr.
# The command is executed directly (no shell), so pipes or redirections must be wrapped in
# "bash -c '...'".
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

num_nodes=1
while [ $# -gt 0 ]; do
    case $1 in
        --gpu|--mem|--num_threads|--name|--time) shift 2 ;;
        --num_nodes) num_nodes=$2; shift 2 ;;
        --help|-h) usage; exit 0 ;;
        --*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ "${num_nodes}" -gt 1 ]; then
    echo "$0: --num_nodes ${num_nodes}: the local backend runs on one machine; use cmd_backend=slurm" >&2
    exit 2
fi

first=1; last=1; array=false
if [[ $# -gt 0 && $1 =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
    first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; array=true; shift
fi
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
log_template=$1; shift

run_one() {
    local log=$1; shift
    local start rc
    mkdir -p "$(dirname "${log}")"
    start=$(date +%s)
    {
        printf '# %s\n' "$*"
        echo "# Started at $(date) on $(hostname)"
    } >> "${log}"
    rc=0
    "$@" >> "${log}" 2>&1 || rc=$?
    {
        echo "# Accounting: time=$(( $(date +%s) - start )) seconds"
        echo "# Ended (code ${rc}) at $(date)"
    } >> "${log}"
    return "${rc}"
}

pids=(); logs=()
for (( j = first; j <= last; j++ )); do
    args=()
    if ${array}; then
        for a in "$@"; do args+=("${a//JOB/${j}}"); done
        log=${log_template//JOB/${j}}
    else
        args=("$@"); log=${log_template}
    fi
    run_one "${log}" "${args[@]}" &
    pids+=($!); logs+=("${log}")
done

failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "$0: job failed, see ${logs[$i]}" >&2
        failed=$((failed + 1))
    fi
done
if [ "${failed}" -gt 0 ]; then
    echo "$0: ${failed} of ${#pids[@]} job(s) failed" >&2
    exit 1
fi
