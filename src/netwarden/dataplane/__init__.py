"""Dataplane: the model made real on Linux.

Two parts, each consuming the engine's resolved form and never re-deciding semantics:

- the lab (`lab_plan` with its records in `lab_topology`, its names in `lab_naming` and its
  links and free addresses in `lab_addressing`; `lab`, `lab_server`, `lab_probe`, `netns`): a
  cluster description turned into network namespaces (a fabric, one router namespace per node,
  one namespace per pod and per external address, joined by veth pairs, Calico-style pure L3),
  with a small server per namespace serving the declared TCP/UDP ports and real probes between
  them. Planning is pure (`plan_lab`: ClusterState -> LabPlan); `apply_lab` / `destroy_lab` make
  and remove it; the state file under /run/netwarden/labs (`lab_state`) lets `probe` and `down`
  run from another process;
  `lab_lock` gives each lab one writer at a time (every command that changes the lab holds
  it from reading the state to saving it).
- enforcement: `nftables` renders the engine's resolved form of one node
  (`netwarden.engine.resolve`) as one `nft -f` script (`NftablesBackend.compile`; the chains
  and maps in `nft_render`, the rules and their sets in `nft_rules`, the spelling of each part
  in `nft_syntax`), `apply` loads it as one transaction (the previous ruleset stays on any
  error), and `lab_enforce` compiles every lab node from the lab's inputs, loads the rulesets
  before any pod is connected (`lab up --enforce`) or after a change (`lab apply`), and
  compares probes with the engine (`lab probe --compare`). `nft_host` adds a node's Calico
  host endpoints: its own addresses dispatched on the input and output hooks (failsafe ports,
  tiers, profiles, deny).
- churn: `nft_ruleset` keeps a ruleset as skeleton (declarations, chains) plus elements, named
  after what each set means so that another inventory gives the same names; `nft_update`
  turns the loaded ruleset into the next one with one transaction of element changes when the
  skeletons agree (else the full replacement), guarded by the table's `generation` element;
  `nft_delta` (`NodeCompiler`) places pods that come, go or change labels without compiling the
  node again; `lab_churn` adds, deletes and relabels lab pods (`lab pod ...`) on top of them.

To add a backend: one module here (`<name>.py`, e.g. `nftables.py`) with a class named after
its role (`NftablesBackend`) exposing `compile` (pure, golden-tested) and `apply` (a
transaction that leaves the last good state on error), one line in the `compile` command's
target table, its tests in `tests/dataplane/test_<name>.py` (root tests marked
`@pytest.mark.root` and run in a lab), and golden outputs in `tests/dataplane/golden/`.
Nothing is imported here: every lab server imports this package at start-up.
"""
