# shellcheck shell=bash
# path.sh: environment of every recipe (sourced by bilevel_asr.sh and run.sh; the recipe dir is $PWD).
# Activates the project venv tools/venv of the repository that contains this recipe
# (egs2/<corpus>/asr1 -> ../../..), and keeps thread counts low so parallel jobs do not fight.
MAIN_ROOT=$(cd "${PWD}/../../.." && pwd)
export MAIN_ROOT
if [ -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/tools/venv/bin/activate"
else
    echo "path.sh: ${MAIN_ROOT}/tools/venv not found; install the project first (see README.md)" >&2
    return 1
fi
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
# sclite from Debian's sctk package is not on PATH by default
[ -d /usr/lib/sctk/bin ] && export PATH="${PATH}:/usr/lib/sctk/bin"
