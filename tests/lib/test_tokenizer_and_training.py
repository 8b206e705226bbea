"""Tests of the course tokenizer (course_lib.build.tokenizer) and training loop (course_lib.training),
including the check that the whole thing runs with the network blocked.

Everything runs on tiny models and a tokenizer trained on 2000 corpus documents, so the file
takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch

from course_lib.build.tokenizer import BOS, EOS, PAD, ROLE_TOKENS, SPECIAL_TOKENS, train_tokenizer
from course_lib.course import netguard
from course_lib.course.netguard import NetworkBlocked
from course_lib.environment import OFFLINE_VARS
from course_lib.training import History, TrainConfig, lm_batches, pack_tokens, train, warmup_cosine
from course_lib.world.datasets import clinic_notes, corpus_documents

VOCAB = 512
BLOCK = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are fastest on one thread (and do not fight other jobs for the CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return [d["text"] for d in corpus_documents("train", 2000)]


@pytest.fixture(scope="module")
def tok(docs):
    return train_tokenizer(docs, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def blocks(tok, docs) -> torch.Tensor:
    ids = tok(docs[:400])["input_ids"]
    return pack_tokens(ids, BLOCK, tok.bos_token_id, tok.eos_token_id)


# the model of the training tests: 2 layers, hidden size 32 (about 40k parameters)
TINY = dict(hidden=32, max_position_embeddings=128)


def quiet(**kw) -> TrainConfig:
    return TrainConfig(progress=False, **kw)


# --- tokenizer ------------------------------------------------------------------------------------


def test_tokenizer_has_the_special_tokens(tok):
    assert len(tok) == VOCAB, f"the tokenizer has {len(tok)} tokens, asked for {VOCAB}"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD), (
        "bos/eos/pad tokens should be <|bos|>, <|end|>, <|pad|>"
    )
    for t in SPECIAL_TOKENS:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] == tok.convert_tokens_to_ids(t), (
            f"{t} should be a single special token, got ids {ids}"
        )
    assert set(SPECIAL_TOKENS) == set(tok.all_special_tokens), (
        f"the special tokens should be exactly {SPECIAL_TOKENS}, got {tok.all_special_tokens}"
    )
    assert (
        tok.decode(tok("".join(ROLE_TOKENS) + "hi")["input_ids"], skip_special_tokens=True) == "hi"
    ), "role tokens should be skipped by decode(skip_special_tokens=True)"
    assert len({tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}) == len(SPECIAL_TOKENS), (
        "two special tokens share an id"
    )


def test_tokenizer_adds_bos_once(tok):
    ids = tok("Mira walked to the market.")["input_ids"]
    assert ids[0] == tok.bos_token_id, "encoding a text should start with <|bos|>"
    assert ids.count(tok.bos_token_id) == 1, "<|bos|> should be added exactly once"
    plain = tok("Mira walked to the market.", add_special_tokens=False)["input_ids"]
    assert plain == ids[1:], "add_special_tokens=False should give the same ids without <|bos|>"


def test_round_trip_on_corpus_and_clinic_texts(tok, docs):
    texts = (
        docs[:300]
        + [d["text"] for d in clinic_notes("val", 100)]
        + ["  two  spaces\nand a newline\t tab ", "Café, naïve, 😀 and ∑: unseen bytes", ""]
    )
    for t in texts:
        back = tok.decode(tok(t)["input_ids"], skip_special_tokens=True)
        assert back == t, f"decode(encode(text)) changed the text: {t!r} -> {back!r}"


def test_chat_template_renders_the_turns(tok):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello you"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False)
    expected = (
        "<|bos|><|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n"
        "<|assistant|>\nHello you<|end|>\n"
    )
    assert text == expected, f"the chat template rendered {text!r}, expected {expected!r}"


def test_generation_prompt_ends_with_the_assistant_header(tok):
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|assistant|>\n"), (
        f"add_generation_prompt=True should end with '<|assistant|>\\n': {text!r}"
    )
    assert text == "<|bos|><|user|>\nHi<|end|>\n<|assistant|>\n", (
        f"unexpected generation prompt {text!r}"
    )


def test_chat_template_rejects_unknown_roles(tok):
    with pytest.raises(Exception, match="roles must be"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_tokenized_chat_has_a_single_bos(tok):
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=True, return_dict=True
    )["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, (
        "a tokenized conversation should start with exactly one <|bos|> (the template adds it; "
        "the tokenizer must not add a second)"
    )


@pytest.mark.parametrize("answers", [["Hello you"], ["Brookmere.", "It is 42, thank you!"]])
def test_assistant_mask_marks_exactly_the_assistant_content_and_end(tok, answers):
    msgs = []
    for i, a in enumerate(answers):
        msgs += [
            {"role": "user", "content": f"Question number {i}?"},
            {"role": "assistant", "content": a},
        ]
    enc = tok.apply_chat_template(
        msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assert len(mask) == len(ids), "the assistant mask should have one entry per token"
    marked = tok.decode([i for i, m in zip(ids, mask) if m])
    expected = "".join(a + EOS for a in answers)
    assert marked == expected, (
        f"the assistant mask marks {marked!r}; it should mark exactly the assistant content and its "
        f"<|end|> ({expected!r}): no role header, no newline, no user text"
    )
    unmarked = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "Question number" in unmarked and "<|assistant|>" in unmarked, (
        "the prompt tokens must stay unmasked"
    )


def test_vocab_size_too_small_raises(docs):
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(docs[:50], vocab_size=256 + len(SPECIAL_TOKENS) - 1)
    smallest = train_tokenizer(docs[:50], vocab_size=256 + len(SPECIAL_TOKENS))
    assert len(smallest) == 256 + len(SPECIAL_TOKENS), (
        "the smallest allowed vocabulary is bytes + special tokens"
    )


# --- learning-rate schedule -----------------------------------------------------------------------


def test_warmup_is_linear_up_to_one():
    for step in range(10):
        assert math.isclose(warmup_cosine(step, 10, 100), (step + 1) / 10), (
            f"warm-up step {step} of 10 should have multiplier {(step + 1) / 10}"
        )
    assert warmup_cosine(9, 10, 100) == 1.0, (
        "the last warm-up step should reach the full learning rate"
    )


def test_cosine_decays_monotonically_to_min_ratio():
    values = [warmup_cosine(s, 10, 100, min_ratio=0.1) for s in range(10, 101)]
    assert values[0] == 1.0, "the first step after warm-up should use the full learning rate"
    assert all(a >= b for a, b in zip(values, values[1:])), (
        "after warm-up the multiplier must never increase"
    )
    assert math.isclose(values[-1], 0.1), (
        f"at total_steps the multiplier should be min_ratio, got {values[-1]}"
    )
    assert math.isclose(warmup_cosine(55, 10, 100, 0.1), 0.55), (
        "half-way through the decay it should be (1+min)/2"
    )
    assert math.isclose(warmup_cosine(500, 10, 100, 0.1), 0.1), (
        "after total_steps it should stay at min_ratio"
    )


def test_no_warmup_starts_at_full_rate():
    assert warmup_cosine(0, 0, 50) == 1.0, (
        "with warmup_steps=0 the first step uses the full learning rate"
    )


# --- TrainConfig ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", 0.0),
        ("lr", -1e-3),
        ("max_steps", 0),
        ("grad_accum", 0),
        ("warmup_steps", -1),
        ("warmup_steps", 101),
        ("min_lr_ratio", -0.1),
        ("min_lr_ratio", 1.5),
    ],
)
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError) as info:
        TrainConfig(**({"max_steps": 100} | {field: value}))
    assert field in str(info.value), (
        f"the error for {field}={value} should name the field: {info.value}"
    )


def test_train_config_rejects_log_every_zero():
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)


def test_train_config_rejects_negative_max_grad_norm():
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainConfig(max_grad_norm=-1.0)


# --- train() --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tok, blocks, tiny_llama):
    model = tiny_llama(**TINY, vocab=len(tok))
    evals = []

    def eval_fn(m):
        evals.append(m.training)
        return 1.5

    hist = train(
        model, lm_batches(blocks, 8), quiet(lr=1e-2, max_steps=30, warmup_steps=5), eval_fn=eval_fn
    )
    return model, hist, evals


def test_training_lowers_the_loss(trained):
    _, hist, _ = trained
    first, last = sum(hist.loss[:3]) / 3, sum(hist.loss[-3:]) / 3
    assert first > math.log(VOCAB) - 0.5, (
        f"an untrained model should start near log(vocab), got {first:.2f}"
    )
    assert last < first - 1.0, f"30 steps should lower the loss clearly: {first:.2f} -> {last:.2f}"


def test_history_records_every_step(trained):
    model, hist, evals = trained
    assert isinstance(hist, History)
    assert hist.steps == list(range(1, 31)), "History.steps should be 1..max_steps"
    assert len(hist.loss) == len(hist.lr) == len(hist.grad_norm) == 30, (
        "one loss, lr, grad norm per step"
    )
    assert all(math.isfinite(x) for x in hist.loss + hist.grad_norm), (
        "losses and grad norms must be finite"
    )
    assert hist.eval_steps == [30] and hist.eval == [1.5], (
        "without eval_every, eval_fn runs once, at the end"
    )
    assert len(evals) == 1, f"eval_fn should have been called once, was called {len(evals)} times"
    assert not model.training, "train() should leave the model in eval mode"
    assert hist.seconds > 0, "History.seconds should hold the training time"


def test_lr_history_follows_warmup_then_decay(trained):
    _, hist, _ = trained
    lr = 1e-2
    for step, value in enumerate(hist.lr):
        assert math.isclose(value, lr * warmup_cosine(step, 5, 30, 0.1), rel_tol=1e-9), (
            f"the learning rate at step {step} is {value}, the schedule says "
            f"{lr * warmup_cosine(step, 5, 30, 0.1)}"
        )
    assert all(a < b for a, b in zip(hist.lr[:5], hist.lr[1:5])), (
        "the learning rate should rise during warm-up"
    )
    assert hist.lr[4] == pytest.approx(lr), "warm-up should end at the full learning rate"
    assert all(a >= b for a, b in zip(hist.lr[5:], hist.lr[6:])), (
        "after warm-up the learning rate should decay"
    )
    assert hist.lr[-1] < 0.2 * lr, "by the last step the rate should be close to lr * min_lr_ratio"


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("steps", [1, 3])
def test_gradient_accumulation_equals_a_large_batch(blocks, tok, steps, tiny_llama):
    x = blocks[:8]
    halves = [{"input_ids": x[:4], "labels": x[:4]}, {"input_ids": x[4:], "labels": x[4:]}]
    whole = [{"input_ids": x, "labels": x}]
    big, acc = tiny_llama(**TINY, vocab=len(tok)), tiny_llama(**TINY, vocab=len(tok))
    h_big = train(big, whole, quiet(lr=1e-3, max_steps=steps, warmup_steps=0))
    h_acc = train(acc, halves, quiet(lr=1e-3, max_steps=steps, warmup_steps=0, grad_accum=2))
    assert h_acc.loss == pytest.approx(h_big.loss, rel=1e-5), (
        f"the accumulated loss {h_acc.loss} should be the mean over the micro-batches, {h_big.loss}"
    )
    assert h_acc.grad_norm == pytest.approx(h_big.grad_norm, rel=1e-4), (
        f"the accumulated gradient norm {h_acc.grad_norm} differs from the large batch's {h_big.grad_norm}: "
        "each micro-batch loss must be divided by grad_accum"
    )
    a, b = _state(acc), _state(big)
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-6), (
            f"after {steps} step(s), {name} differs between grad_accum=2 x batch 4 and batch 8 "
            f"(max diff {(a[name] - b[name]).abs().max():.2e}): accumulation should equal a large batch"
        )


def test_a_step_changes_the_parameters(blocks, tok, tiny_llama):
    model = tiny_llama(**TINY, vocab=len(tok))
    before = _state(model)
    train(
        model, [{"input_ids": blocks[:4], "labels": blocks[:4]}], quiet(max_steps=1, warmup_steps=0)
    )
    changed = [k for k, v in _state(model).items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before), (
        f"one optimizer step left {set(before) - set(changed)} unchanged"
    )


def test_frozen_model_raises(tok, blocks, tiny_llama):
    model = tiny_llama(**TINY, vocab=len(tok))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, lm_batches(blocks, 4), quiet(max_steps=1, warmup_steps=0))


def test_train_input_validation(tok, blocks, tiny_llama):
    model = tiny_llama(**TINY, vocab=len(tok))
    with pytest.raises(TypeError, match="TrainConfig"):
        train(model, lm_batches(blocks, 4), {"max_steps": 1})
    with pytest.raises(ValueError, match="no batches"):
        train(model, [], quiet(max_steps=1, warmup_steps=0))
    with pytest.raises(TypeError, match="dict"):
        train(model, [blocks[:4]], quiet(max_steps=1, warmup_steps=0))


# --- packing and batches --------------------------------------------------------------------------


def test_pack_tokens_wraps_documents_and_cuts_blocks():
    out = pack_tokens([[1, 2, 3], [4, 5]], 4, bos_id=0, eos_id=9)
    assert out.tolist() == [[0, 1, 2, 3], [9, 0, 4, 5]], (
        f"packing [[1,2,3],[4,5]] with bos=0, eos=9 into blocks of 4 gave {out.tolist()}; expected "
        "<bos> doc <eos> <bos> doc <eos> cut into full blocks, the remainder dropped"
    )
    assert out.dtype == torch.long, "packed blocks should be token ids (int64)"


def test_pack_tokens_does_not_double_an_existing_bos():
    out = pack_tokens([[0, 7, 8], [0, 5, 6]], 4, bos_id=0, eos_id=9)
    assert out.tolist() == [[0, 7, 8, 9], [0, 5, 6, 9]], (
        f"a document that already starts with bos got a second one: {out.tolist()}"
    )


def test_pack_tokens_without_special_tokens_just_concatenates():
    out = pack_tokens([[1, 2], [3], [4, 5, 6, 7]], 3)
    assert out.tolist() == [[1, 2, 3], [4, 5, 6]], (
        f"plain packing should concatenate and cut: {out.tolist()}"
    )


def test_pack_tokens_shapes(blocks, tok):
    assert blocks.ndim == 2 and blocks.shape[1] == BLOCK, (
        f"blocks should be [n, {BLOCK}], got {tuple(blocks.shape)}"
    )
    assert (blocks == tok.eos_token_id).any() and (blocks == tok.bos_token_id).any(), (
        "packed corpus blocks should contain document boundaries (<bos>, <|end|>)"
    )
    assert not ((blocks[:, :-1] == tok.bos_token_id) & (blocks[:, 1:] == tok.bos_token_id)).any(), (
        "two <bos> in a row: the tokenizer's own <bos> was doubled"
    )


def test_pack_tokens_errors():
    with pytest.raises(ValueError, match="block_size"):
        pack_tokens([[1, 2, 3]], 1)
    with pytest.raises(ValueError, match="not enough"):
        pack_tokens([[1, 2, 3]], 8)


def test_lm_batches_shapes_and_shuffling(blocks):
    batches = lm_batches(blocks[:20], 6, seed=3)
    first = list(batches)
    assert len(first) == 3, (
        f"20 blocks in batches of 6 should give 3 full batches per pass, got {len(first)}"
    )
    for b in first:
        assert set(b) == {"input_ids", "labels"}, (
            f"a batch should hold input_ids and labels, got {set(b)}"
        )
        assert b["input_ids"].shape == (6, BLOCK), (
            f"batch shape {tuple(b['input_ids'].shape)}, expected (6, {BLOCK})"
        )
        assert torch.equal(b["labels"], b["input_ids"]) and b["labels"] is not b["input_ids"], (
            "labels should be a copy of input_ids (the model shifts them itself)"
        )
    rows = torch.cat([b["input_ids"] for b in first])
    assert len({tuple(r.tolist()) for r in rows}) == 18, "a pass should not repeat a block"
    second = list(batches)
    assert not all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, second)), (
        "each pass should be reshuffled"
    )
    again = list(lm_batches(blocks[:20], 6, seed=3))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again)), (
        "the same seed should give the same order"
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda b: lm_batches(b[0], 2),  # 1-D
        lambda b: lm_batches(b[:5], 0),
        lambda b: lm_batches(b[:5], 6),
    ],
)
def test_lm_batches_validation(blocks, make):
    with pytest.raises(ValueError):
        make(blocks)


# --- offline --------------------------------------------------------------------------------------


def test_the_network_guard_is_on():
    assert socket.socket.connect is netguard._guarded_connect, (
        "the test session should run with course_lib.course.netguard.block_network() on (see conftest.py)"
    )
    for key, value in OFFLINE_VARS.items():
        assert os.environ.get(key) == value, f"{key} should be {value!r} during the tests"


def test_connections_to_the_internet_are_blocked():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlocked):
            s.connect(("93.184.216.34", 80))
    finally:
        s.close()
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("93.184.216.34", 80), timeout=2)
    with pytest.raises(OSError):  # no DNS (socket.gaierror) or NetworkBlocked
        socket.create_connection(("example.com", 80), timeout=2)


def test_ipv6_internet_is_blocked():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6 sockets here")
    try:
        with pytest.raises(NetworkBlocked):
            s.connect(("2606:2800:220:1:248:1893:25c8:1946", 80, 0, 0))
    finally:
        s.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_connections_work(host):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection((host, port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping", f"a loopback connection to {host} should carry data"


def test_short_training_run_works_offline(tok, blocks, tiny_llama):
    hist = train(
        tiny_llama(**TINY, vocab=len(tok), seed=1),
        lm_batches(blocks, 4),
        quiet(max_steps=10, warmup_steps=2),
    )
    assert hist.steps == list(range(1, 11)), "a 10-step run under the network guard should complete"
    assert socket.socket.connect is netguard._guarded_connect, (
        "training must not switch the network guard off"
    )


def test_epoch_batches_reshuffle_each_pass_and_drop_the_remainder():
    from course_lib.training import EpochBatches

    batches = EpochBatches(10, 3, seed=0, make=lambda rows: rows)
    first, second = list(batches), list(batches)
    assert [len(b) for b in first] == [3, 3, 3], (
        "10 items in batches of 3: three full batches, remainder dropped"
    )
    assert first != second, "each pass should use a new order (seed + pass number)"
    assert list(EpochBatches(10, 3, seed=0, make=lambda rows: rows)) == first, (
        "same seed, same first pass"
    )
    import pytest

    with pytest.raises(ValueError, match="batch_size must be in"):
        EpochBatches(2, 3, seed=0, make=list)
