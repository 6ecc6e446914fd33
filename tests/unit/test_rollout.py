"""The rollout as data (tasks.rollout): batches of hosts, without Fabric or a server."""

from tasks.rollout import Batch, drains, rollout

HOSTS = ["w1", "w2", "w3", "w4"]
FLEET = {"db": ["db1"], "web": ["w1", "tom@w2", "w3"], "worker": ["k1"], "lb": ["lb1"]}
EVERY = ["db1", "w1", "tom@w2", "w3", "k1", "lb1"]


def shape(batches):
    return [(len(b.hosts), b.release_phase_done) for b in batches]


def test_a_release_command_runs_on_the_first_host_alone_first():
    assert shape(rollout(HOSTS, {})) == [(4, False)]
    assert shape(rollout(HOSTS, {}, release_phase=True)) == [(1, False), (3, True)]
    assert shape(rollout(HOSTS, {}, 2, release_phase=True)) == [(1, False), (2, True), (1, True)]
    assert shape(rollout(["w1"], {}, release_phase=True)) == [(1, False)]
    # a task that is not rolling (status, releases) runs everywhere at once
    assert shape(rollout(HOSTS, {}, rolling=False, release_phase=True)) == [(4, False)]


def test_roles_go_database_first_then_the_app_hosts_then_the_balancers():
    batches = rollout(EVERY, FLEET, release_phase=True)
    assert [b.hosts for b in batches] == [("db1",), ("w1",), ("tom@w2", "w3", "k1"), ("lb1",)]
    assert [b.release_phase_done for b in batches] == [True, False, True, True]
    assert all(not b.drain for b in batches)  # the balancers do not serve yet


def test_serving_balancers_drain_web_hosts_one_batch_at_a_time_never_all():
    batches = rollout(EVERY, FLEET, draining=True)
    assert [b.hosts for b in batches] == [("db1",), ("w1",), ("tom@w2",), ("w3",), ("k1",),
                                          ("lb1",)]
    assert [b.drain for b in batches] == [(), ("w1",), ("tom@w2",), ("w3",), (), ()]
    # --serial 5 still leaves one web host serving
    assert [b.hosts for b in rollout(EVERY, FLEET, 5, draining=True)][1:3] == \
        [("w1", "tom@w2"), ("w3", "k1")]


def test_only_several_web_hosts_behind_balancers_are_drained_and_never_in_a_dry_run():
    assert drains(EVERY, FLEET) and drains(["w3"], FLEET)
    assert not drains(EVERY, FLEET, dry_run=True) and not drains(["k1", "db1"], FLEET)
    assert not drains(["w1"], {"web": ["w1"], "lb": ["lb1"]})  # a lone web host
    assert not drains(HOSTS, {})


def test_a_host_in_no_role_runs_with_the_app_hosts_to_be_told_so():
    batches = rollout(["db1", "stranger", "lb1"], FLEET)
    assert batches == [Batch(("db1",), (), True), Batch(("stranger",)), Batch(("lb1",), (), True)]
