"""The fault matrix for rollback: broken by SIGKILL and by a cut link at 12 moments each
(`make faults`)."""

import pytest

from tests.conftest import booted, fab
from tests.faults.harness import make_app, points, run_case, timed
from tests.integration.test_deploy import live_release

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A server with two releases (A, then B live), and a rollback's unbroken duration."""
    root = tmp_path_factory.mktemp("apps")
    with booted() as server:
        releases = []
        for text in ("v-a", "v-b"):
            fab("-H", server.name, "deploy", env={"FABRIC_APP_SOURCE": str(
                make_app(root, text))}, check=True)
            releases.append(live_release(server))
        duration = timed(server, ["rollback", "--to", releases[0]], {})
        yield server, releases, duration


@pytest.mark.parametrize("fault,point", [(f, i) for f in ("kill", "cut") for i in range(12)])
def test_a_broken_rollback_converges_on_a_plain_rerun(setup, fault, point):
    server, releases, duration = setup
    other = releases[1] if live_release(server) == releases[0] else releases[0]
    out = run_case(server, "rollback", ["rollback", "--to", other], fault,
                   points(duration)[point], {})
    assert out.ok, out.problems
    assert live_release(server) == other
