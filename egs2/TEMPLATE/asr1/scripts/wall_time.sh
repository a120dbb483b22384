# shellcheck shell=bash
# wall_time.sh: training-time bookkeeping shared by bilevel_asr.sh (stage 11) and
# scripts/hubert_ptft.sh (sourced). A failed attempt's seconds are kept in <exp>/.train_wall_partial
# (CPU: <exp>/.train_cpu_partial_ms) and added when a rerun finishes, so a resumed run reports its
# whole training time; every file is written via <file>.tmp + rename, so a reader never sees half
# a number.
#   write_seconds <file> <seconds>   atomic write of one integer
#   wall_time_begin <exp>             start this attempt's clocks (wall and CPU)
#   wall_time_failed <exp>            add this attempt's seconds to the partial files
#   cpu_time_done <exp> <file>        write the total CPU seconds (user + system) of the commands this
#                                     shell ran and waited for since wall_time_begin to <file>
#   wall_time_done <exp>              echo the total wall seconds (earlier failed attempts included)
#                                     and drop both partial files (so: cpu_time_done first, if at all)
# CPU time is what a comparison of training cost can use when other jobs share the cores: a
# single-threaded run's wall time grows with the load, its CPU time hardly does. The CPU clock is
# bash's `times` (children that were waited for, their own children included), so wall_time_begin,
# wall_time_failed and cpu_time_done must run in the shell that ran the training command, never
# inside $(...), whose subshell starts with no children.
write_seconds() {
    echo "$2" > "$1.tmp"
    mv "$1.tmp" "$1"
}

# _children_cpu_ms <exp>: _cpu_ms = CPU milliseconds of this shell's waited-for children so far
_children_cpu_ms() {
    local f=$1/.cpu_times.tmp user sys
    times > "${f}"  # line 1: this shell, line 2: its children, e.g. "1m2.345s 0m0.120s"
    { read -r _ _; read -r user sys; } < "${f}"
    rm -f "${f}"
    _cpu_ms=$(( $(_times_ms "${user}") + $(_times_ms "${sys}") ))
}
_times_ms() {  # "1m2.345s" -> 62345
    local m=${1%%m*} s=${1#*m}
    s=${s%s}
    echo $(( 10#${m} * 60000 + 10#${s%.*} * 1000 + 10#${s#*.} ))
}

wall_time_begin() {
    _wall_start=$(date +%s)
    _wall_partial=$(cat "$1/.train_wall_partial" 2>/dev/null || echo 0)
    _children_cpu_ms "$1"
    _cpu_start=${_cpu_ms}
    _cpu_partial=$(cat "$1/.train_cpu_partial_ms" 2>/dev/null || echo 0)
}

wall_time_failed() {
    write_seconds "$1/.train_wall_partial" $(( $(date +%s) - _wall_start + _wall_partial ))
    _children_cpu_ms "$1"
    write_seconds "$1/.train_cpu_partial_ms" $(( _cpu_ms - _cpu_start + _cpu_partial ))
}

wall_time_done() {
    echo $(( $(date +%s) - _wall_start + _wall_partial ))
    rm -f "$1/.train_wall_partial" "$1/.train_cpu_partial_ms"
}

cpu_time_done() {
    _children_cpu_ms "$1"
    write_seconds "$2" $(( (_cpu_ms - _cpu_start + _cpu_partial + 500) / 1000 ))
    rm -f "$1/.train_cpu_partial_ms"
}
