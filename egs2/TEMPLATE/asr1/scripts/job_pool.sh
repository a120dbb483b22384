# shellcheck shell=bash
# job_pool.sh: run_pool, the parallel runner of bilevel_asr.sh's stage 11 (sourced).
#   run_pool <max_jobs> <function> <on_failure> <item>...
# runs "<function> <item>" in a background subshell for every item (with the caller's set -e and
# ERR trap in force), at most <max_jobs> at a time, and starts the next item as soon as ANY running
# one ends: an item that finishes early (or is skipped because it is already done) frees its slot
# at once instead of holding up a whole group. For each failed item "<on_failure> <item> <status>"
# is called. Every job is waited for; returns 1 if any failed.
run_pool() {
    local max=$1 fn=$2 on_failure=$3 item failed=0
    shift 3
    local -A _pool_item_of=()
    for item in "$@"; do
        while [ "${#_pool_item_of[@]}" -ge "${max}" ]; do
            _pool_wait_one "${on_failure}" || failed=1
        done
        "${fn}" "${item}" &
        _pool_item_of[$!]=${item}
    done
    while [ "${#_pool_item_of[@]}" -gt 0 ]; do
        _pool_wait_one "${on_failure}" || failed=1
    done
    return "${failed}"
}

# wait for any one job of run_pool's table (dynamic scope), drop it, report it if it failed.
# Polls instead of "wait -n -p": with two jobs ending together bash 5.2 can answer "no such job"
# for the second one (it was reaped by the first wait -n); "wait <pid>" of an ended child always
# returns its saved status.
_pool_wait_one() {
    local pid rc item
    while true; do
        for pid in "${!_pool_item_of[@]}"; do
            kill -0 "${pid}" 2> /dev/null && continue
            rc=0
            wait "${pid}" || rc=$?
            item=${_pool_item_of[${pid}]}
            unset "_pool_item_of[${pid}]"
            [ "${rc}" -eq 0 ] || { "$1" "${item}" "${rc}"; return 1; }
            return 0
        done
        sleep "${POOL_POLL_SECONDS:-1}"
    done
}
