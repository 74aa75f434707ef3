#!/usr/bin/env bash
# Run the test suite: installs what is missing, builds the tiny test checkpoint, and for each
# database in TEST_DATABASES (default "postgres sqlite": both, PostgreSQL first) starts a private
# Redis on a free port, an S3-compatible server (moto) with a bucket, a private PostgreSQL cluster
# when needed and a real Celery vision worker, runs pytest "$@", and stops them. Exits non-zero
# when any database's run failed.
#
#   bash scripts/test.sh tests/vision -q -x                 # both databases
#   TEST_DATABASES=sqlite bash scripts/test.sh tests/vision # one of them (local runs)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

TEST_DATABASES=${TEST_DATABASES:-postgres sqlite}
TEST_DATABASES=${TEST_DATABASES//,/ }
for db in $TEST_DATABASES; do
    case "$db" in postgres | sqlite) ;; *) die "TEST_DATABASES: unknown database '$db' (postgres, sqlite)" ;; esac
done

packages=(redis-server libmagic1 g++ ninja-build chromium clamav-daemon fonts-dejavu-core fonts-wqy-zenhei)  # fonts: rendered OCR test pages
[[ " $TEST_DATABASES " == *" postgres "* ]] && packages+=(postgresql)
ensure_system_packages "${packages[@]}"
ensure_venv

export DJANGO_ENV=test
# Overridable, so several runs in one checkout can each keep their own test database and logs.
export DATA_DIR="${DATA_DIR:-$REPO_ROOT/data}"
RUN_DIR="$DATA_DIR/test-run"
# Test uploads stay in the run folder, not next to the development server's.
export MEDIA_ROOT="$RUN_DIR/media"

# The tiny random-weight checkpoint the engine tests and the test worker load. Rebuilt when the
# writer changes.
CHECKPOINT="$DATA_DIR/checkpoints/tiny"
WRITER=(vision/engine/testing/checkpoint.py vision/engine/testing/tokenizer.py vision/engine/testing/chat_template.jinja vision/engine/testing/corpus.py)
want=$(cat "${WRITER[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$CHECKPOINT/.writer.sha256" 2>/dev/null)" != "$want" ]; then
    log "building the tiny test checkpoint"
    rm -rf "$CHECKPOINT"
    python -m vision.engine.testing.checkpoint --size tiny "$CHECKPOINT"
    echo "$want" > "$CHECKPOINT/.writer.sha256"
fi
export VISION_MODEL="$CHECKPOINT"
python manage.py collectstatic --noinput -v 0
# The engine's C++ kernels, compiled once per source change (cached by a hash of the sources), here
# rather than inside the first test or the worker's start that would need them.
python -c "from vision.engine import kernels; kernels.module()"
export VISION_THREADS=${VISION_THREADS:-1}

# Stop commands, run newest first by `stop_all` (after each database's run, and on exit).
STOPS=()
stop_all() {
    local i
    for ((i = ${#STOPS[@]} - 1; i >= 0; i--)); do
        eval "${STOPS[i]}" || true
    done
    STOPS=()
}
trap stop_all EXIT

# stop_pid PID: TERM, then wait for it (the worker stops before the database and Redis go away).
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# PostgreSQL runs as the `postgres` system user when we are root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres: a private cluster in $RUN_DIR/pg (data, unix socket, log) on a free loopback
# port; exports DATABASE_URL and TEST_PG_DATA / TEST_PG_BIN / TEST_PG_PORT, so a test can restart
# it: `runuser -u postgres -- $TEST_PG_BIN/pg_ctl -D $TEST_PG_DATA restart -m fast -w`.
start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$bin/initdb" ] || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"
    local dir="$RUN_DIR/pg"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    export TEST_PG_BIN="$bin" TEST_PG_DATA="$dir/data" TEST_PG_PORT
    TEST_PG_PORT=$(free_port)
    as_pg "$bin/initdb" -D "$TEST_PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || die "initdb failed: $dir/initdb.log"
    # In postgresql.conf, not on pg_ctl's command line, so a test's `pg_ctl restart` keeps them.
    # Loopback and the run folder's socket only; durability off (a throwaway cluster: only an OS
    # crash could lose data, and then the run is lost anyway).
    cat >>"$TEST_PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $TEST_PG_PORT
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
CONF
    as_pg "$bin/pg_ctl" -D "$TEST_PG_DATA" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
        || die "PostgreSQL did not start: $dir/postgres.log"
    STOPS+=("as_pg '$bin/pg_ctl' -D '$TEST_PG_DATA' stop -m fast -w >/dev/null")
    as_pg "$bin/createdb" -h "$dir" -p "$TEST_PG_PORT" -U postgres docplatform_test || die "createdb failed"
    # pytest and the worker both open this database (settings: DJANGO_ENV=test keeps its name).
    export DATABASE_URL="postgres://postgres@127.0.0.1:$TEST_PG_PORT/docplatform_test"
}

# wait_for_s3_bucket SECONDS: create $S3_BUCKET on $S3_ENDPOINT_URL once the server answers.
wait_for_s3_bucket() {
    python - "$1" <<'PY' || die "the S3 server at $S3_ENDPOINT_URL did not come up: $RUN_DIR/s3.log"
import os, sys, time

import boto3
from botocore.exceptions import BotoCoreError

client = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT_URL"],
    region_name=os.environ["S3_REGION"],
    aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
)
deadline = time.monotonic() + float(sys.argv[1])
while True:
    try:
        client.create_bucket(Bucket=os.environ["S3_BUCKET"])
        break
    except BotoCoreError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)
PY
}

