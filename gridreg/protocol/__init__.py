"""gridreg's internal protocol: AMP commands between replicas, nodes and the admin tool."""
