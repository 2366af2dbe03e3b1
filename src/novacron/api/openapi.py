"""The OpenAPI document tells every answer an operation can give, derived from the code.

FastAPI documents a route's success body and a 422. Everything else an operation answers comes
from what it depends on, so it is derived here from each route's dependency tree
(``route.dependant``), never written per route:

- what a dependency, an endpoint or anything their code names says it raises: ``raises(...)``
  on a dependency, a helper or a class; ``Service.raises`` (domain error classes) on a service
  built by ``deps.service``; a domain error class (``STATUS_OF``) or a literal status
  (``Problem(409, ...)``) in the code of the endpoint, its dependencies and the NovaCron
  functions they call, and the methods the endpoint calls on a service a dependency gives it
  (``deps.service``, or a dependency annotated ``-> Grants``); what a method of any other object
  calls is out of sight: declare it;
- what the route's inputs imply: a path parameter, an ``*_id`` query parameter or a body may
  name nothing (404), parameters may be invalid (422; a list's ``cursor``/``sort``/``limit``
  400), a body may be unreadable (400), too large (413), of another type (415) or invalid (422),
  a caller's write may contradict the current state (409);
- the headers the code reads (``request.headers.get("if-match")``, ``Idempotency-Key``) and
  sets (``ETag``, ``Location``, ``X-Next-Offset``).

Every error is an RFC 9457 problem (``Problem`` schema) under ``application/problem+json``. A
create's 201 links to the operations on the item it made (``{id}`` below the collection path),
so schemathesis' stateful phase can chain create -> get -> update -> delete.
"""

from __future__ import annotations

import builtins
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from novacron import errors as domain
from novacron.api.errors import PROBLEM_JSON, Problem, status_of
from novacron.api.schema_errors import add_error_texts

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WRITES = frozenset({"post", "put", "patch", "delete"})
#: the query parameters a list hands to ``db.listing.paginate``, which refuses them with a 400
LIST_PARAMS = frozenset({"cursor", "sort", "limit"})

#: why each error status is answered: the response's description
REASONS: dict[int, str] = {
    400: "Malformed input: a cursor this API did not issue, a header out of range.",
    401: "No valid credential: send 'Authorization: Bearer <token>'.",
    403: "The caller's role lacks the permission, or a policy refuses the request.",
    404: "A resource named in the request does not exist, or it is not visible to the caller.",
    409: (
        "The request contradicts the current state (a name taken, a resource in use), or a name"
        " it gives matches several resources (`candidates` lists their ids)."
    ),
    412: "If-Match names a version older than the one stored: GET it again and retry.",
    413: "The request body is larger than this operation accepts.",
    415: "The request body is not of a media type this operation accepts.",
    422: "A parameter or a field of the body is invalid; `errors` names each.",
    428: "This operation needs a precondition header.",
    429: "Too many attempts: wait `Retry-After` seconds.",
    503: "A part the request needs is unavailable right now: retry after `Retry-After` seconds.",
}
#: response headers an endpoint's code may set, and what they mean
RESPONSE_HEADERS: dict[str, str] = {
    "ETag": "The version of the resource; send it as If-Match to update only that version.",
    "Location": "Where the created resource, or the task doing the work, can be read.",
    "X-Next-Offset": "Where to read on from next time.",
}
#: request headers a dependency or helper reads, and what they mean
REQUEST_HEADERS: dict[str, str] = {
    "If-Match": "Act only if the resource still has this ETag (412 otherwise).",
    "Idempotency-Key": "1 to 255 characters: a retry with the same key gets the first answer again.",
}
#: the header an error comes with: (name, meaning, JSON type)
ERROR_HEADERS: dict[int, tuple[str, str, str]] = {
    401: ("WWW-Authenticate", "The scheme to authenticate with: Bearer.", "string"),
    429: ("Retry-After", "Seconds to wait before trying again.", "integer"),
    503: ("Retry-After", "Seconds to wait before trying again.", "integer"),
}
_HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "If-Match": {"type": "string"},
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255},
}

#: the names a code object builds a problem with; its literal statuses are answers
PROBLEM_BUILDERS = frozenset({"Problem", "HTTPException"})
BUILTINS = frozenset(vars(builtins))
MEDIA_TYPE = re.compile(r"(application|text|image)/[a-z0-9.+-]+")
F = TypeVar("F")


