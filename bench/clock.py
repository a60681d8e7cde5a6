"""The time-stamp counter for benchmarks: ``kernels/clock.py`` (compiled code reads it too)."""

from kernels.clock import rdtsc, ticks_per_ns, tsc  # noqa: F401
