"""Let the server's own interpreter bind ports 25, 143, 443, 465, 587 and 993 as a non-root user.

Writes the file capability CAP_NET_BIND_SERVICE (effective + permitted) on
the interpreter of the /opt/mailserver virtual environment, which the
Dockerfile creates with `--copies` so that no other program of the image
gets it. This is exactly the extended attribute `setcap
cap_net_bind_service=+ep` writes (VFS_CAP_REVISION_2, linux/capability.h),
written here with os.setxattr so the slim image needs no libcap2-bin.

Runtimes grant it only if NET_BIND_SERVICE is in the container's bounding
set (the default of Docker, Podman and Kubernetes) and no-new-privileges is
off; otherwise see docs/operations.md (sysctl net.ipv4.ip_unprivileged_port_start=0).
"""

import os
import struct
import sys

VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
CAP_NET_BIND_SERVICE = 10

value = struct.pack("<IIIII", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, 1 << CAP_NET_BIND_SERVICE, 0, 0, 0)
done = set()
for name in sys.argv[1:]:
    path = os.path.realpath(name)
    if path not in done:
        os.setxattr(path, "security.capability", value)
        done.add(path)
        print(f"cap_net_bind_service=ep on {path}")
