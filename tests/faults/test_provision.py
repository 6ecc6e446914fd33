"""The fault matrix for a fresh server's provision: broken by SIGKILL and by a cut link at
12 moments each, every case on a server of its own (`make faults`)."""

import pytest

from tests.conftest import booted
from tests.faults.harness import points, run_case, timed

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def duration():
    """How long provision takes on a fresh server, unbroken."""
    with booted() as server:
        return timed(server, ["provision"], {})


@pytest.mark.parametrize("fault,point", [(f, i) for f in ("kill", "cut") for i in range(12)])
def test_a_broken_fresh_provision_converges_on_a_plain_rerun(duration, fault, point):
    with booted() as server:
        out = run_case(server, "provision (fresh server)", ["provision"], fault,
                       points(duration)[point], {}, fresh=True)
    assert out.ok, out.problems
