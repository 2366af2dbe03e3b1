"""Global load balancing: one DNS name answered from several sites (load balancer VIPs in
different regions), health-aware, weighted and by the client's region.

``model.py`` holds the desired state (validated: every value a tenant types ends up inside a
PowerDNS LUA record, so only checked addresses, numbers and whitelisted strings get there),
``lua.py`` renders a name into its LUA records, ``provider.py`` is the DNS seam and
``powerdns.py`` its implementation: our own ``pdns_server`` on a loopback port, reading a SQLite
zone database we write. ``service.py`` is the tenants' and administrators' service over the
``gslb_*`` tables; after every change it publishes the whole zone.
"""
