"""Check that the capability set of docker/k8s/deployment.yaml is enough for the live feed: run in
the image as root with only those capabilities (``make image-xdp-check``), inside the container's
own network namespace (``--network none``; nothing outside the container is touched). It makes a
veth pair, loads and attaches the steering program (generic XDP), opens an AF_XDP socket on a UMEM
of the default size (feed.live.frames x frame_size = 16 MiB, mlocked), puts it in the XSKMAP, and
removes it all. Exit status 0 and ``XDP CHECK OK`` when everything worked."""

import resource
import subprocess
import sys

from bridges.xdp.afxdp import XskSocket
from bridges.xdp.loader import XdpProgram, XdpUnavailable, privilege_problem


def main() -> int:
    caps = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
    print(f"effective capabilities 0x{caps}; RLIMIT_MEMLOCK {resource.getrlimit(resource.RLIMIT_MEMLOCK)}")
    why = privilege_problem()
    if why:
        print(f"XDP CHECK FAILED: {why}")
        return 1
    subprocess.run(["ip", "link", "add", "hbx0", "type", "veth", "peer", "name", "hbx1"], check=True)
    try:
        for dev in ("hbx0", "hbx1"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        prog = XdpProgram("hbx0", ["239.7.7.7:30001"], mode="skb")
        try:
            print("program loaded and attached to hbx0 (generic XDP)")
            sock = XskSocket("hbx0", 0, frames=8192, frame_size=2048, ring=4096, batch=64, gpu=False)
            try:
                print(f"AF_XDP socket fd {sock.fd}; UMEM 16 MiB mlocked: {sock.locked}")
                prog.set_socket(0, sock.fd)
                print("socket in the XSKMAP")
            finally:
                sock.close()
        finally:
            prog.close()
    except (OSError, XdpUnavailable) as exc:
        print(f"XDP CHECK FAILED: {exc}")
        return 1
    finally:
        subprocess.run(["ip", "link", "del", "hbx0"], check=False)
    print("XDP CHECK OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
