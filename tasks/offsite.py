"""Off-site backups: restic repositories on the backup host (app.roles.backup), over SFTP.

Why restic: Debian packages it, it encrypts (AES-256, authenticated) and deduplicates on the
client, and its SFTP backend needs nothing on the backup host but sshd, so that host runs
no tool of ours and holds no key that reads the backups. Each app gets an account there
(fab-backup-<name>) whose one SSH key, the database host's, may only run sftp-server in a
home whose files root owns, but for the repository.

The repository's key (restic's password) is made on the operator's machine and kept there
(app.backup_key_file, ~/.config/fab/<name>.backup-key by default, mode 0600): a copy goes to
the database host, root-only, for the schedule. A new server gets it from the operator's
copy, which is what a disaster recovery needs: the settings, that key and the backup host.

Each backup is the file `fab db.backup` makes (tasks.backups), pushed as one snapshot whose
only path is `/<backup name>`. These are scripts and readers only; the step is
tasks/steps/offsite.py, the tasks tasks/db.py.
"""

import json
import re
import secrets
from pathlib import Path

from tasks.backups import NAME_RE, backup_script
from tasks.shell import DeployError, q

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
ED25519_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]{68}$")
SNAPSHOT_ID_RE = re.compile(r"^[0-9a-f]{64}$")
ALIAS = "fab-backup"  # the backup host's name in this host's ssh.conf and known_hosts


def repository(s):
    return f"sftp:{ALIAS}:{s.backup_home}/repo"


def restic_wrapper(s):
    """restic on the app's off-site repository, as root on the database host."""
    ssh = f"ssh -F {s.backup_file('ssh.conf')} {ALIAS} -s sftp"
    return "\n".join([
        "#!/bin/sh",
        f"# Managed by fab: restic on {s.name}'s off-site backups at {s.backup_host} (as root)",
        f"export RESTIC_REPOSITORY={q(repository(s))}",
        f"export RESTIC_PASSWORD_FILE={q(s.backup_file('key'))}",
        f"export RESTIC_CACHE_DIR=/var/cache/fab-backup/{s.name}",
        f'exec restic -o sftp.command={q(ssh)} "$@"', ""])


def ssh_conf(s, address, port):
    """How this host logs in to the backup host: its own key, the host key fab read there."""
    return "\n".join([
        f"# Managed by fab: the backup host of {s.name}",
        f"Host {ALIAS}", f"  HostName {address}", f"  Port {port}",
        f"  User {s.backup_account}", f"  IdentityFile {s.backup_file('ssh')}",
        "  IdentitiesOnly yes", f"  UserKnownHostsFile {s.backup_file('known_hosts')}",
        f"  HostKeyAlias {ALIAS}", "  StrictHostKeyChecking yes", "  BatchMode yes",
        "  ConnectTimeout 10", "  ServerAliveInterval 15", ""])


def keep_options(s):
    return " ".join(f"--keep-{kind} {n}" for kind, n in
                    (word.split("=") for word in s.backup_keep.split()))


def reach_line(s):
    """Shell: stop, saying ssh's own reason, unless the backup host lets this host in.
    (restic passes ssh's words on only when it reads them before it gives up.)"""
    return (f"err=$(ssh -F {q(s.backup_file('ssh.conf'))} {ALIAS} -s sftp </dev/null 2>&1 "
            ">/dev/null) || { printf 'subprocess ssh: %s\\n' \"$(printf '%s' \"$err\" | "
            "tail -n1)\" >&2; exit 1; }")


def push_lines(s):
    """Shell lines that push backup "$name" off-site, forget what the policy no longer keeps
    (grouped by the app, not by file: each snapshot has a path of its own) and stamp it."""
    restic, stamp = q(s.backup_file("restic")), q(s.offsite_stamp)
    return [reach_line(s), f"{restic} backup --quiet --host {q(s.name)} --tag fab --stdin "
            f'--stdin-filename "$name" < {q(s.backups)}/"$name"',
            f"{restic} forget --quiet --host {q(s.name)} --tag fab --group-by host "
            f"{keep_options(s)} --prune >/dev/null",
            f'printf "%s %s\\n" "$(date +%s)" "$name" > {stamp}.tmp',
            f"mv -f {stamp}.tmp {stamp}"]