@dataclass(frozen=True)
class Declared:
    """What one dependency, helper or class contributes to the operations that use it."""

    statuses: frozenset[int] = frozenset()
    #: request headers it reads
    headers: frozenset[str] = frozenset()


_DECLARED: dict[Any, Declared] = {}


def raises(*statuses: int, header: str | None = None) -> Callable[[F], F]:
    """Declare that a dependency, a helper or a class can answer with ``statuses`` (and reads the
    request ``header``): every operation that depends on it or names it documents them."""

    def mark(target: F) -> F:
        before = _DECLARED.get(target, Declared())
        _DECLARED[target] = Declared(
            before.statuses | frozenset(statuses), before.headers | frozenset([header] if header else [])
        )
        return target

    return mark


@dataclass
class Traits:
    """What an operation's dependency tree and code say about its answers."""

    statuses: set[int] = field(default_factory=set)
    request_headers: set[str] = field(default_factory=set)
    response_headers: set[str] = field(default_factory=set)
    needs_caller: bool = False


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A function's code and that of the closures and generators defined in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _referenced(code: types.CodeType, env: dict[str, Any]) -> Iterator[Any]:
    """The objects a code object names: globals, and attributes of the modules it names
    (``nodes.JoinRefused``)."""
    modules = [env[n] for n in code.co_names if isinstance(env.get(n), types.ModuleType)]
    for name in code.co_names:
        if name in env:
            yield env[name]
        for module in modules:
            if hasattr(module, name):
                yield getattr(module, name)


def _named(call: Any, seen: set[int]) -> Iterator[Any]:
    """``call``, the objects its code names, and those of the NovaCron functions it calls.

    A literal status counts where the code builds a problem with it (``Problem(409, ...)``); a
    string constant may be a response header the code sets."""
    if id(call) in seen:
        return
    seen.add(id(call))
    yield call
    code = getattr(call, "__code__", None)
    if code is None:
        return
    env = getattr(call, "__globals__", {})
    for part in _codes(code):
        builds_problem = not PROBLEM_BUILDERS.isdisjoint(part.co_names)
        for const in part.co_consts:
            if isinstance(const, str) or (builds_problem and isinstance(const, int)):
                yield const
        for obj in _referenced(part, env):
            if isinstance(obj, types.FunctionType) and obj.__module__.startswith("novacron."):
                yield from _named(obj, seen)
            else:
                yield obj


