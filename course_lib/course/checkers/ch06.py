"""Checks for the chapter 06 exercises (adapters).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import check, expect, expect_close, expect_equal


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


def _reference(h, layer):
    return h + layer.up(torch.relu(layer.down(h)))


@check("06.2 a bottleneck adapter")
def check_adapter_module(student_cls) -> None:
    """The student's Adapter(d_model, m): .down [m, d], .up [d, m] starting at zero, h + up(relu(down(h)))."""
    torch.manual_seed(0)
    layer = student_cls(12, 3)
    expect(isinstance(layer, torch.nn.Module), "Adapter must be a torch.nn.Module subclass")
    expect(
        isinstance(getattr(layer, "down", None), torch.nn.Linear)
        and isinstance(getattr(layer, "up", None), torch.nn.Linear),
        "name the two projections .down and .up, both nn.Linear (with biases)",
    )
    expect(
        tuple(layer.down.weight.shape) != (12, 3) or tuple(layer.up.weight.shape) != (3, 12),
        "down and up are swapped: down maps d_model → bottleneck (nn.Linear(12, 3), weight [3, 12]) and up maps back",
    )
    expect_equal(
        tuple(layer.down.weight.shape), (3, 12), "the down-projection's weight shape [m, d_model]"
    )
    expect_equal(
        tuple(layer.up.weight.shape), (12, 3), "the up-projection's weight shape [d_model, m]"
    )
    expect(
        layer.down.bias is not None and layer.up.bias is not None,
        "both projections have biases (Houlsby et al.)",
    )
    expect(
        bool(layer.down.weight.detach().abs().sum() > 0),
        "the down-projection is all zeros: with up = 0 as well, up's gradient relu(down(h)) is zero and "
        "nothing ever trains; keep down random (nn.Linear's default init)",
    )
    expect(
        float(layer.up.weight.detach().abs().max()) < 1e-6
        and float(layer.up.bias.detach().abs().max()) < 1e-6,
        "the up-projection is not initialised near zero (here: exactly zero): set up.weight and up.bias to "
        "zeros so the adapter starts as the identity and the adapted model starts at the base model",
    )
    h = torch.randn(5, 12)
    out = layer(h)
    expect_close(
        out,
        h,
        1e-3,
        "the output of a fresh adapter (it must be the identity)",
        hints=[
            (
                torch.zeros_like(h),
                "the residual is missing: return h + up(relu(down(h))), not only the branch",
            ),
        ],
    )
    with torch.no_grad():
        layer.up.weight.normal_()
        layer.up.bias.normal_()
    want, branch = _reference(h, layer), layer.up(torch.relu(layer.down(h)))
    expect_close(
        layer(h),
        want,
        1e-4,
        "the output once up is non-zero",
        hints=[
            (
                branch,
                "the residual is missing: an adapter returns h + up(relu(down(h))); without h the sublayer's "
                "output is thrown away",
            ),
            (
                h + layer.up(layer.down(h)),
                "the nonlinearity is missing: without relu, up(down(h)) is just a rank-m "
                "linear map",
            ),
            (
                h + torch.relu(layer.up(layer.down(h))),
                "relu is applied after the up-projection; it belongs in the "
                "bottleneck, between down and up",
            ),
            (
                h + torch.relu(layer.up(torch.relu(layer.down(h)))),
                "a second relu after the up-projection: the "
                "adapter's output must be able to be negative",
            ),
        ],
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
            ],
        )
    expect(isinstance(out, torch.Tensor), "return a tensor")
