"""A run on one host: the plan applier, dry runs, local work first, the deploy lock."""


import pytest

from tasks import lock, revision
from tasks.plan import Plan, apply
from tasks.shell import DeployError
from tasks.steps import app, firewall, nginx, packages, supervisor
from tests.unit.stack import RecordingHost, S, converged_facts, facts_for


def test_a_converged_server_plans_nothing_and_every_step_says_why():
    f = converged_facts()
    same = revision.Source("feedface", "0123456789abcdef")
    assert packages.plan(S, f).changes == [] and packages.plan(S, f).ok == "4 packages present"
    assert app.plan(S, f, same).changes == []
    assert app.plan(S, f, same).ok == "release 20260101T000000Z-aaaaaaaa is live"
    assert supervisor.plan(S, f).ok == "hello-world running (pid 4242), program unchanged"
    assert nginx.plan(S, f).changes == [] and nginx.plan(S, f).ok.startswith("site unchanged")
    assert firewall.plan(S, f).ok == "ufw active, 2 rules present (2222/tcp, 80/tcp)"
    for plan in (packages.plan(S, f), app.plan(S, f, same), supervisor.plan(S, f),
                 nginx.plan(S, f), firewall.plan(S, f)):
        assert plan.changes == [] and plan.ok


def test_a_dry_run_runs_nothing_and_says_the_same_as_a_real_run(capsys):
    plan = packages.plan(S, facts_for(S, os_id="debian", apt_age=0, current_hash="c0ffee"))
    dry = RecordingHost(True, facts_for(S))
    assert apply(dry, plan) == ("changed", "installed nginx, python3-venv, supervisor, ufw")
    assert dry.ran == []
    real = RecordingHost(False, facts_for(S))
    assert apply(real, plan) == apply(dry, plan) and len(real.ran) == 1
    assert apply(real, Plan(ok="nothing to do")) == ("ok", "nothing to do")


def test_the_lock_takes_over_only_from_a_session_that_is_gone():
    """The lock's shell logic, run here: a live process is alive; one that ended, the same
    pid with another start time (a reused pid), or no pid at all is gone."""
    import subprocess

    from tasks.lock import SESSION
    me = 'echo "$$:$(stat_of $$ | cut -d" " -f20)"'
    ended = subprocess.run(["sh", "-c", SESSION + me], capture_output=True, text=True)
    pid, start = ended.stdout.strip().split(":")
    own = subprocess.run(["sh", "-c", SESSION + f'alive "$({me})" && echo alive'],
                         capture_output=True, text=True).stdout
    assert own.strip() == "alive" and start.isdigit()
    check = SESSION + 'alive "$1" && echo alive || echo gone'
    for session in (f"{pid}:{start}", f"1:{int(start) + 999999}", "4194000:1", ""):
        out = subprocess.run(["sh", "-c", check, "sh", session], capture_output=True,
                             text=True).stdout.strip()
        assert out == "gone", session
    script = lock.acquire_script(S, "tok", "tom@laptop")
    assert script.index("flock") < script.index("took-over") < script.index("mkdir")
    assert "--state=active,activating,deactivating 'fab-hello-world.*'" in script
    assert script.index("acquired") < script.index("busy")


def test_a_gone_runs_lock_is_taken_over_quietly_unless_it_had_begun_changing(tmp_path,
                                                                            monkeypatch):
    """The lock's shell logic, run here on a directory of its own: a dead holder's lock is
    taken (said only if the holder had marked it changing); a live holder blocks, at once
    when it is changing, after two seconds when it is not (a run whose session is closing)."""
    import subprocess
    import time

    monkeypatch.setattr(lock, "WORK_DIR", str(tmp_path))
    held = tmp_path / "hello-world.lock"

    def acquire(token, session="me=4194001:1"):  # here, no sshd: a session given
        script = lock.acquire_script(S, token, f"{token}@laptop", then="echo then-ran")
        script = script.replace("-o root -g root ", "").replace("me=$(session_of $$)", session)
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                             check=True).stdout
        return out.split()

    # A run whose connection is gone as it takes the lock finds no session: it takes
    # nothing (a lock naming no session would stay until --break-lock).
    assert acquire("none", session="me=$(session_of $$)") == ["no-session"]
    assert not held.exists()
    assert acquire("one") == ["acquired", "then-ran"]
    assert (held / "session").read_text() == "4194001:1\n"
    (held / "session").write_text("4194000:1\n")  # a session that is gone
    assert acquire("two") == ["acquired", "then-ran"]
    subprocess.run(["sh", "-c", lock.changing_script(S, "nottwo")], check=True)
    assert not (held / "changing").exists()  # only the holder's token marks it
    subprocess.run(["sh", "-c", lock.changing_script(S, "two")], check=True)
    assert (held / "changing").exists()
    (held / "session").write_text("4194000:1\n")
    assert acquire("three") == ["took-over", "two@laptop", "acquired", "then-ran"]

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        start = open(f"/proc/{sleeper.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        (held / "session").write_text(f"{sleeper.pid}:{start}\n")
        began = time.monotonic()
        assert acquire("four") == ["held", "three@laptop"]
        assert time.monotonic() - began > 1.5  # it waited for a quiet holder to end
        (held / "changing").touch()
        began = time.monotonic()
        assert acquire("four") == ["held", "three@laptop"]
        assert time.monotonic() - began < 1.5  # a changing holder blocks at once
    finally:
        sleeper.kill()


def test_a_steps_local_work_runs_before_the_server_is_read_and_its_failure_is_the_steps():
    """Step.prepare (hashing the app's folder) runs for the steps that apply; a failure there
    is recorded as that step failed and stops the run before anything reaches the server."""
    from tasks.host import Host
    from tasks.plan import Step, StepFailed, prepare
    from tasks.run import HostRun

    h = HostRun(Host(type("C", (), {"host": "web1", "original_host": "web1"})()), S)
    seen = []

    def broken(host):
        raise DeployError("the app folder /nowhere does not exist (set app.source)")
    steps = [Step("skipped", None, applies=lambda host: False, prepare=seen.append),
             Step("hashed", None, prepare=seen.append), Step("app", None, prepare=broken),
             Step("never", None, prepare=seen.append)]
    with pytest.raises(StepFailed):
        prepare(h, steps)
    assert seen == [h] and h.run.round_trips == 0
    assert [(o.step, o.status, o.message) for o in h.run.outcomes] == [
        ("app", "failed", "the app folder /nowhere does not exist (set app.source)")]
