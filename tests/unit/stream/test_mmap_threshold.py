"""The worker's fixed mmap threshold: freed large blocks go back to the system."""

import subprocess
import sys

import pytest

# In a fresh interpreter: after one mapped 1 MiB block was freed, 64 more are made and
# all but the last freed (the last keeps the heap's top from being trimmed); prints the
# resident MiB that stayed.
_PROGRAM = """
import ctypes, os, sys
from sentinel_usage.stream.worker import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def block():
    pointer = libc.malloc(1 << 20)
    ctypes.memset(pointer, 1, 1 << 20)
    return pointer
libc.free(block())
before = int(open("/proc/self/statm").read().split()[1])
blocks = [block() for _ in range(64)]
for pointer in blocks[:-1]:
    libc.free(pointer)
after = int(open("/proc/self/statm").read().split()[1])
print((after - before) * os.sysconf("SC_PAGE_SIZE") / 2**20)
"""


def _kept_mib(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_large_blocks_are_returned_with_the_threshold_fixed() -> None:
    assert _kept_mib("default") >= 32  # glibc's dynamic threshold kept them on the heap
    assert _kept_mib("fixed") <= 4
