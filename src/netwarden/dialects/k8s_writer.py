"""The model back out as Kubernetes manifests: NetworkPolicy (`networking.k8s.io/v1`),
AdminNetworkPolicy / BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`) and
ClusterNetworkPolicy (`v1alpha2`), and, on request, the inventory (Namespaces, Nodes, Pods).

Reading what is written gives the model back (up to rule names and source locations), so a
round trip decides every flow alike. Selectors become `matchLabels` / `matchExpressions`; what
no label selector can say (`||`, `contains`, `global()`, ...) and every Calico construct
raise `WriteError` naming the policy and the construct: nothing is dropped (fail closed).
Built from `k8s_netpol_writer`, `admin_netpol_writer` (shared with the Calico target,
which reads these kinds natively), `k8s_label_writer` and `k8s_inventory_writer`.

    >>> from netwarden.dialects import load_text
    >>> cluster = load_text('''
    ... apiVersion: networking.k8s.io/v1
    ... kind: NetworkPolicy
    ... metadata: {name: deny, namespace: shop}
    ... ''').cluster
    >>> write_k8s(cluster)[0]["spec"]
    {'podSelector': {}, 'policyTypes': ['Ingress']}
"""

from __future__ import annotations

from netwarden.dialects.admin_netpol_writer import ADMIN_KINDS, admin_policy
from netwarden.dialects.k8s_inventory_writer import write_inventory
from netwarden.dialects.k8s_netpol_writer import network_policy
from netwarden.dialects.writer_common import Inexpressible, Manifest, describe, writing
from netwarden.model import ClusterState, Policy


def write_k8s(cluster: ClusterState, include_inventory: bool = False) -> list[Manifest]:
    """Every policy as a Kubernetes manifest; with `include_inventory`, the Namespaces, Nodes
    and Pods first, so the file set stands alone. Raises WriteError for what Kubernetes
    cannot express (Calico policies, staged policies, non-label selectors, ...)."""
    documents = write_inventory(cluster) if include_inventory else []
    for policy in cluster.policies:
        documents.append(write_k8s_policy(policy))
    return documents


def write_k8s_policy(policy: Policy) -> Manifest:
    with writing(policy.source, describe(policy), "Kubernetes"):
        if policy.staged is not None:
            raise Inexpressible("staged policies are Calico resources (use the calico target)")
        if policy.kind == "NetworkPolicy":
            return network_policy(policy)
        if policy.kind in ADMIN_KINDS:
            return admin_policy(policy)
        raise Inexpressible(f"{policy.kind} is not a Kubernetes kind (use the calico target)")
