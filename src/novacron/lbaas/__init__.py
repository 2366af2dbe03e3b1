"""Load balancing as a service: Octavia's model served by one HAProxy per load balancer.

``model`` is the desired state of a load balancer, ``haproxy_config`` renders it as an
``haproxy.cfg`` and ``haproxy`` runs, reloads and steers that HAProxy in its network namespace.
``protection`` is a listener's per-source limits, allow and deny lists and bans, and ``guard``
decides whom to ban from the traffic HAProxy counts; ``synproxy`` (SYN floods) and ``qos``
(bandwidth and connection rate) are the listener protection the namespace's kernel enforces.
"""
