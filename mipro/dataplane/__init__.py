"""Kernel programming and encapsulation: the only package that talks to the kernel.

Roles on top of mechanisms.  A role is one daemon's kernel state: ``ha.py``
(``HaDataplane``), ``fa/`` (``agent.py``: ``FaDataplane``, with its realms, route
profiles and visitor firewall), ``mn/`` (``agent.py``: ``MnDataplane``, with its port
selection).  A mechanism is a way of talking to the kernel that any role may use:
``kernel/`` (netlink, netfilter: iptables, ipsets, nftables, flood limits, backend
detection), ``relay/`` (userspace tunnels over TUN and raw sockets), ``link/`` (packet
sockets, gratuitous ARP, carrier changes).  Roles import mechanisms, never another role;
mechanisms never import roles nor each other, except relay/ and link/ building on
kernel/ (tests/unit/test_layering.py).  ``fake.py`` has a fake for every role, at the
boundary where the runtime meets the role: it records what would be programmed and
changes nothing.

Backends (``BACKENDS``, resolved by ``kernel/detect.py``): ``kernel`` (tunnel links
through the kernel's ipip/gre), ``userspace`` (TUN + raw sockets for machines without
the ipip/gre modules) and ``fake``.  Routes, rules and neighbour proxies are programmed
through pyroute2 in both real backends, except on the home agent's hot path.

Hand-built netlink (``kernel/rtbatch.py``, with ``kernel/ipset.py`` for its nfnetlink
ipset requests): pyroute2 makes one request and one round trip per call, which held a
home agent to about 450 registrations/s.  What a binding costs the kernel (a /32 route,
a proxy ARP entry, a tunnel link with an interface index of our choosing, an ipset
member) is packed by hand in the fixed layouts of rtnetlink(7) and ipset's nfnetlink,
written in one ``send`` per batch of registrations and acknowledged by sequence number
(50,000 routes/s); lightweight-tunnel routes (``RTA_ENCAP``) are built there too, since
pyroute2 does not build them.  Everything else (rules, dumps, addresses, links of the
FA and MN) stays with pyroute2 (``kernel/netlink.py``).
"""

BACKENDS = ("auto", "kernel", "userspace", "fake")  # dataplane.backend (kernel/detect.py)
