"""Loads a local task's ``data_files`` relative to resources/eval/lm_eval, whatever the current folder.

Every task YAML here includes ``_imrepro_data.yaml`` (``custom_dataset: !function _imrepro_data.load``), so
the stock ``lm_eval --include_path .../resources/eval/lm_eval/tasks`` works from any directory; lm-eval calls
``load(**metadata, **dataset_kwargs)`` and uses the returned splits instead of ``datasets.load_dataset``.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # resources/eval/lm_eval


def load(data_files: dict[str, str], **_metadata) -> dict:
    """The task's splits, read by the datasets ``json`` builder from files under :data:`ROOT`."""
    import datasets

    files = {split: str(ROOT / path) for split, path in data_files.items()}
    missing = [path for path in files.values() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"lm-eval task data missing: {', '.join(missing)}")
    return datasets.load_dataset("json", data_files=files)
