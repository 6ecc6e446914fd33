"""`fab`, installed (`pipx install`): the tool's tasks, run from the app's own folder.

The settings file is the app's `deploy.yaml`, found in the current folder or the nearest
one above it (as git finds its repository), or named with `-f FILE`. This checkout's
fabfile.py is the same collection plus the sandbox, for the demo and the tests.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fabric import Config
from fabric.main import Fab
from invoke import Exit
from invoke.util import yaml

from tasks import namespace
from tasks.config import SETTINGS_FILE
from tasks.executor import HostsExecutor


def settings_file(start):
    """The nearest deploy.yaml in START or a folder above it, or None."""
    for folder in (start, *start.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder / SETTINGS_FILE
    return None


class Program(Fab):
    def update_config(self):
        """Without -f, the settings file is the nearest deploy.yaml."""
        if self.args.config.value is None and "INVOKE_RUNTIME_CONFIG" not in os.environ:
            found = settings_file(Path.cwd())
            if found:
                self.args.config.value = str(found)
        try:
            super().update_config()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise Exit(f"config: {self.args.config.value}{where}: not valid YAML "
                       f"({getattr(e, 'problem', None) or e})", code=2) from None


def main():
    try:
        release = version("flask-fab")
    except PackageNotFoundError:  # run from a checkout
        release = "(checkout)"
    program = Program(name="fab", binary="fab", version=release, namespace=namespace,
                      executor_class=HostsExecutor, config_class=Config)
    try:
        program.run()
    except BrokenPipeError:  # `fab --list | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        print("fab: interrupted", file=sys.stderr)
        sys.exit(130)
