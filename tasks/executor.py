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
from invoke import Exit, Task
from invoke.config import AmbiguousMergeError
from invoke.exceptions import UncastableEnvVar
from invoke.parser import Argument

from tasks import hooks
from tasks.balancer import balancing, drained
from tasks.config import ENV_PREFIX, NOT_SETTINGS, ConfigError, raw, validate
from tasks.errors import explain_exception
from tasks.host import Remote, own_connect_kwargs
from tasks.hostkeys import secure
from tasks.once import forget, once
from tasks.output import say
from tasks.results import Skipped, Unreached, report
from tasks.roles import selected
from tasks.rollout import drains, rollout

MAX_PARALLEL = 64  # hosts run at once (their threads share one core: the GIL)


class FromExecutor(Task):
    """A task some of whose arguments the executor gives it (tasks/executor.py): its batch
    of a rollout, the command after `--`. They are never flags."""

    GIVEN = ("batch", "remainder")

    def get_arguments(self, ignore_unknown_help=None):
        return [a for a in super().get_arguments(ignore_unknown_help)
                if a.name not in self.GIVEN]

    def arg_opts(self, name, default, taken_names):
        """`--dry` after the task is its `--dry-run` (Invoke's own `--dry`, which echoes
        commands instead of running them, would leave fab reading nothing)."""
        opts = super().arg_opts(name, default, taken_names)
        if name == "dry_run":
            opts["names"] = [*opts["names"], "dry"]
        return opts


class Local(Task):
    """A task run on this machine only (`fab init`): it takes no hosts."""


def runs_locally(call):
    """Whether CALL takes no host: a Local task or the sandbox's own (`fab sandbox.up`)."""
    return isinstance(call.task, Local) or str(call.called_as or "").startswith("sandbox.")


class Rolling(FromExecutor):
    """A task the executor runs on many hosts in batches (tasks.rollout): `--serial N` is
    the executor's, so the task's own function never sees it; it gets its `batch` instead.
    Its release command (app.release_command) runs once, on the first host, before the
    others move."""

    SERIAL = Argument(names=("serial", "s"), kind=int, default=0,
                      help="N hosts at a time, stopping after a batch with a failure "
                           "(default: all hosts at once; behind a balancer, 1)")

    def get_arguments(self, ignore_unknown_help=None):
        return [*super().get_arguments(ignore_unknown_help), self.SERIAL]


