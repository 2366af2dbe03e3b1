"""SLOs and synthetic probes: checks run inside tenant networks, their series, budgets,
burn-rate alerts and monthly SLA reports."""
