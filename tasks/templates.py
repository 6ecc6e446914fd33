"""The configuration files fab writes, rendered from templates/ strictly (installed, they
are the package's data: tasks/templates). Jinja2 is imported, and each template compiled,
once, when a run first renders it: the hosts' threads share the compiled template."""

import threading
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
_compiling = threading.Lock()


@cache
def _template(name):
    return _environment().get_template(name)


@cache
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader([HERE / "templates", HERE.parent / "templates"]),
                       undefined=StrictUndefined, keep_trailing_newline=True,
                       trim_blocks=True, lstrip_blocks=True, auto_reload=False)


def render(template, **values):
    """Render templates/<template> strictly: a missing value is an error naming it."""
    with _compiling:  # ten hosts' threads asking at once would compile it ten times
        compiled = _template(template)
    return compiled.render(**values)