def scheduled_script(s):
    """The scheduled backup (and `fab db.backup`'s, with a backup host): a backup made in
    <dir>/backups, then pushed off-site. `.failed` beside the stamp says the last one failed
    (for status, and for the next run, which sets the backup host up again)."""
    return "\n".join(["#!/bin/sh",
                      f"# Managed by fab: {s.name}'s backup, made here and pushed to "
                      f"{s.backup_host}",
                      f"touch {q(s.offsite_stamp)}.failed",  # until it all went well
                      backup_script(s), *push_lines(s), f"rm -f {q(s.offsite_stamp)}.failed",
                      ""])


def locked_run(s):
    """The scheduled backup, run under its lock: the timer's service and `fab db.backup`
    alike, so that two never run at once."""
    return f"/usr/bin/flock {q(s.backup_lock)} /bin/sh {q(s.backup_file('run'))}"


ACCOUNT_COMMENT = "fab keeps backups of {}"


def account_script(s, public_key):
    """On the backup host, as root: the app's SFTP-only account, its one authorized key
    (PUBLIC_KEY, checked by the caller), the repository's folder. Prints `hostkey TYPE KEY`
    and `repo` when a repository is there already. Root writes only in folders root owns."""
    acc, home, comment = q(s.backup_account), q(s.backup_home), ACCOUNT_COMMENT.format(s.name)
    line = f'restrict,command="/usr/lib/openssh/sftp-server" {public_key} {s.backup_account}'
    keys = f"{home}/.ssh/authorized_keys"
    return "\n".join([
        "set -e",
        f"id -u {acc} >/dev/null 2>&1 || useradd --system --user-group --shell /bin/sh "
        f"--home-dir {home} --no-create-home --comment {q(comment)} {acc}",
        f'[ "$(getent passwd {acc} | cut -d: -f5)" = {q(comment)} ] || {{ echo '
        f"{q(f'{s.backup_account} on the backup host is an account fab did not make: remove it')}"
        " >&2; exit 1; }",
        "install -d -o root -g root -m 0755 /var/lib/fab-backups",
        f"install -d -o root -g root -m 0755 {home} {home}/.ssh",
        f"install -d -o {acc} -g {acc} -m 0700 {home}/repo",
        f"printf '%s\\n' {q(line)} > {keys}.fab-new",
        f"chmod 0644 {keys}.fab-new; mv -f {keys}.fab-new {keys}",
        "echo \"hostkey $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)\"",
        f"[ ! -f {home}/repo/config ] || echo repo"])


def read_account(lines, backup_host):
    """(host key `ssh-ed25519 KEY`, whether a repository is there) from account_script."""
    hostkey = next((line[len("hostkey "):] for line in lines if line.startswith("hostkey ")), "")
    if not ED25519_RE.fullmatch(hostkey):
        raise DeployError(f"the backup host {backup_host} has no ed25519 host key fab can "
                          "read (/etc/ssh/ssh_host_ed25519_key.pub)")
    return hostkey, "repo" in lines


def local_key(s):
    """The operator's copy of the repository's key, or None when there is none yet."""
    path = Path(s.backup_key_file)
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DeployError(f"cannot read app.backup_key_file {path}: {e.strerror}") from None
    if not KEY_RE.fullmatch(key):
        raise DeployError(f"app.backup_key_file {path} holds no key of the shape fab makes "
                          "(32 to 128 letters, digits, '-' and '_')")
    return key


def keep_local_key(s, key):
    """Write KEY as the operator's copy, 0600, in a folder only they read."""
    path = Path(s.backup_key_file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=False)
    path.write_text(key + "\n")


def new_key():
    return secrets.token_urlsafe(32)


