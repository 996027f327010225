"""The pass: forward the request as it came, bodies streamed both ways, nothing stored; and
invalidation (RFC 9111 §4.4) when an unsafe method gets a 2xx/3xx.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.decide import Lookup, Pass, decide
from proxy.exchange import CacheResult, ClientSide, Outcome
from proxy.forwarding import pass_headers
from proxy.invalidate import invalidates, lookups
from proxy.policy import cache_status, end_to_end
from proxy.relay import Tags, fail, pass_fwd, record, relay_interim, stream
from proxy.settings import Settings
from proxy.store import CacheStore
from proxy.upstream import UpstreamClient, UpstreamError
from proxy.view import Headers, RequestView


class PassForwarder:
    """Passes for one configuration."""

    def __init__(
        self,
        settings: Settings,
        stores: Mapping[str, CacheStore],
        upstream: UpstreamClient,
        tags: Tags,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.upstream = upstream
        self.tags = tags

    async def forward(self, client: ClientSide, decision: Pass) -> Outcome:
        """Forward as is, bodies streamed both ways. Nothing is stored; a non-error answer to an
        unsafe method invalidates what is stored for its URIs (RFC 9111 §4.4)."""
        view = client.view
        label = decision.rule.label if decision.rule else "-"
        outcome = record(client.outcome, 0, CacheResult.PASS, decision.reason.value, label)
        headers = pass_headers(view, self.settings.trust, self.settings.upstream)
        try:
            response = await self.upstream.request(
                view.method,
                view.target,
                headers,
                client.body(),
                client.body_length(),
                relay_interim(client, self.settings.purge.stripped),  # the tags: as below
            )
        except UpstreamError as exc:
            return await fail(client, exc, outcome, self.tags)
        if invalidates(view.method, response.status):
            await self._invalidate(view, response.headers)
        tags = self.tags(
            CacheResult.PASS, cache_status(False, fwd=pass_fwd(view), detail=outcome.detail)
        )
        outcome.status = response.status
        shown = end_to_end(response.headers, drop=self.settings.purge.stripped) + tags
        await stream(client, response, shown, outcome)
        return outcome

    async def _invalidate(self, view: RequestView, response_headers: Headers) -> None:
        """Delete the entries the GETs of `invalidate.lookups` would have been answered from
        (their Vary markers too: a new marker starts a new generation of variants), when the
        rule that stores them honours what named them (`Rule.invalidate`)."""
        if not any(rule.invalidate for rule in self.settings.rules):
            return
        for request, named_by in lookups(view, response_headers):
            decision = decide(request, self.settings.rules, self.settings.identity)
            if isinstance(decision, Lookup) and named_by in decision.rule.invalidate:
                await self.stores[decision.rule.cache].delete(decision.key)
