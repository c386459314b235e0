"""The pytest plugin of the test-support package (its ``pytest11`` entry point): the server fixtures."""

from __future__ import annotations

from .fixtures import *  # noqa: F403  (the fixtures are what this plugin offers)
from .fixtures import _iii_state_redis_cluster  # noqa: F401  (behind redis_cluster_url/_nodes)
