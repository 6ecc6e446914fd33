"""`fab logs`: the app's log (or nginx's, supervisor's), from one host or many."""

from invoke import Exit, Task, task

from tasks import steps
from tasks.declared import Journal
from tasks.fields import COMPONENTS
from tasks.output import LinePrefixer, say
from tasks.run import open_host
from tasks.shell import q

ALL = ("app", "access", "error", "supervisor")  # what `-c all` shows


def log_files(s, component):
    """The files of COMPONENT's log (a step's, or `all`), or its Journal."""
    files = steps.logs(s)
    if component == "all":
        return [f for key in ALL for f in files[key]]
    return files[component]


def logs_script(files, lines, grep, follow):
    """Show the last LINES lines of FILES (matching GREP), and follow them if asked."""
    quoted = " ".join(q(f).replace("*", "'*'") for f in files)  # a * stays a glob
    missing = (f"for f in {quoted}; do [ -e \"$f\" ] || "
               "echo \"($f does not exist yet: nothing logged there so far)\"; done\n")
    present = f"set -- ; for f in {quoted}; do [ -e \"$f\" ] && set -- \"$@\" \"$f\"; done\n"
    header = "" if len(files) > 1 else "-q "
    if follow:
        filt = f" | grep --line-buffered -e {q(grep)}" if grep else ""
        return (missing + present +
                f"[ $# -gt 0 ] || exit 0\nexec tail -F -n {lines} {header}\"$@\" 2>/dev/null{filt}")
    if grep:
        return missing + present + (f"[ $# -gt 0 ] || exit 0\n"
                                    f"grep -h -e {q(grep)} \"$@\" | tail -n {lines}; true")
    return missing + present + f"[ $# -gt 0 ] || exit 0\ntail -n {lines} {header}\"$@\""


def journal_script(unit, lines, grep, follow):
    """The same, from UNIT's journal."""
    filt = f" | grep --line-buffered -e {q(grep)}" if grep else ""
    return (f"journalctl -u {q(unit)} --no-pager -o short-iso "
            + (f"-f -n {lines}{filt}" if follow else
               (f"{filt.replace(' --line-buffered', '')} | tail -n {lines}" if grep
                else f"-n {lines}")))


class LogsTask(Task):
    """`-n` for --lines, as in tail (Invoke would pick `-l`)."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name == "lines":
            opts["names"] = ["lines", "n"]
        return opts


@task(klass=LogsTask, help={
    "component": f"which log: {', '.join(COMPONENTS)}, or an extra process's name "
                 "(default: app)",
    "lines": "how many lines to show (default 50)",
    "follow": "keep streaming new lines until Ctrl-C",
    "grep": "only lines matching this pattern (grep, on the server)",
})
def logs(c, component="app", lines=50, follow=False, grep=None):
    """Show the app's log (or nginx's, supervisor's, a process's) from every host, by host."""
    if not 0 < int(lines) <= 100000:
        raise Exit("logs: --lines must be from 1 to 100000", code=2)
    h = open_host(c)
    known = [*steps.logs(h.settings), "all"]
    if component not in known:
        raise Exit(f"logs: unknown component {component!r}; use one of {', '.join(known)}",
                   code=2)
    files = log_files(h.settings, component)
    script = journal_script(files.unit, int(lines), grep, follow) \
        if isinstance(files, Journal) else logs_script(files, int(lines), grep, follow)
    if follow:
        h.stream(script, LinePrefixer(h.name))
        return None
    out = h.read(script)
    if out:
        say(h.name, out)
    return None
