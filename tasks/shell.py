"""The bottom of the stack: the error people read, and how values enter remote shells."""

import hashlib
import re
import shlex


class DeployError(Exception):
    """A failure worded for people: what went wrong and how to fix it."""


# The server's python3 for fab's own stdlib-only scripts (probes, supervisor's state): no
# site-packages and no PYTHON* variables, and a start 10 ms quicker.
PYTHON = "python3 -I -S"


def q(value):
    """Quote one value for the remote shell: the only way values enter commands."""
    return shlex.quote(str(value))


def sha256(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def for_systemd(text):
    """TEXT as a word of a systemd-run command line: systemd expands $NAME and ${NAME} there
    (a script's ${1:-x} would reach the shell mangled), and $$ is its literal $."""
    return text.replace("$", "$$")


NOISE = ("note:", "hint:", "╰", "│", "×", "[end of output]")


def explain_failure(result):
    """One line from a failed command: sudo problems get their fix, others their stderr."""
    err = (result.stderr or "").strip()
    if "a password is required" in err or "a terminal is required" in err:
        return "sudo needs a password: run with --prompt-for-sudo-password (or set sudo.password)"
    if "incorrect password" in err or "Sorry, try again" in err:
        return "wrong sudo password: check it and run again with --prompt-for-sudo-password"
    if "is not in the sudoers file" in err or "not allowed to execute" in err:
        return "this user may not use sudo: connect as root or add the user to the sudo group"
    built = pip_failure(err)
    if built:
        return built
    lines = [line.strip() for line in (err or result.stdout or "").splitlines()
             if line.strip() and not line.strip().startswith(NOISE)]
    # pip ends with generic lines ("error: subprocess-exited-with-error"); the cause is above.
    errors = [line for line in lines if line.lower().startswith(("error", "fatal", "e:"))
              and "subprocess-exited-with-error" not in line]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"command failed with exit code {result.exited}"


PIP_PYTHON = re.compile(r"^fab: the venv build failed on the server's Python (\d+\.\d+)\S*",
                        re.M)
# pip's ways of saying a package would not build, and uv's ("Failed to build `name==1.0`")
NO_WHEEL = re.compile(r"Failed to build installable wheels for some pyproject\.toml based "
                      r"projects \(([^)]+)\)|Failed building wheel for (\S+)"
                      r"|Could not build wheels for (\S+?),|Failed to build `([A-Za-z0-9._-]+)")
UV_ERROR = re.compile(r"^error: (.+)\n(?:  cause: (.+))?", re.M)  # its first cause: the why


def pip_failure(err):
    """One line for a venv build that failed (release.PIP_FAILED marked it): the server's
    Python and, where pip could not build a package (no wheel of the pinned version for that
    Python), the package as the app pins it and what to do; else pip's own error.

    fab's own lines are the last marker and what follows it: a package's build output, which
    comes before, could print a line like the marker."""
    markers = list(PIP_PYTHON.finditer(err))
    if not markers:
        return None
    version, pip, ours = markers[-1].group(1), err[:markers[-1].start()], err[markers[-1].end():]
    names = list(dict.fromkeys(name.strip() for m in NO_WHEEL.finditer(pip)
                               for name in next(filter(None, m.groups())).split(",")))
    asked = [line.removeprefix("fab: requirement ").strip() for line in ours.splitlines()
             if line.startswith("fab: requirement ")]
    if not names:
        errors = [line.strip() for line in pip.splitlines() if line.strip().startswith("ERROR")]
        errors += [": ".join(filter(None, m.groups())) for m in UV_ERROR.finditer(pip)]
        cause = errors[-1] if errors else "see the output above"
        return f"the virtualenv could not be built with the server's Python {version}: {cause}"
    pins = [next((a for a in asked if re.match(rf"(?i){re.escape(n)}\s*([=<>~!\[;]|$)", a)),
                 n) for n in names]
    return (f"could not build {', '.join(pins)} for the server's Python {version} (no "
            f"wheel of that version for it): pin a newer {names[0]} with wheels for Python "
            f"{version}, or use a server with an older Python")
