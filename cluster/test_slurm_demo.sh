#!/usr/bin/env bash
# End-to-end test of profiles/slurm against a real single-node SLURM on this machine:
#   1. cluster/slurm_local_up.sh (installs slurm + munge if missing, starts the daemons)
#   2. snakemake --profile profiles/slurm --configfile profiles/demo/demo_config.yaml
#      data results_slurm/train/demo_llama__lima_head64__it__ep2 and its evaluation jobs
#      results_slurm/eval/demo_llama__lima_head64__it__ep2/{output_loss,winogrande}.json (its model job
#      and its lm-eval job)
#      into results_slurm/ and logs_slurm/ (the demo's results/ and logs/ are not touched;
#      training checkpoints go to results_slurm/scratch, not to scratch/)
#   3. checks that every convert_dataset, role_record, train_model and evaluation job went through sbatch and
#      COMPLETED (job-completion log of the local cluster, or sacct where accounting exists), as
#      many as the dry run planned, that the localrules did not, and that the model dir is complete
#   4. cluster/test_slurm_preemption.sh on the same cluster and outputs: a training job killed by
#      its time limit (TIMEOUT), retried by Snakemake, resumed from its checkpoint
#      (IMREPRO_SLURM_TEST_PREEMPTION=0 skips it)
#   5. always stops the daemons (trap), also on failure or timeout.
# Needs root (or sudo) for the up/down scripts. Run from anywhere. On 2 cores: steps 1-3 ~4-5
# min, step 4 ~3-4.5 min. Every wait is bounded so that the script, cleanup included, ends within
# IMREPRO_SLURM_TEST_BUDGET_S seconds (default 780; 420 with IMREPRO_SLURM_TEST_PREEMPTION=0): run
# it under an outer `timeout -k 10 -s KILL` of at least budget + 30 (810; 450), because the outer
# SIGKILL skips the trap and would leave the daemons running.
#   cluster/test_slurm_demo.sh
#   IMREPRO_SLURM_TEST_KEEP=1 cluster/test_slurm_demo.sh   # keep outputs and leave SLURM running
set -euo pipefail

TEST_NAME=test_slurm_demo
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"   # REPO, PATH, STATE_DIR, KEEP, say/fail, SUDO
RUN_TIMEOUT_S=${IMREPRO_SLURM_TEST_TIMEOUT_S:-390}
PREEMPTION=${IMREPRO_SLURM_TEST_PREEMPTION:-1}
PREEMPTION_MIN_S=280        # least time to leave for test_slurm_preemption.sh (it needs ~190-260)
if [[ $PREEMPTION == 1 ]]; then BUDGET_S=${IMREPRO_SLURM_TEST_BUDGET_S:-780}
else BUDGET_S=${IMREPRO_SLURM_TEST_BUDGET_S:-420}; fi
DEADLINE=$(($(date +%s) + BUDGET_S))   # the script ends by then; 25 s of it are kept for cleanup
export SLURM_LOCAL_KILL_WAIT=${SLURM_LOCAL_KILL_WAIT:-5}   # a timed-out job is SIGKILLed 5 s after SIGTERM
RESULTS=results_slurm
LOGS=logs_slurm
TRAIN_RUN=demo_llama__lima_head64__it__ep2   # one demo training run (cheapest: 8 optimizer steps)
# rules that must run as SLURM jobs (rule names are fixed: no per-config copies)
JOB_RULES=(convert_dataset role_record train_model model_outputs lm_eval)
LOCAL_RULES=(download_source dataset_stats table5 data prepare_model)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imrepro-slurm-test.XXXXXX")

