"""Checks for the chapter 06 exercises (adapters).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal


@check("06.1 adapter parameter count")
def check_param_count(student_fn) -> None:
    """The student's adapter_param_count(d_model, m, n_adapters): n · (2·d·m + d + m)."""
    d, m, n = 192, 8, 8
    want = n * (2 * d * m + d + m)
    expect_equal(
        student_fn(d, m, n),
        want,
        "the parameters of 8 adapters (d_model=192, bottleneck=8)",
        hints=[
            (
                n * 2 * d * m,
                "the biases are missing: the down-projection has m biases and the up-projection d",
            ),
            (n * (2 * d * m + m), "the up-projection's d biases are missing"),
            (n * (2 * d * m + d), "the down-projection's m biases are missing"),
            (
                n * (d * m + d + m),
                "an adapter has TWO projections (down d→m and up m→d), each with d·m weights",
            ),
            (
                n * (2 * d * m + 2 * d),
                "the down-projection's bias has m entries (its output size), not d",
            ),
            (2 * d * m + d + m, "multiply by the number of adapters"),
            (
                n * d * d,
                "d·d is the size of a full hidden-to-hidden matrix; an adapter goes through the bottleneck m",
            ),
        ],
    )
    expect_equal(
        student_fn(64, 4, 1), 2 * 64 * 4 + 64 + 4, "one adapter with d_model=64, bottleneck=4"
    )


def _ia3_call(layer, x: torch.Tensor, feedforward: bool) -> torch.Tensor:
    """layer(x), with the typical mix-up of input and output scaling explained."""
    try:
        return layer(x)
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except RuntimeError as error:
        where = (
            "for the feed-forward layer (down_proj) the vector has in_features entries and "
            "rescales the INPUT: base(x * ia3_l)"
            if feedforward
            else "for an attention projection (k_proj, v_proj) the vector has out_features "
            "entries and rescales the OUTPUT: base(x) * ia3_l"
        )
        raise CheckFailed(f"a shape mismatch ({error}): {where}") from None


@check("06.2 IA3 from scratch")
def check_ia3_module(student_cls) -> None:
    """The student's IA3Linear(base, feedforward): a vector ia3_l of ones scaling output or input."""
    for feedforward in (False, True):
        torch.manual_seed(0)
        base = torch.nn.Linear(6, 4)  # in 6, out 4: a vector of the wrong length shows
        kind = "feedforward=True" if feedforward else "feedforward=False"
        layer = student_cls(base, feedforward)
        expect(isinstance(layer, torch.nn.Module), "IA3Linear must be a torch.nn.Module subclass")
        vec = getattr(layer, "ia3_l", None)
        expect(
            isinstance(vec, torch.nn.Parameter),
            "store the learned vector as an nn.Parameter named ia3_l",
        )
        size, other = (6, 4) if feedforward else (4, 6)
        expect(
            vec.numel() != other,
            f"{kind}: ia3_l has {other} entries; "
            + (
                "the feed-forward vector rescales the layer's INPUT (the MLP's inner "
                "activations): in_features = 6 entries"
                if feedforward
                else "an attention vector rescales the layer's OUTPUT (keys or values): "
                "out_features = 4 entries"
            ),
        )
        expect_equal(vec.numel(), size, f"{kind}: the number of entries of ia3_l")
        expect(
            not any(p.requires_grad for p in base.parameters()),
            "the base layer is trainable: freeze it with requires_grad_(False)",
        )
        expect(vec.requires_grad, "ia3_l must be trainable")
        expect(
            not bool(torch.all(vec == 0)),
            "ia3_l starts at zero: that multiplies every channel by 0 and cuts the layer off; "
            "start at ones, the identity",
        )
        expect(
            bool(torch.all(vec == 1)),
            "ia3_l must start at ones, so that a fresh IA3 layer is exactly the base layer",
        )
        x = torch.randn(3, 6)
        added = base(x + 1) if feedforward else base(x) + 1
        expect_close(
            _ia3_call(layer, x, feedforward),
            base(x),
            1e-6,
            f"{kind}: the output at the start",
            hints=[(added, "IA3 multiplies by the vector; it does not add it")],
        )
        with torch.no_grad():
            vec.copy_(torch.linspace(0.5, 2.0, size).reshape(vec.shape))
        scale = torch.linspace(0.5, 2.0, size)
        no_bias = x @ base.weight.T
        if feedforward:
            want = base(x * scale)
            hints = [
                ((x * scale) @ base.weight.T, "the base layer's bias is missing: call base(...)"),
                (base(x), "ia3_l is not applied: multiply the input by it, base(x * ia3_l)"),
            ]
        else:
            want = base(x) * scale
            hints = [
                (
                    no_bias * scale + base.bias,
                    "scale the whole output, bias included: base(x) * ia3_l (what peft does)",
                ),
                (base(x) + scale, "IA3 multiplies by the vector; it does not add it"),
            ]
        with torch.no_grad():
            expect_close(
                _ia3_call(layer, x, feedforward),
                want,
                1e-5,
                f"{kind}: the output once ia3_l has been trained",
                hints=hints,
            )


