"""How nft spells things: addresses, ports, protocols, verdicts, comments and log prefixes.

Pure text helpers of the nftables backend, with no state and no decisions: the renderer
(`nft_render`, `nft_rules`) chooses what to write, these say how nft writes it. The NFLOG
groups and the flow log prefix (`flow_log_hit`) live here too, since `netwarden.flows`
reads the logs back in exactly this spelling.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from ipaddress import ip_network

from netwarden.dataplane.nft_ruleset import PASS_MARK, nft_text
from netwarden.engine.resolved import AddressPort, AddressRange, ProtocolPorts
from netwarden.errors import CompileError
from netwarden.model import ICMP, ICMPV6, SCTP, TCP, UDP, Action, Direction, IPAddress, Policy, Rule

#: NFLOG group of Log rules.
LOG_GROUP = 1
#: NFLOG groups of flow logs (`flow_logs=True`), per direction: the first packet of each new
#: connection, logged at each rule that decided or passed it with the prefix
#: `<tier>|<policy>|<action>|<rule> `, the hit as Calico's flow logs write it (rule -1: the
#: tier's default; `__PROFILE__`: no tier decided). Egress is what the source's reporter saw.
FLOW_LOG_GROUPS = {Direction.EGRESS: 2, Direction.INGRESS: 3}
PROFILE_HIT = "__PROFILE__|__PROFILE__|allow|0"
_PREFIX_MAX = 126  # nft log prefixes hold 127 bytes, the last one a space
_COMMENT_MAX = 120  # nft refuses comments over 128 bytes
_NAMES = {TCP: "tcp", UDP: "udp", SCTP: "sctp", ICMP: "icmp"}
_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def flow_log_hit(policy: Policy, action: Action, rule: int) -> str:
    """`<tier>|<policy>|<action>|<rule>` with the policy named as Calico names it
    (`shop/knp.default.db`); a name too long for the prefix is replaced by `#<digest>`."""
    name = policy.calico_name or policy.name
    named = f"{policy.namespace}/{name}" if policy.namespace else name
    hit = nft_text(f"{policy.tier}|{named}|{action.value.lower()}|{rule}")
    if len(hit) > _PREFIX_MAX:
        hit = nft_text(f"{policy.tier}|#{digest(named, 16)}|{action.value.lower()}|{rule}")
    return hit[:_PREFIX_MAX]


def flow_log(hit: str, direction: Direction) -> str:
    """The statement that logs a flow log hit to its direction's NFLOG group."""
    return f'log prefix "{hit} " group {FLOW_LOG_GROUPS[direction]}'


def digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def join_families(lines: list[str]) -> list[str]:
    """`meta nfproto ipv4 X` and `meta nfproto ipv6 X` as one `X`: the inet table sees no
    other family."""
    if len(lines) == 2 and lines[0].startswith("meta nfproto ipv4 "):
        rest = lines[0].removeprefix("meta nfproto ipv4 ")
        if lines[1] == f"meta nfproto ipv6 {rest}":
            return [rest]
    return lines


def rule_conditions(rule: Rule, label: str) -> list[str]:
    """The rule-wide conditions, as written on the rule."""
    terms = []
    if rule.protocol is not None:
        terms.append(f"meta l4proto {_protocol(rule.protocol)}")
    if rule.not_protocol is not None:
        terms.append(f"meta l4proto != {_protocol(rule.not_protocol)}")
    for match, negated in ((rule.icmp, False), (rule.not_icmp, True)):
        if match is None:
            continue
        if rule.protocol not in (ICMP, ICMPV6):
            raise CompileError(f"{label}: an ICMP match needs the rule's protocol ICMP or ICMPv6")
        kind = "icmp" if rule.protocol == ICMP else "icmpv6"
        if match.code is None:
            terms.append(f"{kind} type {'!= ' if negated else ''}{match.type}")
        elif negated:
            terms.append(f"{kind} type . {kind} code != {{ {match.type} . {match.code} }}")
        else:
            terms.append(f"{kind} type {match.type} {kind} code {match.code}")
    return terms


def action_verdict(action: Action, label: str) -> str:
    """A rule's action as the statements that end its nft rule, counted and commented."""
    comment = f'comment "{comment_text(label)}"'
    if action is Action.ALLOW:
        return f"counter accept {comment}"
    if action is Action.DENY:
        return f"counter drop {comment}"
    if action is Action.LOG:
        return f'counter log prefix "{comment_text(label)} " group {LOG_GROUP} {comment}'
    return f"counter meta mark set meta mark | {PASS_MARK:#010x} return {comment}"


def port_ranges(ranges: tuple[ProtocolPorts, ...], negation: str, fixed: bool = False) -> str:
    """Port ranges as one match; `fixed`: the rule already requires their one protocol."""
    protocols = {r.protocol for r in ranges}
    if negation and fixed:
        spans = [str(r.ports) for r in ranges]
        return f"{_protocol(ranges[0].protocol)} dport {negation}{_braced(spans)}"
    if len(protocols) == 1 and not negation:
        spans = [str(r.ports) for r in ranges]
        if spans == ["0-65535"]:
            return f"meta l4proto {_protocol(ranges[0].protocol)}"
        return f"{_protocol(ranges[0].protocol)} dport {_braced(spans)}"
    # The protocol and port together: `tcp dport != 80` would also reject every UDP packet.
    spans = [f"{_protocol(r.protocol)} . {r.ports}" for r in ranges]
    return f"meta l4proto . th dport {negation}{{ {', '.join(spans)} }}"


def protocol_list(protocols: Iterable[int]) -> str:
    """Protocols as one `meta l4proto` operand: a name, or an anonymous set of them."""
    return _braced([_protocol(p) for p in protocols])


def address_elements(addresses: Iterable[IPAddress]) -> tuple[str, ...]:
    """Addresses as set elements, in address order."""
    return tuple(str(ip) for ip in sorted(addresses, key=int))


def range_element(span: AddressRange) -> str:
    """A range as nft writes it: an address, a prefix when it is one, else `start-end`."""
    if span.start == span.end:
        return str(span.start)
    size = int(span.end) - int(span.start) + 1
    if size & (size - 1) == 0 and int(span.start) % size == 0:
        return str(ip_network(f"{span.start}/{span.start.max_prefixlen - size.bit_length() + 1}"))
    return f"{span.start}-{span.end}"


def address_port_elements(entries: Iterable[AddressPort]) -> tuple[str, ...]:
    """(address . protocol . port) set elements, in address, protocol and port order."""
    ordered = sorted(entries, key=lambda e: (int(e.address), e.protocol, e.port))
    return tuple(f"{e.address} . {_protocol(e.protocol)} . {e.port}" for e in ordered)


def safe_name(text: str) -> str:
    """`text` as a part of a chain or set name (letters, digits and `_`, 48 at most)."""
    return _SAFE.sub("_", text).strip("_")[:48] or "x"


def comment_text(text: str) -> str:
    """`text` as a comment nft accepts: safe characters only (`nft_text`), cut to fit."""
    cleaned = nft_text(text)
    return cleaned if len(cleaned) <= _COMMENT_MAX else cleaned[: _COMMENT_MAX - 3] + "..."


def _braced(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{{ {', '.join(items)} }}"


def _protocol(number: int) -> str:
    return _NAMES.get(number, str(number))
