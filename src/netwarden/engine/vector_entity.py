"""Calico entity rules (`EntityMatch`) as boolean vectors over a batch's endpoints.

Each end of a flow is an endpoint at its address (outside addresses are endpoints of the batch
too), so an entity match is one vector over endpoints, as `entity.entity_matches` decides it:

- `nets` / `not_nets`: the address in (none of) the networks;
- the positive selector (scope, `selector`, `service_accounts`, all on one labelled thing):
  the endpoint itself (a pod or host endpoint) OR a network set holding the address. Network
  sets are few: per set, which endpoints' addresses it holds is computed once; the scope and
  selector are evaluated over the sets' labels (a `LabelTable`), then OR-combined through
  those members. A set carries no service account labels, so an account match is one answer
  for every set;
- `not_selector`: over every labelled view, unscoped;
- `service`: the Service's addresses. At the destination a Service's ports also count; they
  depend on the flow's port only, so `service_ports` gives them to the compiler for the port
  atoms.
"""

from __future__ import annotations

import numpy as np

from netwarden.engine.endpoint_vectors import EndpointVectors, Mask
from netwarden.engine.entity import given_accounts, is_scoped
from netwarden.engine.labels import network_set_labels, resolve_rule_scope
from netwarden.engine.selector_index import LabelTable
from netwarden.model import EntityMatch, Selector, ServiceAccountMatch, ServicePort


class EntityVectors:
    """Entity matches over the endpoints of `vectors`, each computed once."""

    def __init__(self, vectors: EndpointVectors) -> None:
        self.vectors = vectors
        cluster = vectors.cluster
        self.network_sets = cluster.network_sets
        self.set_labels = LabelTable([network_set_labels(s) for s in self.network_sets])
        # Each set's namespace labels; a global set's row is never read through the table.
        known = cluster.namespace_labels
        self.set_namespace_labels = LabelTable(
            [{} if s.namespace is None else known.get(s.namespace, {}) for s in self.network_sets]
        )
        self.set_is_global = np.array([s.namespace is None for s in self.network_sets], np.bool_)
        self._set_scopes: dict[tuple[str | None, Selector | None], Mask] = {}
        self._matches: dict[EntityMatch, Mask] = {}

    def match(self, match: EntityMatch) -> Mask:
        """Endpoints that, at their address, satisfy `match`, except a Service's ports."""
        found = self._matches.get(match)
        if found is None:
            found = self._match(match)
            found.flags.writeable = False  # shared between rules
            self._matches[match] = found
        return found

    def service_ports(self, match: EntityMatch) -> tuple[ServicePort, ...]:
        """The ports a destination must be on for `match`'s Service (none: any port)."""
        if match.service is None:
            return ()
        service = self.vectors.cluster.services_by_key.get(match.service)
        return service.ports if service is not None else ()

    def _match(self, match: EntityMatch) -> Mask:
        vectors = self.vectors
        found = np.ones(vectors.size, dtype=np.bool_)
        if match.nets:
            found &= vectors.inside_any(match.nets)
        if match.not_nets:
            found &= ~vectors.inside_any(match.not_nets)
        accounts = given_accounts(match)
        scoped = is_scoped(match)
        if scoped or match.selector is not None or accounts is not None:
            itself = vectors.is_subject.copy()
            sets = np.ones(len(self.network_sets), dtype=np.bool_)
            if scoped:
                itself &= vectors.namespace_scope(match.namespace, match.namespaces)
                sets &= self._set_scope(match.namespace, match.namespaces)
            if match.selector is not None:
                itself &= vectors.pods.matches(match.selector)
                sets &= self.set_labels.matches(match.selector)
            if accounts is not None:
                itself &= self._accounts(accounts)
                if not _unlabelled_account_matches(accounts):
                    sets[:] = False
            found &= itself | self._held_by(sets)
        if match.not_selector is not None:
            itself = vectors.is_subject & vectors.pods.matches(match.not_selector)
            found &= ~(itself | self._held_by(self.set_labels.matches(match.not_selector)))
        if match.service is not None:
            service = vectors.cluster.services_by_key.get(match.service)
            found &= vectors.at_addresses(service.ips if service is not None else ())
        return found

    def _held_by(self, sets: Mask) -> Mask:
        """Endpoints whose address one of the chosen network sets holds: the address is in
        the union of their networks (one search, however many sets a feed brings)."""
        chosen = np.flatnonzero(sets).tolist()
        if not chosen:
            return np.zeros(self.vectors.size, dtype=np.bool_)
        if len(chosen) == 1:
            return self._set_members(chosen[0])
        nets = tuple(net for index in chosen for net in self.network_sets[index].nets)
        return self.vectors.inside_any(nets)

    def _set_members(self, index: int) -> Mask:
        return self.vectors.inside_any(self.network_sets[index].nets)

    def _set_scope(self, namespace: str | None, scope: Selector | None) -> Mask:
        """Network sets within a rule's scope (`labels.in_namespace_scope` per set)."""
        key = (namespace, scope)
        found = self._set_scopes.get(key)
        if found is None:
            if namespace is not None:
                found = np.array([s.namespace == namespace for s in self.network_sets], np.bool_)
            elif scope is None:
                found = np.ones(len(self.network_sets), dtype=np.bool_)
            else:
                namespaced = self.set_namespace_labels.matches(resolve_rule_scope(scope, False))
                outside = resolve_rule_scope(scope, True).matches({})
                found = np.where(self.set_is_global, outside, namespaced)
            self._set_scopes[key] = found
        return found

    def _accounts(self, accounts: ServiceAccountMatch) -> Mask:
        """Endpoints whose own service account labels match (`entity.account_matches`): a pod
        by the account it runs as, any other endpoint as one with no account."""
        vectors = self.vectors
        rows = np.ones(len(vectors.account_names) + 1, dtype=np.bool_)
        if accounts.names:
            rows[:-1] &= np.array([n in accounts.names for n in vectors.account_names], np.bool_)
        if accounts.selector is not None:
            rows &= vectors.accounts.matches(accounts.selector)  # the last row's labels are {}
        rows[-1] = _unlabelled_account_matches(accounts)
        found: Mask = rows[vectors.account_of]
        return found


def _unlabelled_account_matches(accounts: ServiceAccountMatch) -> bool:
    """Whether the account match holds on a thing without account labels (a host endpoint, a
    network set): with no names, when its selector matches no labels."""
    return not accounts.names and (accounts.selector is None or accounts.selector.matches({}))
