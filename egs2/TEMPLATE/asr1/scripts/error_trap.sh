# shellcheck shell=bash
# error_trap.sh: the failure report and logged-command runner shared by bilevel_asr.sh and
# scripts/hubert_ptft.sh (sourced; the caller defines log() and SCRIPT_NAME).
#   failed_what  what is running now, for the error line  (e.g. "stage 11", "step c (HuBERT pre-training)")
#   rerun_hint   the last line of the report               (how to continue after fixing the problem)
#   current_log  the log of the command running now; run_logged sets and clears it
failed_what=${failed_what:-setup}
rerun_hint=${rerun_hint:-fix the problem and rerun the same command}
current_log=""

on_error() {
    local rc=$? line=$1
    log "ERROR: ${failed_what} failed (exit ${rc}, ${SCRIPT_NAME}:${line})${current_log:+; log: ${current_log}}"
    if [ -n "${current_log}" ] && [ -f "${current_log}" ]; then
        echo "----- last lines of ${current_log} -----" >&2
        tail -n 15 "${current_log}" >&2
        echo "-----" >&2
    fi
    log "${rerun_hint}"
    exit "${rc}"
}
trap 'on_error ${LINENO}' ERR

# run_logged <log> <command...>: the command's output is appended to <log>, after a header line
# with the time and the command; on failure the ERR trap names the log.
run_logged() {
    local logfile=$1; shift
    mkdir -p "$(dirname "${logfile}")"
    current_log=${logfile}
    echo "# $(date '+%Y-%m-%dT%H:%M:%S') $*" >> "${logfile}"
    "$@" >> "${logfile}" 2>&1
    current_log=""
}
