"""Servers' answers for parsers, written as `@@name` blocks and framed the way a fact
script frames them: behind its mark, the first line."""

MARK = "@@" + "5a" * 12


def answer(text):
    """TEXT's `@@name` lines as the blocks of a framed answer (tasks.facts.framed)."""
    lines = [MARK + " " + line[2:] if line.startswith("@@") else line
             for line in text.split("\n")]
    return "\n".join([MARK, *lines])


def probe_line(ok, code, ms, excerpt):
    """What the health probe prints (tasks.health.PROBE)."""
    import json
    return json.dumps([int(ok), code, ms, excerpt])
