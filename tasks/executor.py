"""Run a task on many hosts at once, then print one recap for all of them.

Chosen in fabric.yaml with `tasks.executor_class`. Each host's outcome is kept
(like Fabric's GroupResult); one host failing does not stop the others, and the
run exits non-zero if any host failed.
"""

import sys
from concurrent.futures import ThreadPoolExecutor

from fabric.executor import Executor
from fabric.tasks import ConnectionCall
from invoke import Exit

from tasks.core import Host, say
from tasks.errors import explain_exception
from tasks.settings import ConfigError, validate

MAX_PARALLEL = 32


class HostsExecutor(Executor):
    def execute(self, *tasks):
        calls = self.expand_calls(self.normalize(tasks))
        results, failed = {}, []
        for group in self.groups(calls):
            if not isinstance(group[0], ConnectionCall):
                for call in group:
                    results[call.task] = self.run_call(call)
                continue
            self.validate_config(group[0])
            work = [(call, self.context_for(call)) for call in group]
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(group))) as pool:
                outcomes = list(pool.map(self.run_host, work))
            self.recap(outcomes, failed)
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

    def context_for(self, call):
        config = self.config
        config.load_collection(self.collection.configuration(call.called_as))
        config.load_shell_env()
        return call.make_context(config)

    def run_call(self, call):
        return call.task(self.context_for(call), *call.args, **call.kwargs)

    def validate_config(self, call):
        self.config.load_collection(self.collection.configuration(call.called_as))
        try:
            validate(self.config)
        except ConfigError as e:
            for problem in e.problems:
                print(f"config: {problem}", file=sys.stderr)
            raise Exit("config: fix the values above in fabric.yaml (or -f FILE)", code=2) from None

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

    def recap(self, outcomes, failed):
        if not outcomes:
            return
        print("recap:")
        width = max(len(str(host)) for host, _ in outcomes)
        for host, result in outcomes:
            if isinstance(result, Host):
                line = result.recap()
                if result.failed:
                    failed.append(host)
            elif isinstance(result, BaseException):
                line, _ = "unreachable or failed (see above)", failed.append(host)
            else:
                line = "done"
            print(f"  {host:<{width}}  {line}")
        sys.stdout.flush()