def _contribution(obj: Any, traits: Traits) -> None:
    """What one object used by an operation adds to its traits."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        if obj in REASONS:
            traits.statuses.add(obj)
    elif isinstance(obj, str):
        if obj in RESPONSE_HEADERS:
            traits.response_headers.add(obj)
        # ``request.headers.get("if-match")``: the code reads that request header
        traits.request_headers |= {h for h in REQUEST_HEADERS if h.lower() == obj}
    elif isinstance(obj, type) and issubclass(obj, domain.DomainError) and obj is not domain.DomainError:
        traits.statuses.add(status_of(obj))
    elif isinstance(obj, type) and issubclass(obj, Problem) and obj is not Problem:
        # a Problem subclass passes its status to Problem.__init__ as a literal
        for code in _codes(obj.__init__.__code__):
            traits.statuses |= {c for c in code.co_consts if isinstance(c, int) and c in REASONS}
    else:
        try:
            declared = _DECLARED.get(obj)
        except TypeError:  # unhashable
            return
        if declared is not None:
            traits.statuses |= declared.statuses
            traits.request_headers |= declared.headers


def _provided_class(call: Any) -> type | None:
    """The NovaCron class a dependency gives the endpoint: ``deps.service``'s, or the one its
    return annotation names (``def grants(...) -> Grants``)."""
    built: type | None = getattr(call, "service_class", None)
    if built is not None:
        return built
    annotation = getattr(call, "__annotations__", {}).get("return")
    cls = getattr(call, "__globals__", {}).get(annotation) if isinstance(annotation, str) else annotation
    if isinstance(cls, type) and cls.__module__.startswith("novacron."):
        return cls
    return None


def _names_in(call: Any) -> set[str]:
    code = getattr(call, "__code__", None)
    return {name for part in _codes(code) for name in part.co_names} if code is not None else set()


def _service_methods(route: APIRoute) -> Iterator[Callable[..., Any]]:
    """The methods of the services the route's dependencies give it that its endpoint calls
    (``svc.create(...)`` names ``create``, looked up on the service's class), and the methods
    those call on ``self``."""
    classes = {_provided_class(dep.call) for dep in _dependants(route.dependant)} - {None}
    for cls in classes:
        pending, done = sorted(_names_in(route.endpoint)), set()
        while pending:
            name = pending.pop()
            method = getattr(cls, name, None)
            # ``list(...)`` is the builtin, not the service's ``list``
            if name in done or name in BUILTINS or not isinstance(method, types.FunctionType):
                continue
            done.add(name)
            pending.extend(sorted(_names_in(method) - done))
            yield method


def traits_of(route: APIRoute, method: str) -> Traits:
    """Every status, header and credential an operation's code can involve."""
    from novacron.api.deps import current_principal

    traits = Traits()
    seen: set[int] = set()
    for dep in _dependants(route.dependant):
        traits.needs_caller |= dep.call is current_principal
        if dep.path_params:
            traits.statuses |= {404, 422}
        if dep.query_params or dep.header_params or dep.cookie_params:
            traits.statuses.add(422)
        if any(p.name in LIST_PARAMS for p in dep.query_params):
            traits.statuses.add(400)
        if any(p.name.endswith("_id") for p in dep.query_params if p.name not in LIST_PARAMS):
            traits.statuses.add(404)  # a resource named as a filter or a scope may not exist
        for obj in _named(dep.call, seen):
            _contribution(obj, traits)
    for called in _service_methods(route):
        for obj in _named(called, seen):
            _contribution(obj, traits)
    if route.body_field is not None or "requestBody" in (route.openapi_extra or {}):
        # unreadable (400), too large (413), another type (415), invalid (422), or naming a
        # resource that does not exist (404)
        traits.statuses |= {400, 404, 413, 415, 422}
    if method in WRITES and traits.needs_caller:
        traits.statuses.add(409)
    if traits.request_headers:
        # a version to match or a create to replay: the answer carries the resource's ETag
        traits.response_headers.add("ETag")
    return traits


def problem_response(status: int) -> dict[str, Any]:
    """The documented answer with ``status``: a problem, with the headers that come with it."""
    response: dict[str, Any] = {
        "description": REASONS[status],
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    if status in ERROR_HEADERS:
        name, description, kind = ERROR_HEADERS[status]
        response["headers"] = {name: {"description": description, "schema": {"type": kind}}}
    return response


def header_parameter(name: str) -> dict[str, Any]:
    """The optional request header ``name`` as an OpenAPI parameter."""
    return {
        "in": "header",
        "name": name,
        "required": False,
        "description": REQUEST_HEADERS[name],
        "schema": _HEADER_SCHEMAS[name],
    }


def response_header(name: str) -> dict[str, Any]:
    """The response header ``name`` as documented on a success."""
    return {"description": RESPONSE_HEADERS[name], "schema": {"type": "string"}}


def _complete(operation: dict[str, Any], route: APIRoute, traits: Traits) -> None:
    """Add the problems, headers, credential and streaming types ``traits`` call for."""
    responses = operation.setdefault("responses", {})
    for status in [s for s in responses if s.startswith(("4", "5"))]:
        del responses[status]  # FastAPI's 422 is not the body this API answers with
    for status in sorted(traits.statuses):
        responses[str(status)] = problem_response(status)
    for status, success in responses.items():
        if status.startswith("2") and status != "204":
            _success_body(success, route)
            headers = success.setdefault("headers", {})
            headers.update({h: response_header(h) for h in sorted(traits.response_headers)})
            if not headers:
                del success["headers"]
    params = operation.setdefault("parameters", [])
    declared = {(p["in"], p["name"].lower()) for p in params}
    params.extend(
        header_parameter(h) for h in sorted(traits.request_headers) if ("header", h.lower()) not in declared
    )
    if not params:
        del operation["parameters"]
    if traits.needs_caller:
        operation["security"] = [{"bearer": []}]


def _success_body(success: dict[str, Any], route: APIRoute) -> None:
    """A download is octet-stream; a stream or a text answer is not JSON as well."""
    content: dict[str, Any] = success.setdefault("content", {})
    response_class = getattr(route.response_class, "value", route.response_class)
    own = _media_types(route.endpoint)
    if isinstance(response_class, type) and issubclass(response_class, FileResponse):
        content.clear()
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    elif own and getattr(response_class, "media_type", None) != "application/json":
        # a text answer of its own type (a PEM file): what the endpoint names replaces the class's
        first: dict[str, Any] = next(iter(content.values()), {})
        schema = first.get("schema", {"type": "string"})
        content.clear()
        content.update({media: {"schema": schema} for media in sorted(own)})
    elif route.response_model is None and len(content) > 1:
        content.pop("application/json", None)
    if not content:
        del success["content"]


def _media_types(endpoint: Callable[..., Any]) -> set[str]:
    """The media types an endpoint's own code names (``media_type="application/x-pem-file"``)."""
    code = getattr(endpoint, "__code__", None)
    consts = [c for part in _codes(code) for c in part.co_consts] if code is not None else []
    return {c for c in consts if isinstance(c, str) and MEDIA_TYPE.fullmatch(c)}


def _websocket(route: APIWebSocketRoute, path: str) -> dict[str, Any]:
    """A WebSocket route as the GET that upgrades (OpenAPI has no WebSocket operations)."""
    params = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)", path)
    ]
    summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
    operation: dict[str, Any] = {
        "summary": summary,
        "description": "A WebSocket: open it with an upgrade request (`ws://`/`wss://`). A refusal "
        "closes the socket with a code (4401, 4403, 4404) and the problem's detail as reason.",
        "operationId": f"{route.name}_websocket",
        "x-websocket": True,
        "security": [{"bearer": []}],
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket is open."},
            "404": {**problem_response(404), "description": "Not an upgrade request, or no such path."},
        },
    }
    if params:
        operation["parameters"] = params
    return operation