# run_suite DATABASE PYTEST_ARGS...: fresh Redis, database and worker, then pytest.
run_suite() {
    local db=$1
    shift
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR/redis"
    unset DATABASE_URL TEST_PG_DATA TEST_PG_BIN TEST_PG_PORT
    if [ "$db" = postgres ]; then
        start_postgres
    else
        # A fresh test database file, shared by pytest and the worker (see settings: DJANGO_ENV=test).
        rm -f "$DATA_DIR"/test-db.sqlite3*
    fi

    REDIS_PORT=$(free_port)
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis.log" &
    STOPS+=("stop_pid $!")
    wait_for_redis "$REDIS_URL" 15

    # An S3-compatible server (moto) for the MEDIA_STORAGE=s3 tests, with their bucket. The suite
    # and the worker above stay on local media (MEDIA_STORAGE unset); a test switches to the
    # bucket through these variables (tests/vision/s3.py).
    S3_PORT=$(free_port)
    export S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" S3_BUCKET=docplatform-test S3_REGION=us-east-1
    export S3_ACCESS_KEY_ID=test-access-key S3_SECRET_ACCESS_KEY=test-secret-key
    moto_server -H 127.0.0.1 -p "$S3_PORT" >"$RUN_DIR/s3.log" 2>&1 &
    STOPS+=("stop_pid $!")
    wait_for_s3_bucket 30

    # Fast heartbeats so tests see workers come and go within seconds.
    export WORKER_HEARTBEAT_INTERVAL_SECONDS=1 WORKER_HEARTBEAT_TTL_SECONDS=4
    export TEST_WORKER_NAME="test-vision@$(hostname)"
    celery -A docplatform worker -P threads -Q vision -c 4 -n "$TEST_WORKER_NAME" \
        --without-gossip --without-mingle -l info >"$RUN_DIR/worker.log" 2>&1 &
    STOPS+=("stop_pid $!")
    export TEST_WORKER_LOG="$RUN_DIR/worker.log"

    log "[$db] Redis on $REDIS_URL, S3 on $S3_ENDPOINT_URL, worker $TEST_WORKER_NAME (log: $TEST_WORKER_LOG)${DATABASE_URL:+, $DATABASE_URL}"
    local code started=$SECONDS
    set +e
    python -m pytest "$@"
    code=$?
    set -e
    log "[$db] pytest exit $code after $((SECONDS - started)) s"
    stop_all
    # The next database's run starts from an empty run folder: keep this one's logs.
    rm -rf "$DATA_DIR/test-logs/$db" && mkdir -p "$DATA_DIR/test-logs/$db"
    find "$RUN_DIR" -name '*.log' -not -path '*/media/*' -exec cp {} "$DATA_DIR/test-logs/$db/" \;
    [ $code -ne 0 ] && log "[$db] logs (worker, Redis, PostgreSQL, servers): $DATA_DIR/test-logs/$db/"
    return $code
}

# SQLite keeps the suite's database-touching tests; what never opens the database already ran on
# PostgreSQL and would only double the CI time: the engine tests (no Django at all), the bench
# smoke tests, the invoice-accuracy run (OCR only) and the mid-work fault test (whose database
# fault, a PostgreSQL restart, only exists there; its Redis and worker faults ran there too).
# Applied only to a whole-suite run (no test paths given).
SQLITE_SKIP=(tests/engine tests/bench tests/vision/ocr/test_invoice_accuracy.py tests/reliability/test_faults_mid_work.py)
whole_suite=1
for arg in "$@"; do [[ "$arg" != -* && -e "$arg" ]] && whole_suite=0; done

final=0
summary=()
for db in $TEST_DATABASES; do
    code=0
    extra=()
    if [ "$db" = sqlite ] && [ $whole_suite = 1 ]; then
        for path in "${SQLITE_SKIP[@]}"; do extra+=("--ignore=$path"); done
    fi
    run_suite "$db" "$@" "${extra[@]}" || code=$?
    summary+=("$db: exit $code")
    [ $final -eq 0 ] && final=$code
done
log "results: ${summary[*]}"
exit $final
