"""Prints a TCP port on 127.0.0.1 that nothing listens on, and the next one
too (Ceph's monitor takes two), below the kernel's ephemeral range: a port
in that range can be taken by any outgoing connection between the choice
and the server's bind (a test once failed on "Address already in use").

    python3 scripts/free_port.py [LOW]      # LOW: 10000 by default
"""

import random
import socket
import sys

low = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        high = int(ranges.read().split()[0])
except OSError:
    high = 32768
for _ in range(500):
    port = random.randrange(low, high - 1)
    try:
        for candidate in (port, port + 1):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", candidate))
    except OSError:
        continue
    print(port)
    break
else:
    sys.exit("no free port below the ephemeral range")
