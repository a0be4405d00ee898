# Helpers of the training stage, included by rules/train.smk: its input, params and resource functions and
# the paths only this stage reads. Functions and rules are in separate files for `snakemake --lint`.
RUNS = {run.run_id: run for run in workflow_config.runs(CHECKED_CONFIG)}


def run_of(wildcards):
    if wildcards.run not in RUNS:
        raise ValueError(f"unknown run '{wildcards.run}': not in the active run groups (use_run_groups)")
    return RUNS[wildcards.run]


def reference_path(model, dataset):
    return f"{RESULTS}/kl_ref/{model}/{dataset}.npy"


def train_resources(model):
    """training.resources (schema defaults filled), overridden per model by models.<m>.train_resources."""
    return {**CHECKED_CONFIG["training"]["resources"], **CHECKED_CONFIG["models"][model]["train_resources"]}


def get_train_resource(key, at_most=None):
    """Resource function: ``key`` of the training resources of the job's model (wildcard run or model)."""

    def get(wildcards):
        model = run_of(wildcards).model if "run" in wildcards.keys() else wildcards.model
        value = train_resources(model)[key]
        return value if at_most is None else min(at_most, value)

    return get


def get_model_init_tokenizer(wildcards):
    spec = CHECKED_CONFIG["models"][wildcards.model]
    return [repo_path(CHECKED_CONFIG["tokenizers"][spec["tokenizer"]]["path"])] if "init" in spec else []


def get_prepare_model_flags(wildcards):
    spec = CHECKED_CONFIG["models"][wildcards.model]
    if "init" in spec:
        return ["--init", json.dumps(spec["init"]), "--tokenizer-model",
                repo_path(CHECKED_CONFIG["tokenizers"][spec["tokenizer"]]["path"])]
    if "package" in spec:
        return ["--package", json.dumps(spec["package"], sort_keys=True),
                "--cache-dir", f"{RESULTS}/models/.package_cache"]
    return ["--hf-id", spec["hf_id"], "--revision", spec["revision"]]


def get_reference_inputs(wildcards):
    return {"record": record_path(model_tokenizer(wildcards.model), wildcards.dataset),
            "model": base_model_config(wildcards.model)}


def get_train_launcher(wildcards, resources):
    """`python` on CPU or one GPU; `accelerate launch` with DeepSpeed over all GPUs of the job,
    or on one GPU when the model names its own DeepSpeed config (e.g. ZeRO-3 + CPU offload)."""
    run = run_of(wildcards)
    gpus = int(resources.gpu)
    model_ds = CHECKED_CONFIG["models"][run.model].get("deepspeed_config")
    if gpus <= 1 and not model_ds:
        return "python"
    ds_config = repo_path(model_ds or CHECKED_CONFIG["training"]["deepspeed_config"])
    precision = CHECKED_CONFIG["training"]["precision"]
    precision = {"fp32": "no", "auto": "bf16"}.get(precision, precision)
    port = 29500 + int(hashlib.sha1(run.run_id.encode()).hexdigest(), 16) % 2000  # jobs sharing a node
    return (f"accelerate launch --num_machines 1 --num_processes {max(gpus, 1)} --mixed_precision {precision} "
            f"--main_process_port {port} --use_deepspeed --deepspeed_config_file {ds_config}")


def trained_model_output(run):
    """train_model's output, the model directory: temp() where training.keep_models is false, so that each model
    is deleted once every job that reads it is done (the study's 36 full Gemma models are 1 GB each)."""
    out = directory(train_dir(run))
    return out if CHECKED_CONFIG["training"]["keep_models"] else temp(out)


def get_train_inputs(wildcards):
    run = run_of(wildcards)
    inputs = {"record": record_path(model_tokenizer(run.model), run.train_dataset),
              "model": base_model_config(run.model)}
    if run_settings(run)["kl_lambda"]:
        inputs["reference"] = reference_path(run.model, run.train_dataset)
    return inputs


def get_train_settings(wildcards):
    run = run_of(wildcards)
    training = CHECKED_CONFIG["training"]
    method = run_settings(run)
    settings = {key: training[key] for key in catalogue.TRAIN_SETTING_KEYS}
    settings.update(method)  # labels, weights, seed, learning rate: the method's, with the run's sweep values
    settings.update(
        epochs=run.epochs,
        model_path=base_model_dir(run.model),
        record_path=record_path(model_tokenizer(run.model), run.train_dataset),
        output_dir=train_dir(run),
        scratch_dir=f"{training['scratch_dir']}/train/{run.run_id}",
        log_dir=f"{LOGS}/train/tensorboard/{run.run_id}",
        lora=CHECKED_CONFIG["methods"][run.method].get("lora"),  # optional: absent = full fine-tuning
        reference_logprobs=reference_path(run.model, run.train_dataset) if method["kl_lambda"] else None,
        progress=True,
        run_info={"run_id": run.run_id, "model": run.model, "dataset": run.dataset, "method": run.method,
                  "train_dataset": run.train_dataset, "sweep": dict(run.sweep)},
    )
    return json.dumps(settings, sort_keys=True)
