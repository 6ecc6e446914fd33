"""fabric.yaml's commented list of every setting and the README's table of them, written
from tasks/fields.py's table (`make settings-docs`); a test holds both to it."""

import textwrap

from tasks.fields import FIELDS


def yaml_value(value):
    """VALUE as fabric.yaml writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, str) and (not value or value in ("off", "on", "yes", "no")
                                   or ":" in value):
        return f'"{value}"'
    return str(value)


def fabric_yaml():
    """The commented list of every setting at the top of fabric.yaml (100 columns)."""
    lines = []
    for f in FIELDS:
        setting = f"#   {f.name}: {yaml_value(f.default)}"
        setting = f"{setting:<28} " if len(setting) < 28 else f"{setting}  "
        first, *more = textwrap.wrap(f.doc, 98 - len(setting))
        lines += [f"{setting}# {first}", *(f"#{' ' * (len(setting) - 1)}# {m}" for m in more)]
    return "# app:\n" + "\n".join(lines) + "\n"


def readme_table():
    """The README's table of every setting."""
    def cell(doc):
        return doc.replace("|", "or").replace("<", "&lt;").replace(">", "&gt;")
    rows = [f"| `{f.name}` | `{yaml_value(f.default)}` | {cell(f.doc)} |" for f in FIELDS]
    return "\n".join(["| setting | default | what it is |", "|---|---|---|", *rows]) + "\n"


BEGIN, END = "<!-- settings: begin -->\n", "<!-- settings: end -->\n"


def write_docs(root):
    """Rewrite fabric.yaml's commented list and the README's table from the table."""
    yaml, readme = root / "fabric.yaml", root / "README.md"
    head, _, rest = yaml.read_text().partition("# app:\n")
    tail = rest[rest.index("\ntasks:"):] if "\ntasks:" in rest else rest
    yaml.write_text(head + fabric_yaml() + tail)
    text = readme.read_text()
    before, _, after = text.partition(BEGIN)
    readme.write_text(before + BEGIN + readme_table() + END + after.partition(END)[2])