cleanup() {
    local rc=$?
    if [[ $KEEP == 1 ]]; then
        say "IMREPRO_SLURM_TEST_KEEP=1: SLURM left running; stop it with cluster/slurm_local_down.sh"
    else
        "${SUDO[@]}" "$REPO/cluster/slurm_local_down.sh" || rc=1
    fi
    if ((rc == 0)); then
        [[ $KEEP == 1 ]] || rm -rf "$RESULTS" "$LOGS"
        rm -rf "$WORK"
        say "PASS"
    else
        say "FAIL (rc=$rc); snakemake log: $WORK/run.log; SLURM logs: $STATE_DIR/log"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$SECONDS
"${SUDO[@]}" "$REPO/cluster/slurm_local_up.sh"

# Checkpoints of the test's training runs live under $RESULTS (removed with it), never in the
# scratch/ of a demo or a developer's run that may be going on in this checkout.
cat >"$WORK/slurm_test.yaml" <<EOF
training:
  scratch_dir: $RESULTS/scratch
EOF
# --nolock: the outputs are this test's own directories (emptied first); a Snakemake killed at the
# timeout would otherwise leave a lock in .snakemake/locks that fails the next run.
SMK=(snakemake --profile profiles/slurm --nolock
     --configfile profiles/demo/demo_config.yaml "$WORK/slurm_test.yaml"
     --config "results_dir=$RESULTS" "logs_dir=$LOGS")
TARGETS=(data "$RESULTS/train/$TRAIN_RUN" "$RESULTS/eval/$TRAIN_RUN/output_loss.json" "$RESULTS/eval/$TRAIN_RUN/winogrande.json")

rm -rf "$RESULTS" "$LOGS"

# ---- dry run: how many jobs each rule should submit ---------------------------------------
"${SMK[@]}" --dry-run -- "${TARGETS[@]}" >"$WORK/dryrun.log" 2>&1 \
    || { cat "$WORK/dryrun.log" >&2; fail "dry run failed"; }

# The rules declare threads and mem_mb for the paper-scale data. On a runner with less memory than
# the largest request sbatch would reject the job, so cap it there (the demo slices are tiny).
# And a demo-sized role_record job (declared: 2 threads, 16 GB) is mostly Snakemake start-up: on a
# node where two of them do not fit side by side, give each 1 CPU and half the node's memory, so
# that they run in pairs (~45 s less on 2 cores; IMREPRO_SLURM_TEST_AS_DECLARED=1: as declared).
# (--set-resources on the command line replaces the profile's set-resources: runtimes fall
# back to the profile's default-resources.)
node_mem=$(scontrol show node -o | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
node_cpus=$(scontrol show node -o | sed -n 's/.*CPUTot=\([0-9]*\).*/\1/p' | head -n1)
max_req=$(grep -o 'mem_mb=[0-9]*' "$WORK/dryrun.log" | cut -d= -f2 | sort -n | tail -n1)
declare -A mem_cap=()
if [[ -n $node_mem && -n $max_req ]] && ((node_mem < max_req)); then
    say "node has ${node_mem} MB < ${max_req} MB requested: capping mem_mb of ${JOB_RULES[*]} to $((node_mem / 2)) MB"
    for rule in "${JOB_RULES[@]}"; do mem_cap[$rule]=$((node_mem / 2)); done
fi
if [[ ${IMREPRO_SLURM_TEST_AS_DECLARED:-0} != 1 && -n $node_mem && -n $node_cpus ]] \
    && ((node_cpus < 4 || node_mem < 2 * 16000)); then
    say "small node (${node_cpus} CPUs, ${node_mem} MB): role_record jobs get 1 CPU and $((node_mem / 2)) MB each"
    mem_cap[role_record]=$((node_mem / 2))
    SMK+=(--set-threads "role_record=1")
fi
if ((${#mem_cap[@]})); then
    caps=()
    for rule in "${!mem_cap[@]}"; do caps+=("$rule:mem_mb=${mem_cap[$rule]}"); done
    SMK+=(--set-resources "${caps[@]}")     # one flag: a repeated flag keeps only the last
fi
declare -A planned
for rule in "${JOB_RULES[@]}" "${LOCAL_RULES[@]}"; do
    planned[$rule]=$(awk -v r="$rule" '$1 == "total" {exit}
        $1 == r && $2 ~ /^[0-9]+$/ {n += $2} END {print n + 0}' "$WORK/dryrun.log")
done
say "dry run plans: $(for r in "${JOB_RULES[@]}"; do printf '%s=%s ' "$r" "${planned[$r]}"; done)"
for rule in "${JOB_RULES[@]}"; do
    ((planned[$rule] > 0)) || fail "dry run plans no $rule job; nothing to test"
done

# ---- the real run, bounded: SIGINT lets Snakemake scancel its jobs, SIGKILL if it hangs -----
# bounded by the budget: leave room for cleanup (25 s), timeout's -k (20 s), the preemption test
reserve=$((25 + 20 + (PREEMPTION == 1 ? PREEMPTION_MIN_S : 0)))
left=$((DEADLINE - $(date +%s) - reserve))
((left >= 120)) || fail "time budget too small: ${left}s left for the demo run (IMREPRO_SLURM_TEST_BUDGET_S=$BUDGET_S)"
((RUN_TIMEOUT_S <= left)) || RUN_TIMEOUT_S=$left
say "running the demo data target and $TRAIN_RUN through SLURM (timeout ${RUN_TIMEOUT_S}s)"
t_run=$SECONDS
set +e
timeout -s INT -k 20 "$RUN_TIMEOUT_S" "${SMK[@]}" -- "${TARGETS[@]}" >"$WORK/run.log" 2>&1
rc=$?
set -e
run_s=$((SECONDS - t_run))
if ((rc != 0)); then
    tail -n 40 "$WORK/run.log" >&2
    ((rc == 124 || rc == 137)) && fail "snakemake timed out after ${RUN_TIMEOUT_S}s"
    fail "snakemake exited with $rc"
fi
say "snakemake finished in ${run_s}s"
[[ -s $RESULTS/tables/table5_dataset_stats.csv ]] || fail "no $RESULTS/tables/table5_dataset_stats.csv"
model_dir=$RESULTS/train/$TRAIN_RUN
check_model_dir "$model_dir"
python - "$model_dir/train_summary.json" <<'EOF' || fail "$model_dir/train_summary.json is not a finished run"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["optimizer_steps"] > 0 and len(s["history"]) == s["optimizer_steps"], s["optimizer_steps"]
assert s["resumed_from_step"] == 0, s["resumed_from_step"]
print(f"[test_slurm_demo] {s['run_id']}: {s['optimizer_steps']} steps in {s['wall_seconds']:.0f}s, "
      f"final loss {s['final_loss']:.3f}")
EOF
[[ ! -e $RESULTS/scratch/train/$TRAIN_RUN ]] || fail "scratch checkpoints of $TRAIN_RUN left behind"
python - "$RESULTS/eval/$TRAIN_RUN" <<'EOF' || fail "evaluation results of $TRAIN_RUN are incomplete"
import json, math, sys
from pathlib import Path
loss = json.loads(Path(sys.argv[1], "output_loss.json").read_text())
winogrande = json.loads(Path(sys.argv[1], "winogrande.json").read_text())
assert math.isfinite(loss["heldout"]["mean"]) and math.isfinite(loss["train"]["mean"]), loss
assert winogrande["status"] == "scored" and 0 <= winogrande["value"] <= 1, winogrande
print(f"[test_slurm_demo] eval: held-out output loss {loss['heldout']['mean']:.3f}, winogrande {winogrande['value']:.3f}")
EOF

# ---- which jobs went through sbatch ---------------------------------------------------------
run_id=$(sed -n 's/.*SLURM run ID: \([A-Za-z0-9_-]*\).*/\1/p' "$WORK/run.log" | head -n1)
[[ -n $run_id ]] || fail "no 'SLURM run ID' in the snakemake log: did it use the slurm executor?"
# "Job 4 has been submitted with SLURM jobid 1 (log: .../slurm_logs/rule_convert_dataset/lima/1.log)."
sed -n 's/.*submitted with SLURM jobid \([0-9]*\) (log: .*\/rule_\([A-Za-z0-9_]*\)\/.*/\1 \2/p' \
    "$WORK/run.log" >"$WORK/submitted.txt"

# SLURM's own record of every job of this run: "<jobid> <state>"
jobcomp="$STATE_DIR/log/jobcomp.txt"
if [[ -s $jobcomp ]]; then
    source_name="job-completion log $jobcomp"
    for _ in $(seq 10); do          # the record is written when the job leaves the node
        [[ $(grep -c "Name=$run_id " "$jobcomp" || true) -ge $(wc -l <"$WORK/submitted.txt") ]] && break
        sleep 1
    done
    grep "Name=$run_id " "$jobcomp" \
        | sed -n 's/^JobId=\([0-9]*\) .* JobState=\([A-Z_]*\) .*/\1 \2/p' >"$WORK/slurm_jobs.txt"
elif sacct -n -X -j 1 >/dev/null 2>&1; then
    source_name="sacct"
    sacct -n -X -P --name "$run_id" --format=JobIdRaw,State -S now-1days \
        | tr '|' ' ' | awk '{print $1, $2}' >"$WORK/slurm_jobs.txt"
else
    fail "neither $jobcomp nor a working sacct to check the jobs against"
fi

declare -A state
while read -r id st; do state[$id]=$st; done <"$WORK/slurm_jobs.txt"
ok=1
for rule in "${JOB_RULES[@]}"; do
    n_sub=$(awk -v r="$rule" '$2 == r' "$WORK/submitted.txt" | wc -l)
    n_done=0
    while read -r id r; do
        [[ $r == "$rule" ]] || continue
        if [[ ${state[$id]:-} == COMPLETED ]]; then
            n_done=$((n_done + 1))
        else
            echo "  $rule: SLURM job $id state '${state[$id]:-absent}' in $source_name" >&2
        fi
    done <"$WORK/submitted.txt"
    say "$rule: planned ${planned[$rule]}, submitted with sbatch $n_sub, COMPLETED in SLURM $n_done"
    [[ $n_sub -eq ${planned[$rule]} && $n_done -eq ${planned[$rule]} ]] || ok=0
done
for rule in "${LOCAL_RULES[@]}"; do
    if grep -q " $rule\$" "$WORK/submitted.txt"; then
        echo "  localrule $rule was submitted to SLURM" >&2
        ok=0
    fi
done
n_slurm=$(wc -l <"$WORK/slurm_jobs.txt")
n_expected=$(( $(printf '%s\n' "${JOB_RULES[@]}" | while read -r r; do echo "${planned[$r]}"; done | paste -sd+) ))
say "SLURM recorded $n_slurm jobs named $run_id (expected $n_expected)"
((n_slurm == n_expected)) || ok=0
((ok)) || fail "job accounting does not match the plan"
say "demo through SLURM: $((SECONDS - t_start))s (snakemake ${run_s}s)"

# ---- time limit, retry, resume: on the same cluster, reusing these outputs --------------------
if [[ $PREEMPTION == 1 ]]; then
    IMREPRO_SLURM_TEST_NESTED=1 IMREPRO_SLURM_TEST_RESULTS=$RESULTS IMREPRO_SLURM_TEST_LOGS=$LOGS \
        IMREPRO_SLURM_TEST_DEADLINE=$((DEADLINE - 25)) \
        "$REPO/cluster/test_slurm_preemption.sh" || fail "cluster/test_slurm_preemption.sh failed"
fi
say "total $((SECONDS - t_start))s"
