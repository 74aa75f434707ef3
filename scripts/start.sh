#!/usr/bin/env bash
# Start DocPlatform on this machine: system packages, virtualenv, migrations, the admin account,
# Redis (unless REDIS_URL points elsewhere), one Celery vision worker, Celery beat (the periodic
# tasks: the daily retention run) and the ASGI web server.
# Ctrl-C stops everything it started.
#
#   HOST=127.0.0.1 PORT=8000 WORKER_CONCURRENCY=4 bash scripts/start.sh
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-4}
DATA_DIR=${DATA_DIR:-$REPO_ROOT/data}
export DATA_DIR

ensure_system_packages redis-server libmagic1 g++ ninja-build  # g++, ninja: the engine kernels (vision/engine/kernels)
ensure_venv
mkdir -p "$DATA_DIR/redis" "$DATA_DIR/logs"

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    log "stopping"
    # Newest first, each waited for: the worker and web server stop before Redis goes away.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}
trap cleanup INT TERM EXIT

if [ -z "${REDIS_URL:-}" ]; then
    REDIS_PORT=${REDIS_PORT:-6379}
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
        log "using the Redis already listening on 127.0.0.1:$REDIS_PORT"
    else
        log "starting Redis on 127.0.0.1:$REDIS_PORT (data in $DATA_DIR/redis)"
        redis-server "$REPO_ROOT/docker/redis.conf" --port "$REDIS_PORT" --dir "$DATA_DIR/redis" \
            --logfile "$DATA_DIR/logs/redis.log" &
        PIDS+=($!)
        wait_for_redis "$REDIS_URL" 15
    fi
else
    log "using REDIS_URL from the environment"
    wait_for_redis "$REDIS_URL" 15
fi

python manage.py migrate --noinput
python manage.py collectstatic --noinput -v 0
python manage.py ensure_admin

log "starting the Celery vision worker (log: $DATA_DIR/logs/worker.log)"
celery -A docplatform worker -P threads -Q vision -c "$WORKER_CONCURRENCY" -n "vision-$$@%h" \
    --without-gossip -l info >>"$DATA_DIR/logs/worker.log" 2>&1 &
PIDS+=($!)

log "starting Celery beat: the daily retention run (log: $DATA_DIR/logs/beat.log)"
celery -A docplatform beat -l info >>"$DATA_DIR/logs/beat.log" 2>&1 &
PIDS+=($!)

log "starting the web server"
uvicorn docplatform.asgi:application --host "$HOST" --port "$PORT" --proxy-headers &
PIDS+=($!)

password_hint="the password printed above"
[ -f "$DATA_DIR/admin_password" ] && password_hint="the password in $DATA_DIR/admin_password"
[ -n "${ADMIN_PASSWORD:-}" ] && password_hint="ADMIN_PASSWORD"
log "DocPlatform is up: http://$HOST:$PORT/  (log in as 'admin' with $password_hint)"
log "readiness: http://$HOST:$PORT/readyz   stop: Ctrl-C"

# Exit (and stop the rest) as soon as any of them dies.
wait -n "${PIDS[@]}" || true
log "a process exited; shutting down"