def _block_case():
    g = torch.Generator().manual_seed(6)
    d = 8
    mats = [torch.randn(d, d, generator=g) / d**0.5 for _ in range(4)]
    attn = lambda x: torch.tanh(x @ mats[0])  # noqa: E731  stand-ins for the sublayers
    mlp = lambda x: torch.relu(x @ mats[1])  # noqa: E731
    norm1 = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    norm2 = lambda x: 2 * x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    ad1 = lambda x: x + 0.5 * torch.sin(x @ mats[2])  # noqa: E731  stand-ins for trained adapters
    ad2 = lambda x: x + 0.5 * torch.cos(x @ mats[3])  # noqa: E731
    return torch.randn(3, d, generator=g), attn, mlp, norm1, norm2, ad1, ad2


@check("06.3 Houlsby placement")
def check_houlsby_block(student_fn) -> None:
    """The student's houlsby_block(x, attn, mlp, norm1, norm2, ad_attn, ad_mlp) for a pre-norm block."""
    x, attn, mlp, n1, n2, a1, a2 = _block_case()
    out = student_fn(x, attn, mlp, n1, n2, a1, a2)
    h = x + a1(attn(n1(x)))
    want = h + a2(mlp(n2(h)))
    h_before = x + attn(a1(n1(x)))
    h_after_res = a1(x + attn(n1(x)))
    h_plain = x + attn(n1(x))
    expect_close(
        out,
        want,
        1e-5,
        "the block's output",
        hints=[
            (
                h_before + mlp(a2(n2(h_before))),
                "the adapters are placed BEFORE the sublayers (on their input); "
                "Houlsby places them AFTER: x + adapter(attn(norm(x)))",
            ),
            (
                a2(h_after_res + mlp(n2(h_after_res))),
                "the adapter is applied after the residual addition; it goes on "
                "the sublayer's output, before it is added to the residual stream",
            ),
            (
                h_plain + a2(mlp(n2(h_plain))),
                "the adapter after attention is missing: Houlsby puts one after "
                "attention AND one after the MLP (Pfeiffer: after the MLP only)",
            ),
            (h + mlp(n2(h)), "the adapter after the MLP is missing"),
            (x + attn(n1(x)) + mlp(n2(x + attn(n1(x)))), "no adapter is applied"),
            (
                h + a1(mlp(n2(h))),
                "the MLP's adapter must be ad_mlp, not ad_attn: each sublayer has its own adapter",
            ),
            (
                a2(mlp(n2(a1(attn(n1(x)))))),
                "the residual connections of the block are missing: "
                "h = x + ad_attn(attn(norm1(x))), then h + ad_mlp(mlp(norm2(h)))",
            ),
        ],
    )


@check("06.4 parallel adapter")
def check_parallel(student_fn) -> None:
    """The student's parallel_mlp(h, mlp, norm, down, up) = h + mlp(norm(h)) + up(relu(down(norm(h))))."""
    g = torch.Generator().manual_seed(7)
    d, m = 8, 3
    w = torch.randn(d, d, generator=g) / d**0.5
    mlp = lambda x: torch.relu(x @ w)  # noqa: E731
    norm = lambda x: 2 * x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    down, up = torch.nn.Linear(d, m), torch.nn.Linear(m, d)
    with torch.no_grad():
        for p in [*down.parameters(), *up.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    h = torch.randn(4, d, generator=g)
    out = student_fn(h, mlp, norm, down, up)
    branch = lambda x: up(torch.relu(down(x)))  # noqa: E731
    y = mlp(norm(h))
    with torch.no_grad():
        expect_close(
            out,
            h + y + branch(norm(h)),
            1e-4,
            "the block's MLP half with a parallel adapter",
            hints=[
                (
                    h + y + branch(y),
                    "the adapter reads the MLP's OUTPUT: that is a sequential (Pfeiffer) adapter; a "
                    "parallel adapter reads the same input as the MLP, norm(h)",
                ),
                (
                    h + y + y + branch(y),
                    "the adapter reads the MLP's OUTPUT and adds a residual: that is a sequential "
                    "(Pfeiffer) adapter; a parallel adapter reads norm(h) and adds only its branch",
                ),
                (
                    h + y + branch(h),
                    "the adapter reads h before the norm; feed it what the MLP reads, norm(h)",
                ),
                (
                    h + y + norm(h) + branch(norm(h)),
                    "the adapter's own residual is added too: in parallel, add only the "
                    "branch up(relu(down(norm(h)))), the residual stream already carries h",
                ),
                (y + branch(norm(h)), "the block's residual h is missing"),
                (h + y, "the adapter branch is missing"),
                (
                    h + y + up(down(norm(h))),
                    "the branch has no nonlinearity: up(relu(down(norm(h)))); without the relu, "
                    "down and up collapse into one rank-m linear map",
                ),
            ],
        )
    expect(isinstance(out, torch.Tensor), "return a tensor")
