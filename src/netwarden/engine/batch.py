"""Batches of probes in, columns of verdicts out: the interface of the vectorized engine.

A probe names its ends as the user wrote them (`namespace/pod` or an address). `resolve_probes`
turns names into endpoint indices once; `evaluate` answers for the whole batch. Results are
columns (numpy arrays) so a million probes never become a million Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netwarden.engine.verdict import Reason
from netwarden.errors import UsageError
from netwarden.model import ClusterState, Endpoint, Policy, Profile


@dataclass(frozen=True)
class Probe:
    """One question: may `src` open a connection to `dst` on `port`/`protocol`?"""

    src: str
    dst: str
    port: int
    protocol: int


@dataclass(frozen=True)
class ProbeBatch:
    """Probes as columns of indices into `endpoints` (the cluster's, then external ones)."""

    endpoints: tuple[Endpoint, ...]
    src: npt.NDArray[np.int32]
    dst: npt.NDArray[np.int32]
    port: npt.NDArray[np.int32]
    protocol: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.src.shape[0])


REASON_CODES = {reason: code for code, reason in enumerate(Reason)}
REASONS = list(Reason)


@dataclass(frozen=True)
class DirectionColumns:
    """Per probe: allowed, the reason code (index into `REASONS`), deciding policy index
    (into `BatchResult.policies`, -1 for none) and rule index (-1 for none)."""

    allowed: npt.NDArray[np.bool_]
    reason: npt.NDArray[np.int8]
    policy: npt.NDArray[np.int32]
    rule: npt.NDArray[np.int32]


@dataclass(frozen=True)
class BatchResult:
    """Columns per direction; a `policy` column entry indexes `policies`, or `profiles` when
    the reason is PROFILE. `staged` is the same batch decided by the staged policy set."""

    batch: ProbeBatch
    policies: tuple[Policy, ...]
    tier_of_policy: tuple[str, ...]
    egress: DirectionColumns
    ingress: DirectionColumns
    profiles: tuple[Profile, ...] = ()
    staged: BatchResult | None = None

    @property
    def allowed(self) -> npt.NDArray[np.bool_]:
        return self.egress.allowed & self.ingress.allowed

    def deciding(self, index: int, egress: bool) -> str:
        """The same label as `Decision.deciding` for probe `index` in one direction."""
        columns = self.egress if egress else self.ingress
        reason = REASONS[columns.reason[index]]
        policy_index = int(columns.policy[index])
        if reason is Reason.RULE:
            policy = self.policies[policy_index]
            rule_index = int(columns.rule[index])
            direction_rules = policy.egress if egress else policy.ingress
            rule = direction_rules[rule_index] if direction_rules else None
            label = rule.name if rule is not None and rule.name else str(rule_index)
            return f"{policy.tier}/{policy.key}[{label}]"
        if reason is Reason.TIER_DEFAULT:
            tier = self.tier_of_policy[policy_index] if policy_index >= 0 else "?"
            return f"{tier} (default {'allow' if columns.allowed[index] else 'deny'})"
        if reason is Reason.PROFILE and policy_index >= 0:
            return f"profile/{self.profiles[policy_index].name}[{int(columns.rule[index])}]"
        return str(reason.value)


def resolve_probes(cluster: ClusterState, probes: Sequence[Probe]) -> ProbeBatch:
    """Names -> endpoint indices; unknown `namespace/pod` names raise UsageError."""
    endpoints = list(cluster.endpoints)
    index = {endpoint.key: i for i, endpoint in enumerate(endpoints)}
    by_ip = {ip: index[e.key] for ip, e in cluster.endpoints_by_ip.items()}

    def lookup(name: str) -> int:
        found = index.get(name)
        if found is not None:
            return found
        endpoint = cluster.endpoint(name)
        if endpoint is None:
            raise UsageError(f"unknown endpoint {name!r}: expected namespace/pod or an IP address")
        if endpoint.ips and endpoint.ips[0] in by_ip:
            found = by_ip[endpoint.ips[0]]
        else:
            found = len(endpoints)
            endpoints.append(endpoint)
        index[name] = found
        return found

    src = np.fromiter((lookup(p.src) for p in probes), dtype=np.int32, count=len(probes))
    dst = np.fromiter((lookup(p.dst) for p in probes), dtype=np.int32, count=len(probes))
    port = np.fromiter((p.port for p in probes), dtype=np.int32, count=len(probes))
    protocol = np.fromiter((p.protocol for p in probes), dtype=np.int32, count=len(probes))
    return ProbeBatch(tuple(endpoints), src, dst, port, protocol)
