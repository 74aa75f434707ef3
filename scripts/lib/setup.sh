# Shared set-up steps for start.sh and test.sh. Idempotent and fast when already done.
# Sourced, not executed: expects REPO_ROOT to be set.

log() { printf '\033[1m[docplatform]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
    else return 1
    fi
}

_pkg_present() {
    case "$1" in
        redis-server) command -v redis-server >/dev/null 2>&1 ;;
        chromium) command -v chromium >/dev/null 2>&1 ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" ;;
    esac
}

# ensure_system_packages PKG...: install the missing Debian/Ubuntu packages when root or
# passwordless sudo is available; otherwise say what to install and fail.
ensure_system_packages() {
    local missing=()
    for pkg in "$@"; do _pkg_present "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing system packages: ${missing[*]} (install them; no apt-get here)"
    log "installing system packages: ${missing[*]}"
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]}: run as root or with sudo, or install them yourself"
}

# ensure_venv: create .venv and install requirements.txt, skipping pip when the requirements
# file is unchanged since the last successful install.
ensure_venv() {
    local venv="$REPO_ROOT/.venv" stamp="$REPO_ROOT/.venv/.requirements.sha256" want
    if [ ! -x "$venv/bin/python" ]; then
        local py=${PYTHON:-python3}
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$py is older than Python 3.11"
        log "creating virtual environment in .venv"
        if ! "$py" -m venv "$venv" 2>/dev/null; then
            ensure_system_packages python3-venv
            "$py" -m venv "$venv"
        fi
    fi
    want=$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python requirements (torch==2.13.0 CPU build; first time takes a few minutes)"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO_ROOT/requirements.txt"
        echo "$want" > "$stamp"
    fi
    export PATH="$venv/bin:$PATH"
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
    python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_redis URL SECONDS
wait_for_redis() {
    local url=$1 deadline=$((SECONDS + $2))
    until redis-cli -u "$url" ping >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && die "Redis at $url did not come up"
        sleep 0.2
    done
}
