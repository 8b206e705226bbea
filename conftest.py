"""pytest setup for the whole repository: offline, network blocked but for loopback.

The environment variables reach the notebook kernels that nbval starts, and
course_lib.setup() blocks the network inside them too.
"""

import os

import pytest

os.environ["COURSE_BLOCK_NETWORK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["COURSE_PLAIN_PROGRESS"] = "1"
# In a notebook a failing check prints its ✘ line and lets "Run All" go on (course_lib.course.checks);
# under pytest (nbval runs the solutions) it must raise, so that a failing solution fails the suite.
os.environ["COURSE_CHECKS"] = "raise"

from course_lib.course.netguard import block_network  # noqa: E402
from course_lib.environment import set_offline  # noqa: E402

set_offline()
block_network()


def pytest_collection_modifyitems(config, items):
    """Mark every notebook cell nbval collects `notebook`: `pytest -m "not notebook"` = unit tests."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebook)
