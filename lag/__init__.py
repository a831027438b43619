"""Consumer lag of kjs's groups and of any other: the lag monitor (``kjs lag``) and its
Prometheus exporter (``kjs lag --serve``), a process of its own."""
