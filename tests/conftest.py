"""Shared fixtures."""

import pytest

from stdb._core import reference
from stdb._core import table as cytable

IMPLS = {"cython": cytable.Table, "python": reference.Table}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    """The Table class under test: the Cython engine or its pure-Python twin."""
    return IMPLS[request.param]
