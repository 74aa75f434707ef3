#!/usr/bin/env bash
# Run the whole test suite: installs what is missing, builds the tiny test checkpoint, starts a
# private Redis on a free port and a real Celery vision worker, runs pytest "$@", stops them.
# Exits with pytest's exit code.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

ensure_system_packages redis-server libmagic1 g++ ninja-build chromium clamav-daemon fonts-dejavu-core fonts-wqy-zenhei  # fonts: rendered OCR test pages
ensure_venv

export DJANGO_ENV=test
# Overridable, so several runs in one checkout can each keep their own test database and logs.
export DATA_DIR="${DATA_DIR:-$REPO_ROOT/data}"
RUN_DIR="$DATA_DIR/test-run"
# Test uploads stay in the run folder, not next to the development server's.
export MEDIA_ROOT="$RUN_DIR/media"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/redis"
# A fresh test database file, shared by pytest and the worker (see settings: DJANGO_ENV=test).
rm -f "$DATA_DIR"/test-db.sqlite3*

# The tiny random-weight checkpoint the engine tests and the test worker load. Rebuilt when the
# writer changes.
CHECKPOINT="$DATA_DIR/checkpoints/tiny"
WRITER=(vision/engine/testing/checkpoint.py vision/engine/testing/corpus.py)
want=$(cat "${WRITER[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$CHECKPOINT/.writer.sha256" 2>/dev/null)" != "$want" ]; then
    log "building the tiny test checkpoint"
    rm -rf "$CHECKPOINT"
    python -m vision.engine.testing.checkpoint --size tiny "$CHECKPOINT"
    echo "$want" > "$CHECKPOINT/.writer.sha256"
fi
export VISION_MODEL="$CHECKPOINT"
python manage.py collectstatic --noinput -v 0
export VISION_THREADS=${VISION_THREADS:-1}

PIDS=()
cleanup() {
    # Newest first, each waited for: the worker and web server stop before Redis goes away.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

REDIS_PORT=$(free_port)
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis.log" &
PIDS+=($!)
wait_for_redis "$REDIS_URL" 15

# Fast heartbeats so tests see workers come and go within seconds.
export WORKER_HEARTBEAT_INTERVAL_SECONDS=1 WORKER_HEARTBEAT_TTL_SECONDS=4
export TEST_WORKER_NAME="test-vision@$(hostname)"
celery -A docplatform worker -P threads -Q vision -c 4 -n "$TEST_WORKER_NAME" \
    --without-gossip --without-mingle -l info >"$RUN_DIR/worker.log" 2>&1 &
PIDS+=($!)
export TEST_WORKER_LOG="$RUN_DIR/worker.log"

log "Redis on $REDIS_URL, worker $TEST_WORKER_NAME (log: $TEST_WORKER_LOG)"
set +e
python -m pytest "$@"
code=$?
set -e
[ $code -ne 0 ] && log "pytest failed (exit $code); worker log: $TEST_WORKER_LOG"
exit $code
