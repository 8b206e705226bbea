"""Seed sweeps that ship their results, for experiments whose seeds do not fit a lesson's budget.

COURSE_DESIGN §10: a sweep runs every (arm, seed) of an experiment once, offline, and writes
`data/sweeps/<name>.json` with its exact config, the hash of the code it ran, library versions,
the per-seed numbers and its build time. The lesson runs one seed live and places it in the
shipped distribution (`place`); `tests/build/test_sweeps.py` re-runs one seed of every sweep and
matches the shipped numbers. Build with `make sweeps` (all) or `make sweep NAME=<name>`.

A sweep is declared in a module `course_lib/build/sweeps_<topic>.py` as a list `SWEEPS` of
`SweepSpec`; this module finds them all. Used from chapter 01 on.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as md
import json
import math
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch

from course_lib.data import DATA_DIR
from course_lib.uncertainty import Spread, spread

SWEEP_DIR = DATA_DIR / "sweeps"
LIB = Path(__file__).resolve().parent
DIGITS = 5  # numbers are rounded so that a rebuild on the same machine is byte-identical


@dataclass(frozen=True)
class SweepSpec:
    """One experiment over arms × seeds; `run(arm, seed)` returns {metric: number}.

    Metrics whose name ends in `_seconds` are timings: shipped, but not compared by the check.
    `check_arms` (default: the first arm) are re-run for `seeds[0]` by the test; `rel_tol`/`abs_tol`
    absorb the numeric difference between 1 and 2 torch threads.
    """

    name: str
    what: str
    run: Callable[[str, int], Mapping[str, float]]
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    config: Mapping
    code_files: tuple[str, ...]
    chapter: str
    check_arms: tuple[str, ...] = ()
    rel_tol: float = 0.02
    abs_tol: float = 0.02
    extra: Callable[[], Mapping] | None = field(default=None)

    def __post_init__(self):
        if len(self.seeds) < 3:
            raise ValueError(f"sweep {self.name!r}: {len(self.seeds)} seeds; §10 asks for ≥ 3")
        if not self.arms:
            raise ValueError(f"sweep {self.name!r} needs at least one arm")
        missing = [f for f in self.code_files if not (LIB / f).exists()]
        if missing:
            raise FileNotFoundError(
                f"sweep {self.name!r}: code files not in course_lib/: {missing}"
            )


def registry() -> dict[str, SweepSpec]:
    """Every sweep declared in `course_lib/build/sweeps_*.py`, by name."""
    import course_lib.build as build

    found: dict[str, SweepSpec] = {}
    for info in sorted(pkgutil.iter_modules(build.__path__), key=lambda i: i.name):
        if not info.name.startswith("sweeps_"):
            continue
        module = importlib.import_module(f"course_lib.build.{info.name}")
        for spec in getattr(module, "SWEEPS", []):
            if spec.name in found:
                raise ValueError(f"two sweeps are named {spec.name!r}")
            found[spec.name] = spec
    return found


def get_spec(name: str) -> SweepSpec:
    """The declared sweep `name`, or a clear error listing the known ones."""
    specs = registry()
    if name not in specs:
        raise KeyError(f"no sweep named {name!r}; known sweeps: {sorted(specs)}")
    return specs[name]


def code_version(files: tuple[str, ...]) -> str:
    """sha256 (16 hex digits) of the course_lib files a sweep's numbers depend on."""
    digest = hashlib.sha256()
    for name in files:
        digest.update((LIB / name).read_bytes())
    return digest.hexdigest()[:16]


