"""The capture framing kernels give identical results on the CPU and under the CUDA simulator."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import stats as S
from replay.capture import CaptureReader
from tests.packets import add_order, binaryfile, mold, pcap_bytes, pcapng_bytes, udp_frame


def small_capture(fmt: str) -> bytes:
    frames = [udp_frame(mold(b"S", 1 + 2 * i, [add_order(1 + 2 * i), add_order(2 + 2 * i)]), vlans=(7,) * (i % 2))
              for i in range(4)]
    frames.insert(2, frames[0][:12] + b"\x86\xdd" + frames[0][14:])  # an IPv6 ethertype: skipped
    if fmt == "pcap":
        return pcap_bytes(frames, ns=True)
    if fmt == "pcapng":
        return pcapng_bytes(frames, tsresol=9)
    return binaryfile([add_order(i) for i in range(1, 9)])


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "itch"])
def test_framing_kernels_agree_across_backends(tmp_path, fmt):
    from kernels import cpu, gpu

    path = tmp_path / f"x.{fmt}"
    path.write_bytes(small_capture(fmt))
    results = []
    for k in (cpu, gpu):
        reader = CaptureReader(path, backend=k)
        batches = [(b.off[:b.n].copy(), b.length[:b.n].copy(), b.seq[:b.n].copy(), b.rx[:b.n].copy())
                   for b in reader]
        results.append((batches, reader.stats.copy()))
    (b_cpu, st_cpu), (b_gpu, st_gpu) = results
    assert np.array_equal(st_cpu, st_gpu)
    assert len(b_cpu) == len(b_gpu) == 1
    for a, b in zip(b_cpu[0], b_gpu[0]):
        assert np.array_equal(a, b)
    assert st_cpu[S.DECODED] == 0  # framing only
    if fmt != "itch":
        assert st_cpu[S.NON_IPV4] == 1 and len(b_cpu[0][0]) == 8
