"""Run a task on many hosts at once, then print one recap for all of them.

Chosen in fabric.yaml with `tasks.executor_class`. Each host's outcome is kept
(like Fabric's GroupResult); one host failing does not stop the others, and the
run exits non-zero if any host failed.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

from fabric.executor import Executor
from fabric.tasks import ConnectionCall
from invoke import Exit
from invoke.exceptions import UncastableEnvVar

from tasks.core import say
from tasks.errors import explain_exception
from tasks.hostkeys import secure
from tasks.settings import ConfigError, raw, validate

MAX_PARALLEL = 32


class Skipped:
    """A host left alone because an earlier batch of a serial run failed."""

    failed = True

    def recap(self):
        return "skipped: an earlier host failed, this one was not touched"


class HostsExecutor(Executor):
    def execute(self, *tasks):
        calls = self.expand_calls(self.normalize(tasks))
        results, failed = {}, []
        for group in self.groups(calls):
            self.load_config(group[0])
            if not isinstance(group[0], ConnectionCall):
                for call in group:
                    results[call.task] = call.task(self.context_for(call), *call.args,
                                                   **call.kwargs)
                continue
            self.validate_config()
            outcomes = self.run_batches(group, int(group[0].kwargs.get("serial") or 0))
            failed += self.report(outcomes)
            results[group[0].task] = outcomes
        if failed:
            raise Exit(code=1)
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
        return context

    def validate_config(self):
        try:
            validate(self.config)
        except ConfigError as e:
            for problem in e.problems:
                print(f"config: {problem}", file=sys.stderr)
            raise Exit("config: fix the values above in fabric.yaml (or -f FILE)", code=2) from None

    def run_batches(self, group, size):
        """All hosts at once, or SIZE at a time, stopping after a batch that failed."""
        size = size if size > 0 else len(group)
        outcomes = []
        for start in range(0, len(group), size):
            batch = group[start:start + size]
            if any(self.failed(result) for _, result in outcomes):
                outcomes += [(self.context_for(call).original_host, Skipped()) for call in batch]
                continue
            outcomes += self.run_parallel([(call, self.context_for(call)) for call in batch])
        return outcomes

    @staticmethod
    def failed(result):
        return isinstance(result, Exception) or getattr(result, "failed", False)

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
        call, context = call_and_context
        host = context.original_host
        try:
            return host, call.task(context, *call.args, **call.kwargs)
        except Exit:
            raise
        except Exception as e:  # one line per host, whatever went wrong
            say(host, f"failed   {explain_exception(e, context)}", sys.stderr)
            return host, e
        finally:
            context.close()

    @staticmethod
    def report(outcomes):
        """Let the results' own type print the summary; return the hosts that failed."""
        kinds = {type(r) for _, r in outcomes
                 if r is not None and not isinstance(r, (Exception, Skipped))}
        if len(kinds) == 1 and hasattr(next(iter(kinds)), "report"):
            return next(iter(kinds)).report(outcomes)
        return [host for host, r in outcomes if isinstance(r, Exception)]
