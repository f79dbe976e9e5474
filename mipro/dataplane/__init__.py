"""Kernel programming and encapsulation: the only package that talks to the kernel.

Backends: ``kernel`` (tunnel links through pyroute2), ``userspace`` (TUN + raw
sockets for machines without the ipip/gre modules) and ``fake`` (an in-memory
recorder for tests of the layers above).  Routes, rules and neighbour
proxies are programmed through pyroute2 in both real backends.
"""

BACKENDS = ("auto", "kernel", "userspace", "fake")  # dataplane.backend (kernel/detect.py)
