"""The records of a compiled ruleset: its skeleton, its elements, and what it was decided from.

A `Ruleset` is kept as parts rather than as one text so that pod churn can be computed and
applied as a change of elements (`nft_update`, `nft_delta`) while the script stays what
`nft -f` loads in one transaction (`Ruleset.script`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from netwarden.engine.resolved import ProtocolPorts
from netwarden.model import Peer, Policy, PortMatch

TABLE = "netwarden"
#: The packet-mark bit a Pass sets (outside the bits kube-proxy and Calico use).
PASS_MARK = 0x00100000
#: The set holding one element, the content hash of the ruleset loaded (see `Ruleset`).
GENERATION_SET = "generation"


@dataclass(frozen=True)
class SetDeclaration:
    """A named set or verdict map of the table, without its elements."""

    name: str
    spec: str  # the type line, e.g. `type ipv4_addr; flags interval`
    verdict_map: bool = False


@dataclass(frozen=True)
class SetContents:
    """The elements of one named set or map as nft writes them (`"ifname" : verdict` in a map)."""

    name: str
    elements: tuple[str, ...]


@dataclass(frozen=True)
class Ruleset:
    """An nft script for one node: its skeleton (declarations and chains) and its elements.

    Pod churn changes `contents` only: two rulesets with the same `skeleton` differ by set and
    map elements, and one `add element` / `delete element` transaction turns one into the other
    (`nft_update`). `generation` names this exact content inside the table (set `generation`),
    so that an update can require the table to still hold what it was computed against.
    """

    node: str
    declarations: tuple[SetDeclaration, ...]
    chain_lines: tuple[str, ...]
    contents: tuple[SetContents, ...]  # one per declaration, in the same order
    generation: str  # 8 hex digits
    chains: int
    rules: int
    local_pods: int = 0

    @cached_property
    def skeleton(self) -> str:
        """sha256 of everything but the elements: equal skeletons differ by elements only."""
        digest = hashlib.sha256(f"{self.node}\n".encode())
        for declaration in self.declarations:
            digest.update(f"{declaration}\n".encode())
        digest.update("\n".join(self.chain_lines).encode())
        return digest.hexdigest()

    @property
    def sets(self) -> int:
        return sum(1 for d in self.declarations if not d.verdict_map)

    @property
    def elements(self) -> int:
        """Set elements (verdict map entries apart)."""
        return sum(
            len(c.elements)
            for d, c in zip(self.declarations, self.contents, strict=True)
            if not d.verdict_map
        )

    @cached_property
    def script(self) -> str:
        """The whole table as one `nft -f` transaction that replaces the previous one."""
        lines = [
            f"# netwarden: nftables ruleset for node {self.node}, {self.local_pods} local pod(s)",
            f"add table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            f'\tcomment "netwarden node {nft_text(self.node)}"',
            f"\tset {GENERATION_SET} {{",
            "\t\ttype mark",
            f"\t\telements = {{ 0x{self.generation} }}",
            "\t}",
        ]
        for declaration, contents in zip(self.declarations, self.contents, strict=True):
            kind = "map" if declaration.verdict_map else "set"
            lines += [f"\t{kind} {declaration.name} {{", f"\t\t{declaration.spec}"]
            if contents.elements:
                lines.append(f"\t\telements = {{ {', '.join(contents.elements)} }}")
            lines.append("\t}")
        lines += self.chain_lines
        lines.append("}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PeerUse:
    """Where one end of a rule meets the inventory, so that a pod that comes, goes or changes
    labels can be placed without compiling again: its address belongs in `set_name` when it
    matches `peers` (any of them). `universal`: the end was rendered without any condition
    because every known address matches; `set_name` None: no address set was rendered (no
    inventory address can match now). A pod that would change either needs a full compile."""

    family: int
    peers: tuple[Peer, ...]  # for the subject's own end: the rule's one `local` match
    local: bool
    destination: bool
    set_name: str | None
    universal: bool = False


@dataclass(frozen=True)
class NamedPortUse:
    """A rule's named ports (`names`) for one family: every endpoint's (address, protocol,
    port) for those names, except what `ranges` already cover, is in `set_name`."""

    family: int
    names: tuple[PortMatch, ...]
    ranges: tuple[ProtocolPorts, ...]
    set_name: str | None


@dataclass(frozen=True)
class RenderIndex:
    """What the renderer decided from the inventory, kept for `nft_delta`."""

    peer_uses: tuple[PeerUse, ...]
    port_uses: tuple[NamedPortUse, ...]
    chain_names: frozenset[str]


def policy_identity(policy: Policy) -> str:
    """What tells policies apart in chain and set names (a key alone may repeat across kinds)."""
    return f"{policy.tier}/{policy.kind}/{policy.key}"


def nft_text(text: str) -> str:
    """Printable ASCII without quotes or backslashes: safe inside an nft string."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in text)
