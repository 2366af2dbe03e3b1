"""The dashboard's login session in a cookie: the refresh token the browser keeps across tabs and reloads.

The dashboard asks for it by sending ``X-Requested-With`` on ``POST /v1/tokens``: the refresh token
then travels only in a cookie (HttpOnly, so page scripts never see it; Secure; SameSite=Strict;
Path limited to the refresh endpoint, so no other request carries it) and the JSON answer leaves
``refresh_token`` null. The access token stays in the page's memory and every API call still
authenticates with ``Authorization: Bearer``: the cookie authenticates nothing but the refresh.

The cookie-authenticated refresh refuses cross-site use three ways (CSRF): SameSite=Strict keeps
the browser from sending the cookie on another site's request; the required custom header cannot
be sent cross-site without a CORS preflight, which this API never grants; and a browser's
``Origin`` or ``Sec-Fetch-Site`` that names another site is refused outright.

Secure is always set: browsers accept a Secure cookie over HTTPS and on http://localhost /
127.0.0.1 (a secure context), which is how the dev server and the tests run. On plain HTTP to any
other host the browser drops the cookie: the dashboard still signs in but a new tab or a reload
asks again (serve it over HTTPS, ``novacron server --tls-*``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request, Response

from novacron.errors import Forbidden

COOKIE = "novacron_refresh"
#: the only path the browser sends the cookie to
COOKIE_PATH = "/v1/tokens/refresh"
#: the custom header a cookie login and a cookie refresh must carry
CSRF_HEADER = "X-Requested-With"


def wants_cookie(request: Request) -> bool:
    """Whether a login asks for its refresh token in the cookie (the dashboard does)."""
    return bool(request.headers.get(CSRF_HEADER))


def set_refresh_cookie(response: Response, token: str, max_age: int) -> None:
    """Hand the browser the refresh token; scripts cannot read it and only the refresh endpoint gets it."""
    response.set_cookie(
        COOKIE, token, max_age=max_age, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict"
    )


def clear_refresh_cookie(response: Response) -> None:
    """Make the browser forget the refresh token (sign-out)."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict")


def check_same_site(request: Request) -> None:
    """Refuse a cookie-authenticated request another site could have made (403)."""
    if not request.headers.get(CSRF_HEADER):
        raise Forbidden(f"A refresh with the session cookie must carry the {CSRF_HEADER} header.")
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden(f"A refresh with the session cookie is refused from another site ({fetch_site}).")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise Forbidden(f"A refresh with the session cookie is refused from origin {origin[:100]}.")
