"""Taking web hosts out of the balancers while they change, and putting them back.

A drained host is marked `down` in each balancer's upstream and nginx is reloaded: new
requests go to the other web hosts, and the old workers finish the requests in flight
before they exit (nginx's graceful reload). A balancer without its site yet (a fresh
fleet) has nothing to drain.
"""

from contextlib import contextmanager

from tasks.output import say
from tasks.plan import differs
from tasks.roles import address
from tasks.run import open_host
from tasks.site import install_site, render_site
from tasks.steps import gather


def balancing(context):
    """The balancer of CONTEXT as a HostRun, if its site is live (None on a fresh one)."""
    h = open_host(context)
    s = h.settings
    return h if gather(h).links.get(s.nginx_enabled) == s.nginx_site else None


def set_down(context, hosts, said):
    """Make HOSTS (web hosts as given to -H) the down ones of the balancer of CONTEXT."""
    h = balancing(context)
    if h is None:
        return
    s = h.settings
    content = render_site(s, down={address(context.config, host) for host in hosts})
    if differs(h.facts, s.nginx_site, content):
        install_site(h, content)
        say(h.name, f"{'balancer':<11} {'changed':<8} {said}")


@contextmanager
def drained(contexts, hosts):
    """HOSTS out of every balancer (CONTEXTS) for the block, which adds to the set it is
    given the hosts that may go back (healthy); the others stay out."""
    back = set()
    for context in contexts:
        set_down(context, hosts, f"took {', '.join(hosts)} out")
    try:
        yield back
    finally:
        for context in contexts:
            set_down(context, [h for h in hosts if h not in back],
                     f"put {', '.join(h for h in hosts if h in back) or 'none'} back")
