# shellcheck shell=bash
# log.sh: log and die for bilevel_asr.sh and scripts/hubert_ptft.sh (sourced; the caller sets
# SCRIPT_NAME). Every line goes to stderr as "<time> (<script>:<line>:<function>) <message>".
log() {
    local fn=${FUNCNAME[1]:-main}
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (${SCRIPT_NAME}:${BASH_LINENO[0]}:${fn}) $*" >&2
}
die() {
    log "ERROR: $*"
    exit 1
}
