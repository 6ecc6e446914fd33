"""Security updates installed unattended, the distribution's way (`fab harden`).

Debian's (and Ubuntu's) unattended-upgrades, run by apt's daily timers, limited to the
security archive: `#clear` empties the origins its default configuration allows (point
releases too) before ours is set. It reboots only when app.auto_reboot_at asks.
"""

from tasks.apt import APT
from tasks.plan import Command, Plan, Step
from tasks.shell import q, sha256
from tasks.units import detached, work_unit

PERIODIC = "/etc/apt/apt.conf.d/20auto-upgrades"
ORIGINS = "/etc/apt/apt.conf.d/52fab-security-upgrades"
# The security archive: Debian names it by codename (trixie-security; its suite is
# stable-security), Ubuntu by suite (noble-security).
SECURITY = ("origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
            "origin=Ubuntu,archive=${distro_codename}-security")


def periodic():
    return 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


def origins(reboot_at):
    reboot = (f'Unattended-Upgrade::Automatic-Reboot "true";\n'
              f'Unattended-Upgrade::Automatic-Reboot-Time "{reboot_at}";\n'
              if reboot_at else 'Unattended-Upgrade::Automatic-Reboot "false";\n')
    return ("// Written by fab harden: security updates only.\n"
            "#clear Unattended-Upgrade::Origins-Pattern;\n"
            "#clear Unattended-Upgrade::Allowed-Origins;\n"
            "Unattended-Upgrade::Origins-Pattern {\n"
            + "".join(f'    "{pattern}";\n' for pattern in SECURITY) + "};\n" + reboot)


def read_script():
    """`installed` if the package is, then each file's checksum (or `none`)."""
    return ("dpkg-query -W -f='${db:Status-Abbrev}\\n' unattended-upgrades 2>/dev/null "
            "| grep -q '^ii' && echo installed\n"
            + "".join(f"sha256sum < {q(p)} 2>/dev/null | cut -d' ' -f1 || echo none\n"
                      for p in (PERIODIC, ORIGINS)))


def write(path, content):
    return (f"printf %s {q(content)} > {q(path)}.fab-new && chmod 0644 {q(path)}.fab-new "
            f"&& mv -f {q(path)}.fab-new {q(path)}")


def plan(s, read):
    lines = read.split()
    installed = "installed" in lines
    sums = [x for x in lines if x != "installed"]
    files = {PERIODIC: periodic(), ORIGINS: origins(s.auto_reboot_at)}
    stale = [p for (p, content), got in zip(files.items(), sums + ["", ""], strict=False)
             if got != sha256(content)]
    when = f"reboots at {s.auto_reboot_at} when an update needs it" if s.auto_reboot_at \
        else "never reboots by itself"
    if installed and not stale:
        return Plan(ok=f"security updates install daily (unattended-upgrades; {when})")
    script = ["set -e", "export DEBIAN_FRONTEND=noninteractive"]
    if not installed:
        script.append(f"{APT} install unattended-upgrades >/dev/null || "
                      f"{{ apt-get -q update >/dev/null && {APT} install unattended-upgrades "
                      ">/dev/null; }")
    script += [write(p, files[p]) for p in files]
    # The origins apt will really use: ours alone, or another file wins over it.
    script.append("[ \"$(apt-config dump | grep -cE "
                  "'^Unattended-Upgrade::(Origins-Pattern|Allowed-Origins):: ')\" = "
                  f"{len(SECURITY)} ] || {{ echo 'another apt.conf.d file adds origins after "
                  f"{ORIGINS}' >&2; exit 1; }}")
    script.append("systemctl enable --now apt-daily.timer apt-daily-upgrade.timer >/dev/null")
    said = (("installed unattended-upgrades: " if not installed else "")
            + f"security updates install daily ({when})")
    return Plan([Command(said, detached(work_unit(s, "apt"), "\n".join(script), 900),
                         timeout=960, would=f"write {', '.join(stale) or 'nothing'}"
                         + ("" if installed else " and install unattended-upgrades"))])


STEP = Step("updates", lambda h: plan(h.settings, h.read(read_script())),
            "Install security updates daily (unattended-upgrades, security archive only).")