def snapshots(text, s):
    """[(backup name, snapshot id, time)] of `restic snapshots --json`, newest first; a
    snapshot of another shape is left out."""
    listed = [line for line in text.splitlines() if line.startswith("[")]
    try:
        items = json.loads(listed[-1] if listed else "[]")
    except ValueError:
        raise DeployError(f"restic's list of {s.name}'s off-site backups is not JSON") from None
    out = []
    for item in items if isinstance(items, list) else []:
        paths = item.get("paths") if isinstance(item, dict) else None
        if not (isinstance(paths, list) and len(paths) == 1 and isinstance(paths[0], str)):
            continue
        name, sid = paths[0].removeprefix("/"), item.get("id")
        if NAME_RE.fullmatch(name) and isinstance(sid, str) and SNAPSHOT_ID_RE.fullmatch(sid):
            out.append((name, sid, str(item.get("time", ""))))
    return sorted(out, key=lambda snap: snap[0], reverse=True)


def restic_error(text):
    """The line of restic's failure that says what went wrong: ssh's own (the backup host
    unreachable, a key refused), else restic's `Fatal:`, else the last line; one line."""
    for pattern in (r"subprocess ssh: (.+)", r"(Fatal: [^\n\"{]+)"):
        found = re.findall(pattern, text)
        if found:
            return found[-1].strip()[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:300]


def list_script(s):
    return (f"{reach_line(s)}\n"
            f"{q(s.backup_file('restic'))} snapshots --json --host {q(s.name)} --tag fab")


def fetch_script(s, name, sid):
    """Copy off-site backup NAME (snapshot SID) into <dir>/backups, as the local ones."""
    backups, restic = q(s.backups), q(s.backup_file("restic"))
    tmp = f'{backups}/".{name}.tmp"'
    return "\n".join(["set -e", "umask 077",
                      f"install -d -o root -g root -m 0700 {backups}",
                      f"trap 'rm -f {tmp}' EXIT", reach_line(s),
                      f"{restic} dump --quiet {sid} /{name} > {tmp}",
                      f"mv -f {tmp} {backups}/{name}"])


def stamp_script(s):
    """For `fab status`: the newest push (`EPOCH NAME`, or `none`), the last one's result,
    the schedule's next two times and now (epochs)."""
    return "\n".join([
        f"cat {q(s.offsite_stamp)} 2>/dev/null || echo none",
        f"[ -e {q(s.offsite_stamp)}.failed ] && echo failed || echo success",
        f"TZ=UTC systemd-analyze calendar --iterations=2 {q(s.backup_schedule)} 2>/dev/null "
        "| sed -n 's/^ *\\(Next elapse\\|Iter[a-z.]* #2\\): //p' "
        '| while read -r t; do date -d "$t" +%s; done', "date +%s"])


def ago(seconds):
    """SECONDS as status shows an age: 40s, 12m, 5h, 3d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def read_stamp(s, lines):
    """(cell, problem) of the off-site backups: the newest's age; a problem when the last
    scheduled one failed, or the newest is older than twice the schedule's period."""
    if not s.offsite:
        return "-", ""
    lines = [line.strip() for line in lines]
    stamp = lines[0].split() if lines else []
    numbers = [int(x) for x in lines[2:] if x.isdigit()]
    failed = len(lines) > 1 and lines[1] == "failed"
    problem = (f"the last off-site backup to {s.backup_host} failed (fab logs -c backups)"
               if failed else "")
    if len(stamp) != 2 or not stamp[0].isdigit() or not NAME_RE.fullmatch(stamp[1]) \
            or not numbers:
        return "none yet", problem
    age = numbers[-1] - int(stamp[0])
    period = numbers[1] - numbers[0] if len(numbers) == 3 else None
    if period and age > 2 * period and not problem:
        problem = (f"the newest off-site backup is {ago(age)} old, over twice the schedule "
                   f"({s.backup_schedule})")
    return f"{ago(age)} ago", problem
