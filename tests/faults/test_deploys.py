"""The fault matrix for deploys: a code-only deploy and a requirements-change deploy, each
broken by SIGKILL and by a cut link at 12 moments, and by a reboot at 3 (`make faults`)."""

import pytest

from tests.conftest import booted, fab
from tests.faults.harness import make_app, points, run_case, timed

pytestmark = pytest.mark.faults
KINDS = {"deploy (code only)": "", "deploy (new requirements)": "requirements"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A server serving a first release, and each kind's unbroken duration."""
    root = tmp_path_factory.mktemp("apps")
    with booted() as server:
        fab("-H", server.name, "deploy", env={"FABRIC_APP_SOURCE": str(
            make_app(root, "v-first"))}, check=True)
        durations = {kind: timed(server, ["deploy"], {"FABRIC_APP_SOURCE": str(
            make_app(root, f"v-timing-{i}", note and f"timing {i}"))})
            for i, (kind, note) in enumerate(KINDS.items())}
        yield server, root, durations


CASES = [(kind, fault, i) for kind in KINDS for fault in ("kill", "cut") for i in range(12)] + \
        [(kind, "reboot", i) for kind in KINDS for i in (2, 6, 10)]


@pytest.mark.parametrize("kind,fault,point", CASES,
                         ids=[f"{k.split()[1][1:]}-{f}-{p}" for k, f, p in CASES])
def test_a_broken_deploy_converges_on_a_plain_rerun(setup, kind, fault, point):
    server, root, durations = setup
    name = f"v-{KINDS[kind] or 'code'}-{fault}-{point}"
    app = make_app(root, name, KINDS[kind] and name)
    at = points(durations[kind])[point]
    out = run_case(server, kind, ["deploy"], fault, at, {"FABRIC_APP_SOURCE": str(app)})
    assert out.ok, out.problems
