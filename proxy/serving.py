"""One request of a client connection served by its worker: the view built, the driver called,
problems and failures answered, the access log written.

What the worker answers itself, never the driver:
- a problem found while parsing (`ParsedRequest.problem`: 400, 413, 414, 431, 501) or in the
  view (`view.request_problem`), answered and the connection closed;
- a request body that broke off malformed (400), ran past max_body_size (413) or stopped
  coming (408, body_timeout) while the request was being forwarded, if no response had begun;
- a bug in the driver: 500 if nothing was sent yet, else the connection is cut.
A client that leaves is logged 499 (nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import logging
import time

from proxy.client_side import Http1Client
from proxy.client_transport import ClientTransport
from proxy.exchange import CacheResult, ClientGone, Outcome
from proxy.forwarding import DEBUG
from proxy.front_request import ParsedRequest, Problem
from proxy.view import RequestView, decode_fields, header_text, origin_form, request_problem

log = logging.getLogger("sidecache.front")


def build_view(connection: ClientTransport, request: ParsedRequest) -> RequestView:
    """The request as the pure core sees it (made once per request, hits included)."""
    try:  # decode_fields' fast path inlined: one call less per request on the hit path
        raw = tuple([(n.decode(), v.decode()) for n, v in request.raw_headers])
    except UnicodeDecodeError:
        raw = decode_fields(request.raw_headers)
    target, headers = origin_form(header_text(request.target), raw)
    return RequestView(
        request.method,
        target,
        headers,
        peer=connection.peer if connection.transport is not None else "-",
        scheme=connection.scheme,
        version=request.version,
        has_body=request.has_body,
        trusted=connection.trusted,
    )


async def serve(connection: ClientTransport, request: ParsedRequest) -> bool:
    """Serve `request`; whether the connection may read another one."""
    started = time.perf_counter()
    view = request.view or build_view(connection, request)
    client = Http1Client(connection, request, view)
    problem = request.problem or request_problem(view)
    if problem is not None:
        await _refuse(connection, client, problem, started)
        return False
    if DEBUG in view.header_map:  # from a peer [admin] debug_from lists: the trace on delivery
        client.trace = connection.driver.trace(view)
    try:
        outcome = await connection.driver.handle(client, request.decision)
    except (ClientGone, asyncio.CancelledError):
        late = _late_problem(connection, request, client)
        if late is not None:
            await _refuse(connection, client, late, started)
            return False
        # The client left (connection_lost cancels the worker, and the upstream exchange).
        outcome = client.outcome
        outcome.status = outcome.status or 499
        outcome.detail = outcome.detail if outcome.status != 499 else "client-gone"
        connection.log_access(view, outcome, time.perf_counter() - started)
        return False
    except Exception:
        log.exception("error serving %s %s", view.method, view.target)
        outcome = Outcome(status=500, cache=CacheResult.ERROR, detail="internal-error")
        await client.fail()
        connection.log_access(view, outcome, time.perf_counter() - started)
        return False
    connection.log_access(view, outcome, time.perf_counter() - started)
    if request.body_pending:
        return False  # the body was not read to its end: the stream is out of step
    return not client.closing and not connection.closed


def _late_problem(
    connection: ClientTransport, request: ParsedRequest, client: Http1Client
) -> Problem | None:
    """Why the request's body failed while it was being forwarded, if the client is still
    there to be told and nothing of a response went out."""
    if client.started or connection.closed:
        return None
    if request.problem is not None:
        return request.problem  # its body turned out malformed (or too large)
    if request.body is not None and request.body.timed_out:
        return (408, "request body timed out")
    if request.too_large:
        return (413, "request body too large")  # a chunked body ran past max_body_size
    return None


async def _refuse(
    connection: ClientTransport, client: Http1Client, problem: Problem, started: float
) -> None:
    await client.refuse(problem)
    outcome = Outcome(problem[0], CacheResult.ERROR, "bad-request")
    connection.log_access(client.view, outcome, time.perf_counter() - started)
