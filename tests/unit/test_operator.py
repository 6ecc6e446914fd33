"""The operator's work per host stays small: what is the same for every host of a run is
done once, however many hosts' threads ask for it at the same moment."""

import hmac
import threading
from types import SimpleNamespace

import paramiko.util

from tasks import once, revision, templates
from tasks.site import render_site
from tests.unit.stack import S


def at_once(work, n=10):
    """Run WORK in N threads that start together; return their results."""
    start, out = threading.Barrier(n), []

    def run():
        start.wait()
        out.append(work())
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_a_template_is_compiled_once_however_many_hosts_render_it_at_once():
    templates._template.cache_clear()
    sites = at_once(lambda: render_site(S))
    assert len(set(sites)) == 1 and "server_name" in sites[0]
    assert templates._template.cache_info().misses == 1


def test_the_apps_folder_is_read_once_per_run(monkeypatch):
    calls = []
    real = revision.local_source
    monkeypatch.setattr(revision, "local_source", lambda s: calls.append(s) or real(s))
    once.forget()
    host = SimpleNamespace(settings=S, dry_run=False)
    sources = at_once(lambda: revision.resolve(host))
    assert len(calls) == 1 and len({s.identity for s in sources}) == 1
    once.forget()  # the next run reads it again
    revision.resolve(host)
    assert len(calls) == 2


def test_packet_macs_are_compared_in_constant_time_by_the_standard_library():
    import tasks.host  # noqa: F401  (sets it)

    assert paramiko.util.constant_time_bytes_eq is hmac.compare_digest
