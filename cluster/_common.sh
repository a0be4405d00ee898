# Shared by the cluster tests (sourced, not run): repository, PATH, messages, sudo, model checks.
# The sourcing script sets TEST_NAME first (the prefix of its messages).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PATH="$REPO/.venv/bin:$PATH"          # rules call `python`; jobs inherit PATH (--export=ALL)
unset SLURM_CONF                             # the cluster is configured at /etc/slurm/slurm.conf
STATE_DIR=${SLURM_LOCAL_DIR:-/tmp/imrepro-slurm}
KEEP=${IMREPRO_SLURM_TEST_KEEP:-0}

say() { echo "[$TEST_NAME] $*"; }
fail() { echo "[$TEST_NAME] FAIL: $*" >&2; exit 1; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || fail "needs root or sudo to start SLURM"
    SUDO=(sudo --preserve-env=SLURM_LOCAL_DIR,SLURM_LOCAL_WAIT_S,SLURM_LOCAL_KILL_WAIT)
fi
command -v snakemake >/dev/null || fail "no snakemake on PATH (make install)"

# A finished model directory: weights, config and the training summary.
check_model_dir() {
    local f
    for f in config.json model.safetensors train_summary.json; do
        [[ -s $1/$f ]] || fail "no $1/$f"
    done
}
