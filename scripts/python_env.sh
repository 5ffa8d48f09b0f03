# The pinned Python environment in .venv, shared by start_mlflow.sh (the notebooks' kernel)
# and tests/run.sh. Sourced, not run; expects $ROOT. Rebuilt only when requirements.txt,
# pyproject.toml or the server plugin's pyproject.toml changed (their checksums are kept
# in .venv/.requirements.sha256).
# MLFLOW_VENV=DIR names an environment of your own instead, used as it is.
VENV="${MLFLOW_VENV:-$ROOT/.venv}"

python_env_ready() {
    [ -x "$ROOT/.venv/bin/python" ] && (cd "$ROOT" && sha256sum --status -c .venv/.requirements.sha256 2>/dev/null)
}

find_python311() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    return 1
}

# Create or update .venv, showing which package pip is on ("[n/N] name") instead of
# minutes of silence; pip's full output goes to .venv/pip-install.log.
ensure_python_env() {
    if [ -n "${MLFLOW_VENV:-}" ]; then
        [ -x "$VENV/bin/mlflow" ] || {
            echo "$(basename "$0"): MLFLOW_VENV=$VENV has no bin/mlflow: install requirements.txt into it, or unset MLFLOW_VENV to use .venv" >&2
            return 1
        }
        echo "Python environment: $VENV (MLFLOW_VENV, used as it is)"
        return
    fi
    if python_env_ready; then
        echo "Python environment: .venv is up to date with requirements.txt"
        return
    fi
    local python total log
    python="$(find_python311)" || {
        echo "$(basename "$0"): Python 3.11 not found: the pinned environment needs it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; or pyenv install 3.11)" >&2
        return 1
    }
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        echo "Creating .venv with $python"
        "$python" -m venv "$ROOT/.venv" || return 1
    fi
    total="$(grep -cE '^([A-Za-z0-9]|-e )' "$ROOT/requirements.txt" || true)"
    log="$ROOT/.venv/pip-install.log"
    echo "Installing the pinned packages into .venv ($total; the first time takes several minutes)"
    if ! (cd "$ROOT" && .venv/bin/pip install --disable-pip-version-check -r requirements.txt 2>&1) \
        | tee "$log" \
        | awk -v total="$total" '/^(Collecting|Processing|Obtaining) / {
                                     n++; name = $2; sub(".*/", "", name)
                                     printf "  [%d/%d] %s\n", n, total, name; fflush() }
                                 /^Installing collected/ { print "  installing..."; fflush() }'; then
        tail -n 15 "$log" >&2
        echo "$(basename "$0"): installing requirements.txt into .venv failed; the full log is $log" >&2
        return 1
    fi
    (cd "$ROOT" && sha256sum requirements.txt pyproject.toml mlflow_docker_setup/mlflow/server_plugin/pyproject.toml >.venv/.requirements.sha256)
    echo "Python environment ready: .venv (select it as the notebooks' kernel in VS Code or Jupyter)"
}