def _rounded(metrics: Mapping[str, float], where: str) -> dict[str, float]:
    """Metrics as {name: float rounded to DIGITS}, refusing non-numbers."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: metric {key!r} is {value!r}; a sweep ships numbers only")
        out[key] = round(float(value), DIGITS)
    return out


def run_one(spec: SweepSpec, arm: str, seed: int) -> dict[str, float]:
    """One (arm, seed) of a sweep, rounded as shipped."""
    torch.manual_seed(seed)
    return _rounded(spec.run(arm, seed), f"{spec.name}[{arm}, seed {seed}]")


def build(name: str, out: Path | None = None) -> dict:
    """Run every (arm, seed) of sweep `name` and write its JSON; returns the record."""
    spec = get_spec(name)
    start = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for arm in spec.arms:
        results[arm] = {}
        for seed in spec.seeds:
            results[arm][str(seed)] = run_one(spec, arm, seed)
            print(f"{name} {arm} seed {seed}: {results[arm][str(seed)]}", flush=True)
    record = {
        "name": spec.name,
        "what": spec.what,
        "chapter": spec.chapter,
        "config": dict(spec.config),
        "arms": list(spec.arms),
        "seeds": list(spec.seeds),
        "code_version": code_version(spec.code_files),
        "code_files": [f"course_lib/{f}" for f in spec.code_files],
        "versions": {k: md.version(k) for k in ("torch", "transformers", "peft")},
        "threads": torch.get_num_threads(),
        "results": results,
        "extra": dict(spec.extra()) if spec.extra else {},
        "build_seconds": round(time.perf_counter() - start, 1),
        "rebuild": f"make sweep NAME={spec.name}",
    }
    path = Path(out) if out is not None else SWEEP_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return record


def load(name: str) -> dict:
    """The shipped record of sweep `name` (data/sweeps/<name>.json)."""
    path = SWEEP_DIR / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in SWEEP_DIR.glob("*.json"))
        raise FileNotFoundError(
            f"no shipped sweep {path.name} in data/sweeps/ (known: {known}); "
            f"rebuild it with `make sweep NAME={name}`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def values(record: dict, arm: str, metric: str) -> list[float]:
    """The per-seed values of one metric of one arm, in seed order."""
    if arm not in record["results"]:
        raise KeyError(f"sweep {record['name']!r} has no arm {arm!r}; arms: {record['arms']}")
    per_seed = record["results"][arm]
    try:
        return [per_seed[str(s)][metric] for s in record["seeds"]]
    except KeyError:
        known = sorted(next(iter(per_seed.values())))
        raise KeyError(f"sweep {record['name']!r} has no metric {metric!r}; metrics: {known}")


def summary(record: dict, arm: str, metric: str) -> Spread:
    """Mean, sd and 95 % t interval of one metric of one arm over the shipped seeds."""
    return spread(values(record, arm, metric))


def table(record: dict, metrics: list[str], digits: int = 3):
    """A pandas table: one row per arm, 'mean ± sd' per metric, and the number of seeds."""
    import pandas as pd

    rows = {}
    for arm in record["arms"]:
        row = {m: summary(record, arm, m).fmt(digits) for m in metrics}
        rows[arm] = {**row, "seeds": len(record["seeds"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def place(live: float, record: dict, arm: str, metric: str) -> str:
    """Where a live run's number falls in the shipped distribution, in one sentence."""
    xs = values(record, arm, metric)
    s = spread(xs)
    inside = min(xs) - 2 * s.sd <= live <= max(xs) + 2 * s.sd
    where = "inside" if inside else "OUTSIDE"
    return (
        f"{metric} of {arm}: live run {live:.4g}; shipped {len(xs)} seeds {s.mean:.4g} ± {s.sd:.2g} "
        f"(min {min(xs):.4g}, max {max(xs):.4g}) — the live run is {where} the shipped spread"
    )


def mismatches(spec: SweepSpec, record: dict, arm: str, rerun: Mapping[str, float]) -> list[str]:
    """Metrics of a re-run seed that differ from the shipped ones beyond the spec's tolerance."""
    shipped = record["results"][arm][str(spec.seeds[0])]
    bad = []
    for key, value in shipped.items():
        if key.endswith("_seconds"):
            continue
        if key not in rerun:
            bad.append(f"{key}: missing from the re-run")
        elif not math.isclose(rerun[key], value, rel_tol=spec.rel_tol, abs_tol=spec.abs_tol):
            bad.append(f"{key}: re-run {rerun[key]} vs shipped {value}")
    return bad


def main(argv: list[str] | None = None) -> None:
    """Command line: `list`, `build NAME|all`, `check NAME` (re-run one seed against the file)."""
    ap = argparse.ArgumentParser(prog="python -m course_lib.sweeps", description=__doc__)
    ap.add_argument("action", choices=["list", "build", "check"])
    ap.add_argument("name", nargs="?", default="all")
    args = ap.parse_args(argv)
    specs = registry()
    names = sorted(specs) if args.name == "all" else [args.name]
    for name in names:
        spec = get_spec(name)
        if args.action == "list":
            print(f"{name:32s} {spec.chapter:6s} {len(spec.arms)} arms × {len(spec.seeds)} seeds")
        elif args.action == "build":
            rec = build(name)
            print(f"wrote data/sweeps/{name}.json in {rec['build_seconds']} s")
        else:
            record = load(name)
            for arm in spec.check_arms or spec.arms[:1]:
                bad = mismatches(spec, record, arm, run_one(spec, arm, spec.seeds[0]))
                print(f"{name} [{arm}]: {'OK' if not bad else bad}")


if __name__ == "__main__":
    main()
