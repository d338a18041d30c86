"""Shared fixtures."""

import pytest
from hypothesis import HealthCheck, settings

from stdb._core import reference
from stdb._core import table as cytable

IMPLS = {"cython": cytable.Table, "python": reference.Table}

# Speed is measured in bench/, never asserted: no per-example deadline and no "input generation
# is slow" health check, both of which fail on a loaded machine without any bug.
settings.register_profile("stdb", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("stdb")


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    """The Table class under test: the Cython engine or its pure-Python twin."""
    return IMPLS[request.param]