def _item_schema(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = doc["components"]["schemas"].get(ref.rsplit("/", 1)[1], {})
    return schema


LINKS = {"get": "GetItem", "patch": "UpdateItem", "put": "ReplaceItem", "delete": "DeleteItem"}


def _link_creates(doc: dict[str, Any]) -> None:
    """A create's 201 links to the operations on ``{collection}/{id}`` with the ``id`` it answered."""
    paths = doc["paths"]
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None or "id" not in _item_schema(doc, created).get("properties", {}):
            continue
        for item_path, item_ops in paths.items():
            match = re.fullmatch(re.escape(path) + r"/{(\w+)}", item_path)
            if match is None:
                continue
            links = created.setdefault("links", {})
            for method, link in LINKS.items():
                if method in item_ops and "operationId" in item_ops[method]:
                    links[link] = {
                        "operationId": item_ops[method]["operationId"],
                        "parameters": {match.group(1): "$response.body#/id"},
                    }


def _components(doc: dict[str, Any]) -> None:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["FieldError"] = {
        "type": "object",
        "title": "FieldError",
        "description": "One offending input, named with the part of the request it is in: `body.name`.",
        "required": ["field", "reason"],
        "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
    }
    schemas["Problem"] = {
        "type": "object",
        "title": "Problem",
        "description": "RFC 9457 problem details; extension members (a policy's decision) may follow.",
        "required": ["type", "title", "status", "detail", "instance"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string", "description": "The path the problem occurred on."},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            "candidates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "An ambiguous name's (409): the ids of the resources it matches.",
            },
        },
        "additionalProperties": True,
    }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token from POST /v1/tokens, or a joined node's credential.",
        }
    }


def document(app: FastAPI) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of ``app``: FastAPI's, completed from the code."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for context in iter_route_contexts(app.router.routes):
        route = context.original_route
        path = str(getattr(context, "path_format", None) or context.path)
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in sorted(context.methods or ()):
                operation = doc["paths"].get(path, {}).get(method.lower())
                if operation is not None:
                    _complete(operation, route, traits_of(route, method.lower()))
        elif isinstance(route, APIWebSocketRoute):
            doc["paths"].setdefault(path, {})["get"] = _websocket(route, path)
    _link_creates(doc)
    _components(doc)
    add_error_texts(doc)  # the validation sentences, for the dashboard's checks before sending
    doc["paths"] = dict(sorted(doc["paths"].items()))
    return doc
