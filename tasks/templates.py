"""The configuration files fab writes, rendered from templates/ strictly."""

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_templates = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parents[1]
                                                     / "templates")),
                         undefined=StrictUndefined, keep_trailing_newline=True,
                         trim_blocks=True, lstrip_blocks=True)


def render(template, **values):
    """Render templates/<template> strictly: a missing value is an error naming it."""
    return _templates.get_template(template).render(**values)
