"""The task collection: `fab --list` reads as the menu of this module."""

from invoke import Collection

from tasks import harden, ops, provision, sandbox

namespace = Collection(
    provision.provision,
    provision.deploy,
    provision.rollback,
    provision.releases,
    provision.packages_task,
    provision.app_task,
    provision.supervisor_task,
    provision.nginx_task,
    provision.firewall_task,
    ops.logs,
    ops.status,
    harden.harden,
)
namespace.add_collection(Collection.from_module(sandbox))
