"""The task collection: `fab --list` reads as the menu of this module."""

from invoke import Collection

from tasks import sandbox

namespace = Collection()
namespace.add_collection(Collection.from_module(sandbox))
