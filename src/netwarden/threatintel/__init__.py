"""Threat intelligence: feeds fetched, parsed, made safe, aggregated, kept, and looked up.

The pipeline of one sync (`sync.sync_feed`), one module per stage:

    headers.py            header values from Secrets / ConfigMaps (mounted folder, manifests)
    fetch.py / taxii.py   bytes from HTTP (timeouts, ETag / If-Modified-Since, size cap, gzip)
                          or objects from a TAXII 2.1 collection (paged, `added_after`)
    parse.py / stix.py    values by format (lines, CSV, JSONPath, STIX indicators in force),
                          then addresses, prefixes or domains; bad values counted with lines
    safety.py             never block loopback, link-local, the cluster's own addresses, the
                          allowlist; hold a version that shrinks to nothing or grows too much
    aggregate.py          the minimal CIDR set (numpy interval merge), both families
    state.py              the last good set, status, network set manifests, on disk
    schedule.py           period, jitter, exponential back-off for the long-running loop
    check.py              which feeds list an indicator; bulk lookups of address columns
    match.py              flow records and DNS names against the feeds: hits for alerts

Effects live elsewhere: `dataplane/threat_block.py` loads the sets into nftables, and each IP
feed's `GlobalNetworkSet threatfeed.<name>` (written by `state.py`) is read like any other
network set. Resource readers are in `dialects/threat_feed.py`. To add a source kind: a
`model.feeds` source dataclass, its reader fields, and one branch in `sync._fetch` that turns
it into `parse.Candidates`.
"""
