#!/usr/bin/env bash
# Time-limit / preemption test of profiles/slurm against a real single-node SLURM on this machine:
# a training job whose first attempt SLURM kills at its time limit (state TIMEOUT) is resubmitted
# by Snakemake (profile: retries: 1) and resumes from its scratch checkpoint instead of step 0.
#   1. cluster/slurm_local_up.sh with KillWait=5 (skipped when called by test_slurm_demo.sh)
#   2. prerequisites on this host with the local executor (role record of lima_head64, the
#      demo_llama base model) and a calibration run, demo_llama__lima_head64__it__ep2: its
#      seconds per optimizer step size the test run (reused when test_slurm_demo.sh made them)
#   3. a config overlay (temporary file) adds a run group with one run of E epochs, E chosen so
#      that the run needs ~IMREPRO_SLURM_PREEMPT_TRAIN_S (130) s of training, more than a first
#      attempt can live, and checkpoints every ~5 s; then, through SLURM,
#        snakemake --profile profiles/slurm ... \
#            --set-resources 'train_model:runtime=1 if attempt == 1 else 30' -- results_slurm/train/<run>
#      (resources given on the command line are Python expressions that may use `attempt`:
#      the first attempt gets `sbatch -t 1`, the retry 30 minutes). Slurm checks time limits every
#      30 s, so the first attempt dies 60-90 s after it started.
#   4. asserts: two train_model submissions; the first TIMEOUT with TimeLimit=1, the second
#      COMPLETED (job-completion log, or sacct where accounting exists); slurmstepd's "CANCELLED
#      ... DUE TO TIME LIMIT" in the first attempt's SLURM log; the retry's training log
#      says "resuming from"; train_summary.json has 0 < resumed_from_step < optimizer_steps and
#      the full history; the scratch checkpoints are gone
#   5. always stops the daemons it started (trap), also on failure or timeout.
# Needs root (or sudo). ~4-4.5 min on 2 cores (1 min of it the calibration run). Every wait is
# bounded so that the script, cleanup included, ends within IMREPRO_SLURM_TEST_BUDGET_S seconds
# (default 390): run it under `timeout -k 10 -s KILL 420` (an outer SIGKILL skips the trap).
#   cluster/test_slurm_preemption.sh
#   IMREPRO_SLURM_PREEMPT_EPOCHS=8 cluster/test_slurm_preemption.sh   # no calibration run
#   IMREPRO_SLURM_TEST_KEEP=1 cluster/test_slurm_preemption.sh       # keep outputs, leave SLURM up
set -euo pipefail

TEST_NAME=test_slurm_preemption
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"   # REPO, PATH, STATE_DIR, KEEP, say/fail, SUDO
NESTED=${IMREPRO_SLURM_TEST_NESTED:-0}       # 1: called by test_slurm_demo.sh (it owns cluster+dirs)
RESULTS=${IMREPRO_SLURM_TEST_RESULTS:-results_slurm}
LOGS=${IMREPRO_SLURM_TEST_LOGS:-logs_slurm}
RUN_TIMEOUT_S=${IMREPRO_SLURM_PREEMPT_TIMEOUT_S:-330}
# the script ends by DEADLINE (epoch seconds; test_slurm_demo.sh passes its own), 25 s of it cleanup
DEADLINE=${IMREPRO_SLURM_TEST_DEADLINE:-$(($(date +%s) + ${IMREPRO_SLURM_TEST_BUDGET_S:-390}))}
TRAIN_S=${IMREPRO_SLURM_PREEMPT_TRAIN_S:-130}    # uninterrupted training time the run should need
EPOCHS=${IMREPRO_SLURM_PREEMPT_EPOCHS:-}         # set: skip the calibration
CHECKPOINT_S=5                                   # seconds of training between checkpoints
FIRST_RUNTIME=1                                  # minutes: Slurm's smallest time limit
RETRY_RUNTIME=30
export SLURM_LOCAL_KILL_WAIT=${SLURM_LOCAL_KILL_WAIT:-5}
MODEL=demo_llama
DATASET=lima_head64
METHOD=it
CALIB_RUN=${MODEL}__${DATASET}__${METHOD}__ep2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imrepro-slurm-preempt.XXXXXX")

