"""A global name as PowerDNS LUA records: one Lua program per address family.

The program (run by pdns_server for each query, with ``bestwho`` the client's address or its
EDNS client subnet) finds the client's region in the CIDR table (longest prefix first, with
PowerDNS's ``netmask``), checks each site with ``ifportup``/``ifurlup`` (PowerDNS's own background
checker, every ``lua-health-checks-interval`` seconds), and answers one address by weight
(``pickwrandom``) among the healthy sites of the client's region; when none of those is healthy,
among the healthy sites of every other region; when no site is healthy, all the sites (an answer
that may work beats none).

PowerDNS 4.7 has no call that says whether one address is up: ``ifportup`` returns the up ones,
or, when none is, a fallback pick of all of them. So each site is checked together with a
sentinel that is never up — a broadcast/multicast address, to which the kernel refuses TCP at
once — and ``selector='all'``: the answer holds the site alone exactly when the site is up.

Only values of ``model.py`` (checked) are written into the program, and each literal passes
:func:`lua_string`, which refuses any character outside a whitelist: a tenant's input cannot
close a string and add code.
"""

from __future__ import annotations

import re

from novacron.gslb.model import GlobalName, RegionRule, Site

#: never up: Linux refuses TCP to broadcast and multicast destinations (ENETUNREACH)
SENTINEL = "255.255.255.255"
#: what a literal may hold: addresses, CIDRs, regions, DNS names, URL paths
_SAFE = re.compile(r"^[A-Za-z0-9.:/_~\[\]-]*$")
_CHECK_OPTIONS = "{selector='all',backupSelector='all'}"

_PROGRAM = """\
local sites={%(sites)s}
local regions={%(regions)s}
local home=nil
for _,r in ipairs(regions) do if netmask({r[1]}) then home=r[2] break end end
local near,far,every={},{},{}
for _,s in ipairs(sites) do
  local seen
  if s[5]=='' then seen=ifportup(s[2],{s[1],'%(sentinel)s'},%(options)s)
  else seen=ifurlup(s[5],{s[1],'%(sentinel)s'},%(options)s) end
  table.insert(every,s[1])
  if #seen==1 then
    if s[4]==home then table.insert(near,{s[3],s[1]}) else table.insert(far,{s[3],s[1]}) end
  end
end
if #near>0 then return pickwrandom(near) end
if #far>0 then return pickwrandom(far) end
return every"""


def lua_string(value: str) -> str:
    """``value`` as a single-quoted Lua literal; refuses anything outside the whitelist."""
    if not _SAFE.fullmatch(value):
        raise ValueError(f"refusing to write {value!r} into a LUA record")
    return f"'{value}'"


def monitor_url(name: str, site: Site) -> str:
    """The URL a site's HTTP check fetches: the global name (as Host) pinned to the site's address."""
    if site.monitor_path is None:
        return ""
    return f"http://{name.rstrip('.')}:{int(site.port)}{site.monitor_path}"


def _site(name: str, site: Site) -> str:
    fields = (
        lua_string(site.address),
        str(int(site.port)),
        str(int(site.weight)),
        lua_string(site.region),
        lua_string(monitor_url(name, site)),
    )
    return "{" + ",".join(fields) + "}"


def program(name: GlobalName, family: int, regions: tuple[RegionRule, ...]) -> str | None:
    """The Lua program answering ``name``'s A (family 4) or AAAA (6) queries; None: no such site."""
    sites = [s for s in name.sites if s.family == family]
    if not sites:
        return None
    by_prefix = sorted(regions, key=lambda r: (-int(r.cidr.rpartition("/")[2]), r.cidr))
    return " ".join(_PROGRAM.splitlines()) % {
        "sites": ",".join(_site(name.name, s) for s in sites),
        "regions": ",".join("{" + lua_string(r.cidr) + "," + lua_string(r.region) + "}" for r in by_prefix),
        "sentinel": SENTINEL,
        "options": _CHECK_OPTIONS,
    }


def records(name: GlobalName, regions: tuple[RegionRule, ...]) -> list[tuple[str, str]]:
    """``name``'s LUA records as (type, content) in PowerDNS's form: ``A ";<program>"``."""
    out = []
    for family, rtype in ((4, "A"), (6, "AAAA")):
        code = program(name, family, regions)
        if code is not None:
            # a leading ';' runs the content as a whole program (else it is one expression)
            out.append(("LUA", f'{rtype} ";{code}"'))
    return out
