#!/usr/bin/env bash
# Regenerate the committed example report (reports/example.md + reports/example.html) from
# real runs on this machine: the kernels micro-benchmarks, the default workload, an ablation
# over all 16 flag sets, and the three profilers on the naive path.
#
#   scripts/make_example_report.sh            # about 5-10 minutes on an idle 2-core machine
#   STORE=/tmp/runs NAME=reports/mine scripts/make_example_report.sh
#
# Numbers depend on the machine and its load; run it on a quiet machine. On a shared machine
# (another process holding a core) multi-threaded OpenBLAS calls wait for the busy core, so the
# committed example was made with one BLAS thread:
#   OPENBLAS_NUM_THREADS=1 scripts/make_example_report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-profiles/runs}
NAME=${NAME:-reports/example}
ABLATION_TOKENS=${ABLATION_TOKENS:-100}
PROFILE_TOKENS=${PROFILE_TOKENS:-40}

run_id() { python -c 'import json, sys; print(json.load(sys.stdin)["run_id"])'; }

echo "kernels..." >&2
KERNELS=$(smbench kernels --out "$STORE" --json | run_id)
echo "default workload..." >&2
DEFAULT=$(smbench run --out "$STORE" --json | run_id)
echo "ablation (16 flag sets, $ABLATION_TOKENS tokens)..." >&2
ABLATION=$(smbench run --ablation --tokens "$ABLATION_TOKENS" --out "$STORE" --json | run_id)
REFS=("$DEFAULT" "$ABLATION" "$KERNELS")
echo "profilers..." >&2
if PROFILE=$(smbench profile --with all --tokens "$PROFILE_TOKENS" --out "$STORE" --json | run_id); then
    REFS+=("$PROFILE")
else
    echo "profilers unavailable; the report will say how to add them" >&2
fi
smbench report "${REFS[@]}" --out "$STORE" -o "$NAME"
