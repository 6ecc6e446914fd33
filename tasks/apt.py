"""apt as fab runs it: never asking, keeping the admin's config files, waiting for another
apt's lock, retrying a download once on fresh lists."""


APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 "
       "-o Acquire::Retries=3 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


REPAIR = "dpkg --force-confdef --force-confold --configure -a >/dev/null"


def install(packages, refresh):
    """Shell installing PACKAGES (refreshing the apt lists first if REFRESH)."""
    command = f"{APT} install {' '.join(packages)} >/dev/null"
    # A download that failed even after apt's retries (a mirror mid-sync, a dropped
    # connection) gets one more try on fresh lists, as apt's own message advises.
    return (["apt-get -q update >/dev/null"] if refresh else []) + \
        [f"{command} || {{ apt-get -q update >/dev/null && {command}; }}"]
