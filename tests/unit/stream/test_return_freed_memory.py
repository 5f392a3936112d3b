"""The worker's heap trimmer: pages glibc's heap holds free go back to the system."""

import subprocess
import sys

import pytest

# In a fresh interpreter: after one mapped 1 MiB block was freed (glibc then raises its
# mmap threshold past 1 MiB), 64 more come from the heap and all but the last are freed
# (the last keeps the heap's top from being trimmed by free itself); prints the resident
# MiB that stayed after a moment, with the trimmer running or not.
_PROGRAM = """
import ctypes, os, sys, time
from sentinel_usage.stream.worker import return_freed_memory
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
stop = return_freed_memory(float(sys.argv[1]))
assert (stop is None) == (sys.argv[1] == "0")
time.sleep(0.5)
after = int(open("/proc/self/statm").read().split()[1])
print((after - before) * os.sysconf("SC_PAGE_SIZE") / 2**20)
"""


def _kept_mib(every_seconds: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, every_seconds], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_heaps_free_pages_are_returned_while_the_trimmer_runs() -> None:
    assert _kept_mib("0") >= 32  # off: glibc kept the freed blocks resident
    assert _kept_mib("0.05") <= 4
