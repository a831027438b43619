"""``kjs.settings`` is ``core.settings``: the settings moved to the leaf core; this name stays
for programs outside this repository that import it (the side-by-side benchmark harness
does). kjs's own code imports ``core.settings``."""

from core.settings import *  # noqa: F403
