"""Run a task on many hosts at once, then print one recap for all of them.

Chosen in fabric.yaml with `tasks.executor_class`. Each host's result is kept in a
`{host: result}` dict (like Fabric's GroupResult), every result with `.failed` and
`.recap()` (tasks/results.py); one host failing does not stop the others, and the
run exits non-zero if any host failed (with the command's own code for `fab exec`). A
`Rolling` task (provision, deploy, each step) runs in batches of its `--serial N`.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from fabric.executor import Executor
from fabric.tasks import ConnectionCall
from invoke import Exit
from invoke.exceptions import UncastableEnvVar

from tasks.balancer import balancing, drained
from tasks.config import ROLES, ConfigError, raw, validate
from tasks.errors import explain_exception
from tasks.hostkeys import secure
from tasks.output import say
from tasks.provision import Rolling
from tasks.results import Skipped, Unreached, report
from tasks.roles import bare, selected

MAX_PARALLEL = 32


class HostsExecutor(Executor):
    def expand_calls(self, calls, apply_hosts=True):
        """-H's hosts, where a role's name (app.roles) stands for its hosts; without -H,
        every host of app.roles (the sandbox's own tasks take no hosts)."""
        roles = self.config.get("app", {}).get("roles") or {}
        hosts = self.core[0].args.hosts
        on_hosts = not all(str(getattr(c, "called_as", "") or "").startswith("sandbox.")
                           for c in calls)
        if apply_hosts and on_hosts and isinstance(roles, dict) and roles:
            hosts.value = ",".join(selected(roles, hosts.value))
        return super().expand_calls(calls, apply_hosts)

    def execute(self, *tasks):
        # `fab exec -- CMD`: the text after `--` is exec's command, not Fabric's anonymous
        # task (which would run it as the SSH user).
        remainder = ""
        if self.core.remainder and any(getattr(t, "name", t) == "exec" for t in tasks):
            remainder, self.core.remainder = self.core.remainder, ""
        self.remainder = remainder
        calls = self.expand_calls(self.normalize(tasks))
        results, failed = {}, False
        for group in self.groups(calls):
            self.load_config(group[0])
            if not isinstance(group[0], ConnectionCall):
                for call in group:
                    results[call.task] = call.task(self.context_for(call), *call.args,
                                                   **call.kwargs)
                continue
            self.validate_config()
            by_host = self.run_batches(group, self.batch_size(group))
            try:
                self.report(by_host)
            except BrokenPipeError:  # `fab status --json | head`: the reader has had enough
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            failed |= any(r.failed for r in by_host.values() if r is not None)
            results[group[0].task] = by_host
        if failed:
            codes = [getattr(r, "exit_code", 1) for group in results.values()
                     if isinstance(group, dict) for r in group.values() if r and r.failed]
            raise Exit(code=max(codes, default=1) or 1)
        return results

    @staticmethod
    def groups(calls):
        """Consecutive calls of the same task form one group (one per host)."""
        out = []
        for call in calls:
            if out and out[-1][0].task is call.task and isinstance(call, ConnectionCall):
                out[-1].append(call)
            else:
                out.append([call])
        return out

    @staticmethod
    def batch_size(group):
        """Hosts per batch: a Rolling task's `--serial N` (taken out of its arguments, the
        task never sees it); 0 means all hosts at once."""
        sizes = [call.kwargs.pop("serial", 0) for call in group]
        return int(sizes[0] or 0)

    def load_config(self, call):
        """The collection's config and FABRIC_* env vars, loaded once per task."""
        self.config.load_collection(self.collection.configuration(call.called_as))
        try:
            self.config.load_shell_env()
        except (ValueError, UncastableEnvVar) as e:
            names = [k for k, v in os.environ.items() if k.startswith("FABRIC_") and v in str(e)]
            print(f"config: {', '.join(names) or 'an environment variable'}: {e}", file=sys.stderr)
            raise Exit("config: fix that environment variable", code=2) from None

    def context_for(self, call):
        context = call.make_context(self.config)
        if isinstance(call, ConnectionCall):
            secure(context, raw(self.config)["host_keys"])
            context.remainder = self.remainder  # read by `fab exec`
        return context

    def validate_config(self):
        try:
            validate(self.config)
        except ConfigError as e:
            for problem in e.problems:
                print(f"config: {problem}", file=sys.stderr)
            raise Exit("config: fix the values above in fabric.yaml (or -f FILE)", code=2) from None

    def batches(self, group, size):
        """[(calls, whether their release phase already ran)]: all hosts at once, or SIZE at
        a time. A deploy with a release command (migrations) runs it once: on the first host,
        alone, before any other host moves."""
        first = []
        if len(group) > 1 and isinstance(group[0].task, Rolling) \
                and raw(self.config)["release_command"]:
            first, group = [(group[:1], False)], group[1:]
        size = size if size > 0 else max(len(group), 1)
        return first + [(group[start:start + size], bool(first))
                        for start in range(0, len(group), size)]

    def run_batches(self, group, size):
        """Run the batches in turn, skipping the rest after a batch that failed. With
        app.roles, a Rolling task takes the database host first, then the web and worker
        hosts (behind balancers: the web hosts one batch at a time, --serial, default 1,
        out of the balancers while they change), then the balancers."""
        roles = raw(self.config)["roles"] or {}
        if not (roles and isinstance(group[0].task, Rolling)):
            return self.run_in_turn(self.batches(group, size))
        role_of = {bare(h): role for role, hosts in roles.items() for h in hosts}
        by_role = {role: [c for c in group if role_of.get(bare(c.init_kwargs["host"])) == role]
                   for role in ROLES}
        strangers = [c for c in group if bare(c.init_kwargs["host"]) not in role_of]
        apps = by_role["web"] + by_role["worker"] + strangers  # strangers: told they have none
        first = [(by_role["db"], True)] if by_role["db"] else []
        last = [(by_role["lb"], True)] if by_role["lb"] else []
        lbs = roles.get("lb", [])
        # A lone web host is never drained: nothing else could answer. Its own candidate
        # covers its restarts, as on a single server.
        if not (lbs and by_role["web"] and len(roles.get("web", [])) > 1
                and not group[0].kwargs.get("dry_run")):
            return self.run_in_turn(first + self.batches(apps, size) + last)
        balancers = [self.context_for(self.parameterize(group[0], {"host": lb})) for lb in lbs]
        try:
            live = [context for context in balancers if balancing(context)]
        except Exception as e:  # one line, whatever went wrong
            message = f"cannot read the balancer: {explain_exception(e, balancers[0])}"
            say(lbs[0], f"failed   {message}", sys.stderr)
            return {call.init_kwargs["host"]: Unreached(message) for call in group}
        try:  # a fresh fleet (no balancer serves yet) has nothing to drain
            serial = min(size or 1, max(len(by_role["web"]) - 1, 1)) if live else size
            webs = {bare(c.init_kwargs["host"]) for c in by_role["web"]}
            return self.run_in_turn(first + self.batches(apps, serial) + last, live, webs)
        finally:
            for context in balancers:
                context.close()

    def run_in_turn(self, batches, balancers=(), web_hosts=frozenset()):
        """Run BATCHES [(calls, release phase done)] one after the other; the WEB_HOSTS of
        each batch out of BALANCERS while it runs."""
        results = {}
        for calls, release_phase_done in batches:
            batch = [(call, self.context_for(call)) for call in calls]
            for _, context in batch:  # read by tasks.release_phase
                context.release_phase_done = release_phase_done
            hosts = [context.original_host for _, context in batch]
            out = [host for host in hosts if bare(host) in web_hosts]
            if any(r is not None and r.failed for r in results.values()):
                results.update((host, Skipped()) for host in hosts)
            elif balancers and out:
                results.update(self.run_drained(batch, out, balancers))
            else:
                results.update(self.run_parallel(batch))
        return results

    def run_drained(self, batch, hosts, balancers):
        """Run BATCH out of the balancers, putting back the hosts that end healthy."""
        try:
            with drained(balancers, hosts) as back:
                results = dict(self.run_parallel(batch))
                back.update(h for h in hosts if not results[h].failed)
            return results
        except Exit:
            raise
        except Exception as e:  # a balancer that cannot be changed stops the run
            message = (f"the balancer could not take {', '.join(hosts)} out or back: "
                       f"{explain_exception(e, balancers[0])}")
            say(balancers[0].original_host, f"failed   {message}", sys.stderr)
            return {context.original_host: Unreached(message) for _, context in batch}

    def run_parallel(self, work):
        """Run each (call, connection) in its own thread; Ctrl-C closes every connection."""
        pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(work)))
        futures = [pool.submit(self.run_host, item) for item in work]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            for _, context in work:
                context.close()  # ends the remote commands (they run on a pty)
            pool.shutdown(wait=True, cancel_futures=True)
            streaming = work[0][0].kwargs.get("follow")
            raise Exit("" if streaming else "interrupted", code=0 if streaming else 130) from None
        finally:
            pool.shutdown(wait=False)

    def run_host(self, call_and_context):
        """(host, the task's result); an exception becomes Unreached after one line."""
        call, context = call_and_context
        host = context.original_host
        try:
            return host, call.task(context, *call.args, **call.kwargs)
        except Exit:
            raise
        except Exception as e:  # one line per host, whatever went wrong
            message = explain_exception(e, context)
            say(host, f"failed   {message}", sys.stderr)
            return host, Unreached(message)
        finally:
            context.close()

    @staticmethod
    def report(results):
        """The results' own report (a status table), else the recap; nothing when no host
        returned a result (tasks that print as they go: logs, releases)."""
        kinds = {type(r) for r in results.values()
                 if r is not None and not isinstance(r, (Unreached, Skipped))}
        if len(kinds) == 1:
            getattr(next(iter(kinds)), "report", report)(results)
        elif kinds:
            report(results)
