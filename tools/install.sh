#!/usr/bin/env bash
# Install espnet-bilevel into a virtual environment, ESPnet style (tools/venv).
#
# Usage:
#   bash tools/install.sh            # venv at tools/venv
#   VENV=/path/to/venv bash tools/install.sh
#
# What it does (each step is skipped when already done, so a second run takes seconds):
#   1. Debian tools the recipes use: sctk (sclite), espeak-ng and sox (embedded corpus), and
#      shellcheck (the recipe tests lint the shell scripts).
#   2. A Python 3.11 venv with espnet==202511 and the tested pair torch==2.9.1 + torchaudio==2.9.1
#      on ONE pip command line, so pip can never swap torch for another build (see README).
#   3. espnet_bilevel itself, editable, with its test extra.
#   4. An import check. A stamp file records the hash of the inputs that define the install.
# It never deletes or patches files inside installed packages.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
VENV=${VENV:-$here/venv}
PYTHON=${PYTHON:-python3}
TORCH_PINS=(torch==2.9.1 torchaudio==2.9.1)

log() { echo "[$(date '+%Y-%m-%d %H:%M:%S')] install.sh: $*"; }

# ---- 1. Debian tools -------------------------------------------------------------------------
missing=()
[ -x /usr/lib/sctk/bin/sclite ] || command -v sclite >/dev/null 2>&1 || missing+=(sctk)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "WARNING: missing Debian packages ${missing[*]} and no root apt-get;"
    log "         install them by hand (sclite scoring falls back to the pure-Python scorer)."
  fi
else
  log "Debian tools present (sctk, espeak-ng, sox, shellcheck)"
fi

# ---- 2./3. venv + packages --------------------------------------------------------------------
stamp="$VENV/.espnet_bilevel_install_stamp"
want=$(cat "$root/setup.py" "$here/install.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  log "venv $VENV is up to date (stamp matches); skipping pip"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
  log "installing espnet==202511 + ${TORCH_PINS[*]} + espnet_bilevel (editable) ..."
  # One command line: the torch pins and espnet's setuptools<74 pin are resolved together.
  "${PIP[@]}" install -q -e "$root[test]" "${TORCH_PINS[@]}"
  # Speech2Text.from_pretrained / packed-model loading: espnet_model_zoo 0.1.7 is the newest for
  # Python 3.11; --no-deps keeps it from re-resolving torch, its two real needs come next.
  "${PIP[@]}" install -q --no-deps espnet_model_zoo==0.1.7
  "${PIP[@]}" install -q pandas huggingface_hub "${TORCH_PINS[@]}"
  echo "$want" > "$stamp"
fi

# ---- 4. import check --------------------------------------------------------------------------
log "import check (ESPnet's import takes ~17 s) ..."
"$VENV/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
import torch, torchaudio
import espnet2.tasks.asr  # noqa: F401  (needs torchaudio at import)
import espnet_bilevel
assert torch.__version__.startswith("2.9.1"), torch.__version__
assert torchaudio.__version__.startswith("2.9.1"), torchaudio.__version__
print(f"OK torch {torch.__version__} torchaudio {torchaudio.__version__} "
      f"espnet_bilevel {espnet_bilevel.__version__}")
PY
log "done. Activate with: . $VENV/bin/activate"
