# shellcheck shell=bash
# wall_time.sh: training wall-time bookkeeping shared by bilevel_asr.sh (stage 11) and
# scripts/hubert_ptft.sh (sourced). A failed attempt's seconds are kept in <exp>/.train_wall_partial
# and added when a rerun finishes, so a resumed run reports its whole training time; every file is
# written via <file>.tmp + rename, so a reader never sees half a number.
#   write_seconds <file> <seconds>   atomic write of one integer
#   wall_time_begin <exp>             start this attempt's clock
#   wall_time_failed <exp>            add this attempt's seconds to <exp>/.train_wall_partial
#   wall_time_done <exp>              echo the total seconds (earlier failed attempts included)
#                                     and drop <exp>/.train_wall_partial
write_seconds() {
    echo "$2" > "$1.tmp"
    mv "$1.tmp" "$1"
}

wall_time_begin() {
    _wall_start=$(date +%s)
    _wall_partial=$(cat "$1/.train_wall_partial" 2>/dev/null || echo 0)
}

wall_time_failed() {
    write_seconds "$1/.train_wall_partial" $(( $(date +%s) - _wall_start + _wall_partial ))
}

wall_time_done() {
    echo $(( $(date +%s) - _wall_start + _wall_partial ))
    rm -f "$1/.train_wall_partial"
}
