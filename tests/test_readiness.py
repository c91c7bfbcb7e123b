"""mta.readiness: waiting on a descriptor numbered past select()'s limit of 1024."""

from __future__ import annotations

import os
import resource

import pytest

from mta.readiness import readable


def test_a_descriptor_past_1024_is_waited_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2100 and hard != resource.RLIM_INFINITY:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} leaves no descriptor past 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, 2050)
    try:
        assert readable(high, 0) is False
        os.write(write_end, b"x")
        assert readable(high, 1.0) is True
        os.close(write_end)
        os.read(high, 1)
        assert readable(high, None) is True  # end of file counts
    finally:
        for fd in (read_end, high):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
