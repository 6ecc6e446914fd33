"""The figures: medians and ratios, where a command's time goes (per step and per round
trip), as RESULTS.md prints them."""

import re
import statistics

STEP_LINE = re.compile(r"^\[[^\]]+\] (\w+) +(?:ok|changed|failed) .*?(?:\((\d+\.\d) s\))?$", re.M)


def where_time_goes(elapsed, proc):
    """{part: seconds} of one fab run on one host: Python's start and imports (the whole
    command's time less the run's own, from the recap), each step (from its line; under
    0.1 s it shows none), and the rest of the run: the SSH connection, the lock, facts and
    log's round trips, and the facts read again after a change."""
    took = recaps(proc)[0][1]
    parts = {"Python start": elapsed - took}
    for step, seconds in STEP_LINE.findall(proc.stdout):
        parts[step] = parts.get(step, 0) + float(seconds or 0)
    parts["connect, lock, facts, log"] = took - sum(list(parts.values())[1:])
    return parts


def breakdown(runs):
    """The median of each part over RUNS [(elapsed, proc)], in the order they ran."""
    parts = [where_time_goes(*run) for run in runs]
    medians = {k: statistics.median(p.get(k, 0) for p in parts) for k in parts[0]}
    return ", ".join(f"{k} {v:.2f} s" for k, v in medians.items() if v >= 0.005) + \
        f"; {statistics.median(recaps(proc)[0][0] for _, proc in runs):.0f} SSH round trips"


def round_trips(runs):
    """The median time of each kind of round trip over RUNS [(elapsed, traced process)],
    in the order they ran, and the median count of each."""
    traced = [re.findall(r"^@trace ([\d.]+) (.*)$", proc.stderr, re.M) for _, proc in runs]
    kinds = list(dict.fromkeys(kind for run in traced for _, kind in run))
    parts = []
    for kind in kinds:
        times = [sum(float(t) for t, k in run if k == kind) for run in traced]
        count = statistics.median(sum(k == kind for _, k in run) for run in traced)
        parts.append(f"{kind} {statistics.median(times):.2f} s"
                     + (f" ({count:.0f} round trips)" if count > 1 else ""))
    return ", ".join(parts)


def recaps(proc):
    """[(SSH round trips, seconds)] of each host's recap line in a fab run's output."""
    return [(int(n), float(s)) for n, s in
            re.findall(r"\((\d+) SSH round trips?, ([\d.]+) s\)", proc.stdout)]


def summary(values, unit="s"):
    return (f"{statistics.median(values):.2f} {unit} (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


def short(values, unit=" s"):
    """median (min-max)"""
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def ratios(peer, mine):
    """Peer time / our time, round by round: how many times faster we are."""
    return short([p / m for p, m in zip(peer, mine, strict=True)], unit="x")
