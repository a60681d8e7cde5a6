"""XDP / AF_XDP live feed: loader of the steering program (``loader``), AF_XDP receiver
(``afxdp``), plain UDP fallback (``udp``), MoldUDP64 gap recovery (``gap``) and the live frame
source that hands ``MessageBatch`` objects to the same stages as replay (``source``)."""
