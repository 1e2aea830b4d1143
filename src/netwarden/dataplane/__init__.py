"""Dataplane: the model made real on Linux.

Two parts, each consuming the engine's resolved form and never re-deciding semantics:

- the lab (`lab_plan`, `lab`, `lab_server`, `lab_probe`, `netns`): a cluster description turned
  into network namespaces (a fabric, one router namespace per node, one namespace per pod and
  per external address, joined by veth pairs, Calico-style pure L3), with a small server per
  namespace serving the declared TCP/UDP ports and real probes between them. Planning is pure
  (`plan_lab`: ClusterState -> LabPlan); `apply_lab` / `destroy_lab` make and remove it; the
  state file under /run/netwarden/labs lets `probe` and `down` run from another process.
- enforcement backends (nftables, next): compile the engine's resolved policies into rulesets
  applied atomically inside the lab's namespaces or on a real host.

To add a backend: one module here (`<name>.py`, e.g. `nftables.py`) with a class named after
its role (`NftablesBackend`) exposing `compile` (pure, golden-tested) and `apply` (a
transaction that leaves the last good state on error), one line in the backend registry table,
its tests in `tests/dataplane/test_<name>.py` (root tests marked `@pytest.mark.root` and run in
a lab), and fixtures in `tests/dataplane/fixtures/<name>/`.
"""
