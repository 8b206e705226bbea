"""Every shipped sweep (data/sweeps/*.json) is declared, complete, and reproduced by one seed re-run.

COURSE_DESIGN §10: a sweep's numbers must come from the code in the repository. A failure here
means the code changed since the sweep was built: rebuild it with `make sweep NAME=<name>`.
"""

import pytest

from course_lib import sweeps

SPECS = sweeps.registry()


def test_every_shipped_file_is_declared_and_every_sweep_shipped():
    shipped = {p.stem for p in sweeps.SWEEP_DIR.glob("*.json")}
    assert shipped - set(SPECS) == set(), f"sweep files without a SweepSpec: {shipped - set(SPECS)}"
    assert set(SPECS) - shipped == set(), (
        f"declared sweeps never built: {set(SPECS) - shipped}; run `make sweeps`"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_shipped_record_is_complete(name):
    spec, record = SPECS[name], sweeps.load(name)
    assert record["arms"] == list(spec.arms), "arms changed since the build: rebuild the sweep"
    assert record["seeds"] == list(spec.seeds), "seeds changed since the build: rebuild the sweep"
    assert record["config"] == dict(spec.config), "config changed since the build: rebuild it"
    for arm in spec.arms:
        assert sorted(record["results"][arm]) == sorted(str(s) for s in spec.seeds)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_one_seed_reruns_to_the_shipped_numbers(name):
    spec, record = SPECS[name], sweeps.load(name)
    for arm in spec.check_arms or spec.arms[:1]:
        rerun = sweeps.run_one(spec, arm, spec.seeds[0])
        bad = sweeps.mismatches(spec, record, arm, rerun)
        assert not bad, (
            f"sweep {name} [{arm}] seed {spec.seeds[0]} no longer reproduces: {bad}. "
            f"Rebuild with `make sweep NAME={name}`."
        )
