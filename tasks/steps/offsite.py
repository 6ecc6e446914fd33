"""Step: off-site backups (app.roles.backup), on the host that runs the database.

Sets up restic's repository on the backup host (tasks.offsite says how, and why restic),
then a systemd timer (app.backup_schedule) that backs the database up here and pushes it
there, keeping what app.backup_keep says. A re-run that finds it all in place (the marker
written last, the files as they should be) does not reach the backup host.
"""

from tasks.declared import Column, Journal, Needs
from tasks.offsite import (
    ALIAS,
    ED25519_RE,
    KEY_RE,
    account_script,
    keep_local_key,
    local_key,
    locked_run,
    new_key,
    read_account,
    read_stamp,
    repository,
    restic_wrapper,
    scheduled_script,
    ssh_conf,
    stamp_script,
)
from tasks.plan import Call, Command, Plan, Step, upload
from tasks.roles import address, ssh_port
from tasks.run import role_host
from tasks.shell import DeployError, q, sha256
from tasks.templates import render
from tasks.units import UNIT_DIR, calendar_check, timers_started, units_removed


def unit_paths(s):
    """The scheduled backup's script, service and timer."""
    return (s.backup_file("run"), f"{UNIT_DIR}/{s.backup_unit}.service",
            f"{UNIT_DIR}/{s.backup_unit}.timer")


def unit_files(s):
    """{path: (content, mode)} of unit_paths on a host that pushes backups off-site."""
    values = dict(name=s.name, unit=s.backup_unit, when=s.backup_schedule,
                  backup_host=s.backup_host, command=locked_run(s))
    run, service, timer = unit_paths(s)
    return {run: (scheduled_script(s), "0700"),
            service: (render("backup.service.j2", **values), "0644"),
            timer: (render("backup.timer.j2", **values), "0644")}


def needs(s):
    files = (*unit_paths(s), *(s.backup_file(f) for f in ("ssh",)))
    return Needs(packages=("restic", "openssh-client") if s.offsite else (), files=files)


def logs(s):
    return {"backups": Journal(f"{s.backup_unit}.service")}


COLUMN = Column("off-site", lambda s: stamp_script(s) if s.offsite else "true", read_stamp)


def marker(s, at, key):
    """What the marker says once the backup host is set up for this host with KEY."""
    return f"{repository(s)} {at} key {sha256(key)[:16]}"


def operator_key(h, has_repo):
    """The operator's copy of the key; when they have none: this server's (a teammate set
    it up), or a new one if the backup host has no repository yet. Returns (key, note)."""
    s = h.settings
    key = local_key(s)
    if key is not None:
        return key, ""
    here = h.read(f"cat {q(s.backup_file('key'))} 2>/dev/null || true").strip()
    if KEY_RE.fullmatch(here):
        keep_local_key(s, here)
        return here, f"; copied this server's key to {s.backup_key_file}"
    if has_repo:
        raise DeployError(f"{s.backup_host} has backups of {s.name}, and {s.backup_key_file} "
                          "is missing: put the key that reads them there (your copy of it)")
    keep_local_key(s, new_key())
    return local_key(s), (f"; made the backups' key {s.backup_key_file}: keep a copy of it "
                          "safe (a password manager): no backup can be read without it")


def setup(h, at):
    """This host's SSH key let in on the backup host, the operator's key (operator_key),
    restic's repository opened with it (or made), then the marker. A key that does not
    open the repository there is refused and the server's copy stays as it was."""
    s = h.settings
    ssh_key = q(s.backup_file("ssh"))
    public = " ".join(h.change(f"umask 077; [ -f {ssh_key} ] || ssh-keygen -q -t ed25519 -N '' "
                               f"-C {q(s.backup_account)} -f {ssh_key}\n"
                               f"cat {ssh_key}.pub").split()[:2])
    if not ED25519_RE.fullmatch(public):
        raise DeployError(f"{s.backup_file('ssh')}.pub is not an ed25519 public key")
    try:
        with role_host(h, "backup") as b:
            hostkey, has_repo = read_account(b.change(account_script(s, public)).splitlines(),
                                             s.backup_host)
    except DeployError as e:
        raise DeployError(f"the backup host {s.backup_host}: {e}") from None
    except Exception as e:  # cannot connect, log in or sudo there
        raise DeployError(f"cannot reach the backup host {s.backup_host}: {e}") from None
    key, said = operator_key(h, has_repo)
    h.put(ssh_conf(s, *at.split(":")), s.backup_file("ssh.conf"), mode="0600")
    h.put(f"{ALIAS} {hostkey}\n", s.backup_file("known_hosts"), mode="0600")
    h.put(restic_wrapper(s), s.backup_file("restic"), mode="0700")
    restic, tmp = q(s.backup_file("restic")), q(h.upload(key + "\n"))
    wrong = (f"the backups on {s.backup_host} were made with another key than the one in "
             f"{s.backup_key_file}: put that one there (your copy, or the old server's "
             f"{s.backup_file('key')})")
    opened = (f'out=$({restic} --password-file {tmp} cat config 2>&1 >/dev/null) || {{ '
              f'case "$out" in *"wrong password"*) echo {q(wrong)} >&2;; *) echo "restic '
              f'cannot open the repository on {s.backup_host}: $(echo "$out" | tail -n1)" >&2;; '
              "esac; exit 1; }") if has_repo else \
        f"{restic} --password-file {tmp} init >/dev/null"
    h.change("\n".join([
        "set -e", "umask 077", f"trap 'rm -f {tmp}' EXIT", opened,
        f"install -o root -g root -m 0600 {tmp} {q(s.backup_file('key'))}",
        f"printf '%s\\n' {q(marker(s, at, key))} > {q(s.backup_file('offsite'))}"]))
    return f"off-site backups to {s.backup_host} ready" + \
        (", its repository made" if not has_repo else "") + said


def plan(h):
    s, facts = h.settings, h.facts
    if not s.offsite:
        there = [p for p in unit_paths(s) if p in facts.files]
        timer = f"{s.backup_unit}.timer"
        return Plan([Command(f"removed the off-site backup's timer {timer}",
                             "\n".join(units_removed([timer], there)))]
                    if there else [], ok="no backup host")
    try:
        at = f"{address(h.c.config, s.backup_host)}:{ssh_port(h.c.config, s.backup_host)}"
    except DeployError as e:
        raise DeployError(f"the backup host (app.roles.backup): {e}") from None
    key = local_key(s)
    changes = []
    if key is None or facts.offsite != marker(s, at, key) or facts.offsite_failed or \
            s.backup_file("ssh") not in facts.files:
        changes.append(Call(f"off-site backups to {s.backup_host} ready",
                            lambda h: setup(h, at),
                            f"set up off-site backups on {s.backup_host} ({s.backup_account}: "
                            "SFTP only, this host's key; restic's repository)"))
    for path, (content, mode) in unit_files(s).items():
        changes += upload(facts, f"wrote {path.rsplit('/', 1)[1]}", path, content, mode=mode)
    if changes:
        timer = f"{s.backup_unit}.timer"
        changes.insert(0, Command("", calendar_check(s.backup_schedule,
                                                     "app.backup_schedule")))
        changes.append(Command(f"started {timer}", timers_started([timer])))
    return Plan(changes, ok=f"off-site backups to {s.backup_host} ({s.backup_schedule})")


STEP = Step("offsite", plan,
            "Back the database up off-site (app.roles.backup) on a schedule, with restic.",
            applies=lambda h: h.settings.offsite or any(
                p in h.facts.files for p in unit_paths(h.settings)))