cleanup() {
    local rc=$?
    if [[ $NESTED != 1 ]]; then
        if [[ $KEEP == 1 ]]; then
            say "IMREPRO_SLURM_TEST_KEEP=1: SLURM left running; stop it with cluster/slurm_local_down.sh"
        else
            "${SUDO[@]}" "$REPO/cluster/slurm_local_down.sh" || rc=1
        fi
    fi
    if ((rc == 0)); then
        [[ $NESTED == 1 || $KEEP == 1 ]] || rm -rf "$RESULTS" "$LOGS"
        rm -rf "$WORK"
        say "PASS"
    else
        say "FAIL (rc=$rc); logs: $WORK (snakemake: run.log); SLURM logs: $STATE_DIR/log"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t_start=$SECONDS
if [[ $NESTED == 1 ]]; then
    scontrol ping 2>/dev/null | grep -q 'is UP' || fail "IMREPRO_SLURM_TEST_NESTED=1 but no slurmctld answers"
else
    "${SUDO[@]}" "$REPO/cluster/slurm_local_up.sh"
    rm -rf "$RESULTS" "$LOGS"
fi
kill_wait=$(scontrol show config | sed -n 's/^KillWait *= *\([0-9]*\).*/\1/p')
say "cluster KillWait=${kill_wait:-?}s"

# ---- prerequisites and calibration, on this host (not what is tested here) --------------------
# The same scratch_dir as test_slurm_demo.sh, so the outputs it made count as up to date.
cat >"$WORK/base.yaml" <<EOF
training:
  scratch_dir: $RESULTS/scratch
EOF
CONFIG=(--configfile profiles/demo/demo_config.yaml "$WORK/base.yaml"
        --config "results_dir=$RESULTS" "logs_dir=$LOGS")
record=$RESULTS/data/records/llama2_ml256/$DATASET.parquet
prep_targets=("$record" "$RESULTS/models/$MODEL/config.json")
[[ -n $EPOCHS ]] || prep_targets+=("$RESULTS/train/$CALIB_RUN")
t_prep=$SECONDS
snakemake --cores 2 --rerun-incomplete --nolock "${CONFIG[@]}" -- "${prep_targets[@]}" >"$WORK/prep.log" 2>&1 \
    || { tail -n 40 "$WORK/prep.log" >&2; fail "preparing ${prep_targets[*]} failed"; }
say "prerequisites ready in $((SECONDS - t_prep))s"

if [[ -z $EPOCHS ]]; then
    read -r EPOCHS CHECKPOINT_EVERY < <(python - "$RESULTS/train/$CALIB_RUN/train_summary.json" \
        "$TRAIN_S" "$CHECKPOINT_S" <<'EOF'
import json, math, sys
summary = json.load(open(sys.argv[1]))
train_s, checkpoint_s = float(sys.argv[2]), float(sys.argv[3])
steps = summary["optimizer_steps"]
# median step time: robust to the slow first step and to load spikes; if anything it errs fast,
# the safe side (more steps, so the first attempt cannot finish before its time limit)
times = sorted(h["tokens"] / h["tokens_per_s"] for h in summary["history"])
step_s = times[len(times) // 2]
per_epoch = steps / summary["settings"]["epochs"]
epochs = max(3, math.ceil(train_s / (step_s * per_epoch)))
print(epochs, max(1, round(checkpoint_s / step_s)))
print(f"[test_slurm_preemption] calibration: {summary['run_id']}: {step_s:.2f} s per optimizer step, "
      f"{per_epoch:g} steps per epoch -> {epochs} epochs", file=sys.stderr)
EOF
    ) || fail "calibration from $RESULTS/train/$CALIB_RUN/train_summary.json failed"
else
    CHECKPOINT_EVERY=${IMREPRO_SLURM_PREEMPT_CHECKPOINT_EVERY:-1}
fi
RUN=${MODEL}__${DATASET}__${METHOD}__ep${EPOCHS}

# ---- the run: first attempt killed at its time limit, retry resumes ---------------------------
cat >"$WORK/preempt.yaml" <<EOF
training:
  scratch_dir: $RESULTS/scratch
  checkpoint_every: $CHECKPOINT_EVERY
run_groups:
  slurm_preempt:
    models: [$MODEL]
    datasets: [$DATASET]
    methods: [$METHOD]
    epochs: [$EPOCHS]
use_run_groups: [slurm_preempt]
EOF
rm -rf "$RESULTS/train/$RUN" "$RESULTS/scratch/train/$RUN" "$LOGS/train/train_model/$RUN.log"

# The runtime is an expression of the attempt (one --set-resources flag: a repeated flag keeps
# only the last, and it replaces the profile's set-resources, which name no train_model anyway).
resources=("train_model:runtime=$FIRST_RUNTIME if attempt == 1 else $RETRY_RUNTIME")
node_mem=$(scontrol show node -o | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
if [[ -n $node_mem ]] && ((node_mem < 4000)); then
    resources+=("train_model:mem_mb=$((node_mem / 2))")
fi
# --nolock: see test_slurm_demo.sh (outputs in the test's own directories; no stale locks)
SMK=(snakemake --profile profiles/slurm --nolock --configfile profiles/demo/demo_config.yaml "$WORK/preempt.yaml"
     --config "results_dir=$RESULTS" "logs_dir=$LOGS" --set-resources "${resources[@]}")

"${SMK[@]}" --dry-run -- "$RESULTS/train/$RUN" >"$WORK/dryrun.log" 2>&1 \
    || { cat "$WORK/dryrun.log" >&2; fail "dry run failed"; }
planned=$(awk '$1 == "train_model" && $2 ~ /^[0-9]+$/ {print $2; exit}' "$WORK/dryrun.log")
n_jobs=$(awk '$1 == "total" && $2 ~ /^[0-9]+$/ {print $2; exit}' "$WORK/dryrun.log")
[[ $planned == 1 && $n_jobs == 1 ]] \
    || { cat "$WORK/dryrun.log" >&2; fail "dry run plans ${n_jobs:-0} jobs, not train_model alone"; }
grep -q "runtime=$FIRST_RUNTIME\b" "$WORK/dryrun.log" || fail "first attempt does not get runtime=$FIRST_RUNTIME"

left=$((DEADLINE - $(date +%s) - 25 - 20))    # cleanup, timeout's -k
# attempt 1 lives 60-90 s, the retry about TRAIN_S - 50 s, each found late by up to ~45 s of polling
((left >= 180)) || fail "time budget too small: ${left}s left for the run (IMREPRO_SLURM_TEST_BUDGET_S)"
((RUN_TIMEOUT_S <= left)) || RUN_TIMEOUT_S=$left
say "training $RUN ($EPOCHS epochs, checkpoint every $CHECKPOINT_EVERY steps) through SLURM:" \
    "first attempt -t $FIRST_RUNTIME, retry -t $RETRY_RUNTIME (timeout ${RUN_TIMEOUT_S}s)"
t_run=$SECONDS
set +e
timeout -s INT -k 20 "$RUN_TIMEOUT_S" "${SMK[@]}" -- "$RESULTS/train/$RUN" >"$WORK/run.log" 2>&1
rc=$?
set -e
run_s=$((SECONDS - t_run))
if ((rc != 0)); then
    tail -n 40 "$WORK/run.log" >&2
    ((rc == 124 || rc == 137)) && fail "snakemake timed out after ${RUN_TIMEOUT_S}s"
    fail "snakemake exited with $rc"
fi
say "snakemake finished in ${run_s}s"

# ---- SLURM's record: attempt 1 TIMEOUT (limit 1 min), attempt 2 COMPLETED ---------------------
run_id=$(sed -n 's/.*SLURM run ID: \([A-Za-z0-9_-]*\).*/\1/p' "$WORK/run.log" | head -n1)
[[ -n $run_id ]] || fail "no 'SLURM run ID' in the snakemake log: did it use the slurm executor?"
mapfile -t ids < <(sed -n 's/.*submitted with SLURM jobid \([0-9]*\) (log: .*\/rule_train_model\/.*/\1/p' \
    "$WORK/run.log")
if ((${#ids[@]} == 1)); then
    fail "train_model was submitted once: the first attempt finished within its time limit; raise" \
        "IMREPRO_SLURM_PREEMPT_TRAIN_S (now $TRAIN_S) or set IMREPRO_SLURM_PREEMPT_EPOCHS"
fi
((${#ids[@]} == 2)) || fail "train_model was submitted ${#ids[@]} times (${ids[*]}), expected 2"
grep -q "SLURM status is: 'TIMEOUT'" "$WORK/run.log" \
    || fail "snakemake did not see a TIMEOUT (grep \"SLURM status is\" $WORK/run.log)"
# the plugin keeps the SLURM log of a failed job: slurmstepd's own word on why it ended
slurm_log1=$(sed -n "s/.*submitted with SLURM jobid ${ids[0]} (log: \(.*\)).*/\1/p" "$WORK/run.log" | head -n1)
grep -q "CANCELLED AT .* DUE TO TIME LIMIT" "$slurm_log1" 2>/dev/null \
    || fail "no 'CANCELLED ... DUE TO TIME LIMIT' in the first attempt's SLURM log ${slurm_log1:-(none)}"

jobcomp="$STATE_DIR/log/jobcomp.txt"
record_of() {  # record_of JOBID: "<state> <time limit, minutes> <start> <end>"
    if [[ -s $jobcomp ]]; then
        grep "^JobId=$1 .*Name=$run_id " "$jobcomp" | tail -n1 | sed -n \
            's/.* JobState=\([A-Z_]*\) .* TimeLimit=\([0-9]*\) StartTime=\([^ ]*\) EndTime=\([^ ]*\) .*/\1 \2 \3 \4/p'
    else  # accounting (TimelimitRaw is in minutes)
        sacct -n -X -P -j "$1" --format=State,TimelimitRaw,Start,End | head -n1 | tr '|' ' ' \
            | awk '{print $1, $2, $3, $4}'
    fi
}
if [[ ! -s $jobcomp ]] && ! sacct -n -X -j "${ids[0]}" >/dev/null 2>&1; then
    fail "neither $jobcomp nor a working sacct to check the jobs against"
fi
for _ in $(seq 10); do           # the record is written when the job leaves the node
    [[ -n $(record_of "${ids[1]}") ]] && break
    sleep 1
done
read -r st1 tl1 start1 end1 <<<"$(record_of "${ids[0]}")"
read -r st2 tl2 start2 end2 <<<"$(record_of "${ids[1]}")"
life1=$(( $(date -d "$end1" +%s) - $(date -d "$start1" +%s) ))
life2=$(( $(date -d "$end2" +%s) - $(date -d "$start2" +%s) ))
say "attempt 1: SLURM job ${ids[0]} $st1 (time limit ${tl1} min) after ${life1}s"
say "attempt 2: SLURM job ${ids[1]} $st2 (time limit ${tl2} min) after ${life2}s"
[[ $st1 == TIMEOUT ]] || fail "first attempt (job ${ids[0]}) ended '$st1', expected TIMEOUT"
[[ $tl1 == "$FIRST_RUNTIME" ]] || fail "first attempt had time limit '$tl1', expected $FIRST_RUNTIME"
[[ $st2 == COMPLETED ]] || fail "retry (job ${ids[1]}) ended '$st2', expected COMPLETED"
[[ $tl2 == "$RETRY_RUNTIME" ]] || fail "retry had time limit '$tl2', expected $RETRY_RUNTIME"

# ---- the retry resumed from the first attempt's checkpoint -----------------------------------
train_log=$LOGS/train/train_model/$RUN.log
grep -q "resuming from" "$train_log" || { tail -n 20 "$train_log" >&2; fail "no 'resuming from' in $train_log"; }
say "$(grep -o 'resuming from .*' "$train_log" | head -n1)"
model_dir=$RESULTS/train/$RUN
check_model_dir "$model_dir"
python - "$model_dir/train_summary.json" <<'EOF' || fail "$model_dir/train_summary.json: not a resumed, finished run"
import json, sys
s = json.load(open(sys.argv[1]))
steps, resumed = s["optimizer_steps"], s["resumed_from_step"]
assert 0 < resumed < steps, f"resumed_from_step {resumed} of {steps}"
assert [h["step"] for h in s["history"]] == list(range(1, steps + 1)), "history is not steps 1..N"
print(f"[test_slurm_preemption] train_summary.json: resumed_from_step {resumed} of {steps} "
      f"(the retry trained {steps - resumed} steps in {s['wall_seconds']:.0f}s)")
EOF
[[ ! -e $RESULTS/scratch/train/$RUN ]] || fail "scratch checkpoints of $RUN left behind"
say "total $((SECONDS - t_start))s (snakemake ${run_s}s)"
