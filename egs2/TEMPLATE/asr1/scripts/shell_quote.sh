# shellcheck shell=bash
# shell_quote.sh: quote_args, for the command lines that recipes write into RESULTS.md, model cards
# and exp/*/run.sh. A user copies them into a shell, so an option value with spaces
# (--system "supervised bljust") must come back as one word.

# quote_args <arg>...: the args as shell words, each preceded by a space; an arg with characters
# outside [A-Za-z0-9_./:=,@+%-] (or an empty one) is single-quoted, so `eval "set --$(quote_args "$@")"`
# gives back exactly "$@".
quote_args() {
    local a out=""
    for a in "$@"; do
        if [[ -z ${a} || ${a} =~ [^A-Za-z0-9_./:=,@+%-] ]]; then
            a="'${a//\'/\'\\\'\'}'"
        fi
        out+=" ${a}"
    done
    printf '%s' "${out}"
}

# export_run_cmd <arg>...: called by a recipe's run.sh (from its own directory) with its original
# arguments; exports BILEVEL_RUN_CMD="egs2/<corpus>/asr1/run.sh <quoted args>" (the path relative to
# the repository root, i.e. three levels up), which bilevel_asr.sh writes as the run's command line.
# An outer BILEVEL_RUN_CMD (a wrapper such as local/label_budget.sh) is kept.
export_run_cmd() {
    local root
    root=$(cd ../../.. && pwd)
    export BILEVEL_RUN_CMD="${BILEVEL_RUN_CMD:-${PWD#"${root}"/}/run.sh$(quote_args "$@")}"
}