class HostsExecutor(Executor):
    def expand_calls(self, calls, apply_hosts=True):
        """-H's hosts, where a role's name (app.roles) stands for its hosts; without -H,
        every host of app.roles (local tasks take no hosts)."""
        app = self.config.get("app", {})
        roles = (app.get("roles") if isinstance(app, dict) else None) or {}
        hosts = self.core[0].args.hosts
        on_hosts = not all(runs_locally(c) for c in calls)
        if apply_hosts and on_hosts and isinstance(roles, dict) and roles:
            hosts.value = ",".join(selected(roles, hosts.value))
        return super().expand_calls(calls, apply_hosts and on_hosts)

    def one_jobs_host(self, group):
        """app.schedule's jobs run on one host: without app.roles to say which, a run that
        converges several hosts would give each of them the jobs."""
        app = self.app()  # valid: validate_config came first
        hosts = {call.init_kwargs["host"] for call in group}
        if isinstance(group[0].task, Rolling) and app["schedule"] and not app["roles"] \
                and len(hosts) > 1:
            raise Exit("app.schedule's jobs run on one host, and -H names several: list them "
                       "in app.roles (the first worker host runs the jobs, else the first web "
                       "host)", code=2)

    def execute(self, *tasks):
        forget()  # what an earlier run in this process did once is not this run's
        self.config.runners.remote = Remote  # every connection's, made from this config
        # `fab exec -- CMD`: the text after `--` is exec's command, not Fabric's anonymous
        # task (which would run it as the SSH user).
        remainder = ""
        if self.core.remainder and any(getattr(t, "name", t) == "exec" for t in tasks):
            remainder, self.core.remainder = self.core.remainder, ""
        calls = self.expand_calls(self.normalize(tasks))
        for call in calls:
            if getattr(call.task, "name", "") == "exec":
                call.kwargs["remainder"] = remainder
        if self.config.run.dry:
            raise Exit("--dry before the task echoes commands instead of running them, and fab "
                       "reads what they print: use --dry-run after the task (fab -H web1 deploy "
                       "--dry-run)", code=2)
        results, failed = {}, False
        for group in self.groups(calls):
            self.load_config(group[0])
            if not isinstance(group[0], ConnectionCall):
                for call in group:
                    if not runs_locally(call):
                        raise Exit(f"{call.called_as}: no host given: run it as "
                                   f"`fab -H user@server {call.called_as}` (or list the "
                                   "hosts in app.roles)", code=2)
                    results[call.task] = call.task(self.context_for(call), *call.args,
                                                   **call.kwargs)
                continue
            self.validate_config()
            self.one_jobs_host(group)
            hooked = self.hooked(group)
            if hooked:
                hooks.before(*hooked)
            by_host = self.run_batches(group, self.batch_size(group))
            try:
                self.report(by_host)
            except BrokenPipeError:  # `fab status --json | head`: the reader has had enough
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            if hooked:
                hooks.after(*hooked, by_host)
            failed |= any(r.failed for r in by_host.values() if r is not None)
            results[group[0].task] = by_host
        if failed:
            codes = [getattr(r, "exit_code", 1) for group in results.values()
                     if isinstance(group, dict) for r in group.values() if r and r.failed]
            raise Exit(code=max(codes, default=1) or 1)
        return results

    def hooked(self, group):
        """(settings, action, hosts) when GROUP's task has hooks and a notification (a deploy
        or rollback that changes things), else None."""
        name = getattr(group[0].task, "name", "")
        if name not in hooks.HOOKED or group[0].kwargs.get("dry_run"):
            return None
        return self.app(), name, [call.init_kwargs["host"] for call in group]

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
        """The collection's config and FABRIC_* env vars, loaded once per task. The app's
        own (FABRIC_APP_*) are read by tasks.config, each in its setting's form: Invoke
        would take FABRIC_APP_REDIS=false for true."""
        try:
            self.config.load_collection(self.collection.configuration(call.called_as))
        except AmbiguousMergeError:  # `app: 3`: a value where the settings belong
            where = getattr(self.config, "_runtime_path", None) or "fabric.yaml"
            raise Exit(f"config: {where}: {NOT_SETTINGS}", code=2) from None
        app = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(ENV_PREFIX)}
        try:
            self.config.load_shell_env()
        except (ValueError, UncastableEnvVar) as e:
            names = [k for k, v in os.environ.items() if k.startswith("FABRIC_") and v in str(e)]
            print(f"config: {', '.join(names) or 'an environment variable'}: {e}", file=sys.stderr)
            raise Exit("config: fix that environment variable", code=2) from None
        finally:
            os.environ.update(app)

    def app(self):
        """The `app` settings as given (tasks.config.raw), read once a run: every host's."""
        return once("app", lambda: raw(self.config))

    def context_for(self, call):
        if not isinstance(call, ConnectionCall):
            return call.make_context(self.config)
        call.init_kwargs["connect_kwargs"] = own_connect_kwargs(self.config)
        return secure(call.make_context(self.config), self.app()["host_keys"])

    def validate_config(self):
        try:
            validate(self.config)
        except ConfigError as e:
            if len(e.problems) == 1:
                raise Exit(f"config: {e.problems[0]}", code=2) from None
            for problem in e.problems:
                print(f"config: {problem}", file=sys.stderr)
            raise Exit(f"config: {len(e.problems)} problems: fix each where it is named",
                       code=2) from None

    def run_batches(self, group, size):
        """Run the rollout's batches (tasks.rollout) of the task's calls in GROUP in turn,
        skipping the rest after a batch that failed; with balancers that serve, each batch's
        web hosts out of them while it runs."""
        values = self.app()
        roles, rolling = values["roles"] or {}, isinstance(group[0].task, Rolling)
        hosts = [call.init_kwargs["host"] for call in group]
        balancers, live = [], []
        if rolling and drains(hosts, roles, group[0].kwargs.get("dry_run")):
            balancers = [self.context_for(self.parameterize(group[0], {"host": lb}))
                         for lb in roles["lb"]]
            try:
                live = [context for context in balancers if balancing(context)]
            except Exception as e:  # one line, whatever went wrong
                message = f"cannot read the balancer: {explain_exception(e, balancers[0])}"
                say(roles["lb"][0], f"failed   {message}", sys.stderr)
                return {host: Unreached(message) for host in hosts}
        calls = dict(zip(hosts, group, strict=True))
        try:  # a fresh fleet (no balancer serves yet) has nothing to drain
            batches = rollout(hosts, roles, size, rolling, bool(values["release_command"]),
                              draining=bool(live))
            return self.run_in_turn(batches, calls, live)
        finally:
            for context in balancers:
                context.close()

    def run_in_turn(self, batches, calls, balancers):
        """Run BATCHES (tasks.rollout.Batch) of CALLS ({host: call}) one after the other."""
        results = {}
        for batch in batches:
            work = [(calls[host], self.context_for(calls[host])) for host in batch.hosts]
            for call, _ in work:
                if isinstance(call.task, Rolling):  # its own argument, never a flag
                    call.kwargs["batch"] = batch
            # results go by Fabric's original_host: the host without user@ and :port
            out = [context.original_host for call, context in work
                   if call.init_kwargs["host"] in batch.drain]
            if any(r is not None and r.failed for r in results.values()):
                results.update((context.original_host, Skipped()) for _, context in work)
            elif balancers and out:
                results.update(self.run_drained(work, out, balancers))
            else:
                results.update(self.run_parallel(work))
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
