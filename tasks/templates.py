"""The configuration files fab writes, rendered from templates/ strictly (installed, they
are the package's data: tasks/templates)."""

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

HERE = Path(__file__).resolve().parent
_templates = Environment(loader=FileSystemLoader([HERE / "templates", HERE.parent / "templates"]),
                         undefined=StrictUndefined, keep_trailing_newline=True,
                         trim_blocks=True, lstrip_blocks=True)


def render(template, **values):
    """Render templates/<template> strictly: a missing value is an error naming it."""
    return _templates.get_template(template).render(**values)
